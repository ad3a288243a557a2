"""Checks of the report page (agents/page.py) as HTML text, shared by the unit test,
the headless-browser test and the live `GET /` test.

Everything here reads the report JSON itself and formats numbers with its own
code (not the renderer's helpers): a number on the page must be the report's
value at the place the page says it shows, on the day it says it shows.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from html.parser import HTMLParser
from typing import Any

VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "embed", "source",
        "track", "wbr"}  # fmt: skip
TILE_METRICS = ("dau", "new_users", "paying_users", "orders_paid", "gmv", "arpu", "arppu",
                "paid_conversion", "stickiness", "repurchase_rate_30d")  # fmt: skip
SECTIONS = ("kpis", "activity", "funnels", "retention", "channels", "experiments", "segments",
            "churn", "alerts", "engagement", "events")  # fmt: skip


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def all(self, tag: str | None = None, **attrs: str | None) -> list[Node]:
        """Descendants with this tag (any if None) and these attributes (None: present)."""
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and all(
                    k.replace("_", "-") in c.attrs
                    and (v is None or c.attrs[k.replace("_", "-")] == v)
                    for k, v in attrs.items()
                ):
                    found.append(c)
                found.extend(c.all(tag, **attrs))
        return found

    def one(self, tag: str | None = None, **attrs: str | None) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]

    def cells(self) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node) and c.tag in ("td", "th")]

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.at = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.at.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.at))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.at = node.parent

    def handle_data(self, data: str) -> None:
        self.at.children.append(data)


def parse(html_text: str) -> Node:
    parser = _Parser()
    parser.feed(html_text)
    parser.close()
    return parser.root


def shown(kind: str, value: Any, of: Any = None) -> str:
    """How the page must show a raw value (written apart from agents/page.py)."""
    if kind in ("share", "dropoff"):
        if value is None or not of:
            return "–"
        ratio = value / of if kind == "share" else 1 - value / of
        return "%.1f%%" % (ratio * 100)
    if value is None:
        return "–"
    if kind == "count":
        return format(value, ",d")
    if kind == "money":
        return format(value, ",.2f")
    if kind == "ratio":
        return "%.1f%%" % (value * 100)
    if kind == "pp":
        return "%+.1f pp" % (value * 100)
    if kind == "times":
        return f"{value:.2f}×"
    if kind == "p":
        return "<0.0001" if value < 0.0001 else f"{value:.4f}"
    if kind == "num":
        return f"{value:.3f}"
    if kind == "ci":
        return f"[{value[0] * 100:+.1f}, {value[1] * 100:+.1f}] pp"
    assert kind == "text", kind
    return str(value)


def at_path(report: dict[str, Any], path: list[Any]) -> Any:
    value: Any = report
    for key in path:
        value = value[key]
    return value


def expected_day(report: dict[str, Any], today: date) -> str | None:
    """The day the tiles must show: the latest one before `today`, else the last."""
    days = sorted(report["days"])
    before = [d for d in days if date.fromisoformat(d) < today]
    return before[-1] if before else (days[-1] if days else None)


def value_of(node: Node) -> Any:
    return json.loads(node.attrs["data-value"])


def check_page(html_text: str, report: dict[str, Any], today: date) -> dict[str, int]:
    """Assert the page shows `report` (as of `today`, the page's generation date in
    the report's timezone); counts of what was checked."""
    doc = parse(html_text)
    checked = {"numbers": 0, "paths": 0}

    # Every number: its text is its raw value formatted, and a value that says where
    # it comes from in the report is exactly the report's value there.
    for node in doc.all(data_kind=None):
        kind, value = node.attrs["data-kind"], value_of(node)
        of = json.loads(node.attrs["data-of"]) if "data-of" in node.attrs else None
        assert node.text() == shown(kind, value, of), (node.attrs, node.text())
        checked["numbers"] += 1
        if "data-path" in node.attrs:
            path = json.loads(node.attrs["data-path"])
            assert at_path(report, path) == value, (path, value)
            checked["paths"] += 1

    # No network at view time: nothing loaded from anywhere, and the policy forbids it.
    for node in doc.all():
        for attr in ("src", "href", "action", "data", "poster"):
            url = node.attrs.get(attr, "")
            assert not url.lower().startswith(("http:", "https:", "//", "ftp:")), (node.tag, url)
        assert node.tag not in ("link", "iframe", "object", "embed"), node.tag
    csp = [m for m in doc.all("meta") if m.attrs.get("http-equiv") == "Content-Security-Policy"]
    assert len(csp) == 1 and "default-src 'none'" in csp[0].attrs["content"]
    assert all("src" not in s.attrs for s in doc.all("script"))

    sections = {s.attrs["id"]: s for s in doc.all("section")}
    assert tuple(sections) == SECTIONS
    day = expected_day(report, today)
    if day is None:
        for sid in SECTIONS:
            if sid != "events":
                assert sections[sid].all("p", **{"class": "empty"}), sid
        return checked

    # Tiles: the expected day, and the same weekday a week before as the trend.
    assert doc.one(id="kpi-day").attrs["data-day"] == day
    week_before = (date.fromisoformat(day) - timedelta(days=7)).isoformat()
    row = report["days"][day]
    for metric in TILE_METRICS:
        tile = doc.one("div", data_metric=metric)
        value = tile.one("div", **{"class": "value"})
        assert json.loads(value.attrs["data-path"]) == ["days", day, metric]
        assert value_of(value) == row[metric]
        if week_before in report["days"]:
            prev = tile.one("span", **{"class": "prev"})
            assert value_of(prev) == report["days"][week_before][metric]
            now, then = row[metric], report["days"][week_before][metric]
            if now is not None and then:
                change = tile.one("span", **{"class": "change"}).text()
                if metric in ("paid_conversion", "stickiness", "repurchase_rate_30d"):
                    assert change.endswith("%+.1f pp" % ((now - then) * 100)), (metric, change)
                else:
                    assert change.endswith("%+.1f%%" % ((now - then) / then * 100)), change
            checked["numbers"] += 1

    # Funnels: the day's counts, the 7-day totals and the drop-off per step.
    week = {(date.fromisoformat(day) - timedelta(days=i)).isoformat() for i in range(7)}
    for name, funnel in report["funnels"].items():
        block = sections["funnels"].one(data_funnel=name)
        totals = [sum(funnel["days"].get(d, [0] * len(funnel["steps"]))[i] for d in week)
                  for i in range(len(funnel["steps"]))]  # fmt: skip
        for i, step in enumerate(funnel["steps"]):
            cells = block.one("tr", data_step=step).cells()
            assert cells[0].text() == step
            on_day = funnel["days"].get(day)
            assert value_of(cells[1]) == (on_day[i] if on_day else None)
            assert value_of(cells[3]) == totals[i]
            if i and totals[i - 1]:
                assert cells[4].text() == "%.1f%%" % (100 - totals[i] / totals[i - 1] * 100)

    # Retention: every cohort's size and D1 / D7 / D14 / D30.
    for cohort, sizes in report["retention"].items():
        if not sizes:
            continue
        cells = sections["retention"].one("tr", data_cohort=cohort).cells()
        assert value_of(cells[1]) == sizes[0]
        for col, k in enumerate((1, 7, 14, 30), 2):
            if k < len(sizes):
                assert value_of(cells[col]) == sizes[k]
                assert cells[col].text() == "%.1f%%" % (sizes[k] / sizes[0] * 100)

    # Channels, experiments, events, churn, alerts, segments of the day.
    assert len(sections["channels"].all("tr", data_channel=None)) == len(report["channels"])
    for name, ch in report["channels"].items():
        cells = sections["channels"].one("tr", data_channel=name).cells()
        assert cells[0].text() == name
        got = [value_of(c) for c in cells[1:6]]
        assert got == [ch["new_users"], ch["spend"], ch["revenue"], ch["cac"], ch["roi"]]
    for name, exp in report["experiments"].items():
        block = sections["experiments"].one(data_experiment=name)
        for variant, v in exp["variants"].items():
            cells = block.one("tr", data_variant=variant).cells()
            keys = ("exposed", "converted", "rate", "lift", "relative_lift", "ci", "p_value")
            assert [value_of(c) for c in cells[1:8]] == [v[k] for k in keys]
    for counter, n in report["events"].items():
        assert value_of(sections["events"].one("tr", data_counter=counter).cells()[1]) == n
    churn = report.get("churn") or {}
    if churn:
        for key in ("auc", "log_loss", "precision", "recall"):
            cells = sections["churn"].one("tr", data_churn=key).cells()
            assert value_of(cells[1]) == churn[key]
            if churn.get("last_7d"):
                assert value_of(cells[2]) == churn["last_7d"][key]
    else:
        assert sections["churn"].text().strip().endswith("no data yet")
    firing = [a for a in report["alerts"] if a["state"] == "firing"]
    rows = sections["alerts"].all("tr", data_alert=None)
    assert [r.attrs["data-alert"] for r in rows] == [a["key"] for a in firing]
    for alert, r in zip(firing, rows, strict=True):
        assert [value_of(c) for c in r.cells()[4:6]] == [alert["value"], alert["baseline"]]
        assert r.cells()[6].text() == alert["detail"]
    for stage, n in report["days"][day]["lifecycle"].items():
        cells = sections["segments"].one("tr", data_segment=f"lifecycle/{stage}").cells()
        assert value_of(cells[1]) == n
    return checked


HOSTILE = '<script>alert(1)</script>"&'
TODAY = date(2026, 12, 1)  # pages of the generated report are made "on" this day


def generated_report(out: Any) -> dict[str, Any]:
    """A small report from generated traffic (12 days from 2026-10-01), with the
    parts the generator does not make added by hand: a churn section, open alerts,
    and data names (channel, experiment, campaign, alert) that are HTML."""
    import copy

    from agents.cli import main

    args = ["--days", "12", "--users-per-day", "60", "--start", "2026-10-01", "--seed", "16"]
    assert main(["generate", "--out", str(out), *args]) == 0
    assert main(["replay", "--clicks", str(out / "clicks.jsonl"), "--orders",
                 str(out / "orders.jsonl"), "--spend", str(out / "spend.jsonl"),
                 "--output", str(out / "report.json"), "--quiet"]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["channels"] and report["experiments"] and report["push"]
    first = sorted(report["channels"])[0]
    report["channels"][HOSTILE] = copy.deepcopy(report["channels"][first])
    report["channels"][HOSTILE]["new_users"] += 1
    report["experiments"][HOSTILE] = copy.deepcopy(next(iter(report["experiments"].values())))
    report["push"][HOSTILE] = copy.deepcopy(next(iter(report["push"].values())))
    quality = {"horizon_days": 14, "model": "logistic", "labelled": 512, "auc": 0.8123,
               "log_loss": 0.4412, "base_log_loss": 0.6101, "precision": 0.61,
               "recall": 0.4875, "flagged_share": 0.1523}  # fmt: skip
    report["churn"] = {**quality, "last_7d": {**quality, "auc": 0.7905, "precision": 0.55}}
    report["alerts"] = [
        {"key": "purchase:checkout>order_paid", "state": "firing", "severity": "critical",
         "metric": "step_conversion:purchase:checkout>order_paid",
         "dims": {"channel": HOSTILE}, "value": 0.66, "baseline": 0.8253,
         "detail": f"dropped to 66.0% (baseline 82.5%); mostly channel={HOSTILE}",
         "ts": 1791324000000},
        {"key": "purchase:add_to_cart>checkout", "state": "resolved", "severity": "critical",
         "metric": "step_conversion:purchase:add_to_cart>checkout", "dims": {},
         "value": 0.5, "baseline": 0.5, "detail": "back to normal", "ts": 1791324000000},
    ]  # fmt: skip
    return report
