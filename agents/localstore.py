"""A partition's local copy of its state topic, in RocksDB: the disk tier.

The Kafka state topic stays the source of truth. After each committed state
transaction the same records are written here, in one write batch with a
checkpoint: the state-topic offset this copy reflects. A restart, or the
partition coming back to this worker, then reads only the topic's tail from
that offset (as Kafka Streams' checkpoint file). The copy is never trusted
blindly: it is rebuilt from the topic when it cannot be opened, when reading it
through fails a block checksum, when its checkpoint names another topic or
partition, lies outside the topic's offsets, or is older than the topic's
tombstone retention (compaction may have dropped a deletion since).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from rocksdict import Options, Rdict, WriteBatch

from state.user_table import USER_PREFIX

log = logging.getLogger("opspulse.localstore")

CHECKPOINT_KEY = b"~checkpoint"  # not a state-topic key (those are m, u/, d/, t/, c...)
CHECKPOINT_VERSION = 1
# Kafka's default delete.retention.ms: a copy older than this may miss a tombstone.
TOMBSTONE_RETENTION_MS = 24 * 3600 * 1000


class LocalStoreError(RuntimeError):
    """The local copy cannot be used: it is rebuilt from the state topic."""


class LocalStore:
    """RocksDB holding one partition's state-topic records under their own keys."""

    def __init__(self, path: Path, topic: str, partition: int) -> None:
        self.path = path
        self.topic = topic
        self.partition = partition
        path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_paranoid_checks(True)
        self._db: Any = Rdict(str(path), options)
        self.users = 0  # user records held

    @classmethod
    def open(cls, path: Path, topic: str, partition: int) -> tuple[LocalStore, int | None]:
        """The store and the next state-topic offset it reflects (None: empty). A copy
        that cannot be opened or read through is deleted and started afresh."""
        try:
            store = cls(path, topic, partition)
            try:
                return store, store._verify()
            except Exception:
                store.close()
                raise
        except Exception as exc:
            log.warning("local store %s unusable (%r): rebuilding it from %s", path, exc, topic)
            shutil.rmtree(path, ignore_errors=True)
            return cls(path, topic, partition), None

    def _verify(self) -> int | None:
        """Read every record (RocksDB checks each block's checksum) and count the users;
        the checkpoint's offset if it is this partition's."""
        users = 0
        checkpoint: dict[str, Any] | None = None
        for key, value in self._db.items():
            if key.startswith(USER_PREFIX):
                users += 1
            elif key == CHECKPOINT_KEY:
                checkpoint = orjson.loads(value)
        self.users = users
        if checkpoint is None:
            if users:
                raise LocalStoreError("user records without a checkpoint")
            return None
        if checkpoint.get("v") != CHECKPOINT_VERSION:
            raise LocalStoreError(f"checkpoint version {checkpoint.get('v')}")
        if (checkpoint["topic"], checkpoint["partition"]) != (self.topic, self.partition):
            raise LocalStoreError(
                f"a copy of {checkpoint['topic']}-{checkpoint['partition']}, "
                f"not {self.topic}-{self.partition}"
            )
        if time.time() * 1000 - checkpoint["written_ms"] > TOMBSTONE_RETENTION_MS:
            raise LocalStoreError("older than the state topic's tombstone retention")
        return int(checkpoint["offset"])

    def reset(self) -> None:
        """Forget everything (the topic will be read from its beginning)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        fresh = LocalStore(self.path, self.topic, self.partition)
        self._db, self.users = fresh._db, 0

    def apply(self, records: Iterable[tuple[bytes, bytes | None]], next_offset: int) -> int:
        """Write records of the state topic (None: a tombstone) and the checkpoint, in one
        batch; how many user records were new."""
        db, batch, new = self._db, WriteBatch(raw_mode=True), 0
        for key, value in records:
            if value is None:
                if key.startswith(USER_PREFIX) and db.get(key) is not None:
                    new -= 1
                batch.delete(key)
            else:
                if key.startswith(USER_PREFIX) and db.get(key) is None:
                    new += 1
                batch.put(key, value)
        checkpoint = {
            "v": CHECKPOINT_VERSION, "topic": self.topic, "partition": self.partition,
            "offset": next_offset, "written_ms": int(time.time() * 1000),
        }  # fmt: skip
        batch.put(CHECKPOINT_KEY, orjson.dumps(checkpoint))
        db.write(batch)
        self.users += new
        return new

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Records whose key starts with `prefix`, in key order."""
        for key, value in self._db.items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def others(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record that is not a user's (meta, days, timers, churn), in key order."""
        for key, value in self._db.items():
            if key == CHECKPOINT_KEY:
                continue
            if key.startswith(USER_PREFIX):
                # Skip the users: jump to the first key after the prefix.
                yield from self._after_users()
                return
            yield key, value

    def _after_users(self) -> Iterator[tuple[bytes, bytes]]:
        end = USER_PREFIX[:-1] + bytes([USER_PREFIX[-1] + 1])
        for key, value in self._db.items(from_key=end):
            if key != CHECKPOINT_KEY:
                yield key, value

    def records(self) -> Mapping[bytes, bytes | None]:
        """The records that are not users', read lazily (timers may number millions)."""
        return _Others(self)

    def close(self) -> None:
        try:
            self._db.close()
        except Exception:  # already closed
            pass


class _Others(Mapping[bytes, bytes | None]):
    """A read-only view of a local store's records other than users'."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store

    def __getitem__(self, key: bytes) -> bytes | None:
        if key.startswith(USER_PREFIX) or key == CHECKPOINT_KEY:
            raise KeyError(key)
        value = self._store.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[bytes]:
        return (key for key, _ in self._store.others())

    def __len__(self) -> int:
        return sum(1 for _ in self._store.others())

    def items(self) -> Iterator[tuple[bytes, bytes | None]]:  # type: ignore[override]
        return self._store.others()
