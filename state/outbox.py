"""Derived records of one partition, published exactly once with its state.

KPI modules append records here (segment changes, triggers, churn scores,
alerts); the worker sends the interval's records in the partition's state
transaction, replay writes them to its `--*-output` files. Records are kept
in the order they were produced, which is deterministic for a given event
sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The derived topics of the contract, by kind (config.topics names them).
KINDS = ("segments", "churn_scores", "alerts", "triggers")


@dataclass(frozen=True, slots=True)
class DerivedRecord:
    """One record for a derived topic: `kind` names the topic, `key` is its message key."""

    kind: str
    key: str
    value: dict[str, Any]


@dataclass
class Outbox:
    records: list[DerivedRecord] = field(default_factory=list)

    def emit(self, kind: str, key: str, value: dict[str, Any]) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown derived record kind {kind!r} (known: {', '.join(KINDS)})")
        self.records.append(DerivedRecord(kind, key, value))

    def drain(self) -> list[DerivedRecord]:
        """The records produced since the last call (to commit or write), oldest first."""
        records, self.records = self.records, []
        return records

    def __len__(self) -> int:
        return len(self.records)
