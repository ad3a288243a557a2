"""A naive reference for the cohort views (METRICS.md, "Cohort views the operating
reports use"), from the set of events with datetime arithmetic and no incremental
state: the yardstick for state/kpis' cohort modules."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict

INACTIVE = ("push_sent", "order_refunded")
DAY_MS = 86_400_000


def local_date(ts: int, tz: str) -> dt.date:
    return dt.datetime.fromtimestamp(ts / 1000, zoneinfo.ZoneInfo(tz)).date()


def week_of(date: dt.date) -> dt.date:
    return date - dt.timedelta(days=date.weekday())  # the Monday


def weeks_between(a: dt.date, b: dt.date) -> int:
    return (week_of(b) - week_of(a)).days // 7


def months_between(a: dt.date, b: dt.date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month


def week_key(date: dt.date) -> str:
    year, week, _ = date.isocalendar()
    return f"{year}-W{week:02d}"


def naive_cohorts(events, *, timezone="UTC", activation_events=("order_paid",)):
    unique = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    events = list(unique.values())
    if not events:
        return {}
    date = {e.event_id: local_date(e.ts, timezone) for e in events}
    last = max(date.values())
    active = defaultdict(set)  # user -> active dates
    first = {}  # user -> first activity event (smallest ts, then event id)
    first_paid = {}
    paid = defaultdict(list)
    for e in events:
        if e.type not in INACTIVE:
            active[e.user_id].add(date[e.event_id])
            if e.user_id not in first or (e.ts, e.event_id) < first[e.user_id]:
                first[e.user_id] = (e.ts, e.event_id)
        if e.type == "order_paid":
            paid[e.user_id].append(e.ts)
            first_paid[e.user_id] = min(first_paid.get(e.user_id, e.ts), e.ts)

    def retention(cohort_of, key, between, max_n, start_of):
        rows = {}
        for user, c in cohort_of.items():
            start = start_of(c)
            length = min(max_n, between(c, last)) + 1
            row = rows.setdefault(start, [0] * length)
            for n in {between(c, d) for d in active[user]}:
                if 0 <= n <= max_n:
                    row[n] += 1
        return {key(s): row for s, row in sorted(rows.items())}

    cohort_day = {u: local_date(ts, timezone) for u, (ts, _) in first.items()}
    paid_day = {u: local_date(ts, timezone) for u, ts in first_paid.items()}
    month_start = lambda d: d.replace(day=1)  # noqa: E731

    active_days = {}
    months = sorted({month_start(d) for days in active.values() for d in days})
    for m in months:
        counts = [sum(1 for d in days if month_start(d) == m) for days in active.values()]
        counts = [k for k in counts if k]
        active_days[m.isoformat()[:7]] = {
            "users": len(counts),
            "days": sum(counts),
            "hist": {str(k): counts.count(k) for k in range(1, 32)},
        }

    cycle = defaultdict(lambda: {"gaps": 0, "ms": 0})
    for stamps in paid.values():
        stamps.sort()
        for a, b in zip(stamps, stamps[1:], strict=False):
            entry = cycle[local_date(b, timezone).isoformat()[:7]]
            entry["gaps"] += 1
            entry["ms"] += b - a

    activations = defaultdict(list)
    for e in events:
        if e.type in activation_events:
            activations[e.user_id].append(e.ts)
    activation = {}
    for user, (ts, _) in first.items():
        row = activation.setdefault(cohort_day[user].isoformat(), {"new_users": 0, "activated": 0})
        row["new_users"] += 1
        if any(t < ts + 7 * DAY_MS for t in activations[user]):
            row["activated"] += 1

    reactivation = {}
    first_date = min(date.values())
    m = month_start(first_date)
    while m <= last:
        dormant = reactivated = 0
        for days in active.values():
            before = [d for d in days if d < m]
            if before and (m - max(before)).days >= 30:
                dormant += 1
                nxt = (m + dt.timedelta(days=32)).replace(day=1)
                reactivated += any(m <= d < nxt for d in days)
        if dormant or reactivated:
            reactivation[m.isoformat()[:7]] = {"dormant": dormant, "reactivated": reactivated}
        m = (m + dt.timedelta(days=32)).replace(day=1)

    return {
        "reactivation": reactivation,
        "retention_weekly": retention(cohort_day, week_key, weeks_between, 26, week_of),
        "retention_monthly": retention(
            cohort_day, lambda d: d.isoformat()[:7], months_between, 12, month_start
        ),
        "paying_retention_monthly": retention(
            paid_day, lambda d: d.isoformat()[:7], months_between, 12, month_start
        ),
        "active_days": active_days,
        "repurchase_cycle": {
            m: {"gaps": v["gaps"], "days": v["ms"] / DAY_MS} for m, v in sorted(cycle.items())
        },
        "activation_7d": dict(sorted(activation.items())),
    }
