"""The worker's exactly-once rule, without Kafka: input offsets are committed only
inside the transaction that holds their effects, a redelivered offset is never
applied twice, and dead letters travel in the same transaction."""

import asyncio
from collections import namedtuple

import orjson
import pytest

from agents.pipeline import CommitFailed, PartitionRuntime, Pipeline
from state.config import Config
from state.fold import Fold

Record = namedtuple("Record", "offset key value headers", defaults=[None])
RecordH = Record


class FakeStore:
    """Stands in for PartitionStore: records what each transaction would hold."""

    partition = 0  # the Kafka partition number
    table = None  # users all in memory (no local store)

    def __init__(self):
        self.transactions = []  # (records, offsets)

    def collect(self, fold, offsets, out, complete_ms=None):
        out.add(
            "state", b"m", orjson.dumps({"offsets": offsets, "users": sorted(fold.take_changed())})
        )

    async def commit(self, out, offsets):
        await asyncio.sleep(0)
        self.transactions.append((out.records, offsets))

    async def stop(self):
        pass


class FailingStore(FakeStore):
    """A store whose next commit fails (broker restart, leader change, fencing)."""

    def __init__(self, fail_times=1):
        super().__init__()
        self.fail_times = fail_times

    async def commit(self, out, offsets):
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("broker went away mid-transaction")
        await super().commit(out, offsets)


def event(i, user="u1"):
    return orjson.dumps(
        {"event_id": f"e{i}", "user_id": user, "ts": 1_793_491_200_000 + i, "type": "page_view"}
    )


def pipeline_with(store):
    config = Config()
    pipeline = Pipeline(config, "unused:9092", "test")
    pipeline.partitions[0] = PartitionRuntime(store, Fold(config, pipeline._sources(0)), {})
    return pipeline


async def test_input_offsets_are_committed_in_the_same_transaction_as_their_state():
    store = FakeStore()
    pipeline = pipeline_with(store)
    await pipeline.handle_batch("clicks", 0, [Record(o, b"u1", event(o)) for o in range(3)])
    assert store.transactions == []  # applied in memory only
    await pipeline.commit_partition(0)
    ((records, offsets),) = store.transactions
    assert offsets == {"clicks": 2}
    meta = orjson.loads(records[-1][3])
    assert meta == {"offsets": {"clicks": 2}, "users": ["u1"]}
    await pipeline.commit_partition(0)
    assert len(store.transactions) == 1  # nothing new: no empty transaction


async def test_redelivered_offsets_are_not_applied_again():
    store = FakeStore()
    pipeline = pipeline_with(store)
    pipeline.partitions[0].offsets["clicks"] = 5  # the stored state already holds offsets 0..5
    await pipeline.handle_batch("clicks", 0, [Record(o, b"u1", event(o)) for o in (4, 5, 6)])
    assert pipeline.partitions[0].fold.partials.counters["consumed"] == 1
    await pipeline.commit_partition(0)
    assert store.transactions[0][1] == {"clicks": 6}


async def test_dead_letters_travel_in_the_transaction_with_their_reason():
    store = FakeStore()
    pipeline = pipeline_with(store)
    await pipeline.handle_batch(
        "orders", 0, [Record(7, b"u1", b"{broken"), Record(8, b"u1", event(8))]
    )
    await pipeline.commit_partition(0)
    records, offsets = store.transactions[0]
    letters = [r for r in records if r[0] == "opspulse.dlq"]
    assert len(letters) == 1 and letters[0][3] == b"{broken"
    headers = dict(letters[0][4])
    assert headers["opspulse.reason"] == b"not_json" and headers["opspulse.offset"] == b"7"
    assert offsets == {"orders": 8}


async def test_an_event_outside_its_users_partition_is_forwarded_in_the_same_transaction():
    store = FakeStore()
    pipeline = pipeline_with(store)  # partition 0 of 8; "u2" lives in partition 6
    keyed_by_session = Record(3, b"session-9", event(3, user="u2"))
    right_partition = Record(4, b"session-9", event(4, user="u1"))  # u1 lives in 0: applied
    await pipeline.handle_batch("clicks", 0, [keyed_by_session, right_partition])
    counters = pipeline.partitions[0].fold.partials.counters
    assert counters["consumed"] == 1 and counters["valid"] == 1  # counted where it is applied
    await pipeline.commit_partition(0)
    records, offsets = store.transactions[0]
    moved = [r for r in records if r[0] == "test.repartition"]
    assert [(r[1], r[2], r[3]) for r in moved] == [(6, b"u2", event(3, user="u2"))]
    assert dict(moved[0][4]) == {"opspulse.topic": b"clicks"}
    assert offsets == {"clicks": 4}


async def test_rekeyed_events_keep_a_watermark_per_original_topic():
    store = FakeStore()
    pipeline = pipeline_with(store)
    day = 86_400_000
    late_order = orjson.dumps(
        {"event_id": "o1", "user_id": "u1", "ts": 1_793_491_200_000 - 3 * day,
         "type": "order_paid", "order_id": "x", "amount": 5}
    )  # fmt: skip
    batch = [
        Record(0, b"u1", event(10)),
        Record(1, b"u1", late_order),  # 3 days older than the re-keyed clicks, not than orders
    ]
    for record in batch:
        record_headers = [("opspulse.topic", b"orders" if record.offset else b"clicks")]
        await pipeline.handle_batch(
            "test.repartition",
            0,
            [RecordH(record.offset, record.key, record.value, record_headers)],
        )
    counters = pipeline.partitions[0].fold.partials.counters
    assert counters["valid"] == 2 and counters["late"] == 0
    assert set(pipeline.partitions[0].fold.watermarks) == {
        ("test.repartition:clicks", 0),
        ("test.repartition:orders", 0),
    }


def test_an_event_older_than_the_partitions_horizon_is_late_whatever_its_source():
    config = Config()
    fold = Fold(config, sources=["clicks-0"])
    day = 86_400_000
    t0 = 1_793_491_200_000
    page = {"user_id": "u1", "type": "page_view"}
    from streams.events import parse_event

    fold.apply_batch([("u1", parse_event(orjson.dumps({**page, "event_id": "a", "ts": t0 + 5 * day})))], "clicks-0")  # fmt: skip
    assert fold.ctx.horizon_ms == t0 + 3 * day
    old = parse_event(orjson.dumps({**page, "event_id": "b", "ts": t0 + 2 * day}))
    late = fold.apply_batch([("u1", old)], "rekeyed")  # a source with no watermark yet
    assert late == [old] and fold.partials.counters["late"] == 1


async def test_after_a_failed_transaction_nothing_of_the_partition_is_committed_again():
    store = FailingStore()
    pipeline = pipeline_with(store)
    await pipeline.handle_batch("clicks", 0, [Record(o, b"u1", event(o)) for o in range(3)])
    with pytest.raises(CommitFailed):
        await pipeline.commit_partition(0)  # the interval with u1 and offsets 0..2 is lost
    # A later interval must not commit offsets past the failed one without its users.
    await pipeline.handle_batch("clicks", 0, [Record(3, b"u9", event(3, user="u9"))])
    with pytest.raises(CommitFailed):
        await pipeline.commit_all()
    # Nor may the shutdown path (app.crash -> stop -> revoke).
    with pytest.raises(CommitFailed):
        await pipeline.stop()
    assert store.transactions == []
    assert pipeline.partitions == {}  # dropped: the next owner reloads it from Kafka


async def test_a_failed_partition_does_not_stop_the_others_from_committing():
    failing, healthy = FailingStore(), FakeStore()
    pipeline = pipeline_with(failing)
    pipeline.partitions[6] = PartitionRuntime(healthy, Fold(Config(), pipeline._sources(6)), {})
    await pipeline.handle_batch("clicks", 0, [Record(0, b"u1", event(0))])
    await pipeline.handle_batch("clicks", 6, [Record(0, b"u2", event(1, user="u2"))])
    with pytest.raises(CommitFailed):
        await pipeline.commit_all()
    assert [offsets for _, offsets in healthy.transactions] == [{"clicks": 0}]


def scrape(metrics):
    from prometheus_client.parser import text_string_to_metric_families

    text = metrics.exposition()[0].decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_every_consumed_message_and_report_committed_outcomes():
    from agents.metrics import Metrics

    store = FakeStore()
    pipeline = pipeline_with(store)
    pipeline.metrics = metrics = Metrics(pipeline.config)
    metrics.attach(pipeline, app=None)
    # A batch of invalid messages only still counts as consumed.
    await pipeline.handle_batch("clicks", 0, [Record(0, b"u1", b"{bad"), Record(1, b"u1", b"[]")])
    await pipeline.handle_batch("clicks", 0, [Record(2, b"u1", event(2))])
    before = scrape(metrics)
    assert before[("opspulse_events_consumed_total", (("topic", "clicks"),))] == 3
    # Not committed yet: the "committed" outcomes must not show it.
    assert before.get(("opspulse_events", (("outcome", "consumed"),)), 0) == 0
    await pipeline.commit_partition(0)
    after = scrape(metrics)
    assert after[("opspulse_events", (("outcome", "consumed"),))] == 3
    assert after[("opspulse_events", (("outcome", "invalid"),))] == 2


async def test_a_rebalance_keeps_unchanged_partitions_and_reloads_the_rest():
    stores = {p: FakeStore() for p in range(3)}
    pipeline = pipeline_with(stores[0])
    for p in (1, 2):
        pipeline.partitions[p] = PartitionRuntime(
            stores[p], Fold(Config(), pipeline._sources(p)), {}
        )
    loaded = []

    async def load(p):
        loaded.append(p)
        pipeline.partitions[p] = PartitionRuntime(FakeStore(), Fold(Config()), {})

    async def unchanged(partitions):
        return {0}  # partition 1 was committed by another worker meanwhile

    pipeline._load, pipeline._unchanged_since_commit = load, unchanged
    await pipeline.revoke([0, 1, 2])  # eager protocol: everything is revoked
    assert pipeline.partitions == {} and sorted(pipeline.suspended) == [0, 1, 2]
    kept = pipeline.suspended[0]
    await pipeline.assign([0, 1, 3])  # 2 moved away, 3 is new
    assert pipeline.partitions[0] is kept  # no reload
    assert sorted(loaded) == [1, 3]
    assert pipeline.suspended == {}


async def test_spend_is_deduplicated_dead_lettered_and_committed_under_its_own_key():
    from agents.pipeline import spend_key

    store = FakeStore()
    pipeline = pipeline_with(FakeStore())
    key = spend_key(2)
    pipeline.partitions[key] = PartitionRuntime(store, Fold(Config(), pipeline._sources(key)), {})

    def spend(i, amount):
        return orjson.dumps(
            {"event_id": f"s{i}", "ts": 1_793_491_200_000 + i, "channel": "ads", "amount": amount}
        )

    batch = [Record(0, b"ads", spend(1, 10)), Record(1, b"ads", spend(1, 10)),
             Record(2, b"ads", spend(2, -1)), Record(3, b"ads", spend(3, 2.5))]  # fmt: skip
    await pipeline.handle_batch("spend", 2, batch)
    fold = pipeline.partitions[key].fold
    assert fold.partials.spend == {("ads", 20758): 1250}
    assert {k: fold.partials.counters[k] for k in ("consumed", "valid", "duplicates", "invalid")} == {
        "consumed": 4, "valid": 2, "duplicates": 1, "invalid": 1,
    }  # fmt: skip
    await pipeline.commit_partition(key)
    records, offsets = store.transactions[0]
    assert offsets == {"spend": 3}
    letters = [r for r in records if r[0] == "opspulse.dlq"]
    assert [dict(r[4])["opspulse.reason"] for r in letters] == [b"bad_value"]


async def test_a_late_event_is_dead_lettered_with_reason_late():
    store = FakeStore()
    pipeline = pipeline_with(store)
    day = 86_400_000
    now, old = event(5 * day), event(0)  # 5 days older than the watermark: late
    await pipeline.handle_batch("clicks", 0, [Record(0, b"u1", now), Record(1, b"u1", old)])
    await pipeline.commit_partition(0)
    records, _ = store.transactions[0]
    letters = [r for r in records if r[0] == "opspulse.dlq"]
    assert [(r[3], dict(r[4])["opspulse.reason"]) for r in letters] == [(old, b"late")]


async def test_overflow_of_the_per_user_bounds_is_exported():
    from agents.metrics import Metrics
    from state.config import Limits

    config = Config(limits=Limits(dedup_ids_per_user=2, funnel_steps_per_user=3))
    pipeline = Pipeline(config, "unused:9092", "test")
    pipeline.partitions[0] = PartitionRuntime(FakeStore(), Fold(config, pipeline._sources(0)), {})
    pipeline.metrics = metrics = Metrics(config)
    metrics.attach(pipeline, app=None)
    await pipeline.handle_batch("clicks", 0, [Record(o, b"u1", event(o)) for o in range(10)])
    scraped = scrape(metrics)
    assert scraped[("opspulse_state_overflow_total", (("kind", "dedup_ids"),))] == 8
    assert scraped[("opspulse_state_overflow_total", (("kind", "funnel_steps"),))] == 7
    assert all("user" not in dict(labels) for _, labels in scraped)


async def test_a_commit_cancelled_mid_transaction_is_never_followed_by_another():
    class HangingStore(FakeStore):
        async def commit(self, out, offsets):
            await asyncio.sleep(3600)

    store = HangingStore()
    pipeline = pipeline_with(store)
    await pipeline.handle_batch("clicks", 0, [Record(0, b"u1", event(0))])
    task = asyncio.ensure_future(pipeline.commit_partition(0))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # the cancellation itself propagates
    await pipeline.handle_batch("clicks", 0, [Record(1, b"u2", event(1, user="u2"))])
    with pytest.raises(CommitFailed):
        await pipeline.stop()
    assert store.transactions == []
