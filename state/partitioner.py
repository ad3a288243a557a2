"""Kafka's default partitioner for keyed records, so we know a user's partition.

The Java client's `DefaultPartitioner` (and aiokafka's, kafka-python's) put a
keyed record in `(murmur2(key) & 0x7fffffff) % partitions`. The worker uses
it to tell whether a record sits in its user's partition (else it re-keys it
through `<app_id>.repartition`), replay to emulate the cluster's partitions.
Pure Python, no Kafka import; checked against aiokafka in the tests.
"""

from __future__ import annotations

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (seed 0x9747b28c), as a signed 32-bit int like Java's."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class UserPartitions:
    """`user_id` → its partition, memoised (murmur2 in Python costs microseconds)."""

    def __init__(self, partitions: int, max_cached: int = 1_000_000) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}
        self._max_cached = max_cached

    def __call__(self, user_id: str) -> int:
        found = self._cache.get(user_id)
        if found is None:
            if len(self._cache) >= self._max_cached:
                self._cache.clear()
            found = self._cache[user_id] = partition_for_key(user_id.encode(), self.partitions)
        return found
