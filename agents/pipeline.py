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
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from agents import kafka_security
from agents.statestore import Outgoing, PartitionStore
from state.config import Config
from state.fold import Fold
from state.partials import Partials
from state.partitioner import UserPartitions
from streams.dlq import dead_letter_headers
from streams.events import Invalid, parse_event, parse_spend

log = logging.getLogger("opspulse.pipeline")


@dataclass
class PartitionRuntime:
    """Working state of one assigned partition, held in memory between commits."""

    store: PartitionStore
    fold: Fold
    offsets: dict[str, int]
    outgoing: Outgoing = field(default_factory=Outgoing)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False
    # Set when a state transaction failed: memory may then hold an interval that Kafka
    # does not, so nothing of this partition is ever committed from memory again.
    failed: BaseException | None = None
    # Event counters as of the last successful commit (what /metrics reports).
    committed_counters: dict[str, int] = field(default_factory=dict)
    overflow_seen: dict[str, int] = field(default_factory=dict)  # exported so far


class CommitFailed(RuntimeError):
    """A partition's state transaction failed; the worker must restart from Kafka."""


class Pipeline:
    """All partitions this worker owns."""

    def __init__(
        self, config: Config, bootstrap: str, app_id: str, metrics: Any = None,
        data_dir: Path | None = None,
    ) -> None:  # fmt: skip
        """`data_dir`: where the local stores of the user partitions go (with
        `[state] local_store`); None keeps every user in memory."""
        self.config = config
        self.local_root = (
            data_dir / "state" / app_id
            if data_dir is not None and config.state.local_store
            else None
        )
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.metrics = metrics
        self.partitions: dict[int, PartitionRuntime] = {}
        self.suspended: dict[int, PartitionRuntime] = {}  # revoked, maybe assigned back
        self.loads = 0  # partitions loaded from the state topic (each costs a full read)
        self.recovering: set[int] = set()
        self._ready: dict[int, asyncio.Event] = {}
        self.repartition_topic = repartition_topic(app_id)
        self.user_partition = UserPartitions(config.topics.partitions)
        # The end offset (next offset) of an input topic-partition as last fetched, None
        # if unknown: set by the app (the consumer's highwater).
        self.highwater: Callable[[str, int], int | None] = lambda topic, partition: None

    async def wait_ready(
        self, partition: int, still_assigned: Callable[[], bool], timeout: float = 120.0
    ) -> bool:
        """Wait until an assigned partition's state is loaded (Faust may deliver
        its first records before the assignment signal has run)."""
        ready = self._ready.setdefault(partition, asyncio.Event())
        deadline = time.monotonic() + timeout
        while partition not in self.partitions and still_assigned() and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(ready.wait(), 0.5)
            except TimeoutError:
                pass
        return partition in self.partitions

    def _sources(self, key: int) -> list[tuple[str, int]]:
        topics = self.config.topics
        if key < 0:
            return [(topics.spend, kafka_partition(key))]
        return [(topics.clicks, key), (topics.orders, key)]

    async def assign(self, partitions: Iterable[int]) -> None:
        """After a rebalance: keep the partitions set aside by `revoke` that are still
        ours (unless someone else committed them meanwhile), drop the others, and load
        the committed state of new ones, concurrently (their records wait in
        `handle_batch` until then)."""
        assigned = set(partitions)
        for p in sorted(set(self.suspended) - assigned):
            await self.suspended.pop(p).store.stop()
        kept = sorted(assigned & set(self.suspended))
        unchanged = await self._unchanged_since_commit(kept) if kept else set()
        for p in kept:
            runtime = self.suspended.pop(p)
            if p in unchanged:
                self.partitions[p] = runtime
                self._ready.setdefault(p, asyncio.Event()).set()
            else:
                log.info("partition %d was committed by another worker meanwhile: reloading", p)
                await runtime.store.stop()
        if kept:
            log.info("partitions kept without reloading: %s", sorted(unchanged))
        new = sorted(assigned - set(self.partitions))
        self.recovering.update(new)
        await asyncio.gather(*(self._load(p) for p in new))
        self._share_cache()

    def _share_cache(self) -> None:
        """`[state] cache_users` is the worker's: shared by its user partitions."""
        tables = [r.store.table for r in self.partitions.values() if r.store.table is not None]
        for table in tables:
            table.capacity = max(1, self.config.state.cache_users // len(tables))

    async def _unchanged_since_commit(self, partitions: list[int]) -> set[int]:
        """Partitions whose group offsets are still those of our last commit: nobody
        else processed them while they were not ours (e.g. after this worker was
        expelled from the group and rejoined)."""
        wanted = {
            p: {
                TopicPartition(topic, kafka_partition(p)): offset + 1
                for topic, offset in self.suspended[p].offsets.items()
            }
            for p in partitions
        }
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, **kafka_security.client_kwargs()
        )
        await admin.start()
        try:
            tps = [tp for offsets in wanted.values() for tp in offsets]
            committed = await admin.list_consumer_group_offsets(self.app_id, partitions=tps)
        except Exception as exc:  # cannot prove it: reload
            log.warning("could not read the group's offsets, reloading: %r", exc)
            return set()
        finally:
            await admin.close()
        return {
            p
            for p, offsets in wanted.items()
            if all(
                tp in committed and committed[tp].offset == offset for tp, offset in offsets.items()
            )
        }

    async def _load(self, p: int) -> None:
        started = time.monotonic()
        local = None if self.local_root is None or p < 0 else self.local_root / str(p)
        store = PartitionStore(
            self.bootstrap, self.app_id, kafka_partition(p), self.config, spend=p < 0,
            local_dir=local,
        )  # fmt: skip
        await store.start()
        fold, offsets = await store.load(self._sources(p))
        runtime = self.partitions[p] = PartitionRuntime(
            store, fold, offsets, committed_counters=dict(fold.partials.counters)
        )
        fold.caught_up = self._caught_up(runtime)  # churn days wait for lagging inputs
        self.loads += 1
        self.recovering.discard(p)
        self._ready.setdefault(p, asyncio.Event()).set()
        elapsed = time.monotonic() - started
        where = "the state topic" if store.local is None else "its local store and the topic's tail"
        log.info(
            "partition %d recovered: %d users in %.2fs from %s (%d records read)",
            p, len(fold.users), elapsed, where, store.records_read,
        )  # fmt: skip

    async def revoke(self, partitions: Iterable[int], *, keep: bool = True) -> None:
        """Commit revoked partitions. aiokafka's eager protocol revokes every
        partition at each rebalance, so with `keep` they are set aside, not dropped:
        those assigned back are kept by `assign` without reloading. A partition whose
        commit failed is dropped (its next owner redoes the interval from Kafka)."""
        failures: list[CommitFailed] = []
        for p in sorted(set(partitions) & set(self.partitions)):
            try:
                await self.commit_partition(p)
            except CommitFailed as exc:
                failures.append(exc)
            runtime = self.partitions.pop(p)
            self._ready.pop(p, None)
            if keep and runtime.failed is None:
                self.suspended[p] = runtime
            else:
                await runtime.store.stop()
        if failures:
            raise failures[0]

    async def stop(self) -> None:
        """Commit everything and let go of every partition (shutdown)."""
        try:
            await self.revoke(list(self.partitions), keep=False)
        finally:
            for p in list(self.suspended):
                await self.suspended.pop(p).store.stop()

    async def handle_batch(
        self,
        topic: str,
        partition: int,
        records: list[Any],
        still_assigned: Callable[[], bool] = lambda: True,
    ) -> None:
        """Apply one fetched batch of a partition (aiokafka records: offset, key, value).

        Records of a partition that stops being ours before its state loaded are
        dropped: nothing of them is committed, the new owner reads them again."""
        spend = topic == self.config.topics.spend
        key = spend_key(partition) if spend else partition
        runtime = self.partitions.get(key)
        if runtime is None and await self.wait_ready(key, still_assigned):
            runtime = self.partitions.get(key)
        if runtime is None:
            if still_assigned():
                raise RuntimeError(
                    f"records of partition {topic}-{partition} arrived but its state never loaded"
                )
            return
        if spend:
            self._fold_spend(runtime, topic, partition, records)
            return
        started = time.perf_counter()
        applied = runtime.offsets.get(topic, -1)
        fold = runtime.fold
        max_bytes = self.config.max_message_bytes
        rekeyed = topic == self.repartition_topic
        user_partition = self.user_partition
        # Events by watermark source: the input topic-partition, or for re-keyed events
        # the topic they were first sent to (a backlog of orders stays an orders backlog).
        by_source: dict[str, list[tuple[str, Any]]] = {}
        record_of: dict[int, Any] = {}
        forwarded = new = 0
        for record in records:
            if record.offset <= applied:
                continue  # already in the committed state (redelivered after a restart)
            new += 1
            raw = record.value or b""
            event = parse_event(raw, max_bytes=max_bytes)
            if isinstance(event, Invalid):
                fold.count_invalid()
                self._dead_letter(
                    runtime,
                    topic,
                    partition,
                    record.offset,
                    record.key,
                    raw,
                    event.reason,
                    event.detail,
                )
                continue
            if rekeyed:
                source = rekeyed_source(self.repartition_topic, _origin_topic(record))
            elif user_partition(event.user_id) != partition:
                self._forward(runtime, topic, event.user_id, raw)
                forwarded += 1
                continue
            else:
                source = topic
            by_source.setdefault(source, []).append((event.user_id, event))
            record_of[id(event)] = record
        for source, valid in by_source.items():
            for event in fold.apply_batch(valid, (source, partition)):
                self._dead_letter_late(runtime, topic, partition, record_of[id(event)])
        if records[-1].offset > applied:
            runtime.offsets[topic] = records[-1].offset
            runtime.dirty = True
        if self.metrics is not None:
            self.metrics.observe_overflow(fold.ctx.overflow, runtime.overflow_seen)
            if forwarded:
                self.metrics.observe_rekeyed(topic, forwarded)
            if new:
                last = max((v[-1][1].ts for v in by_source.values()), default=None)
                self.metrics.observe_batch(topic, new, time.perf_counter() - started, last)

    def _fold_spend(
        self, runtime: PartitionRuntime, topic: str, partition: int, records: list[Any]
    ) -> None:
        """A batch of the spend topic (keyed by channel): deduplicated into the partials."""
        started = time.perf_counter()
        applied = runtime.offsets.get(topic, -1)
        max_bytes = self.config.max_message_bytes
        new = [r for r in records if r.offset > applied]
        valid, record_of = [], {}
        for record in new:
            raw = record.value or b""
            event = parse_spend(raw, max_bytes=max_bytes)
            if isinstance(event, Invalid):
                runtime.fold.count_invalid()
                self._dead_letter(
                    runtime, topic, partition, record.offset, record.key, raw, event.reason,
                    event.detail,
                )  # fmt: skip
            else:
                valid.append(event)
                record_of[id(event)] = record
        for event in runtime.fold.apply_spend(valid, (topic, partition)):
            self._dead_letter_late(runtime, topic, partition, record_of[id(event)])
        if new:
            runtime.offsets[topic] = new[-1].offset
            runtime.dirty = True
            if self.metrics is not None:
                last = valid[-1].ts if valid else None
                self.metrics.observe_batch(topic, len(new), time.perf_counter() - started, last)

    def _dead_letter_late(
        self, runtime: PartitionRuntime, topic: str, partition: int, record: Any
    ) -> None:
        detail = "older than its topic-partition watermark minus allowed_lateness"
        self._dead_letter(
            runtime, topic, partition, record.offset, record.key, record.value, "late", detail
        )

    def _forward(self, runtime: PartitionRuntime, topic: str, user_id: str, raw: bytes) -> None:
        """Move an event to its user's partition, in this partition's transaction."""
        runtime.outgoing.add(
            self.repartition_topic,
            user_id.encode(),
            raw,
            partition=self.user_partition(user_id),
            headers=[(ORIGIN_HEADER, topic.encode())],
        )

    def _dead_letter(
        self, runtime: PartitionRuntime, topic: str, partition: int, offset: int,
        key: bytes | None, raw: bytes, reason: str, detail: str,
    ) -> None:  # fmt: skip
        headers = dead_letter_headers(reason, detail, topic, partition, offset)
        runtime.outgoing.add(self.config.topics.dlq, key or b"", raw, headers=headers)
        if self.metrics is not None:
            self.metrics.observe_dead_letter(topic, reason)

    def input_partitions(self) -> list[tuple[str, int]]:
        """(topic, Kafka partition) of every input this worker commits."""
        return [source for key in self.partitions for source in self._sources(key)]

    def _caught_up(self, runtime: PartitionRuntime) -> Callable[[Any], bool]:
        """Whether a source (topic, partition) of the partition has been applied up to
        the end offset last fetched (unknown: no)."""

        def caught_up(source: Any) -> bool:
            topic, partition = source
            end = self.highwater(topic, partition)
            return end is not None and runtime.offsets.get(topic, -1) + 1 >= end

        return caught_up

    async def commit_all(self) -> None:
        """Commit every partition; raises CommitFailed after trying all of them."""
        failures: list[CommitFailed] = []
        for p in list(self.partitions):
            try:
                await self.commit_partition(p)
            except CommitFailed as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    async def commit_partition(self, partition: int) -> None:
        """One transaction with everything the partition changed and its input offsets."""
        runtime = self.partitions.get(partition)
        if runtime is None:
            return
        async with runtime.lock:
            if runtime.failed is not None:
                raise CommitFailed(f"partition {partition}: an earlier state commit failed")
            # A lagging input read to its end may complete churn days with no new event.
            if runtime.fold.advance_churn():
                runtime.dirty = True
            if not runtime.dirty:
                return
            out, runtime.outgoing = runtime.outgoing, Outgoing()
            runtime.dirty = False
            offsets = dict(runtime.offsets)
            counters = dict(runtime.fold.partials.counters)
            started = time.perf_counter()
            # `collect` takes the changed users and days: if the transaction fails they
            # are gone from the change sets, so the partition can never commit again.
            complete = None if partition < 0 else runtime.fold.complete_ms(self._caught_up(runtime))
            runtime.store.collect(runtime.fold, offsets, out, complete)
            try:
                await runtime.store.commit(out, offsets)
            except asyncio.CancelledError as exc:  # stopped mid-transaction: same rule
                runtime.failed = exc
                raise
            except Exception as exc:
                runtime.failed = exc
                raise CommitFailed(
                    f"partition {partition}: state transaction failed: {exc!r}"
                ) from exc
            runtime.committed_counters = counters
            if self.metrics is not None:
                self.metrics.observe_commit(time.perf_counter() - started)

    def committed_counters(self) -> dict[str, int]:
        """Event counters of this worker's partitions as last committed."""
        total: dict[str, int] = {}
        for runtime in self.partitions.values():
            for name, n in runtime.committed_counters.items():
                total[name] = total.get(name, 0) + n
        return total

    def local_partials(self) -> Partials:
        merged = Partials(funnel_steps=tuple(len(f.steps) for f in self.config.funnels))
        for runtime in self.partitions.values():
            merged.merge(runtime.fold.partials)
        return merged

    def user(self, user_id: str) -> tuple[int, Any, int, float | None] | None:
        """(partition, record, the partition's stream day, the user's churn score then)
        of a user owned here."""
        for p, runtime in self.partitions.items():
            fold = runtime.fold
            found = fold.users.get(user_id)
            if found is not None:
                day = fold.stream_day() or 0
                score = None if fold.churn is None else fold.churn.score(found, day)
                return p, found, day, score
        return None


ORIGIN_HEADER = "opspulse.topic"


def repartition_topic(app_id: str) -> str:
    """The internal topic through which events reach their user's partition."""
    return f"{app_id}.repartition"


def rekeyed_source(repartition: str, origin: str) -> str:
    """Watermark source name of re-keyed events first sent to `origin` (':' cannot
    occur in a Kafka topic name, so this never collides with a real topic)."""
    return f"{repartition}:{origin}"


def _origin_topic(record: Any) -> str:
    for name, value in record.headers or ():
        if name == ORIGIN_HEADER:
            return bytes(value).decode(errors="replace")
    return "unknown"


def spend_key(partition: int) -> int:
    """The pipeline's key of spend partition q (spend has its own partition count, so
    its partitions live beside the user partitions under negative keys)."""
    return -1 - partition


def kafka_partition(key: int) -> int:
    """The Kafka partition number of a pipeline key (see `spend_key`)."""
    return key if key >= 0 else -1 - key
