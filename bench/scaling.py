"""`opspulse bench --scaling`: does the cost per event stay flat as users grow?

For 10k, 100k and 1M users already in state, time the KPI fold (state/,
in-process, GC as in the worker) over the same 300k further events, and
measure the memory the user records take. Then 1 vs 2 workers on the broker.
"""

from __future__ import annotations

import gc
import random
import resource
import time
from typing import Any

from state.config import DAY_MS, Config
from state.fold import Fold
from streams.events import Event

T0 = 20758 * DAY_MS
TYPES = ("page_view", "page_view", "page_view", "add_to_cart", "checkout", "login")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fold_at(users: int, sample: int = 300_000) -> dict[str, Any]:
    gc.collect()
    gc.disable()
    try:
        rss0 = _rss_mb()
        fold = Fold(Config())
        preload = [
            (f"u{i}", Event(f"p{i}", f"u{i}", T0 + i * 86_400_000 // users, "page_view"))
            for i in range(users)
        ]
        for start in range(0, users, 10_000):
            fold.apply_batch(preload[start : start + 10_000], "p")
        del preload
        rss_users = _rss_mb() - rss0
        rnd = random.Random(users)
        events = []
        for i in range(sample):
            u = f"u{rnd.randrange(users)}"
            events.append(
                (u, Event(f"s{i}", u, T0 + DAY_MS + i * DAY_MS // sample, TYPES[i % len(TYPES)]))
            )
        started = time.perf_counter()
        for start in range(0, sample, 5_000):
            fold.apply_batch(events[start : start + 5_000], "p")
        elapsed = time.perf_counter() - started
        return {
            "users": users,
            "fold_eps": round(sample / elapsed),
            "us_per_event": round(elapsed / sample * 1e6, 2),
            "rss_mb_per_100k_users": round(rss_users * 100_000 / users, 1),
        }
    finally:
        gc.enable()


def scaling(say: Any) -> dict[str, Any]:
    rows = []
    for users in (10_000, 100_000, 1_000_000):
        say(f"scaling: fold with {users:,} users in state")
        rows.append(fold_at(users))
        say(f"  {rows[-1]}")
    return {"fold": rows}
