"""The per-user record and its transition `apply(user, event) -> (user, effects)`.

One composite record per user holds everything the KPIs need: first and last
activity, active days and paid days as bit sets (retention, DAU/WAU/MAU,
paying users), funnel step events still inside the lateness bound, order
stats, acquisition attributes and recent event ids for deduplication.

Every transition is order-insensitive within the lateness bound: an event
older than ones already applied is applied as if it had come in time (an
earlier first activity moves the user to the earlier cohort by retraction,
a late funnel step re-evaluates the chains it can touch).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from state.clock import DAY_MS, DayClock
from state.config import Config
from state.funnel import funnel_level
from state.partials import (
    DAU,
    DAY_EFFECT,
    EVENTS,
    FUNNEL_EFFECT,
    GMV_CENTS,
    MAU,
    NEW_USERS,
    ORDERS_PAID,
    PAYING_USERS,
    REFUNDS_CENTS,
    RETENTION_DAYS,
    RETENTION_EFFECT,
    WAU,
    Effect,
)


class EventLike(Protocol):
    """What a transition reads from an event (streams.events.Event satisfies it)."""

    @property
    def event_id(self) -> str: ...
    @property
    def ts(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def amount_cents(self) -> int: ...


@dataclass(slots=True)
class UserState:
    """Everything opspulse keeps about one user."""

    first_ts: int | None = None  # first activity
    first_event_id: str = ""
    first_day: int | None = None
    last_ts: int | None = None  # last activity
    channel: str | None = None  # acquisition attributes, from the first activity
    device: str | None = None
    region: str | None = None
    base_day: int | None = None  # day of bit 0 in active_bits / paid_bits
    active_bits: int = 0
    paid_bits: int = 0
    orders_paid: int = 0
    revenue_cents: int = 0  # paid - refunded
    first_order_ts: int | None = None
    last_order_ts: int | None = None
    recent_ids: dict[str, int] = field(default_factory=dict)  # event_id -> ts, for dedup
    funnel_steps: list[list[tuple[int, int, int]]] = field(default_factory=list)
    funnel_levels: list[dict[int, int]] = field(default_factory=list)


class Applied(NamedTuple):
    user: UserState
    effects: list[Effect]
    duplicate: bool


class Context:
    """What transitions need from the configuration, plus the compaction horizon.

    `horizon_ms`: no event older than this can still be applied (the minimum
    watermark of the user's partitions minus the allowed lateness); state
    about earlier days may be compacted.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = DayClock(config.timezone)
        self.inactive_types = config.inactive_types
        self.funnels = config.funnels
        self.funnel_steps = tuple(len(f.steps) for f in config.funnels)
        self.step_of: dict[str, list[tuple[int, int]]] = {}
        for f_index, spec in enumerate(config.funnels):
            for s_index, step_type in enumerate(spec.steps):
                self.step_of.setdefault(step_type, []).append((f_index, s_index))
        self.horizon_ms = 0
        self.max_dedup_ids = config.limits.dedup_ids_per_user
        self.max_funnel_steps = config.limits.funnel_steps_per_user
        # Events over a per-user bound, by kind (OVERFLOW_KINDS); a metric, not a KPI.
        self.overflow = dict.fromkeys(OVERFLOW_KINDS, 0)


OVERFLOW_KINDS = ("dedup_ids", "funnel_steps")


def apply(user: UserState | None, event: EventLike, ctx: Context) -> Applied:
    """Fold one valid event into the user's record; the record is updated in place."""
    if user is None:
        user = UserState()
    recent = user.recent_ids
    if event.event_id in recent:
        return Applied(user, [], True)
    recent[event.event_id] = event.ts
    _prune_ids(recent, ctx.horizon_ms)
    if len(recent) > ctx.max_dedup_ids:  # forget the oldest id: O(1), counted
        del recent[next(iter(recent))]
        ctx.overflow["dedup_ids"] += 1

    ts = event.ts
    day = ctx.clock.day(ts)
    effects: list[Effect] = [(DAY_EFFECT, day, EVENTS, 1)]
    kind = event.type
    if kind not in ctx.inactive_types:
        _activity(user, event, day, effects)
    if kind == "order_paid":
        _paid(user, event, day, effects)
    elif kind == "order_refunded":
        user.revenue_cents -= event.amount_cents
        effects.append((DAY_EFFECT, day, REFUNDS_CENTS, event.amount_cents))
    steps = ctx.step_of.get(kind)
    if steps:
        _funnel_steps(user, ts, day, steps, ctx, effects)
    return Applied(user, effects, False)


def _prune_ids(recent: dict[str, int], horizon_ms: int) -> None:
    # Insertion order is nearly time order; stopping at the first young id is enough.
    while recent:
        oldest = next(iter(recent))
        if recent[oldest] >= horizon_ms:
            return
        del recent[oldest]


def _bit(user: UserState, day: int) -> int:
    """Index of `day` in the user's day bit sets, re-basing them if needed."""
    if user.base_day is None:
        user.base_day = day
    elif day < user.base_day:
        shift = user.base_day - day
        user.active_bits <<= shift
        user.paid_bits <<= shift
        user.base_day = day
    return day - user.base_day


def _has_activity_between(user: UserState, lo_day: int, hi_day: int) -> bool:
    lo = max(lo_day - user.base_day, 0)  # type: ignore[operator]
    hi = hi_day - user.base_day  # type: ignore[operator]
    if hi < lo:
        return False
    return (user.active_bits >> lo) & ((1 << (hi - lo + 1)) - 1) != 0


def _activity(user: UserState, event: EventLike, day: int, effects: list[Effect]) -> None:
    ts = event.ts
    if user.last_ts is None or ts > user.last_ts:
        user.last_ts = ts
    index = _bit(user, day)
    bit = 1 << index
    new_day = not user.active_bits & bit

    if user.first_ts is None or (ts, event.event_id) < (user.first_ts, user.first_event_id):
        user.first_ts, user.first_event_id = ts, event.event_id
        user.channel, user.device, user.region = event.channel, event.device, event.region
        old_cohort = user.first_day
        if old_cohort != day:
            if old_cohort is not None:
                effects.append((DAY_EFFECT, old_cohort, NEW_USERS, -1))
                _retention(user, old_cohort, -1, effects)
            user.first_day = day
            effects.append((DAY_EFFECT, day, NEW_USERS, 1))
            _retention(user, day, 1, effects)

    if new_day:
        effects.append((DAY_EFFECT, day, DAU, 1))
        for window, field_index in ((7, WAU), (30, MAU)):
            for d in range(day, day + window):
                if not _has_activity_between(user, d - window + 1, d):
                    effects.append((DAY_EFFECT, d, field_index, 1))
        user.active_bits |= bit
        cohort: int = user.first_day  # type: ignore[assignment]  # set above for any activity
        if 0 <= day - cohort < RETENTION_DAYS:
            effects.append((RETENTION_EFFECT, cohort, day - cohort, 1))


def _retention(user: UserState, cohort: int, delta: int, effects: list[Effect]) -> None:
    """Add (or retract) the user's active days to cohort `cohort`'s retention."""
    offset = cohort - user.base_day  # type: ignore[operator]
    for n in range(RETENTION_DAYS):
        i = offset + n
        if i >= 0 and (user.active_bits >> i) & 1:
            effects.append((RETENTION_EFFECT, cohort, n, delta))


def _paid(user: UserState, event: EventLike, day: int, effects: list[Effect]) -> None:
    bit = 1 << _bit(user, day)
    if not user.paid_bits & bit:
        user.paid_bits |= bit
        effects.append((DAY_EFFECT, day, PAYING_USERS, 1))
    effects.append((DAY_EFFECT, day, ORDERS_PAID, 1))
    effects.append((DAY_EFFECT, day, GMV_CENTS, event.amount_cents))
    user.orders_paid += 1
    user.revenue_cents += event.amount_cents
    ts = event.ts
    if user.first_order_ts is None or ts < user.first_order_ts:
        user.first_order_ts = ts
    if user.last_order_ts is None or ts > user.last_order_ts:
        user.last_order_ts = ts


def _funnel_steps(
    user: UserState,
    ts: int,
    day: int,
    steps: list[tuple[int, int]],
    ctx: Context,
    effects: list[Effect],
) -> None:
    if not user.funnel_steps:
        user.funnel_steps = [[] for _ in ctx.funnels]
        user.funnel_levels = [{} for _ in ctx.funnels]
    clock = ctx.clock
    for f_index, step in steps:
        spec = ctx.funnels[f_index]
        window = spec.window_ms
        events = user.funnel_steps[f_index]
        levels = user.funnel_levels[f_index]
        # Steps older than any day that can still change are final: drop them.
        keep_from = ctx.horizon_ms - window - DAY_MS
        if events and events[0][0] < keep_from:
            del events[: bisect.bisect_left(events, (keep_from,))]
            final_day = clock.day(max(keep_from, 0))
            for old_day in [d for d in levels if d < final_day]:
                del levels[old_day]
        if len(events) >= ctx.max_funnel_steps:
            # Over the bound (a bot): the step is not kept, nothing is re-evaluated,
            # no count is ever retracted; O(1) per event. Counted.
            ctx.overflow["funnel_steps"] += 1
            continue
        bisect.insort(events, (ts, step, day))
        first_day = day if step == 0 else clock.day(ts - window)
        for start_day in range(first_day, day + 1):
            level = funnel_level(events, len(spec.steps), window, start_day)
            old = levels.get(start_day, 0)
            if level != old:
                effects.append((FUNNEL_EFFECT, f_index, start_day, old, level))
                if level:
                    levels[start_day] = level
                else:
                    del levels[start_day]
