"""Classifications as of the end of each day (lifecycle, RFM, LTV tiers, repurchase
rate, revenue by tier) against the naive reference (tests/naive_segments.py, written
from METRICS.md alone): in time order, in any arrival order inside the lateness
bound, split across partitions and merged, and in non-UTC timezones."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive_segments import naive_segments
from strategies import T0, TIMEZONES, TYPES, event_sets

from state.config import DAY_MS, Config
from state.fold import Fold
from state.kpis.segments import user_segments
from state.report import build_report, day_range
from streams.events import Event

# Gaps around every threshold (silent 3, new 7, warning 14, churned 30, recency 30,
# the 30-day window) and amounts around the tiers and the RFM monetary cut.
GAPS = [0, 0, 1, 2, 3, 4, 6, 7, 8, 13, 14, 15, 29, 30, 31, 32]
AMOUNTS = [0, 100, 29_999, 30_000, 50_000, 79_999, 80_000, 120_000]


@st.composite
def histories(draw):
    events = []
    for u in range(draw(st.integers(1, 4))):
        day = draw(st.integers(0, 3))
        for _ in range(draw(st.integers(1, 9))):
            day += draw(st.sampled_from(GAPS))
            kind = draw(st.sampled_from(TYPES + ["order_paid", "add_to_cart"]))
            ts = T0 + day * DAY_MS + draw(st.sampled_from([0, 3_600_000, DAY_MS - 1]))
            amount = draw(st.sampled_from(AMOUNTS)) if kind.startswith("order") else 0
            events.append(Event(f"e{len(events)}", f"u{u}", ts, kind, amount_cents=amount))
    return events


KEYS = ("repurchase_rate_30d", "ltv_tiers", "rfm", "lifecycle")


def segments(events, config, partitions=1):
    folds = [Fold(config) for _ in range(partitions)]
    for e in events:
        folds[hash(e.user_id) % partitions].apply_batch([(e.user_id, e)], "p")
    partials = folds[0].partials
    for fold in folds[1:]:
        partials.merge(fold.partials)
    report = build_report(partials, config)
    days = {d: {k: row[k] for k in KEYS} for d, row in report["days"].items()}
    last = day_range(partials)[-1]
    users = {
        u: tuple(user_segments(user, last, config.segments)[k]
                 for k in ("lifecycle", "rfm_segment", "ltv_tier"))
        for fold in folds for u, user in fold.users.items()
    }  # fmt: skip
    return {"days": days, "revenue_by_tier": report["cohorts"]["revenue_by_tier"], "users": users}


@pytest.mark.parametrize("max_days", [12, 45, 200])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), tz=st.sampled_from(TIMEZONES), seed=st.integers(0, 10**6))
def test_segments_equal_the_naive_reference(max_days, data, tz, seed):
    events = data.draw(event_sets(max_days=max_days))
    config = Config(timezone=tz, allowed_lateness_ms=2 * DAY_MS)
    expected = naive_segments(events, timezone=tz)
    if not expected:
        return
    in_order = sorted(events, key=lambda e: (e.ts, e.event_id))
    assert segments(in_order, config) == expected
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(3 * DAY_MS // 2))
    assert segments(arrived, config, partitions=3) == expected


@pytest.mark.parametrize("lateness_days", [2, 20])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories(), tz=st.sampled_from(TIMEZONES), seed=st.integers(0, 10**6))
def test_every_threshold_equals_the_naive_reference(lateness_days, events, tz, seed):
    """A long lateness bound lets late events fall into gaps between active days."""
    config = Config(timezone=tz, allowed_lateness_ms=lateness_days * DAY_MS)
    expected = naive_segments(events, timezone=tz)
    rng = random.Random(seed)
    jitter = (lateness_days - 1) * DAY_MS
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(jitter))
    assert segments(arrived, config, partitions=2) == expected


CUSTOM = {
    "ltv_tiers": [100, 500], "rfm": {"recency_days": 10, "frequency": 3, "monetary": 200},
    "lifecycle": {"churned_days": 20, "churn_warning_days": 10, "silent_days": 2, "new_days": 5},
}  # fmt: skip
CUSTOM_RULES = {
    "tiers": (100.0, 500.0), "recency": 10, "frequency": 3, "monetary": 200.0,
    "churned": 20, "warning": 10, "silent": 2, "new": 5,
}  # fmt: skip


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories(), seed=st.integers(0, 10**6))
def test_configured_thresholds_equal_the_naive_reference(events, seed):
    config = Config.from_mapping(CUSTOM)
    expected = naive_segments(events, rules=CUSTOM_RULES)
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(DAY_MS))
    assert segments(arrived, config) == expected


def chains(records):
    """Segment change records per (user, kind), in publication order."""
    out = {}
    for r in records:
        if r.kind != "segments":
            continue
        assert r.key == r.value["user_id"]
        out.setdefault((r.value["user_id"], r.value["kind"]), []).append(r.value)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=histories(), tz=st.sampled_from(TIMEZONES), seed=st.integers(0, 10**6),
       idle_days=st.sampled_from([0, 3, 14, 31, 45]))  # fmt: skip
def test_segment_changes_chain_to_the_class_of_the_current_day(events, tz, seed, idle_days):
    """Each record starts where the previous one of its user and kind ended (none
    repeated, none skipped), and the last one is the class of the partition's
    current day by the naive reference — also when only time passed (timers)."""
    config = Config(timezone=tz, allowed_lateness_ms=2 * DAY_MS)
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(3 * DAY_MS // 2))
    fold = Fold(config)
    for e in arrived:
        fold.apply_batch([(e.user_id, e)], "p")
    # Time passes: another user's event moves the stream time on.
    tick = Event("tick", "ticker", max(e.ts for e in events) + idle_days * DAY_MS, "push_sent")
    fold.apply_batch([("ticker", tick)], "p")
    today = fold.stream_day()
    published = chains(fold.outbox.drain())
    from naive_segments import classify, local_date

    day = local_date(tick.ts, tz)
    for user in {e.user_id for e in events}:
        mine = list({e.event_id: e for e in events if e.user_id == user}.values())
        expected = classify(mine, day, tz)
        for i, kind in enumerate(("lifecycle", "rfm")):
            chain = published.get((user, kind), [])
            if expected is None:
                assert chain == []
                continue
            assert chain[0]["from"] is None
            assert all(
                a["to"] == b["from"] != b["to"] for a, b in zip(chain, chain[1:], strict=False)
            )
            assert chain[-1]["to"] == expected[i], (user, kind, chain, today)


def test_replay_segments_output_ends_at_each_users_classes(tmp_path):
    """`--segments-output` holds what the workers would send: chains per user and kind
    whose last record is the user's class in `--users-output` (each partition has
    events on the last day, so its current day is the report's last day)."""
    import orjson

    from agents.cli import main
    from streams.generator import GeneratorSpec, write_files

    write_files(GeneratorSpec(seed=3, days=40, new_users_per_day=40, start="2026-07-01"), tmp_path)
    code = main(["replay", "--clicks", str(tmp_path / "clicks.jsonl"),
                 "--orders", str(tmp_path / "orders.jsonl"), "--quiet", "--output", "/dev/null",
                 "--users-output", str(tmp_path / "users.jsonl"),
                 "--segments-output", str(tmp_path / "segments.jsonl")])  # fmt: skip
    assert code == 0
    records = [orjson.loads(x) for x in (tmp_path / "segments.jsonl").read_bytes().splitlines()]
    last = {}
    for r in records:
        key = (r["user_id"], r["kind"])
        assert r["from"] == last.get(key) != r["to"]
        last[key] = r["to"]
    users = [orjson.loads(x) for x in (tmp_path / "users.jsonl").read_bytes().splitlines()]
    assert {(u["user_id"], "lifecycle"): u["lifecycle"] for u in users} == {
        k: v for k, v in last.items() if k[1] == "lifecycle"
    }
    assert {(u["user_id"], "rfm"): u["rfm_segment"] for u in users} == {
        k: v for k, v in last.items() if k[1] == "rfm"
    }
    kinds = {(r["from"], r["to"]) for r in records if r["kind"] == "lifecycle"}
    assert ("churn_warning", "churned") in kinds and ("new", "silent_new") in kinds
