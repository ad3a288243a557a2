"""`opspulse bench --soak`: the fits, the lag in seconds, the summary and the verdict,
checked against numpy and figures worked out by hand."""

import math

import numpy as np
import pytest

from bench import soak
from bench.soak import SentHistory, fit_two, percentile, slope, summarize, verdict


def test_slope_matches_polyfit():
    rng = np.random.default_rng(1)
    xs = np.sort(rng.uniform(0, 5, 200))
    ys = 3.5 * xs + 12 + rng.normal(0, 2, 200)
    assert slope(list(xs), list(ys)) == pytest.approx(np.polyfit(xs, ys, 1)[0], rel=1e-9)


def test_slope_of_a_constant_x_or_a_single_point_is_zero():
    assert slope([2.0, 2.0, 2.0], [1.0, 5.0, 9.0]) == 0.0
    assert slope([1.0], [4.0]) == 0.0


def test_fit_two_matches_lstsq():
    rng = np.random.default_rng(2)
    hours = np.linspace(0.1, 1.0, 60)
    users = 200_000 * np.sqrt(hours) + rng.normal(0, 500, 60)
    rss = 300 + 0.009 * users + 40 * hours + rng.normal(0, 5, 60)
    design = np.column_stack([np.ones_like(hours), users, hours])
    (_, b_users, b_hours), *_ = np.linalg.lstsq(design, rss, rcond=None)
    got = fit_two(list(rss), list(users), list(hours))
    assert got == pytest.approx((b_users, b_hours), rel=1e-6)


def test_fit_two_puts_everything_on_time_when_users_do_not_tell():
    hours = [0.1 * i for i in range(1, 11)]
    rss = [500 + 80 * h + (3 if i % 2 else -3) for i, h in enumerate(hours)]
    expected = np.polyfit(hours, rss, 1)[0]
    assert fit_two(rss, [1000.0] * 10, hours) == pytest.approx((0.0, expected))  # no new users
    collinear = [5000 * h for h in hours]  # users exactly proportional to time
    assert fit_two(rss, collinear, hours) == pytest.approx((0.0, expected))


@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 100])
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_percentile_matches_numpy(q, n):
    values = list(np.random.default_rng(n).exponential(3.0, n))
    assert percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-12)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 99)


def test_lag_seconds_interpolates_the_send_history():
    history = SentHistory()
    for t in range(11):  # 100 events/s from t = 0 to t = 10
        history.add(float(t), 100 * t)
    history.add(10.5, 1000)  # nothing new: not recorded
    # 250 events done: the producer had sent them at t = 2.5 s
    assert history.lag_s(250, now=10.0) == pytest.approx(7.5)
    assert history.lag_s(900, now=10.2) == pytest.approx(1.2)
    assert history.lag_s(1000, now=12.0) == 0.0  # everything sent is done
    assert history.lag_s(0, now=3.0) == pytest.approx(3.0)
    assert SentHistory().lag_s(0, now=5.0) == 0.0


def test_users_reached_are_those_of_the_last_point_at_or_before():
    history = SentHistory()
    for count, users in ((2000, 150), (4000, 260), (6000, 300)):
        history.add(float(count), count, users)
    assert [history.users_at(n) for n in (0, 1999, 2000, 3999, 4000, 10**6)] == [
        0, 0, 150, 150, 260, 300,
    ]  # fmt: skip


def _samples(minutes=60, leak_mb_per_h=0.0, lag_s=lambda t: 1.5, users_at=None):
    """A synthetic soak: users arrive ever more slowly (the base grows, so a simulated
    day takes longer), RSS = 250 MB + 9 MB per 1,000 users + a leak."""
    out = []
    for i in range(1, int(minutes * 6) + 1):
        t = 10.0 * i
        users = round(users_at(t) if users_at else 4000 * math.sqrt(t))
        lag = lag_s(t)
        out.append({
            "t_s": t, "users": users, "produced": 5000 * i * 10, "lag_s": lag,
            "lag_events": round(lag * 5000),
            "rss_mb": 250 + 0.009 * users + leak_mb_per_h * t / 3600 + (1.0 if i % 3 else -2.0),
        })  # fmt: skip
    return out


def _post(samples):
    end = samples[-1]["t_s"]
    return [s for s in samples if s["t_s"] >= soak.WARMUP_SHARE * end]


def test_summary_of_a_steady_soak():
    samples = _samples()
    result = summarize(samples, rate=5000, idle_rss_mb=70.0)
    post = _post(samples)
    hours = np.array([s["t_s"] / 3600 for s in post])
    rss = np.array([s["rss_mb"] for s in post])
    users = np.array([s["users"] for s in post])
    design = np.column_stack([np.ones_like(hours), users, hours])
    (_, b_users, b_hours), *_ = np.linalg.lstsq(design, rss, rcond=None)
    assert result["soak_minutes"] == 60
    assert result["soak_rate_achieved_eps"] == 5000
    assert result["soak_rss_mb_idle"] == 70.0
    assert result["soak_rss_mb_start"] == pytest.approx(post[0]["rss_mb"], abs=0.05)
    assert result["soak_rss_mb_end"] == pytest.approx(samples[-1]["rss_mb"], abs=0.05)
    assert result["soak_rss_slope_mb_per_h"] == pytest.approx(
        np.polyfit(hours, rss, 1)[0], abs=0.05
    )
    assert result["soak_rss_mb_per_1k_users"] == pytest.approx(b_users * 1000, abs=0.005)
    assert result["soak_rss_unexplained_mb_per_h"] == pytest.approx(b_hours, abs=0.05)
    assert abs(result["soak_rss_unexplained_mb_per_h"]) < 5  # no leak in this data
    assert result["soak_rss_mb_per_1k_users"] == pytest.approx(9, abs=0.2)
    assert result["soak_users_start"] == post[0]["users"]
    assert result["soak_users_end"] == samples[-1]["users"]
    assert result["soak_users_per_h"] == pytest.approx(np.polyfit(hours, users, 1)[0], abs=1)
    assert result["soak_lag_max_s"] == 1.5
    assert result["soak_lag_end_events"] == 7500
    assert result["soak_lag_slope_s_per_h"] == 0
    assert result["soak_memory_flat"] and result["soak_lag_bounded"]
    assert result["soak_verdict"] == "pass"
    # four equal spans of the samples after the warm-up, each with its own slopes
    t0, t1 = post[0]["t_s"], post[-1]["t_s"]
    quarters = result["soak_rss_quarters"]
    assert len(quarters) == 4
    for q, got in enumerate(quarters):
        lo, hi = t0 + q * (t1 - t0) / 4, t0 + (q + 1) * (t1 - t0) / 4
        part = [s for s in post if lo <= s["t_s"] <= hi]
        h = [s["t_s"] / 3600 for s in part]
        rss_h = np.polyfit(h, [s["rss_mb"] for s in part], 1)[0]
        users_h = np.polyfit(h, [s["users"] for s in part], 1)[0]
        assert got["rss_mb_per_h"] == pytest.approx(rss_h, abs=0.05)
        assert got["users_per_h"] == pytest.approx(users_h, abs=0.5)
        assert got["mb_per_1k_users"] == pytest.approx(9, abs=0.3)
        assert got["allowed_mb_per_h"] == pytest.approx(
            soak.MAX_MB_PER_1K_USERS * users_h / 1000 + soak.UNEXPLAINED_MB_PER_H, abs=0.05
        )


def _plateau(t):
    return 4000 * math.sqrt(min(t, 1800))  # no new users after minute 30


def test_a_leak_shows_once_users_stop_arriving():
    flat = summarize(_samples(users_at=_plateau), rate=5000)
    assert flat["soak_memory_flat"], flat["soak_rss_quarters"]
    leaking = summarize(_samples(users_at=_plateau, leak_mb_per_h=200), rate=5000)
    assert not leaking["soak_memory_flat"] and leaking["soak_lag_bounded"]
    late = [q for q in leaking["soak_rss_quarters"] if q["from_min"] >= 30]
    assert late and all(q["rss_mb_per_h"] == pytest.approx(200, abs=5) for q in late)
    assert leaking["soak_verdict"].startswith("fail: RSS grew 2")
    assert leaking["soak_rss_unexplained_mb_per_h"] == pytest.approx(200, abs=5)


def test_a_leak_under_the_per_user_allowance_shows_only_in_the_fit():
    """While users arrive fast, the verdict allows 20 MB per 1,000 of them: a 200 MB/h
    leak on top of 9 MB per 1,000 users passes; the reported fit still shows it."""
    result = summarize(_samples(leak_mb_per_h=200), rate=5000)
    assert result["soak_memory_flat"]
    assert result["soak_rss_unexplained_mb_per_h"] == pytest.approx(200, abs=5)
    assert result["soak_rss_mb_per_1k_users"] == pytest.approx(9, abs=0.2)
    big = summarize(_samples(leak_mb_per_h=3000), rate=5000)  # more than the allowance
    assert not big["soak_memory_flat"]


def test_growing_lag_fails_and_p99_is_over_all_samples():
    samples = _samples(lag_s=lambda t: 1 + t / 200)  # 18 s more per hour... and 19 s at the end
    result = summarize(samples, rate=5000)
    post = _post(samples)
    lags = [s["lag_s"] for s in samples]
    assert result["soak_lag_slope_s_per_h"] == pytest.approx(
        np.polyfit([s["t_s"] / 3600 for s in post], [s["lag_s"] for s in post], 1)[0], abs=0.01
    )
    assert result["soak_lag_slope_s_per_h"] == pytest.approx(18, abs=0.01)
    assert result["soak_lag_p99_s"] == pytest.approx(np.percentile(lags, 99), abs=0.01)
    assert result["soak_lag_p99_events"] == pytest.approx(
        np.percentile([s["lag_events"] for s in samples], 99), abs=1
    )
    assert result["soak_lag_bounded"]  # 18 s/h and 19 s at most: within both bounds
    faster = summarize(_samples(lag_s=lambda t: 1 + t / 100), rate=5000)  # 36 s/h, 37 s
    assert not faster["soak_lag_bounded"]
    assert "lag reached" in faster["soak_verdict"] and "lag grows" in faster["soak_verdict"]


def _quarter(rss_mb_per_h, allowed_mb_per_h):
    return {
        "from_min": 6, "to_min": 19.5, "rss_mb_per_h": rss_mb_per_h, "users_per_h": 1000,
        "mb_per_1k_users": None, "allowed_mb_per_h": allowed_mb_per_h,
    }  # fmt: skip


def _figures(**overrides):
    figures = {
        "soak_rss_quarters": [_quarter(100.0, 250.0)],
        "soak_lag_max_s": 2.0, "soak_lag_slope_s_per_h": 0.0,
    }  # fmt: skip
    return figures | overrides


def test_verdict_bounds_are_inclusive():
    at_bounds = _figures(
        soak_rss_quarters=[_quarter(70.0, 70.0), _quarter(250.0, 250.0)],
        soak_lag_max_s=soak.LAG_MAX_S,
        soak_lag_slope_s_per_h=soak.LAG_SLOPE_S_PER_H,
    )
    assert verdict(at_bounds) == {
        "soak_memory_flat": True, "soak_lag_bounded": True, "soak_verdict": "pass"
    }  # fmt: skip
    over = verdict(_figures(soak_rss_quarters=[_quarter(70.0, 70.0), _quarter(250.1, 250.0)]))
    assert not over["soak_memory_flat"] and over["soak_lag_bounded"]
    assert over["soak_verdict"] == (
        "fail: RSS grew 250.1 MB/h in minutes 6-19.5, more than its 1,000 new users/h allow (250)"
    )
    over = verdict(_figures(soak_lag_max_s=soak.LAG_MAX_S + 0.01))
    assert over["soak_memory_flat"] and not over["soak_lag_bounded"]


def test_a_soak_cut_short_still_summarises():
    two = _samples(minutes=0.34)[:2]  # Ctrl-C after 20 s: too few samples after the warm-up
    result = summarize(two, rate=5000)
    assert result["soak_minutes"] == pytest.approx(20 / 60, abs=0.01)
    assert result["soak_rss_mb_start"] == pytest.approx(two[0]["rss_mb"], abs=0.05)
    with pytest.raises(ValueError):
        summarize([], rate=5000)


def test_the_bench_command_takes_the_soak_arguments():
    from agents.cli import build_parser

    args = build_parser().parse_args(["bench", "--soak", "3", "--soak-rate", "2000", "--json"])
    assert (args.soak, args.soak_rate, args.json, args.soak_web_port) == (3.0, 2000.0, True, None)
    args = build_parser().parse_args(["bench", "--quick"])
    assert args.soak is None and args.soak_rate == soak.DEFAULT_RATE
