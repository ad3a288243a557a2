"""A naive reference report, computed from the set of events by the definitions
of METRICS.md with no incremental state: the yardstick for `state/`'s folds.

Only the per-user funnel level reuses `state.funnel.funnel_level`, which is
itself checked against ClickHouse's windowFunnel (test_funnel_oracle.py).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict

from naive_segments import naive_segments

from state.funnel import funnel_level

DEFAULT_FUNNELS = [("purchase", ["page_view", "add_to_cart", "checkout", "order_paid"], 86_400_000)]


def local_day(ts: int, tz: str) -> int:
    local = dt.datetime.fromtimestamp(ts / 1000, zoneinfo.ZoneInfo(tz)).date()
    return (local - dt.date(1970, 1, 1)).days


def iso(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def money(cents: int, n: int = 1):
    return round(cents / (100 * n), 2) if n else None


def naive_report(
    events, *, timezone="UTC", funnels=DEFAULT_FUNNELS, inactive=("push_sent", "order_refunded")
):
    unique = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    events = list(unique.values())
    if not events:
        return {"days": {}, "retention": {}, "funnels": {n: {} for n, _, _ in funnels}}
    day = {e.event_id: local_day(e.ts, timezone) for e in events}
    days = range(min(day.values()), max(day.values()) + 1)
    active = defaultdict(set)  # user -> days
    first = {}
    for e in events:
        if e.type not in inactive:
            active[e.user_id].add(day[e.event_id])
            first[e.user_id] = min(first.get(e.user_id, 1 << 62), e.ts)
    cohort = {u: local_day(ts, timezone) for u, ts in first.items()}
    out_days = {}
    for d in days:
        dau = sum(1 for s in active.values() if d in s)
        wau = sum(1 for s in active.values() if any(d - 6 <= x <= d for x in s))
        mau = sum(1 for s in active.values() if any(d - 29 <= x <= d for x in s))
        paid = [e for e in events if e.type == "order_paid" and day[e.event_id] == d]
        paying = len({e.user_id for e in paid})
        gmv = sum(e.amount_cents for e in paid)
        refunds = sum(
            e.amount_cents for e in events if e.type == "order_refunded" and day[e.event_id] == d
        )
        out_days[iso(d)] = {
            "dau": dau, "wau": wau, "mau": mau,
            "stickiness": dau / mau if mau else None,
            "new_users": sum(1 for c in cohort.values() if c == d),
            "paying_users": paying, "orders_paid": len(paid),
            "gmv": money(gmv), "refunds": money(refunds),
            "arpu": money(gmv - refunds, dau), "arppu": money(gmv - refunds, paying),
            "aov": money(gmv, len(paid)), "paid_conversion": paying / dau if dau else None,
        }  # fmt: skip
    for d, classes in naive_segments(events, timezone=timezone, inactive=inactive)["days"].items():
        out_days[d].update(classes)
    retention = {}
    for c in sorted(set(cohort.values())):
        members = [u for u, cu in cohort.items() if cu == c]
        length = min(91, days[-1] - c + 1)
        retention[iso(c)] = [sum(1 for u in members if c + n in active[u]) for n in range(length)]
    out_funnels = {}
    for name, steps, window in funnels:
        per_user = defaultdict(list)
        for e in events:
            if e.type in steps:
                per_user[e.user_id].append((e.ts, steps.index(e.type), day[e.event_id]))
        counts = {iso(d): [0] * len(steps) for d in days}
        for chain in per_user.values():
            chain.sort()
            for d in days:
                for k in range(funnel_level(chain, len(steps), window, d)):
                    counts[iso(d)][k] += 1
        out_funnels[name] = counts
    return {"days": out_days, "retention": retention, "funnels": out_funnels}


def stream_time_free(report):
    """The report without what fires with each partition's own stream time (cart
    triggers: tests/unit/test_triggers.py checks those per partition) or is learnt per
    partition (churn: tests/unit/test_churn.py)."""
    return {k: v for k, v in report.items() if k not in ("triggers", "churn")}


def comparable(report):
    """The parts of an opspulse report the naive reference computes."""
    return {
        "days": report["days"],
        "retention": report["retention"],
        "funnels": {name: f["days"] for name, f in report["funnels"].items()},
    }
