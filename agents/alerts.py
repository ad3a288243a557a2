"""The cluster's one alert evaluator, run by the worker that owns user partition 0.

The evaluator (state/alert_evaluator.py, the same as replay's) reads every
partition's committed partials and completeness (`complete_ms`, see
`Fold.complete_ms`) from `opspulse.kpi` (read_committed) and judges a bucket
once all partitions have completed it, minus `alerts.grace`. Its records go
to `opspulse.alerts` and its own state to `<app_id>.alert-state` in one
transaction with the id `<app_id>-alerts`: whoever takes partition 0 over
starts a producer with that id, which fences the previous evaluator (its
open transaction is aborted, its next one refused), then reads the committed
state and carries on. So each record is published once, in replay's order,
across kill -9, rebalances and restarts. Any failure drops the evaluator; the
next tick starts over from the committed state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents import kafka_security
from agents.snapshot import KpiReader
from agents.statestore import alert_state_topic
from state.alert_evaluator import KEEP_DAYS, Evaluator, last_complete
from state.alerting import DAY_BUCKETS
from state.config import Config

log = logging.getLogger("opspulse.alerts")

STATE_KEY = b"evaluator"
LEADER_PARTITION = 0  # the owner of this user partition runs the evaluator
CLOSE_WAIT_S = 15.0  # how long shutdown waits for an evaluation in flight


class AlertService:
    def __init__(self, config: Config, bootstrap: str, app_id: str, reader: KpiReader) -> None:
        self.config = config
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.reader = reader
        self.state_topic = alert_state_topic(app_id)
        self.evaluator: Evaluator | None = None
        self.records_published = 0
        self._producer: AIOKafkaProducer | None = None
        self._ticking = asyncio.Lock()  # held by a tick; `close` waits for it
        self._closed = False

    @property
    def running(self) -> bool:
        return self.evaluator is not None

    def open_alerts(self) -> list[dict[str, Any]]:
        """The firing alerts as of the last committed evaluation (none unless running)."""
        return [] if self.evaluator is None else self.evaluator.open_alerts()

    async def tick(self, leading: bool) -> None:
        """Judge what the cluster has completed since the last tick, if `leading`."""
        if self._closed:
            return
        async with self._ticking:
            if not self._closed:
                await self._tick(leading)

    async def _tick(self, leading: bool) -> None:
        if not leading:
            await self.stop()
            return
        try:
            if self.evaluator is None:
                await self._take_over()
            evaluator = self.evaluator
            assert evaluator is not None
            await self.reader.refresh()
            complete = self.reader.complete_ms()
            before = evaluator.next_bucket
            if complete is None or (before is not None and last_complete(complete) < before):
                return  # nothing new to judge: decode nothing
            since = None if before is None else before // DAY_BUCKETS - KEEP_DAYS - 1
            records = evaluator.advance([self.reader.decoded(since)], complete)
            if records or evaluator.next_bucket != before:
                await self._commit(evaluator, records)
        except asyncio.CancelledError:
            await self.stop()
            raise
        except Exception as exc:
            log.warning("alert evaluator stopped; it resumes from its committed state: %r", exc)
            await self.stop()

    async def _take_over(self) -> None:
        """Fence any previous evaluator, then load the committed state."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, transactional_id=f"{self.app_id}-alerts",
            enable_idempotence=True, linger_ms=5, **kafka_security.client_kwargs(),
        )  # fmt: skip
        await producer.start()  # init_transactions: fences the previous evaluator
        self._producer = producer
        state = await self._committed_state()
        evaluator = Evaluator(self.config)
        if state is not None:
            since = state["next_bucket"] // DAY_BUCKETS - KEEP_DAYS - 1
            evaluator.restore(state, [await self.reader.partials(since)])
        self.evaluator = evaluator
        log.info(
            "alert evaluator running (%s)",
            "resumed" if state is not None else "from the first bucket with data",
        )

    async def _committed_state(self) -> dict[str, Any] | None:
        tp = TopicPartition(self.state_topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, isolation_level="read_committed",
            enable_auto_commit=False, group_id=None, **kafka_security.client_kwargs(),
        )  # fmt: skip
        await consumer.start()
        value: bytes | None = None
        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for record in batches.get(tp, []):
                    if record.key == STATE_KEY:
                        value = record.value
        finally:
            await consumer.stop()
        return None if value is None else orjson.loads(value)

    async def _commit(self, evaluator: Evaluator, records: list[dict[str, Any]]) -> None:
        producer = self._producer
        assert producer is not None
        topic = self.config.topics.alerts
        async with producer.transaction():
            futures = [
                await producer.send(topic, key=r["key"].encode(), value=orjson.dumps(r))
                for r in records
            ]
            state = orjson.dumps(evaluator.to_json())
            futures.append(await producer.send(self.state_topic, key=STATE_KEY, value=state))
            await asyncio.gather(*futures)
        self.records_published += len(records)
        for r in records:
            log.info("alert %s %s %s", r["state"], r["key"], r["dims"] or "")

    async def close(self) -> None:
        """Shutdown: let a tick in flight finish (it may be reading the KPI topic with
        the reader about to stop), then stop; no tick runs after this."""
        self._closed = True
        try:
            await asyncio.wait_for(self._ticking.acquire(), CLOSE_WAIT_S)
            self._ticking.release()
        except TimeoutError:
            log.warning("an alert evaluation was still running at shutdown; stopping anyway")
        await self.stop()

    async def stop(self) -> None:
        self.evaluator = None
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:  # fenced or broker gone: nothing to keep
                log.debug("alert producer stop: %r", exc)
