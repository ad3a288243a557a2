"""The worker's exactly-once rule, without Kafka: input offsets are committed only
inside the transaction that holds their effects, a redelivered offset is never
applied twice, and dead letters travel in the same transaction."""

import asyncio
from collections import namedtuple

import orjson

from agents.pipeline import PartitionRuntime, Pipeline
from state.config import Config
from state.fold import Fold

Record = namedtuple("Record", "offset key value")


class FakeStore:
    """Stands in for PartitionStore: records what each transaction would hold."""

    def __init__(self):
        self.transactions = []  # (records, offsets)

    def collect(self, fold, offsets, out):
        out.add(
            "state", b"m", orjson.dumps({"offsets": offsets, "users": sorted(fold.take_changed())})
        )

    async def commit(self, out, offsets):
        await asyncio.sleep(0)
        self.transactions.append((out.records, offsets))

    async def stop(self):
        pass


def event(i, user="u1"):
    return orjson.dumps(
        {"event_id": f"e{i}", "user_id": user, "ts": 1_793_491_200_000 + i, "type": "page_view"}
    )


def pipeline_with(store):
    config = Config()
    pipeline = Pipeline(config, "unused:9092", "test")
    pipeline.partitions[0] = PartitionRuntime(store, Fold(config), {})
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
