"""Breakdowns against a naive reference: per acquisition value, the numbers equal the
report of the users acquired with that value alone (METRICS.md, Breakdowns), in any
arrival order inside the lateness bound; values are bounded as configured."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import naive_report
from strategies import TIMEZONES, event_sets

from state.config import DAY_MS, Config, FunnelSpec
from state.fold import Fold
from state.report import build_report
from streams.events import Event

FUNNELS = (
    FunnelSpec("purchase", ("page_view", "add_to_cart", "checkout", "order_paid"), DAY_MS),
    FunnelSpec("quick", ("login", "add_to_cart"), 3_600_000),
)
NAIVE_FUNNELS = [(f.name, list(f.steps), f.window_ms) for f in FUNNELS]
INACTIVE = ("push_sent", "order_refunded")
FIELDS = ("dau", "new_users", "paying_users", "orders_paid", "gmv", "refunds")


def acquisition(events, dim):
    """Each user's value: that of the first activity (smallest ts, then event id)."""
    first = {}
    for e in events:
        if e.type not in INACTIVE:
            key = (e.ts, e.event_id)
            if e.user_id not in first or key < first[e.user_id][0]:
                first[e.user_id] = (key, getattr(e, dim) or "unknown")
    return {e.user_id: first[e.user_id][1] if e.user_id in first else "unknown" for e in events}


def naive_breakdown(events, dim, tz):
    value_of = acquisition(events, dim)
    out = {}
    for value in sorted(set(value_of.values())):
        report = naive_report(
            [e for e in events if value_of[e.user_id] == value], timezone=tz, funnels=NAIVE_FUNNELS
        )
        days = {
            d: {k: row[k] for k in FIELDS}
            for d, row in report["days"].items()
            if row["dau"] or row["new_users"] or row["orders_paid"] or row["refunds"]
        }
        if days:
            funnels = {
                n: {d: c for d, c in f.items() if any(c)} for n, f in report["funnels"].items()
            }
            out[value] = {"days": days, "retention": report["retention"], "funnels": funnels}
    return out


def ours(report, dim):
    out = {}
    for value, body in report["breakdowns"][dim]["values"].items():
        days = {d: {k: row[k] for k in FIELDS} for d, row in body["days"].items()}
        out[value] = {"days": days, "retention": body["retention"], "funnels": body["funnels"]}
    return out


def trimmed(breakdown, naive):
    """Our retention rows run to the report's last day; the reference's to the value's."""
    for value, body in breakdown.items():
        for cohort, row in body["retention"].items():
            n = len(naive.get(value, {}).get("retention", {}).get(cohort, row))
            assert not any(row[n:])
            body["retention"][cohort] = row[:n]
    return breakdown


def replayed(events, config):
    fold = Fold(config)
    fold.apply_batch([(e.user_id, e) for e in events], "p")
    return build_report(fold.partials, config)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets(), st.sampled_from(TIMEZONES), st.integers(0, 10**6))
def test_each_value_equals_the_report_of_its_users_alone(events, tz, seed):
    config = Config(timezone=tz, funnels=FUNNELS, allowed_lateness_ms=2 * DAY_MS)
    rng = random.Random(seed)
    unique = list({e.event_id: e for e in events}.values())
    # Each event delayed by less than the lateness bound: earlier first events arrive late.
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(DAY_MS))
    report = replayed(arrived, config)
    for dim in ("channel", "device"):
        naive = naive_breakdown(unique, dim, tz)
        assert trimmed(ours(report, dim), naive) == naive
    assert report["breakdowns"]["region"]["values"].keys() <= {"unknown"}


def test_values_beyond_the_bound_count_as_other_and_allow_lists_are_exact():
    config = Config.from_mapping(
        {"breakdowns": {"max_values": 2, "device": ["ios"], "dimensions": ["channel", "device"]}}
    )
    t0 = 20758 * DAY_MS
    events = [
        Event(f"e{i}", f"u{i}", t0 + i, "login", channel=ch, device=dev)
        for i, (ch, dev) in enumerate(
            [("a", "ios"), ("b", "android"), ("c", None), ("a", "web"), ("d", "ios")]
        )
    ]
    report = replayed(events, config)
    counts = {
        dim: {v: body["days"]["2026-11-01"]["new_users"] for v, body in b["values"].items()}
        for dim, b in report["breakdowns"].items()
    }
    assert counts == {
        "channel": {"a": 2, "b": 1, "other": 2},  # the first two values seen are kept
        "device": {"ios": 2, "other": 2, "unknown": 1},
    }
    assert "region" not in report["breakdowns"]


def test_a_late_earlier_first_event_moves_the_whole_history_of_the_user():
    config = Config(funnels=FUNNELS)
    t0 = 20758 * DAY_MS
    later = [
        Event("p1", "u", t0 + 5 * 3_600_000, "page_view", channel="organic"),
        Event("o1", "u", t0 + 6 * 3_600_000, "order_paid", order_id="x", amount_cents=500),
        Event("p2", "u", t0 + DAY_MS + 1, "page_view", channel="organic"),
    ]
    first = Event("a0", "u", t0 + 1, "login", channel="ads")
    report = replayed([*later, first], config)
    values = report["breakdowns"]["channel"]["values"]
    assert list(values) == ["ads"]
    ads = values["ads"]
    assert ads["days"]["2026-11-01"]["gmv"] == 5.0
    assert ads["retention"]["2026-11-01"] == [1, 1]
    assert ads["funnels"]["purchase"] == {"2026-11-01": [1, 0, 0, 0], "2026-11-02": [1, 0, 0, 0]}
    assert report["channels"]["ads"]["revenue"] == 5.0 and "organic" not in report["channels"]


def test_the_ledger_is_dropped_once_the_acquisition_is_final():
    config = Config(allowed_lateness_ms=DAY_MS)
    t0 = 20758 * DAY_MS
    fold = Fold(config, sources=["p"])
    fold.apply_batch([("u", Event("a", "u", t0, "login", channel="ads"))], "p")
    assert fold.users["u"].ledger  # young: a late earlier event could still move it
    # Three days on the horizon has passed the first activity; the next event drops it.
    fold.apply_batch([("v", Event("b", "v", t0 + 3 * DAY_MS, "login"))], "p")
    fold.apply_batch([("u", Event("c", "u", t0 + 3 * DAY_MS + 1, "login"))], "p")
    assert fold.users["u"].ledger is None
    days = build_report(fold.partials, config)["breakdowns"]["channel"]["values"]["ads"]["days"]
    assert [row["dau"] for row in days.values()] == [1, 1]
