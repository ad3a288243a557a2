"""`opspulse demo`: everything local in one command.

Starts a local Kafka broker if none answers, one worker, and the traffic
generator at a modest rate, then prints a compact live summary every few
seconds until Ctrl-C, which stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agents.settings import add_config_argument, bootstrap_servers, broker_url, load_config

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = ROOT / "deploy" / "local" / "kafka"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--rate", type=float, default=500, help="generated events per second (default 500)"
    )
    parser.add_argument(
        "--web-port", type=int, default=6066, help="the worker's HTTP port (default 6066)"
    )
    parser.add_argument(
        "--every", type=float, default=5, help="seconds between summaries (default 5)"
    )
    parser.add_argument("--seed", type=int, default=1)


async def _broker_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    from agents import kafka_security

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=3000, **kafka_security.client_kwargs()
    )
    try:
        await asyncio.wait_for(admin.start(), 5)
        await admin.close()
        return True
    except Exception:
        with contextlib.suppress(Exception):
            await admin.close()
        return False


def _demo_config(args: argparse.Namespace) -> str:
    """A fresh app id and topics per run, so a second demo never meets the first one's data."""
    if args.config:
        return args.config
    run = f"demo-{int(time.time())}"
    path = ROOT / ".opspulse" / f"{run}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f'app_id = "opspulse-{run}"\n[topics]\nclicks = "{run}.clicks"\norders = "{run}.orders"\n'
        f'spend = "{run}.spend"\ndlq = "{run}.dlq"\nkpi = "{run}.kpi"\n'
    )
    return str(path)


def run_demo(args: argparse.Namespace) -> int:
    args.config = _demo_config(args)
    config = load_config(args.config)
    bootstrap = bootstrap_servers()
    started_kafka = False
    if not asyncio.run(_broker_answers(bootstrap)):
        if not KAFKA_SCRIPT.exists():
            raise RuntimeError(f"no Kafka at {bootstrap} and no {KAFKA_SCRIPT} to start one")
        port = bootstrap.rsplit(":", 1)[-1]
        print(
            f"demo: no broker at {bootstrap}; starting a local one (deploy/local/kafka)...",
            file=sys.stderr,
        )
        subprocess.run(
            [str(KAFKA_SCRIPT), "start"], env={**os.environ, "KAFKA_PORT": port}, check=True
        )
        started_kafka = True
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "worker",
            "--web-port",
            str(args.web_port),
            "--config",
            args.config,
        ],
        env={**os.environ, "OPSPULSE_BROKER": broker_url()},
        stdout=subprocess.DEVNULL,
        stderr=open(ROOT / ".opspulse-demo-worker.log", "ab"),  # noqa: SIM115
    )
    print(
        f"demo: worker on http://127.0.0.1:{args.web_port} (/report, /metrics, /users/<id>); "
        f"generating {args.rate:g} events/s; Ctrl-C stops everything",
        file=sys.stderr,
    )
    try:
        asyncio.run(_live(args, config, bootstrap))
    except KeyboardInterrupt:
        pass
    finally:
        print("\ndemo: stopping the worker...", file=sys.stderr)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        if started_kafka:
            print("demo: stopping the local Kafka broker...", file=sys.stderr)
            subprocess.run(
                [str(KAFKA_SCRIPT), "stop"],
                env={**os.environ, "KAFKA_PORT": bootstrap.rsplit(":", 1)[-1]},
            )
    return 0


async def _live(args: argparse.Namespace, config, bootstrap: str) -> None:  # type: ignore[no-untyped-def]
    from agents.generate import produce
    from agents.snapshot import KpiReader
    from state.report import build_report
    from streams.generator import GeneratorSpec

    # Simulated time runs faster than the clock: start a year back so it stays in the past.
    start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 365 * 86400))
    spec = GeneratorSpec(
        seed=args.seed,
        days=365,
        start=start,
        new_users_per_day=300,
        duplicate_rate=0.01,
        invalid_rate=0.001,
    )
    stop = asyncio.Event()
    sent: dict[str, int] = {}
    counts_task = asyncio.create_task(
        produce(spec, bootstrap, config, rate=args.rate, stop=stop, counts=sent)
    )
    last_consumed, last_time = 0, time.monotonic()
    reader = KpiReader(bootstrap, config)  # reads only what is new at each refresh
    try:
        while True:
            await asyncio.sleep(args.every)
            if counts_task.done():
                counts_task.result()  # surface producer errors
            report = build_report(await reader.partials(), config)
            now = time.monotonic()
            consumed = report["events"]["consumed"]
            rate = (consumed - last_consumed) / (now - last_time)
            last_consumed, last_time = consumed, now
            lag = sent.get("clicks", 0) + sent.get("orders", 0) - consumed
            print(_summary(report, rate, lag), flush=True)
    finally:
        stop.set()
        await reader.stop()
        with contextlib.suppress(Exception):
            await counts_task


def _summary(report: dict, rate: float, lag: int) -> str:
    days = report["days"]
    if not days:
        return "waiting for the first events..."
    day = max(days)
    d = days[day]
    funnel = next(iter(report["funnels"].values()), None)
    steps = funnel["days"].get(day, []) if funnel else []
    events = report["events"]
    return (
        f"{day}  dau {d['dau']:>6,}  new {d['new_users']:>5,}  paying {d['paying_users']:>4,}  "
        f"gmv {d['gmv']:>11,.2f}  funnel {'>'.join(str(n) for n in steps)}  "
        f"| {rate:,.0f} ev/s  lag {max(lag, 0):,}  consumed {events['consumed']:,}  "
        f"dup {events['duplicates']:,}  invalid {events['invalid']:,}  late {events['late']:,}"
    )
