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
        self._lock = asyncio.Lock()

    async def partials(self) -> Partials:
        async with self._lock:
            consumer = await self._assigned()
            if self._tps:
                ends = await consumer.end_offsets(self._tps)
                while [tp for tp in self._tps if await consumer.position(tp) < ends[tp]]:
                    batches = await consumer.getmany(
                        *self._tps, timeout_ms=1000, max_records=50_000
                    )
                    for records in batches.values():
                        self.records_read += len(records)
                        for record in records:
                            self._latest[record.key] = record.value
            return partials_from_records(self._latest, self.config)

    async def _assigned(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, isolation_level="read_committed",
                enable_auto_commit=False, group_id=None, **kafka_security.client_kwargs(),
            )  # fmt: skip
            await self._consumer.start()
        if not self._tps:  # the topic may not exist yet: look again next time
            topic = self.config.topics.kpi
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(topic) or set()
            self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if self._tps:
                self._consumer.assign(self._tps)
                await self._consumer.seek_to_beginning(*self._tps)
        return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


async def read_partials(bootstrap: str, config: Config) -> Partials:
    """The cluster's partials, read once from the beginning of the KPI topic."""
    reader = KpiReader(bootstrap, config)
    try:
        return await reader.partials()
    finally:
        await reader.stop()


def partials_from_records(latest: dict[bytes, bytes], config: Config) -> Partials:
    steps = tuple(len(f.steps) for f in config.funnels)
    names = [f.name for f in config.funnels]
    per_partition: dict[int, Partials] = {}
    for key, value in latest.items():
        if value is None:
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
    return build_report(await read_partials(bootstrap, config), config)


def run_snapshot(args: argparse.Namespace) -> int:
    import asyncio

    from agents.replay import write_json
    from agents.settings import bootstrap_servers, load_config

    config = load_config(args.config)
    report = asyncio.run(snapshot_report(bootstrap_servers(), config))
    write_json(report, args.output)
    return 0
