"""Step conversion per 5-minute bucket, the rate alerts watch (METRICS.md, "Alert
rates"): for each funnel's consecutive step pair A → B and bucket b, `attempts` =
users with an A event in b, `successes` = those with a B event in (A ts, A ts +
`alerts.outcome_window`] for one of those A events. Per breakdown, the values of
the user's first A event in b (its own `device`/`channel`/`region`, else the
acquisition values), bounded like the breakdowns.

The record keeps the step events a late event can still reach, each `[ts, event
id, type, [device, channel, region]]` (the event's own, else the acquisition
values at the time; mapped to bounded breakdown values when counted, a mapping
that never changes once made). An event retracts the (pair, bucket)
contributions it can change and adds them again, so any arrival order inside the
lateness bound gives the same counts. Tables `alert/<funnel>/<i>` (total) and
`alert/<funnel>/<i>/<dimension>/<value>`, keyed by UTC day number, slot
2 × bucket-of-day (+1 for successes).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from state.alerting import BUCKET_MS, DAY_BUCKETS
from state.partials import TABLE_EFFECT, Effect, Partials

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState

PREFIX = "alert/"
OUTCOME_WINDOW_MS = 30 * 60_000


def step_pairs(config: Config) -> list[tuple[str, int, str, str]]:
    """(funnel, index, A, B) of the watched step pairs (`alerts.pairs`; by default
    every consecutive pair but each funnel's first)."""
    chosen = config.alerts.pairs
    return [
        (f.name, i, f.steps[i], f.steps[i + 1])
        for f in config.funnels
        for i in range(len(f.steps) - 1)
        if (i > 0 if chosen is None else f"{f.name}:{f.steps[i]}>{f.steps[i + 1]}" in chosen)
    ]


def table_name(funnel: str, index: int, dim: str | None = None, value: str | None = None) -> str:
    base = f"{PREFIX}{funnel}/{index}"
    return base if dim is None else f"{base}/{dim}/{value}"


DIMENSIONS = ("device", "channel", "region")  # the order of the raw values


def breakdown_tables(
    base: str, raw: tuple[Any, ...], ctx: Context, cache: dict[tuple[Any, ...], list[str]]
) -> list[str]:
    """`base` and its table per bounded breakdown value of the raw (device, channel,
    region), `base/<dimension>/<value>`. `cache`: the partition's names per (base, raw
    values) (the bounded values are per partition, and so is the KPI instance holding
    it); raw values are unbounded, the cache is not."""
    names = cache.get((base, *raw))
    if names is None:
        names = [base]
        values = ctx.breakdowns
        if values is not None:
            for dim, value in zip(DIMENSIONS, raw, strict=True):
                if dim in values.dimensions:
                    names.append("/".join((base, *values.pair(dim, value))))
        if len(cache) < 4096:
            cache[(base, *raw)] = names
    return names


class AlertRates:
    name = "alert_rates"

    def __init__(self) -> None:
        self._pairs: list[tuple[str, int, str, str]] | None = None  # one Context per instance
        self._names: dict[tuple[Any, ...], list[str]] = {}

    def pairs(self, ctx: Context) -> list[tuple[str, int, str, str]]:
        if self._pairs is None:
            self._pairs = step_pairs(ctx.config)
        return self._pairs

    def wants(self, event_type: str, ctx: Context) -> bool:
        return any(event_type in (a, b) for _, _, a, b in self.pairs(ctx))

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        steps = user.alert_steps
        ts, kind = event.ts, event.type
        last = steps[-1] if steps else None
        in_order = last is None or (last[0], last[1]) < (ts, event.event_id)
        affected: set[tuple[str, int, str, str, int]] = set()
        first_in_bucket: list[tuple[str, int, str, str, int]] = []
        for funnel, i, a, b in self.pairs(ctx):
            if kind == a:
                bucket = ts // BUCKET_MS
                if not in_order:
                    affected.add((funnel, i, a, b, bucket))
                elif not _has_step(steps, a, bucket * BUCKET_MS):
                    # In order: no B after it yet, so it counts as an attempt only if
                    # it is the user's first A in the bucket, and without success.
                    first_in_bucket.append((funnel, i, a, b, bucket))
            if kind == b:
                lo = bisect.bisect_left(steps, [ts - OUTCOME_WINDOW_MS])
                for entry in steps[lo:]:
                    if entry[0] >= ts:
                        break
                    if entry[2] == a:
                        affected.add((funnel, i, a, b, entry[0] // BUCKET_MS))
        before = {key: _contribution(steps, *key[2:]) for key in affected}
        raw = [
            event.device or user.device, event.channel or user.channel,
            event.region or user.region,
        ]  # fmt: skip
        entry = [ts, event.event_id, kind, raw]
        if in_order:
            steps.append(entry)
        else:
            bisect.insort(steps, entry)
        for key in first_in_bucket:
            _count(key, (False, raw), 1, ctx, effects, self._names)
        for key, old in before.items():
            new = _contribution(steps, *key[2:])
            if new != old:
                _count(key, old, -1, ctx, effects, self._names)
                _count(key, new, 1, ctx, effects, self._names)
        if steps[0][0] < ctx.horizon_ms - OUTCOME_WINDOW_MS - BUCKET_MS:
            keep = bisect.bisect_left(steps, [ctx.horizon_ms - OUTCOME_WINDOW_MS - BUCKET_MS])
            del steps[:keep]
        if len(steps) > ctx.max_funnel_steps:  # a bot: forget the oldest, counted
            del steps[0]
            ctx.overflow["funnel_steps"] += 1

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        """Nothing in the report: the alert evaluator reads these tables."""


def _has_step(steps: list[list[Any]], kind: str, since_ms: int) -> bool:
    """Whether `steps` (in order) has an event of `kind` at or after `since_ms`."""
    for entry in reversed(steps):
        if entry[0] < since_ms:
            return False
        if entry[2] == kind:
            return True
    return False


def _contribution(steps: list[list[Any]], a: str, b: str, bucket: int) -> tuple[bool, Any] | None:
    """(succeeded, raw breakdown values of the first A event) of the user for (A → B,
    bucket), or None."""
    start = bucket * BUCKET_MS
    lo = bisect.bisect_left(steps, [start])
    firsts = []
    for entry in steps[lo:]:
        if entry[0] >= start + BUCKET_MS:
            break
        if entry[2] == a:
            firsts.append(entry)
    if not firsts:
        return None
    succeeded = False
    for first in firsts:
        t = first[0]
        j = bisect.bisect_right(steps, [t, "\U0010ffff"])
        for entry in steps[j:]:
            if entry[0] > t + OUTCOME_WINDOW_MS:
                break
            if entry[2] == b and entry[0] > t:
                succeeded = True
                break
        if succeeded:
            break
    return succeeded, tuple(firsts[0][3])


def _count(
    key: tuple[str, int, str, str, int],
    contribution: tuple[bool, Any] | None,
    delta: int,
    ctx: Context,
    effects: list[Effect],
    _names: dict[tuple[Any, ...], list[str]],
) -> None:
    """`_names`: the partition's table names (`breakdown_tables`' cache)."""
    if contribution is None:
        return
    funnel, i, _, _, bucket = key
    succeeded, raw = contribution
    names = breakdown_tables(table_name(funnel, i), raw, ctx, _names)
    day, slot = divmod(bucket, DAY_BUCKETS)
    for name in names:
        effects.append((TABLE_EFFECT, day, name, 2 * slot, delta))
        if succeeded:
            effects.append((TABLE_EFFECT, day, name, 2 * slot + 1, delta))
