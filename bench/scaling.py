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


def bot_cost(bot_events: int = 1_000_000, sample: int = 100_000) -> dict[str, Any]:
    """µs per event of a normal user's events vs a bot's after `bot_events` of its own
    (funnel steps and distinct ids, all inside the lateness window): per-user bounds
    by count must keep the bot's cost flat, not linear in its history."""
    config = Config()

    def timed(fold: Fold, user: str, n: int, offset: int, spacing_ms: int) -> float:
        events = [
            (user, Event(f"{user}-{offset + i}", user, T0 + (offset + i) * spacing_ms,
                         TYPES[i % len(TYPES)]))
            for i in range(n)
        ]  # fmt: skip
        started = time.perf_counter()
        for start in range(0, n, 5_000):
            fold.apply_batch(events[start : start + 5_000], "p")
        return (time.perf_counter() - started) / n * 1e6

    gc.disable()
    try:
        # A normal user: a few hundred events over days (the fold's cost, one user).
        normal = Fold(config)
        normal_us = sum(timed(normal, f"n{k}", 200, 0, 600_000) for k in range(sample // 200)) / (
            sample // 200
        )
        # A bot: a million events within one hour (all inside the lateness bound).
        bot = Fold(config)
        timed(bot, "bot", bot_events, 0, 3)
        bot_us = timed(bot, "bot", sample, bot_events, 3)
        return {
            "normal_us_per_event": round(normal_us, 2),
            "bot_us_per_event_after_1m": round(bot_us, 2),
            "overflow": dict(bot.ctx.overflow),
        }
    finally:
        gc.enable()


def scaling(say: Any) -> dict[str, Any]:
    rows = []
    for users in (10_000, 100_000, 1_000_000):
        say(f"scaling: fold with {users:,} users in state")
        rows.append(fold_at(users))
        say(f"  {rows[-1]}")
    say("scaling: a bot with 1M events vs normal users")
    bot = bot_cost()
    say(f"  {bot}")
    return {"fold": rows, "bot": bot}
