"""The report as one self-contained HTML page (`opspulse report --html`, `GET /`).

`render_page(report)` is a pure function of the contract's report
(`opspulse.report/1`): KPI tiles with their trend, activity, revenue, the
funnels, the retention heatmap, channels, experiments, lifecycle / RFM / LTV
tiers, churn model quality, open alerts, push and cart abandonment. Charts are
drawn by plotly.js, inlined from the `plotly` package (no network at view time:
the page's Content-Security-Policy forbids every fetch); the figures are plain
JSON specs in one `<script type="application/json">` block.

Every number shown in a tile or a table cell carries its raw value
(`data-value`, JSON), how it is formatted (`data-kind`) and, when it is a
value of the report itself, where it comes from (`data-path`, a JSON list of
keys), so a test (or a person) can check the page against the report.
Everything that comes from the data is HTML-escaped; the chart specs are JSON
with `<` escaped, so no string can close the script block.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

SMALL_HEIGHT = 44  # sparklines in the tiles
CHART_HEIGHT = 330
TREND_DAYS = 7  # tiles compare with the same weekday a week before
SPARK_DAYS = 30
RETENTION_OFFSETS = (1, 7, 14, 30)  # the retention tables' columns (the heatmap has all)
OPEN_COHORTS = 14  # longer cohort tables start folded (the heatmap shows them all)

LIFECYCLE = (
    "new",
    "silent_new",
    "active",
    "potential_paying",
    "paying",
    "high_value",
    "churn_warning",
    "churned",
)
TILES = (
    # (report key, label, kind)
    ("dau", "DAU", "count"),
    ("new_users", "New users", "count"),
    ("paying_users", "Paying users", "count"),
    ("orders_paid", "Paid orders", "count"),
    ("gmv", "GMV", "money"),
    ("arpu", "ARPU", "money"),
    ("arppu", "ARPPU", "money"),
    ("paid_conversion", "Paid conversion", "ratio"),
    ("stickiness", "Stickiness (DAU/MAU)", "ratio"),
    ("repurchase_rate_30d", "Repurchase rate 30d", "ratio"),
)
EVENT_COUNTERS = ("consumed", "valid", "duplicates", "invalid", "late")
CHURN_ROWS = (
    ("horizon_days", "Horizon (days)", "count"),
    ("model", "Model", "text"),
    ("predictions", "Predictions made", "count"),
    ("labelled", "Predictions labelled", "count"),
    ("positives", "Labelled churned", "count"),
    ("auc", "AUC", "num"),
    ("log_loss", "Log loss", "num"),
    ("base_log_loss", "Log loss of the base rate", "num"),
    ("precision", "Precision", "ratio"),
    ("recall", "Recall", "ratio"),
    ("flagged_share", "Share flagged", "ratio"),
)
EMPTY = '<p class="empty">no data yet</p>'
DASH = "–"


@functools.cache
def plotly_js() -> str:
    """plotly.min.js from the `plotly` package (~4.8 MB): read once per process."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def fmt(kind: str, value: Any) -> str:
    """How a raw report value is shown (`data-kind`)."""
    if value is None:
        return DASH
    if kind == "count":
        return f"{value:,}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "ratio":
        return f"{value * 100:.1f}%"
    if kind == "pp":  # a difference of two rates, in percentage points
        return f"{value * 100:+.1f} pp"
    if kind == "times":
        return f"{value:.2f}×"
    if kind == "p":
        return "<0.0001" if value < 0.0001 else f"{value:.4f}"
    if kind == "num":
        return f"{value:.3f}"
    if kind == "ci":
        lo, hi = value
        return f"[{lo * 100:+.1f}, {hi * 100:+.1f}] pp"
    return str(value)


def render_page(
    report: dict[str, Any],
    *,
    refresh_seconds: int | None = None,
    generated_at: datetime | None = None,
    title: str = "opspulse",
) -> str:
    """The page for `report`. `refresh_seconds`: reload itself that often (the live
    `GET /`); `generated_at`: the time the page says it was made, which also decides
    the latest complete day (default: now)."""
    generated_at = generated_at or datetime.now(UTC)
    tz = _zone(report.get("timezone"))
    days = sorted(report.get("days") or {})
    day, complete = latest_day(days, generated_at.astimezone(tz).date())
    charts = _Charts()
    ctx = _Context(report, days, day, charts, tz)
    sections = [
        ("kpis", "Key figures", _kpis(ctx)),
        ("activity", "Activity and revenue", _activity(ctx)),
        ("funnels", "Funnels", _funnels(ctx)),
        ("retention", "Retention", _retention(ctx)),
        ("channels", "Channels", _channels(ctx)),
        ("experiments", "Experiments", _experiments(ctx)),
        ("segments", "Lifecycle, RFM and LTV tiers", _segments(ctx)),
        ("churn", "Churn model quality", _churn(ctx)),
        ("alerts", "Open alerts", _alerts(ctx)),
        ("engagement", "Push campaigns and cart abandonment", _engagement(ctx)),
        ("events", "Events", _events(ctx)),
    ]
    nav = " · ".join(f'<a href="#{sid}">{name}</a>' for sid, name, _ in sections)
    body = "\n".join(
        f'<section id="{sid}"><h2>{name}</h2>\n{content}</section>'
        for sid, name, content in sections
    )
    if days:
        period = f"{_e(days[0])} – {_e(days[-1])}"
        shown = f'KPIs of <b id="kpi-day" data-day="{_e(day)}">{_e(day)}</b>' + (
            " (the latest complete day)" if complete else " (in progress: no day has ended yet)"
        )
    else:
        period, shown = "no days yet", ""
    refresh = (
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">' if refresh_seconds else ""
    )
    refresh_note = f" · refreshes every {int(refresh_seconds)} s" if refresh_seconds else ""
    stamp = generated_at.astimezone(tz).isoformat(timespec="seconds")
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            refresh,
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)} · {period}</title><style>{CSS}</style>",
            "<script>",
            plotly_js(),
            "</script></head><body>",
            f'<header><h1>{_e(title)}</h1><p class="meta">Report {period} '
            f"({_e(report.get('timezone') or 'UTC')}) · {shown} · generated "
            f'<time id="generated-at">{_e(stamp)}</time>{refresh_note}</p>'
            f"<nav>{nav}</nav></header>",
            "<main>",
            body,
            "</main>",
            '<script type="application/json" id="opspulse-charts">',
            charts.json(),
            "</script><script>",
            DRAW_JS,
            "</script></body></html>\n",
        ]
    )


def latest_day(days: Sequence[str], today: date) -> tuple[str | None, bool]:
    """The latest day of the report that has ended by `today` (in the report's
    timezone), and True; else the last day (still in progress), and False."""
    ended = [d for d in days if d < today.isoformat()]
    if ended:
        return ended[-1], True
    return (days[-1] if days else None), False


# --- building blocks ---------------------------------------------------------------


class _Charts:
    """The figures of the page: {div id: {data, layout, config}} for plotly.js."""

    def __init__(self) -> None:
        self.specs: dict[str, dict[str, Any]] = {}

    def add(
        self,
        cid: str,
        data: list[dict[str, Any]],
        layout: dict[str, Any] | None = None,
        *,
        height: int = CHART_HEIGHT,
        static: bool = False,
        css: str = "chart",
    ) -> str:
        base = {
            "height": height,
            "margin": {"l": 56, "r": 56, "t": 36, "b": 40},
            "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
            "legend": {"orientation": "h", "y": -0.18},
            "paper_bgcolor": "#ffffff",
            "plot_bgcolor": "#ffffff",
        }
        config = {
            "displaylogo": False,
            "displayModeBar": False,
            "responsive": True,
            "staticPlot": static,
        }
        self.specs[cid] = {"data": data, "layout": {**base, **(layout or {})}, "config": config}
        return f'<div class="{css}" id="{_e(cid)}" style="height:{height}px"></div>'

    def json(self) -> str:
        # `<` only occurs inside JSON strings: escaped, no string can end the script block
        return orjson.dumps(self.specs).decode().replace("<", "\\u003c")


class _Context:
    def __init__(
        self,
        report: dict[str, Any],
        days: list[str],
        day: str | None,
        charts: _Charts,
        tz: ZoneInfo,
    ) -> None:
        self.report = report
        self.days = days
        self.day = day
        self.charts = charts
        self.tz = tz
        self.rows: dict[str, Any] = report.get("days") or {}

    def series(self, key: str, *sub: str) -> list[Any]:
        out = []
        for d in self.days:
            value: Any = self.rows.get(d) or {}
            for k in (key, *sub):
                value = value.get(k) if isinstance(value, dict) else None
            out.append(value)
        return out

    def window(self, n: int) -> list[str]:
        """The n days ending with the shown day (those the report has)."""
        if self.day is None:
            return []
        end = date.fromisoformat(self.day)
        wanted = {(end - timedelta(days=i)).isoformat() for i in range(n)}
        return [d for d in self.days if d in wanted]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _label(value: Any) -> str:
    """A data string inside a chart: plotly.js reads a few HTML tags in labels;
    escaped, they show as typed."""
    return html.escape(str(value), quote=False)


def _attr_json(value: Any) -> str:
    return _e(orjson.dumps(value).decode())


def _num(
    kind: str,
    value: Any,
    path: Sequence[Any] | None = None,
    *,
    tag: str = "td",
    of: Any = None,
    cls: str = "num",
    extra: str = "",
) -> str:
    """A number with its raw value; `of`: a share `value / of` (kind "share") or a
    drop-off `1 - value / of` (kind "dropoff")."""
    attrs = f'class="{cls}" data-kind="{kind}" data-value="{_attr_json(value)}"'
    if path is not None:
        attrs += f' data-path="{_attr_json(list(path))}"'
    if kind in ("share", "dropoff"):
        attrs += f' data-of="{_attr_json(of)}"'
        if value is None or not of:
            text = DASH
        else:
            share = value / of if kind == "share" else 1 - value / of
            text = fmt("ratio", share)
            attrs += f' title="{_e(f"{value:,} of {of:,}")}"'
    else:
        text = fmt(kind, value)
    return f"<{tag} {attrs}{extra}>{_e(text)}</{tag}>"


def _table(head: Iterable[str], rows: Iterable[str], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    return (
        f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _zone(name: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(name or "UTC"))
    except Exception:
        return ZoneInfo("UTC")


def _lines(
    ctx: _Context,
    series: Iterable[tuple[str, list[Any]]],
    *,
    y2: Iterable[str] = (),
    kind: str = "lines",
    stack: bool = False,
) -> list[dict[str, Any]]:
    out = []
    second = set(y2)
    for name, values in series:
        trace: dict[str, Any] = {
            "type": "scatter",
            "mode": "lines",
            "name": _label(name),
            "x": ctx.days,
            "y": values,
        }
        if kind == "bar":
            trace = {"type": "bar", "name": _label(name), "x": ctx.days, "y": values}
        if stack:
            trace["stackgroup"] = "one"
        if name in second:
            trace["yaxis"] = "y2"
            trace["line"] = {"dash": "dot"}
        out.append(trace)
    return out


# --- sections ----------------------------------------------------------------------


def _kpis(ctx: _Context) -> str:
    if ctx.day is None:
        return EMPTY
    day = ctx.day
    before = (date.fromisoformat(day) - timedelta(days=TREND_DAYS)).isoformat()
    row = ctx.rows.get(day) or {}
    prev_row = ctx.rows.get(before)
    spark_days = ctx.days[-SPARK_DAYS:]
    tiles = []
    for key, label, kind in TILES:
        value = row.get(key)
        if prev_row is None:
            trend = f'<div class="trend">no {_e(before)} to compare</div>'
        else:
            prev = prev_row.get(key)
            trend = _trend(kind, value, prev, before, key)
        spark = ctx.charts.add(
            f"spark-{key}",
            [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": spark_days,
                    "hoverinfo": "x+y",
                    "y": [(ctx.rows.get(d) or {}).get(key) for d in spark_days],
                    "line": {"width": 1.5, "color": "#3366cc"},
                }
            ],
            {
                "margin": {"l": 0, "r": 0, "t": 2, "b": 2},
                "showlegend": False,
                "xaxis": {"visible": False},
                "yaxis": {"visible": False},
            },
            height=SMALL_HEIGHT,
            static=True,
            css="spark",
        )
        tiles.append(
            f'<div class="tile" data-metric="{key}"><div class="label">{label}</div>'
            + _num(kind, value, ["days", day, key], tag="div", cls="value")
            + trend
            + spark
            + "</div>"
        )
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _trend(kind: str, value: Any, prev: Any, before: str, key: str) -> str:
    prev_html = _num(kind, prev, ["days", before, key], tag="span", cls="prev")
    if value is None or prev is None:
        return f'<div class="trend">vs {_e(before)}: {prev_html}</div>'
    delta = value - prev
    arrow, cls = ("▲", "up") if delta > 0 else ("▼", "down") if delta < 0 else ("=", "flat")
    if kind == "ratio":
        change = fmt("pp", delta)
    elif prev:
        change = f"{delta / prev * 100:+.1f}%"
    else:
        change = "new"
    return (
        f'<div class="trend {cls}"><span class="change">{arrow} {_e(change)}</span> '
        f"vs {_e(before)}: {prev_html}</div>"
    )


def _activity(ctx: _Context) -> str:
    if not ctx.days:
        return EMPTY
    users = ctx.charts.add(
        "chart-activity",
        _lines(
            ctx,
            [
                ("DAU", ctx.series("dau")),
                ("WAU", ctx.series("wau")),
                ("MAU", ctx.series("mau")),
                ("stickiness", ctx.series("stickiness")),
            ],
            y2=["stickiness"],
        ),
        {
            "title": {"text": "Active users and stickiness (DAU/MAU)"},
            "hovermode": "x unified",
            "yaxis": {"title": {"text": "users"}, "rangemode": "tozero"},
            "yaxis2": {
                "title": {"text": "stickiness"},
                "overlaying": "y",
                "side": "right",
                "tickformat": ".0%",
                "rangemode": "tozero",
                "showgrid": False,
            },
        },
    )
    money = ctx.charts.add(
        "chart-revenue",
        _lines(ctx, [("GMV", ctx.series("gmv")), ("refunds", ctx.series("refunds"))], kind="bar")
        + _lines(ctx, [("paid conversion", ctx.series("paid_conversion"))], y2=["paid conversion"]),
        {
            "title": {"text": "GMV, refunds and paid conversion"},
            "hovermode": "x unified",
            "barmode": "group",
            "yaxis": {"title": {"text": "money"}, "rangemode": "tozero"},
            "yaxis2": {
                "title": {"text": "paid conversion"},
                "overlaying": "y",
                "side": "right",
                "tickformat": ".1%",
                "rangemode": "tozero",
                "showgrid": False,
            },
        },
    )
    return f'<div class="grid2">{users}{money}</div>'


def _funnels(ctx: _Context) -> str:
    funnels = ctx.report.get("funnels") or {}
    if not funnels or ctx.day is None:
        return EMPTY
    week = ctx.window(7)
    parts = []
    for fi, name in enumerate(sorted(funnels)):
        funnel = funnels[name] or {}
        steps = list(funnel.get("steps") or [])
        rows_by_day = funnel.get("days") or {}
        on_day = rows_by_day.get(ctx.day)
        totals = [sum(_at(rows_by_day.get(d), i) or 0 for d in week) for i in range(len(steps))]
        rows = []
        for i, step in enumerate(steps):
            n = _at(on_day, i)
            path = ["funnels", name, "days", ctx.day, i] if n is not None else None
            cells = [f'<td class="step">{_e(step)}</td>', _num("count", n, path)]
            cells.append(_num("dropoff", n, of=_at(on_day, i - 1)) if i else "<td>–</td>")
            cells.append(_num("count", totals[i]))
            cells.append(_num("dropoff", totals[i], of=totals[i - 1]) if i else "<td>–</td>")
            cells.append(_num("share", totals[i], of=totals[0]))
            rows.append(f'<tr data-step="{_e(step)}">{"".join(cells)}</tr>')
        table = _table(
            [
                "Step",
                f"On {_e(ctx.day)}",
                "Drop-off",
                f"{_e(week[0])} – {_e(week[-1])}",
                "Drop-off",
                "Of the first step",
            ],
            rows,
            "funnel",
        )
        labels = [_label(s) for s in steps]
        chart = ctx.charts.add(
            f"chart-funnel-{fi}",
            [
                {
                    "type": "funnel",
                    "y": labels,
                    "x": totals,
                    "texttemplate": "%{value:,}<br>%{percentPrevious:.1%} of previous",
                    "name": "last 7 days",
                }
            ],
            {
                "title": {"text": f"{_label(name)}: users per step, {week[0]} – {week[-1]}"},
                "margin": {"l": 120, "r": 20, "t": 36, "b": 20},
            },
        )
        conv = []
        first = [(rows_by_day.get(d) or [None])[0] for d in ctx.days]
        for i, step in enumerate(steps[1:], 1):
            conv.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{_label(step)} / {_label(steps[0])}",
                    "x": ctx.days,
                    "y": [
                        (_at(rows_by_day.get(d), i) or 0) / f if f else None
                        for d, f in zip(ctx.days, first, strict=True)
                    ],
                }
            )
        over_time = ctx.charts.add(
            f"chart-funnel-days-{fi}",
            conv,
            {
                "title": {"text": f"{_label(name)}: share of the first step, per day"},
                "yaxis": {"tickformat": ".0%", "rangemode": "tozero"},
                "hovermode": "x unified",
            },
        )
        parts.append(
            f'<div class="funnel-block" data-funnel="{_e(name)}"><h3>{_e(name)}</h3>{table}'
            f'<div class="grid2">{chart}{over_time}</div></div>'
        )
    return "".join(parts)


def _retention(ctx: _Context) -> str:
    retention = ctx.report.get("retention") or {}
    cohorts = sorted(c for c, row in retention.items() if row)
    if not cohorts:
        return EMPTY
    width = max(len(retention[c]) for c in cohorts)
    z = []
    for c in cohorts:
        row = retention[c]
        z.append([(n / row[0] if row[0] else None) for n in row] + [None] * (width - len(row)))
    # D0 is 100% by definition: the scale spans the later days, so they differ visibly
    zmax = max([v for r in z for v in r[1:] if v is not None] or [1.0])
    heat = ctx.charts.add(
        "chart-retention",
        [
            {
                "type": "heatmap",
                "z": z,
                "x": [f"D{k}" for k in range(width)],
                "y": cohorts,
                "colorscale": "Blues",
                "reversescale": True,
                "zmin": 0,
                "zmax": zmax,
                "customdata": [
                    [n for n in retention[c]] + [None] * (width - len(retention[c]))
                    for c in cohorts
                ],
                "hovertemplate": "cohort %{y}, %{x}: %{z:.1%} (%{customdata:,} users)<extra></extra>",
                "colorbar": {"tickformat": ".0%"},
                "xgap": 1,
                "ygap": 1,
            }
        ],
        {
            "title": {"text": "Daily cohorts: share of the cohort active k days later"},
            "yaxis": {"autorange": "reversed", "type": "category"},
            "xaxis": {"type": "category"},
            "margin": {"l": 90, "r": 20, "t": 36, "b": 40},
        },
        height=max(CHART_HEIGHT, 60 + 16 * len(cohorts)),
    )
    rows = []
    for c in cohorts:
        row = retention[c]
        cells = [f"<td>{_e(c)}</td>", _num("count", row[0], ["retention", c, 0])]
        for k in RETENTION_OFFSETS:
            if k < len(row):
                cells.append(_num("share", row[k], ["retention", c, k], of=row[0]))
            else:
                cells.append("<td>–</td>")
        rows.append(f'<tr data-cohort="{_e(c)}">{"".join(cells)}</tr>')
    table = _table(
        ["Cohort (first day)", "Users"] + [f"D{k}" for k in RETENTION_OFFSETS], rows, "retention"
    )
    opened = " open" if len(cohorts) <= OPEN_COHORTS else ""
    return f"{heat}<details{opened}><summary>Cohort table</summary>{table}</details>"


def _at(row: Sequence[Any] | None, i: int) -> Any:
    return row[i] if row is not None and 0 <= i < len(row) else None


def _pooled(rows: Iterable[Sequence[int]], k: int) -> tuple[int, int]:
    """(active on day k, cohort size) summed over the cohorts that have reached day k."""
    reached = [r for r in rows if len(r) > k]
    return sum(r[k] for r in reached), sum(r[0] for r in reached)


def _channels(ctx: _Context) -> str:
    channels = ctx.report.get("channels") or {}
    if not channels:
        return EMPTY
    names = sorted(channels)
    rows = []
    for name in names:
        ch = channels[name] or {}
        ret = list((ch.get("retention") or {}).values())
        cells = [f'<td class="name">{_e(name)}</td>']
        for key, kind in (
            ("new_users", "count"),
            ("spend", "money"),
            ("revenue", "money"),
            ("cac", "money"),
            ("roi", "times"),
        ):
            cells.append(_num(kind, ch.get(key), ["channels", name, key]))
        for k in (1, 7, 30):
            active, size = _pooled(ret, k)
            cells.append(_num("share", active, of=size) if size else "<td>–</td>")
        rows.append(f'<tr data-channel="{_e(name)}">{"".join(cells)}</tr>')
    table = _table(
        [
            "Channel",
            "New users",
            "Spend",
            "Revenue",
            "CAC",
            "ROI (revenue ÷ spend)",
            "Retention D1",
            "D7",
            "D30",
        ],
        rows,
        "channels",
    )

    def per_day(key: str) -> list[tuple[str, list[Any]]]:
        return [
            (n, [((channels[n].get("days") or {}).get(d) or {}).get(key) for d in ctx.days])
            for n in names
        ]

    new_users = ctx.charts.add(
        "chart-channel-new-users",
        _lines(ctx, per_day("new_users"), kind="bar"),
        {"title": {"text": "New users per channel"}, "barmode": "stack", "hovermode": "x unified"},
    )
    cac = ctx.charts.add(
        "chart-channel-cac",
        _lines(ctx, per_day("cac")),
        {
            "title": {"text": "CAC per day"},
            "hovermode": "x unified",
            "yaxis": {"rangemode": "tozero"},
        },
    )
    curves = []
    for n in names:
        ret = list((channels[n].get("retention") or {}).values())
        width = min(31, max((len(r) for r in ret), default=0))
        ys = []
        for k in range(width):
            active, size = _pooled(ret, k)
            ys.append(active / size if size else None)
        curves.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": _label(n),
                "x": list(range(width)),
                "y": ys,
            }
        )
    retention = ctx.charts.add(
        "chart-channel-retention",
        curves,
        {
            "title": {"text": "Retention by channel (pooled cohorts)"},
            "xaxis": {"title": {"text": "days since first seen"}},
            "yaxis": {"tickformat": ".0%", "rangemode": "tozero"},
        },
    )
    return f'{table}<div class="grid3">{new_users}{cac}{retention}</div>'


def _experiments(ctx: _Context) -> str:
    experiments = ctx.report.get("experiments") or {}
    if not experiments:
        return EMPTY
    parts, ys, lifts, plus, minus, texts = [], [], [], [], [], []
    for name in sorted(experiments):
        exp = experiments[name] or {}
        control = exp.get("control")
        variants = exp.get("variants") or {}
        order = sorted(variants, key=lambda v: (v != control, v))
        rows = []
        for v in order:
            var = variants[v] or {}
            path = ["experiments", name, "variants", v]
            cells = [f'<td class="name">{_e(v)}{" (control)" if v == control else ""}</td>']
            for key, kind in (
                ("exposed", "count"),
                ("converted", "count"),
                ("rate", "ratio"),
                ("lift", "pp"),
                ("relative_lift", "ratio"),
                ("ci", "ci"),
                ("p_value", "p"),
            ):
                cells.append(_num(kind, var.get(key), [*path, key]))
            rows.append(f'<tr data-variant="{_e(v)}">{"".join(cells)}</tr>')
            lift, ci = var.get("lift"), var.get("ci")
            if v != control and lift is not None and ci:
                ys.append(f"{_label(name)}: {_label(v)}")
                lifts.append(lift)
                plus.append(ci[1] - lift)
                minus.append(lift - ci[0])
                texts.append(f"rate {fmt('ratio', var.get('rate'))} vs control")
        srm = _num("p", exp.get("srm_p_value"), ["experiments", name, "srm_p_value"], tag="span")
        table = _table(
            [
                "Variant",
                "Exposed",
                "Converted",
                "Rate",
                "Lift",
                "Relative lift",
                "95% CI of the lift",
                "p-value",
            ],
            rows,
            "experiment",
        )
        parts.append(
            f'<div class="experiment" data-experiment="{_e(name)}"><h3>{_e(name)}</h3>'
            f'<p class="meta">Sample-ratio mismatch p-value {srm} (below 0.001: the split '
            f"is broken, do not trust the lifts)</p>{table}</div>"
        )
    chart = ""
    if ys:
        chart = ctx.charts.add(
            "chart-experiments",
            [
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": lifts,
                    "y": ys,
                    "text": texts,
                    "marker": {"size": 10},
                    "name": "lift",
                    "error_x": {
                        "type": "data",
                        "symmetric": False,
                        "array": plus,
                        "arrayminus": minus,
                        "thickness": 2,
                    },
                    "hovertemplate": "%{y}: %{x:+.2%} (%{text})<extra></extra>",
                }
            ],
            {
                "title": {
                    "text": "Lift of the conversion rate vs control, with its always-valid 95% CI"
                },
                "xaxis": {"tickformat": "+.1%", "zeroline": True, "zerolinewidth": 2},
                "yaxis": {"automargin": True},
                "showlegend": False,
                "margin": {"l": 160, "r": 30, "t": 36, "b": 40},
            },
            height=max(200, 90 + 40 * len(ys)),
        )
    return "".join(parts) + chart


def _segments(ctx: _Context) -> str:
    if not ctx.days or ctx.day is None:
        return EMPTY
    out = []
    for key, title, fixed in (
        ("lifecycle", "Lifecycle stages", LIFECYCLE),
        ("rfm", "RFM segments", ()),
        ("ltv_tiers", "LTV tiers (paying users)", ()),
    ):
        seen: list[str] = []
        for d in ctx.days:
            for n in (ctx.rows.get(d) or {}).get(key) or {}:
                if n not in seen:
                    seen.append(n)
        names = [n for n in fixed if n in seen] + [n for n in seen if n not in fixed]
        if not names:
            continue
        out.append(
            ctx.charts.add(
                f"chart-{key.replace('_', '-')}",
                _lines(ctx, [(n, ctx.series(key, n)) for n in names], stack=key != "ltv_tiers"),
                {
                    "title": {"text": title},
                    "legend": {"orientation": "h", "y": -0.25},
                    "hovermode": "x unified",
                    "yaxis": {"rangemode": "tozero"},
                },
                height=400,
            )
        )
    if not out:
        return EMPTY
    before = (date.fromisoformat(ctx.day) - timedelta(days=TREND_DAYS)).isoformat()
    tables = []
    for key, label in (("lifecycle", "Stage"), ("rfm", "RFM segment"), ("ltv_tiers", "LTV tier")):
        counts = (ctx.rows.get(ctx.day) or {}).get(key) or {}
        prev = (ctx.rows.get(before) or {}).get(key) if before in ctx.rows else None
        total = sum(v for v in counts.values() if v)
        rows = []
        for n, v in counts.items():
            cells = [
                f'<td class="name">{_e(n)}</td>',
                _num("count", v, ["days", ctx.day, key, n]),
                _num("share", v, of=total),
            ]
            if prev is not None and n in prev:
                cells.append(_num("count", prev[n], ["days", before, key, n]))
            else:
                cells.append("<td>–</td>")
            rows.append(f'<tr data-segment="{_e(key)}/{_e(n)}">{"".join(cells)}</tr>')
        if rows:
            tables.append(_table([label, _e(ctx.day), "Share", _e(before)], rows, "segments"))
    return (
        f'<div class="grid2">{"".join(out)}</div><div class="grid3 tables">{"".join(tables)}</div>'
    )


def _churn(ctx: _Context) -> str:
    churn = ctx.report.get("churn") or {}
    if not isinstance(churn, dict) or not churn:
        return EMPTY
    last = churn.get("last_7d") or {}
    known = {k for k, _, _ in CHURN_ROWS}
    extra = [
        (k, k, "num" if isinstance(churn[k], int | float) else "text")
        for k in churn
        if k not in known and k != "last_7d"
    ]
    rows = []
    for key, label, kind in (*CHURN_ROWS, *extra):
        if key not in churn and key not in last:
            continue
        cells = [f"<td>{_e(label)}</td>", _num(kind, churn.get(key), ["churn", key])]
        cells.append(_num(kind, last.get(key), ["churn", "last_7d", key]) if last else "<td>–</td>")
        rows.append(f'<tr data-churn="{_e(key)}">{"".join(cells)}</tr>')
    table = _table(["", "All labelled users", "Last 7 days"], rows, "churn")
    shown = [
        k
        for k in ("auc", "precision", "recall", "flagged_share")
        if isinstance(churn.get(k), int | float)
    ]
    chart = ""
    if shown:
        data = [{"type": "bar", "name": "all", "x": shown, "y": [churn[k] for k in shown]}]
        if last:
            data.append(
                {
                    "type": "bar",
                    "name": "last 7 days",
                    "x": shown,
                    "y": [last.get(k) for k in shown],
                }
            )
        chart = ctx.charts.add(
            "chart-churn",
            data,
            {
                "title": {"text": "Churn model quality"},
                "barmode": "group",
                "yaxis": {"range": [0, 1], "tickformat": ".0%"},
            },
        )
    return f'<div class="grid2">{table}{chart}</div>'


def _alerts(ctx: _Context) -> str:
    alerts = [
        (i, a)
        for i, a in enumerate(ctx.report.get("alerts") or [])
        if isinstance(a, dict) and a.get("state", "firing") == "firing"
    ]
    if not alerts:
        return '<p class="empty">no open alerts</p>'
    rows = []
    for i, a in alerts:
        metric = str(a.get("metric") or "")
        kind = "ratio" if "conversion" in metric else "num"
        ts = a.get("ts")
        since = (
            datetime.fromtimestamp(ts / 1000, ctx.tz).isoformat(timespec="minutes")
            if isinstance(ts, int | float)
            else DASH
        )
        dims = ", ".join(f"{k}={v}" for k, v in (a.get("dims") or {}).items()) or "broad"
        rows.append(
            f'<tr class="sev-{_e(a.get("severity") or "")}" data-alert="{_e(a.get("key"))}">'
            f"<td>{_e(since)}</td><td>{_e(a.get('severity') or DASH)}</td>"
            f"<td>{_e(a.get('key'))}</td><td>{_e(dims)}</td>"
            + _num(kind, a.get("value"), ["alerts", i, "value"])
            + _num(kind, a.get("baseline"), ["alerts", i, "baseline"])
            + f'<td class="detail">{_e(a.get("detail") or "")}</td></tr>'
        )
    return _table(
        ["Firing since", "Severity", "Rule", "Where", "Value", "Baseline", "Detail"], rows, "alerts"
    )


def _engagement(ctx: _Context) -> str:
    push = ctx.report.get("push") or {}
    carts = (ctx.report.get("triggers") or {}).get("cart_abandoned") or {}
    parts = []
    if push:
        rows = []
        for name in sorted(push):
            c = push[name] or {}
            rows.append(
                f'<tr data-campaign="{_e(name)}"><td class="name">{_e(name)}</td>'
                + _num("count", c.get("sent"), ["push", name, "sent"])
                + _num("count", c.get("opened"), ["push", name, "opened"])
                + _num("ratio", c.get("open_rate"), ["push", name, "open_rate"])
                + "</tr>"
            )
        parts.append(_table(["Campaign", "Sent", "Opened", "Open rate"], rows, "push"))
    if carts:
        parts.append(
            ctx.charts.add(
                "chart-carts",
                _lines(ctx, [("abandoned carts", [carts.get(d) for d in ctx.days])], kind="bar"),
                {"title": {"text": "Abandoned carts per day"}, "showlegend": False},
            )
        )
    return f'<div class="grid2">{"".join(parts)}</div>' if parts else EMPTY


def _events(ctx: _Context) -> str:
    events = ctx.report.get("events") or {}
    if not events:
        return EMPTY
    names = [k for k in EVENT_COUNTERS if k in events] + sorted(
        k for k in events if k not in EVENT_COUNTERS
    )
    rows = "".join(
        f'<tr data-counter="{_e(k)}"><td>{_e(k)}</td>'
        + _num("count", events[k], ["events", k])
        + "</tr>"
        for k in names
    )
    return _table(["Events", "Count"], [rows], "events")


CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)

DRAW_JS = """
(function () {
  var specs = JSON.parse(document.getElementById('opspulse-charts').textContent);
  var drawn = 0;
  Object.keys(specs).forEach(function (id) {
    var el = document.getElementById(id), s = specs[id];
    if (!el || typeof Plotly === 'undefined') return;
    Plotly.newPlot(el, s.data, s.layout, s.config);
    drawn += 1;
  });
  document.body.setAttribute('data-charts', String(drawn));
})();
"""

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2933;background:#f4f6f8}
header{background:#1f2933;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:22px}
header .meta{margin:4px 0;color:#cbd2d9}
header nav a{color:#9fc5ff;text-decoration:none;font-size:13px}
main{padding:8px 24px 40px}
section{background:#fff;border-radius:8px;padding:12px 18px;margin:14px 0;box-shadow:0 1px 2px #0002}
h2{font-size:18px;margin:4px 0 10px}
h3{font-size:15px;margin:12px 0 6px}
.empty{color:#7b8794;font-style:italic}
.meta{color:#52606d;font-size:13px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.tile{border:1px solid #e4e7eb;border-radius:6px;padding:8px 10px}
.tile .label{font-size:12px;color:#52606d;text-transform:uppercase;letter-spacing:.03em}
.tile .value{font-size:26px;font-weight:600;margin:2px 0}
.trend{font-size:12px;color:#52606d}
.trend.up .change{color:#0b7a3e}.trend.down .change{color:#c81e1e}
.spark{width:100%}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:12px;align-items:start}
.grid3{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:12px}
.grid3.tables{align-items:start;margin-top:8px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e4e7eb;text-align:left}
th{background:#f0f4f8;font-weight:600}
td.num,td[data-kind]{text-align:right;font-variant-numeric:tabular-nums}
tr.sev-critical td{background:#fde8e8}
td.detail{max-width:520px}
summary{cursor:pointer;color:#52606d;font-size:13px}
"""
