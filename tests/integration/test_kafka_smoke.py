"""The local broker works as the pipeline needs: keyed partitioning and transactions."""

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topic(bootstrap, name, partitions):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def consume_all(bootstrap, topic, n, **kwargs):
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **kwargs
    )
    await consumer.start()
    records = []
    try:
        while len(records) < n:
            batches = await consumer.getmany(timeout_ms=10_000)
            if not batches:
                break
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_keyed_events_round_trip_and_keep_their_partition(kafka_bootstrap, topic_name):
    await create_topic(kafka_bootstrap, topic_name, 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(20):
            user = f"u{i % 5}"
            event = {
                "event_id": f"e{i}",
                "user_id": user,
                "ts": 1_793_491_200_000 + i,
                "type": "page_view",
            }
            await producer.send_and_wait(topic_name, orjson.dumps(event), key=user.encode())
    finally:
        await producer.stop()
    records = await consume_all(kafka_bootstrap, topic_name, 20)
    assert sorted(orjson.loads(r.value)["event_id"] for r in records) == sorted(
        f"e{i}" for i in range(20)
    )
    partition_of = {}
    for r in records:
        assert partition_of.setdefault(r.key, r.partition) == r.partition


async def test_transactions_commit_and_abort(kafka_bootstrap, topic_name):
    await create_topic(kafka_bootstrap, topic_name, 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_name}-tx"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic_name, b"committed")
        await producer.begin_transaction()
        await producer.send(topic_name, b"aborted")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic_name, b"end")
    finally:
        await producer.stop()
    records = await consume_all(kafka_bootstrap, topic_name, 2, isolation_level="read_committed")
    assert [r.value for r in records] == [b"committed", b"end"]
