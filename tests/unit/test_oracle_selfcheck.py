"""Self-check of the ClickHouse oracle (tests/oracle/clickhouse.py) against hand-computed numbers.

Every expected value below is worked out by hand in the comments, from the KPI
spec only; nothing here is derived from the opspulse implementation.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "oracle"))

import pytest  # noqa: E402

chdb = pytest.importorskip("chdb")

from clickhouse import clickhouse_funnel_level, clickhouse_report  # noqa: E402

HOUR = 3_600_000
DAY = 24 * HOUR
PURCHASE = ["page_view", "add_to_cart", "checkout", "order_paid"]


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, *, utc_offset_h: int = 0) -> int:
    """Epoch ms of a wall-clock time at a fixed UTC offset (offsets written by hand)."""
    tz = timezone(timedelta(hours=utc_offset_h))
    return int(datetime(y, mo, d, h, mi, tzinfo=tz).timestamp() * 1000)


def epoch_day(y: int, mo: int, d: int) -> int:
    return (datetime(y, mo, d) - datetime(1970, 1, 1)).days


_counter = iter(range(10**9))


def ev(user: str, ts: int, type_: str, amount: float | None = None, event_id: str | None = None):
    e = {"event_id": event_id or f"e{next(_counter)}", "user_id": user, "ts": ts, "type": type_}
    if amount is not None:
        e["amount"] = amount
    return e


def dates(start: str, n: int) -> list[str]:
    d0 = datetime.strptime(start, "%Y-%m-%d")
    return [(d0 + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(n)]


# ---------------------------------------------------------------------------


def test_empty_input():
    r = clickhouse_report([])
    assert r == {
        "days": {},
        "retention": {},
        "funnels": {
            "purchase": {"steps": PURCHASE, "window_ms": 86_400_000, "since": None, "days": {}}
        },
    }


def test_dau_wau_mau_over_gap():
    # UTC. a active 01-01 and 01-10, b active 01-05, c active 02-05,
    # d only has a push_sent (inactive) on 02-07 -> extends the range, counts nowhere.
    events = [
        ev("a", ms(2024, 1, 1, 12), "page_view"),
        ev("b", ms(2024, 1, 5, 12), "page_view"),
        ev("a", ms(2024, 1, 10, 12), "page_view"),
        ev("c", ms(2024, 2, 5, 12), "page_view"),
        ev("d", ms(2024, 2, 7, 12), "push_sent"),
    ]
    days = clickhouse_report(events)["days"]
    # Range 2024-01-01 .. 2024-02-07 inclusive = 31 + 7 = 38 days, gaps included.
    assert list(days) == dates("2024-01-01", 38)

    def kpi(d):
        x = days[d]
        return (x["dau"], x["wau"], x["mau"], x["new_users"])

    # (dau, wau, mau, new_users)
    assert kpi("2024-01-01") == (1, 1, 1, 1)  # a
    assert kpi("2024-01-02") == (0, 1, 1, 0)  # gap day: a still in 7/30-day windows
    assert days["2024-01-02"]["stickiness"] == 0.0
    assert kpi("2024-01-05") == (1, 2, 2, 1)  # b new; week 12-30..01-05 has a,b
    assert kpi("2024-01-07") == (0, 2, 2, 0)  # week 01-01..01-07: a,b
    assert kpi("2024-01-08") == (0, 1, 2, 0)  # week 01-02..01-08: b only
    assert kpi("2024-01-10") == (1, 2, 2, 0)  # a returns (not new); week 01-04..: b,a
    assert kpi("2024-01-17") == (0, 0, 2, 0)  # week 01-11..01-17: nobody
    assert kpi("2024-01-30") == (0, 0, 2, 0)  # month 01-01..01-30: a,b
    assert kpi("2024-01-31") == (0, 0, 2, 0)  # month 01-02..01-31: b(05), a(10)
    assert kpi("2024-02-03") == (0, 0, 2, 0)  # month 01-05..02-03: b(05), a(10)
    assert kpi("2024-02-04") == (0, 0, 1, 0)  # month 01-06..02-04: a(10)
    assert kpi("2024-02-05") == (1, 1, 2, 1)  # c new; month 01-07..02-05: a,c
    assert days["2024-02-05"]["stickiness"] == 0.5
    assert kpi("2024-02-07") == (0, 1, 2, 0)  # push_sent ignored; week has c
    assert days["2024-02-07"]["stickiness"] == 0.0
    # no activity at all on a day -> paid ratios are None; stickiness None only when mau==0
    assert days["2024-01-17"]["arpu"] is None
    assert days["2024-01-17"]["paid_conversion"] is None
    assert days["2024-01-17"]["stickiness"] == 0.0


def test_stickiness_none_when_mau_zero():
    # Only inactive events: the range is one day, nobody active -> mau 0 -> None.
    days = clickhouse_report([ev("x", ms(2024, 1, 1), "push_sent")])["days"]
    assert days["2024-01-01"]["mau"] == 0
    assert days["2024-01-01"]["stickiness"] is None


def test_midnight_straddle_asia_shanghai():
    # Shanghai is UTC+8 all year. 23:30 and 00:30 local are 15:30Z and 16:30Z on 03-01.
    events = [
        ev("u", ms(2024, 3, 1, 23, 30, utc_offset_h=8), "page_view"),
        ev("u", ms(2024, 3, 2, 0, 30, utc_offset_h=8), "page_view"),
    ]
    sh = clickhouse_report(events, timezone="Asia/Shanghai")
    assert list(sh["days"]) == ["2024-03-01", "2024-03-02"]
    assert [sh["days"][d]["dau"] for d in sh["days"]] == [1, 1]
    assert [sh["days"][d]["new_users"] for d in sh["days"]] == [1, 0]
    assert sh["retention"] == {"2024-03-01": [1, 1]}

    utc = clickhouse_report(events, timezone="UTC")
    assert list(utc["days"]) == ["2024-03-01"]
    assert utc["days"]["2024-03-01"]["dau"] == 1
    assert utc["retention"] == {"2024-03-01": [1]}


def test_new_york_dst_local_date():
    # DST starts 2024-03-10 02:00 EST -> 03:00 EDT.
    # 03-10 00:30 EST (UTC-5) = 03-10 05:30Z; 03-11 00:30 EDT (UTC-4) = 03-11 04:30Z.
    # A fixed -5h offset would wrongly put the second one on 03-10 (23:30).
    events = [
        ev("u", ms(2024, 3, 10, 0, 30, utc_offset_h=-5), "page_view"),
        ev("u", ms(2024, 3, 11, 0, 30, utc_offset_h=-4), "page_view"),
    ]
    ny = clickhouse_report(events, timezone="America/New_York")
    assert list(ny["days"]) == ["2024-03-10", "2024-03-11"]
    assert ny["retention"] == {"2024-03-10": [1, 1]}


def test_duplicate_event_counted_once():
    # the same order_paid event delivered 3 times and a page_view twice
    paid = ev("u", ms(2024, 1, 1, 10), "order_paid", 5.0, event_id="dup-1")
    pv = ev("u", ms(2024, 1, 1, 9), "page_view", event_id="dup-2")
    d = clickhouse_report([paid, dict(paid), pv, dict(paid), dict(pv)])["days"]["2024-01-01"]
    assert d["orders_paid"] == 1
    assert d["paying_users"] == 1
    assert d["gmv"] == 5.0
    assert d["dau"] == 1
    assert d["aov"] == 5.0


def test_funnel_step_on_next_day_within_window():
    # W = 24h. u: page_view 01-01 20:00, add_to_cart 22:00, checkout 01-02 10:00 (+14h, in),
    #          order_paid 01-02 21:00 (+25h from the start, out) -> level 3 for 01-01.
    # w: page_view 01-02 09:00, add_to_cart 09:30 -> level 2 for 01-02.
    # u has no page_view on 01-02, so u counts nowhere on 01-02.
    events = [
        ev("u", ms(2024, 1, 1, 20), "page_view"),
        ev("u", ms(2024, 1, 1, 22), "add_to_cart"),
        ev("u", ms(2024, 1, 2, 10), "checkout"),
        ev("u", ms(2024, 1, 2, 21), "order_paid", 9.99),
        ev("w", ms(2024, 1, 2, 9), "page_view"),
        ev("w", ms(2024, 1, 2, 9, 30), "add_to_cart"),
    ]
    f = clickhouse_report(events)["funnels"]["purchase"]
    assert f["steps"] == PURCHASE and f["window_ms"] == 86_400_000
    assert f["days"] == {"2024-01-01": [1, 1, 1, 0], "2024-01-02": [1, 1, 0, 0]}


def test_funnel_window_boundary_inclusive_and_ties():
    # W = 1000 ms, steps page_view -> add_to_cart, all on 2024-01-01 UTC.
    # x: second step at exactly +1000 -> within (ts <= start + W) -> level 2
    # y: second step at +1001 -> outside -> level 1
    # z: both steps at the same ts -> strict_increase needs a later ts -> level 1
    t0 = ms(2024, 1, 1, 12)
    events = [
        ev("x", t0, "page_view"),
        ev("x", t0 + 1000, "add_to_cart"),
        ev("y", t0, "page_view"),
        ev("y", t0 + 1001, "add_to_cart"),
        ev("z", t0, "page_view"),
        ev("z", t0, "add_to_cart"),
    ]
    funnels = [("ab", ["page_view", "add_to_cart"], 1000)]
    f = clickhouse_report(events, funnels=funnels)["funnels"]["ab"]
    # level>=1: x,y,z = 3; level>=2: x only = 1
    assert f["days"] == {"2024-01-01": [3, 1]}

    steps, day = ["page_view", "add_to_cart"], epoch_day(2024, 1, 1)
    lvl = lambda evs: clickhouse_funnel_level(evs, steps, 1000, day, "UTC")  # noqa: E731
    assert lvl([(t0, "page_view"), (t0 + 1000, "add_to_cart")]) == 2
    assert lvl([(t0, "page_view"), (t0 + 1001, "add_to_cart")]) == 1
    assert lvl([(t0, "page_view"), (t0, "add_to_cart")]) == 1
    # no start event on that day -> 0; start on another day -> 0 for this day
    assert lvl([(t0, "add_to_cart")]) == 0
    assert clickhouse_funnel_level([(t0, "page_view")], steps, 1000, day + 1, "UTC") == 0
    assert lvl([]) == 0


def test_funnel_level_day_is_local_date():
    # 2024-03-01 23:30 in Shanghai (UTC+8) is 15:30Z the same date, but
    # 2024-03-02 00:30 Shanghai is still 03-01 in UTC.
    t = ms(2024, 3, 2, 0, 30, utc_offset_h=8)
    evs = [(t, "a"), (t + 1, "b")]
    assert clickhouse_funnel_level(evs, ["a", "b"], 10, epoch_day(2024, 3, 2), "Asia/Shanghai") == 2
    assert clickhouse_funnel_level(evs, ["a", "b"], 10, epoch_day(2024, 3, 1), "Asia/Shanghai") == 0
    assert clickhouse_funnel_level(evs, ["a", "b"], 10, epoch_day(2024, 3, 1), "UTC") == 2


def test_funnel_strict_increase_tie_semantics_pinned():
    # ClickHouse windowFunnel semantics established by experiment (chdb 4.4 / CH 26.9):
    # matches are processed in (ts, step index) order; every step-1 match restarts the
    # chain from its own ts; step j extends step j-1 only if ts <= chain_start + W and
    # ts > ts of the step j-1 match.  Row order never matters.
    lvl = lambda evs, steps="AB", w=10: clickhouse_funnel_level(  # noqa: E731
        evs, list(steps), w, 0, "UTC"
    )
    # A@3 starts; A@5 restarts at 5; B@5 is not > 5 -> 1
    assert lvl([(3, "A"), (5, "A"), (5, "B")]) == 1
    # A@5, B@5 tie (no), B@6 > 5 -> 2
    assert lvl([(5, "A"), (5, "B"), (6, "B")]) == 2
    # A@0 B@5 reach 2; A@6 restarts step 1 only; C@8 extends the kept B@5 chain -> 3
    assert lvl([(0, "A"), (5, "B"), (6, "A"), (8, "C")], "ABC") == 3
    # input order irrelevant
    assert lvl([(0, "A"), (3, "B"), (2, "B")]) == 2
    assert lvl([(3, "B"), (0, "A")]) == 2
    # C@11 is 11 > 0 + 10 -> 2; with A@2 the restart doesn't help B -> still 2
    assert lvl([(0, "A"), (1, "B"), (11, "C")], "ABC") == 2
    assert lvl([(0, "A"), (1, "B"), (2, "A"), (11, "C")], "ABC") == 2
    # A@0, A@1, B@1, C@5: A@1 restarts, B@1 ties -> 1 (although A@0,B@1,C@5 would fit)
    assert lvl([(0, "A"), (1, "A"), (1, "B"), (5, "C")], "ABC") == 1
    # (all these ts are a few ms after the epoch, i.e. on epoch day 0 = 1970-01-01 UTC)


def test_retention_two_cohorts():
    # UTC, range 01-01 .. 01-04 (last day = 01-04).
    # cohort 01-01: a (01-01, 01-02, 01-04), b (01-01, 01-03; push_sent 01-02 is inactive)
    #   m = min(90, 3) = 3 -> [2, 1 (a), 1 (b), 1 (a)]
    # cohort 01-02: c (01-02, 01-03, 01-04)          m = 2 -> [1, 1, 1]
    # cohort 01-03: d (push_sent 01-01 doesn't count, first activity page_view 01-03)
    #   m = 1 -> [1, 0]
    events = [
        ev("a", ms(2024, 1, 1, 8), "page_view"),
        ev("a", ms(2024, 1, 2, 8), "page_view"),
        ev("a", ms(2024, 1, 4, 8), "page_view"),
        ev("b", ms(2024, 1, 1, 9), "page_view"),
        ev("b", ms(2024, 1, 2, 9), "push_sent"),
        ev("b", ms(2024, 1, 3, 9), "page_view"),
        ev("c", ms(2024, 1, 2, 10), "page_view"),
        ev("c", ms(2024, 1, 3, 10), "add_to_cart"),
        ev("c", ms(2024, 1, 4, 10), "checkout"),
        ev("d", ms(2024, 1, 1, 11), "push_sent"),
        ev("d", ms(2024, 1, 3, 11), "page_view"),
    ]
    r = clickhouse_report(events)
    assert r["retention"] == {
        "2024-01-01": [2, 1, 1, 1],
        "2024-01-02": [1, 1, 1],
        "2024-01-03": [1, 0],
    }
    # new_users per day: a,b on 01-01; c on 01-02; d on 01-03
    assert [r["days"][d]["new_users"] for d in dates("2024-01-01", 4)] == [2, 1, 1, 0]


def test_retention_capped_at_90_days():
    # e active on 2024-01-01 (day 0) and 2024-04-10 (day 100, 2024 is a leap year:
    # Jan 31 + Feb 29 + Mar 31 = 91 -> 04-01 is day 91, 04-10 is day 100).
    # f first active 2024-04-09 and again 04-10.
    events = [
        ev("e", ms(2024, 1, 1, 12), "page_view"),
        ev("e", ms(2024, 4, 10, 12), "page_view"),
        ev("f", ms(2024, 4, 9, 12), "page_view"),
        ev("f", ms(2024, 4, 10, 13), "page_view"),
    ]
    r = clickhouse_report(events)
    assert len(r["days"]) == 101
    ret = r["retention"]
    assert list(ret) == ["2024-01-01", "2024-04-09"]
    assert ret["2024-01-01"] == [1] + [0] * 90  # k = 0..90; day 100 is beyond the cap
    assert ret["2024-04-09"] == [1, 1]


def test_money_with_refunds():
    # One UTC day.  Activity excludes order_refunded (and push_sent).
    # p1: page_view, order_paid 10.00, order_paid 5.50
    # p2: order_paid 4.50               (order_paid is activity)
    # p3: page_view, order_created 7.00 (active, not paying)
    # p4: order_refunded 3.00 only      (not active)
    # dau = 3 (p1,p2,p3); paying = 2; orders = 3
    # gmv_cents = 1000 + 550 + 450 = 2000; refunds_cents = 300
    # arpu  = (2000-300)/(100*3) = 5.666.. -> 5.67
    # arppu = 1700/(100*2) = 8.5
    # aov   = 2000/(100*3) = 6.666.. -> 6.67
    # paid_conversion = 2/3
    events = [
        ev("p1", ms(2024, 1, 1, 9), "page_view"),
        ev("p1", ms(2024, 1, 1, 10), "order_paid", 10.00),
        ev("p1", ms(2024, 1, 1, 11), "order_paid", 5.50),
        ev("p2", ms(2024, 1, 1, 12), "order_paid", 4.50),
        ev("p3", ms(2024, 1, 1, 13), "page_view"),
        ev("p3", ms(2024, 1, 1, 14), "order_created", 7.00),
        ev("p4", ms(2024, 1, 1, 15), "order_refunded", 3.00),
    ]
    d = clickhouse_report(events)["days"]["2024-01-01"]
    assert d == {
        "dau": 3,
        "wau": 3,
        "mau": 3,
        "stickiness": 1.0,
        "new_users": 3,
        "paying_users": 2,
        "orders_paid": 3,
        "gmv": 20.0,
        "refunds": 3.0,
        "arpu": 5.67,
        "arppu": 8.5,
        "aov": 6.67,
        "paid_conversion": 2 / 3,
    }


def test_money_refund_only_day_and_half_cents():
    # Day 1: order_paid 0.125 and 0.375 -> x*100 = 12.5 and 37.5 exactly; banker's rounding
    #        gives 12 and 38 -> gmv_cents 50 -> gmv 0.5, aov = 50/200 = 0.25.
    #        order_paid 1.235: 1.235*100 == 123.50000000000001 in binary -> 124 cents
    #        (Python round(1.235*100) == 124); total 174 -> gmv 1.74, aov 174/300 = 0.58.
    # Day 2: only a refund of 2.00 by q (refunds are not activity): dau 0 ->
    #        arpu/arppu/aov/paid_conversion None, refunds 2.0
    events = [
        ev("q", ms(2024, 1, 1, 9), "order_paid", 0.125),
        ev("q", ms(2024, 1, 1, 10), "order_paid", 0.375),
        ev("q", ms(2024, 1, 1, 11), "order_paid", 1.235),
        ev("q", ms(2024, 1, 2, 9), "order_refunded", 2.0),
    ]
    days = clickhouse_report(events)["days"]
    d1, d2 = days["2024-01-01"], days["2024-01-02"]
    assert (d1["orders_paid"], d1["gmv"], d1["aov"]) == (3, 1.74, 0.58)
    assert (d1["arpu"], d1["arppu"], d1["paid_conversion"]) == (1.74, 1.74, 1.0)
    assert (d2["dau"], d2["wau"], d2["mau"], d2["refunds"], d2["gmv"]) == (0, 1, 1, 2.0, 0.0)
    assert d2["arpu"] is None and d2["arppu"] is None and d2["aov"] is None
    assert d2["paid_conversion"] is None and d2["stickiness"] == 0.0


def test_half_cent_rounding_is_half_even():
    # 0.125 alone: 12.5 -> 12 (even), so gmv 0.12; 0.375 alone: 37.5 -> 38, gmv 0.38
    for amount, cents in [(0.125, 12), (0.375, 38), (2.5, 250)]:
        d = clickhouse_report([ev("q", ms(2024, 1, 1), "order_paid", amount)])["days"]
        assert d["2024-01-01"]["gmv"] == cents / 100
