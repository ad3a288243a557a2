"""GET /report keeps one reader of the KPI topic: a request reads only what was
committed since the previous one, yet always sees everything committed before it."""

import orjson
from aiokafka import AIOKafkaProducer

from agents.snapshot import KpiReader
from state.config import Config, Topics


async def test_each_report_reads_only_the_new_kpi_records(kafka_bootstrap, topic_name):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    config = Config(topics=Topics(kpi=topic_name, partitions=2))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic_name, 2, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def send_day(partition, day, events):
        record = {"partition": partition, "day": day, "fields": [events] + [0] * 8,
                  "retention": None, "funnels": [None]}  # fmt: skip
        await producer.send_and_wait(
            topic_name, orjson.dumps(record), key=f"{partition}/{day}".encode(), partition=partition
        )

    reader = KpiReader(kafka_bootstrap, config)
    try:
        for day in range(100):
            await send_day(day % 2, 20_000 + day, 1)
        first = await reader.partials()
        assert reader.records_read == 100
        assert sum(row[0] for row in first.days.values()) == 100
        await send_day(1, 20_099, 5)  # an update of one day's partial
        second = await reader.partials()
        assert reader.records_read == 101  # one more record read, not 101 again
        assert second.days[20_099][0] == 5 and sum(r[0] for r in second.days.values()) == 104
    finally:
        await reader.stop()
        await producer.stop()
