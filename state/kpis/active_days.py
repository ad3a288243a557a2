"""Active days per month (METRICS.md, "Cohort views"): for users active in month m,
how many, their summed distinct active days, and how many were active on exactly
k days (PostHog's stickiness). Reads the record before `activity` sets the day."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import month_index, month_key, month_start
from state.partials import TABLE_EFFECT, Effect, Partials
from state.user import active_bits_between, is_active

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

NAME = "active_days"
USERS, DAYS, HIST = 0, 1, 1  # row: users, days, then hist[k] at index HIST + k


class ActiveDays:
    name = NAME

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type not in ctx.inactive_types

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        if is_active(user, day):
            return
        month = month_index(day)
        start = month_start(month)
        k = active_bits_between(user, start, month_start(month + 1) - 1).bit_count()
        effects.append((TABLE_EFFECT, start, NAME, DAYS, 1))
        if k:
            effects.append((TABLE_EFFECT, start, NAME, HIST + k, -1))
        else:
            effects.append((TABLE_EFFECT, start, NAME, USERS, 1))
        effects.append((TABLE_EFFECT, start, NAME, HIST + k + 1, 1))

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        out: dict[str, Any] = {}
        for start, row in partials.table(NAME, HIST + 32).items():
            if row[USERS]:
                out[month_key(start)] = {
                    "users": row[USERS],
                    "days": row[DAYS],
                    "hist": {str(k): row[HIST + k] for k in range(1, 32)},
                }
        report.setdefault("cohorts", {})[NAME] = out
