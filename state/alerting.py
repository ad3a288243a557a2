"""Alert statistics (METRICS.md, "Alert rates"): judge the recent window of a
bucketed rate against its baseline, say which breakdown value explains a change,
and turn verdicts into firing / resolved records.

What alerting tools get wrong and this module does not:
- Only complete buckets are judged: the caller passes the last complete bucket
  (the watermark has passed its end plus the outcome window); nothing after it
  is read.
- Direction: a rule watches a drop or a rise, never "any change".
- Breakdowns: when the total holds, each breakdown value with enough traffic is
  judged on its own (Bonferroni over the values judged), so a step broken for
  one device only is caught even where it is a small part of the total.
- Volume: under `min_attempts` in the recent window, or with fewer than
  `min_baseline_days` earlier days to compare with, nothing is judged (a
  handful of night-time events is not a crisis, a new product has no normal
  yet), and the change must be at least `min_effect` (absolute) besides being
  significant.
- Day-to-day variation: the baseline is the same time of day on earlier days;
  when those days' rates vary more than binomial noise allows, the test is
  beta-binomial with the fitted extra variance (else binomial), so a metric that
  is noisy by nature does not page.
- Flapping: a rule fires after `pending` consecutive failing evaluations and
  resolves after `keep_firing` consecutive passing ones; a firing alert does not
  resolve on windows too quiet to judge.
- No data: a volume rule (`judge_volume`) fires when a window that should hold
  attempts (negative binomial against the baseline days) holds far fewer, and
  names the breakdown value that lost them (an app release that stops sending
  events from android).

Pure: series in, verdicts and records out; the same code in replay and live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BUCKET_MS = 5 * 60_000
DAY_BUCKETS = 24 * 60 * 60_000 // BUCKET_MS
DOMINANT_SHARE = 0.6  # a breakdown value is named when it explains this much of the excess

Counts = tuple[int, int]  # (attempts, successes)


@dataclass(frozen=True)
class RateRule:
    """A rate watched for a drop (or a rise) against the same time on earlier days."""

    name: str
    metric: str  # what is watched, e.g. "step_conversion:purchase:checkout>order_paid"
    direction: str = "drop"  # "drop" or "rise"
    window_buckets: int = 3  # the recent window: 15 minutes of 5-minute buckets
    baseline_days: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)
    # Fewer baseline days with traffic and nothing is judged: the day-to-day variance
    # (the beta-binomial's) cannot be estimated from fewer than 3.
    min_baseline_days: int = 3
    min_attempts: int = 100  # in the recent window
    min_effect: float = 0.05  # absolute change of the rate
    alpha: float = 1e-4  # one-sided
    # failing evaluations in a row before firing: a drop must last 15 minutes (on 30 days
    # of generated traffic, 2 fired on short dips after push campaigns; 3 fired nothing)
    pending: int = 3
    keep_firing: int = 3  # passing evaluations in a row before resolving
    severity: str = "critical"
    # "rate": successes / attempts; "volume": the attempts themselves (no data, or much
    # less of it: min_effect is then the relative drop, min_attempts the usual count)
    statistic: str = "rate"
    # A volume rule whose second slot sums money in cents names it here ("GMV"): its
    # detail then gives the window's sum against the baseline days' mean.
    amount: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("drop", "rise"):
            raise ValueError(f"direction must be 'drop' or 'rise', got {self.direction!r}")
        if self.statistic not in ("rate", "volume"):
            raise ValueError(f"statistic must be 'rate' or 'volume', got {self.statistic!r}")


@dataclass(frozen=True)
class Verdict:
    """One evaluation of a rule at a complete bucket."""

    failing: bool
    value: float | None  # the recent window's rate
    baseline: float | None
    p_value: float | None
    attempts: int
    dims: dict[str, str] = field(default_factory=dict)  # the value that explains it, if one
    detail: str = ""


@dataclass
class Series:
    """A bucketed rate: (attempts, successes) per bucket index (epoch ms // BUCKET_MS),
    in total and per breakdown (dimension, value)."""

    total: dict[int, Counts] = field(default_factory=dict)
    by_value: dict[tuple[str, str], dict[int, Counts]] = field(default_factory=dict)

    def add(self, bucket: int, attempts: int, successes: int, values: Mapping[str, str]) -> None:
        _add(self.total, bucket, attempts, successes)
        for dim, value in values.items():
            _add(self.by_value.setdefault((dim, value), {}), bucket, attempts, successes)


def _add(rows: dict[int, Counts], bucket: int, attempts: int, successes: int) -> None:
    a, s = rows.get(bucket, (0, 0))
    rows[bucket] = (a + attempts, s + successes)


def window_sum(rows: Mapping[int, Counts], last: int, n: int) -> Counts:
    """Summed counts of buckets last-n+1..last."""
    a = s = 0
    for b in range(last - n + 1, last + 1):
        row = rows.get(b)
        if row is not None:
            a += row[0]
            s += row[1]
    return a, s


def baseline_days(rows: Mapping[int, Counts], rule: RateRule, last: int) -> list[Counts]:
    """The same window on each baseline day that has attempts."""
    out = []
    for days in rule.baseline_days:
        counts = window_sum(rows, last - days * DAY_BUCKETS, rule.window_buckets)
        if counts[0]:
            out.append(counts)
    return out


def tail_p_value(x: int, n: int, days: Sequence[Counts], direction: str) -> float | None:
    """P(a result as extreme as x successes of n | the baseline days), one-sided:
    beta-binomial when the days' rates vary beyond binomial noise, else binomial."""
    if not days or n == 0:
        return None
    from scipy import stats  # here: importing it costs a process 1.4 s and 110 MB

    a_sum = sum(a for a, _ in days)
    p0 = sum(s for _, s in days) / a_sum
    if p0 in (0.0, 1.0):
        dist: Any = stats.binom(n, p0)
    else:
        extra = _extra_variance(days, p0)
        if extra > 0:
            concentration = p0 * (1 - p0) / extra - 1  # alpha + beta of the fitted Beta
            dist = stats.betabinom(n, p0 * concentration, (1 - p0) * concentration)
        else:
            dist = stats.binom(n, p0)
    p = dist.cdf(x) if direction == "drop" else dist.sf(x - 1)
    return float(min(1.0, p))


def _extra_variance(days: Sequence[Counts], p0: float) -> float:
    """Day-to-day variance of the rate beyond binomial noise (method of moments)."""
    if len(days) < 3:
        return 0.0
    rates = [s / a for a, s in days]
    mean = sum(rates) / len(rates)
    observed = sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)
    noise = sum(p0 * (1 - p0) / a for a, _ in days) / len(days)
    return max(0.0, min(observed - noise, p0 * (1 - p0) * 0.99))


def judge(rule: RateRule, series: Series, last: int) -> Verdict:
    """Evaluate `rule` on the window ending with bucket `last` (complete)."""
    if rule.statistic == "volume":
        return judge_volume(rule, series, last)
    n, x = window_sum(series.total, last, rule.window_buckets)
    days = baseline_days(series.total, rule, last)
    value = x / n if n else None
    if len(days) < max(1, rule.min_baseline_days):
        return Verdict(False, value, None, None, n)
    p0 = sum(s for _, s in days) / sum(a for a, _ in days)
    if n < rule.min_attempts or value is None:
        return _judge_values(rule, series, last) or Verdict(False, value, p0, None, n)
    change = p0 - value if rule.direction == "drop" else value - p0
    p = tail_p_value(x, n, days, rule.direction)
    failing = change >= rule.min_effect and p is not None and p < rule.alpha
    if not failing:
        return _judge_values(rule, series, last) or Verdict(False, value, p0, p, n)
    dims, explained = diagnose(rule, series, last, p0)
    verb = "dropped" if rule.direction == "drop" else "rose"
    minutes = rule.window_buckets * BUCKET_MS // 60_000
    detail = (
        f"{rule.metric} {verb} to {value:.1%} (baseline {p0:.1%}) over {minutes} min, "
        f"{n} attempts; {explained}"
    )
    return Verdict(True, value, p0, p, n, dims, detail)


def _judge_values(rule: RateRule, series: Series, last: int) -> Verdict | None:
    """A breakdown value failing on its own, when the total does not (a step broken
    for android only can be too small a part of the total to show there): each value
    with `min_attempts` // 2 attempts is judged against its own baseline days, at
    `alpha` divided by the number of values judged (Bonferroni). The most
    significant failing value, or None."""
    judged = []
    for (dim, val), rows in sorted(series.by_value.items()):
        n, x = window_sum(rows, last, rule.window_buckets)
        days = baseline_days(rows, rule, last)
        if n >= max(1, rule.min_attempts // 2) and len(days) >= max(1, rule.min_baseline_days):
            judged.append((dim, val, n, x, days))
    worst: Verdict | None = None
    for dim, val, n, x, days in judged:
        p0 = sum(s for _, s in days) / sum(a for a, _ in days)
        value = x / n
        if (p0 - value if rule.direction == "drop" else value - p0) < rule.min_effect:
            continue
        p = tail_p_value(x, n, days, rule.direction)
        if p is None or p >= rule.alpha / len(judged) or (worst and p >= (worst.p_value or 1)):
            continue
        verb = "dropped" if rule.direction == "drop" else "rose"
        minutes = rule.window_buckets * BUCKET_MS // 60_000
        detail = (
            f"{rule.metric} for {dim}={val} {verb} to {value:.1%} (its baseline {p0:.1%}) "
            f"over {minutes} min, {n} attempts; the total is within its usual range"
        )
        worst = Verdict(True, value, p0, p, n, {dim: val}, detail)
    return worst


def diagnose(rule: RateRule, series: Series, last: int, p0: float) -> tuple[dict[str, str], str]:
    """Which breakdown value explains the change. First the mix: if, per some
    dimension, the values' baseline rates weighted by today's traffic shares
    already explain half the change, the traffic mix moved (named: the value whose
    share grew most). Else each value's excess failures (successes, for a rise)
    against its own baseline rate: a value holding `DOMINANT_SHARE` of its
    dimension's excess is named, else the change is "broad"."""
    sign = 1.0 if rule.direction == "drop" else -1.0
    n_total, x_total = window_sum(series.total, last, rule.window_buckets)
    change = sign * (p0 - x_total / n_total) if n_total else 0.0
    by_dim: dict[str, list[tuple[str, int, int, int, float]]] = {}
    for (dim, value), rows in series.by_value.items():
        n, x = window_sum(rows, last, rule.window_buckets)
        days = baseline_days(rows, rule, last)
        base_n = sum(a for a, _ in days)
        base_p = sum(s for _, s in days) / base_n if base_n else p0
        if n or base_n:
            by_dim.setdefault(dim, []).append((value, n, x, base_n, base_p))
    mix_best: tuple[float, str, str] | None = None
    excess: dict[str, dict[str, float]] = {}
    for dim, values in sorted(by_dim.items()):
        n_all = sum(v[1] for v in values)
        base_all = sum(v[3] for v in values)
        if not n_all or not base_all:
            continue
        mix_rate = sum(n / n_all * base_p for _, n, _, _, base_p in values)
        mix_part = sign * (p0 - mix_rate)
        grew = max(values, key=lambda v: (v[1] / n_all - v[3] / base_all, v[0]))
        if mix_best is None or mix_part > mix_best[0]:
            mix_best = (mix_part, dim, grew[0])
        excess[dim] = {value: sign * (n * base_p - x) for value, n, x, _, base_p in values}
    if mix_best is not None and change > 0 and mix_best[0] >= change / 2:
        _, dim, value = mix_best
        return {dim: value}, f"the traffic mix moved (more {dim}={value}), not the rates"
    excess_best = dominant(excess)
    if excess_best is None:
        return {}, BROAD
    share, dim, value = excess_best
    what = "failures" if rule.direction == "drop" else "successes"
    return {dim: value}, f"mostly {dim}={value} ({share:.0%} of the excess {what})"


@dataclass
class AlertState:
    """Where one rule stands: counts of consecutive failing / passing evaluations."""

    firing: bool = False
    failing_run: int = 0
    passing_run: int = 0
    dims: dict[str, str] = field(default_factory=dict)


def step(rule: RateRule, state: AlertState, verdict: Verdict, ts: int) -> dict[str, Any] | None:
    """Advance the rule's state with one verdict; the record to publish, if any
    (`{key, state, severity, metric, dims, value, baseline, detail, ts}`)."""
    if verdict.failing:
        state.failing_run += 1
        state.passing_run = 0
        if not state.firing and state.failing_run >= rule.pending:
            state.firing = True
            state.dims = verdict.dims
            return _record(rule, "firing", verdict, state.dims, verdict.detail, ts)
        return None
    if state.firing and verdict.p_value is None:
        return None  # not judged (too little traffic): neither failing nor back to normal
    state.passing_run += 1
    state.failing_run = 0
    if state.firing and state.passing_run >= rule.keep_firing:
        state.firing = False
        record = _record(rule, "resolved", verdict, state.dims, "back to normal", ts)
        state.dims = {}
        return record
    return None


def _record(
    rule: RateRule, state: str, verdict: Verdict, dims: dict[str, str], detail: str, ts: int
) -> dict[str, Any]:
    return {
        "key": rule.name, "state": state, "severity": rule.severity, "metric": rule.metric,
        "dims": dict(dims),
        "value": None if verdict.value is None else round(verdict.value, 4),
        "baseline": None if verdict.baseline is None else round(verdict.baseline, 4),
        "detail": detail, "ts": ts,
    }  # fmt: skip


def judge_volume(rule: RateRule, series: Series, last: int) -> Verdict:
    """No data, or much less of it: the window's attempts against the same window on
    the baseline days, one-sided low. Negative binomial (Poisson widened by the days'
    own variation, fitted like the rates' beta-binomial), else Poisson; judged once the
    baseline days' mean reaches `min_attempts`; the drop must be at least `min_effect`
    of that mean. Names the breakdown value that lost most of the missing attempts."""
    n, cents = window_sum(series.total, last, rule.window_buckets)
    pairs = baseline_days(series.total, rule, last)
    days = [a for a, _ in pairs]
    if len(days) < max(1, rule.min_baseline_days):
        return Verdict(False, float(n), None, None, n)
    expected = sum(days) / len(days)
    if expected < rule.min_attempts:
        return Verdict(False, float(n), expected, None, n)
    from scipy import stats

    variance = sum((d - expected) ** 2 for d in days) / (len(days) - 1) if len(days) > 1 else 0.0
    if variance > expected:
        r = expected**2 / (variance - expected)
        p = float(stats.nbinom.cdf(n, r, r / (r + expected)))
    else:
        p = float(stats.poisson.cdf(n, expected))
    failing = p < rule.alpha and n <= expected * (1 - rule.min_effect)
    if not failing:
        return Verdict(False, float(n), expected, p, n)
    dims, explained = _diagnose_volume(rule, series, last)
    minutes = rule.window_buckets * BUCKET_MS // 60_000
    detail = f"{rule.metric} fell to {n} in {minutes} min (usually {expected:.0f}); {explained}"
    if rule.amount:
        usual = sum(c for _, c in pairs) / len(pairs) / 100
        detail += f"; {rule.amount} {cents / 100:,.2f} (usually {usual:,.2f})"
    return Verdict(True, float(n), expected, p, n, dims, detail)


BROAD = "broad: no single breakdown value explains most of it"


def dominant(shares: Mapping[str, Mapping[str, float]]) -> tuple[float, str, str] | None:
    """(share, dimension, value) of the breakdown value holding the largest share of
    its dimension's positive amounts (excess failures, missing attempts), if that is
    at least `DOMINANT_SHARE`."""
    best: tuple[float, str, str] | None = None
    for dim, values in sorted(shares.items()):
        positive = sum(v for v in values.values() if v > 0)
        if positive > 0:
            value = max(values, key=lambda v: (values[v], v))
            share = values[value] / positive
            if best is None or share > best[0]:
                best = (share, dim, value)
    return best if best is not None and best[0] >= DOMINANT_SHARE else None


def _diagnose_volume(rule: RateRule, series: Series, last: int) -> tuple[dict[str, str], str]:
    """The breakdown value holding `DOMINANT_SHARE` of its dimension's missing attempts
    (usual minus now, over the values that lost some), else "broad". A dimension where
    one value carries `DEGENERATE_SHARE` of the usual traffic (e.g. every order with
    channel "unknown") names nothing: that value would explain any drop."""
    missing: dict[str, dict[str, float]] = {}
    usual: dict[str, dict[str, float]] = {}
    for (dim, value), rows in series.by_value.items():
        n = window_sum(rows, last, rule.window_buckets)[0]
        counts = [
            window_sum(rows, last - days * DAY_BUCKETS, rule.window_buckets)[0]
            for days in rule.baseline_days
        ]
        mean = sum(counts) / len(counts)
        usual.setdefault(dim, {})[value] = mean
        missing.setdefault(dim, {})[value] = mean - n
    for dim, values in usual.items():
        total = sum(values.values())
        if total and max(values.values()) >= DEGENERATE_SHARE * total:
            del missing[dim]
    best = dominant(missing)
    if best is None:
        return {}, BROAD
    share, dim, value = best
    return {dim: value}, f"mostly {dim}={value} ({share:.0%} of the missing attempts)"


DEGENERATE_SHARE = 0.95


def bucket_end_ms(bucket: int) -> int:
    return (bucket + 1) * BUCKET_MS
