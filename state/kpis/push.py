"""Push campaigns (METRICS.md, Push): per campaign the users sent a push, those who
opened it, and both by the local hour of the user's first `push_sent`.

A (user, campaign) counts as sent from its first `push_sent` and as opened when
the user has a `push_open` of that campaign at or after it — that is, when the
latest open is not before the earliest send, so the record keeps just those two
instants per campaign. Counts are keyed by the day of the first send (table
`push/<campaign>`, slot hour × 2 + opened); an event that moves either instant
retracts the pair's old contribution and adds the new one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.partials import TABLE_EFFECT, Effect, Partials, ratio

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

PREFIX = "push/"
UNKNOWN = "unknown"  # a push event without a campaign
HOURS = 24


class Push:
    name = "push"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type in ("push_sent", "push_open")

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        campaign = event.campaign or UNKNOWN
        pushes = user.push
        pair = pushes.get(campaign)
        if pair is None:
            if len(pushes) >= ctx.config.limits.campaigns_per_user:  # forget the oldest
                del pushes[next(iter(pushes))]
                ctx.overflow["campaigns"] += 1
            pair = pushes[campaign] = [None, None]
        sent, opened = pair
        ts = event.ts
        if event.type == "push_sent":
            if sent is not None and sent <= ts:
                return
            pair[0] = ts
        else:
            if opened is not None and opened >= ts:
                return
            pair[1] = ts
        _contribute(campaign, sent, opened, -1, ctx, effects)
        _contribute(campaign, pair[0], pair[1], 1, ctx, effects)

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        out: dict[str, Any] = {}
        for name in sorted(partials.tables):
            if not name.startswith(PREFIX):
                continue
            slots = [0] * (2 * HOURS)
            for row in partials.table(name, 2 * HOURS).values():
                slots = [a + b for a, b in zip(slots, row, strict=True)]
            sent, opened = sum(slots[0::2]), sum(slots[1::2])
            if sent:
                out[name[len(PREFIX) :]] = {
                    "sent": sent, "opened": opened, "open_rate": ratio(opened, sent),
                    "by_hour": {str(h): [slots[2 * h], slots[2 * h + 1]] for h in range(HOURS)},
                }  # fmt: skip
        report["push"] = out


def _contribute(
    campaign: str, sent: int | None, opened: int | None, delta: int, ctx: Context,
    effects: list[Effect],
) -> None:  # fmt: skip
    if sent is None:
        return
    day, slot, name = ctx.clock.day(sent), 2 * ctx.clock.hour(sent), PREFIX + campaign
    effects.append((TABLE_EFFECT, day, name, slot, delta))
    if opened is not None and opened >= sent:
        effects.append((TABLE_EFFECT, day, name, slot + 1, delta))
