"""The disk tier (state/user_table.py, agents/localstore.py): a partition whose users
live in a local RocksDB store with only a few decoded in memory folds exactly as one
holding all of them in memory, whatever the cache size and commit points, and goes
on identically when restored from its local store. A local store that is corrupt,
of another partition, too old or outside the topic's offsets is not trusted."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import agents.localstore as localstore
from agents.localstore import LocalStore
from agents.statestore import Outgoing, PartitionStore
from state.codec import encode_user
from state.config import Config
from state.fold import Fold
from state.report import build_report
from state.user_table import UserTable
from streams.events import parse_event
from streams.generator import GeneratorSpec, generate

CONFIG = Config.from_mapping(
    {"allowed_lateness": "1d", "churn": {"horizon": "2d", "min_labels": 20}}
)  # fmt: skip
SOURCES = [("clicks", 0), ("orders", 0)]
NAMES = [f.name for f in CONFIG.funnels]


def _traffic():
    spec = GeneratorSpec(seed=9, days=6, new_users_per_day=40, duplicate_rate=0.02)
    items = [
        (topic, parse_event(line, max_bytes=1 << 20, now_ms=1 << 62))
        for topic, line in generate(spec)
        if topic in ("clicks", "orders")
    ]
    items.sort(key=lambda item: item[1].ts)
    return items


TRAFFIC = _traffic()


def apply(fold, chunk):
    for topic in ("clicks", "orders"):
        run = [e for t, e in chunk if t == topic]
        fold.apply_batch([(e.user_id, e) for e in run], (topic, 0))


class Committer:
    """Drives a PartitionStore as the worker does, without Kafka: `collect`, then the
    transaction's records copied to the local store at made-up state-topic offsets."""

    def __init__(self, path, capacity):
        self.store = PartitionStore("unused:9092", "t", 0, CONFIG, local_dir=path)
        self.store.cache_users = capacity
        self.offset = 0

    def open(self):
        """A fold restored from the local store (the topic adds nothing: offsets equal)."""
        store = self.store
        local = store.open_local(0, self.offset)
        assert local is not None
        fold = Fold(CONFIG, SOURCES)
        store.restore(fold, local.records())
        fold.take_changed()
        fold.partials.take_dirty_days()
        return fold

    def collect(self, fold):
        """The transaction's records (the worker applies more events while it commits)."""
        out = Outgoing()
        self.store.collect(fold, {"clicks": 1}, out)
        return out

    def finish(self, out):
        """The transaction committed: its state records go to the local store."""
        sent = []
        for _ in out.records:
            sent.append(SimpleNamespace(offset=self.offset))
            self.offset += 1
        self.offset += 1  # the commit marker
        self.store._write_local(out, sent)
        return out

    def commit(self, fold):
        return self.finish(self.collect(fold))


def outcome(fold):
    records = [(r.kind, r.key, r.value) for r in fold.outbox.drain()]
    users = {u: encode_user(fold.users[u], NAMES) for u in sorted(fold.users)}
    churn = fold.churn.model.to_json() if fold.churn else None
    return build_report(fold.partials, CONFIG), records, users, churn


@pytest.fixture(scope="module")
def in_memory():
    """The all-in-memory outcome per batch size (batches move the horizon, and so what
    records keep of finished funnel days)."""
    memo = {}

    def of(batch):
        if batch not in memo:
            fold = Fold(CONFIG, SOURCES)
            records = []
            for i in range(0, len(TRAFFIC), batch):
                apply(fold, TRAFFIC[i : i + batch])
                records += [(r.kind, r.key, r.value) for r in fold.outbox.drain()]
            report, _, users, churn = outcome(fold)
            memo[batch] = report, records, users, churn
        return memo[batch]

    return of


# Few, small choices: shrinking adds nothing but minutes to a failure.
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(
    capacity=st.sampled_from([1, 7, 60]),
    every=st.integers(1, 4),
    batch=st.sampled_from([50, 300]),
    restart_at=st.floats(0.2, 0.8),
)
def test_few_users_in_memory_fold_as_all_in_memory(
    tmp_path_factory, in_memory, capacity, every, batch, restart_at
):
    # A PartitionStore makes its (unused) producer in a running event loop.
    path = tmp_path_factory.mktemp("local") / "p0"
    asyncio.run(_fold_over_local_store(path, in_memory, capacity, every, batch, restart_at))


async def _fold_over_local_store(path, in_memory, capacity, every, batch, restart_at):
    committer = Committer(path, capacity)
    fold = committer.open()
    assert isinstance(fold.users, UserTable)
    records = []
    chunks = [TRAFFIC[i : i + batch] for i in range(0, len(TRAFFIC), batch)]
    restart = int(len(chunks) * restart_at)
    pending = None  # a transaction being committed while the next chunk is applied
    for n, chunk in enumerate(chunks, 1):
        apply(fold, chunk)
        if pending is not None:
            committer.finish(pending)
            records += _derived(pending)
            pending = None
        if n % every == 0 or n == restart:
            out = committer.collect(fold)
            if n == restart or n % 2:
                committer.finish(out)
                records += _derived(out)
                assert fold.users.cached <= capacity + len(fold.changed)
            else:
                pending = out
        if n == restart:  # the worker stops after a commit; a new one opens the store
            committer.store.local.close()
            committer = _reopen(committer, capacity)
            fold = committer.open()
            assert fold.users.cached == 0
    if pending is not None:
        committer.finish(pending)
        records += _derived(pending)
    records += _derived(committer.commit(fold))
    report, _, users, churn = outcome(fold)
    expected_report, expected_records, expected_users, expected_churn = in_memory(batch)
    assert report == expected_report
    assert users == expected_users
    assert churn == expected_churn
    assert _sorted(records) == _sorted(expected_records)
    assert fold.users.loads > 0  # users were read back from the store


def _reopen(committer, capacity):
    fresh = Committer(committer.store.local_dir, capacity)
    fresh.offset = committer.offset
    return fresh


def _derived(out):
    """The derived records of a transaction, as (kind, key, value)."""
    kinds = {CONFIG.topics.segments: "segments", CONFIG.topics.triggers: "triggers",
             CONFIG.topics.churn_scores: "churn_scores", CONFIG.topics.alerts: "alerts"}  # fmt: skip
    return [
        (kinds[topic], key.decode(), orjson.loads(value))
        for topic, _, key, value, _ in out.records
        if topic in kinds
    ]


def _sorted(records):
    return sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def test_a_corrupt_local_store_is_rebuilt_not_trusted(tmp_path):
    path = tmp_path / "p0"
    store, offset = LocalStore.open(path, "t", 0)
    assert offset is None
    store.apply([(b"u/%d" % i, b"x" * 200) for i in range(20_000)], 20_000)
    store._db.flush()
    store.close()
    store, offset = LocalStore.open(path, "t", 0)
    assert (offset, store.users) == (20_000, 20_000)
    store.close()
    for sst in path.glob("*.sst"):
        data = bytearray(sst.read_bytes())
        for i in range(100, len(data) - 100, 997):
            data[i] ^= 0xFF
        sst.write_bytes(bytes(data))
    store, offset = LocalStore.open(path, "t", 0)
    assert (offset, store.users) == (None, 0)  # rebuilt from the topic
    store.close()


def test_a_local_store_of_another_partition_or_too_old_is_not_trusted(tmp_path, monkeypatch):
    path = tmp_path / "p0"
    store, _ = LocalStore.open(path, "t", 0)
    store.apply([(b"u/a", b"A")], 7)
    store.close()
    store, offset = LocalStore.open(path, "t", 1)
    assert offset is None and store.get(b"u/a") is None
    store.apply([(b"u/a", b"A")], 7)
    store.close()
    monkeypatch.setattr(localstore, "TOMBSTONE_RETENTION_MS", -1)
    store, offset = LocalStore.open(path, "t", 1)
    assert offset is None and store.users == 0
    store.close()


async def test_a_local_store_outside_the_topics_offsets_is_read_again_from_the_beginning(tmp_path):
    path = tmp_path / "p0"
    store, _ = LocalStore.open(path, "t.state", 0)
    store.apply([(b"u/a", b"A")], 50)
    store.close()
    partition = PartitionStore("unused:9092", "t", 0, Config(), local_dir=path)
    local = partition.open_local(0, 60)
    assert partition.local_offset == 50 and local.users == 1  # a tail of 10 to read
    local.close()
    partition = PartitionStore("unused:9092", "t", 0, Config(), local_dir=path)
    local = partition.open_local(0, 20)  # the topic was recreated: fewer records
    assert partition.local_offset == 0 and local.users == 0
    local.close()
