"""The report page (agents/page.py, `opspulse report --html`) read as HTML: every
number equals the report's, each section shows what exists or says "no data yet",
nothing is fetched from the network, data names are escaped. The headless-browser
test (test_page_browser.py) checks the same numbers after the charts are drawn."""

import html
import json
import re
import time
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from page_check import HOSTILE, SECTIONS, TODAY, check_page, generated_report, parse

from agents.cli import main
from agents.page import render_page

GENERATED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return generated_report(tmp_path_factory.mktemp("page"))


@pytest.fixture(scope="module")
def page(report):
    return render_page(report, generated_at=GENERATED_AT)


def test_every_number_on_the_page_is_the_reports(report, page):
    checked = check_page(page, report, TODAY)
    # tiles (value and week-before), funnel, retention, channels, experiments, ...
    assert checked["paths"] > 150 and checked["numbers"] > checked["paths"]
    doc = parse(page)
    assert doc.one(id="kpi-day").attrs["data-day"] == "2026-10-12"  # the last generated day
    assert "the latest complete day" in doc.one("header").text()


def test_tiles_show_the_latest_complete_day_and_a_week_before(report):
    # Generated at noon on 2026-10-12: that day is still going on, 2026-10-11 is shown.
    page = render_page(report, generated_at=datetime(2026, 10, 12, 12, tzinfo=UTC))
    check_page(page, report, date(2026, 10, 12))
    tile = parse(page).one("div", data_metric="dau")
    assert (
        tile.one("div", **{"class": "value"}).text() == f"{report['days']['2026-10-11']['dau']:,}"
    )
    assert "vs 2026-10-04" in tile.text()


def test_charts_are_plotly_specs_of_the_reports_series(report, page):
    doc = parse(page)
    (spec_script,) = doc.all("script", id="opspulse-charts")
    specs = json.loads(spec_script.text())
    chart_ids = {
        d.attrs["id"]
        for d in doc.all("div")
        if d.attrs.get("id", "").startswith(("chart-", "spark-"))
    }
    assert chart_ids == set(specs)
    days = sorted(report["days"])
    dau = next(t for t in specs["chart-activity"]["data"] if t["name"] == "DAU")
    assert dau["x"] == days and dau["y"] == [report["days"][d]["dau"] for d in days]
    heat = specs["chart-retention"]["data"][0]
    cohorts = sorted(report["retention"])
    assert heat["y"] == cohorts
    assert (
        heat["customdata"][0][: len(report["retention"][cohorts[0]])]
        == report["retention"][cohorts[0]]
    )
    # plotly.js is inlined: the only scripts are it, the specs and the drawing code
    scripts = doc.all("script")
    assert len(scripts) == 3 and "plotly.js v" in scripts[0].text()[:200]


def test_data_names_are_escaped(report, page):
    assert HOSTILE not in page
    assert "<script>alert" not in page
    doc = parse(page)
    assert len(doc.all("script")) == 3  # no injected script element
    assert doc.one("tr", data_channel=HOSTILE).cells()[0].text() == HOSTILE
    assert doc.one("div", data_experiment=HOSTILE).one("h3").text() == HOSTILE
    assert doc.one("tr", data_campaign=HOSTILE).cells()[0].text() == HOSTILE
    alert = doc.one("tr", data_alert="purchase:checkout>order_paid").cells()
    assert alert[3].text() == f"channel={HOSTILE}"
    # in chart labels too (escaped: plotly.js reads some tags in labels), and the JSON
    # block cannot be closed from inside
    specs = doc.one("script", id="opspulse-charts").text()
    assert "</" not in specs
    names = [t["name"] for t in json.loads(specs)["chart-channel-cac"]["data"]]
    assert html.escape(HOSTILE, quote=False) in names


def test_an_empty_report_says_no_data_yet(tmp_path):
    (tmp_path / "clicks.jsonl").write_text("")
    out = tmp_path / "report.json"
    assert (
        main(
            ["replay", "--clicks", str(tmp_path / "clicks.jsonl"), "--output", str(out), "--quiet"]
        )
        == 0
    )
    report = orjson.loads(out.read_bytes())
    page = render_page(report, generated_at=GENERATED_AT)
    check_page(page, report, TODAY)
    doc = parse(page)
    for sid in SECTIONS:
        text = doc.one("section", id=sid).text()
        assert "no data yet" in text or "no open alerts" in text or sid == "events", sid
    assert json.loads(doc.one("script", id="opspulse-charts").text()) == {}
    # a report without the optional churn section, or with an empty one
    report.pop("churn", None)
    check_page(render_page(report, generated_at=GENERATED_AT), report, TODAY)


def test_live_page_reloads_itself(report):
    page = render_page(report, refresh_seconds=30, generated_at=GENERATED_AT)
    (meta,) = [m for m in parse(page).all("meta") if m.attrs.get("http-equiv") == "refresh"]
    assert meta.attrs["content"] == "30"
    assert not re.search(r'http-equiv="refresh"', render_page(report, generated_at=GENERATED_AT))


def test_a_60_day_report_renders_fast(report):
    # 60 days of every per-day series, 60 retention cohorts: the page `GET /` builds
    days = sorted(report["days"])
    long = json.loads(json.dumps(report))
    long["days"] = {}
    long["retention"] = {}
    start = date(2026, 8, 1)
    for i in range(60):
        d = (start + timedelta(days=i)).isoformat()
        long["days"][d] = report["days"][days[i % len(days)]]
        long["retention"][d] = [100 - k for k in range(60 - i)]
    render_page(long)  # plotly.js read once per process
    took = min(_timed(lambda: render_page(long)) for _ in range(3))
    assert took < 0.5, f"{took * 1000:.0f} ms"


def _timed(fun):
    t = time.perf_counter()
    fun()
    return time.perf_counter() - t


def test_cli_writes_the_page(tmp_path, report, capsys):
    src = tmp_path / "report.json"
    src.write_bytes(orjson.dumps(report))
    out = tmp_path / "out.html"
    assert main(["report", "--html", str(out), "--input", str(src)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "plotly.js v" in page
    # generated now: the report's days are all over, its last day is shown
    check_page(page, report, datetime.now(UTC).date())


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # --html is required: usage, exit 2
        main(["report", "--input", "x.json"])
    assert exc.value.code == 2
    assert (
        main(["report", "--html", str(tmp_path / "o.html"), "--input", str(tmp_path / "nope.json")])
        == 1
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something/else"}')
    assert main(["report", "--html", str(tmp_path / "o.html"), "--input", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2] == f"opspulse report: error: input file not found: {tmp_path / 'nope.json'}"
    assert (
        err[-1]
        == f"opspulse report: error: {bad}: not an opspulse report (schema opspulse.report/1)"
    )
    assert not (tmp_path / "o.html").exists()
