"""Grafana dashboards for opspulse, as code (grafana-foundation-sdk, Grafana 11).

    python deploy/grafana/build.py            # (re)write deploy/grafana/dashboards/*.json
    python deploy/grafana/build.py --check    # exit 1 if a committed file differs

Every panel queries the Prometheus datasource with uid "prometheus" (provisioned by
deploy/grafana/provisioning/datasources/prometheus.yml), scraping the workers with the
recording rules of deploy/prometheus/rules/opspulse-recording.yml: panels use those
rules (opspulse:...) where one exists, else plain sums over workers (each worker exports
the counts of the partitions it owns). Queries are plain PromQL without Grafana
variables, so tests/integration/test_grafana_panels.py can run them as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"


@dataclass(frozen=True)
class Panel:
    kind: str  # "stat" or "timeseries"
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    width: int = 8
    height: int = 8


def q(expr: str, legend: str = "__auto") -> tuple[Query, ...]:
    return (Query(expr, legend),)


OVERVIEW = (
    Panel("stat", "DAU", q("opspulse:dau:sum"), width=4, height=5,
          description="Distinct active users today, over all workers."),
    Panel("stat", "New users", q("opspulse:new_users:sum"), width=4, height=5,
          description="Users first seen today."),
    Panel("stat", "Paying users", q("opspulse:paying_users:sum"), width=4, height=5,
          description="Users with a paid order today."),
    Panel("stat", "GMV today", q("opspulse:gmv:sum"), unit="none", width=4, height=5,
          description="Gross merchandise value today (currency units), summed over workers."),
    Panel("stat", "Paid conversion", q("opspulse:paid_conversion:ratio"), unit="percentunit",
          width=8, height=5, description="Paying users over DAU, today."),
    Panel("timeseries", "DAU, new and paying users", (
        Query("opspulse:dau:sum", "DAU"), Query("opspulse:new_users:sum", "new"),
        Query("opspulse:paying_users:sum", "paying"),
    ), width=12, description="Today's headline user counts over time."),
    Panel("timeseries", "Funnel users by step", q(
        "opspulse:funnel_users:sum", "{{funnel}} {{step}}"), width=12,
        description="Users reaching each funnel step today."),
    Panel("timeseries", "Funnel conversion by step", q(
        "opspulse:funnel_conversion:ratio", "{{funnel}} {{step}}"), unit="percentunit",
        width=12, description="Each step's users over the funnel's first step's."),
    Panel("timeseries", "GMV today over time", q("opspulse:gmv:sum", "GMV"), unit="none", width=12,
          description="Gross merchandise value today (currency units)."),
)  # fmt: skip

PIPELINE = (
    Panel("timeseries", "Events consumed", q("opspulse:events_consumed:rate5m", "{{topic}}"),
          unit="ops", description="Input messages processed per second (5m rate), per topic."),
    Panel("timeseries", "Invalid ratio", q("opspulse:invalid_ratio:rate5m", "{{topic}}"),
          unit="percentunit", description="Share of consumed messages dead-lettered as "
          "invalid (any reason but lateness) over 5m."),
    Panel("timeseries", "Late ratio", q("opspulse:late_ratio:rate5m", "{{topic}}"),
          unit="percentunit", description="Share of consumed messages older than the "
          "watermark minus the allowed lateness, over 5m."),
    Panel("timeseries", "Consumer lag by topic", q(
        "opspulse:consumer_lag_messages:sum", "{{topic}}"),
        description="Messages waiting to be applied (log end offset minus next offset)."),
    Panel("timeseries", "Event-time lag", q("opspulse:event_time_lag_seconds:max", "{{topic}}"),
          unit="s", description="Wall clock minus the watermark, worst partition per topic."),
    Panel("timeseries", "Partitions by state", q("opspulse:partitions:sum", "{{state}}"),
          description="Partitions active and recovering over the cluster."),
    Panel("stat", "Partitions active", q('opspulse:partitions:sum{state="active"}'),
          width=4, height=5),
    Panel("stat", "Partitions recovering", q('opspulse:partitions:sum{state="recovering"}'),
          width=4, height=5),
    Panel("timeseries", "Commit duration p99", q(
        "opspulse:commit_duration_seconds:p99_rate5m", "p99"), unit="s",
        description="99th percentile of a partition's state commit time over 5m."),
    Panel("timeseries", "Events by outcome", q("opspulse:events:sum", "{{outcome}}"),
          description="Committed event counts by outcome (consumed, valid, duplicates, "
          "invalid, late)."),
)  # fmt: skip

SEGMENTS = (
    Panel("timeseries", "Lifecycle users by stage", q(
        "opspulse:lifecycle_users:sum", "{{stage}}"), width=12,
        description="Users per lifecycle stage as of today."),
    Panel("timeseries", "RFM users by segment", q(
        "sum by (segment) (opspulse_rfm_users)", "{{segment}}"), width=12,
        description="Users per RFM segment as of today."),
    Panel("timeseries", "LTV tier users", q(
        "sum by (tier) (opspulse_ltv_tier_users)", "{{tier}}"), width=12,
        description="Paying users per LTV tier as of today."),
    Panel("timeseries", "Revenue by LTV tier", q(
        "sum by (tier) (opspulse_revenue_by_tier)", "{{tier}}"), unit="none", width=12,
        description="GMV minus refunds today by the payer's LTV tier (currency units)."),
    Panel("timeseries", "New users per channel (30d)", q(
        'opspulse:channel:sum{figure="new_users_30d"}', "{{channel}}"),
        description="New users acquired per channel over the last 30 days."),
    Panel("timeseries", "Spend per channel (30d)", q(
        'opspulse:channel:sum{figure="spend_30d"}', "{{channel}}"), unit="none",
        description="Acquisition spend per channel over the last 30 days (currency units)."),
    Panel("timeseries", "Revenue per channel (30d)", q(
        'opspulse:channel:sum{figure="revenue_30d"}', "{{channel}}"), unit="none",
        description="GMV minus refunds of each channel's users over the last 30 days."),
    Panel("timeseries", "Channel cohort retention", q(
        'sum by (channel, days_ago) (opspulse_channel_cohort_users{of="retained"})'
        ' / sum by (channel, days_ago) (opspulse_channel_cohort_users{of="size"})',
        "{{channel}} D{{days_ago}}"), unit="percentunit", width=12,
        description="Share of each channel's cohort of 1, 7 and 30 days ago active today."),
    Panel("timeseries", "Channel cohort size", q(
        'sum by (channel, days_ago) (opspulse_channel_cohort_users{of="size"})',
        "{{channel}} D{{days_ago}}"), width=12,
        description="Size of each channel's cohort that started 1, 7 and 30 days ago."),
)  # fmt: skip

CHURN = (
    Panel("timeseries", "Churn predictions", q(
        "sum by (state) (opspulse_churn_predictions)", "{{state}}"), width=12,
        description="Churn predictions made, labelled, and labelled churned (no activity "
        "within the horizon), over all workers."),
    Panel("stat", "Drift days", q("sum(opspulse_churn_drift_days)"), width=4, height=8,
          description="Days on which ADWIN found a partition's label loss changed."),
    Panel("timeseries", "AUC", q(
        'avg by (window) (opspulse_churn_quality{measure="auc"})', "{{window}}"), width=8,
        description="Exact prequential ROC AUC, averaged over workers (each over its own "
        "partitions; the report's churn.auc is the cluster's). 0.5 is a coin."),
    Panel("timeseries", "Log loss against the base rate", q(
        'avg by (measure) (opspulse_churn_quality{measure=~"log_loss|base_log_loss",'
        ' window="7d"})', "{{measure}}"), width=12,
        description="The model helps only while its log loss is below the base rate's "
        "(last 7 days, averaged over workers)."),
    Panel("timeseries", "Precision, recall, share flagged", q(
        'avg by (measure) (opspulse_churn_quality{measure=~"precision|recall|flagged_share",'
        ' window="7d"})', "{{measure}}"), unit="percentunit", width=12,
        description="At [churn] threshold, last 7 days, averaged over workers."),
)  # fmt: skip

DASHBOARDS = {
    "opspulse-overview": ("opspulse overview", OVERVIEW),
    "opspulse-churn": ("opspulse churn model", CHURN),
    "opspulse-pipeline": ("opspulse pipeline health", PIPELINE),
    "opspulse-segments": ("opspulse segments and channels", SEGMENTS),
}


def build_panel(spec: Panel):
    panel = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    panel = (
        panel.title(spec.title)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    if spec.description:
        panel = panel.description(spec.description)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        target = (
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .ref_id(ref)
            .expr(query.expr)
            .legend_format(query.legend)
        )
        panel = panel.with_target(target.instant() if spec.kind == "stat" else target.range())
    return panel


def build_dashboard(uid: str, title: str, panels: tuple[Panel, ...]) -> dict:
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["opspulse"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .readonly()
    )
    for spec in panels:
        board = board.with_panel(build_panel(spec))
    built = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    for n, panel in enumerate(built["panels"], 1):
        panel["id"] = n
    return built


def render() -> dict[Path, str]:
    return {
        OUT / f"{uid}.json": json.dumps(build_dashboard(uid, title, panels), indent=2,
                                        sort_keys=True) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON differs")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        extra = sorted(set(OUT.glob("*.json")) - set(files))
        for path in stale:
            print(f"{path}: differs from what build.py generates", file=sys.stderr)
        for path in extra:
            print(f"{path}: not generated by build.py", file=sys.stderr)
        if stale or extra:
            print("run: python deploy/grafana/build.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
