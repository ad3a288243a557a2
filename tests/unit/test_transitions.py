"""Hand-computed transitions of the per-user record; expected values are worked out
from METRICS.md in the comments, not taken from the code's output."""

from state.config import DAY_MS, Config
from state.fold import Fold
from state.report import build_report
from streams.events import Event

T0 = 20758 * DAY_MS  # 2026-11-01T00:00Z
H = 3_600_000
L = 2 * DAY_MS  # default allowed lateness


def ev(eid, user, ts, kind="page_view", **kw):
    return Event(eid, user, ts, kind, **kw)


def run(*events, config=None, source="p"):
    config = config or Config()
    fold = Fold(config)
    late = fold.apply_batch([(e.user_id, e) for e in events], source)
    return fold, build_report(fold.partials, config), late


def test_late_first_event_moves_user_to_earlier_cohort():
    # u is first seen on day 2, then an (in-bound) event of day 1 arrives.
    fold, report, _ = run(ev("a", "u", T0 + DAY_MS + H), ev("b", "u", T0 + H))
    # Cohort 2026-11-01 holds u, active on day 0 and day 1; 2026-11-02 has no new user.
    assert report["days"]["2026-11-01"]["new_users"] == 1
    assert report["days"]["2026-11-02"]["new_users"] == 0
    assert report["retention"] == {"2026-11-01": [1, 1]}
    assert fold.users["u"].first_ts == T0 + H


def test_acquisition_attributes_come_from_the_first_activity():
    fold, _, _ = run(
        ev("a", "u", T0 + 5 * H, channel="ads", device="ios"),
        ev("b", "u", T0 + 1 * H, channel="organic", device="web"),
        ev("c", "u", T0, "push_sent", channel="push"),  # inactive: not the first activity
    )
    assert (fold.users["u"].channel, fold.users["u"].device) == ("organic", "web")


def test_event_older_than_the_bound_is_late_and_not_applied():
    fold, report, late = run(ev("a", "u", T0 + 10 * DAY_MS), ev("b", "v", T0 + 10 * DAY_MS - L - 1))
    assert [e.event_id for e in late] == ["b"]
    assert report["events"] == {"consumed": 2, "valid": 1, "duplicates": 0, "invalid": 0, "late": 1}
    assert "v" not in fold.users


def test_event_exactly_at_the_bound_is_applied():
    _, report, late = run(ev("a", "u", T0 + 10 * DAY_MS), ev("b", "v", T0 + 10 * DAY_MS - L))
    assert late == [] and report["events"]["valid"] == 2


def test_redelivery_within_the_lateness_bound_is_a_duplicate():
    # The watermark moves exactly L past the original: the redelivery is still in bound,
    # so it must be recognised as a duplicate, not counted again.
    fold, report, _ = run(
        ev("a", "u", T0 + H),
        ev("b", "u", T0 + H + L),  # the same user: its record is compacted here
        ev("a", "u", T0 + H),
    )
    assert report["events"]["duplicates"] == 1 and report["events"]["valid"] == 2
    assert report["days"]["2026-11-01"]["dau"] == 1


def test_compaction_keeps_funnel_chains_of_days_still_open():
    # Day 1: page_view, add_to_cart (level 2), then a later page_view restarts level 1.
    # The horizon then reaches T0 + W + 10h; a checkout just past it arrives.
    # ClickHouse's greedy walk: the (T0+1, T0+2) chain stays at level 2 but cannot
    # take the checkout (beyond its window), the 10h page_view chain has no level 2.
    # So the day's level stays 2: counts [1, 1, 0, 0].
    horizon = T0 + DAY_MS + 10 * H
    _, report, late = run(
        ev("a", "u", T0 + 1),
        ev("b", "u", T0 + 2, "add_to_cart"),
        ev("c", "u", T0 + 10 * H + 100_000),
        ev("d", "w", horizon + L),  # another user moves the watermark
        ev("e", "u", horizon + 50, "checkout"),
    )
    assert late == []
    assert report["funnels"]["purchase"]["days"]["2026-11-01"] == [1, 1, 0, 0]


def test_wau_and_mau_count_a_user_once_over_their_windows():
    # Active on day 0, day 3 and day 40.
    _, report, _ = run(
        ev("a", "u", T0), ev("b", "u", T0 + 3 * DAY_MS), ev("c", "u", T0 + 40 * DAY_MS)
    )
    days = report["days"]
    assert [days[d]["wau"] for d in ("2026-11-01", "2026-11-04", "2026-11-10", "2026-11-11")] == [
        1,
        1,
        1,
        0,
    ]
    # MAU: day 3 + 29 = 2026-12-03 still 1, 2026-12-04 is 0, day 40 = 2026-12-11 back to 1.
    assert (days["2026-12-03"]["mau"], days["2026-12-04"]["mau"], days["2026-12-11"]["mau"]) == (
        1,
        0,
        1,
    )
    assert days["2026-11-04"]["stickiness"] == 1.0 and days["2026-12-04"]["stickiness"] is None


def test_refund_reduces_revenue_not_gmv():
    paid = ev("p", "u", T0 + H, "order_paid", order_id="o1", amount_cents=10_000)
    refund = ev("r", "u", T0 + 2 * H, "order_refunded", order_id="o1", amount_cents=2_550)
    fold, report, _ = run(paid, refund)
    day = report["days"]["2026-11-01"]
    # gmv 100.00, refunds 25.50; arpu = (100 - 25.5) / 1 user = 74.5; aov = 100 / 1 order.
    assert (day["gmv"], day["refunds"], day["arpu"], day["arppu"], day["aov"]) == (
        100.0,
        25.5,
        74.5,
        74.5,
        100.0,
    )
    assert fold.users["u"].revenue_cents == 7_450 and fold.users["u"].orders_paid == 1


def test_funnel_chain_crossing_midnight_counts_on_its_start_day():
    # page_view 23:00 day 0, add_to_cart 00:30 day 1, checkout 22:59:59.999 day 1 (inside 24h),
    # order_paid 23:00:00.001 day 1 (1 ms past the window).
    start = T0 + 23 * H
    _, report, _ = run(
        ev("a", "u", start),
        ev("b", "u", start + 90 * 60_000, "add_to_cart"),
        ev("c", "u", start + DAY_MS - 1, "checkout"),
        ev("d", "u", start + DAY_MS + 1, "order_paid", order_id="o", amount_cents=1),
    )
    days = report["funnels"]["purchase"]["days"]
    assert days == {"2026-11-01": [1, 1, 1, 0], "2026-11-02": [0, 0, 0, 0]}


def test_days_follow_the_configured_timezone():
    # 2026-11-01T17:00Z is 2026-11-02 01:00 in Shanghai (UTC+8).
    _, report, _ = run(ev("a", "u", T0 + 17 * H), config=Config(timezone="Asia/Shanghai"))
    assert list(report["days"]) == ["2026-11-02"]
