"""The cluster-wide alert evaluator: at each complete bucket, every rule judged on
the merged step-conversion buckets of all partitions (state/kpis/alert_rates.py).

A bucket is complete once the cluster's completeness time (the caller's: every
partition's stream time, minus `alerts.grace`) has passed its end plus the
outcome window; it is read once, merged over the partitions' partials, into a
`Series` that keeps the buckets the rules' baselines reach (8 days). Rules come
from the funnels: one drop rule per watched step pair, one volume rule per step
that starts a watched pair (state/alerting.py). Records (firing /
resolved) follow `state/alerting.py`'s `step`; the currently firing ones are the
report's `alerts`.

Judging starts at the first bucket of the earliest day holding step data, so an
evaluator started late (a worker's, after months of traffic) judges the same
buckets in the same order as replay and publishes the same records. Its state
(`to_json`) is what a successor needs to carry on: the next bucket and each
rule's runs; the series are read again from the partials (`restore`).
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
    Verdict,
    bucket_end_ms,
    judge,
    step,
)
from state.config import Config
from state.kpis.alert_orders import ORDERS_TABLE
from state.kpis.alert_rates import OUTCOME_WINDOW_MS, PREFIX, step_pairs, table_name
from state.partials import Partials

KEEP_DAYS = 8
STATE_VERSION = 1


VOLUME_MIN_DROP = 0.3  # a volume rule needs the attempts 30% under their usual count
# A sustained rule judges 2 hours for a drop of 2 points (small shifts that last):
# the same test as the others, day-to-day variation and all, over a longer window
# (what a CUSUM was meant to catch; CUSUM itself false-alarmed, README). Off unless
# enabled: on 30 clean generated days it fired twice on page_view>add_to_cart, whose
# rate push campaigns move for hours.
SUSTAINED = ":sustained"
SUSTAINED_WINDOW_MS = 2 * 3_600_000
SUSTAINED_MIN_EFFECT = 0.02
# Judged every 5 minutes over 2 hours, a day a little off its usual rate fails many
# windows in a row: at alpha 1e-5 two of five simulated 30-day runs fired; 1e-6, none.
SUSTAINED_ALPHA = 1e-6


def default_rules(config: Config) -> list[tuple[RateRule, str]]:
    """Per watched step pair A → B a drop rule on its conversion over `alerts.window`
    and, when enabled, a sustained one over 2 hours for 2-point drops
    (`<pair>:sustained`), per
    distinct A a volume rule on its attempts (no data), and one on paid orders, each
    with the table prefix it reads; each
    with `[alerts]`'s settings and its own `[alerts.rules."<name>"]` overrides (a
    volume rule's `min_effect` is its relative drop, VOLUME_MIN_DROP unless set)."""
    spec = config.alerts
    rules: list[tuple[RateRule, str]] = []
    for name, metric, table, volume in _rule_specs(config):
        if name.endswith(SUSTAINED):  # off unless asked for, with its own defaults
            defaults: dict[str, Any] = {
                "enabled": False, "window_ms": SUSTAINED_WINDOW_MS,
                "min_effect": SUSTAINED_MIN_EFFECT, "alpha": SUSTAINED_ALPHA,
            }  # fmt: skip
        else:
            defaults = {"min_effect": VOLUME_MIN_DROP} if volume else {}
        settings = spec.rule(name, defaults)
        if not settings["enabled"]:
            continue
        rules.append((
            RateRule(
                name=name, metric=metric, window_buckets=settings["window_ms"] // BUCKET_MS,
                min_attempts=settings["min_attempts"], min_effect=settings["min_effect"],
                alpha=settings["alpha"], statistic="volume" if volume else "rate",
                direction=settings["direction"],
                amount="GMV" if table == ORDERS_TABLE else None,
            ),
            table,
        ))  # fmt: skip
    return rules


def rule_names(config: Config) -> list[str]:
    """The names of the rules the configuration's funnels and pairs give."""
    return [name for name, _, _, _ in _rule_specs(config)]


def _rule_specs(config: Config) -> list[tuple[str, str, str, bool]]:
    """(name, metric, table prefix, is a volume rule) of every rule, enabled or not."""
    specs: list[tuple[str, str, str, bool]] = []
    volume: dict[tuple[str, str], str] = {}
    for funnel, i, a, b in step_pairs(config):
        for suffix in ("", SUSTAINED):
            specs.append((f"{funnel}:{a}>{b}{suffix}", f"step_conversion:{funnel}:{a}>{b}",
                          table_name(funnel, i), False))  # fmt: skip
        volume.setdefault((funnel, a), table_name(funnel, i))
    for (funnel, a), table in volume.items():
        specs.append((f"{funnel}:{a}:volume", f"attempts:{funnel}:{a}", table, True))
    # Paid orders (and their GMV), whatever the funnels: no payments is the costliest
    # silence (state/kpis/alert_orders.py).
    specs.append(("orders:volume", "paid_orders", ORDERS_TABLE, True))
    return specs


def last_complete(complete_ms: int) -> int:
    """The last bucket whose end plus the outcome window `complete_ms` has passed."""
    return (complete_ms - OUTCOME_WINDOW_MS - 1) // BUCKET_MS - 1


class Evaluator:
    def __init__(self, config: Config, rules: Sequence[tuple[RateRule, str]] | None = None):
        self.rules = list(rules if rules is not None else default_rules(config))
        # One series per table read, shared by the rules reading it.
        self._by_table: dict[str, Series] = {}
        self.series = {
            rule.name: self._by_table.setdefault(prefix, Series()) for rule, prefix in self.rules
        }
        self.states = {rule.name: AlertState() for rule, _ in self.rules}
        self.firing: dict[str, dict[str, Any]] = {}
        # A sustained rule is for drops its pair's fast rule did not catch: it is quiet
        # while that one fails or fires, and until its window has left the last bucket
        # the fast one fired at (bucket per fast rule name, saved with the state).
        self._fast_of = {
            rule.name: rule.name.removesuffix(SUSTAINED)
            for rule, _ in self.rules
            if rule.name.endswith(SUSTAINED) and rule.name.removesuffix(SUSTAINED) in self.states
        }
        self.last_firing: dict[str, int] = {}
        self.next_bucket: int | None = None
        self._targets: dict[str, Any] = {}

    def advance(self, partials: Sequence[Partials], complete_ms: int) -> list[dict[str, Any]]:
        """Judge every bucket completed since the last call (every event up to
        `complete_ms` is in the partials); the records to publish."""
        last = last_complete(complete_ms)
        if self.next_bucket is None:
            first_day = self._first_day(partials)
            if first_day is None:
                return []
            self.next_bucket = first_day * DAY_BUCKETS
        records = []
        for bucket in range(self.next_bucket, last + 1):
            self._load(partials, bucket)
            for rule, _ in self.rules:
                verdict = judge(rule, self.series[rule.name], bucket)
                fast = self._fast_of.get(rule.name)
                if fast is not None and verdict.failing and self._covered(fast, rule, bucket):
                    verdict = Verdict(
                        False, verdict.value, verdict.baseline, verdict.p_value, verdict.attempts
                    )
                record = step(rule, self.states[rule.name], verdict, bucket_end_ms(bucket))
                if self.states[rule.name].firing:
                    self.last_firing[rule.name] = bucket
                if record is not None:
                    records.append(record)
                    if record["state"] == "firing":
                        self.firing[rule.name] = record
                    else:
                        self.firing.pop(rule.name, None)
            if bucket % DAY_BUCKETS == 0:
                self._forget(bucket - KEEP_DAYS * DAY_BUCKETS)
        self.next_bucket = max(self.next_bucket, last + 1)
        return records

    def _covered(self, fast: str, rule: RateRule, bucket: int) -> bool:
        """Whether the fast rule `fast` is on (or was, within `rule`'s window)."""
        state = self.states[fast]
        last = self.last_firing.get(fast)
        recent = last is not None and bucket - last < rule.window_buckets + rule.pending
        return state.firing or state.failing_run > 0 or recent

    def open_alerts(self) -> list[dict[str, Any]]:
        return [self.firing[name] for name in sorted(self.firing)]

    def to_json(self) -> dict[str, Any]:
        """What a successor needs to carry on (with the partials)."""
        return {
            "v": STATE_VERSION, "next_bucket": self.next_bucket,
            "rules": {
                name: {"firing": st.firing, "failing_run": st.failing_run,
                       "passing_run": st.passing_run, "dims": st.dims}
                for name, st in sorted(self.states.items())
            },
            "firing": self.firing,
            "last_firing": self.last_firing,
        }  # fmt: skip

    def restore(self, data: dict[str, Any], partials: Sequence[Partials]) -> None:
        """Carry on from `to_json`'s state: rules no longer configured are dropped, new
        ones start afresh; the buckets the baselines reach are read from the partials."""
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"alert evaluator state v{data.get('v')}, expected v{STATE_VERSION}")
        for name, saved in data["rules"].items():
            if name in self.states:
                self.states[name] = AlertState(
                    saved["firing"], saved["failing_run"], saved["passing_run"], saved["dims"]
                )
        self.firing = {k: v for k, v in data["firing"].items() if k in self.states}
        self.last_firing = {
            k: v for k, v in data.get("last_firing", {}).items() if k in self.states
        }  # absent before sustained rules
        self.next_bucket = data["next_bucket"]
        if self.next_bucket is not None:
            first = self.next_bucket - KEEP_DAYS * DAY_BUCKETS
            for bucket in range(first - first % DAY_BUCKETS, self.next_bucket):
                self._load(partials, bucket)

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

    def _first_day(self, partials: Sequence[Partials]) -> int | None:
        """The earliest (UTC) day any watched table has a row for."""
        days = [
            min(rows)
            for part in partials
            for name, rows in part.tables.items()
            if rows and self._classify(name)
        ]
        return min(days) if days else None

    def _classify(self, name: str) -> tuple[Series, tuple[str, str] | None] | tuple[()]:
        """The series (and breakdown value) a table feeds, or () for other tables."""
        if not name.startswith(PREFIX):
            return ()
        for prefix, series in self._by_table.items():
            if name == prefix:
                return series, None
            if name.startswith(prefix + "/"):
                dim, _, value = name[len(prefix) + 1 :].partition("/")
                return series, (dim, value)
        return ()

    def _forget(self, before: int) -> None:
        for series in self._by_table.values():
            for rows in (series.total, *series.by_value.values()):
                for bucket in [b for b in rows if b < before]:
                    del rows[bucket]
