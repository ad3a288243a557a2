"""Reactivation (METRICS.md, "Cohort views"): per month m, the users dormant at its
start (last activity before m's first day at least 30 days before it) and those
of them active in m.

Pure function of the user's active days: each gap between consecutive active
days a < b makes the user dormant in the months whose first day lies in
[a + 30, b] (reactivated in b's month if that month is among them); after the
last active day, dormant in every month from a + 30 on. Dormancy is kept as a
difference row (+1 where it starts, -1 after it ends) and summed at render. A
new active day splits the gap it falls into."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from state.clock import month_index, month_key, month_start
from state.partials import TABLE_EFFECT, Effect, Partials
from state.user import is_active

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

NAME = "reactivation"
DORMANT_DELTA, REACTIVATED = 0, 1
DORMANT_DAYS = 30


class Reactivation:
    name = NAME

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type not in ctx.inactive_types

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        if is_active(user, day):
            return
        before, after = _neighbours(user, day)
        if before == day:
            return  # already active that day
        if before is not None:
            _gap(before, after, -1, effects)
            _gap(before, day, 1, effects)
        _gap(day, after, 1, effects)

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        out: dict[str, Any] = {}
        rows = partials.table(NAME, 2)
        if days:
            dormant = 0
            first, last = month_index(days[0]), month_index(days[-1])
            for start, row in rows.items():
                if month_index(start) < first:
                    dormant += row[DORMANT_DELTA]
            for month in range(first, last + 1):
                start = month_start(month)
                row = rows.get(start, [0, 0])
                dormant += row[DORMANT_DELTA]
                if dormant or row[REACTIVATED]:
                    out[month_key(start)] = {"dormant": dormant, "reactivated": row[REACTIVATED]}
        report.setdefault("cohorts", {})[NAME] = out


def _neighbours(user: UserState, day: int) -> tuple[int | None, int | None]:
    """The user's last active day ≤ `day` and first active day > `day` (the record as it is)."""
    bits, base = user.active_bits, user.base_day
    if base is None or not bits:
        return None, None
    i = day - base
    if i < 0:
        return None, base + (bits & -bits).bit_length() - 1
    below = bits & ((1 << (i + 1)) - 1)
    above = bits >> (i + 1)
    before = base + below.bit_length() - 1 if below else None
    after = day + (above & -above).bit_length() if above else None
    return before, after


def _gap(a: int, b: int | None, delta: int, effects: list[Effect]) -> None:
    """Contribution of the gap between active days a and b (None: no later activity)."""
    first = month_index(a + DORMANT_DAYS - 1) + 1  # the first month starting on or after a + 30
    if b is None:
        effects.append((TABLE_EFFECT, month_start(first), NAME, DORMANT_DELTA, delta))
        return
    last = month_index(b)
    if first > last:
        return
    effects.append((TABLE_EFFECT, month_start(first), NAME, DORMANT_DELTA, delta))
    effects.append((TABLE_EFFECT, month_start(last + 1), NAME, DORMANT_DELTA, -delta))
    effects.append((TABLE_EFFECT, month_start(last), NAME, REACTIVATED, delta))
