"""`opspulse snapshot` and `GET /report`: the cluster-wide report from the KPI topic.

Reads `opspulse.kpi` (committed records only) to its end, keeps the latest
partial per `<partition>/<day>` key and sums the partitions. A worker keeps one
`KpiReader` for `GET /report`, so each request reads only what is new.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import kafka_security
from agents.statestore import alert_state_topic
from state.codec import decode_day
from state.config import Config
from state.partials import Partials
from state.report import build_report


class KpiReader:
    """A long-lived reader of the KPI topic (committed records only): each call reads
    just what was committed since the previous one, up to the topic's end offsets at
    the time of the call, so a report is never older than the call (nor a full re-read)."""

    def __init__(self, bootstrap: str, config: Config) -> None:
        self.bootstrap = bootstrap
        self.config = config
        self.records_read = 0
        self._latest: dict[bytes, bytes] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        # The alert evaluator's committed state (agents/alerts.py): the open alerts.
        self._alert_tp = TopicPartition(alert_state_topic(config.app_id), 0)
        self._alert_state: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def partials(self, since_day: int | None = None) -> Partials:
        """Everything committed so far, merged (day records from `since_day` on)."""
        await self.refresh()
        return self.decoded(since_day)

    def decoded(self, since_day: int | None = None) -> Partials:
        """What the last refresh read, merged (day records from `since_day` on)."""
        return partials_from_records(self._latest, self.config, since_day)

    async def refresh(self) -> None:
        """Read what was committed since the last call (without decoding it)."""
        async with self._lock:
            consumer = await self._assigned()
            tps = consumer.assignment()
            if tps:
                ends = await consumer.end_offsets(list(tps))
                while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                    batches = await consumer.getmany(*tps, timeout_ms=1000, max_records=50_000)
                    for tp, records in batches.items():
                        self.records_read += len(records)
                        if tp == self._alert_tp:
                            if records and records[-1].value is not None:
                                self._alert_state = orjson.loads(records[-1].value)
                            continue
                        for record in records:
                            self._latest[record.key] = record.value

    def open_alerts(self) -> list[dict[str, Any]]:
        """The alerts firing as of the evaluator's last committed state."""
        firing = self._alert_state["firing"] if self._alert_state else {}
        return [firing[key] for key in sorted(firing)]

    async def report(self) -> dict[str, Any]:
        """The cluster-wide report, with the open alerts."""
        report = build_report(await self.partials(), self.config)
        report["alerts"] = self.open_alerts()
        return report

    def complete_ms(self) -> int | None:
        """Up to when every user partition's events are in the partials read last
        (the least of their committed `complete_ms`); None while one is unknown."""
        marks: dict[Any, int | None] = {}
        for key, value in self._latest.items():
            if key.endswith(b"/events") and value is not None:
                record = orjson.loads(value)
                if isinstance(record["partition"], int):
                    marks[record["partition"]] = record.get("complete_ms")
        wanted = range(len(self._tps))  # the KPI topic has as many partitions as the inputs
        if not self._tps or any(marks.get(p) is None for p in wanted):
            return None
        return min(m for p in wanted if (m := marks[p]) is not None)

    async def _assigned(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, isolation_level="read_committed",
                enable_auto_commit=False, group_id=None, **kafka_security.client_kwargs(),
            )  # fmt: skip
            await self._consumer.start()
        alert_topic = self._alert_tp.topic
        if not self._tps or self._alert_tp not in self._consumer.assignment():
            # A topic may not exist yet: look again next time.
            consumer, topic = self._consumer, self.config.topics.kpi
            await consumer._client.force_metadata_update()
            new: list[TopicPartition] = []
            if not self._tps:
                partitions = consumer.partitions_for_topic(topic) or set()
                self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
                new += self._tps
            if consumer.partitions_for_topic(alert_topic):
                new.append(self._alert_tp)
            if new:
                consumer.assign(list(consumer.assignment() | set(new)))
                await consumer.seek_to_beginning(*new)
        return self._consumer

    async def stop(self) -> None:
        """Stop the consumer once no read is in flight (a read of a stopped consumer
        can wait forever)."""
        try:
            await asyncio.wait_for(self._lock.acquire(), 15)
        except TimeoutError:
            pass  # a read is stuck: stop anyway
        else:
            self._lock.release()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


async def read_partials(bootstrap: str, config: Config) -> Partials:
    """The cluster's partials, read once from the beginning of the KPI topic."""
    reader = KpiReader(bootstrap, config)
    try:
        return await reader.partials()
    finally:
        await reader.stop()


def partials_from_records(
    latest: dict[bytes, bytes], config: Config, since_day: int | None = None
) -> Partials:
    """The partitions' latest records merged; with `since_day`, day records of earlier
    days are left out (decoding every day is what costs: the alert evaluator needs
    only its last week)."""
    steps = tuple(len(f.steps) for f in config.funnels)
    names = [f.name for f in config.funnels]
    per_partition: dict[int, Partials] = {}
    for key, value in latest.items():
        if value is None:
            continue
        if since_day is not None and not key.endswith(b"/events"):
            if int(key.rsplit(b"/", 1)[1]) < since_day:
                continue
        record: dict[str, Any] = orjson.loads(value)
        partials = per_partition.setdefault(record["partition"], Partials(funnel_steps=steps))
        if key.endswith(b"/events"):
            partials.counters.update(record["counters"])
            partials.funnel_since.update(record.get("funnel_since", {}))
            partials.breakdown_since.update(record.get("breakdown_since", {}))
        else:
            partials.set_day_record(decode_day(record, names))
    merged = Partials(funnel_steps=steps)
    for partials in per_partition.values():
        merged.merge(partials)
    return merged


async def snapshot_report(bootstrap: str, config: Config) -> dict[str, Any]:
    reader = KpiReader(bootstrap, config)
    try:
        return await reader.report()
    finally:
        await reader.stop()


def run_snapshot(args: argparse.Namespace) -> int:
    import asyncio

    from agents.replay import write_json
    from agents.settings import bootstrap_servers, load_config

    config = load_config(args.config)
    report = asyncio.run(snapshot_report(bootstrap_servers(), config))
    write_json(report, args.output)
    return 0
