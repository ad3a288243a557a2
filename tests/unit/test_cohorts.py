"""Cohort views against the naive reference (tests/naive_cohorts.py, written from
METRICS.md alone): in time order, in any arrival order inside the lateness bound,
and in non-UTC timezones where weeks and months start at local midnight."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive_cohorts import naive_cohorts
from naive_segments import naive_segments
from strategies import TIMEZONES, event_sets

from state.config import DAY_MS, Config
from state.fold import Fold
from state.report import build_report

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMPLEMENTED = (
    "retention_weekly", "retention_monthly", "paying_retention_monthly", "active_days",
    "repurchase_cycle", "activation_7d", "reactivation",
)  # fmt: skip


def cohorts(events, config):
    fold = Fold(config)
    fold.apply_batch([(e.user_id, e) for e in events], "p")
    report = build_report(fold.partials, config)
    return {k: report["cohorts"][k] for k in IMPLEMENTED}


# Dense sets (a few days around Sunday 2026-11-01 / Monday 2026-11-02, which is
# in October in New York) make late first events move users across week and month
# boundaries; sparse ones span months and the 26-week and 12-month horizons.
@pytest.mark.parametrize("max_days", [12, 800])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tz=st.sampled_from(TIMEZONES), seed=st.integers(0, 10**6))
def test_cohort_views_equal_the_naive_reference(max_days, data, tz, seed):
    events = data.draw(event_sets(max_days=max_days))
    config = Config(timezone=tz, allowed_lateness_ms=2 * DAY_MS)
    expected = naive_cohorts(events, timezone=tz)
    if not expected:
        return
    in_order = sorted(events, key=lambda e: (e.ts, e.event_id))
    assert cohorts(in_order, config) == {k: expected[k] for k in IMPLEMENTED}
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(3 * DAY_MS // 2))
    assert cohorts(arrived, config) == {k: expected[k] for k in IMPLEMENTED}


@SETTINGS
@given(event_sets(max_days=60), st.integers(0, 10**6))
def test_activation_follows_the_configured_events(events, seed):
    config = Config.from_mapping({"activation": {"events": ["add_to_cart", "push_sent"]}})
    expected = naive_cohorts(events, activation_events=("add_to_cart", "push_sent"))
    if not expected:
        return
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(DAY_MS))
    assert cohorts(arrived, config)["activation_7d"] == expected["activation_7d"]


def test_four_months_of_generated_traffic_equal_the_reference_in_shanghai(tmp_path):
    """Users going dormant and coming back, repeat buyers, refunds, redeliveries."""
    from agents.replay import replay_files
    from streams.events import Event, parse_event
    from streams.generator import GeneratorSpec, write_files

    spec = GeneratorSpec(seed=17, days=125, new_users_per_day=12, start="2026-07-01")
    write_files(spec, tmp_path)
    lines = [
        line
        for name in ("clicks", "orders")
        for line in (tmp_path / f"{name}.jsonl").read_bytes().splitlines()
    ]
    events = [e for e in map(parse_event, lines) if isinstance(e, Event)]
    config = Config(timezone="Asia/Shanghai")
    report, _, _ = replay_files(
        config, tmp_path / "clicks.jsonl", tmp_path / "orders.jsonl", now_ms=1 << 62
    )
    expected = naive_cohorts(events, timezone="Asia/Shanghai")
    assert {k: report["cohorts"][k] for k in IMPLEMENTED} == {k: expected[k] for k in IMPLEMENTED}
    assert len(expected["retention_monthly"]) >= 4 and len(expected["reactivation"]) >= 2
    assert sum(m["gaps"] for m in expected["repurchase_cycle"].values()) > 50
    assert any(e.type == "order_refunded" for e in events)
    # The classifications as of each day, and revenue by LTV tier, on the same traffic.
    segments = naive_segments(events, timezone="Asia/Shanghai")
    keys = ("repurchase_rate_30d", "ltv_tiers", "rfm", "lifecycle")
    got = {d: {k: row[k] for k in keys} for d, row in report["days"].items()}
    assert got == segments["days"]
    assert report["cohorts"]["revenue_by_tier"] == segments["revenue_by_tier"]
    last = segments["days"][max(segments["days"])]
    assert all(last["lifecycle"].values()) and last["ltv_tiers"]["high"] > 0
