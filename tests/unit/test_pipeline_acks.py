"""The worker's exactly-once rule, without Kafka: an input message is acknowledged
(so Faust may commit its offset) only after the transaction holding its effects
committed, and a redelivered offset is never applied twice."""

import asyncio

import orjson

from agents.pipeline import PartitionRuntime, Pipeline
from agents.statestore import Outgoing
from state.config import Config
from state.fold import Fold


class FakeStore:
    """Stands in for PartitionStore: records what each transaction would hold."""

    def __init__(self):
        self.committed: list[Outgoing] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def collect(self, fold, offsets, out):
        out.add(
            "state", b"m", orjson.dumps({"offsets": offsets, "users": sorted(fold.take_changed())})
        )

    async def commit(self, out):
        await self.gate.wait()
        self.committed.append(out)

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


async def test_acks_wait_for_the_state_transaction():
    store = FakeStore()
    pipeline = pipeline_with(store)
    acked = []
    for offset in range(3):
        pipeline.handle("clicks", 0, offset, b"u1", event(offset), lambda o=offset: acked.append(o))
    assert acked == []  # applied in memory, not acknowledged
    store.gate.clear()
    commit = asyncio.create_task(pipeline.commit_partition(0))
    await asyncio.sleep(0.01)
    assert acked == []  # the transaction is still open
    store.gate.set()
    await commit
    assert acked == [0, 1, 2]
    meta = orjson.loads(store.committed[0].records[0][3])
    assert meta["offsets"] == {"clicks": 2}


async def test_a_failed_transaction_acknowledges_nothing():
    store = FakeStore()

    async def fail(out):
        raise RuntimeError("fenced")

    store.commit = fail
    pipeline = pipeline_with(store)
    acked = []
    pipeline.handle("clicks", 0, 0, b"u1", event(0), lambda: acked.append(0))
    try:
        await pipeline.commit_partition(0)
    except RuntimeError:
        pass
    assert acked == []


async def test_redelivered_offsets_are_acknowledged_but_not_applied_again():
    store = FakeStore()
    pipeline = pipeline_with(store)
    pipeline.partitions[0].offsets["clicks"] = 5  # the stored state already holds offsets 0..5
    acked = []
    for offset in (4, 5, 6):
        pipeline.handle("clicks", 0, offset, b"u1", event(offset), lambda o=offset: acked.append(o))
    await pipeline.commit_partition(0)
    assert acked == [4, 5, 6]
    assert pipeline.partitions[0].fold.partials.counters["consumed"] == 1
