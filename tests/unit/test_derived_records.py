"""Timers and derived records (here: cart triggers) travel with the partition's state: the worker commits
pending timers (tombstones once fired) and the outbox in the state transaction, a
new owner restores the timers, and replay writes the same derived records."""

import orjson
import pytest

from agents.replay import replay_files
from agents.statestore import Outgoing, PartitionStore
from state.config import Config
from state.fold import Fold
from streams.events import Event

T0 = 1_793_491_200_000
MINUTE = 60_000


EVENTS = [
    Event("e1", "u1", T0, "add_to_cart"),
    Event("e2", "u2", T0 + MINUTE, "add_to_cart"),
    Event("e3", "u1", T0 + 30 * MINUTE + 30_000, "page_view"),  # u1 due (not u2): fires
]
ABANDONED = {"kind": "cart_abandoned", "user_id": "u1", "ts": T0 + 30 * MINUTE, "cart_ts": T0,
             "cart_event_id": "e1"}  # fmt: skip


async def test_timers_and_outbox_are_committed_with_the_state_and_restored():
    config = Config()
    store = PartitionStore("unused:9092", "t", 0, config)
    fold = Fold(config, [("clicks", 0), ("orders", 0)])
    fold.apply_batch([(e.user_id, e) for e in EVENTS], ("clicks", 0))
    out = Outgoing()
    store.collect(fold, {"clicks": 2}, out)

    state = {key: value for topic, _, key, value, _ in out.records if topic == "t.state"}
    assert state[b"t/cart/u1"] is None  # fired: a tombstone
    assert state[b"t/cart/u2"] == str(T0 + 31 * MINUTE).encode()
    triggers = [(key, orjson.loads(value)) for topic, _, key, value, _ in out.records
                if topic == config.topics.triggers]  # fmt: skip
    assert triggers == [(b"u1", ABANDONED)]

    restored = Fold(config, [("clicks", 0), ("orders", 0)])
    store.restore(restored, state)
    assert restored.timers.due_of("cart", "u2") == T0 + 31 * MINUTE
    assert restored.timers.due_of("cart", "u1") is None
    assert restored.timers.take_changes() == {}


def test_replay_writes_the_derived_records_the_worker_would_send(tmp_path):
    clicks = tmp_path / "clicks.jsonl"
    clicks.write_bytes(b"".join(
        orjson.dumps({"event_id": e.event_id, "user_id": e.user_id, "ts": e.ts, "type": e.type}) + b"\n"
        for e in EVENTS
    ))  # fmt: skip
    out = tmp_path / "triggers.jsonl"
    replay_files(Config(), clicks, None, derived_outputs={"triggers": out})
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines == [ABANDONED]


def test_an_unknown_derived_kind_is_refused():
    with pytest.raises(ValueError):
        Fold(Config()).outbox.emit("nope", "u1", {})
