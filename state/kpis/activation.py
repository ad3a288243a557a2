"""7-day activation per cohort day (METRICS.md, "Cohort views"): users first active
on d, and those with an event of a type in `activation.events` at ts < first
activity ts + 7 days. The record keeps the earliest such event's ts; an event that
moves either instant retracts the user's old contribution and adds the new one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import DAY_MS, DayClock
from state.partials import TABLE_EFFECT, Effect, Partials
from state.user import becomes_first_activity

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

NAME = "activation_7d"
NEW_USERS, ACTIVATED = 0, 1
WINDOW_MS = 7 * DAY_MS


class Activation:
    name = NAME

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type not in ctx.inactive_types or event_type in ctx.activation_events

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        ts = event.ts
        first, activation = user.first_ts, user.activation_ts
        new_first, new_activation = first, activation
        if becomes_first_activity(user, event, ctx):
            new_first = ts
        if event.type in ctx.activation_events and (activation is None or ts < activation):
            new_activation = user.activation_ts = ts
        if (new_first, new_activation) == (first, activation):
            return
        _contribute(first, activation, -1, ctx, effects)
        _contribute(new_first, new_activation, 1, ctx, effects)

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        out = {
            DayClock.iso(d): {"new_users": row[NEW_USERS], "activated": row[ACTIVATED]}
            for d, row in partials.table(NAME, 2).items()
            if row[NEW_USERS]
        }
        report.setdefault("cohorts", {})[NAME] = out


def _contribute(
    first: int | None, activation: int | None, delta: int, ctx: Context, effects: list[Effect]
) -> None:
    if first is None:
        return
    day = ctx.clock.day(first)
    effects.append((TABLE_EFFECT, day, NAME, NEW_USERS, delta))
    if activation is not None and activation < first + WINDOW_MS:
        effects.append((TABLE_EFFECT, day, NAME, ACTIVATED, delta))
