"""Replay emulates the cluster's partitions (each user where Kafka's default
partitioner puts it, watermarks per topic-partition) and can stop at a moment."""

import tempfile
from pathlib import Path

import aiokafka.partitioner
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import comparable, naive_report, stream_time_free
from strategies import event_sets

from agents.replay import replay_files
from state.config import Config, Topics
from state.fold import Fold
from state.report import build_report

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def as_dict(e):
    row = {"event_id": e.event_id, "user_id": e.user_id, "ts": e.ts, "type": e.type}
    for attr in ("channel", "device", "region"):
        if getattr(e, attr) is not None:
            row[attr] = getattr(e, attr)
    if e.type.startswith("order"):
        row |= {"order_id": e.order_id, "amount": e.amount_cents / 100}
    return row


def write_inputs(directory, events):
    """Clicks and orders files as a producer would write them (file order = list order)."""
    paths = {"clicks": Path(directory) / "clicks.jsonl", "orders": Path(directory) / "orders.jsonl"}
    for kind, path in paths.items():
        rows = [as_dict(e) for e in events if e.type.startswith("order") == (kind == "orders")]
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return paths["clicks"], paths["orders"]


@SETTINGS
@given(event_sets(), st.integers(1, 9))
def test_users_live_in_kafkas_partition_and_the_report_is_unchanged(events, partitions):
    config = Config(topics=Topics(partitions=partitions))
    with tempfile.TemporaryDirectory() as tmp:
        report, parts, _ = replay_files(config, *write_inputs(tmp, events), now_ms=1 << 62)
    kafka = aiokafka.partitioner.DefaultPartitioner()
    all_partitions = list(range(partitions))
    for p, fold in enumerate(parts.folds):
        for user_id in fold.users:
            assert kafka(user_id.encode(), all_partitions, all_partitions) == p
        assert set(fold.watermarks) <= {("clicks", p), ("orders", p)}
    # One fold over everything (replay before partitions) gives the same report.
    single = Fold(config)
    single.apply_batch([(e.user_id, e) for e in sorted(events, key=lambda e: e.ts)], "all")
    assert stream_time_free(report) == stream_time_free(build_report(single.partials, config))
    assert len(parts.users) == len(single.users) == len({e.user_id for e in events})


@SETTINGS
@given(event_sets(), st.data())
def test_until_gives_the_naive_report_of_the_events_up_to_then(events, data):
    until = data.draw(st.sampled_from(sorted({e.ts for e in events})), label="until")
    before = [e for e in events if e.ts <= until]
    with tempfile.TemporaryDirectory() as tmp:
        report, parts, _ = replay_files(
            Config(), *write_inputs(tmp, events), now_ms=1 << 62, until_ms=until
        )
    assert comparable(report) == naive_report(before)
    assert report["events"]["consumed"] == len(before)
    # Users as of then: who had any event, last activity among the events up to then.
    active = [e for e in before if e.type not in ("push_sent", "order_refunded")]
    assert {u: s.last_ts for u, s in parts.users.items()} == {
        e.user_id: max((a.ts for a in active if a.user_id == e.user_id), default=None)
        for e in before
    }
