"""Activity: DAU/WAU/MAU, stickiness, new users and N-day cohort retention.

The user's active days are a bit set; an earlier first activity arriving late
moves the user to the earlier cohort by retraction (order-insensitive)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import DayClock
from state.partials import (
    DAU,
    DAY_EFFECT,
    MAU,
    NEW_USERS,
    RETENTION_DAYS,
    RETENTION_EFFECT,
    WAU,
    Effect,
    Partials,
    ratio,
)
from state.user import active_bits_between, becomes_first_activity, day_bit

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState


class Activity:
    name = "activity"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type not in ctx.inactive_types

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        ts = event.ts
        if user.last_ts is None or ts > user.last_ts:
            user.last_ts = ts
        bit = 1 << day_bit(user, day)
        new_day = not user.active_bits & bit

        if becomes_first_activity(user, event, ctx):
            user.first_ts, user.first_event_id = ts, event.event_id
            user.channel, user.device, user.region = event.channel, event.device, event.region
            old_cohort = user.first_day
            if old_cohort != day:
                if old_cohort is not None:
                    effects.append((DAY_EFFECT, old_cohort, NEW_USERS, -1))
                    _retention(user, old_cohort, -1, effects)
                user.first_day = day
                effects.append((DAY_EFFECT, day, NEW_USERS, 1))
                _retention(user, day, 1, effects)

        if new_day:
            effects.append((DAY_EFFECT, day, DAU, 1))
            for window, field_index in ((7, WAU), (30, MAU)):
                for d in range(day, day + window):
                    if not active_bits_between(user, d - window + 1, d):
                        effects.append((DAY_EFFECT, d, field_index, 1))
            user.active_bits |= bit
            cohort: int = user.first_day  # type: ignore[assignment]  # set above
            if 0 <= day - cohort < RETENTION_DAYS:
                effects.append((RETENTION_EFFECT, cohort, day - cohort, 1))

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        for d, out in zip(days, report["days"].values(), strict=True):
            row = partials.day_row(d)
            dau = row[DAU]
            out.update(
                dau=dau, wau=row[WAU], mau=row[MAU], stickiness=ratio(dau, row[MAU]),
                new_users=row[NEW_USERS],
            )  # fmt: skip
        report["retention"] = retention_rows(partials, days)


def _retention(user: UserState, cohort: int, delta: int, effects: list[Effect]) -> None:
    """Add (or retract) the user's active days to cohort `cohort`'s retention."""
    offset = cohort - user.base_day  # type: ignore[operator]
    for n in range(RETENTION_DAYS):
        i = offset + n
        if i >= 0 and (user.active_bits >> i) & 1:
            effects.append((RETENTION_EFFECT, cohort, n, delta))


def retention_rows(partials: Partials, days: range) -> dict[str, list[int]]:
    """Cohort rows up to the report's last day (cohorts with users only)."""
    retention: dict[str, list[int]] = {}
    if days:
        last = days[-1]
        for cohort in sorted(partials.retention):
            row = partials.retention[cohort]
            if row[0] > 0 and cohort <= last:
                retention[DayClock.iso(cohort)] = row[: min(len(row), last - cohort + 1)]
    return retention
