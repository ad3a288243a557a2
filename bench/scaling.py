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


def disk_tier_at(
    users: int, say: Any, cache_users: int = 100_000, sample: int = 200_000
) -> dict[str, Any]:
    """One partition's worker code in-process (Fold, UserTable, PartitionStore's commit
    path into a local RocksDB, without Kafka) holding `users` users: the time to
    restore it from its local store, its RSS then, and µs per event of `sample`
    further events (a commit per 20,000) from users drawn uniformly (nearly all cold
    at 10M) and from a hot set of `cache_users` // 2 users.

    The users: 1,000 made by the fold (one page view each, through the day), copied
    under other ids with their lifecycle timer, as a worker's store holds them."""
    import asyncio
    import shutil
    import tempfile
    from pathlib import Path
    from types import SimpleNamespace

    from agents.statestore import TIMER_PREFIX, Outgoing, PartitionStore
    from state.user_table import USER_PREFIX

    async def run() -> dict[str, Any]:
        config = Config.from_mapping({"state": {"cache_users": cache_users}})
        directory = Path(tempfile.mkdtemp(prefix="opspulse-disk-tier-"))
        path = directory / "p0"
        offset = 0

        def commit(store: PartitionStore, fold: Fold) -> None:
            nonlocal offset
            out = Outgoing()
            store.collect(fold, {"clicks": 1}, out)
            fold.outbox.drain()
            sent = [SimpleNamespace(offset=offset + i) for i in range(len(out.records))]
            offset += len(out.records) + 1
            store._write_local(out, sent)

        def restored() -> tuple[PartitionStore, Fold]:
            store = PartitionStore("unused:9092", "bench", 0, config, local_dir=path)
            store.open_local(0, offset)
            assert store.local is not None
            fold = Fold(config, [("clicks", 0)])
            store.restore(fold, store.local.records())
            fold.take_changed()
            fold.partials.take_dirty_days()
            return store, fold

        store, fold = restored()
        templates = min(users, 1_000)
        fold.apply_batch(
            [
                (f"u{i}", Event(f"p{i}", f"u{i}", T0 + i * DAY_MS // templates, "page_view"))
                for i in range(templates)
            ],
            ("clicks", 0),
        )
        commit(store, fold)
        assert store.local is not None
        records = [store.local.get(USER_PREFIX + f"u{i}".encode()) for i in range(templates)]
        dues = [fold.timers.due_of("segments", f"u{i}") for i in range(templates)]
        started = time.perf_counter()
        for start in range(templates, users, 100_000):
            batch: list[tuple[bytes, bytes | None]] = []
            for i in range(start, min(start + 100_000, users)):
                key = f"u{i}"
                batch.append((USER_PREFIX + key.encode(), records[i % templates]))
                due = dues[i % templates]
                if due is not None:
                    batch.append((TIMER_PREFIX + b"segments/" + key.encode(), str(due).encode()))
            offset += len(batch)
            store.local.apply(batch, offset)
            if start % 2_000_000 < 100_000 and start > templates:
                say(f"  {start:,} users stored ({time.perf_counter() - started:.0f}s)")
        await store.stop()
        del store, fold, records
        gc.collect()
        rss0 = _rss_mb()
        began = time.perf_counter()
        store, fold = restored()
        restore_s = time.perf_counter() - began
        gc.collect()
        rss = _rss_mb() - rss0
        rnd = random.Random(users)

        def timed(pick: Any) -> float:
            events = []
            for i in range(sample):
                u = f"u{pick()}"
                ts = T0 + DAY_MS + i * DAY_MS // sample
                events.append((u, Event(f"s{i}-{rnd.random()}", u, ts, TYPES[i % len(TYPES)])))
            gc.disable()
            try:
                began = time.perf_counter()
                for start in range(0, sample, 20_000):
                    fold.apply_batch(events[start : start + 20_000], ("clicks", 0))
                    commit(store, fold)  # a worker commits once per interval
                return (time.perf_counter() - began) / sample * 1e6
            finally:
                gc.enable()

        hot = max(1, min(users, cache_users // 2))
        hot_us = timed(lambda: rnd.randrange(hot))
        uniform_us = timed(lambda: rnd.randrange(users))
        row = {
            "users": users,
            "restore_s": round(restore_s, 2),
            "rss_mb": round(rss, 1),
            "us_per_event_uniform": round(uniform_us, 2),
            "us_per_event_hot": round(hot_us, 2),
            "cache_users": cache_users,
            "timers": len(fold.timers),
            "local_store_mb": round(sum(f.stat().st_size for f in path.iterdir()) / 1e6, 1),
        }
        assert len(fold.users) == users
        await store.stop()
        shutil.rmtree(directory, ignore_errors=True)
        return row

    return asyncio.run(run())


def disk_tier(say: Any, sizes: tuple[int, ...] = (10_000, 1_000_000, 10_000_000)) -> dict[str, Any]:
    """`rss_mb_10m_users` and `fold_cost_ratio_10m` (µs per event at 10M users in state
    over 10k, the same commit path, users drawn uniformly)."""
    rows = []
    for users in sizes:
        say(f"disk tier: {users:,} users in a local store, {100_000:,} decoded at most")
        rows.append(disk_tier_at(users, say))
        say(f"  {rows[-1]}")
    first, last = rows[0], rows[-1]
    millions = last["users"] // 1_000_000
    return {
        "disk_tier": rows,
        f"rss_mb_{millions}m_users": last["rss_mb"],
        f"fold_cost_ratio_{millions}m": round(
            last["us_per_event_uniform"] / first["us_per_event_uniform"], 2
        ),
        f"fold_cost_ratio_hot_{millions}m": round(
            last["us_per_event_hot"] / first["us_per_event_hot"], 2
        ),
    }
