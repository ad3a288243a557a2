"""Paid orders and GMV per 5-minute bucket, in total and per breakdown value of the
order (METRICS.md, "Alert rates"): what the `orders:volume` alert rule watches.

Each `order_paid` adds 1 and its amount to its bucket's pair of slots in the table
`alert/#orders` (and `alert/#orders/<dimension>/<value>` for the order's device,
channel and region, or the user's when the event has none): additive, so any
arrival order gives the same tables. Rows are keyed by UTC day like the step
pairs' (state/kpis/alert_rates.py). Nothing in the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.alerting import BUCKET_MS, DAY_BUCKETS
from state.kpis.alert_rates import PREFIX, breakdown_tables
from state.partials import TABLE_EFFECT, Effect, Partials

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

ORDERS_TABLE = f"{PREFIX}#orders"  # '#': no funnel's tables start so (alert/<funnel>/<i>)


class AlertOrders:
    name = "alert_orders"

    def __init__(self) -> None:
        self._names: dict[tuple[Any, ...], list[str]] = {}  # breakdown_tables' cache

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type == "order_paid"

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        raw = (
            event.device or user.device, event.channel or user.channel,
            event.region or user.region,
        )  # fmt: skip
        names = breakdown_tables(ORDERS_TABLE, raw, ctx, self._names)
        utc_day, slot = divmod(event.ts // BUCKET_MS, DAY_BUCKETS)
        for name in names:
            effects.append((TABLE_EFFECT, utc_day, name, 2 * slot, 1))
            effects.append((TABLE_EFFECT, utc_day, name, 2 * slot + 1, event.amount_cents))

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        """Nothing in the report: the alert evaluator reads these tables."""
