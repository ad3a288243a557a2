"""`opspulse snapshot` and `GET /report`: the cluster-wide report from the KPI topic.

Reads `opspulse.kpi` (committed records only) to its end, keeps the latest
partial per `<partition>/<day>` key and sums the partitions.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from state.config import Config
from state.partials import Partials
from state.report import build_report


async def read_partials(bootstrap: str, config: Config) -> Partials:
    topic = config.topics.kpi
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    latest: dict[bytes, bytes] = {}
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # the topic may be new to this client
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if tps:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(*tps, timeout_ms=1000, max_records=50_000)
                for records in batches.values():
                    for record in records:
                        latest[record.key] = record.value
    finally:
        await consumer.stop()
    return partials_from_records(latest, config)


def partials_from_records(latest: dict[bytes, bytes], config: Config) -> Partials:
    steps = tuple(len(f.steps) for f in config.funnels)
    per_partition: dict[int, Partials] = {}
    for key, value in latest.items():
        if value is None:
            continue
        record: dict[str, Any] = orjson.loads(value)
        partials = per_partition.setdefault(record["partition"], Partials(funnel_steps=steps))
        if key.endswith(b"/events"):
            partials.counters.update(record["counters"])
        else:
            partials.set_day_record(record)
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
