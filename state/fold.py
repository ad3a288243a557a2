"""Folding batches of events into user records and partials: one partition's KPI state.

Both drivers use this: `replay` folds files in `ts` order, the Faust worker
folds each partition's batches as they arrive. Watermarks are per source
(a topic-partition); an event older than its own source's watermark minus
the allowed lateness is late: counted, not applied.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, MutableMapping
from typing import Any, Protocol

from state.codec import peek_activity
from state.config import Config
from state.kpis.churn import ChurnLearner
from state.kpis.segments import SegmentChanges
from state.kpis.triggers import CartTriggers
from state.outbox import Outbox
from state.partials import Partials
from state.timers import Timers
from state.user import Context, EventLike, UserState, apply
from state.user_table import UserTable


def _always(source: Hashable) -> bool:
    return True


class SpendLike(Protocol):
    @property
    def event_id(self) -> str: ...
    @property
    def ts(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def amount_cents(self) -> int: ...


TimerHandler = Callable[["Fold", int, str], None]  # (fold, due_ms, key)


class Fold:
    """User records, partials and watermarks of one partition (or of a whole replay)."""

    def __init__(
        self, config: Config, sources: Iterable[Hashable] = (), *, churn: bool = True
    ) -> None:
        """`sources`: every source feeding these users (e.g. clicks-3 and orders-3);
        state is compacted only once all of them have a watermark. `churn`: whether
        these are users a churn model is kept for (not spend)."""
        self.config = config
        self.sources = frozenset(sources)
        self.ctx = Context(config)
        # A dict, or a UserTable over a local store (agents/localstore.py) in the worker.
        self.users: MutableMapping[str, UserState] = {}
        self.partials = Partials(funnel_steps=self.ctx.funnel_steps)
        self.watermarks: dict[Hashable, int] = {}
        self.changed: set[str] = set()  # users changed since the last `take_changed`
        self._lateness = config.allowed_lateness_ms
        self.spend_ids: dict[str, int] = {}  # event id -> ts, within the lateness bound
        # Event-time timers fire when the partition's stream time (the largest watermark
        # of its sources, as Kafka Streams' stream time) passes their due time.
        self.timers = Timers()
        self.timer_handlers: dict[str, TimerHandler] = {}
        self.outbox = Outbox()
        # The horizon may lag the watermarks (that only keeps more state): move it once a minute.
        self._next_horizon_update = 0
        self.segment_changes = SegmentChanges(self)
        self.cart_triggers = CartTriggers(self)
        self.churn = ChurnLearner(self) if churn and config.churn.enabled else None
        # Whether a source has been read to its end (the worker sets it; in replay,
        # which reads in `ts` order, every source always is).
        self.caught_up: Callable[[Hashable], bool] = _always

    def apply_batch(
        self, events: Iterable[tuple[str, EventLike]], source: Hashable
    ) -> list[EventLike]:
        """Apply (user_id, event) pairs from one source; returns the late events."""
        counters = self.partials.counters
        users = self.users
        late: list[EventLike] = []
        mark = self.watermarks.get(source)
        add = self.partials.add
        changed = self.changed
        ctx = self.ctx
        publish = self.segment_changes.after_event
        churn = self.churn
        # Nothing older than the compaction horizon can be applied exactly (an event
        # re-keyed from another partition may be older than this partition's horizon).
        horizon = self.ctx.horizon_ms
        for user_id, event in events:
            counters["consumed"] += 1
            ts = event.ts
            if ts < horizon or (mark is not None and ts < mark - self._lateness):
                counters["late"] += 1
                late.append(event)
                continue
            if mark is None or ts > mark:
                mark = self.watermarks[source] = ts
                if ts >= self._next_horizon_update:
                    self._update_horizon()
                    horizon = self.ctx.horizon_ms
                if churn is not None and ts >= churn.next_check_ms:
                    self.advance_churn()
                next_due = self.timers.next_due_ms
                if next_due is not None and next_due < ts:
                    self.fire_timers(ts)
            result = apply(users.get(user_id), event, ctx)
            if result.duplicate:
                counters["duplicates"] += 1
                continue
            counters["valid"] += 1
            users[user_id] = result.user
            changed.add(user_id)
            add(result.effects)
            if ctx.reclassified:
                ctx.reclassified = False
                publish(user_id, result.user, ts)
                if churn is not None:  # maybe a new active day: the churn model's to see
                    churn.touched.add(user_id)
            if ctx.carts_changed:
                self.cart_triggers.after_event(user_id, result.user)
        return late

    def apply_spend(self, events: Iterable[SpendLike], source: Hashable) -> list[SpendLike]:
        """Acquisition spend from one source, deduplicated by event id within the
        lateness bound of the source's watermark; returns the late events."""
        counters, seen, day = self.partials.counters, self.spend_ids, self.ctx.clock.day
        late: list[SpendLike] = []
        mark = self.watermarks.get(source)
        for event in events:
            counters["consumed"] += 1
            ts = event.ts
            if mark is not None and ts < mark - self._lateness:
                counters["late"] += 1
                late.append(event)
                continue
            if mark is None or ts > mark:
                mark = self.watermarks[source] = ts
            if event.event_id in seen:
                counters["duplicates"] += 1
                continue
            seen[event.event_id] = ts
            counters["valid"] += 1
            self.partials.add_spend(event.channel, day(ts), event.amount_cents)
        if mark is not None:
            floor = mark - self._lateness
            for event_id in [e for e, ts in seen.items() if ts < floor]:
                del seen[event_id]
        return late

    def fire_timers(self, watermark_ms: int) -> None:
        """Run the handler of every timer due before `watermark_ms` (in due order)."""
        handlers = self.timer_handlers
        for due_ms, kind, key in self.timers.fire(watermark_ms):
            handler = handlers.get(kind)
            if handler is None:
                raise KeyError(f"no handler for timers of kind {kind!r}")
            handler(self, due_ms, key)

    def advance_churn(self) -> bool:
        """Let the churn model process the days that are final: `complete_ms` (the
        stream time, held back by any source not read to its end) minus the allowed
        lateness is past their end (state/kpis/churn.py). Whether it did anything."""
        if self.churn is None:
            return False
        complete = self.complete_ms(self.caught_up)
        if complete is None:
            return False
        return self.churn.advance(complete - self._lateness)

    def stream_ms(self) -> int | None:
        """The partition's stream time: its largest watermark (None before any event)."""
        return max(self.watermarks.values()) if self.watermarks else None

    def complete_ms(self, caught_up: Callable[[Hashable], bool]) -> int | None:
        """Up to when this partition's events are all in, for the alerts: its stream
        time, held back by each source not yet read to its end (a source read to its
        end does not hold back, as an idle source in Kafka Streams). None before any
        event, or while a source still behind has no watermark."""
        stream = self.stream_ms()
        if stream is None:
            return None
        complete = stream
        for source in self.sources:
            if not caught_up(source):
                mark = self.watermarks.get(source)
                if mark is None:
                    return None
                complete = min(complete, mark)
        return complete

    def stream_day(self) -> int | None:
        """The local day of the partition's stream time."""
        stream = self.stream_ms()
        return None if stream is None else self.ctx.clock.day(stream)

    def count_invalid(self, n: int = 1) -> None:
        self.partials.counters["consumed"] += n
        self.partials.counters["invalid"] += n

    def restore_horizon(self) -> None:
        """Recompute the compaction horizon after watermarks were restored."""
        if self.watermarks:
            self._update_horizon()

    def _update_horizon(self) -> None:
        self._next_horizon_update = max(self.watermarks.values()) + 60_000
        if not self.sources <= self.watermarks.keys():
            return
        self.ctx.horizon_ms = max(0, min(self.watermarks.values()) - self._lateness)

    def take_changed(self) -> set[str]:
        """Users changed since the last call (to persist once per commit interval)."""
        changed = set(self.changed)
        self.changed.clear()  # the same set: a UserTable pins what it holds
        return changed

    def activity(self) -> Iterator[tuple[str, Any]]:
        """(user id, an object with the user's `base_day`, `active_bits` and
        `churn_pending`) for every user: stored users are not decoded."""
        users = self.users
        if isinstance(users, UserTable):
            return users.activity(peek_activity)
        return iter(users.items())
