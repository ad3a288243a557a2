"""Creating and checking the topics a worker needs, before it joins the group."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents import kafka_security
from agents.pipeline import repartition_topic
from agents.statestore import alert_state_topic, spend_state_topic, state_topic
from state.config import Config
from state.outbox import KINDS

COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
}


class TopicLayoutError(RuntimeError):
    """The input topics cannot be co-partitioned as the worker needs."""


async def ensure_topics(bootstrap: str, config: Config, app_id: str) -> int:
    """Create missing input and derived topics; returns the partition count.

    Refuses if clicks and orders exist with different partition counts:
    users would not be co-partitioned, and distinct counts would be wrong.
    """
    topics = config.topics
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security.client_kwargs())
    await admin.start()
    try:
        rekey = repartition_topic(app_id)
        existing = await _partition_counts(admin, [topics.clicks, topics.orders, rekey])
        counts = {name: n for name, n in existing.items() if n}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{name} has {n}" for name, n in sorted(counts.items()))
            raise TopicLayoutError(
                f"clicks, orders and {rekey} must have the same partition count ({detail}); "
                "repartition one of them or point opspulse at co-partitioned topics"
            )
        partitions = next(iter(counts.values()), topics.partitions)
        wanted = [
            NewTopic(topics.clicks, partitions, 1),
            NewTopic(topics.orders, partitions, 1),
            NewTopic(repartition_topic(app_id), partitions, 1),
            NewTopic(topics.dlq, partitions, 1),
            NewTopic(state_topic(app_id), partitions, 1, topic_configs=COMPACTED),
            NewTopic(topics.kpi, partitions, 1, topic_configs=COMPACTED),
            NewTopic(alert_state_topic(app_id), 1, 1, topic_configs=COMPACTED),
            *(NewTopic(getattr(topics, kind), partitions, 1) for kind in KINDS),
        ]
        present = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in present]
        if missing:
            await admin.create_topics(missing)
        # Spend is keyed by channel and may have any partition count: its state topic
        # follows it, partition for partition.
        spend_partitions = (await _partition_counts(admin, [topics.spend])).get(topics.spend)
        if spend_partitions is None:
            spend_partitions = partitions
            await admin.create_topics([NewTopic(topics.spend, spend_partitions, 1)])
        if spend_state_topic(app_id) not in present:
            await admin.create_topics(
                [NewTopic(spend_state_topic(app_id), spend_partitions, 1, topic_configs=COMPACTED)]
            )
        return partitions
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    present = set(await admin.list_topics())
    asked = [n for n in names if n in present]
    if not asked:
        return {}
    described = await admin.describe_topics(asked)
    return {d["topic"]: len(d["partitions"]) for d in described}
