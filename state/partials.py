"""Partial aggregates: what one partition contributes to the report.

Partials form a commutative monoid: `merge` is element-wise addition, so the
cluster-wide numbers are the sum of the partitions' partials in any order.
Effects are the increments a user transition produces; they are plain
tuples so the hot path allocates little.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Day aggregate fields (index into the per-day list).
EVENTS, DAU, WAU, MAU, NEW_USERS, PAYING_USERS, ORDERS_PAID, GMV_CENTS, REFUNDS_CENTS = range(9)
PAID_7D = 9  # new users of the day with an order_paid within 7 days of their first activity
DAY_FIELDS = (
    "events", "dau", "wau", "mau", "new_users",
    "paying_users", "orders_paid", "gmv_cents", "refunds_cents", "paid_7d",
)  # fmt: skip
RETENTION_DAYS = 91  # n = 0..90

# Effect kinds: (DAY_EFFECT, day, field, delta), (RETENTION_EFFECT, cohort, n, delta),
# (FUNNEL_EFFECT, funnel index, day, old level, new level),
# (BREAKDOWN_EFFECT, ((dimension, value), ...), effects of the other kinds),
# (TABLE_EFFECT, day, table name, index, delta): a KPI's own rows keyed by a day
# (a period is keyed by its first day); rows grow as indexes appear.
DAY_EFFECT, RETENTION_EFFECT, FUNNEL_EFFECT, BREAKDOWN_EFFECT, TABLE_EFFECT = range(5)

COUNTERS = ("consumed", "valid", "duplicates", "invalid", "late")

Effect = tuple[Any, ...]
_ZERO_DAY = (0,) * len(DAY_FIELDS)


def ratio(numerator: int, denominator: int) -> float | None:
    """A ratio, or None for a zero denominator (never NaN)."""
    return numerator / denominator if denominator else None


@dataclass
class Partials:
    """Additive aggregates keyed by local day number."""

    funnel_steps: tuple[int, ...] = ()
    days: dict[int, list[int]] = field(default_factory=dict)
    retention: dict[int, list[int]] = field(default_factory=dict)
    funnels: list[dict[int, list[int]]] = field(default_factory=list)
    spend: dict[tuple[str, int], int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    # Funnels added to a running state count in full from this day on (by name).
    funnel_since: dict[str, int] = field(default_factory=dict)
    # Funnels removed from the config, by name (steps, window): never reused otherwise.
    retired_funnels: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    tables: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    # The same tables per breakdown value (state/breakdowns.py): (dimension, value) -> Partials.
    breakdowns: dict[tuple[str, str], Partials] = field(default_factory=dict)
    # Breakdown dimensions added to a running state count in full from this day on.
    breakdown_since: dict[str, int] = field(default_factory=dict)
    dirty_days: set[int] = field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.funnels:
            self.funnels = [{} for _ in self.funnel_steps]

    def add(self, effects: Iterable[Effect]) -> None:
        """Apply a transition's effects."""
        dirty = self.dirty_days
        for effect in effects:
            kind = effect[0]
            if kind == BREAKDOWN_EFFECT:
                for pair in effect[1]:
                    self.breakdown(pair).add(effect[2])
                continue
            dirty.add(effect[1] if kind != FUNNEL_EFFECT else effect[2])
            if kind == DAY_EFFECT:
                _, day, index, delta = effect
                row = self.days.get(day)
                if row is None:
                    row = self.days[day] = [0] * len(DAY_FIELDS)
                row[index] += delta
            elif kind == TABLE_EFFECT:
                _, day, name, index, delta = effect
                rows = self.tables.get(name)
                if rows is None:
                    rows = self.tables[name] = {}
                row = rows.get(day)
                if row is None:
                    row = rows[day] = []
                if index >= len(row):
                    row.extend([0] * (index + 1 - len(row)))
                row[index] += delta
            elif kind == RETENTION_EFFECT:
                _, cohort, n, delta = effect
                row = self.retention.get(cohort)
                if row is None:
                    row = self.retention[cohort] = [0] * RETENTION_DAYS
                row[n] += delta
            else:
                _, funnel, day, old, new = effect
                counts = self.funnels[funnel].get(day)
                if counts is None:
                    counts = self.funnels[funnel][day] = [0] * self.funnel_steps[funnel]
                if new > old:
                    for k in range(old, new):
                        counts[k] += 1
                else:
                    for k in range(new, old):
                        counts[k] -= 1

    def breakdown(self, pair: tuple[str, str]) -> Partials:
        """The partials of one breakdown value (created empty; shares the dirty days)."""
        sub = self.breakdowns.get(pair)
        if sub is None:
            sub = self.breakdowns[pair] = Partials(funnel_steps=self.funnel_steps)
            sub.dirty_days = self.dirty_days
        return sub

    def table(self, name: str, width: int) -> dict[int, list[int]]:
        """A KPI's own rows, each padded with zeros to `width` (rows grow as indexes appear)."""
        return {
            key: row + [0] * (width - len(row))
            for key, row in sorted(self.tables.get(name, {}).items())
        }

    def day_row(self, day: int) -> list[int] | tuple[int, ...]:
        """The day's aggregate fields (zeros for a day without any)."""
        return self.days.get(day, _ZERO_DAY)

    def add_spend(self, channel: str, day: int, cents: int) -> None:
        self.spend[(channel, day)] = self.spend.get((channel, day), 0) + cents
        self.dirty_days.add(day)

    def merge(self, other: Partials) -> Partials:
        """In-place sum with another partition's partials; returns self."""
        if other.funnel_steps != self.funnel_steps:
            raise ValueError("cannot merge partials of different funnel definitions")
        _add_rows(self.days, other.days)
        _add_rows(self.retention, other.retention)
        for mine, theirs in zip(self.funnels, other.funnels, strict=True):
            _add_rows(mine, theirs)
        for key, cents in other.spend.items():
            self.spend[key] = self.spend.get(key, 0) + cents
        for name, rows in other.tables.items():
            _add_rows(self.tables.setdefault(name, {}), rows)
        for name, n in other.counters.items():
            self.counters[name] = self.counters.get(name, 0) + n
        for pair, sub in other.breakdowns.items():
            self.breakdown(pair).merge(sub)
        # Complete once every partition is.
        for since, other_since in (
            (self.funnel_since, other.funnel_since),
            (self.breakdown_since, other.breakdown_since),
        ):
            for what, day in other_since.items():
                since[what] = max(day, since.get(what, day))
        return self

    def take_dirty_days(self) -> set[int]:
        """Days whose aggregates changed since the last call."""
        dirty, self.dirty_days = self.dirty_days, set()
        return dirty

    def day_record(self, day: int) -> dict[str, Any]:
        """Everything keyed by one day: its aggregates, the retention row of the
        cohort starting that day and the funnel counts of chains starting that day."""
        return {
            "day": day,
            "fields": self.days.get(day, [0] * len(DAY_FIELDS)),
            "retention": self.retention.get(day),
            "funnels": [f.get(day) for f in self.funnels],
            "spend": {ch: cents for (ch, d), cents in self.spend.items() if d == day},
            "tables": {name: rows[day] for name, rows in self.tables.items() if day in rows},
            "breakdowns": {
                pair: sub.day_record(day)
                for pair, sub in self.breakdowns.items()
                if day in sub.days or day in sub.retention or any(day in f for f in sub.funnels)
            },
        }

    def set_day_record(self, record: dict[str, Any]) -> None:
        """Replace one day's partials by a stored `day_record`."""
        day = record["day"]
        fields = list(record["fields"])
        self.days[day] = fields + [0] * (len(DAY_FIELDS) - len(fields))  # fields added since
        if record["retention"] is not None:
            self.retention[day] = list(record["retention"])
        for counts, row in zip(self.funnels, record["funnels"], strict=True):
            if row is not None:
                counts[day] = list(row)
        for channel, cents in record.get("spend", {}).items():
            self.spend[(channel, day)] = cents
        for name, row in record.get("tables", {}).items():
            self.tables.setdefault(name, {})[day] = list(row)
        for pair, sub_record in record.get("breakdowns", {}).items():
            self.breakdown(pair).set_day_record(sub_record)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form (for the KPI topic and files)."""
        return {
            "funnel_steps": list(self.funnel_steps),
            "days": {str(d): row for d, row in self.days.items()},
            "retention": {str(c): row for c, row in self.retention.items()},
            "funnels": [{str(d): row for d, row in f.items()} for f in self.funnels],
            "spend": [[ch, d, c] for (ch, d), c in self.spend.items()],
            "counters": dict(self.counters),
            "tables": {
                n: {str(d): row for d, row in rows.items()} for n, rows in self.tables.items()
            },
            "breakdowns": [
                [dim, value, sub.to_json()] for (dim, value), sub in self.breakdowns.items()
            ],
        }


def _add_rows(into: dict[int, list[int]], rows: dict[int, list[int]]) -> None:
    for key, row in rows.items():
        mine = into.get(key)
        if mine is None:
            into[key] = list(row)
        else:
            if len(row) > len(mine):
                mine.extend([0] * (len(row) - len(mine)))
            for i, value in enumerate(row):
                mine[i] += value
