"""Orders and value: paying users, paid orders, GMV, refunds, ARPU/ARPPU/AOV, paid
conversion; per user orders, revenue (paid − refunded) and first/last order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.money import cents_ratio, from_cents
from state.partials import (
    DAU,
    DAY_EFFECT,
    GMV_CENTS,
    ORDERS_PAID,
    PAYING_USERS,
    REFUNDS_CENTS,
    Effect,
    Partials,
    ratio,
)
from state.user import day_bit

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState


class Orders:
    name = "orders"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type in ("order_paid", "order_refunded")

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        amount = event.amount_cents
        if event.type == "order_refunded":
            user.revenue_cents -= amount
            effects.append((DAY_EFFECT, day, REFUNDS_CENTS, amount))
            return
        bit = 1 << day_bit(user, day)
        if not user.paid_bits & bit:
            user.paid_bits |= bit
            effects.append((DAY_EFFECT, day, PAYING_USERS, 1))
        effects.append((DAY_EFFECT, day, ORDERS_PAID, 1))
        effects.append((DAY_EFFECT, day, GMV_CENTS, amount))
        user.orders_paid += 1
        user.revenue_cents += amount
        ts = event.ts
        if user.first_order_ts is None or ts < user.first_order_ts:
            user.first_order_ts = ts
        if user.last_order_ts is None or ts > user.last_order_ts:
            user.last_order_ts = ts

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        for d, out in zip(days, report["days"].values(), strict=True):
            row = partials.day_row(d)
            dau, gmv, refunds = row[DAU], row[GMV_CENTS], row[REFUNDS_CENTS]
            paying, orders = row[PAYING_USERS], row[ORDERS_PAID]
            out.update(
                paying_users=paying, orders_paid=orders, gmv=from_cents(gmv),
                refunds=from_cents(refunds), arpu=cents_ratio(gmv - refunds, dau),
                arppu=cents_ratio(gmv - refunds, paying), aov=cents_ratio(gmv, orders),
                paid_conversion=ratio(paying, dau),
            )  # fmt: skip
