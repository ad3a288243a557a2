"""The local broker works as the pipeline needs: keyed partitioning and transactions."""

import asyncio

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

USERS = [f"u{i}" for i in range(5)]


async def create_topic(bootstrap, name, partitions):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        # Creation returns before every broker's metadata has the partitions: wait.
        for _ in range(50):
            described = await admin.describe_topics([name])
            if described[0]["partitions"]:
                break
            await asyncio.sleep(0.1)
        assert len(described[0]["partitions"]) == partitions
    finally:
        await admin.close()


async def consume_all(bootstrap, topic, n, **kwargs):
    """Up to n records from the beginning of topic; stops early after 10 s of silence."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **kwargs
    )
    await consumer.start()
    records = []
    try:
        async with asyncio.timeout(60):
            while len(records) < n:
                batches = await consumer.getmany(timeout_ms=10_000)
                if not batches:
                    break
                for batch in batches.values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.mark.asyncio
async def test_keyed_events_round_trip_and_keep_their_partition(kafka_bootstrap, topic_name):
    await create_topic(kafka_bootstrap, topic_name, 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    sent_to = {}  # key -> partitions the producer reports
    try:
        for i in range(20):
            user = USERS[i % len(USERS)]
            event = {
                "event_id": f"e{i}",
                "user_id": user,
                "ts": 1_793_491_200_000 + i,
                "type": "page_view",
            }
            meta = await producer.send_and_wait(topic_name, orjson.dumps(event), key=user.encode())
            sent_to.setdefault(user.encode(), set()).add(meta.partition)
    finally:
        await producer.stop()

    records = await consume_all(kafka_bootstrap, topic_name, 20)
    events = [orjson.loads(r.value) for r in records]
    assert sorted(e["event_id"] for e in events) == sorted(f"e{i}" for i in range(20))
    assert all(r.key == e["user_id"].encode() for r, e in zip(records, events, strict=True))
    seen_on = {}
    for r in records:
        seen_on.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in seen_on.values()), seen_on
    assert seen_on == sent_to
    # Per key, order is kept: the events of a user arrive in the order they were sent.
    for user in USERS:
        ids = [int(e["event_id"][1:]) for e in events if e["user_id"] == user]
        assert ids == sorted(ids)


@pytest.mark.asyncio
async def test_transactions_commit_and_abort(kafka_bootstrap, topic_name):
    await create_topic(kafka_bootstrap, topic_name, 1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic_name}-tx"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic_name, f"committed-{i}".encode(), key=b"u1")
        await producer.begin_transaction()
        await producer.send(topic_name, b"aborted", key=b"u1")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic_name, b"end", key=b"u1")
    finally:
        await producer.stop()

    committed = await consume_all(kafka_bootstrap, topic_name, 4, isolation_level="read_committed")
    assert [r.value for r in committed] == [b"committed-0", b"committed-1", b"committed-2", b"end"]
    # The aborted record is in the log: a read_uncommitted consumer does see it.
    everything = await consume_all(kafka_bootstrap, topic_name, 5)
    assert [r.value for r in everything] == [
        b"committed-0",
        b"committed-1",
        b"committed-2",
        b"aborted",
        b"end",
    ]
