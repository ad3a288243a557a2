"""Breakdowns: the user KPIs' partials again, per bounded acquisition value.

A user's breakdown values are the acquisition attributes (`channel`, `device`,
`region` of the first activity, METRICS.md "Breakdowns"), `unknown` when absent.
Each dimension keeps at most `breakdowns.max_values` distinct values per
partition (first come, first kept) plus `other` and `unknown`, or exactly an
allow-list. First come depends on arrival order: replay and live agree on
values beyond the bound only if each partition sees them in the same order, so
set an allow-list where a dimension may have more values than the bound.

Every transition's effects on the mirrored fields (DAU, new users, paying users,
orders, GMV, refunds, retention, funnels) are added once more under the user's
values (`BREAKDOWN_EFFECT`), so per-value numbers are exact sums like the totals.

A late event earlier than the user's first activity changes the acquisition.
That can only happen while the user's whole history lies inside the lateness
bound (the event itself is no older than the compaction horizon, and it is
older than every event of the user). For such "young" users the record keeps a
ledger: the sum of everything the user added to breakdowns. A move retracts the
ledger from the old values and adds it, with the event's own effects, to the
new ones. Once the first activity is older than the horizon the ledger is
dropped: the acquisition is final.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from state.partials import (
    BREAKDOWN_EFFECT,
    DAU,
    FUNNEL_EFFECT,
    GMV_CENTS,
    NEW_USERS,
    ORDERS_PAID,
    PAID_7D,
    PAYING_USERS,
    REFUNDS_CENTS,
    Effect,
)

if TYPE_CHECKING:
    from state.config import BreakdownSpec
    from state.user import UserState

# Day fields kept per breakdown value (events, WAU and MAU are totals only:
# WAU/MAU cost up to 37 effects per new active day, per dimension).
MIRRORED_FIELDS = frozenset(
    {DAU, NEW_USERS, PAYING_USERS, ORDERS_PAID, GMV_CENTS, REFUNDS_CENTS, PAID_7D}
)
UNKNOWN, OTHER = "unknown", "other"

# A ledger: (kind, a, b) -> net delta. Day fields: (DAY_EFFECT, day, field);
# retention: (RETENTION_EFFECT, cohort, n); funnels: (FUNNEL_EFFECT, funnel, day) -> level.
Ledger = dict[tuple[int, int, int], int]
Key = tuple[tuple[str, str], ...]  # ((dimension, value), ...) in configured order


class BreakdownValues:
    """One partition's bounded value sets: which (dimension, value) a raw value counts as.

    A value once kept stays kept and a full set never grows, so a raw value
    always maps to the same breakdown value (what retraction relies on)."""

    def __init__(self, spec: BreakdownSpec) -> None:
        self.dimensions = spec.dimensions
        self.max_values = spec.max_values
        self.allow = spec.allow
        self.kept: dict[str, dict[str, tuple[str, str]]] = {d: {} for d in spec.dimensions}
        self._other = {d: (d, OTHER) for d in spec.dimensions}
        self._unknown = {d: (d, UNKNOWN) for d in spec.dimensions}  # not counted in the bound
        dims = spec.dimensions
        getter = attrgetter(*dims)
        self._raw: Callable[[UserState], Any] = (
            (lambda u: (getter(u),)) if len(dims) == 1 else getter
        )
        self._keys: dict[tuple[str | None, ...], Key] = {}

    def key_of(self, user: UserState) -> Key:
        raw = self._raw(user)
        key = self._keys.get(raw)
        if key is None:
            key = tuple(self.pair(dim, getattr(user, dim)) for dim in self.dimensions)
            if len(self._keys) < 4096:  # raw values are unbounded; the cache is not
                self._keys[raw] = key
        return key

    def pair(self, dim: str, raw: str | None) -> tuple[str, str]:
        if not raw:
            return self._unknown[dim]
        kept = self.kept[dim]
        pair = kept.get(raw)
        if pair is not None:
            return pair
        allowed = self.allow.get(dim)
        if allowed is not None:
            if raw not in allowed:
                return self._other[dim]
        elif len(kept) >= self.max_values:
            return self._other[dim]
        pair = kept[raw] = (dim, raw)
        return pair

    def to_json(self) -> dict[str, list[str]]:
        """The kept values in the order they were kept (stored in the partition's meta)."""
        return {dim: list(kept) for dim, kept in self.kept.items()}

    def restore(self, stored: dict[str, list[str]]) -> None:
        for dim, values in stored.items():
            if dim in self.kept:
                for value in values:
                    self.kept[dim].setdefault(value, (dim, value))


def mirrored(effects: list[Effect]) -> list[Effect]:
    """The effects breakdowns repeat per value."""
    # DAY_EFFECT is 0; RETENTION_EFFECT and FUNNEL_EFFECT are the other kinds below 3.
    return [e for e in effects if e[0] < BREAKDOWN_EFFECT and (e[0] or e[2] in MIRRORED_FIELDS)]


def add_to_ledger(ledger: Ledger, effects: list[Effect]) -> None:
    for e in effects:
        kind = e[0]
        if kind == FUNNEL_EFFECT:
            key, delta = (kind, e[1], e[2]), e[4] - e[3]
        else:
            key, delta = (kind, e[1], e[2]), e[3]
        total = ledger.get(key, 0) + delta
        if total:
            ledger[key] = total
        else:
            ledger.pop(key, None)


def ledger_effects(ledger: Ledger, sign: int) -> tuple[Effect, ...]:
    """The ledger as effects adding (sign 1) or retracting (sign -1) it."""
    out: list[Effect] = []
    for (kind, a, b), value in sorted(ledger.items()):
        if kind == FUNNEL_EFFECT:
            out.append((kind, a, b, 0, value) if sign > 0 else (kind, a, b, value, 0))
        else:
            out.append((kind, a, b, sign * value))
    return tuple(out)


def record_breakdowns(
    user: UserState,
    effects: list[Effect],
    values: BreakdownValues,
    old_key: Key | None,
    horizon_ms: int,
) -> None:
    """Append the breakdown effects of one applied event to `effects`.

    `old_key`: the user's values before the event when the event may have changed
    the acquisition (an activity event no later than the first one), else None."""
    own = mirrored(effects)
    ledger = user.ledger
    if ledger is not None and user.first_ts is not None and user.first_ts < horizon_ms:
        ledger = user.ledger = None  # the acquisition is final
    if not own and old_key is None:
        return
    key = values.key_of(user)
    if old_key is not None and old_key != key and ledger is not None:
        if ledger:
            effects.append((BREAKDOWN_EFFECT, old_key, ledger_effects(ledger, -1)))
        add_to_ledger(ledger, own)
        if ledger:
            effects.append((BREAKDOWN_EFFECT, key, ledger_effects(ledger, 1)))
        return
    if ledger is not None:
        add_to_ledger(ledger, own)
    if own:
        effects.append((BREAKDOWN_EFFECT, key, tuple(own)))


def encode_ledger(ledger: Ledger | None, funnel_names: Sequence[str]) -> Any:
    """JSON form: [kind, a, b, value] rows, funnels by name."""
    if ledger is None:
        return None
    return [
        [kind, funnel_names[a] if kind == FUNNEL_EFFECT else a, b, value]
        for (kind, a, b), value in ledger.items()
    ]


def decode_ledger(rows: Any, funnel_names: Sequence[str]) -> Ledger | None:
    if rows is None:
        return None
    index = {name: i for i, name in enumerate(funnel_names)}
    ledger: Ledger = {}
    for kind, a, b, value in rows:
        if kind == FUNNEL_EFFECT:
            if a not in index:
                continue  # a funnel no longer configured
            a = index[a]
        ledger[(kind, a, b)] = value
    return ledger
