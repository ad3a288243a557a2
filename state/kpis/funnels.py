"""Funnels (ClickHouse windowFunnel 'strict_increase'): per start day, users
reaching each step. A step arriving late re-evaluates the chains it can touch."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from state.clock import DAY_MS, DayClock
from state.funnel import funnel_level
from state.partials import FUNNEL_EFFECT, Effect, Partials

if TYPE_CHECKING:
    from state.config import Config
    from state.user import Context, EventLike, UserState


class Funnels:
    name = "funnels"

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type in ctx.step_of

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        if not user.funnel_steps:
            user.funnel_steps = [[] for _ in ctx.funnels]
            user.funnel_levels = [{} for _ in ctx.funnels]
        clock, ts = ctx.clock, event.ts
        for f_index, step in ctx.step_of[event.type]:
            spec = ctx.funnels[f_index]
            window = spec.window_ms
            events = user.funnel_steps[f_index]
            levels = user.funnel_levels[f_index]
            # Steps older than any day that can still change are final: drop them.
            keep_from = ctx.horizon_ms - window - DAY_MS
            if events and events[0][0] < keep_from:
                del events[: bisect.bisect_left(events, (keep_from,))]
                final_day = clock.day(max(keep_from, 0))
                for old_day in [d for d in levels if d < final_day]:
                    del levels[old_day]
            if len(events) >= ctx.max_funnel_steps:
                # Over the bound (a bot): the step is not kept, nothing is re-evaluated,
                # no count is ever retracted; O(1) per event. Counted.
                ctx.overflow["funnel_steps"] += 1
                continue
            at = bisect.bisect_right(events, (ts, step, day))
            appended = at == len(events)  # the usual case: the user's latest step
            events.insert(at, (ts, step, day))
            first_day = day if step == 0 else clock.day(ts - window)
            for start_day in range(first_day, day + 1):
                old = levels.get(start_day, 0)
                if appended and step == 0:
                    level = old or 1  # a last step 1 only (re)starts a chain
                elif appended and old != step:
                    # The walk up to this last event is unchanged, and levels are
                    # prefixes: below `step` no chain can take it, above it one has.
                    continue
                else:
                    level = funnel_level(events, len(spec.steps), window, start_day)
                if level != old:
                    effects.append((FUNNEL_EFFECT, f_index, start_day, old, level))
                    if level:
                        levels[start_day] = level
                    else:
                        del levels[start_day]

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        iso = DayClock.iso
        funnels: dict[str, Any] = {}
        for spec, counts in zip(config.funnels, partials.funnels, strict=True):
            empty = [0] * len(spec.steps)
            since = partials.funnel_since.get(spec.name)
            funnels[spec.name] = {
                "steps": list(spec.steps),
                "window_ms": spec.window_ms,
                "since": iso(since) if since is not None else None,
                "days": {iso(d): list(counts.get(d, empty)) for d in days},
            }
        report["funnels"] = funnels
