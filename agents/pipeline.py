"""What a worker does with each input message: validate, dead-letter or fold, and
commit each partition's state once per interval (see agents/statestore.py).

No Faust import here: the app hands in messages and partition changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.statestore import Outgoing, PartitionStore
from state.config import Config
from state.fold import Fold
from state.partials import Partials
from state.report import build_report
from streams.dlq import dead_letter_headers
from streams.events import Invalid, parse_event

log = logging.getLogger("opspulse.pipeline")

Ack = Callable[[], Any]


@dataclass
class PartitionRuntime:
    """Working state of one assigned partition, held in memory between commits."""

    store: PartitionStore
    fold: Fold
    offsets: dict[str, int]
    pending_acks: list[Ack] = field(default_factory=list)
    outgoing: Outgoing = field(default_factory=Outgoing)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False


class Pipeline:
    """All partitions this worker owns."""

    def __init__(self, config: Config, bootstrap: str, app_id: str, metrics: Any = None) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.metrics = metrics
        self.partitions: dict[int, PartitionRuntime] = {}
        self.recovering: set[int] = set()
        self.last_commit = time.monotonic()
        self._ready: dict[int, asyncio.Event] = {}

    async def wait_ready(self, partition: int, timeout: float = 120.0) -> bool:
        """Wait until an assigned partition's state is loaded (Faust may deliver
        its first messages before the assignment signal has run)."""
        if partition in self.partitions:
            return True
        ready = self._ready.setdefault(partition, asyncio.Event())
        try:
            await asyncio.wait_for(ready.wait(), timeout)
        except TimeoutError:
            return False
        return partition in self.partitions

    def _sources(self, partition: int) -> list[tuple[str, int]]:
        topics = self.config.topics
        return [(topics.clicks, partition), (topics.orders, partition)]

    async def assign(self, partitions: Iterable[int]) -> None:
        """Load the committed state of newly assigned partitions (before their events flow)."""
        for p in sorted(set(partitions) - set(self.partitions)):
            self.recovering.add(p)
            started = time.monotonic()
            store = PartitionStore(self.bootstrap, self.app_id, p, self.config)
            await store.start()
            fold, offsets = await store.load(self._sources(p))
            self.partitions[p] = PartitionRuntime(store, fold, offsets)
            self.recovering.discard(p)
            self._ready.setdefault(p, asyncio.Event()).set()
            log.info(
                "partition %d recovered: %d users in %.2fs",
                p,
                len(fold.users),
                time.monotonic() - started,
            )

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Commit and drop partitions that move to another worker."""
        for p in sorted(set(partitions) & set(self.partitions)):
            await self.commit_partition(p)
            runtime = self.partitions.pop(p)
            self._ready.pop(p, None)
            await runtime.store.stop()

    async def stop(self) -> None:
        await self.revoke(list(self.partitions))

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        ack: Ack,
    ) -> bool:
        """Apply one input message; False if the partition is not ours (yet)."""
        runtime = self.partitions.get(partition)
        if runtime is None:
            return False
        runtime.pending_acks.append(ack)
        if offset <= runtime.offsets.get(topic, -1):
            return True  # already in the committed state (redelivered after a restart)
        started = time.perf_counter()
        runtime.offsets[topic] = offset
        runtime.dirty = True
        fold = runtime.fold
        raw = value or b""
        event = parse_event(raw, max_bytes=self.config.max_message_bytes)
        if isinstance(event, Invalid):
            fold.count_invalid()
            self._dead_letter(
                runtime, topic, partition, offset, key, raw, event.reason, event.detail
            )
        else:
            late = fold.apply_batch([(event.user_id, event)], (topic, partition))
            if late:
                detail = "older than its topic-partition watermark minus allowed_lateness"
                self._dead_letter(runtime, topic, partition, offset, key, raw, "late", detail)
        if self.metrics is not None:
            self.metrics.observe_event(topic, time.perf_counter() - started)
        return True

    def _dead_letter(
        self, runtime: PartitionRuntime, topic: str, partition: int, offset: int,
        key: bytes | None, raw: bytes, reason: str, detail: str,
    ) -> None:  # fmt: skip
        headers = dead_letter_headers(reason, detail, topic, partition, offset)
        runtime.outgoing.add(self.config.topics.dlq, key or b"", raw, headers=headers)
        if self.metrics is not None:
            self.metrics.observe_dead_letter(topic, reason)

    async def commit_all(self) -> None:
        for p in list(self.partitions):
            await self.commit_partition(p)
        self.last_commit = time.monotonic()

    async def commit_partition(self, partition: int) -> None:
        """One transaction with everything the partition changed; then ack its inputs."""
        runtime = self.partitions.get(partition)
        if runtime is None:
            return
        async with runtime.lock:
            acks, runtime.pending_acks = runtime.pending_acks, []
            if not runtime.dirty:
                for ack in acks:
                    ack()
                return
            out, runtime.outgoing = runtime.outgoing, Outgoing()
            runtime.dirty = False
            started = time.perf_counter()
            runtime.store.collect(runtime.fold, dict(runtime.offsets), out)
            await runtime.store.commit(out)
            if self.metrics is not None:
                self.metrics.observe_commit(time.perf_counter() - started)
            for ack in acks:
                ack()

    def local_partials(self) -> Partials:
        merged = Partials(funnel_steps=tuple(len(f.steps) for f in self.config.funnels))
        for runtime in self.partitions.values():
            merged.merge(runtime.fold.partials)
        return merged

    def local_report(self) -> dict[str, Any]:
        return build_report(self.local_partials(), self.config)

    def user(self, user_id: str) -> tuple[int, Any] | None:
        for p, runtime in self.partitions.items():
            found = runtime.fold.users.get(user_id)
            if found is not None:
                return p, found
        return None
