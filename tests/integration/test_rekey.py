"""Producers that do not key by user: events reach their user's partition through
`<app_id>.repartition`, exactly once, and the snapshot still equals replay."""

import random

import pytest
from cluster import same_numbers

from streams.generator import GeneratorSpec

pytestmark = pytest.mark.slow

SPEC = GeneratorSpec(seed=5, days=4, new_users_per_day=50, duplicate_rate=0.02, invalid_rate=0.003)


async def test_random_keys_and_no_keys_give_the_replays_numbers(cluster):
    rng = random.Random(3)

    def session_key_or_none(line: bytes) -> bytes | None:
        return None if rng.random() < 0.5 else b"session-%d" % rng.randrange(1000)

    cluster.start("w1")
    cluster.start("w2")  # two workers: many events cross to a partition another worker owns
    # At a live pace (4 days of event time in ~20 s): re-keyed events reach their
    # partition one commit interval after direct ones, well inside the lateness bound.
    sent = await cluster.produce(SPEC, key_of=session_key_or_none, rate=180)
    live = await cluster.wait_consumed(timeout=180)
    assert same_numbers(live, cluster.replay()) == {}
    assert live["events"]["consumed"] == sent
    assert await cluster.wait_lag_zero() == 0
    rekeyed = sum(
        v
        for name in ("w1", "w2")
        for (metric, _), v in cluster.scrape(name).items()
        if metric == "opspulse_rekeyed_events_total"
    )
    assert sent * 0.6 < rekeyed < sent  # ~7/8 of the valid events sit in another partition
