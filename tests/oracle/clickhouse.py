"""Independent test oracle: the opspulse KPI report computed with ClickHouse SQL (chdb).

This module deliberately imports nothing from opspulse.  It works only from the
written KPI specification so that tests can cross-check the pure-Python
implementation against ClickHouse.  Every count, distinct count, sum, date
bucket and funnel level is computed in SQL; Python only does the final
ratio/rounding arithmetic on the integers ClickHouse returns and shapes the dict.

Import it by putting ``tests/oracle`` on ``sys.path`` and ``import clickhouse``
(it is a plain module, not a package).

Notes verified against chdb 4.4.0 / ClickHouse 26.9.2.1:

* ``toDate32(fromUnixTimestamp64Milli(ts, tz))`` is the *local* calendar date
  in ``tz`` (checked against ``zoneinfo`` around midnight and DST changes).
* Amounts are parsed with ``precise_float_parsing = 1``.  With ClickHouse's
  default fast float parser some decimal strings are read one ulp off
  (e.g. ``1.235`` -> ``1.2349999999999999``), which would make
  ``roundBankers(amount * 100)`` give 123 where Python ``round(1.235 * 100)``
  gives 124.  With precise parsing, ``toInt64(roundBankers(amount * 100))``
  equals Python ``round(amount * 100)`` for every float tried.
* ``windowFunnel(W, 'strict_increase')`` is accepted.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from typing import Any

import orjson
from chdb import session as chdb_session

__all__ = ["clickhouse_report", "clickhouse_funnel_level"]

DEFAULT_FUNNELS: list[tuple[str, list[str], int]] = [
    ("purchase", ["page_view", "add_to_cart", "checkout", "order_paid"], 86_400_000)
]
DEFAULT_INACTIVE: tuple[str, ...] = ("push_sent", "order_refunded")
ORDER_TYPES = ("order_created", "order_paid", "order_refunded")
RETENTION_MAX_K = 90

_LOCK = threading.RLock()
_SESSION: chdb_session.Session | None = None

# Settings applied to every query: exact float parsing (see module docstring).
_SETTINGS = "SETTINGS precise_float_parsing = 1"


def _session() -> chdb_session.Session:
    global _SESSION
    if _SESSION is None:
        _SESSION = chdb_session.Session()  # in-memory; tables use unique names
    return _SESSION


def _lit(value: str) -> str:
    """A ClickHouse single-quoted string literal."""
    out = ["'"]
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def _arr(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]::Array(String)"


def _query_rows(sql: str) -> list[dict[str, Any]]:
    with _LOCK:
        raw = _session().query(sql, "JSONEachRow").bytes()
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


def _execute(sql: str) -> None:
    with _LOCK:
        _session().query(sql, "CSV")


def _round2(x: float) -> float:
    return round(x, 2)


def _day_expr(ts: str, tz: str) -> str:
    """Local calendar date of epoch-ms ``ts`` in ``tz``, as Int32 days since 1970-01-01."""
    return f"toInt32(toDate32(fromUnixTimestamp64Milli(toInt64({ts}), {_lit(tz)})))"


def _date_str(d: str) -> str:
    """Int32 epoch-day expression -> 'YYYY-MM-DD' (in SQL)."""
    return f"toString(toDate32('1970-01-01') + toInt32({d}))"


def _funnel_args(steps: list[str], day_cond: str) -> str:
    conds = [f"type = {_lit(steps[0])} AND {day_cond}"]
    conds += [f"type = {_lit(s)}" for s in steps[1:]]
    return ", ".join(conds)


def _check_funnel(name: str, steps: list[str], window_ms: int) -> None:
    if not steps:
        raise ValueError(f"funnel {name!r} has no steps")
    if len(steps) > 32:
        raise ValueError("windowFunnel supports at most 32 steps")
    if int(window_ms) < 0:
        raise ValueError("window_ms must be >= 0")


def clickhouse_report(
    events: list[dict],
    *,
    timezone: str = "UTC",
    funnels: list[tuple[str, list[str], int]] = DEFAULT_FUNNELS,
    inactive_types: tuple[str, ...] = DEFAULT_INACTIVE,
) -> dict:
    """KPI report of ``events`` computed with ClickHouse SQL (see module docstring)."""
    funnels = [(name, list(steps), int(w)) for name, steps, w in funnels]
    for name, steps, w in funnels:
        _check_funnel(name, steps, w)

    empty = {
        "days": {},
        "retention": {},
        "funnels": {
            name: {"steps": list(steps), "window_ms": w, "since": None, "days": {}}
            for name, steps, w in funnels
        },
    }
    if not events:
        return empty

    table = f"_opspulse_oracle_ev_{uuid.uuid4().hex}"
    fd, path = tempfile.mkstemp(prefix="opspulse_oracle_", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            for e in events:
                amount = e.get("amount")
                if e["type"] in ORDER_TYPES and amount is None:
                    raise ValueError(f"order event without amount: {e!r}")
                fh.write(
                    orjson.dumps(
                        {
                            "event_id": e["event_id"],
                            "user_id": e["user_id"],
                            "ts": int(e["ts"]),
                            "type": e["type"],
                            "amount": None if amount is None else float(amount),
                        }
                    )
                )
                fh.write(b"\n")
        with _LOCK:
            _execute(
                f"""
                CREATE TABLE {table} ENGINE = Memory AS
                SELECT event_id, user_id, ts, type, amount,
                       {_day_expr("ts", timezone)} AS day
                FROM file({_lit(path)}, 'JSONEachRow',
                          'event_id String, user_id String, ts Int64, type String, amount Nullable(Float64)')
                LIMIT 1 BY event_id
                {_SETTINGS}
                """
            )
            try:
                return _report_from_table(table, timezone, funnels, tuple(inactive_types), empty)
            finally:
                _execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        try:
            os.remove(path)
        except OSError:
            pass


def _report_from_table(
    table: str,
    tz: str,
    funnels: list[tuple[str, list[str], int]],
    inactive: tuple[str, ...],
    empty: dict,
) -> dict:
    bounds = _query_rows(f"SELECT count() AS n, min(day) AS lo, max(day) AS hi FROM {table}")[0]
    if int(bounds["n"]) == 0:
        return empty

    inactive_arr = _arr(inactive)
    # Common CTEs:
    #   bounds: first/last report day (over ALL deduplicated events)
    #   range_days: every day lo..hi inclusive
    #   act: distinct (user, day) with activity
    #   first_act: each active user's first-activity day = day(min ts over activity events)
    ctes = f"""
        bounds AS (SELECT min(day) AS lo, max(day) AS hi FROM {table}),
        range_days AS (
            SELECT arrayJoin(range(lo, hi + 1)) AS d FROM bounds
        ),
        act AS (
            SELECT DISTINCT user_id, day FROM {table}
            WHERE NOT has({inactive_arr}, type)
        ),
        first_act AS (
            SELECT user_id, {_day_expr("min(ts)", tz)} AS c
            FROM {table}
            WHERE NOT has({inactive_arr}, type)
            GROUP BY user_id
        )
    """

    # ---- daily KPIs -------------------------------------------------------
    daily_sql = f"""
        WITH {ctes},
        active_windows AS (
            -- each (user, activity day) counts toward days day .. day+29 (clipped to range end)
            SELECT d,
                   uniqExactIf(user_id, d = day) AS dau,
                   uniqExactIf(user_id, d - day <= 6) AS wau,
                   uniqExact(user_id) AS mau
            FROM (
                SELECT user_id, day,
                       arrayJoin(range(day, least(day + 30, (SELECT hi FROM bounds) + 1))) AS d
                FROM act
            )
            GROUP BY d
        ),
        new_users AS (
            SELECT c AS d, uniqExact(user_id) AS new_users FROM first_act GROUP BY c
        ),
        money AS (
            SELECT day AS d,
                   uniqExactIf(user_id, type = 'order_paid') AS paying_users,
                   countIf(type = 'order_paid') AS orders_paid,
                   sumIf(toInt64(roundBankers(assumeNotNull(amount) * 100)), type = 'order_paid')
                       AS gmv_cents,
                   sumIf(toInt64(roundBankers(assumeNotNull(amount) * 100)), type = 'order_refunded')
                       AS refunds_cents
            FROM {table}
            WHERE type IN ('order_paid', 'order_refunded')
            GROUP BY day
        )
        SELECT {_date_str("r.d")} AS date,
               toUInt64(a.dau) AS dau, toUInt64(a.wau) AS wau, toUInt64(a.mau) AS mau,
               toUInt64(n.new_users) AS new_users,
               toUInt64(m.paying_users) AS paying_users,
               toUInt64(m.orders_paid) AS orders_paid,
               toInt64(m.gmv_cents) AS gmv_cents,
               toInt64(m.refunds_cents) AS refunds_cents
        FROM range_days AS r
        LEFT JOIN active_windows AS a ON a.d = r.d
        LEFT JOIN new_users AS n ON n.d = r.d
        LEFT JOIN money AS m ON m.d = r.d
        ORDER BY r.d
        SETTINGS join_use_nulls = 0, output_format_json_quote_64bit_integers = 0
    """
    days: dict[str, dict] = {}
    for row in _query_rows(daily_sql):
        dau, mau = int(row["dau"]), int(row["mau"])
        paying, orders = int(row["paying_users"]), int(row["orders_paid"])
        gmv_c, ref_c = int(row["gmv_cents"]), int(row["refunds_cents"])
        net_c = gmv_c - ref_c
        days[row["date"]] = {
            "dau": dau,
            "wau": int(row["wau"]),
            "mau": mau,
            "stickiness": (dau / mau) if mau else None,
            "new_users": int(row["new_users"]),
            "paying_users": paying,
            "orders_paid": orders,
            "gmv": _round2(gmv_c / 100),
            "refunds": _round2(ref_c / 100),
            "arpu": _round2(net_c / (100 * dau)) if dau else None,
            "arppu": _round2(net_c / (100 * paying)) if paying else None,
            "aov": _round2(gmv_c / (100 * orders)) if orders else None,
            "paid_conversion": (paying / dau) if dau else None,
        }

    # ---- retention --------------------------------------------------------
    retention_sql = f"""
        WITH {ctes},
        grid AS (
            SELECT c, arrayJoin(range(0, least({RETENTION_MAX_K}, (SELECT hi FROM bounds) - c) + 1)) AS k
            FROM (SELECT DISTINCT c FROM first_act)
        ),
        counts AS (
            SELECT f.c AS c, a.day - f.c AS k, uniqExact(a.user_id) AS n
            FROM act AS a INNER JOIN first_act AS f ON a.user_id = f.user_id
            WHERE a.day - f.c BETWEEN 0 AND {RETENTION_MAX_K}
            GROUP BY c, k
        )
        SELECT {_date_str("c")} AS cohort,
               arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((k, n)))) AS ns
        FROM (
            SELECT g.c AS c, g.k AS k, toUInt64(cn.n) AS n
            FROM grid AS g LEFT JOIN counts AS cn ON cn.c = g.c AND cn.k = g.k
        )
        GROUP BY c
        ORDER BY c
        SETTINGS join_use_nulls = 0, output_format_json_quote_64bit_integers = 0
    """
    retention = {row["cohort"]: [int(x) for x in row["ns"]] for row in _query_rows(retention_sql)}

    # ---- funnels ----------------------------------------------------------
    funnels_out: dict[str, dict] = {}
    for name, steps, window in funnels:
        k = len(steps)
        levels_cols = ", ".join(f"countIf(level >= {j})" for j in range(1, k + 1))
        funnel_sql = f"""
            WITH {ctes},
            starts AS (
                -- (user, d) pairs where the user has a steps[0] event on day d
                SELECT DISTINCT user_id, day AS d FROM {table} WHERE type = {_lit(steps[0])}
            ),
            levels AS (
                SELECT s.user_id AS user_id, s.d AS d,
                       windowFunnel({window}, 'strict_increase')(
                           toUInt64(e.ts), {_funnel_args(steps, "e.day = s.d")}
                       ) AS level
                FROM starts AS s
                INNER JOIN (
                    -- events matching no step condition are ignored by windowFunnel
                    -- (non-strict_order mode), so only the step types are joined
                    SELECT user_id, ts, type, day FROM {table} WHERE has({_arr(steps)}, type)
                ) AS e ON e.user_id = s.user_id
                GROUP BY s.user_id, s.d
            ),
            per_day AS (
                SELECT d, [{levels_cols}] AS counts FROM levels GROUP BY d
            )
            SELECT {_date_str("r.d")} AS date,
                   if(empty(p.counts), arrayResize(CAST([], 'Array(UInt64)'), {k}, toUInt64(0)),
                      arrayMap(x -> toUInt64(x), p.counts)) AS counts
            FROM range_days AS r LEFT JOIN per_day AS p ON p.d = r.d
            ORDER BY r.d
            SETTINGS join_use_nulls = 0, output_format_json_quote_64bit_integers = 0
        """
        funnel_days = {
            row["date"]: [int(x) for x in row["counts"]] for row in _query_rows(funnel_sql)
        }
        funnels_out[name] = {
            "steps": list(steps),
            "window_ms": window,
            "since": None,
            "days": funnel_days,
        }

    return {"days": days, "retention": retention, "funnels": funnels_out}


def clickhouse_funnel_level(
    events: list[tuple[int, str]], steps: list[str], window_ms: int, day: int, timezone: str
) -> int:
    """windowFunnel(window_ms, 'strict_increase') level of one user's events for start day ``day``.

    ``events`` are (ts_ms, type) pairs, ``day`` is the local date in ``timezone`` as
    days since 1970-01-01.  Condition 1 is ``type = steps[0] AND day(ts) = day``;
    condition j>1 is ``type = steps[j-1]``.
    """
    steps = list(steps)
    _check_funnel("<level>", steps, window_ms)
    data = b"\n".join(orjson.dumps({"ts": int(t), "type": ty}) for t, ty in events).decode()
    sql = f"""
        SELECT toUInt64(windowFunnel({int(window_ms)}, 'strict_increase')(
                   toUInt64(ts),
                   {_funnel_args(steps, f"{_day_expr('ts', timezone)} = toInt32({int(day)})")}
               )) AS level
        FROM format(JSONEachRow, 'ts Int64, type String', {_lit(data)})
        SETTINGS output_format_json_quote_64bit_integers = 0
    """
    rows = _query_rows(sql)
    return int(rows[0]["level"])
