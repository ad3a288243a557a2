"""Repurchase cycle (METRICS.md, "Cohort views"): gaps between consecutive
`order_paid` of a user, counted and summed in the month of the later order.

The record keeps the paid-order instants that a late order can still fall
between: those inside the lateness bound plus the last one before it. A late
order splits the gap it falls into (retract it, add both halves)."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from state.clock import DAY_MS, month_index, month_key, month_start
from state.partials import TABLE_EFFECT, Effect, Partials

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

NAME = "repurchase_cycle"
GAPS, GAP_MS = 0, 1


class RepurchaseCycle:
    name = NAME

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type == "order_paid"

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        ts, orders = event.ts, user.order_ts
        i = bisect.bisect_right(orders, ts)
        before = orders[i - 1] if i else None
        after = orders[i] if i < len(orders) else None
        if before is not None and after is not None:
            _gap(before, after, -1, ctx, effects)
        if before is not None:
            _gap(before, ts, 1, ctx, effects)
        if after is not None:
            _gap(ts, after, 1, ctx, effects)
        orders.insert(i, ts)
        keep = bisect.bisect_left(orders, ctx.horizon_ms) - 1  # the last one before the bound
        if keep > 0:
            del orders[:keep]
        if len(orders) > ctx.max_orders:  # a bot: forget the oldest, counted
            del orders[0]
            ctx.overflow["paid_orders"] += 1

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        out = {
            month_key(start): {"gaps": row[GAPS], "days": row[GAP_MS] / DAY_MS}
            for start, row in partials.table(NAME, 2).items()
            if row[GAPS]
        }
        report.setdefault("cohorts", {})[NAME] = out


def _gap(earlier: int, later: int, delta: int, ctx: Context, effects: list[Effect]) -> None:
    start = month_start(month_index(ctx.clock.day(later)))
    effects.append((TABLE_EFFECT, start, NAME, GAPS, delta))
    effects.append((TABLE_EFFECT, start, NAME, GAP_MS, delta * (later - earlier)))
