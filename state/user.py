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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from state.breakdowns import BreakdownValues, record_breakdowns
from state.clock import DayClock
from state.config import Config
from state.partials import DAY_EFFECT, EVENTS, Effect


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
    @property
    def campaign(self) -> str | None: ...
    @property
    def experiment(self) -> str | None: ...
    @property
    def variant(self) -> str | None: ...


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
    activation_ts: int | None = None  # earliest event of an `activation.events` type
    order_ts: list[int] = field(default_factory=list)  # paid orders a late one may fall between
    # What the user added to breakdowns while its acquisition may still change
    # (state/breakdowns.py); None once final, or unknown (records from before v4).
    ledger: dict[tuple[int, int, int], int] | None = field(default_factory=dict)
    # For the classifications as of the end of each day (state/kpis/segments.py): the
    # first add_to_cart day; paid orders and net cents per day a late event can reach,
    # [[day, paid, cents], ...] (None: a record from before v6, not yet counted there);
    # and [paid, cents, last paid day] of the days before them.
    cart_day: int | None = None
    money: list[list[int]] | None = field(default_factory=list)
    money_base: list[int | None] = field(default_factory=lambda: [0, 0, None])
    # The lifecycle stage and RFM segment (indexes) last published on opspulse.segments.
    published: list[int | None] = field(default_factory=lambda: [None, None])
    # Per push campaign: [first push_sent ts, last push_open ts] (state/kpis/push.py).
    push: dict[str, list[int | None]] = field(default_factory=dict)
    # Per experiment: [first exposure ts, its event id, variant, earliest goal ts at or
    # after it]; goal instants inside the lateness bound (state/kpis/experiments.py).
    experiments: dict[str, list[Any]] = field(default_factory=dict)
    goal_ts: list[int] = field(default_factory=list)
    # Carts a late event can still reach: [ts, event id, state] (state/kpis/triggers.py).
    carts: list[list[Any]] = field(default_factory=list)
    # Funnel step events for the alert rates: [ts, event id, type, dims] (kpis/alert_rates.py).
    alert_steps: list[list[Any]] = field(default_factory=list)
    # Days with an add_to_cart and with an order_refunded, back to a month before the
    # compaction horizon (state/churn_features.py).
    cart_days: list[int] = field(default_factory=list)
    refund_days: list[int] = field(default_factory=list)
    # Churn predictions awaiting their label, [day, due day, score, *feature snapshot],
    # and whether the user is flagged on opspulse.churn-scores (state/kpis/churn.py).
    churn_pending: list[list[Any]] = field(default_factory=list)
    churn_flagged: bool = False


Handler = Callable[["UserState", "EventLike", int, "Context", list[Effect]], None]


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
        self.reclassified = False  # set by an event that changed what classes depend on
        # Set by an event that changed the user's carts; the fired carts it settled.
        self.carts_changed = False
        self.settled: list[list[Any]] = []
        self.max_dedup_ids = config.limits.dedup_ids_per_user
        self.max_funnel_steps = config.limits.funnel_steps_per_user
        self.max_orders = config.limits.paid_orders_per_user
        self.activation_events = config.activation_events
        # Events over a per-user bound, by kind (OVERFLOW_KINDS); a metric, not a KPI.
        self.overflow = dict.fromkeys(OVERFLOW_KINDS, 0)
        from state.kpis import all_kpis  # the KPI modules import this one

        self.kpis = all_kpis()
        dims = config.breakdowns.dimensions
        self.breakdowns = BreakdownValues(config.breakdowns) if dims else None
        self.handlers_of: dict[str, tuple[Handler, ...]] = {}

    def handlers_for(self, event_type: str) -> tuple[Handler, ...]:
        """The `apply` of every KPI reading this event type, remembered per type
        (event types are free strings: at most 1024 are remembered)."""
        handlers = tuple(kpi.apply for kpi in self.kpis if kpi.wants(event_type, self))
        if len(self.handlers_of) < 1024:
            self.handlers_of[event_type] = handlers
        return handlers


OVERFLOW_KINDS = (
    "dedup_ids", "funnel_steps", "paid_orders", "campaigns", "experiments", "carts",
)  # fmt: skip


def apply(user: UserState | None, event: EventLike, ctx: Context) -> Applied:
    """Fold one valid event into the user's record (updated in place): deduplicate,
    then hand it to every KPI that reads its type (state/kpis/)."""
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

    day = ctx.clock.day(event.ts)
    effects: list[Effect] = [(DAY_EFFECT, day, EVENTS, 1)]
    handlers = ctx.handlers_of.get(event.type)
    if handlers is None:
        handlers = ctx.handlers_for(event.type)
    values = ctx.breakdowns
    old_key = None
    if values is not None and becomes_first_activity(user, event, ctx):
        old_key = values.key_of(user)
    for handle in handlers:
        handle(user, event, day, ctx, effects)
    if values is not None and (len(effects) > 1 or old_key is not None):
        record_breakdowns(user, effects, values, old_key, ctx.horizon_ms)
    return Applied(user, effects, False)


def _prune_ids(recent: dict[str, int], horizon_ms: int) -> None:
    # Insertion order is nearly time order; stopping at the first young id is enough.
    while recent:
        oldest = next(iter(recent))
        if recent[oldest] >= horizon_ms:
            return
        del recent[oldest]


def day_bit(user: UserState, day: int) -> int:
    """Index of `day` in the user's day bit sets, re-basing them if needed."""
    if user.base_day is None:
        user.base_day = day
    elif day < user.base_day:
        shift = user.base_day - day
        user.active_bits <<= shift
        user.paid_bits <<= shift
        user.base_day = day
    return day - user.base_day


def becomes_first_activity(user: UserState, event: EventLike, ctx: Context) -> bool:
    """Whether `event` is (or comes before) the user's first activity: the smallest
    (ts, event_id) among activity events decides cohort and acquisition."""
    return event.type not in ctx.inactive_types and (
        user.first_ts is None or (event.ts, event.event_id) < (user.first_ts, user.first_event_id)
    )


def active_bits_between(user: UserState, lo_day: int, hi_day: int) -> int:
    """The user's active-day bits for days lo_day..hi_day (the record as it is): zero
    when inactive throughout, `.bit_count()` active days."""
    if user.base_day is None:
        return 0
    lo = max(lo_day - user.base_day, 0)
    hi = hi_day - user.base_day
    if hi < lo:
        return 0
    return (user.active_bits >> lo) & ((1 << (hi - lo + 1)) - 1)


def last_active_day(user: UserState, day: int) -> int | None:
    """The user's last active day up to `day` (the record as it is)."""
    base = user.base_day
    if base is None or day < base:
        return None
    below = user.active_bits & ((2 << (day - base)) - 1)
    return base + below.bit_length() - 1 if below else None


def active_days(user: UserState) -> list[int]:
    """The user's active days, ascending."""
    bits, base, days = user.active_bits, user.base_day, []
    while bits:
        low = bits & -bits
        days.append(base + low.bit_length() - 1)  # type: ignore[operator]
        bits ^= low
    return days


def is_active(user: UserState, day: int) -> bool:
    """Whether the user was active on `day` (the record as it is)."""
    base = user.base_day
    return base is not None and day >= base and bool((user.active_bits >> (day - base)) & 1)
