"""Paid within 7 days (METRICS.md, Channels): per first-activity day, the new users
with an `order_paid` at ts < first activity ts + 7 days — a day field, so the
channel breakdown has it per acquisition channel (`channels[ch].days[d].paid_7d`).
An event that moves the first activity or the earliest paid order retracts the
user's old contribution and adds the new one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import DAY_MS
from state.partials import DAY_EFFECT, PAID_7D, Effect, Partials
from state.user import becomes_first_activity

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

WINDOW_MS = 7 * DAY_MS


class Paid7d:
    name = "paid_7d"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type not in ctx.inactive_types or event_type == "order_paid"

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        # Reads the record before Activity and Orders move first_ts / first_order_ts.
        ts = event.ts
        first, paid = user.first_ts, user.first_order_ts
        new_first = ts if becomes_first_activity(user, event, ctx) else first
        new_paid = ts if event.type == "order_paid" and (paid is None or ts < paid) else paid
        if (new_first, new_paid) == (first, paid):
            return
        was, now = _paid_in_time(first, paid), _paid_in_time(new_first, new_paid)
        if was and (not now or new_first != first):
            effects.append((DAY_EFFECT, user.first_day, PAID_7D, -1))
        if now and (not was or new_first != first):
            effects.append((DAY_EFFECT, day if new_first == ts else user.first_day, PAID_7D, 1))

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        pass  # rendered per channel (state/kpis/channels.py)


def _paid_in_time(first: int | None, paid: int | None) -> bool:
    return first is not None and paid is not None and paid < first + WINDOW_MS
