"""The cluster's user partitions in one process: what `replay` folds into.

Each user goes to the partition Kafka's default partitioner gives its key
(`state.partitioner`); each partition has its own `Fold` with watermarks per
(topic, partition) source as in the worker, so anything kept per partition (a
churn model, timers) is the same in replay and live. Spend, keyed by channel on
its own topic, goes to one fold of its own. The report is the merge of all
partials.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from operator import itemgetter

from state.alert_evaluator import Evaluator
from state.config import Config
from state.fold import Fold, SpendLike
from state.outbox import DerivedRecord
from state.partials import Partials
from state.partitioner import UserPartitions
from state.user import EventLike, UserState


class PartitionedFold:
    """One `Fold` per partition of `config.topics.partitions`, plus one for spend."""

    def __init__(self, config: Config, topics: Iterable[str]) -> None:
        """`topics`: the input topics feeding every partition (their watermarks hold
        compaction back as in the worker)."""
        self.config = config
        topics = tuple(topics)
        n = config.topics.partitions
        self.folds = [Fold(config, sources=[(t, p) for t in topics]) for p in range(n)]
        self.spend = Fold(config, sources=[(config.topics.spend, 0)], churn=False)
        self.partition = UserPartitions(n)
        # Alerts judge the whole cluster's buckets (in the cluster: one evaluator over
        # every partition's committed partials, agents/alerts.py; here all are at hand).
        self.evaluator = Evaluator(config)
        self._alerts: list[DerivedRecord] = []

    def apply_batch(self, items: Iterable[tuple[str, str, EventLike]]) -> None:
        """Apply (topic, user_id, event) items in order; each partition sees its own
        items in the given order, with (topic, partition) as the source."""
        by_partition: dict[int, list[tuple[str, str, EventLike]]] = {}
        partition = self.partition
        for item in items:
            by_partition.setdefault(partition(item[1]), []).append(item)
        for p, group in by_partition.items():
            fold = self.folds[p]
            for topic, run in itertools.groupby(group, key=itemgetter(0)):
                fold.apply_batch([(user_id, event) for _, user_id, event in run], (topic, p))
        complete = self.complete_ms()
        if complete is not None:
            for value in self.evaluator.advance([f.partials for f in self.folds], complete):
                self._alerts.append(DerivedRecord("alerts", value["key"], value))

    def complete_ms(self) -> int | None:
        """What alerts may judge: every partition's stream time minus the grace, as the
        workers' evaluator (input in `ts` order: every source is caught up)."""
        marks = [mark for f in self.folds if (mark := f.stream_ms()) is not None]
        return min(marks) - self.config.alerts.grace_ms if marks else None

    def apply_spend(self, events: Iterable[SpendLike]) -> None:
        self.spend.apply_spend(events, (self.config.topics.spend, 0))

    def count_invalid(self, n: int = 1) -> None:
        self.spend.count_invalid(n)  # invalid input has no trustworthy key

    def drain_outbox(self) -> list[DerivedRecord]:
        """Derived records of every partition (in partition order), then the alerts."""
        records = [record for fold in self.folds for record in fold.outbox.drain()]
        records += self._alerts
        self._alerts = []
        return records

    def churn_score(self, user_id: str, day: int) -> float | None:
        """The user's churn score as of the end of `day`, from their partition's model."""
        fold = self.folds[self.partition(user_id)]
        user = fold.users.get(user_id)
        if fold.churn is None or user is None:
            return None
        return fold.churn.score(user, day)

    @property
    def partials(self) -> Partials:
        """The merged partials of all partitions (a new object)."""
        merged = Partials(funnel_steps=self.spend.ctx.funnel_steps)
        for fold in (*self.folds, self.spend):
            merged.merge(fold.partials)
        return merged

    @property
    def users(self) -> Mapping[str, UserState]:
        return _Users(self)


class _Users(Mapping[str, UserState]):
    """All partitions' users as one read-only mapping."""

    def __init__(self, parts: PartitionedFold) -> None:
        self._parts = parts

    def __getitem__(self, user_id: str) -> UserState:
        return self._parts.folds[self._parts.partition(user_id)].users[user_id]

    def __iter__(self) -> Iterator[str]:
        return itertools.chain.from_iterable(fold.users for fold in self._parts.folds)

    def __len__(self) -> int:
        return sum(len(fold.users) for fold in self._parts.folds)
