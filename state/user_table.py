"""A partition's users when they do not all fit in memory: decoded ones in a bounded
cache, every one encoded in a local store.

The fold reads and writes users through this mapping as through a dict. A user
decoded from the store stays in the cache while recently used. One changed since
its bytes were last taken for the store (`pinned`: the fold's changed set) or not
yet in the store is never evicted, so a mutation is never lost. `trim` evicts the
least recently used users beyond `capacity`; the driver calls it only once the
store holds the bytes last taken (agents/statestore.py, after each commit).
No storage engine is imported here: the store is anything with `get(key)` and
`iter_prefix(prefix)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, NamedTuple, Protocol

from state.user import UserState

USER_PREFIX = b"u/"


class EncodedUsers(Protocol):
    """What the table reads users from: encoded records under `u/<user id>`."""

    @property
    def users(self) -> int: ...  # user records held
    def get(self, key: bytes) -> bytes | None: ...
    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class Activity(NamedTuple):
    """What rebuilding the churn learner's indexes needs of a user (state/kpis/churn.py),
    read from an encoded record without decoding it (state/codec.peek_activity)."""

    base_day: int | None
    active_bits: int
    churn_pending: list[list[Any]]


class UserTable(MutableMapping[str, UserState]):
    """Users of one partition: a bounded cache of decoded users over an encoded store."""

    def __init__(
        self,
        store: EncodedUsers,
        decode: Callable[[bytes], UserState],
        capacity: int,
        pinned: set[str],
    ) -> None:
        """`pinned`: ids changed since the last `Fold.take_changed` (the fold's changed
        set, shared)."""
        self._store = store
        self._decode = decode
        self.capacity = capacity
        self._pinned = pinned
        self._cache: dict[str, UserState] = {}  # least recently used first
        self._new: set[str] = set()  # in the cache, not yet in the store
        self.loads = 0  # users decoded from the store (cache misses)
        self._missed: str | None = None  # the last id the store did not hold

    def get(self, user_id: str, default: Any = None) -> Any:
        cache = self._cache
        user = cache.pop(user_id, None)
        if user is None:
            raw = self._store.get(USER_PREFIX + user_id.encode())
            if raw is None:
                self._missed = user_id
                return default
            user = self._decode(raw)
            self.loads += 1
        cache[user_id] = user  # now the most recently used
        return user

    def __getitem__(self, user_id: str) -> UserState:
        user = self.get(user_id)
        if user is None:
            raise KeyError(user_id)
        return user  # type: ignore[no-any-return]

    def __setitem__(self, user_id: str, user: UserState) -> None:
        cache = self._cache
        if cache.pop(user_id, None) is None and user_id not in self._new:
            if user_id == self._missed or self._store.get(USER_PREFIX + user_id.encode()) is None:
                self._new.add(user_id)
        cache[user_id] = user

    def __delitem__(self, user_id: str) -> None:
        raise TypeError("users are never deleted from a partition's state")

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, str) and self.get(user_id) is not None

    def __len__(self) -> int:
        return self._store.users + len(self._new)

    def __iter__(self) -> Iterator[str]:
        """Every user id: the stored ones, then those not yet written."""
        for key, _ in self._store.iter_prefix(USER_PREFIX):
            yield key[len(USER_PREFIX) :].decode()
        yield from list(self._new)

    def written(self, user_ids: set[str]) -> None:
        """The store now holds these users' bytes as taken (call `trim` only after
        this: until then the store holds older bytes of users no longer pinned)."""
        self._new -= user_ids

    def trim(self) -> int:
        """Evict the least recently used users that the store holds as they are, down
        to `capacity`; how many were evicted."""
        cache = self._cache
        excess = len(cache) - self.capacity
        if excess <= 0:
            return 0
        pinned, new = self._pinned, self._new
        victims = []
        for user_id in cache:
            if user_id not in pinned and user_id not in new:
                victims.append(user_id)
                if len(victims) >= excess:
                    break
        for user_id in victims:
            del cache[user_id]
        return len(victims)

    @property
    def cached(self) -> int:
        return len(self._cache)

    def activity(self, peek: Callable[[bytes], Activity]) -> Iterator[tuple[str, Any]]:
        """(user id, the user or their `Activity`) for every user, without decoding
        the stored ones that are not cached."""
        cache = self._cache
        for key, raw in self._store.iter_prefix(USER_PREFIX):
            user_id = key[len(USER_PREFIX) :].decode()
            cached = cache.get(user_id)
            yield user_id, cached if cached is not None else peek(raw)
        for user_id in list(self._new):
            yield user_id, cache[user_id]
