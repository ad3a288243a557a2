"""`opspulse bench`: throughput, latency, memory and recovery against the local broker.

One run pre-produces the same generated traffic for every contender:
- raw_consume_eps: a plain aiokafka consumer fetching and decoding (orjson) everything;
- bare_faust_eps: a Faust agent that only decodes (bench/faust_bare_app.py);
- quix_eps: Quix Streams with a per-user counter in RocksDB (bench/quix_app.py; extra `bench`);
- pipeline_eps: the real worker, every KPI on, exactly-once as shipped.
Then latency at half the pipeline's rate, state size and memory per user, and
the time a restarted worker needs to be ready again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from agents import kafka_security
from agents.settings import bootstrap_servers, load_config
from state.config import Config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KEYS = (
    "raw_consume_eps", "bare_faust_eps", "quix_eps", "pipeline_eps",
    "pipeline_vs_bare", "pipeline_vs_quix", "pipeline_vs_raw",
    "latency_p50_ms", "latency_p99_ms", "state_bytes_per_user", "rss_mb_per_100k_users", "recovery_s",
)  # fmt: skip


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="smaller traffic; under 10 minutes on 2 cores"
    )
    parser.add_argument("--json", action="store_true", help="last line of output: one JSON object")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="events/s and memory at 10k/100k/1M users, 1 vs 2 workers",
    )
    from bench.churn import add_churn_arguments
    from bench.soak import add_soak_arguments

    add_soak_arguments(parser)
    add_churn_arguments(parser)


class Say:
    """Progress on stderr; a rich table at the end unless --json."""

    def __init__(self, quiet: bool) -> None:
        self.started = time.monotonic()
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        print(
            f"bench [{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True
        )


def _bench_config(run: str, partitions: int = 8) -> tuple[Config, Path]:
    path = Path(tempfile.gettempdir()) / f"{run}.toml"
    path.write_text(
        f'app_id = "{run}"\n[topics]\nclicks = "{run}.clicks"\norders = "{run}.orders"\n'
        f'dlq = "{run}.dlq"\nkpi = "{run}.kpi"\npartitions = {partitions}\n'
    )
    return load_config(str(path)), path


def traffic(n: int, users: int) -> list[tuple[str, bytes, bytes]]:
    """The first n generated click/order messages as (topic kind, key, value), ~users users."""
    from streams.generator import GeneratorSpec, generate

    # New users every day; the stream is cut at n events (about three days of arrivals).
    spec = GeneratorSpec(
        seed=99,
        days=30,
        start="2026-09-01",
        new_users_per_day=max(1, users // 3),
        duplicate_rate=0.01,
    )
    out = []
    for kind, line in generate(spec):
        if kind == "spend":
            continue
        out.append((kind, orjson.loads(line)["user_id"].encode(), line))
        if len(out) >= n:
            break
    return out


async def produce(
    bootstrap: str, messages: list[tuple[str, bytes, bytes]], topic_of: dict[str, str]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=50,
        max_batch_size=512 * 1024,
        **kafka_security.client_kwargs(),
    )
    await producer.start()
    try:
        pending = []
        for kind, key, value in messages:
            pending.append(await producer.send(topic_of[kind], value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security.client_kwargs())
    await admin.start()
    try:
        present = set(await admin.list_topics())
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names if n not in present])
    finally:
        await admin.close()


async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
        **kafka_security.client_kwargs(),
    )  # fmt: skip
    await consumer.start()
    seen, first = 0, 0.0
    loads = orjson.loads
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            if seen == 0 and batches:
                first = time.perf_counter()
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - first)


def run_peer(module: str, args: list[str], timeout: float) -> float | None:
    """Run a peer script; "{out}" in its arguments is where it writes its figures."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    try:
        argv = [sys.executable, "-m", module, *(str(out) if a == "{out}" else a for a in args)]
        subprocess.run(argv, cwd=ROOT, timeout=timeout, capture_output=True, check=False)
        data = orjson.loads(out.read_bytes() or b"null")
        return data["events"] / data["seconds"] if data else None
    except subprocess.TimeoutExpired:
        return None
    finally:
        out.unlink(missing_ok=True)


class Worker:
    def __init__(self, config_path: Path, port: int, data_dir: Path) -> None:
        env = {**os.environ, "OPSPULSE_BROKER": f"kafka://{bootstrap_servers()}"}
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker", "--config", str(config_path), "--web-port", str(port),
             "--data-dir", str(data_dir)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.read()
        except Exception:
            return None

    def ready(self) -> bool:
        body = self.get("/ready")
        return bool(body) and orjson.loads(body)["ready"]

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def processing_rate(workers: list[Worker], n: int, timeout: float, say: Say) -> float:
    """Events/s from the first worker being ready to their consumed counters reaching n
    (the workers' own counts of processed messages, polled every 0.1 s)."""
    from prometheus_client.parser import text_string_to_metric_families

    def consumed() -> float:
        texts = [(w.get("/metrics") or b"").decode() for w in workers]
        return sum(
            s.value
            for text in texts
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "opspulse_events_consumed_total"
        )

    deadline = time.monotonic() + timeout
    while not any(w.ready() for w in workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    started, last_print = time.monotonic(), 0.0
    done = consumed()
    while done < n and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        done = consumed()
        if time.monotonic() - last_print > 10:
            last_print = time.monotonic()
            say(f"pipeline: {done:,.0f} of {n:,} processed")
    if done < n:
        raise RuntimeError(
            f"the worker processed {done:,.0f} of {n:,} events within {timeout:.0f}s"
        )
    return n / (time.monotonic() - started)


def histogram_quantiles(
    before: bytes, after: bytes, name: str, quantiles: tuple[float, ...]
) -> list[float | None]:
    """Quantiles (linear within buckets) of the observations between two scrapes."""
    from prometheus_client.parser import text_string_to_metric_families

    def buckets(text: bytes) -> dict[float, float]:
        return {
            float(s.labels["le"]): s.value
            for f in text_string_to_metric_families(text.decode())
            for s in f.samples
            if s.name == f"{name}_bucket"
        }

    b0, b1 = buckets(before), buckets(after)
    edges = sorted(b1)
    counts = [b1[e] - b0.get(e, 0) for e in edges]
    total = counts[-1] if counts else 0
    result: list[float | None] = []
    for q in quantiles:
        if not total:
            result.append(None)
            continue
        rank, lower, prev = q * total, 0.0, 0.0
        for edge, cumulative in zip(edges, counts, strict=True):
            if cumulative >= rank:
                upper = edge if edge != float("inf") else lower
                share = (rank - prev) / (cumulative - prev) if cumulative > prev else 1
                result.append(lower + (upper - lower) * share)
                break
            lower, prev = edge, cumulative
    return result


async def wait_consumed(config: Config, n: int, timeout: float, say: Say) -> tuple[float, float]:
    """(events/s, seconds) from the first to the last committed partial."""
    from agents.snapshot import KpiReader

    reader = KpiReader(bootstrap_servers(), config)
    deadline = time.monotonic() + timeout
    first_t = first_n = None
    consumed, last_print = 0, 0.0
    while time.monotonic() < deadline:
        consumed = (await reader.partials()).counters.get("consumed", 0)
        now = time.monotonic()
        if consumed and first_t is None:
            first_t, first_n = now, consumed
        if consumed >= n:
            break
        if now - last_print > 10:
            last_print = now
            say(f"pipeline: {consumed:,} of {n:,} committed")
        await asyncio.sleep(0.5)
    await reader.stop()
    if first_t is None or consumed < n:
        raise RuntimeError(
            f"the worker committed {consumed:,} of {n:,} events within {timeout:.0f}s"
        )
    elapsed = max(time.monotonic() - first_t, 1e-9)
    return (consumed - (first_n or 0)) / elapsed, elapsed


async def state_sizes(bootstrap: str, topic: str) -> tuple[int, float]:
    """(users, mean bytes of a user record) in a state topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        group_id=None,
        **kafka_security.client_kwargs(),
    )
    await consumer.start()
    latest: dict[bytes, int] = {}
    try:
        tps = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or range(8))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (
                await consumer.getmany(*tps, timeout_ms=1000, max_records=50_000)
            ).values():
                for r in records:
                    if r.key.startswith(b"u/"):
                        latest[r.key] = len(r.value)
    finally:
        await consumer.stop()
    return len(latest), (sum(latest.values()) / len(latest) if latest else 0.0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def bench(quick: bool, say: Say) -> dict[str, Any]:
    bootstrap = bootstrap_servers()
    n, users = (600_000, 40_000) if quick else (2_000_000, 120_000)
    run = f"bench-{int(time.time())}"
    config, config_path = _bench_config(run)
    say(f"generating {n:,} events (~{users:,} users) and producing them to {bootstrap}")
    messages = traffic(n, users)
    n = len(messages)
    await create_topics(bootstrap, [f"{run}.clicks", f"{run}.orders", f"{run}.all"], 8)
    await produce(bootstrap, messages, {"clicks": f"{run}.clicks", "orders": f"{run}.orders"})
    await produce(bootstrap, messages, {"clicks": f"{run}.all", "orders": f"{run}.all"})
    results: dict[str, Any] = dict.fromkeys(KEYS)

    say("raw aiokafka consumer + orjson")
    results["raw_consume_eps"] = await raw_consume(bootstrap, f"{run}.all", n)
    say("bare Faust agent (decode only)")
    results["bare_faust_eps"] = run_peer(
        "bench.faust_bare_app", [bootstrap, f"{run}.all", str(n), "{out}"], timeout=600
    )
    try:
        import quixstreams  # noqa: F401

        say("Quix Streams, per-user counter in RocksDB, exactly-once")
        with tempfile.TemporaryDirectory() as state_dir:
            results["quix_eps"] = run_peer(
                "bench.quix_app",
                [bootstrap, f"{run}.all", str(n), "{out}", state_dir, "exactly-once"],
                timeout=600,
            )
    except ImportError:
        say("Quix Streams not installed (pip install -e '.[bench]'): quix_eps skipped")

    say("idle worker on empty topics (baseline memory)")
    idle_config, idle_path = _bench_config(f"{run}-idle")
    idle = Worker(idle_path, free_port(), Path(tempfile.mkdtemp(prefix=f"{run}-idle-")))
    try:
        started = time.monotonic()
        while not idle.ready() and time.monotonic() - started < 120:
            await asyncio.sleep(0.2)
        rss_idle = idle.rss_bytes()
    finally:
        idle.stop()

    say("opspulse worker, every KPI, exactly-once")
    data_dir = Path(tempfile.mkdtemp(prefix=f"{run}-"))
    worker = Worker(config_path, free_port(), data_dir)
    try:
        results["pipeline_eps"] = await processing_rate([worker], n, timeout=900, say=say)
        await wait_consumed(config, n, timeout=120, say=say)  # and committed
        users_in_state, mean_bytes = await state_sizes(bootstrap, f"{run}.state")
        results["state_bytes_per_user"] = round(mean_bytes, 1)
        rss_users = max(worker.rss_bytes() - rss_idle, 0)  # what the users add to an idle worker
        results["rss_mb_per_100k_users"] = round(
            rss_users / 1e6 * 100_000 / max(users_in_state, 1), 1
        )

        rate = results["pipeline_eps"] / 2
        seconds = 15 if quick else 30
        say(f"latency at {rate:,.0f} events/s (half the pipeline rate) for {seconds}s")
        before = worker.get("/metrics") or b""
        await produce_live(bootstrap, config, rate, seconds)
        await wait_consumed(config, n + int(rate * seconds) - 100, timeout=120, say=say)
        after = worker.get("/metrics") or b""
        p50, p99 = histogram_quantiles(before, after, "opspulse_event_latency_seconds", (0.5, 0.99))
        results["latency_p50_ms"] = p50 and round(p50 * 1000, 1)
        results["latency_p99_ms"] = p99 and round(p99 * 1000, 1)

        say(f"recovery: kill -9 and restart with {users_in_state:,} users of state")
        worker.stop(signal.SIGKILL)
        started = time.monotonic()
        worker = Worker(config_path, free_port(), data_dir)
        while not worker.ready() and time.monotonic() - started < 300:
            await asyncio.sleep(0.1)
        results["recovery_s"] = round(time.monotonic() - started, 2)
        results["recovery_users"] = users_in_state
    finally:
        worker.stop()
    for peer in ("bare", "quix", "raw"):
        base = results[
            f"{peer}_faust_eps"
            if peer == "bare"
            else f"{peer}_eps"
            if peer == "quix"
            else "raw_consume_eps"
        ]
        results[f"pipeline_vs_{peer}"] = round(results["pipeline_eps"] / base, 3) if base else None
    for key in ("raw_consume_eps", "bare_faust_eps", "quix_eps", "pipeline_eps"):
        if results[key] is not None:
            results[key] = round(results[key])
    results["events"] = n
    return results


async def produce_live(bootstrap: str, config: Config, rate: float, seconds: float) -> None:
    """Page views stamped with the wall clock at `rate` events/s."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, **kafka_security.client_kwargs()
    )
    await producer.start()
    try:
        total = int(rate * seconds)
        started = time.monotonic()
        for i in range(total):
            user = f"live{i % 5000}"
            event = {
                "event_id": f"live-{started}-{i}",
                "user_id": user,
                "ts": int(time.time() * 1000),
                "type": "page_view",
            }
            await producer.send(config.topics.clicks, orjson.dumps(event), key=user.encode())
            if i % 100 == 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


async def two_workers(quick: bool, say: Say) -> dict[str, Any]:
    """The same traffic through two workers sharing the partitions (and the two cores with the broker)."""
    bootstrap = bootstrap_servers()
    n, users = (600_000, 40_000) if quick else (2_000_000, 120_000)
    run = f"bench-two-{int(time.time())}"
    config, config_path = _bench_config(run)
    messages = traffic(n, users)
    n = len(messages)
    await create_topics(bootstrap, [f"{run}.clicks", f"{run}.orders"], 8)
    await produce(bootstrap, messages, {"clicks": f"{run}.clicks", "orders": f"{run}.orders"})
    say("two workers on the same traffic")
    workers = [
        Worker(config_path, free_port(), Path(tempfile.mkdtemp(prefix=f"{run}-{i}-")))
        for i in range(2)
    ]
    try:
        eps = await processing_rate(workers, n, timeout=900, say=say)
        await wait_consumed(config, n, timeout=120, say=say)
    finally:
        for worker in workers:
            worker.stop()
    return {"two_workers_eps": round(eps)}


def run_bench(args: argparse.Namespace) -> int:
    if getattr(args, "soak", None) is not None:
        from bench.soak import run_soak

        return run_soak(args)
    say = Say(args.json)
    if getattr(args, "churn", False):
        from bench.churn import KEYS as CHURN_KEYS
        from bench.churn import churn_bench

        churn = churn_bench(args.churn_days, say)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"churn-{time.strftime('%Y%m%dT%H%M%S')}.json"
        path.write_bytes(orjson.dumps(churn, option=orjson.OPT_INDENT_2))
        say(f"saved {path}")
        print_results(churn, CHURN_KEYS, "opspulse bench --churn", args.json)
        return 0
    results = asyncio.run(bench(args.quick, say))
    if args.scaling:
        from bench.scaling import scaling

        results["scaling"] = scaling(say)
        results["scaling"].update(asyncio.run(two_workers(args.quick, say)))
        results["scaling"]["one_worker_eps"] = results["pipeline_eps"]
        from bench.scaling import disk_tier

        results["scaling"].update(disk_tier(say))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    say(f"saved {path}")
    print_results(results, KEYS, f"opspulse bench ({results['events']:,} events)", args.json)
    return 0


def print_results(results: dict[str, Any], keys: Sequence[str], title: str, as_json: bool) -> None:
    """The figures named by `keys`: one JSON object (--json) or a table."""
    if as_json:
        print(orjson.dumps({k: results[k] for k in keys}).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in keys:
        value = results[key]
        shown = (
            "n/a" if value is None
            else f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool)
            else str(value)
        )  # fmt: skip
        table.add_row(key, shown)
    Console().print(table)
