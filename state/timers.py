"""Event-time timers of one partition: act when the watermark passes a point.

Cart deadlines, day ends, label horizons and lifecycle changes that come with
time alone are all "when event time passes T, do X for key K". A timer is
`(due_ms, kind, key)`; at most one is pending per `(kind, key)` (scheduling
again moves it). Timers fire in `(due_ms, kind, key)` order once the
partition's watermark is strictly past `due_ms`, so the firing sequence
depends only on the scheduled set and the watermark, never on the driver:
replay and the worker fire the same timers. The pending set is state: it is
committed with the partition (`take_changes`) and restored on recovery
(`restore`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

TimerKey = tuple[str, str]  # (kind, key)


class Timers:
    """Pending timers of one partition, with changes tracked for the next commit."""

    def __init__(self) -> None:
        self._due: dict[TimerKey, int] = {}
        self._heap: list[tuple[int, str, str]] = []  # may hold stale entries (lazy deletion)
        self._changed: set[TimerKey] = set()

    def __len__(self) -> int:
        return len(self._due)

    @property
    def next_due_ms(self) -> int | None:
        """A lower bound of the earliest pending due time (None when nothing is pending)."""
        return self._heap[0][0] if self._heap else None

    def due_of(self, kind: str, key: str) -> int | None:
        return self._due.get((kind, key))

    def schedule(self, due_ms: int, kind: str, key: str) -> None:
        """Fire `(kind, key)` once the watermark passes `due_ms` (replaces a pending one)."""
        if self._due.get((kind, key)) == due_ms:
            return
        self._due[(kind, key)] = due_ms
        self._changed.add((kind, key))
        heapq.heappush(self._heap, (due_ms, kind, key))
        self._compact_heap()

    def cancel(self, kind: str, key: str) -> None:
        if self._due.pop((kind, key), None) is not None:
            self._changed.add((kind, key))
            self._compact_heap()

    def fire(self, watermark_ms: int) -> Iterator[tuple[int, str, str]]:
        """Pop and yield every timer with `due_ms < watermark_ms`, in order.

        A handler may schedule new timers while iterating; those that are
        already due fire in the same pass."""
        heap, due = self._heap, self._due
        while heap and heap[0][0] < watermark_ms:
            at, kind, key = heapq.heappop(heap)
            if due.get((kind, key)) != at:
                continue  # replaced or cancelled
            del due[(kind, key)]
            self._changed.add((kind, key))
            yield at, kind, key

    def take_changes(self) -> dict[TimerKey, int | None]:
        """Timers scheduled, moved, fired or cancelled since the last call: due or None."""
        changed, self._changed = self._changed, set()
        return {k: self._due.get(k) for k in changed}

    def restore(self, kind: str, key: str, due_ms: int) -> None:
        """Re-create a committed timer (recovery): not a change to commit again."""
        self._due[(kind, key)] = due_ms
        heapq.heappush(self._heap, (due_ms, kind, key))

    def _compact_heap(self) -> None:
        # Stale entries are bounded: rebuild once they outnumber the live timers.
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(at, kind, key) for (kind, key), at in self._due.items()]
            heapq.heapify(self._heap)
