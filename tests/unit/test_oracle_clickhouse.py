"""opspulse against ClickHouse (chdb): the funnel level and whole reports, number for number."""

import datetime as dt

import clickhouse
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import TIMEZONES, event_sets

from state.clock import DayClock
from state.config import DAY_MS, Config, FunnelSpec
from state.fold import Fold
from state.funnel import funnel_level
from state.report import build_report

STEP_TYPES = ["A", "B", "C", "D"]


@st.composite
def funnel_cases(draw):
    n_steps = draw(st.integers(2, 4))
    base = 20758 * DAY_MS - 8  # step-1 events fall on both sides of midnight UTC
    events = draw(
        st.lists(
            st.tuples(
                st.integers(0, 24).map(lambda t: base + t),
                st.sampled_from(STEP_TYPES[:n_steps] + ["X"]),
            ),
            max_size=12,
        )
    )
    window = draw(st.sampled_from([0, 1, 2, 3, 5, 10]))
    day = draw(st.sampled_from([20757, 20758]))
    return events, n_steps, window, day


@settings(max_examples=300, deadline=None)
@given(funnel_cases())
def test_funnel_level_equals_clickhouse_window_funnel(case):
    events, n_steps, window, day = case
    steps = STEP_TYPES[:n_steps]
    ours = sorted((ts, steps.index(kind), ts // DAY_MS) for ts, kind in events if kind in steps)
    expected = clickhouse.clickhouse_funnel_level(events, steps, window, day, "UTC")
    assert funnel_level(ours, n_steps, window, day) == expected


FUNNELS = (
    FunnelSpec("purchase", ("page_view", "add_to_cart", "checkout", "order_paid"), DAY_MS),
    FunnelSpec("quick", ("login", "add_to_cart"), 3_600_000),
)


def as_dicts(events):
    return [
        {"event_id": e.event_id, "user_id": e.user_id, "ts": e.ts, "type": e.type}
        | ({"amount": e.amount_cents / 100} if e.type.startswith("order") else {})
        for e in events
    ]


def oracle_report(events, config):
    return clickhouse.clickhouse_report(
        as_dicts(events),
        timezone=config.timezone,
        funnels=[(f.name, list(f.steps), f.window_ms) for f in config.funnels],
        inactive_types=tuple(config.inactive_types),
    )


def ours(events, config):
    fold = Fold(config)
    fold.apply_batch([(e.user_id, e) for e in sorted(events, key=lambda e: e.ts)], "p")
    return build_report(fold.partials, config)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets(), st.sampled_from(TIMEZONES))
def test_random_event_sets_match_clickhouse(events, tz):
    config = Config(timezone=tz, funnels=FUNNELS)
    expected = oracle_report(events, config)
    assert oracle_view(ours(events, config), expected) == expected


def test_day_numbers_match_calendar_dates():
    clock = DayClock("Asia/Shanghai")
    assert clock.iso(clock.day(20758 * DAY_MS + 16 * 3_600_000)) == "2026-11-02"
    assert (
        DayClock.from_iso("2026-11-01")
        == 20758
        == (dt.date(2026, 11, 1) - dt.date(1970, 1, 1)).days
    )


def test_replay_of_generated_traffic_equals_clickhouse_in_several_timezones(tmp_path):
    from agents.replay import replay_files
    from streams.generator import GeneratorSpec, write_files

    write_files(
        GeneratorSpec(
            seed=11, days=9, new_users_per_day=60, duplicate_rate=0.03, invalid_rate=0.002
        ),
        tmp_path,
    )
    from streams.events import Event, parse_event

    raw = [
        line
        for name in ("clicks", "orders")
        for line in (tmp_path / f"{name}.jsonl").read_bytes().splitlines()
    ]
    valid = [orjson.loads(line) for line in raw if isinstance(parse_event(line), Event)]
    assert len(valid) > 10_000
    for tz in TIMEZONES:
        config = Config(
            timezone=tz,
            funnels=(
                *FUNNELS,
                FunnelSpec("checkout", ("add_to_cart", "checkout", "order_paid"), 1_800_000),
            ),
        )
        report, _, _ = replay_files(config, tmp_path / "clicks.jsonl", tmp_path / "orders.jsonl")
        expected = oracle_report_dicts(valid, config)
        assert oracle_view(report, expected) == expected, tz
        assert report["events"]["duplicates"] > 0 and report["events"]["invalid"] > 0


def oracle_view(report, expected):
    """The report's parts the ClickHouse oracle computes (the classifications as of
    each day have their own reference, tests/naive_segments.py)."""
    out = {k: report[k] for k in ("days", "retention", "funnels")}
    out["days"] = {
        d: {k: v for k, v in row.items() if k in expected["days"].get(d, row)}
        for d, row in out["days"].items()
    }
    return out


def oracle_report_dicts(events, config):
    return clickhouse.clickhouse_report(
        events,
        timezone=config.timezone,
        funnels=[(f.name, list(f.steps), f.window_ms) for f in config.funnels],
        inactive_types=tuple(config.inactive_types),
    )
