"""Channels against a naive reference written from METRICS.md ("Channels") alone: per
acquisition channel and day new users, paid within 7 days, revenue, spend, CAC;
per-channel retention; totals with CAC and ROI — in any arrival order inside the
lateness bound and split across partitions."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive_actions import naive_channels
from sharding import merged_shards
from strategies import T0, TIMEZONES, event_sets

from state.config import DAY_MS, Config
from state.fold import Fold
from state.report import build_report
from streams.events import SpendEvent


@st.composite
def spend_events(draw):
    n = draw(st.integers(0, 6))
    spend = [
        SpendEvent(f"s{i}", T0 + draw(st.integers(0, 10)) * DAY_MS // 2,
                   draw(st.sampled_from(["ads", "organic", "tv"])), draw(st.integers(1, 50_000)))
        for i in range(n)
    ]  # fmt: skip
    return spend + spend[: draw(st.integers(0, n))]  # redeliveries: identical copies


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_sets(max_days=40), spend=spend_events(), tz=st.sampled_from(TIMEZONES),
       seed=st.integers(0, 10**6))  # fmt: skip
def test_channels_equal_the_naive_reference(events, spend, tz, seed):
    config = Config(timezone=tz)
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(DAY_MS))
    merged = merged_shards(config, arrived, shards=3, spend=spend)
    report = build_report(merged, config)
    assert report["channels"] == naive_channels(events, spend, tz)


def test_paid_7d_counts_orders_strictly_before_seven_days():
    from streams.events import Event

    config = Config()
    events = []
    for user, delay in (("in", 7 * DAY_MS - 1), ("out", 7 * DAY_MS)):
        events += [Event(f"{user}0", user, T0, "page_view", channel="ads"),
                   Event(f"{user}1", user, T0 + delay, "order_paid", order_id="x",
                         amount_cents=100)]  # fmt: skip
    fold = Fold(config)
    fold.apply_batch([(e.user_id, e) for e in sorted(events, key=lambda e: e.ts)], "p")
    day = build_report(fold.partials, config)["channels"]["ads"]["days"]["2026-11-01"]
    assert (day["new_users"], day["paid_7d"]) == (2, 1)
