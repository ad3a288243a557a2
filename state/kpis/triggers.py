"""Cart abandonment triggers (METRICS.md, Triggers): an `add_to_cart` at c is
abandoned when the user has no `order_paid` and no other `add_to_cart` with ts in
(c, c + `thresholds.cart_abandon_after`].

The record keeps the carts a late event can still reach, each `[c, event id,
state]`: pending (its deadline not yet passed by the partition's stream time),
fired (published as abandoned) or settled (shown not abandoned, before or after
firing). Abandonment can only be undone, never redone (events are only added),
so each cart is published at most once and retracted at most once. The paid
instants come from the repurchase cycle's `order_ts` (all of them inside the
lateness bound).

`CartTriggers` (the fold's part) owns one event-time timer per user at the
earliest pending deadline; when the stream time passes it, the due carts are
published on `opspulse.triggers` and counted (table `triggers`, keyed by the
cart's day, +1); a retraction record and -1 follow when a late event settles a
fired cart. A cart that arrives after its deadline has passed is decided at once.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from state.clock import DayClock
from state.partials import TABLE_EFFECT, Effect, Partials

if TYPE_CHECKING:
    from state.config import Config
    from state.fold import Fold
    from state.user import Context, EventLike, UserState

NAME = "triggers"  # the report section, the partials table and the derived record kind
KIND = "cart_abandoned"
TIMER = "cart"
PENDING, FIRED, SETTLED = 0, 1, 2


class Carts:
    """The per-user cart bookkeeping of a fold; effects count retractions."""

    name = "cart_abandoned"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type == "add_to_cart" or event_type == "order_paid"

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        delay = ctx.config.thresholds.cart_abandon_after_ms
        ts, carts = event.ts, user.carts
        # Carts at c in [ts - delay, ts) are not abandoned: this event is in (c, c + delay].
        i = bisect.bisect_left(carts, [ts - delay])
        while i < len(carts) and carts[i][0] < ts:
            entry = carts[i]
            if entry[2] == FIRED:
                ctx.settled.append(entry)
                effects.append((TABLE_EFFECT, ctx.clock.day(entry[0]), NAME, 0, -1))
            entry[2] = SETTLED
            i += 1
        if event.type == "add_to_cart":
            j = bisect.bisect_left(carts, [ts + 1])  # the first cart after ts
            later = carts[j][0] if j < len(carts) else None
            orders = user.order_ts
            k = bisect.bisect_right(orders, ts)
            if k < len(orders) and (later is None or orders[k] < later):
                later = orders[k]
            state = SETTLED if later is not None and later <= ts + delay else PENDING
            bisect.insort(carts, [ts, event.event_id, state])
        ctx.carts_changed = True
        _prune(carts, ctx.horizon_ms - delay, ctx)

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        iso = DayClock.iso
        counts = {iso(d): row[0] for d, row in partials.table(NAME, 1).items() if row[0]}
        report[NAME] = {KIND: counts}


def _prune(carts: list[list[Any]], floor_ms: int, ctx: Context) -> None:
    """Forget decided carts no late event can reach; over the bound, the oldest."""
    keep = 0
    while keep < len(carts) and carts[keep][0] < floor_ms and carts[keep][2] != PENDING:
        keep += 1
    if keep:
        del carts[:keep]
    if len(carts) > ctx.config.limits.carts_per_user:  # a bot: forget the oldest, counted
        del carts[0]
        ctx.overflow["carts"] += 1


class CartTriggers:
    """The fold's side: timers at deadlines, records on `opspulse.triggers`."""

    def __init__(self, fold: Fold) -> None:
        self.fold = fold
        self.delay = fold.config.thresholds.cart_abandon_after_ms
        self.day = fold.ctx.clock.day
        fold.timer_handlers[TIMER] = self.on_timer

    def after_event(self, user_id: str, user: UserState) -> None:
        """Publish the retractions an event caused; schedule (or fire) the next deadline."""
        ctx = self.fold.ctx
        for entry in ctx.settled:
            self._emit(user_id, entry, retracted=True)
        ctx.settled.clear()
        ctx.carts_changed = False
        self._schedule(user_id, user)
        due, stream_ms = self.fold.timers.due_of(TIMER, user_id), self.fold.stream_ms()
        if due is not None and stream_ms is not None and due < stream_ms:
            self.fold.fire_timers(stream_ms)  # a late cart whose deadline has already passed

    def on_timer(self, fold: Fold, due_ms: int, user_id: str) -> None:
        user = fold.users.get(user_id)
        if user is None:
            return
        effects: list[Effect] = []
        for entry in user.carts:
            if entry[2] == PENDING and entry[0] + self.delay <= due_ms:
                entry[2] = FIRED
                effects.append((TABLE_EFFECT, self.day(entry[0]), NAME, 0, 1))
                self._emit(user_id, entry, retracted=False)
        fold.partials.add(effects)
        fold.changed.add(user_id)
        self._schedule(user_id, user)

    def _schedule(self, user_id: str, user: UserState) -> None:
        # Carts are in time order: the first pending one has the earliest deadline.
        first = next((entry[0] for entry in user.carts if entry[2] == PENDING), None)
        if first is not None:
            self.fold.timers.schedule(first + self.delay, TIMER, user_id)
        else:
            self.fold.timers.cancel(TIMER, user_id)

    def _emit(self, user_id: str, entry: list[Any], *, retracted: bool) -> None:
        value: dict[str, Any] = {
            "kind": KIND, "user_id": user_id, "ts": entry[0] + self.delay,
            "cart_ts": entry[0], "cart_event_id": entry[1],
        }  # fmt: skip
        if retracted:
            value["retracted"] = True
        self.fold.outbox.emit(NAME, user_id, value)
