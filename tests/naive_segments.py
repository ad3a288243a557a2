"""A naive reference for the classifications "as of the end of day d" (METRICS.md):
for every report day and every user, the user's events with ts before the end of
that day, classified by the rules as written. No incremental state, no
difference rows: the yardstick for state/kpis/segments.py."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict

INACTIVE = ("push_sent", "order_refunded")

LIFECYCLE = (
    "new", "silent_new", "active", "potential_paying",
    "paying", "high_value", "churn_warning", "churned",
)  # fmt: skip
RFM_NAMES = {
    "HHH": "champions", "HHL": "loyal_low_spend", "HLH": "promising_big_spender",
    "HLL": "new_or_light", "LHH": "at_risk_valuable", "LHL": "at_risk_frequent",
    "LLH": "hibernating_big", "LLL": "lost",
}  # fmt: skip
RULES = {
    "tiers": (300.0, 800.0), "recency": 30, "frequency": 2, "monetary": 300.0,
    "churned": 30, "warning": 14, "silent": 3, "new": 7,
}  # fmt: skip


def local_date(ts: int, tz: str) -> dt.date:
    return dt.datetime.fromtimestamp(ts / 1000, zoneinfo.ZoneInfo(tz)).date()


def classify(events, day: dt.date, tz: str, rules=RULES, inactive=INACTIVE):
    """(lifecycle, rfm segment, ltv tier, paid orders in d-29..d) of one user's events
    as of the end of `day`, or None before their first activity."""
    mine = [e for e in events if local_date(e.ts, tz) <= day]
    activity = [e for e in mine if e.type not in inactive]
    if not activity:
        return None
    first = local_date(min(activity, key=lambda e: (e.ts, e.event_id)).ts, tz)
    active_day = max(local_date(e.ts, tz) for e in activity)
    paid = [e for e in mine if e.type == "order_paid"]
    revenue = sum(e.amount_cents for e in paid) - sum(
        e.amount_cents for e in mine if e.type == "order_refunded"
    )
    revenue /= 100
    tier = None
    if paid:
        growth, high = rules["tiers"]
        tier = "potential" if revenue < growth else "growth" if revenue < high else "high"
    idle = (day - active_day).days
    age = (day - first).days
    if idle >= rules["churned"]:
        stage = "churned"
    elif idle >= rules["warning"]:
        stage = "churn_warning"
    elif tier == "high":
        stage = "high_value"
    elif paid:
        stage = "paying"
    elif age < rules["new"] and idle >= rules["silent"]:
        stage = "silent_new"
    elif age < rules["new"]:
        stage = "new"
    elif any(e.type == "add_to_cart" for e in mine):
        stage = "potential_paying"
    else:
        stage = "active"
    if paid:
        last_paid = max(local_date(e.ts, tz) for e in paid)
        r = (day - last_paid).days <= rules["recency"]
        f = len(paid) >= rules["frequency"]
        m = revenue >= rules["monetary"]
        segment = RFM_NAMES["".join("H" if x else "L" for x in (r, f, m))]
    else:
        segment = "no_purchase"
    window = sum(1 for e in paid if (day - local_date(e.ts, tz)).days < 30)
    return stage, segment, tier, window


def naive_segments(events, *, timezone="UTC", rules=RULES, inactive=INACTIVE):
    """{"days": {iso: {repurchase_rate_30d, ltv_tiers, rfm, lifecycle}},
    "revenue_by_tier": {iso: {tier: amount}}, "users": {user: (stage, segment, tier)}}
    over the days from the first to the last valid event."""
    unique = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    events = list(unique.values())
    if not events:
        return {}
    by_user = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(e)
    dates = [local_date(e.ts, timezone) for e in events]
    first, last = min(dates), max(dates)
    days, revenue = {}, {}
    day = first
    while day <= last:
        lifecycle = dict.fromkeys(LIFECYCLE, 0)
        rfm = dict.fromkeys([*RFM_NAMES.values(), "no_purchase"], 0)
        tiers = dict.fromkeys(("potential", "growth", "high"), 0)
        money = dict.fromkeys(tiers, 0)
        buyers = repeat = 0
        for user_events in by_user.values():
            c = classify(user_events, day, timezone, rules, inactive)
            if c is None:
                continue
            stage, segment, tier, window = c
            lifecycle[stage] += 1
            rfm[segment] += 1
            if tier:
                tiers[tier] += 1
                money[tier] += sum(
                    e.amount_cents * (1 if e.type == "order_paid" else -1)
                    for e in user_events
                    if e.type in ("order_paid", "order_refunded")
                    and local_date(e.ts, timezone) == day
                )
            buyers += window >= 1
            repeat += window >= 2
        days[day.isoformat()] = {
            "repurchase_rate_30d": repeat / buyers if buyers else None,
            "ltv_tiers": tiers,
            "rfm": rfm,
            "lifecycle": lifecycle,
        }
        revenue[day.isoformat()] = {t: round(c / 100, 2) for t, c in money.items()}
        day += dt.timedelta(days=1)
    users = {}
    for user, user_events in by_user.items():
        c = classify(user_events, last, timezone, rules, inactive)
        users[user] = (c[0], c[1], c[2]) if c else (None, None, None)
    return {"days": days, "revenue_by_tier": revenue, "users": users}
