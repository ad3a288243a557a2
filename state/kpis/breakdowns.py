"""Breakdowns: DAU, new users, paying users, orders, GMV, refunds, retention and
funnels per acquisition channel, device and region (METRICS.md, Breakdowns).

The per-value partials are filled by `state.breakdowns.record_breakdowns` from
every KPI's effects; this module only renders them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import DayClock
from state.kpis.activity import retention_rows
from state.money import cents_ratio, from_cents
from state.partials import (
    DAU,
    GMV_CENTS,
    NEW_USERS,
    ORDERS_PAID,
    PAYING_USERS,
    REFUNDS_CENTS,
    Effect,
    Partials,
    ratio,
)

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState


class Breakdowns:
    name = "breakdowns"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return False  # fed by every KPI's effects (state/breakdowns.py)

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        pass

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        out: dict[str, Any] = {}
        for dim in config.breakdowns.dimensions:
            since = partials.breakdown_since.get(dim)
            values = {
                value: render_value(sub, config, days)
                for (d, value), sub in sorted(partials.breakdowns.items())
                if d == dim
            }
            out[dim] = {
                "since": DayClock.iso(since) if since is not None else None,
                "values": {v: body for v, body in values.items() if body["days"]},
            }
        report["breakdowns"] = out


def render_value(sub: Partials, config: Config, days: range) -> dict[str, Any]:
    """One breakdown value's days (those with anything to show), retention rows and funnels."""
    iso = DayClock.iso
    out_days: dict[str, Any] = {}
    for d in days:
        row = sub.days.get(d)
        if row is None or not any(row[i] for i in (DAU, NEW_USERS, ORDERS_PAID, REFUNDS_CENTS)):
            continue
        dau, paying, gmv, refunds = row[DAU], row[PAYING_USERS], row[GMV_CENTS], row[REFUNDS_CENTS]
        out_days[iso(d)] = {
            "dau": dau, "new_users": row[NEW_USERS], "paying_users": paying,
            "orders_paid": row[ORDERS_PAID], "gmv": from_cents(gmv),
            "refunds": from_cents(refunds), "arpu": cents_ratio(gmv - refunds, dau),
            "paid_conversion": ratio(paying, dau),
        }  # fmt: skip
    return {
        "days": out_days,
        "retention": retention_rows(sub, days),
        "funnels": {
            spec.name: {iso(d): list(c) for d in days if (c := counts.get(d)) and any(c)}
            for spec, counts in zip(config.funnels, sub.funnels, strict=True)
        },
    }
