"""Weekly and monthly cohort retention, and paying users' monthly retention
(METRICS.md, "Cohort views"): users whose first activity (first `order_paid`) is
in period c, with activity in period c+n.

Runs before `activity` and `orders`, so it reads the record as it was before the
event. A new active period adds one user; an event that moves the user's cohort
to another period retracts every active period from the old cohort and adds them
to the new one (order-insensitive within the lateness bound)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from state.clock import month_index, month_key, month_start, week_index, week_key, week_start
from state.partials import TABLE_EFFECT, Effect, Partials
from state.user import active_bits_between, active_days, becomes_first_activity, is_active

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState


class Period:
    """A calendar period of local days: its index, first day and key."""

    def __init__(
        self, index: Callable[[int], int], start: Callable[[int], int], key: Callable[[int], str]
    ) -> None:
        self.index, self.start, self.key = index, start, key


WEEK = Period(week_index, week_start, week_key)
MONTH = Period(month_index, month_start, month_key)


def first_activity_day(user: UserState, event: EventLike, day: int, ctx: Context) -> int | None:
    """The cohort day once `event` is applied (the record is read before it is)."""
    if becomes_first_activity(user, event, ctx):
        return day
    return user.first_day


def first_paid_day(user: UserState, event: EventLike, day: int, ctx: Context) -> int | None:
    first = user.first_order_ts
    if event.type == "order_paid" and (first is None or event.ts < first):
        return day
    return None if first is None else ctx.clock.day(first)


class PeriodRetention:
    def __init__(
        self,
        name: str,
        period: Period,
        max_n: int,
        cohort_after: Callable[[UserState, EventLike, int, Context], int | None],
        cohort_before: Callable[[UserState, Context], int | None],
    ) -> None:
        self.name, self.period, self.max_n = name, period, max_n
        self.cohort_after, self.cohort_before = cohort_after, cohort_before

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type not in ctx.inactive_types or event_type == "order_paid"

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        if (
            event.type != "order_paid"
            and is_active(user, day)
            and not becomes_first_activity(user, event, ctx)
        ):
            return  # neither a new active period nor a new cohort: the common case
        new = self.cohort_after(user, event, day, ctx)
        if new is None:
            return
        old = self.cohort_before(user, ctx)
        index = self.period.index
        activity = event.type not in ctx.inactive_types
        if old is None or index(old) != index(new):
            periods = {index(d) for d in active_days(user)}
            if old is not None:
                self._add(index(old), periods, -1, effects)
            if activity:
                periods.add(index(day))
            self._add(index(new), periods, 1, effects)
        elif activity:
            period = index(day)
            lo = self.period.start(period)
            if not active_bits_between(user, lo, self.period.start(period + 1) - 1):
                self._add(index(new), {period}, 1, effects)

    def _add(self, cohort: int, periods: set[int], delta: int, effects: list[Effect]) -> None:
        start = self.period.start(cohort)
        for period in periods:
            n = period - cohort
            if 0 <= n <= self.max_n:
                effects.append((TABLE_EFFECT, start, self.name, n, delta))

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        out: dict[str, list[int]] = {}
        if days:
            last = self.period.index(days[-1])
            for start, row in partials.table(self.name, self.max_n + 1).items():
                cohort = self.period.index(start)
                if row[0] > 0 and cohort <= last:
                    out[self.period.key(start)] = row[: min(self.max_n, last - cohort) + 1]
        report.setdefault("cohorts", {})[self.name] = out


def weekly() -> PeriodRetention:
    return PeriodRetention(
        "retention_weekly", WEEK, 26, first_activity_day, lambda u, ctx: u.first_day
    )


def monthly() -> PeriodRetention:
    return PeriodRetention(
        "retention_monthly", MONTH, 12, first_activity_day, lambda u, ctx: u.first_day
    )


def paying_monthly() -> PeriodRetention:
    return PeriodRetention(
        "paying_retention_monthly",
        MONTH,
        12,
        first_paid_day,
        lambda u, ctx: None if u.first_order_ts is None else ctx.clock.day(u.first_order_ts),
    )
