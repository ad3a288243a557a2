"""Our murmur2 partitioner equals Kafka's (aiokafka's implementation of the Java one)."""

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from state.partitioner import UserPartitions, murmur2, partition_for_key


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40), st.integers(1, 64))
def test_partition_equals_kafkas_default_partitioner(key, n):
    assert murmur2(key) & 0xFFFFFFFF == kafka_murmur2(key)  # aiokafka returns it unsigned
    assert partition_for_key(key, n) == DefaultPartitioner()(key, list(range(n)), list(range(n)))


def test_known_values_from_the_java_client():
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


def test_user_partitions_memoises_and_stays_bounded():
    users = UserPartitions(8, max_cached=3)
    got = [users(f"u{i}") for i in range(10)]
    assert got == [partition_for_key(f"u{i}".encode(), 8) for i in range(10)]
    assert len(users._cache) <= 3
