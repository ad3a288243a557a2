"""Funnel level of one user for one start day, as ClickHouse computes it.

Copies `windowFunnel(W, 'strict_increase')(ts, step1 AND day(ts) = d, step2, …)`:
ClickHouse sorts the matching events by (timestamp, step), then walks them
greedily, keeping for each level the chain's first timestamp and the
timestamp of its last step; a later step-1 event restarts level 1. Ties and
the greedy restart are ClickHouse's behaviour, reproduced on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable


def funnel_level(
    steps: Iterable[tuple[int, int, int]], n_steps: int, window_ms: int, day: int
) -> int:
    """Level reached from step-1 events on `day`.

    `steps` holds (ts, step index, local day of ts), sorted by (ts, step).
    """
    first: list[int | None] = [None] * n_steps
    last = [0] * n_steps
    for ts, step, event_day in steps:
        if step == 0:
            if event_day == day:
                first[0] = ts
                last[0] = ts
            continue
        chain_start = first[step - 1]
        if chain_start is not None and ts <= chain_start + window_ms and last[step - 1] < ts:
            first[step] = chain_start
            last[step] = ts
            if step == n_steps - 1:
                return n_steps
    for level in range(n_steps, 0, -1):
        if first[level - 1] is not None:
            return level
    return 0
