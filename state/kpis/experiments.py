"""A/B experiments (METRICS.md, Experiments): per variant users exposed and converted,
the rate, and for each variant against the control the lift, relative lift, the
pooled two-proportion z-test p-value and an always-valid 95% confidence sequence
for the lift; per experiment the sample-ratio-mismatch p-value.

A user's first exposure per experiment (smallest ts, then event id) decides the
variant; the user converted when a goal event (`experiments.goal`) falls in
[first exposure, first exposure + `experiments.window`]. The record keeps per
experiment the first exposure and the earliest goal at or after it, plus the
goal instants inside the lateness bound (a late, earlier exposure can reach
them). Counts are keyed by the day of the first exposure (a table per
experiment and variant: exposed, converted).

The confidence sequence is the asymptotic one of Waudby-Smith, Arbour, Sinha,
Kennedy and Ramdas ("Time-uniform central limit theory and asymptotic confidence
sequences", 2024): Robbins' normal-mixture boundary (as in Howard et al. 2021)
applied to the estimated variance of the lift. Unlike the fixed-n interval, its
coverage holds at every moment simultaneously, so a dashboard may watch it
continuously and stop whenever it excludes 0; the price is a wider interval.
It is tuned to be tightest around `CS_TUNED_N` exposures.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING, Any

from state.partials import TABLE_EFFECT, Effect, Partials, ratio

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

PREFIX, SEPARATOR = "exp/", "\x1f"  # table exp/<experiment>\x1f<variant>
EXPOSED, CONVERTED = 0, 1
ALPHA = 0.05
CS_TUNED_N = 1000
MIN_EXPOSED = 30  # per variant, for a p-value or a confidence sequence (else null)


class Experiments:
    name = "experiments"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type == "exposure" or event_type == ctx.config.experiments.goal

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        window = ctx.config.experiments.window_ms
        ts = event.ts
        exposures = user.experiments
        if event.type == ctx.config.experiments.goal:
            goals = user.goal_ts
            bisect.insort(goals, ts)
            keep = bisect.bisect_left(goals, ctx.horizon_ms)
            if keep or len(goals) > ctx.max_orders:
                del goals[: max(keep, len(goals) - ctx.max_orders)]
            for exposed_to, entry in exposures.items():
                first, conv = entry[0], entry[3]
                if ts >= first and (conv is None or ts < conv):
                    before = _converted(entry, window)
                    entry[3] = ts
                    if _converted(entry, window) != before:
                        _count(exposed_to, entry, CONVERTED, 1, ctx, effects)
        if event.type != "exposure" or not event.experiment or not event.variant:
            return
        name = event.experiment
        record = exposures.get(name)
        if record is not None and (ts, event.event_id) >= (record[0], record[1]):
            return  # a later exposure changes nothing
        if record is None and len(exposures) >= ctx.config.limits.experiments_per_user:
            ctx.overflow["experiments"] += 1
            return
        conv = record[3] if record is not None else None
        if record is not None:
            _count(name, record, EXPOSED, -1, ctx, effects)
            if _converted(record, window):
                _count(name, record, CONVERTED, -1, ctx, effects)
        i = bisect.bisect_left(user.goal_ts, ts)
        if i < len(user.goal_ts) and (conv is None or user.goal_ts[i] < conv):
            conv = user.goal_ts[i]
        record = exposures[name] = [ts, event.event_id, event.variant, conv]
        _count(name, record, EXPOSED, 1, ctx, effects)
        if _converted(record, window):
            _count(name, record, CONVERTED, 1, ctx, effects)

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        counts: dict[str, dict[str, list[int]]] = {}
        for table in sorted(partials.tables):
            if table.startswith(PREFIX):
                experiment, _, variant = table[len(PREFIX) :].partition(SEPARATOR)
                total = [0, 0]
                for row in partials.table(table, 2).values():
                    total = [total[0] + row[0], total[1] + row[1]]
                if total[0]:
                    counts.setdefault(experiment, {})[variant] = total
        weights = config.experiments.weights
        report["experiments"] = {
            name: summary(variants, weights.get(name)) for name, variants in counts.items()
        }


def summary(
    variants: dict[str, list[int]], weights: dict[str, float] | None = None
) -> dict[str, Any]:
    """One experiment's report entry from its variants' [exposed, converted] and the
    intended split (`weights`, default equal)."""
    control = "control" if "control" in variants else min(variants)
    n_c, x_c = variants[control]
    rate_c = ratio(x_c, n_c)
    out: dict[str, Any] = {}
    for variant in sorted(variants):
        n, x = variants[variant]
        rate = ratio(x, n)
        entry: dict[str, Any] = {"exposed": n, "converted": x, "rate": rate}
        if variant == control or rate is None or rate_c is None:
            entry.update(lift=None, relative_lift=None, p_value=None, ci=None)
        else:
            lift = rate - rate_c
            entry.update(
                lift=lift,
                relative_lift=lift / rate_c if rate_c else None,
                p_value=z_test_p_value(x_c, n_c, x, n),
                ci=lift_confidence_sequence(x_c, n_c, x, n),
            )
        out[variant] = entry
    names = sorted(variants.keys() | (weights or {}).keys())
    exposed = [variants[v][0] if v in variants else 0 for v in names]
    shares = [weights.get(v, 0.0) for v in names] if weights else None
    return {"control": control, "srm_p_value": srm_p_value(exposed, shares), "variants": out}


def z_test_p_value(x_a: int, n_a: int, x_b: int, n_b: int) -> float | None:
    """Two-sided pooled two-proportion z-test; None for tiny or degenerate samples."""
    if min(n_a, n_b) < MIN_EXPOSED:
        return None
    pooled = (x_a + x_b) / (n_a + n_b)
    if pooled in (0.0, 1.0):
        return None
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (x_b / n_b - x_a / n_a) / se
    from scipy import stats  # here: importing it costs a process 1.4 s and 110 MB

    return float(2 * stats.norm.sf(abs(z)))


def lift_confidence_sequence(
    x_a: int, n_a: int, x_b: int, n_b: int, alpha: float = ALPHA, tuned_n: int = CS_TUNED_N
) -> list[float] | None:
    """[lo, hi] of the always-valid (1 - alpha) confidence sequence for rate_b - rate_a."""
    if min(n_a, n_b) < MIN_EXPOSED:
        return None
    p_a, p_b = x_a / n_a, x_b / n_b
    variance = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b  # of the lift estimate
    if variance == 0:
        return None
    t = n_a + n_b
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuned_n
    scaled = t * t * variance * rho2  # t·σ²·ρ² with σ² = t · variance
    half = math.sqrt(2 * (scaled + 1) / (t * t * rho2) * math.log(math.sqrt(scaled + 1) / alpha))
    lift = p_b - p_a
    return [lift - half, lift + half]


def srm_p_value(exposed: list[int], weights: list[float] | None = None) -> float | None:
    """Chi-square goodness of fit of the exposure counts against the intended split
    (`weights`, default equal); None when an expected count is under 5 (the test would
    mislead); 0 when a variant outside the split has exposures (certainly broken)."""
    total = sum(exposed)
    shares = weights or [1.0] * len(exposed)
    expected = [total * w / sum(shares) for w in shares]
    if any(n and not e for n, e in zip(exposed, expected, strict=True)):
        return 0.0
    observed = [n for n, e in zip(exposed, expected, strict=True) if e]
    expected = [e for e in expected if e]
    if len(observed) < 2 or min(expected) < 5:
        return None
    from scipy import stats

    return float(stats.chisquare(observed, expected).pvalue)


def _converted(record: list[Any], window_ms: int) -> bool:
    return record[3] is not None and record[3] <= record[0] + window_ms


def _count(
    name: str, record: list[Any], index: int, delta: int, ctx: Context, effects: list[Effect]
) -> None:
    table = f"{PREFIX}{name}{SEPARATOR}{record[2]}"
    effects.append((TABLE_EFFECT, ctx.clock.day(record[0]), table, index, delta))
