"""The same check battery on every KPI module (state/kpis/): its part of the report
does not change with redelivery, with any arrival order inside the lateness bound,
with users split over partitions whose partials are then merged, or with the user
records and day partials going through their stored encodings mid-stream."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import TIMEZONES, event_sets

from state.codec import decode_day, decode_user, encode_day, encode_user
from state.config import DAY_MS, Config, FunnelSpec
from state.fold import Fold
from state.kpis import all_kpis
from state.partials import Partials
from state.report import day_range

LATENESS = 2 * DAY_MS
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The churn model is per partition by design (METRICS.md): its figures depend on the
# split, so it is not in this battery; tests/unit/test_churn.py checks it against a
# naive count, across arrival orders and across a restore.
KPIS = {kpi.name: kpi for kpi in all_kpis() if kpi.name != "churn"}


def config_for(tz):
    return Config(timezone=tz, allowed_lateness_ms=LATENESS, funnels=(
        FunnelSpec("purchase", ("page_view", "add_to_cart", "checkout", "order_paid"), DAY_MS),
        FunnelSpec("quick", ("login", "add_to_cart"), 3_600_000),
    ))  # fmt: skip


def part(kpi, partials, config):
    """The KPI's own part of the report."""
    days = day_range(partials)
    out = {"days": {d: {} for d in days}}
    kpi.render(partials, config, days, out)
    return out


def fold(config, events, folds=None):
    f = folds or Fold(config)
    f.apply_batch([(e.user_id, e) for e in events], "p")
    return f


def in_order(events):
    return sorted(events, key=lambda e: (e.ts, e.event_id))


@pytest.mark.parametrize("name", sorted(KPIS))
@SETTINGS
@given(events=event_sets(), tz=st.sampled_from(TIMEZONES), seed=st.integers(0, 10**6))
def test_kpi_is_stable_under_redelivery_order_splitting_and_encoding(name, events, tz, seed):
    kpi, config, rng = KPIS[name], config_for(tz), random.Random(seed)
    expected = part(kpi, fold(config, in_order(events)).partials, config)

    # Redelivery: every event once more, anywhere later.
    again = in_order(events) + [rng.choice(events) for _ in range(len(events) // 2 + 1)]
    assert part(kpi, fold(config, again).partials, config) == expected

    # Arrival order: each event delayed by less than the lateness bound.
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(LATENESS // 2))
    assert part(kpi, fold(config, arrived).partials, config) == expected

    # Split over partitions by user, partials merged.
    shards = [Fold(config) for _ in range(3)]
    for e in in_order(events):
        fold(config, [e], shards[hash(e.user_id) % 3])
    # Event-time timers (cart triggers) fire with each partition's stream time: bring
    # every partition to the same one.
    end = max(e.ts for e in events)
    for shard in shards:
        shard.watermarks["other"] = end  # as if another source of it had reached `end`
        shard.fire_timers(end)
    merged = Partials(funnel_steps=shards[0].partials.funnel_steps)
    for shard in shards:
        merged.merge(shard.partials)
    assert part(kpi, merged, config) == expected

    # Stored encodings mid-stream (what a restarted worker reads back).
    ordered = in_order(events)
    half = len(ordered) // 2
    first = fold(config, ordered[:half])
    names = [f.name for f in config.funnels]
    restored = Fold(config)
    restored.users = {
        u: decode_user(encode_user(user, names), restored.ctx.clock, names)
        for u, user in first.users.items()
    }
    restored.partials = Partials(
        funnel_steps=first.partials.funnel_steps, counters=dict(first.partials.counters)
    )
    for d in first.partials.take_dirty_days():
        restored.partials.set_day_record(
            decode_day(encode_day(first.partials.day_record(d), names), names)
        )
    restored.watermarks = dict(first.watermarks)
    restored.timers = first.timers  # restored with the state (agents/statestore.py)
    restored.restore_horizon()
    assert part(kpi, fold(config, ordered[half:], restored).partials, config) == expected
