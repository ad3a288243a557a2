"""The cluster-wide alert evaluator: at each complete bucket, every rule judged on
the merged step-conversion buckets of all partitions (state/kpis/alert_rates.py).

A bucket is complete once the watermark has passed its end plus the outcome
window; it is read once, merged over the partitions' partials, into a `Series`
that keeps the buckets the rules' baselines reach (8 days). Rules come from the
funnels: one drop rule per consecutive step pair. Records (firing / resolved)
follow `state/alerting.py`'s `step`; the currently firing ones are the report's
`alerts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from state.alerting import (
    BUCKET_MS,
    DAY_BUCKETS,
    AlertState,
    RateRule,
    Series,
    bucket_end_ms,
    judge,
    step,
)
from state.config import Config
from state.kpis.alert_rates import OUTCOME_WINDOW_MS, PREFIX, step_pairs, table_name
from state.partials import Partials

KEEP_DAYS = 8


def default_rules(config: Config) -> list[tuple[RateRule, str]]:
    """One drop rule per watched step pair, with the table prefix it reads."""
    spec = config.alerts
    return [
        (
            RateRule(
                name=f"{funnel}:{a}>{b}", metric=f"step_conversion:{funnel}:{a}>{b}",
                window_buckets=spec.window_ms // BUCKET_MS, min_attempts=spec.min_attempts,
                min_effect=spec.min_effect, alpha=spec.alpha,
            ),
            table_name(funnel, i),
        )
        for funnel, i, a, b in step_pairs(config)
    ]  # fmt: skip


class Evaluator:
    def __init__(self, config: Config, rules: Sequence[tuple[RateRule, str]] | None = None):
        self.rules = list(rules if rules is not None else default_rules(config))
        self.series = {rule.name: Series() for rule, _ in self.rules}
        self.states = {rule.name: AlertState() for rule, _ in self.rules}
        self.firing: dict[str, dict[str, Any]] = {}
        self.next_bucket: int | None = None
        self._targets: dict[str, Any] = {}

    def advance(self, partials: Sequence[Partials], watermark_ms: int) -> list[dict[str, Any]]:
        """Judge every bucket completed since the last call; the records to publish."""
        # Complete: the watermark is past its end plus the outcome window.
        last_complete = (watermark_ms - OUTCOME_WINDOW_MS - 1) // BUCKET_MS - 1
        if self.next_bucket is None:
            self.next_bucket = last_complete
        records = []
        for bucket in range(self.next_bucket, last_complete + 1):
            self._load(partials, bucket)
            for rule, _ in self.rules:
                verdict = judge(rule, self.series[rule.name], bucket)
                record = step(rule, self.states[rule.name], verdict, bucket_end_ms(bucket))
                if record is not None:
                    records.append(record)
                    if record["state"] == "firing":
                        self.firing[rule.name] = record
                    else:
                        self.firing.pop(rule.name, None)
            if bucket % DAY_BUCKETS == 0:
                self._forget(bucket - KEEP_DAYS * DAY_BUCKETS)
        self.next_bucket = max(self.next_bucket, last_complete + 1)
        return records

    def open_alerts(self) -> list[dict[str, Any]]:
        return [self.firing[name] for name in sorted(self.firing)]

    def _load(self, partials: Sequence[Partials], bucket: int) -> None:
        day, slot = divmod(bucket, DAY_BUCKETS)
        at = 2 * slot
        targets = self._targets
        for part in partials:
            for name, rows in part.tables.items():
                target = targets.get(name)
                if target is None:
                    target = targets[name] = self._classify(name)
                if not target:
                    continue
                row = rows.get(day)
                if row is None or len(row) <= at or not row[at]:
                    continue
                counts = (
                    target[0].total
                    if target[1] is None
                    else target[0].by_value.setdefault(target[1], {})
                )
                a, s = counts.get(bucket, (0, 0))
                counts[bucket] = (a + row[at], s + (row[at + 1] if len(row) > at + 1 else 0))

    def _classify(self, name: str) -> tuple[Series, tuple[str, str] | None] | tuple[()]:
        """The series (and breakdown value) a table feeds, or () for other tables."""
        if not name.startswith(PREFIX):
            return ()
        for rule, prefix in self.rules:
            if name == prefix:
                return self.series[rule.name], None
            if name.startswith(prefix + "/"):
                dim, _, value = name[len(prefix) + 1 :].partition("/")
                return self.series[rule.name], (dim, value)
        return ()

    def _forget(self, before: int) -> None:
        for series in self.series.values():
            for rows in (series.total, *series.by_value.values()):
                for bucket in [b for b in rows if b < before]:
                    del rows[bucket]
