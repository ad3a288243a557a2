"""Prometheus metrics of one worker: the pipeline's own health and headline KPIs.

Labels come from bounded sets only (topic names, reason codes, funnel and
step names from the config); never a user id. KPI gauges are computed at
scrape time from the worker's own partitions: sum them over workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from state.clock import DayClock, month_index, month_key, month_start
from state.config import Config
from state.kpis.churn import DRIFTS as CHURN_DRIFTS
from state.kpis.churn import LABELLED as CHURN_LABELLED
from state.kpis.churn import NAME as CHURN
from state.kpis.churn import POSITIVES as CHURN_POSITIVES
from state.kpis.churn import PREDICTIONS as CHURN_PREDICTIONS
from state.kpis.churn import WIDTH as CHURN_WIDTH
from state.kpis.churn import quality as churn_quality
from state.kpis.period_retention import MONTH, WEEK
from state.kpis.segments import BUYERS_30D_SLOT, REPEAT_BUYERS_30D_SLOT, running_counts
from state.partials import DAU, GMV_CENTS, NEW_USERS, PAYING_USERS
from state.report import build_report


class Metrics:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.events = Counter(
            "opspulse_events_consumed_total",
            "Input messages consumed",
            ["topic"],
            registry=self.registry,
        )
        self.invalid = Counter(
            "opspulse_invalid_events_total", "Dead-lettered input messages by reason",
            ["topic", "reason"], registry=self.registry,
        )  # fmt: skip
        self.rekeyed = Counter(
            "opspulse_rekeyed_events_total",
            "Input messages not keyed to their user's partition, moved there through <app_id>.repartition",
            ["topic"], registry=self.registry,
        )  # fmt: skip
        self.overflow = Counter(
            "opspulse_state_overflow_total",
            "Events over a per-user bound ([limits]): ids forgotten, funnel steps not kept",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self.late = Counter(
            "opspulse_late_events_total", "Events older than the watermark minus allowed lateness",
            ["topic"], registry=self.registry,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "opspulse_commit_duration_seconds", "Time to commit one partition's state transaction",
            registry=self.registry,
        )  # fmt: skip
        self.processing_seconds = Histogram(
            "opspulse_event_processing_seconds", "Time to validate and apply one input message (mean per fetched batch)",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1), registry=self.registry,
        )  # fmt: skip
        self.latency_seconds = Histogram(
            "opspulse_event_latency_seconds", "Wall clock at apply minus ts of the last event of each batch (end-to-end event-time lag)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.registry,
        )  # fmt: skip
        self.pipeline: Any = None
        self.app: Any = None
        self.alerts: Any = None  # agents/alerts.AlertService

    def attach(self, pipeline: Any, app: Any) -> None:
        self.pipeline, self.app = pipeline, app
        self.registry.register(_StateCollector(self))

    def observe_batch(
        self, topic: str, n: int, seconds: float, last_event_ts_ms: int | None
    ) -> None:
        """A fetched batch: its new messages (valid or not), time per message, and the
        end-to-end lag of its last applied event (if any was applied)."""
        self.events.labels(topic).inc(n)
        self.processing_seconds.observe(seconds / n)
        if last_event_ts_ms is not None:
            self.latency_seconds.observe(max(0.0, time.time() - last_event_ts_ms / 1000))

    def observe_overflow(self, overflow: dict[str, int], seen: dict[str, int]) -> None:
        """Count what a partition's bounds dropped since `seen` (updated in place): a
        counter that never goes down when partitions move between workers."""
        for kind, n in overflow.items():
            if n != seen.get(kind, 0):
                self.overflow.labels(kind).inc(n - seen.get(kind, 0))
                seen[kind] = n

    def observe_rekeyed(self, topic: str, n: int) -> None:
        self.rekeyed.labels(topic).inc(n)

    def observe_commit(self, seconds: float) -> None:
        self.commit_seconds.observe(seconds)

    def observe_dead_letter(self, topic: str, reason: str) -> None:
        if reason == "late":
            self.late.labels(topic).inc()
        self.invalid.labels(topic, reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    """Gauges read from the pipeline at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _alert_firing(self) -> GaugeMetricFamily:
        """1 per firing business alert, from the worker running the cluster's evaluator
        (the others export none): rule, and the breakdown that explains it, if one."""
        gauge = GaugeMetricFamily(
            "opspulse_alert_firing", "Business alerts firing (the cluster's evaluator)",
            labels=["rule", "dimension", "value"],
        )  # fmt: skip
        service = self.metrics.alerts
        for alert in service.open_alerts() if service is not None else []:
            dim, value = next(iter(sorted(alert["dims"].items())), ("", ""))
            gauge.add_metric([alert["key"], dim, value], 1)
        return gauge

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pipeline = self.metrics.pipeline
        config = self.metrics.config
        counters = GaugeMetricFamily(
            "opspulse_events", "Events by outcome, as committed in this worker's partitions",
            labels=["outcome"],
        )  # fmt: skip
        for name, value in pipeline.committed_counters().items():
            counters.add_metric([name], value)
        yield counters
        partials = pipeline.local_partials()

        yield self._alert_firing()

        recovering = GaugeMetricFamily(
            "opspulse_partitions", "Partitions of this worker", labels=["state"]
        )
        recovering.add_metric(["active"], len(pipeline.partitions))
        recovering.add_metric(["recovering"], len(pipeline.recovering))
        yield recovering
        yield CounterMetricFamily(
            "opspulse_partition_loads",
            "Partitions whose state this worker read from the state topic (rebalances keep "
            "the partitions a worker still owns without reading them again)",
            value=pipeline.loads,
        )

        lag = GaugeMetricFamily(
            "opspulse_event_time_lag_seconds", "Wall clock minus the watermark, per input partition",
            labels=["topic", "partition"],
        )  # fmt: skip
        now_ms = time.time() * 1000
        for runtime in pipeline.partitions.values():
            p = runtime.store.partition
            for (topic, _), mark in runtime.fold.watermarks.items():
                lag.add_metric([topic, str(p)], max(0.0, (now_ms - mark) / 1000))
        yield lag

        consumer_lag = GaugeMetricFamily(
            "opspulse_consumer_lag_messages", "Log end offset minus the next offset to apply",
            labels=["topic", "partition"],
        )  # fmt: skip
        consumer = getattr(self.metrics.app, "consumer", None)
        for runtime in pipeline.partitions.values():
            p = runtime.store.partition
            for topic in runtime.offsets:
                try:
                    high = (
                        consumer.highwater(consumer._new_topicpartition(topic, p))
                        if consumer
                        else None
                    )
                except Exception:
                    high = None
                if high is not None:
                    consumer_lag.add_metric(
                        [topic, str(p)], max(0, high - runtime.offsets.get(topic, -1) - 1)
                    )
        yield consumer_lag

        today = max((d for d, row in partials.days.items() if row[0] > 0), default=None)
        kpis = {
            "opspulse_dau": (DAU, "Distinct active users today (this worker's partitions)"),
            "opspulse_new_users": (NEW_USERS, "New users today (this worker's partitions)"),
            "opspulse_paying_users": (
                PAYING_USERS,
                "Paying users today (this worker's partitions)",
            ),
        }
        row = partials.days.get(today) if today is not None else None
        for name, (index, text) in kpis.items():
            family = GaugeMetricFamily(name, text)
            family.add_metric([], row[index] if row else 0)
            yield family
        gmv = GaugeMetricFamily(
            "opspulse_gmv", "GMV today, currency units (this worker's partitions)"
        )
        gmv.add_metric([], row[GMV_CENTS] / 100 if row else 0.0)
        yield gmv
        funnel = GaugeMetricFamily(
            "opspulse_funnel_users",
            "Users reaching each funnel step today",
            labels=["funnel", "step"],
        )
        for spec, counts in zip(config.funnels, partials.funnels, strict=True):
            day_counts = (
                counts.get(today, [0] * len(spec.steps))
                if today is not None
                else [0] * len(spec.steps)
            )
            for step, n in zip(spec.steps, day_counts, strict=True):
                funnel.add_metric([spec.name, step], n)
        yield funnel
        if today is not None:
            yield from _current_period_gauges(partials, config, today)
        if config.churn.enabled:
            yield from _churn_gauges(partials, config, today)


def _churn_gauges(partials: Any, config: Config, today: int | None) -> Iterator[Any]:
    """The churn model's prequential quality over this worker's partitions (state/kpis/
    churn.py): counts to sum across workers, and the ratios of this worker's labels."""
    rows = partials.table(CHURN, CHURN_WIDTH)
    predictions = GaugeMetricFamily(
        "opspulse_churn_predictions",
        "Churn predictions made, labelled and labelled churned, in this worker's partitions",
        labels=["state"],
    )
    totals = [sum(row[i] for row in rows.values()) for i in range(CHURN_WIDTH)]
    predictions.add_metric(["made"], totals[CHURN_PREDICTIONS])
    predictions.add_metric(["labelled"], totals[CHURN_LABELLED])
    predictions.add_metric(["churned"], totals[CHURN_POSITIVES])
    yield predictions
    yield GaugeMetricFamily(
        "opspulse_churn_drift_days",
        "Days on which ADWIN found the churn model's loss changed, in this worker's partitions",
        value=totals[CHURN_DRIFTS],
    )
    quality = GaugeMetricFamily(
        "opspulse_churn_quality",
        "Churn model quality over this worker's labelled predictions (auc, log_loss, "
        "base_log_loss in nats; precision, recall, flagged_share at the threshold)",
        labels=["measure", "window"],
    )
    last = today if today is not None else max(rows, default=0)
    for window, keep in (("all", lambda d: True), ("7d", lambda d: last - 7 < d <= last)):
        for measure, value in churn_quality(partials, rows, config.churn.threshold, keep).items():
            if measure in QUALITY_MEASURES and value is not None:
                quality.add_metric([measure, window], value)
    yield quality


QUALITY_MEASURES = ("auc", "log_loss", "base_log_loss", "precision", "recall", "flagged_share")


def _current_period_gauges(partials: Any, config: Config, today: int) -> Iterator[Any]:
    """Today's classes, and the cohort views of the current week, month and day: counts of
    this worker's partitions (sum them across workers; ratios are PromQL divisions)."""
    report = build_report(partials, config, days=range(today, today + 1))
    day = report["days"][DayClock.iso(today)]
    counts = next(running_counts(partials, range(today, today + 1)))
    for name, text, label, values in (
        ("opspulse_lifecycle_users", "Users per lifecycle stage as of today", "stage",
         day["lifecycle"]),
        ("opspulse_rfm_users", "Users per RFM segment as of today", "segment", day["rfm"]),
        ("opspulse_ltv_tier_users", "Paying users per LTV tier as of today", "tier",
         day["ltv_tiers"]),
        ("opspulse_buyers_30d_users", "Users with paid orders in the last 30 days (repeat: 2+)",
         "orders", {"1+": counts[BUYERS_30D_SLOT], "2+": counts[REPEAT_BUYERS_30D_SLOT]}),
        ("opspulse_revenue_by_tier", "GMV - refunds today by the payer's LTV tier, currency units",
         "tier", report["cohorts"]["revenue_by_tier"][DayClock.iso(today)]),
    ):  # fmt: skip
        family = GaugeMetricFamily(name, text, labels=[label])
        for value, n in values.items():
            family.add_metric([value], n)
        yield family

    yield from _channel_gauges(report["channels"], today, config.breakdowns.max_values)

    cohorts = report["cohorts"]
    retained = GaugeMetricFamily(
        "opspulse_cohort_users",
        "Users of the cohort that started `periods_ago` weeks/months before the current one "
        "active in the current one (size: the cohort's size); M1 = retained / size at 1",
        labels=["view", "periods_ago", "of"],
    )
    for view, period, max_n in (
        ("retention_weekly", WEEK, 26), ("retention_monthly", MONTH, 12),
        ("paying_retention_monthly", MONTH, 12),
    ):  # fmt: skip
        current = period.index(today)
        for n in range(max_n + 1):
            row = cohorts[view].get(period.key(period.start(current - n)))
            if row is not None and len(row) == n + 1:
                retained.add_metric([view, str(n), "retained"], row[n])
                retained.add_metric([view, str(n), "size"], row[0])
    yield retained

    month = month_key(month_start(month_index(today)))
    this_month = GaugeMetricFamily(
        "opspulse_month_users",
        "This month: users active (and their summed active days), repurchase gaps (and their "
        "summed days), users dormant at its start and those reactivated",
        labels=["figure"],
    )
    active = cohorts["active_days"].get(month, {"users": 0, "days": 0})
    cycle = cohorts["repurchase_cycle"].get(month, {"gaps": 0, "days": 0})
    back = cohorts["reactivation"].get(month, {"dormant": 0, "reactivated": 0})
    for figure, value in (
        ("active", active["users"]), ("active_days", active["days"]),
        ("repurchase_gaps", cycle["gaps"]), ("repurchase_gap_days", cycle["days"]),
        ("dormant", back["dormant"]), ("reactivated", back["reactivated"]),
    ):  # fmt: skip
        this_month.add_metric([figure], value)
    yield this_month

    activation = GaugeMetricFamily(
        "opspulse_activation_7d_users",
        "Users first active 7 days ago (the last complete cohort day) and those activated",
        labels=["state"],
    )
    cohort = cohorts["activation_7d"].get(DayClock.iso(today - 7), {"new_users": 0, "activated": 0})
    activation.add_metric(["new"], cohort["new_users"])
    activation.add_metric(["activated"], cohort["activated"])
    yield activation


CHANNEL_WINDOW_DAYS = 30
CHANNEL_COHORT_DAYS = (1, 7, 30)


def _channel_gauges(channels: dict[str, Any], today: int, max_channels: int) -> Iterator[Any]:
    """Per acquisition channel: today's and the last 30 days' new users, revenue and spend
    (CAC and ROI are PromQL divisions), and the cohorts that started 1, 7 and 30 days ago:
    size, retained that day, paid within 7 days. Spend channels are free strings: beyond
    `max_channels` (by new users, then spend) the rest is summed as "other"."""
    iso = DayClock.iso
    window = {iso(d) for d in range(today - CHANNEL_WINDOW_DAYS + 1, today + 1)}
    figures: dict[str, dict[str, float]] = {}
    cohorts: dict[str, dict[tuple[str, str], int]] = {}
    for channel, body in channels.items():
        days = body["days"]
        recent = [row for d, row in days.items() if d in window]
        row_today = days.get(iso(today), {})
        figures[channel] = {
            "new_users_today": row_today.get("new_users", 0),
            "revenue_today": row_today.get("revenue", 0.0),
            "spend_today": row_today.get("spend", 0.0),
            "new_users_30d": sum(r["new_users"] for r in recent),
            "revenue_30d": round(sum(r["revenue"] for r in recent), 2),
            "spend_30d": round(sum(r["spend"] for r in recent), 2),
        }
        mine = cohorts[channel] = {}
        for n in CHANNEL_COHORT_DAYS:
            retention = body["retention"].get(iso(today - n))
            if retention is not None and len(retention) == n + 1:
                mine[(str(n), "size")] = retention[0]
                mine[(str(n), "retained")] = retention[n]
                mine[(str(n), "paid_7d")] = days.get(iso(today - n), {}).get("paid_7d", 0)
    ranked = sorted(
        figures, key=lambda c: (-figures[c]["new_users_30d"], -figures[c]["spend_30d"], c)
    )
    if len(ranked) > max_channels:
        for channel in ranked[max_channels:]:
            other = figures.setdefault("other", dict.fromkeys(figures[channel], 0))
            for k, v in figures.pop(channel).items():
                other[k] += v
            into = cohorts.setdefault("other", {})
            for k, n in cohorts.pop(channel).items():
                into[k] = into.get(k, 0) + n
    money = GaugeMetricFamily(
        "opspulse_channel",
        "Per acquisition channel: new users, revenue (GMV - refunds, currency units) and "
        "spend (currency units), today and over the last 30 days",
        labels=["channel", "figure"],
    )
    for channel, values in sorted(figures.items()):
        for figure, value in values.items():
            money.add_metric([channel, figure], value)
    yield money
    cohort = GaugeMetricFamily(
        "opspulse_channel_cohort_users",
        "Per acquisition channel, the cohort that started `days_ago` days ago: its size, "
        "those active today (retained at day n), those who paid within 7 days",
        labels=["channel", "days_ago", "of"],
    )
    for channel, values in sorted(cohorts.items()):
        for (days_ago, of), n in sorted(values.items()):
            cohort.add_metric([channel, days_ago, of], n)
    yield cohort
