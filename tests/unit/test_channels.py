"""Channels against a naive reference written from METRICS.md ("Channels") alone: per
acquisition channel and day new users, paid within 7 days, revenue, spend, CAC;
per-channel retention; totals with CAC and ROI — in any arrival order inside the
lateness bound and split across partitions."""

import datetime as dt
import random
import zoneinfo
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import T0, TIMEZONES, event_sets

from state.config import DAY_MS, Config
from state.fold import Fold
from state.partials import Partials
from state.report import build_report
from streams.events import SpendEvent

INACTIVE = ("push_sent", "order_refunded")


def local(ts, tz):
    return dt.datetime.fromtimestamp(ts / 1000, zoneinfo.ZoneInfo(tz)).date()


def money(cents):
    return round(cents / 100, 2)


def naive_channels(events, spend, tz):
    unique = {}
    for e in events:
        unique.setdefault(e.event_id, e)
    events = list(unique.values())
    spend = list({s.event_id: s for s in spend}.values())
    last = max(local(e.ts, tz) for e in events)  # the report's days: user events
    first = {}
    for e in events:
        if e.type not in INACTIVE and (
            e.user_id not in first
            or (e.ts, e.event_id) < (first[e.user_id].ts, first[e.user_id].event_id)
        ):
            first[e.user_id] = e
    channel = defaultdict(lambda: "unknown", {u: e.channel or "unknown" for u, e in first.items()})
    days = defaultdict(
        lambda: defaultdict(lambda: {"new_users": 0, "paid_7d": 0, "revenue": 0, "spend": 0})
    )
    for u, e in first.items():
        row = days[channel[u]][local(e.ts, tz)]
        row["new_users"] += 1
        if any(
            o.user_id == u and o.type == "order_paid" and o.ts < e.ts + 7 * DAY_MS for o in events
        ):
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
                {local(x.ts, tz) for x in events if x.user_id == u and x.type not in INACTIVE}
                for u in members
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
    folds = [Fold(config) for _ in range(3)]
    for e in arrived:
        folds[hash(e.user_id) % 3].apply_batch([(e.user_id, e)], "p")
    spend_fold = Fold(config)
    spend_fold.apply_spend(sorted(spend, key=lambda s: s.ts), "spend")
    merged = Partials(funnel_steps=folds[0].partials.funnel_steps)
    for fold in (*folds, spend_fold):
        merged.merge(fold.partials)
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
