"""`opspulse bench --soak MINUTES`: one real worker under a steady load for a long time.

A fresh app id and topics per run; one `opspulse worker` subprocess exactly as
shipped (every KPI, exactly-once, 1 s commit interval); the bench produces
generated clicks and orders (streams/generator.py, spend left out) at a steady
`--soak-rate` events/s of wall time. New users arrive every simulated day
(NEW_USERS_PER_DAY), so the state grows as it would in production.

Event time is compressed: the traffic is the generator's stream starting
SIM_DAYS days ago, sent as fast as the rate allows, so a simulated day passes
in seconds of wall time at first and in a minute or so once the user base is
built (61 simulated days in an hour at 2,000 events/s), and every kind of
day-end work (day rollover, the compaction horizon moving, retention and
cohort days closing, timers) happens dozens of times in an hour. Because event time is not wall time, lag in
seconds is measured on the wall clock: how long ago the producer had sent as
many events as the worker has committed (not the worker's event-time gauges).

Every SAMPLE_S seconds: the worker's RSS, the consumer group's committed
offsets against the end offsets of the input topics (lag in events and in
seconds), events processed (the worker's own counter), users in state (the
distinct users among the events the worker processed; also the new users of
the committed KPI partials), the worker's CPU time and the machine's load.
Samples go to bench/results/soak-<timestamp>.jsonl as they are taken, the
summary to soak-<timestamp>.json, the worker's log to soak-<timestamp>-worker.log. Ctrl-C (or SIGTERM) ends the load early; the summary
of what was measured is still printed.

Verdict (after a warm-up of the first WARMUP_SHARE of the run):
- memory flat: in each quarter of the rest of the run, RSS grows (least-squares
  slope, MB/h) by at most MAX_MB_PER_1K_USERS per 1,000 users added there (the
  README's `bench` measures ~11) plus UNEXPLAINED_MB_PER_H: growth the users in
  state cannot explain fails, most visibly late in the run, when fewer new users
  arrive per hour. Also reported, not judged: the least-squares split of RSS
  into a + b * users + c * hours (b per 1,000 users, c "unexplained" MB/h), which
  is unstable when users grow almost linearly with time;
- lag bounded: the largest sampled lag at most LAG_MAX_S seconds, and the lag
  not growing: its least-squares slope at most LAG_SLOPE_S_PER_H.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from agents import kafka_security
from agents.settings import bootstrap_servers
from bench.run import (
    RESULTS,
    ROOT,
    Say,
    Worker,
    _bench_config,
    create_topics,
    free_port,
    print_results,
)

# events/s: ~5% of one worker's measured capacity (README), yet at 5,000/s on the shared
# 2-core bench machine the worker's state commits fell behind until a transaction
# timed out (60 s) after 12 minutes
DEFAULT_RATE = 2000.0
NEW_USERS_PER_DAY = 2000  # per simulated day
SIM_DAYS = 730  # the simulated stream starts this many days ago (all of it in the past)
SAMPLE_S = 10.0
WARMUP_SHARE = 0.1
QUARTERS = 4
UNEXPLAINED_MB_PER_H = 50.0
MAX_MB_PER_1K_USERS = 20.0
LAG_MAX_S = 30.0
LAG_SLOPE_S_PER_H = 30.0

SUMMARY_KEYS = (
    "soak_minutes", "soak_rate_eps", "soak_rate_achieved_eps", "soak_events", "soak_event_days",
    "soak_rss_mb_idle", "soak_rss_mb_start", "soak_rss_mb_end", "soak_rss_slope_mb_per_h",
    "soak_rss_mb_per_1k_users", "soak_rss_unexplained_mb_per_h", "soak_users_start",
    "soak_users_end", "soak_users_per_h", "soak_lag_max_events", "soak_lag_p99_events",
    "soak_lag_end_events", "soak_lag_max_s", "soak_lag_p99_s", "soak_lag_end_s",
    "soak_lag_slope_s_per_h", "soak_processing_lag_max_events", "soak_processing_lag_p99_events",
    "soak_worker_cpu_share", "soak_loadavg_mean", "soak_memory_flat", "soak_lag_bounded", "soak_verdict",
)  # fmt: skip


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--soak", type=float, metavar="MINUTES",
        help="steady load on one worker for MINUTES: RSS and lag over time (memory flat, lag bounded)",
    )  # fmt: skip
    parser.add_argument(
        "--soak-rate", type=float, default=DEFAULT_RATE, metavar="EVENTS_PER_S",
        help=f"events/s of the soak load (default {DEFAULT_RATE:,.0f})",
    )  # fmt: skip
    parser.add_argument(
        "--soak-web-port", type=int, metavar="PORT",
        help="the soak worker's web port (default: a free port)",
    )  # fmt: skip


# -- pure parts ------------------------------------------------------------------------


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx if sxx > 0 else 0.0


def fit_two(ys: Sequence[float], x1: Sequence[float], x2: Sequence[float]) -> tuple[float, float]:
    """(b1, b2) of the least-squares fit ys = a + b1 * x1 + b2 * x2. When x1 does not
    vary, or x1 and x2 are collinear, everything is put on x2 (b1 = 0): the
    conservative reading for a leak check, x2 being time."""
    n = len(ys)
    if n < 3:
        return 0.0, slope(x2, ys)
    m1, m2, my = sum(x1) / n, sum(x2) / n, sum(ys) / n
    d1 = [v - m1 for v in x1]
    d2 = [v - m2 for v in x2]
    dy = [v - my for v in ys]
    s11 = sum(a * a for a in d1)
    s22 = sum(b * b for b in d2)
    s12 = sum(a * b for a, b in zip(d1, d2, strict=True))
    s1y = sum(a * c for a, c in zip(d1, dy, strict=True))
    s2y = sum(b * c for b, c in zip(d2, dy, strict=True))
    det = s11 * s22 - s12 * s12
    if s11 <= 0 or s22 <= 0 or det <= 1e-9 * s11 * s22:
        return 0.0, slope(x2, ys)
    return (s1y * s22 - s2y * s12) / det, (s2y * s11 - s1y * s12) / det


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, linear between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class SentHistory:
    """When the producer had sent how many events (and of how many users): lag in
    wall-clock seconds, users reached by the worker."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.counts: list[int] = []
        self.users: list[int] = []  # distinct users among the first counts[i] events

    def add(self, t: float, count: int, users: int = 0) -> None:
        if not self.counts or count > self.counts[-1]:
            self.times.append(t)
            self.counts.append(count)
            self.users.append(users)

    def users_at(self, done: int) -> int:
        """Distinct users among the first `done` events (as of the last point at or before)."""
        i = bisect.bisect_right(self.counts, done) - 1
        return self.users[i] if i >= 0 else 0

    def lag_s(self, done: int, now: float) -> float:
        """Seconds since the producer had sent `done` events (0 when all sent are done)."""
        counts, times = self.counts, self.times
        if not counts or done >= counts[-1]:
            return 0.0
        i = bisect.bisect_left(counts, done)  # the first point with counts[i] >= done
        if i == 0:
            return now - times[0]
        c0, c1, t0, t1 = counts[i - 1], counts[i], times[i - 1], times[i]
        return now - (t0 + (t1 - t0) * (done - c0) / (c1 - c0))


def summarize(
    samples: Sequence[dict[str, Any]], *, rate: float, idle_rss_mb: float | None = None
) -> dict[str, Any]:
    """The verdict figures of a soak from its samples (t_s from the start of the load)."""
    if not samples:
        raise ValueError("no samples")
    elapsed = samples[-1]["t_s"]
    warmup = elapsed * WARMUP_SHARE
    post = [s for s in samples if s["t_s"] >= warmup]
    if len(post) < 3:
        post = list(samples)
    hours = [s["t_s"] / 3600 for s in post]
    rss = [s["rss_mb"] for s in post]
    users = [s["users"] for s in post]
    per_user, unexplained = fit_two(rss, users, hours)
    lag_events = [s["lag_events"] for s in samples]
    lag_s = [s["lag_s"] for s in samples]
    processing = [
        s["lag_processed_events"] for s in samples if s.get("lag_processed_events") is not None
    ]
    first, last = post[0], samples[-1]
    result: dict[str, Any] = {
        "soak_minutes": round(elapsed / 60, 2),
        "soak_rate_eps": rate,
        "soak_rate_achieved_eps": round(last["produced"] / elapsed) if elapsed > 0 else None,
        "soak_events": last["produced"],
        "soak_event_days": last.get("event_days"),
        "soak_rss_mb_idle": idle_rss_mb,
        "soak_rss_mb_start": round(first["rss_mb"], 1),
        "soak_rss_mb_end": round(last["rss_mb"], 1),
        "soak_rss_slope_mb_per_h": round(slope(hours, rss), 1),
        "soak_rss_mb_per_1k_users": round(per_user * 1000, 2),
        "soak_rss_unexplained_mb_per_h": round(unexplained, 1),
        "soak_users_start": first["users"],
        "soak_users_end": last["users"],
        "soak_users_per_h": round(slope(hours, users)),
        "soak_lag_max_events": max(lag_events),
        "soak_lag_p99_events": round(percentile(lag_events, 99)),
        "soak_lag_end_events": last["lag_events"],
        "soak_lag_max_s": round(max(lag_s), 2),
        "soak_lag_p99_s": round(percentile(lag_s, 99), 2),
        "soak_lag_end_s": round(last["lag_s"], 2),
        "soak_lag_slope_s_per_h": round(slope(hours, [s["lag_s"] for s in post]), 2),
        # produced minus the worker's own processed count: lag before the commits
        "soak_processing_lag_max_events": max(processing) if processing else None,
        "soak_processing_lag_p99_events": round(percentile(processing, 99)) if processing else None,
        "soak_rss_quarters": quarters(post),
        "soak_warmup_s": round(warmup, 1),
        "soak_loadavg_mean": _mean([s["loadavg"] for s in samples if "loadavg" in s]),
        "soak_worker_cpu_share": _cpu_share(samples),
    }
    result.update(verdict(result))
    return result


def quarters(post: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """RSS and users growth (least-squares slopes) in QUARTERS equal spans of time of the
    samples after the warm-up, and the RSS growth the users added there allow."""
    if len(post) < 2:
        return []
    n = min(QUARTERS, max(1, len(post) // 3))
    t0, t1 = post[0]["t_s"], post[-1]["t_s"]
    span = (t1 - t0) / n
    out = []
    for q in range(n):
        lo, hi = t0 + q * span, t0 + (q + 1) * span
        part = [s for s in post if lo <= s["t_s"] <= hi]
        if len(part) < 2:
            continue
        hours = [s["t_s"] / 3600 for s in part]
        rss_h = slope(hours, [s["rss_mb"] for s in part])
        users_h = slope(hours, [s["users"] for s in part])
        out.append({
            "from_min": round(lo / 60, 1), "to_min": round(hi / 60, 1),
            "rss_mb_per_h": round(rss_h, 1), "users_per_h": round(users_h),
            "mb_per_1k_users": round(rss_h / users_h * 1000, 2) if users_h > 0 else None,
            "allowed_mb_per_h": round(
                MAX_MB_PER_1K_USERS * max(users_h, 0.0) / 1000 + UNEXPLAINED_MB_PER_H, 1
            ),
        })  # fmt: skip
    return out


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _cpu_share(samples: Sequence[dict[str, Any]]) -> float | None:
    """The worker's CPU seconds per wall second between the first and the last sample."""
    timed = [s for s in samples if s.get("cpu_s") is not None]
    if len(timed) < 2 or timed[-1]["t_s"] <= timed[0]["t_s"]:
        return None
    return round((timed[-1]["cpu_s"] - timed[0]["cpu_s"]) / (timed[-1]["t_s"] - timed[0]["t_s"]), 2)


def verdict(figures: dict[str, Any]) -> dict[str, Any]:
    """soak_memory_flat, soak_lag_bounded and soak_verdict from the summary figures."""
    memory = [
        f"RSS grew {q['rss_mb_per_h']} MB/h in minutes {q['from_min']:g}-{q['to_min']:g}, "
        f"more than its {q['users_per_h']:,} new users/h allow ({q['allowed_mb_per_h']:g})"
        for q in figures["soak_rss_quarters"]
        if q["rss_mb_per_h"] > q["allowed_mb_per_h"]
    ]
    lag = []
    if figures["soak_lag_max_s"] > LAG_MAX_S:
        lag.append(f"lag reached {figures['soak_lag_max_s']} s (bound {LAG_MAX_S:g})")
    if figures["soak_lag_slope_s_per_h"] > LAG_SLOPE_S_PER_H:
        lag.append(
            f"lag grows {figures['soak_lag_slope_s_per_h']} s/h (bound {LAG_SLOPE_S_PER_H:g})"
        )
    problems = memory + lag
    return {
        "soak_memory_flat": not memory,
        "soak_lag_bounded": not lag,
        "soak_verdict": "pass" if not problems else "fail: " + "; ".join(problems),
    }


# -- the run ---------------------------------------------------------------------------


class SoakWorker(Worker):
    """`Worker`, with its output kept in a log file and in its own session, so that a
    Ctrl-C meant for the bench leaves it running until the bench stops it."""

    def __init__(self, config_path: Path, port: int, data_dir: Path, log: Path) -> None:
        env = {**os.environ, "OPSPULSE_BROKER": f"kafka://{bootstrap_servers()}"}
        self.port = port
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "worker", "--config", str(config_path),
                 "--web-port", str(port), "--data-dir", str(data_dir)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip


Chunk = tuple[int, int, list[tuple[str, bytes, bytes]]]


class Traffic:
    """Generated clicks and orders, made in a thread (the generator works a simulated
    day at a time) and handed over in chunks."""

    CHUNK = 2000

    def __init__(self, new_users_per_day: int = NEW_USERS_PER_DAY) -> None:
        from streams.generator import GeneratorSpec

        start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=SIM_DAYS)
        self.spec = GeneratorSpec(
            seed=7, days=SIM_DAYS, start=start.isoformat(),
            new_users_per_day=new_users_per_day, duplicate_rate=0.01,
        )  # fmt: skip
        # (simulated day of the chunk's last event, days since 1970; distinct users
        # up to the end of the chunk; the chunk)
        self.chunks: queue.Queue[Chunk | None] = queue.Queue(50)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-traffic", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from streams.generator import generate

        chunk: list[tuple[str, bytes, bytes]] = []
        users: set[bytes] = set()
        day = 0
        try:
            for kind, line in generate(self.spec):
                if kind == "spend":
                    continue
                event = orjson.loads(line)
                key = event["user_id"].encode()
                users.add(key)
                chunk.append((kind, key, line))
                if len(chunk) >= self.CHUNK:
                    day = event["ts"] // 86_400_000
                    if not self._put((day, len(users), chunk)):
                        return
                    chunk = []
            if chunk:
                self._put((day, len(users), chunk))
        finally:
            self._put(None)

    def _put(self, item: Chunk | None) -> bool:
        while not self.stopping.is_set():
            with contextlib.suppress(queue.Full):
                self.chunks.put(item, timeout=0.2)
                return True
        return False

    def next_chunk(self) -> Chunk | None:
        """The next chunk; None when the traffic ran out or was stopped."""
        while not self.stopping.is_set():
            with contextlib.suppress(queue.Empty):
                return self.chunks.get(timeout=0.5)
        return None

    def stop(self) -> None:
        self.stopping.set()


class Load:
    """Sends the traffic at `rate` events/s of wall time; `history` says when how many
    events had been sent."""

    def __init__(self, bootstrap: str, topic_of: dict[str, str], rate: float) -> None:
        self.bootstrap, self.topic_of, self.rate = bootstrap, topic_of, rate
        self.sent = 0
        self.users_sent = 0  # distinct users of the chunks sent completely
        self.history = SentHistory()
        self.traffic = Traffic()
        self.error: BaseException | None = None
        self.exhausted = False
        self.first_day: int | None = None
        self.day: int | None = None  # simulated day (days since 1970) being sent

    def event_days(self) -> int:
        """Simulated days sent so far (the first and the current one included)."""
        return 0 if self.day is None or self.first_day is None else self.day - self.first_day + 1

    def _failed(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None and self.error is None:
            self.error = future.exception()

    async def run(self, started: float) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=20, max_batch_size=256 * 1024,
            **kafka_security.client_kwargs(),
        )  # fmt: skip
        await producer.start()
        buffer: list[tuple[str, bytes, bytes]] = []
        chunk_users = 0
        try:
            while self.error is None:
                due = int((time.monotonic() - started) * self.rate)
                while self.sent < due:
                    if not buffer:
                        self.users_sent = chunk_users
                        item = await asyncio.to_thread(self.traffic.next_chunk)
                        if item is None:
                            self.exhausted = not self.traffic.stopping.is_set()
                            return
                        self.day, chunk_users, chunk = item
                        if self.first_day is None:
                            self.first_day = self.day
                        buffer = chunk[::-1]
                    kind, key, value = buffer.pop()
                    future = await producer.send(self.topic_of[kind], value, key=key)
                    future.add_done_callback(self._failed)
                    self.sent += 1
                if not buffer:
                    self.users_sent = chunk_users
                self.history.add(time.monotonic(), self.sent, self.users_sent)
                await asyncio.sleep(0.01)
            raise RuntimeError(f"producing the soak traffic failed: {self.error}")
        finally:
            self.traffic.stop()
            with contextlib.suppress(Exception):
                await producer.flush()
            await producer.stop()


class Probe:
    """The consumer group's committed offsets and the input topics' end offsets."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], partitions: int) -> None:
        self.bootstrap, self.group, self.topics = bootstrap, group, topics
        self.partitions = partitions
        self.admin: Any = None
        self.consumer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self.admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, **kafka_security.client_kwargs()
        )
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, **kafka_security.client_kwargs()
        )
        await self.consumer.start()

    async def offsets(self) -> tuple[int, int]:
        """(events committed by the group, events in the input topics)."""
        from aiokafka import TopicPartition

        tps = [TopicPartition(t, p) for t in self.topics for p in range(self.partitions)]
        ends = await self.consumer.end_offsets(tps)
        committed = await self.admin.list_consumer_group_offsets(self.group, partitions=tps)
        done = sum(max(m.offset, 0) for tp, m in committed.items() if m is not None)
        return done, sum(ends.values())

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()


def _metric_sums(text: bytes | None, names: tuple[str, ...]) -> dict[str, float | None]:
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float | None] = dict.fromkeys(names)
    if not text:
        return sums
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name in sums:
                sums[s.name] = (sums[s.name] or 0.0) + s.value
    return sums


async def soak(minutes: float, rate: float, port: int | None, say: Say) -> dict[str, Any]:
    from agents.snapshot import KpiReader
    from state.partials import NEW_USERS

    bootstrap = bootstrap_servers()
    run = f"soak-{int(time.time())}"
    config, config_path = _bench_config(run)
    inputs = [config.topics.clicks, config.topics.orders]
    await create_topics(bootstrap, inputs, config.topics.partitions)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    samples_path = RESULTS / f"soak-{stamp}.jsonl"
    data_dir = Path(tempfile.mkdtemp(prefix=f"{run}-"))
    log = RESULTS / f"soak-{stamp}-worker.log"

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    samples: list[dict[str, Any]] = []
    worker = SoakWorker(config_path, port or free_port(), data_dir, log)
    say(f"{run}: worker on port {worker.port} (log {log})")
    reader = KpiReader(bootstrap, config)
    probe = Probe(bootstrap, config.app_id, inputs, config.topics.partitions)
    load = Load(bootstrap, {"clicks": inputs[0], "orders": inputs[1]}, rate)
    producing: asyncio.Task[None] | None = None
    idle_rss_mb: float | None = None
    try:
        deadline = time.monotonic() + 180
        while not worker.ready():
            if stop.is_set():
                raise RuntimeError("interrupted before the load started")
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the soak worker did not become ready (see {log})")
            await asyncio.sleep(0.2)
        idle_rss_mb = round(worker.rss_bytes() / 1e6, 1)
        await probe.start()
        say(
            f"idle worker {idle_rss_mb:,.0f} MB; {rate:,.0f} events/s for {minutes:g} min, "
            f"{NEW_USERS_PER_DAY:,} new users per simulated day, samples every {SAMPLE_S:g}s "
            f"to {samples_path}"
        )
        started = time.monotonic()
        producing = asyncio.create_task(load.run(started))
        end = started + minutes * 60
        next_sample, next_print = started + SAMPLE_S, started + 60
        with samples_path.open("ab") as out:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_sample - time.monotonic()))
                if producing.done():
                    producing.result()  # raises if the producer failed
                    if load.exhausted:
                        say("the generated traffic ran out: ending the soak")
                        stop.set()
                if worker.proc.poll() is not None:
                    say(f"the worker exited with {worker.proc.returncode} (see {log})")
                    stop.set()
                    if not samples:
                        raise RuntimeError(f"the soak worker exited (see {log})")
                    break
                try:
                    sample = await _sample(worker, probe, reader, load, started, NEW_USERS)
                except Exception as exc:  # a broker or HTTP hiccup: skip this sample
                    say(f"sample skipped: {exc!r}")
                    next_sample += SAMPLE_S
                    continue
                samples.append(sample)
                out.write(orjson.dumps(sample) + b"\n")
                out.flush()
                now = time.monotonic()
                if now >= next_print or stop.is_set() or now >= end:
                    next_print += 60
                    say(
                        f"{sample['t_s'] / 60:5.1f}/{minutes:g} min: rss {sample['rss_mb']:,.0f} MB, "
                        f"lag {sample['lag_events']:,} events ({sample['lag_s']:.1f} s), "
                        f"{sample['committed']:,} committed, {sample['users']:,} users, "
                        f"simulated day {sample['event_day']}, load {sample['loadavg']:.1f}"
                    )
                if stop.is_set() or now >= end:
                    break
                next_sample += SAMPLE_S
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if producing is not None and not producing.done():
            producing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producing
        load.traffic.stop()
        worker.stop()
        await probe.stop()
        await reader.stop()
        config_path.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    if not samples:
        raise RuntimeError("the soak ended before its first sample")
    if stop.is_set() and samples[-1]["t_s"] < minutes * 60 - SAMPLE_S:
        say(f"ended early after {samples[-1]['t_s'] / 60:.1f} min")
    results = summarize(samples, rate=rate, idle_rss_mb=idle_rss_mb)
    results.update(
        soak_minutes_requested=minutes,
        soak_new_users_per_sim_day=NEW_USERS_PER_DAY,
        soak_sample_s=SAMPLE_S,
        soak_samples=str(samples_path),
        soak_worker_log=str(log),
        soak_app_id=run,
    )
    summary_path = RESULTS / f"soak-{stamp}.json"
    summary_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    say(f"saved {summary_path}")
    return results


async def _sample(
    worker: Worker, probe: Probe, reader: Any, load: Load, started: float, new_users: int
) -> dict[str, Any]:
    begun = time.monotonic()
    committed, end_offsets = await probe.offsets()
    now = time.monotonic()
    body = await asyncio.to_thread(worker.get, "/metrics")
    scraped = time.monotonic()
    metrics = _metric_sums(
        body, ("opspulse_events_consumed_total", "opspulse_consumer_lag_messages")
    )
    processed = metrics["opspulse_events_consumed_total"]
    sent = load.sent
    partials = await reader.partials()
    day = load.day
    return {
        "t_s": round(now - started, 2),
        "rss_mb": round(worker.rss_bytes() / 1e6, 1),
        "produced": sent,
        "committed": committed,
        "lag_events": max(0, end_offsets - committed),
        "lag_s": round(load.history.lag_s(committed, now), 3),
        "processed": processed,  # the worker's own count
        "lag_processed_events": None if processed is None else max(0, round(sent - processed)),
        "cpu_s": _cpu_seconds(worker.proc.pid),
        "loadavg": os.getloadavg()[0],  # the machine's (shared: other work counts too)
        "worker_lag_events": metrics["opspulse_consumer_lag_messages"],
        # users in the worker's memory: distinct users among the events it processed
        "users": load.history.users_at(int(processed if processed is not None else committed)),
        "users_committed": sum(row[new_users] for row in partials.days.values()),
        "scrape_ms": round((scraped - now) * 1000, 1),  # the worker's /metrics
        "sample_ms": round((time.monotonic() - begun) * 1000, 1),
        "event_day": None if day is None else dt.date.fromordinal(719163 + day).isoformat(),
        "event_days": load.event_days(),
    }


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def run_soak(args: argparse.Namespace) -> int:
    say = Say(args.json)
    if args.soak <= 0 or args.soak_rate <= 0:
        print("opspulse bench: --soak and --soak-rate must be > 0", file=sys.stderr)
        return 2
    results = asyncio.run(soak(args.soak, args.soak_rate, args.soak_web_port, say))
    print_results(results, SUMMARY_KEYS, f"opspulse bench --soak {args.soak:g}", args.json)
    return 0
