"""Channels: acquisition spend per channel and day (spend events, not user events)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import DayClock
from state.money import from_cents
from state.partials import Effect, Partials

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState


class Channels:
    name = "channels"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return False  # fed by `Fold.apply_spend`

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        pass

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        channels: dict[str, Any] = {}
        spend_cents: dict[str, int] = {}
        for (channel, d), cents in sorted(partials.spend.items()):
            entry = channels.setdefault(channel, {"spend_by_day": {}})
            entry["spend_by_day"][DayClock.iso(d)] = from_cents(cents)
            spend_cents[channel] = spend_cents.get(channel, 0) + cents
        for channel, entry in channels.items():
            entry["spend"] = from_cents(spend_cents[channel])
        report["channels"] = channels
