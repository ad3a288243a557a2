"""Step conversion per 5-minute bucket (what alerts judge) against a naive reference
written from METRICS.md ("Alert rates") alone — attempts, successes and per
breakdown value — in any arrival order inside the lateness bound, split across
partitions; and the evaluator reads each complete bucket once, merged."""

import random
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sharding import merged_shards
from strategies import T0

from state.alert_evaluator import Evaluator
from state.alerting import BUCKET_MS, DAY_BUCKETS
from state.config import DAY_MS, AlertSpec, Config, FunnelSpec
from state.fold import Fold
from state.kpis.alert_rates import PREFIX
from streams.events import Event

WINDOW = 30 * 60_000
FUNNEL = FunnelSpec("buy", ("view", "cart", "pay"), DAY_MS)
CONFIG = Config(funnels=(FUNNEL,), alerts=AlertSpec(pairs=("buy:view>cart", "buy:cart>pay")))
PAIRS = [(0, "view", "cart"), (1, "cart", "pay")]


def naive_rates(events):
    """{(pair index, dimension or None, value or None, bucket): [attempts, successes]}."""
    unique = list({e.event_id: e for e in events}.values())
    by_user = defaultdict(list)
    for e in unique:
        by_user[e.user_id].append(e)
    out = defaultdict(lambda: [0, 0])
    for mine in by_user.values():
        for index, a, b in PAIRS:
            buckets = defaultdict(list)
            for e in mine:
                if e.type == a:
                    buckets[e.ts // BUCKET_MS].append(e)
            for bucket, firsts in buckets.items():
                success = any(
                    x.type == b and f.ts < x.ts <= f.ts + WINDOW for f in firsts for x in mine
                )
                first = min(firsts, key=lambda e: (e.ts, e.event_id))
                keys = [(index, None, None, bucket)] + [
                    (index, dim, getattr(first, dim), bucket) for dim in ("channel", "device")
                ]
                for key in keys:
                    out[key][0] += 1
                    out[key][1] += success
    return {k: v for k, v in out.items()}


def folded_rates(partials):
    out = defaultdict(lambda: [0, 0])
    for name, rows in partials.tables.items():
        if not name.startswith(PREFIX):
            continue
        parts = name[len(PREFIX) :].split("/")
        index = int(parts[1])
        dim, value = (parts[2], parts[3]) if len(parts) > 2 else (None, None)
        if dim == "region":
            continue
        for day, row in rows.items():
            for slot in range(0, len(row), 2):
                if row[slot] or (slot + 1 < len(row) and row[slot + 1]):
                    bucket = day * DAY_BUCKETS + slot // 2
                    out[(index, dim, value, bucket)][0] += row[slot]
                    out[(index, dim, value, bucket)][1] += (
                        row[slot + 1] if slot + 1 < len(row) else 0
                    )
    return {k: v for k, v in out.items() if v != [0, 0]}


@st.composite
def step_events(draw):
    events = []
    for i in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["view", "view", "cart", "pay", "other"]))
        ts = T0 + draw(st.integers(0, 40)) * 5 * 60_000 + draw(st.sampled_from([0, 1, -1, 150_000]))
        events.append(Event(f"e{i}", draw(st.sampled_from(["u0", "u1", "u2"])), ts, kind,
                            channel=draw(st.sampled_from(["ads", "organic"])),
                            device=draw(st.sampled_from(["ios", "android"])),
                            region="eu"))  # fmt: skip
    return events + events[: draw(st.integers(0, 3))]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=step_events(), seed=st.integers(0, 10**6))
def test_bucket_counts_equal_the_naive_reference(events, seed):
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(DAY_MS))
    assert folded_rates(merged_shards(CONFIG, arrived)) == naive_rates(events)


def test_the_evaluator_reads_complete_buckets_merged_over_partitions():
    events = [
        Event("v1", "u1", T0 + 1_000, "view", device="ios"),
        Event("c1", "u1", T0 + 60_000, "cart", device="ios"),
        Event("v2", "u2", T0 + 2_000, "view", device="android"),
    ]
    folds = [Fold(CONFIG), Fold(CONFIG)]
    folds[0].apply_batch([("u1", events[0]), ("u1", events[1])], "p")
    folds[1].apply_batch([("u2", events[2])], "p")
    evaluator = Evaluator(CONFIG)
    evaluator.next_bucket = T0 // BUCKET_MS
    # Not complete before the bucket's end + the outcome window has passed.
    evaluator.advance([f.partials for f in folds], T0 + BUCKET_MS + WINDOW)
    series = evaluator.series["buy:view>cart"]
    assert series.total == {}
    evaluator.advance([f.partials for f in folds], T0 + BUCKET_MS + WINDOW + 1)
    bucket = T0 // BUCKET_MS
    assert series.total == {bucket: (2, 1)}
    assert series.by_value[("device", "android")] == {bucket: (1, 0)}
    assert series.by_value[("device", "ios")] == {bucket: (1, 1)}
