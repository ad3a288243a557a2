"""Channels: per acquisition channel new users, paid within 7 days, revenue and
retention (the channel breakdown's partials) with spend (spend events), CAC and ROI (METRICS.md, Channels)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import DayClock
from state.kpis.activity import retention_rows
from state.money import cents_ratio, from_cents
from state.partials import GMV_CENTS, NEW_USERS, PAID_7D, REFUNDS_CENTS, Effect, Partials

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState


class Channels:
    name = "channels"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return False  # spend comes from `Fold.apply_spend`, users from the channel breakdown

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        pass

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        iso = DayClock.iso
        spend: dict[str, dict[int, int]] = {}
        for (channel, d), cents in partials.spend.items():
            spend.setdefault(channel, {})[d] = cents
        acquired = {v: sub for (dim, v), sub in partials.breakdowns.items() if dim == "channel"}
        channels: dict[str, Any] = {}
        for channel in sorted(spend.keys() | acquired.keys()):
            sub = acquired.get(channel)
            by_day = spend.get(channel, {})
            rows = sub.days if sub is not None else {}
            total_new = total_revenue = 0
            out_days: dict[str, Any] = {}
            for d in sorted(by_day.keys() | rows.keys()):
                row = rows.get(d)
                new_users = row[NEW_USERS] if row else 0
                revenue = row[GMV_CENTS] - row[REFUNDS_CENTS] if row else 0
                cents = by_day.get(d, 0)
                total_new += new_users
                total_revenue += revenue
                if new_users or revenue or cents:
                    out_days[iso(d)] = {
                        "new_users": new_users,
                        "paid_7d": row[PAID_7D] if row else 0,
                        "revenue": from_cents(revenue),
                        "spend": from_cents(cents),
                        "cac": cents_ratio(cents, new_users),
                    }
            if not out_days:
                continue  # only retracted users (a late earlier event moved them)
            total_spend = sum(by_day.values())
            channels[channel] = {
                "new_users": total_new,
                "spend": from_cents(total_spend),
                "revenue": from_cents(total_revenue),
                "cac": cents_ratio(total_spend, total_new),
                "roi": round(total_revenue / total_spend, 4) if total_spend else None,
                "days": out_days,
                "retention": retention_rows(sub, days) if sub is not None else {},
            }
        report["channels"] = channels
