"""Replay of generated traffic equals the naive references (tests/naive_actions.py,
written from METRICS.md alone) for channels, experiments, push and cart triggers —
on traffic that exercises every rule: spend per channel, re-exposures and users
exposed to both variants, push campaigns at different local hours, repeat and
high-value buyers, abandoned and paid carts, redeliveries and malformed lines."""

from collections import Counter

import aiokafka.partitioner
import orjson
import pytest
from naive_actions import (
    local,
    naive_abandoned,
    naive_channels,
    naive_experiments,
    naive_push,
)

from agents.replay import replay_files
from state.config import Config, ExperimentSpec
from streams.events import Event, parse_event, parse_spend
from streams.generator import GeneratorSpec, write_files

TZ = "Asia/Shanghai"
SPEC = GeneratorSpec(
    seed=41, days=24, new_users_per_day=90, duplicate_rate=0.02, invalid_rate=0.002,
    start="2026-10-20",
)  # fmt: skip


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generated")
    write_files(SPEC, tmp)
    config = Config(timezone=TZ, experiments=ExperimentSpec(window_ms=3 * 86_400_000))
    triggers = tmp / "triggers.jsonl"
    report, _, _ = replay_files(
        config, tmp / "clicks.jsonl", tmp / "orders.jsonl", tmp / "spend.jsonl",
        derived_outputs={"triggers": triggers},
    )  # fmt: skip
    events = [
        e
        for name in ("clicks.jsonl", "orders.jsonl")
        for line in (tmp / name).read_bytes().splitlines()
        if isinstance(e := parse_event(line), Event)
    ]
    spend = [s for line in (tmp / "spend.jsonl").read_bytes().splitlines()
             if not hasattr(s := parse_spend(line), "reason")]  # fmt: skip
    records = [orjson.loads(line) for line in triggers.read_bytes().splitlines()]
    return config, report, events, spend, records


def test_the_traffic_exercises_every_rule(replayed):
    _, _, events, spend, _ = replayed
    variants: dict = {}
    exposures = Counter()
    for e in events:
        if e.type == "exposure":
            variants.setdefault(e.user_id, set()).add(e.variant)
            exposures[e.user_id] += 1
    assert sum(len(v) == 2 for v in variants.values()) >= 5  # exposed to both
    assert sum(n > 1 for n in exposures.values()) >= 50  # re-exposed
    hours = {local_hour(e.ts) for e in events if e.type == "push_sent"}
    assert len(hours) >= 3
    paid = Counter(e.user_id for e in events if e.type == "order_paid")
    assert sum(n >= 2 for n in paid.values()) >= 20  # repeat buyers
    revenue = Counter()
    for e in events:
        if e.type == "order_paid":
            revenue[e.user_id] += e.amount_cents
    assert sum(c >= 80_000 for c in revenue.values()) >= 5  # high value
    assert {s.channel for s in spend} >= {"ads", "social"}
    abandoned = naive_abandoned(events)
    carts = sum(e.type == "add_to_cart" for e in events)
    assert 50 <= len(abandoned) < carts  # abandoned and paid carts


def local_hour(ts):
    import datetime as dt
    import zoneinfo

    return dt.datetime.fromtimestamp(ts / 1000, zoneinfo.ZoneInfo(TZ)).hour


def test_channels_push_and_experiments_equal_the_naive_references(replayed):
    config, report, events, spend, _ = replayed
    assert report["channels"] == naive_channels(events, spend, TZ)
    assert report["push"] == naive_push(events, TZ)
    counts = {
        name: {v: [body["exposed"], body["converted"]] for v, body in x["variants"].items()}
        for name, x in report["experiments"].items()
    }
    assert counts == naive_experiments(events, window_ms=config.experiments.window_ms)


def test_cart_triggers_equal_the_naive_reference(replayed):
    config, report, events, _, records = replayed
    # A cart is decided once its partition's stream time (the largest event time of
    # its users' events) has passed the deadline; replay emulates Kafka's partitions.
    kafka = aiokafka.partitioner.DefaultPartitioner()
    parts = list(range(config.topics.partitions))
    stream: dict = {}
    partition = {}
    for e in events:
        p = partition.setdefault(e.user_id, kafka(e.user_id.encode(), parts, parts))
        stream[p] = max(stream.get(p, 0), e.ts)
    delay = config.thresholds.cart_abandon_after_ms
    expected = {
        cart for cart in naive_abandoned(events, delay)
        if cart[1] + delay < stream[partition[cart[0]]]
    }  # fmt: skip
    published = [(r["user_id"], r["cart_ts"], r["cart_event_id"]) for r in records]
    assert not [r for r in records if r.get("retracted")]  # replay reads in ts order
    assert len(published) == len(set(published)) and set(published) == expected
    by_day = Counter(local(ts, TZ).isoformat() for _, ts, _ in expected)
    assert report["triggers"] == {"cart_abandoned": dict(sorted(by_day.items()))}
