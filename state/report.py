"""Building the contract's report (`opspulse.report/1`) from merged partials."""

from __future__ import annotations

from typing import Any

from state.clock import DayClock
from state.config import Config
from state.money import cents_ratio, from_cents
from state.partials import (
    DAU,
    DAY_FIELDS,
    EVENTS,
    GMV_CENTS,
    MAU,
    NEW_USERS,
    ORDERS_PAID,
    PAYING_USERS,
    REFUNDS_CENTS,
    WAU,
    Partials,
)
from state.user import UserState

SCHEMA = "opspulse.report/1"


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def day_range(partials: Partials) -> range:
    """Every day from the first to the last day that has a valid event."""
    days = [d for d, row in partials.days.items() if row[EVENTS] > 0]
    return range(min(days), max(days) + 1) if days else range(0)


def build_report(partials: Partials, config: Config) -> dict[str, Any]:
    """The report for the merged partials of all partitions."""
    iso = DayClock.iso
    days = day_range(partials)
    zero = [0] * len(DAY_FIELDS)
    report_days: dict[str, Any] = {}
    for d in days:
        row = partials.days.get(d, zero)
        dau, gmv, refunds = row[DAU], row[GMV_CENTS], row[REFUNDS_CENTS]
        paying, orders = row[PAYING_USERS], row[ORDERS_PAID]
        report_days[iso(d)] = {
            "dau": dau,
            "wau": row[WAU],
            "mau": row[MAU],
            "stickiness": _ratio(dau, row[MAU]),
            "new_users": row[NEW_USERS],
            "paying_users": paying,
            "orders_paid": orders,
            "gmv": from_cents(gmv),
            "refunds": from_cents(refunds),
            "arpu": cents_ratio(gmv - refunds, dau),
            "arppu": cents_ratio(gmv - refunds, paying),
            "aov": cents_ratio(gmv, orders),
            "paid_conversion": _ratio(paying, dau),
        }
    retention: dict[str, list[int]] = {}
    if days:
        last = days[-1]
        for cohort in sorted(partials.retention):
            row = partials.retention[cohort]
            if row[0] > 0 and cohort <= last:
                retention[iso(cohort)] = row[: min(len(row), last - cohort + 1)]
    funnels: dict[str, Any] = {}
    for spec, counts in zip(config.funnels, partials.funnels, strict=True):
        empty = [0] * len(spec.steps)
        since = partials.funnel_since.get(spec.name)
        funnels[spec.name] = {
            "steps": list(spec.steps),
            "window_ms": spec.window_ms,
            "since": iso(since) if since is not None else None,
            "days": {iso(d): list(counts.get(d, empty)) for d in days},
        }
    channels: dict[str, Any] = {}
    spend_cents: dict[str, int] = {}
    for (channel, d), cents in sorted(partials.spend.items()):
        channels.setdefault(channel, {"spend_by_day": {}})["spend_by_day"][iso(d)] = from_cents(
            cents
        )
        spend_cents[channel] = spend_cents.get(channel, 0) + cents
    for channel, entry in channels.items():
        entry["spend"] = from_cents(spend_cents[channel])
    return {
        "schema": SCHEMA,
        "timezone": config.timezone,
        "events": dict(partials.counters),
        "days": report_days,
        "retention": retention,
        "funnels": funnels,
        "channels": channels,
    }


def user_summary(user_id: str, user: UserState) -> dict[str, Any]:
    """One line of `--users-output`."""
    return {
        "user_id": user_id,
        "first_seen_ts": user.first_ts,
        "last_seen_ts": user.last_ts,
        "orders_paid": user.orders_paid,
        "revenue": from_cents(user.revenue_cents),
        "first_order_ts": user.first_order_ts,
        "last_order_ts": user.last_order_ts,
        "channel": user.channel or "unknown",
        "rfm_segment": None,
        "lifecycle": None,
        "churn_score": None,
    }
