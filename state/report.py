"""Building the contract's report (`opspulse.report/1`) from merged partials."""

from __future__ import annotations

from typing import Any

from state.clock import DayClock
from state.config import Config
from state.kpis import all_kpis
from state.kpis.segments import user_segments
from state.money import from_cents
from state.partials import EVENTS, Partials
from state.user import UserState

SCHEMA = "opspulse.report/1"


def day_range(partials: Partials) -> range:
    """Every day from the first to the last day that has a valid event."""
    days = [d for d, row in partials.days.items() if row[EVENTS] > 0]
    return range(min(days), max(days) + 1) if days else range(0)


def build_report(partials: Partials, config: Config, days: range | None = None) -> dict[str, Any]:
    """The report for the merged partials of all partitions: each KPI renders its part.
    `days`: the report's days (default: `day_range`); periods end with the last one."""
    if days is None:
        days = day_range(partials)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "timezone": config.timezone,
        "events": dict(partials.counters),
        "days": {DayClock.iso(d): {} for d in days},
    }
    for kpi in all_kpis():
        kpi.render(partials, config, days, report)
    report["alerts"] = []  # open alerts: filled by the alert evaluator (state/alert_evaluator.py)
    return report


def user_summary(
    user_id: str, user: UserState, day: int, config: Config, churn_score: float | None = None
) -> dict[str, Any]:
    """One line of `--users-output` (`/users/{id}`), its classes as of the end of `day`;
    `churn_score`: the partition's model on the user's features then (ChurnLearner.score)."""
    return {
        "user_id": user_id,
        "first_seen_ts": user.first_ts,
        "last_seen_ts": user.last_ts,
        "orders_paid": user.orders_paid,
        "revenue": from_cents(user.revenue_cents),
        "first_order_ts": user.first_order_ts,
        "last_order_ts": user.last_order_ts,
        "channel": user.channel or "unknown",
        **user_segments(user, day, config.segments),
        "churn_score": churn_score,
    }
