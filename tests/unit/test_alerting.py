"""Alert statistics on simulated bucketed rates: an incident on one device fires once,
names the device and resolves; clean weeks with day-to-day variation fire nothing;
a rise never fires a drop rule; quiet nights are not judged; a change in the traffic
mix is told apart from a change in the rates. The p-values are checked against
scipy's distributions fitted by hand."""

import numpy as np
import pytest
from scipy import stats

from state.alerting import (
    DAY_BUCKETS,
    AlertState,
    RateRule,
    Series,
    bucket_end_ms,
    judge,
    step,
    tail_p_value,
)

RULE = RateRule(name="purchase:checkout>order_paid", metric="step_conversion")
DEVICES = {"ios": 0.4, "android": 0.35, "web": 0.25}
START = 20_000 * DAY_BUCKETS  # bucket index of a day start


def volume(bucket):
    """Attempts per bucket over the day: ~20 in the small hours, ~200 at 20:00."""
    hour = (bucket % DAY_BUCKETS) / 12
    return 20 + 180 * (0.5 - 0.5 * np.cos((hour - 8) / 24 * 2 * np.pi)) ** 3


def simulate(days, seed=1, incident=None, rate=None, shares=DEVICES, base=0.82, scale=1.0):
    """A Series over `days` days. `incident`: (first bucket, buckets, device, rate);
    `scale`: traffic relative to `volume`."""
    rng = np.random.default_rng(seed)
    series = Series()
    for d in range(days):
        day_rate = base + rng.normal(0, 0.01)
        for i in range(DAY_BUCKETS):
            b = START + d * DAY_BUCKETS + i
            for device, share in shares(b) if callable(shares) else shares.items():
                n = rng.poisson(volume(b) * share * scale)
                p = rate(device, b, day_rate) if rate else day_rate
                if incident and incident[0] <= b < incident[0] + incident[1]:
                    if incident[2] in (device, "*"):
                        p = incident[3]
                x = rng.binomial(n, min(max(p, 0), 1))
                series.add(b, n, int(x), {"device": device})
    return series


def run(series, first, last, rule=RULE):
    state, records = AlertState(), []
    for b in range(first, last + 1):
        record = step(rule, state, judge(rule, series, b), bucket_end_ms(b))
        if record:
            records.append((b, record))
    return records


def test_an_incident_on_one_device_fires_once_names_it_and_resolves():
    incident_start = START + 14 * DAY_BUCKETS + 19 * 12  # day 14, 19:00
    series = simulate(15, incident=(incident_start, 6, "android", 0.35))
    records = run(series, START + 14 * DAY_BUCKETS, START + 15 * DAY_BUCKETS - 1)
    assert [r["state"] for _, r in records] == ["firing", "resolved"]
    (fired_at, firing), (resolved_at, resolved) = records
    # Fired at the end of the incident's 5th bucket: 25 minutes after it began (the
    # first window to hold it has 1/3 of its drop; the second is significant but
    # the baseline's day-to-day variation widens it; then 3 failing in a row).
    assert incident_start <= fired_at <= incident_start + 4
    assert firing["dims"] == {"device": "android"} and "mostly device=android" in firing["detail"]
    assert firing["value"] < firing["baseline"] - 0.05
    assert firing["key"] == RULE.name and firing["ts"] == bucket_end_ms(fired_at)
    assert resolved_at >= incident_start + 6 and resolved["dims"] == {"device": "android"}


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_thirty_clean_days_fire_nothing(seed):
    series = simulate(30, seed=seed)
    assert run(series, START + 7 * DAY_BUCKETS, START + 30 * DAY_BUCKETS - 1) == []


def test_a_noisy_metric_does_not_page_a_steady_one_does():
    """Day-to-day swings of ±6 points: beta-binomial absorbs them; the same window
    judged as binomial would fire (why the extra variance is fitted)."""
    rng = np.random.default_rng(3)
    swings = {d: rng.normal(0, 0.06) for d in range(40)}

    def rate(device, b, _):
        return 0.7 + swings[(b - START) // DAY_BUCKETS]

    series = simulate(30, seed=4, rate=rate)
    fired = run(series, START + 7 * DAY_BUCKETS, START + 30 * DAY_BUCKETS - 1)
    assert fired == [] or all(r["value"] < r["baseline"] - 0.1 for _, r in fired)


def test_a_rise_never_fires_a_drop_rule_and_does_fire_a_rise_rule():
    incident_start = START + 8 * DAY_BUCKETS + 19 * 12
    series = simulate(9, incident=(incident_start, 6, "*", 0.97))
    window = (START + 8 * DAY_BUCKETS, START + 9 * DAY_BUCKETS - 1)
    assert run(series, *window) == []
    rise = RateRule(name="rise", metric="step_conversion", direction="rise")
    assert [r["state"] for _, r in run(series, *window, rule=rise)] == ["firing", "resolved"]


def test_quiet_hours_are_not_judged():
    incident_start = START + 8 * DAY_BUCKETS + 3 * 12  # 03:00: ~20 attempts per bucket
    series = simulate(9, incident=(incident_start, 6, "*", 0.3))
    verdict = judge(RULE, series, incident_start + 2)
    assert verdict.attempts < RULE.min_attempts and not verdict.failing
    evening = START + 8 * DAY_BUCKETS + 20 * 12
    series = simulate(9, incident=(evening, 6, "*", 0.3))
    assert judge(RULE, series, evening + 2).failing


def test_a_drop_on_every_device_is_broad():
    incident_start = START + 8 * DAY_BUCKETS + 19 * 12
    series = simulate(9, incident=(incident_start, 6, "*", 0.4))
    verdict = judge(RULE, series, incident_start + 2)
    assert verdict.failing and verdict.dims == {} and "broad" in verdict.detail


def test_a_change_in_the_traffic_mix_is_told_apart():
    """Android converts at 50%, the rest at 90%; tonight android's share goes from 20%
    to 80%: the total rate drops, no device's rate moved."""
    flood = START + 8 * DAY_BUCKETS + 19 * 12

    def shares(b):
        android = 0.8 if flood <= b < flood + 6 else 0.2
        return {"android": android, "ios": 1 - android}.items()

    def rate(device, b, _):
        return 0.5 if device == "android" else 0.9

    series = simulate(9, shares=shares, rate=rate)
    verdict = judge(RULE, series, flood + 2)
    assert verdict.failing and verdict.dims == {"device": "android"}
    assert "traffic mix moved" in verdict.detail


def test_incomplete_buckets_are_never_read():
    """The verdict at bucket b depends on buckets up to b only."""
    incident_start = START + 8 * DAY_BUCKETS + 19 * 12
    clean = simulate(9, seed=5)
    broken = simulate(9, seed=5, incident=(incident_start, 6, "android", 0.1))
    before = incident_start - 1
    assert judge(RULE, clean, before) == judge(RULE, broken, before)


@pytest.mark.parametrize("direction", ["drop", "rise"])
def test_p_values_equal_scipys_binomial_and_fitted_beta_binomial(direction):
    steady = [(1000, 820), (1000, 820), (1000, 820)]  # no extra variance: binomial
    p = tail_p_value(780, 1000, steady, direction)
    expected = (
        stats.binom.cdf(780, 1000, 0.82) if direction == "drop" else stats.binom.sf(779, 1000, 0.82)
    )
    assert abs(p - expected) < 1e-12
    noisy = [(1000, 700), (1000, 820), (1000, 940)]
    rates = [0.7, 0.82, 0.94]
    var = np.var(rates, ddof=1) - 0.82 * 0.18 / 1000
    conc = 0.82 * 0.18 / var - 1
    dist = stats.betabinom(1000, 0.82 * conc, 0.18 * conc)
    expected = dist.cdf(780) if direction == "drop" else dist.sf(779)
    assert abs(tail_p_value(780, 1000, noisy, direction) - expected) < 1e-12


VOLUME = RateRule(
    name="purchase:checkout:volume", metric="attempts:purchase:checkout", statistic="volume",
    min_effect=0.3,
)  # fmt: skip


def test_no_data_fires_when_a_busy_window_is_empty_and_names_the_silent_device():
    series = simulate(8)
    last = START + 7 * DAY_BUCKETS + 20 * 12  # day 7, 20:00
    assert not judge(VOLUME, series, last).failing
    for b in range(last - 2, last + 1):  # android sends nothing for 15 minutes
        n, x = series.by_value[("device", "android")].pop(b)
        a, s = series.total[b]
        series.total[b] = (a - n, s - x)
    verdict = judge(VOLUME, series, last)
    assert verdict.failing and "usually" in verdict.detail
    assert verdict.dims == {"device": "android"}
    assert verdict.value < verdict.baseline * 0.7


def test_no_data_is_not_judged_at_night_nor_on_ordinary_days():
    series = simulate(8)
    night = START + 7 * DAY_BUCKETS + 3 * 12
    for b in range(night - 2, night + 1):
        series.total[b] = (0, 0)
    # ~20 attempts per bucket at night: the usual count is under min_attempts
    assert judge(VOLUME, series, night).p_value is None
    for last in range(START + 7 * DAY_BUCKETS, START + 7 * DAY_BUCKETS + 12 * 12):
        assert not judge(VOLUME, series, last).failing


def test_no_data_p_value_is_the_fitted_negative_binomial():
    series = Series()
    last = START + 7 * DAY_BUCKETS
    for d, n in zip(range(1, 8), (900, 1000, 1100, 950, 1050, 1000, 1000), strict=True):
        series.add(last - d * DAY_BUCKETS, n, 0, {})
    series.add(last, 500, 0, {})
    rule = RateRule(name="v", metric="v", statistic="volume", window_buckets=1, min_effect=0.3)
    days = np.array([900, 1000, 1100, 950, 1050, 1000, 1000])
    mean, var = days.mean(), days.var(ddof=1)
    r = mean**2 / (var - mean)
    verdict = judge(rule, series, last)
    assert abs(verdict.p_value - stats.nbinom.cdf(500, r, r / (r + mean))) < 1e-12
    assert verdict.failing


def test_a_step_broken_on_a_small_device_is_caught_on_its_own():
    """Android is 10% of the traffic: its drop (0.82 -> 0.6) moves the total by ~0.02,
    under min_effect, but judged on its own (Bonferroni over the values) it fires and is
    named; clean days with the same mix fire nothing."""
    shares = {"ios": 0.5, "android": 0.1, "web": 0.4}
    incident_start = START + 14 * DAY_BUCKETS + 19 * 12
    series = simulate(
        15, incident=(incident_start, 6, "android", 0.6), shares=shares, scale=3
    )  # fmt: skip
    records = run(series, START + 14 * DAY_BUCKETS, START + 15 * DAY_BUCKETS - 1)
    assert [r["state"] for _, r in records] == ["firing", "resolved"]
    (fired_at, firing), _ = records
    assert incident_start <= fired_at <= incident_start + 5
    assert firing["dims"] == {"device": "android"} and "for device=android" in firing["detail"]
    assert firing["baseline"] - firing["value"] > 0.15  # android's own rate and baseline
    clean = simulate(15, shares=shares, scale=3)
    assert run(clean, START + 7 * DAY_BUCKETS, START + 15 * DAY_BUCKETS - 1) == []
