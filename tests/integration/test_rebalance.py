"""A rebalance moves only the partitions that change owner: a worker keeps, without
reading their state again, the partitions it still owns (aiokafka's eager protocol
revokes all of them at every rebalance)."""

import asyncio

import pytest
from cluster import SPEND_PARTITIONS, same_numbers

from streams.generator import GeneratorSpec

pytestmark = pytest.mark.slow


def loads(cluster, name):
    return cluster.scrape(name)[("opspulse_partition_loads_total", ())]


async def wait_owned(cluster, name, n, timeout=60):
    for _ in range(timeout * 2):
        try:
            state = cluster.get(name, "/ready", expect=200)
            if len(state["partitions"]) == n:
                return
        except AssertionError:
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"{name} does not own {n} partitions")


async def test_a_joining_worker_makes_the_first_reload_nothing_it_keeps(cluster):
    cluster.start("w1")
    await cluster.produce(GeneratorSpec(seed=41, days=3, new_users_per_day=60))
    await cluster.wait_consumed()
    await wait_owned(cluster, "w1", 4)
    everything = 4 + SPEND_PARTITIONS  # user partitions and spend partitions
    assert loads(cluster, "w1") == everything
    cluster.start("w2")
    await cluster.wait_ready(["w1", "w2"])
    await wait_owned(cluster, "w1", 2)
    assert loads(cluster, "w1") == everything  # it kept what remained as it was
    kept = cluster.get("w1", "/ready")
    kept_n = len(kept["partitions"]) + len(kept["spend_partitions"])
    assert cluster.stop("w2") == 0
    await wait_owned(cluster, "w1", 4)
    # Only the partitions it got back were read.
    assert loads(cluster, "w1") == everything + (everything - kept_n)
    await cluster.produce(GeneratorSpec(seed=42, days=2, start="2026-11-03", new_users_per_day=60))
    live = await cluster.wait_consumed()
    assert same_numbers(live, cluster.replay()) == {}
