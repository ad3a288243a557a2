"""Naive references for what teams act on, written from METRICS.md alone (sections
Channels, Experiments, Push, Triggers): plain loops over a user's events, no
state, no partials. Used on hypothesis events and on generated traffic."""

import datetime as dt
import zoneinfo
from collections import defaultdict

DAY_MS = 86_400_000
INACTIVE = ("push_sent", "order_refunded")


def local(ts, tz):
    return dt.datetime.fromtimestamp(ts / 1000, zoneinfo.ZoneInfo(tz)).date()


def money(cents):
    return round(cents / 100, 2)


def unique(events):
    """Each event id once (the first delivery)."""
    out = {}
    for e in events:
        out.setdefault(e.event_id, e)
    return list(out.values())


def by_user(events):
    out = defaultdict(list)
    for e in events:
        out[e.user_id].append(e)
    return out


def naive_channels(events, spend, tz):
    events = unique(events)
    spend = list({s.event_id: s for s in spend}.values())
    users = by_user(events)
    last = max(local(e.ts, tz) for e in events)  # the report's days: user events
    first = {}
    for u, mine in users.items():
        active = [e for e in mine if e.type not in INACTIVE]
        if active:
            first[u] = min(active, key=lambda e: (e.ts, e.event_id))
    channel = defaultdict(lambda: "unknown", {u: e.channel or "unknown" for u, e in first.items()})
    days = defaultdict(
        lambda: defaultdict(lambda: {"new_users": 0, "paid_7d": 0, "revenue": 0, "spend": 0})
    )
    for u, e in first.items():
        row = days[channel[u]][local(e.ts, tz)]
        row["new_users"] += 1
        if any(o.type == "order_paid" and o.ts < e.ts + 7 * DAY_MS for o in users[u]):
            row["paid_7d"] += 1
    for e in events:
        if e.type in ("order_paid", "order_refunded"):
            sign = 1 if e.type == "order_paid" else -1
            days[channel[e.user_id]][local(e.ts, tz)]["revenue"] += sign * e.amount_cents
    for s in spend:
        days[s.channel][local(s.ts, tz)]["spend"] += s.amount_cents
    out = {}
    for ch in sorted(days):
        rows = {
            d: r
            for d, r in sorted(days[ch].items())
            if r["new_users"] or r["revenue"] or r["spend"]
        }
        if not rows:
            continue
        new = sum(r["new_users"] for r in rows.values())
        revenue = sum(r["revenue"] for r in rows.values())
        cost = sum(r["spend"] for r in rows.values())
        cohorts = defaultdict(list)
        for u, e in first.items():
            if channel[u] == ch:
                cohorts[local(e.ts, tz)].append(u)
        retention = {}
        for c, members in sorted(cohorts.items()):
            active = [
                {local(x.ts, tz) for x in users[u] if x.type not in INACTIVE} for u in members
            ]
            length = min(91, (last - c).days + 1)
            retention[c.isoformat()] = [
                sum(1 for a in active if c + dt.timedelta(days=n) in a) for n in range(length)
            ]
        out[ch] = {
            "new_users": new, "spend": money(cost), "revenue": money(revenue),
            "cac": round(cost / 100 / new, 2) if new else None,
            "roi": round(revenue / cost, 4) if cost else None,
            "days": {
                d.isoformat(): {
                    "new_users": r["new_users"], "paid_7d": r["paid_7d"],
                    "revenue": money(r["revenue"]), "spend": money(r["spend"]),
                    "cac": round(r["spend"] / 100 / r["new_users"], 2) if r["new_users"] else None,
                }
                for d, r in rows.items()
            },
            "retention": retention,
        }  # fmt: skip
    return out


def naive_experiments(events, goal="order_paid", window_ms=7 * DAY_MS):
    """Per experiment and variant [exposed, converted]."""
    counts = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for mine in by_user(unique(events)).values():
        first = {}
        for e in mine:
            if e.type == "exposure" and e.experiment and e.variant:
                was = first.get(e.experiment)
                if was is None or (e.ts, e.event_id) < (was.ts, was.event_id):
                    first[e.experiment] = e
        for experiment, e in first.items():
            row = counts[experiment][e.variant]
            row[0] += 1
            row[1] += any(g.type == goal and e.ts <= g.ts <= e.ts + window_ms for g in mine)
    return {x: {v: list(c) for v, c in sorted(vs.items())} for x, vs in sorted(counts.items())}


def naive_push(events, tz):
    sends, opens = defaultdict(list), defaultdict(list)
    for e in unique(events):
        if e.type == "push_sent":
            sends[(e.user_id, e.campaign or "unknown")].append(e.ts)
        elif e.type == "push_open":
            opens[(e.user_id, e.campaign or "unknown")].append(e.ts)
    out = {}
    for (user, campaign), times in sends.items():
        first = min(times)
        hour = dt.datetime.fromtimestamp(first / 1000, zoneinfo.ZoneInfo(tz)).hour
        opened = any(t >= first for t in opens[(user, campaign)])
        c = out.setdefault(campaign, {"sent": 0, "opened": 0,
                                      "by_hour": {str(h): [0, 0] for h in range(24)}})  # fmt: skip
        c["sent"] += 1
        c["opened"] += opened
        c["by_hour"][str(hour)][0] += 1
        c["by_hour"][str(hour)][1] += opened
    for c in out.values():
        c["open_rate"] = c["opened"] / c["sent"]
    return dict(sorted(out.items()))


def naive_abandoned(events, delay_ms=30 * 60_000):
    """Carts (user, ts, event id) with no order_paid and no other add_to_cart of the
    user in (ts, ts + delay]."""
    out = set()
    for user, mine in by_user(unique(events)).items():
        for cart in mine:
            if cart.type == "add_to_cart" and not any(
                e.type in ("order_paid", "add_to_cart") and cart.ts < e.ts <= cart.ts + delay_ms
                for e in mine
            ):
                out.add((user, cart.ts, cart.event_id))
    return out
