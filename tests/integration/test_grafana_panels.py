"""Every panel query of the generated Grafana dashboards (deploy/grafana/dashboards,
built by deploy/grafana/build.py) returns data from a real Prometheus scraping a real
worker with the repo's recording rules, after generated traffic.

No Grafana is involved: the test runs each target's `expr` against Prometheus'
/api/v1/query, as Grafana's Prometheus datasource would (instant queries at "now").
Needs the `prometheus` Debian package (.ci/run installs it); fails, does not skip,
without it."""

import json
import math
import re
from pathlib import Path

import pytest
from test_observability import (  # noqa: F401 (processes: a fixture)
    binary,
    is_ready,
    processes,
    query_prometheus,
    start_prometheus,
    wait_for,
)

from streams.generator import GeneratorSpec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "rules" / "opspulse-recording.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
# A few days (channel cohorts of 1 day ago exist; churn labels with the cluster's 2-day
# horizon after 2 days of lateness), small; some invalid lines so the invalid counters
# have series too.
SPEC = GeneratorSpec(seed=5, days=6, new_users_per_day=50, invalid_rate=0.02)
# Slow enough that several 1 s scrapes see the counters grow (rate() needs two samples
# of a growing counter: sent at once, the counters appear at their final values).
RATE = 600  # messages/s: ~10 s for SPEC's ~6,000 messages
TIMEOUT_S = 60
# Grafana's interval variables, replaced by a concrete range before querying.
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}")  # fmt: skip


def panel_targets() -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, expr) of every panel target, in file order."""
    targets = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                targets.append((board["title"], panel["title"], target["expr"]))
    return targets


def concrete(expr: str) -> str:
    return GRAFANA_VARIABLES.sub("1m", expr)


async def test_every_dashboard_panel_returns_data(cluster, processes, tmp_path):  # noqa: F811
    targets = panel_targets()
    assert len(targets) >= 20, targets
    obs = tmp_path / "obs"
    cluster.start("w1")
    await cluster.wait_ready(["w1"])

    # Scrape the worker every 1s with the repo's recording rules (unchanged), evaluated
    # every 1s.
    port = start_prometheus(processes, obs, cluster.ports["w1"], [RECORDING_RULES])
    await wait_for("Prometheus ready", lambda: is_ready(port), obs)

    def query(expr: str) -> list[dict]:
        return query_prometheus(port, expr)

    await wait_for("up == 1", lambda: query('up{job="opspulse"} == 1'), obs)
    sent = await cluster.produce(SPEC, rate=RATE)
    assert sent > 300, sent
    # Everything sent is applied and committed, then scraped.
    await wait_for(
        f"{sent} messages consumed",
        lambda: query(f'sum(opspulse:events:sum{{outcome="consumed"}}) >= {sent}'),
        obs,
        detail=lambda: query('opspulse:events:sum{outcome="consumed"}'),
    )
    # rate() needs two samples in its range: wait for a few scrapes of the worker.
    await wait_for(
        ">= 3 scrapes", lambda: query('count_over_time(up{job="opspulse"}[5m]) >= 3'), obs
    )

    pending = {t: concrete(t[2]) for t in targets}
    results: dict[tuple[str, str, str], list[dict]] = {}

    def all_answered() -> bool:
        for target, expr in list(pending.items()):
            result = query(expr)
            # Data Grafana can draw: a series with a number (a 0/0 ratio is NaN).
            if any(math.isfinite(float(r["value"][1])) for r in result):
                results[target] = result
                del pending[target]
        return not pending

    await wait_for(
        "every panel query returns data",
        all_answered,
        obs,
        timeout=TIMEOUT_S,
        detail=lambda: (
            "no (finite) data:\n" + "\n".join(f"  {d} / {p}: {e}" for d, p, e in pending)
        ),
    )

    for (board, panel, expr), result in results.items():
        values = ", ".join(r["value"][1] for r in result[:4])
        print(f"{board} / {panel}: {expr} -> {len(result)} series ({values})")

    # Headline numbers are real: traffic was counted, not only zero-valued series.
    def value(expr: str) -> float:
        return sum(float(r["value"][1]) for r in query(expr))

    assert value("opspulse:dau:sum") > 0
    assert value("opspulse:new_users:sum") > 0
    assert value('opspulse:channel:sum{figure="new_users_30d"}') >= SPEC.new_users_per_day
    # The user partitions, and the spend topic's own ones.
    assert value('opspulse:partitions:sum{state="active"}') > cluster.config.topics.partitions
    consumed = value("opspulse:events_consumed:rate5m")
    assert consumed > 0 and math.isfinite(consumed)
