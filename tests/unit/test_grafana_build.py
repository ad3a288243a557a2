"""deploy/grafana: the committed dashboard JSON is what build.py generates, and every
panel queries the "prometheus" datasource with a PromQL expression."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
BUILD = GRAFANA / "build.py"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def test_committed_json_is_what_build_generates():
    done = subprocess.run(
        [sys.executable, str(BUILD), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_four_dashboards_with_unique_uids_and_titles():
    boards = [json.loads(p.read_text()) for p in DASHBOARDS]
    assert len(boards) == 4
    uids = [b["uid"] for b in boards]
    assert all(uids) and len(set(uids)) == len(uids), uids
    titles = [b["title"] for b in boards]
    assert len(set(titles)) == len(titles), titles


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_has_a_prometheus_target(path):
    board = json.loads(path.read_text())
    assert board["panels"]
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids), ids
    for panel in board["panels"]:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "prometheus"}, title
            assert target["expr"].strip(), title
            assert target["refId"], title
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, (title, grid)


def test_provisioning_points_at_the_datasource_uid():
    datasource = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "uid: prometheus" in datasource
    assert "type: prometheus" in datasource
    provider = (GRAFANA / "provisioning" / "dashboards" / "opspulse.yml").read_text()
    assert "path: /var/lib/grafana/dashboards/opspulse" in provider
