"""Durable state of one input partition, committed atomically with Kafka transactions.

Once per commit interval, one transaction per partition carries everything
the partition's events changed: the changed user records, the changed day
partials and the partition's meta record (last applied input offsets,
watermarks, counters) to the compacted state topic (partition p), the same
day partials to `opspulse.kpi`, the dead letters, and the consumer group's input
offsets (`send_offsets_to_transaction`). The committed offsets therefore
never differ from the state; the offsets are also kept in the meta record,
and events at or below them are skipped if ever redelivered. A kill -9 at
any moment leaves either the whole interval or none of it.

The transactional id is per partition: whoever takes a partition over
fences the previous owner's producer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents import kafka_security
from agents.localstore import LocalStore
from state.codec import decode_day, decode_user, encode_day, encode_user
from state.compat import (
    breakdowns_since,
    check_compatible,
    fingerprint,
    funnels_since,
    retired_funnels,
)
from state.config import Config
from state.fold import Fold
from state.user_table import UserTable

log = logging.getLogger("opspulse.state")

META_KEY = b"m"
USER_PREFIX = b"u/"
DAY_PREFIX = b"d/"
META_VERSION = 2  # v1 (unversioned): no "config" fingerprint
CHURN_KEY = b"c"  # the partition's churn model and progress (state/kpis/churn.py), JSON
# A larger churn state (a forest's pickle) goes in pieces c/0, c/1, ... under a header.
CHURN_CHUNK_BYTES = 900_000
TIMER_PREFIX = b"t/"  # t/<kind>/<key> -> due time (epoch ms, ASCII); a tombstone once fired


@dataclass
class Outgoing:
    """Records of one commit interval, ready to send."""

    records: list[tuple[str, int | None, bytes, bytes | None, list[tuple[str, bytes]] | None]] = (
        field(default_factory=list)
    )

    def add(
        self, topic: str, key: bytes, value: bytes | None, *, partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:  # fmt: skip
        self.records.append((topic, partition, key, value, headers))


def kpi_key(label: int | str, day: int | str) -> bytes:
    return f"{label}/{day}".encode()


class PartitionStore:
    """The transactional producer and the state-topic reader of one partition.

    `spend`: a partition of the spend topic (its own partition count), with its own
    state topic `<app_id>.spend-state`, transactional id `<app_id>-spend-<q>` and
    KPI keys `spend-<q>/…`; otherwise partition p of clicks, orders and re-keys."""

    def __init__(
        self, bootstrap: str, app_id: str, partition: int, config: Config, *, spend: bool = False,
        local_dir: Path | None = None,
    ) -> None:  # fmt: skip
        self.bootstrap = bootstrap
        self.group_id = app_id
        self.partition = partition  # the Kafka partition number of the inputs and state
        self.config = config
        self.state_topic = spend_state_topic(app_id) if spend else state_topic(app_id)
        self.label: int | str = f"spend-{partition}" if spend else partition
        self.spend = spend
        self._churn_pieces = 0  # pieces of the last churn state written or read
        self._checkpoint_key = checkpoint_key()  # signs a churn forest's checkpoint
        self.funnel_names = [f.name for f in config.funnels]
        role = "spend" if spend else "state"
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{app_id}-{role}-{partition}",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=8 * 1024 * 1024,
            transaction_timeout_ms=60_000,
            **kafka_security.client_kwargs(),
        )
        self._started = False
        # The disk tier (agents/localstore.py): users in RocksDB under `local_dir`,
        # a bounded number decoded in memory.
        self.local_dir = local_dir
        self.local: LocalStore | None = None
        self.table: UserTable | None = None
        self.cache_users = config.state.cache_users
        self._taken: set[str] = set()  # users of the transaction being committed
        self.records_read = 0  # state-topic records the last `load` read
        self.local_offset = 0  # where the local store's tail starts in the state topic

    async def start(self) -> None:
        await self.producer.start()  # init_transactions: fences any previous owner
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.producer.stop()
        if self.local is not None:
            self.local.close()
            self.local = None

    async def load(self, sources: Iterable[Any]) -> tuple[Fold, dict[str, int]]:
        """The partition's committed state: its Fold and last applied offset per input
        topic. With a local store, only the state topic's tail after its checkpoint is
        read, and users stay on disk until used."""
        fold = Fold(self.config, sources, churn=not self.spend)
        tp = TopicPartition(self.state_topic, self.partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            **kafka_security.client_kwargs(),
        )
        await consumer.start()
        latest: dict[bytes, bytes | None] = {}
        try:
            consumer.assign([tp])
            beginning = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            local = self.open_local(beginning, end)
            if local is not None:
                consumer.seek(tp, self.local_offset)
            else:
                await consumer.seek_to_beginning(tp)
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                records = batches.get(tp, [])
                self.records_read += len(records)
                if local is not None:
                    local.apply([(r.key, r.value) for r in records], await consumer.position(tp))
                else:
                    for record in records:
                        latest[record.key] = record.value
        finally:
            await consumer.stop()
        if self.local is not None:
            latest = self.local.records()
        offsets = self.restore(fold, latest)
        fold.take_changed()
        fold.partials.take_dirty_days()
        return fold, offsets

    def open_local(self, beginning: int, end: int) -> LocalStore | None:
        """Open the local store (with `local_dir`); `local_offset` is then where the
        state topic, holding [beginning, end), must be read from to bring it up to date."""
        if self.local_dir is None:
            return None
        local, start = LocalStore.open(self.local_dir, self.state_topic, self.partition)
        self.local = local
        if start is None or not beginning <= start <= end:  # else: topic recreated or truncated
            if start is not None:
                log.warning(
                    "partition %d: local store at offset %d, topic holds %d..%d: rebuilding it",
                    self.partition, start, beginning, end,
                )  # fmt: skip
                local.reset()
            start = beginning
        self.local_offset = start
        return local

    def restore(self, fold: Fold, latest: Mapping[bytes, bytes | None]) -> dict[str, int]:
        """Fill `fold` from the latest committed value per state-topic key; returns the
        last applied input offsets. Raises ConfigError if the configuration changed
        in a way the stored state cannot follow (state/compat.py)."""
        meta_value = latest.get(META_KEY)
        meta = orjson.loads(meta_value) if meta_value else None
        stored_config = meta.get("config") if meta else None  # absent before meta v2
        if stored_config is not None:
            check_compatible(stored_config, self.config, self.group_id)
        written = [f["name"] for f in stored_config["funnels"]] if stored_config else None
        names, clock = self.funnel_names, fold.ctx.clock
        if self.local is not None:
            self.table = fold.users = UserTable(
                self.local,
                lambda raw: decode_user(raw, clock, names, written),
                self.cache_users,
                fold.changed,
            )
        for key, value in latest.items():
            if value is None or key == META_KEY:
                continue
            if key.startswith(USER_PREFIX):
                user_id = key[len(USER_PREFIX) :].decode()
                fold.users[user_id] = decode_user(value, clock, names, written)
            elif key.startswith(TIMER_PREFIX):
                kind, _, timer_key = key[len(TIMER_PREFIX) :].decode().partition("/")
                fold.timers.restore(kind, timer_key, int(value))
            elif key.startswith(DAY_PREFIX):
                fold.partials.set_day_record(decode_day(orjson.loads(value), names, written))
        offsets: dict[str, int] = {}
        if meta is not None:
            offsets = meta["offsets"]
            fold.spend_ids = dict(meta.get("spend_ids", {}))
            fold.partials.counters.update(meta["counters"])
            if fold.ctx.breakdowns is not None:
                fold.ctx.breakdowns.restore(meta.get("breakdown_values", {}))
            for topic, mark in meta["watermarks"].items():
                fold.watermarks[(topic, self.partition)] = mark
            fold.restore_horizon()
        if fold.churn is not None:
            fold.churn.restore(self._churn_state(latest), self._checkpoint_key)
        today = fold.stream_day()
        fold.partials.funnel_since = funnels_since(stored_config, self.config, today)
        fold.partials.retired_funnels = retired_funnels(stored_config, self.config)
        fold.partials.breakdown_since = breakdowns_since(stored_config, self.config, today)
        return offsets

    def collect(
        self, fold: Fold, offsets: dict[str, int], out: Outgoing, complete_ms: int | None = None
    ) -> None:
        """Add the interval's changed users, day partials and meta to `out` (synchronous:
        the snapshot is consistent with exactly the events applied so far). `complete_ms`
        (`Fold.complete_ms`) goes with the partials: the alert evaluator reads it."""
        p = self.partition
        state, kpi = self.state_topic, self.config.topics.kpi
        self._taken = fold.take_changed()
        for user_id in self._taken:
            body = encode_user(fold.users[user_id], self.funnel_names)
            out.add(state, USER_PREFIX + user_id.encode(), body, partition=p)
        for day in sorted(fold.partials.take_dirty_days()):
            record = encode_day(fold.partials.day_record(day), self.funnel_names)
            out.add(state, DAY_PREFIX + str(day).encode(), orjson.dumps(record), partition=p)
            out.add(
                kpi, kpi_key(self.label, day), orjson.dumps({"partition": self.label, **record})
            )
        for (kind, timer_key), due in fold.timers.take_changes().items():
            body = None if due is None else str(due).encode()
            out.add(state, TIMER_PREFIX + f"{kind}/{timer_key}".encode(), body, partition=p)
        if fold.churn is not None:
            churn = fold.churn.take_changed(self._checkpoint_key)
            if churn is not None:
                self._add_churn(orjson.dumps(churn), out)
        topics = self.config.topics
        for record in fold.outbox.drain():
            topic = getattr(topics, record.kind)
            out.add(topic, record.key.encode(), orjson.dumps(record.value))
        watermarks = {topic: mark for (topic, _), mark in fold.watermarks.items()}
        counters = dict(fold.partials.counters)
        partials = fold.partials
        since, bd_since = partials.funnel_since, partials.breakdown_since
        meta = {
            "v": META_VERSION, "offsets": offsets, "watermarks": watermarks,
            "counters": counters,
            "config": fingerprint(self.config, since, partials.retired_funnels, bd_since),
        }  # fmt: skip
        if fold.spend_ids:
            meta["spend_ids"] = fold.spend_ids
        if fold.ctx.breakdowns is not None:
            meta["breakdown_values"] = fold.ctx.breakdowns.to_json()
        out.add(state, META_KEY, orjson.dumps(meta), partition=p)
        events = {
            "partition": self.label, "counters": counters, "funnel_since": since,
            "breakdown_since": bd_since, "complete_ms": complete_ms,
        }  # fmt: skip
        out.add(kpi, kpi_key(self.label, "events"), orjson.dumps(events))

    def _add_churn(self, body: bytes, out: Outgoing) -> None:
        """The churn state, in pieces under a header when large; stale pieces deleted."""
        p, state = self.partition, self.state_topic
        size = CHURN_CHUNK_BYTES
        pieces = [body[i : i + size] for i in range(0, len(body), size)] if len(body) > size else []
        if pieces:
            header = {"chunks": len(pieces), "sha256": hashlib.sha256(body).hexdigest()}
            out.add(state, CHURN_KEY, orjson.dumps(header), partition=p)
            for i, piece in enumerate(pieces):
                out.add(state, CHURN_KEY + b"/%d" % i, piece, partition=p)
        else:
            out.add(state, CHURN_KEY, body, partition=p)
        for i in range(len(pieces), self._churn_pieces):
            out.add(state, CHURN_KEY + b"/%d" % i, None, partition=p)
        self._churn_pieces = len(pieces)

    def _churn_state(self, latest: Mapping[bytes, bytes | None]) -> dict[str, Any] | None:
        raw = latest.get(CHURN_KEY)
        data = orjson.loads(raw) if raw else None
        self._churn_pieces = 0
        if data is not None and "chunks" in data:
            n = self._churn_pieces = data["chunks"]
            body = b"".join(latest.get(CHURN_KEY + b"/%d" % i) or b"" for i in range(n))
            if hashlib.sha256(body).hexdigest() != data["sha256"]:
                raise ValueError(
                    f"partition {self.partition}: the churn state's pieces are corrupt"
                )
            data = orjson.loads(body)
        return data

    async def commit(self, out: Outgoing, offsets: dict[str, int]) -> None:
        """Send the interval's records and the next input offsets in one transaction."""
        producer = self.producer
        async with producer.transaction():
            futures = [
                await producer.send(
                    topic, value=value, key=key, partition=partition, headers=headers
                )
                for topic, partition, key, value, headers in out.records
            ]
            sent = await asyncio.gather(*futures)
            next_offsets = {TopicPartition(t, self.partition): o + 1 for t, o in offsets.items()}
            if next_offsets:
                await producer.send_offsets_to_transaction(next_offsets, self.group_id)
        if self.local is not None:
            self._write_local(out, sent)

    def _write_local(self, out: Outgoing, sent: list[Any]) -> None:
        """Copy a committed transaction's state records to the local store, then let the
        user cache evict what the store now holds."""
        state, local = self.state_topic, self.local
        assert local is not None
        records, last = [], None
        for (topic, _, key, value, _), meta in zip(out.records, sent, strict=True):
            if topic == state:
                records.append((key, value))
                last = meta.offset
        if last is not None:
            local.apply(records, last + 1)  # from the offset of the commit marker on
        if self.table is not None:
            self.table.written(self._taken)
            self.table.trim()
        self._taken = set()


def checkpoint_key() -> bytes | None:
    """OPSPULSE_CHECKPOINT_KEY: signs the churn forest's pickled checkpoints."""
    key = os.environ.get("OPSPULSE_CHECKPOINT_KEY")
    return key.encode() if key else None


def state_topic(app_id: str) -> str:
    return f"{app_id}.state"


def spend_state_topic(app_id: str) -> str:
    return f"{app_id}.spend-state"


def alert_state_topic(app_id: str) -> str:
    """The cluster alert evaluator's committed state (agents/alerts.py): one partition."""
    return f"{app_id}.alert-state"
