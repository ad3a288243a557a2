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
        "--rate", type=float, default=None,
        help="generated events per second (default 500; 5000 with --incident)",
    )  # fmt: skip
    parser.add_argument(
        "--incident", action="store_true",
        help="6 simulated days of busier traffic with add to cart failing on android for an "
        "hour on the last one: watch the business alert fire, name android and resolve",
    )  # fmt: skip
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
    topics = "\n".join(
        f'{name} = "{run}.{name}"'
        for name in ("clicks", "orders", "spend", "dlq", "kpi", "segments", "alerts", "triggers")
    )
    alerts = f"[alerts]\n{INCIDENT_ALERTS}\n" if args.incident else ""
    path.write_text(f'app_id = "opspulse-{run}"\n{alerts}[topics]\n{topics}\n')
    return str(path)


# With --incident: the step the incident hits is watched too (page views are plentiful
# enough at 3,000 new users a day for a 15-minute window to be judged).
INCIDENT_ALERTS = (
    'pairs = ["purchase:page_view>add_to_cart", "purchase:add_to_cart>checkout", '
    '"purchase:checkout>order_paid"]'
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does


def run_demo(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    if args.rate is None:
        args.rate = 5000.0 if args.incident else 500.0
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
    import orjson
    from aiokafka import AIOKafkaConsumer

    from agents import kafka_security
    from agents.generate import produce
    from agents.snapshot import KpiReader
    from agents.topics import ensure_topics
    from streams.generator import GeneratorSpec, Incident

    # Simulated time runs faster than the clock: start in the past so it stays there.
    days = 6 if args.incident else 365
    start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - (days + 1) * 86400))
    incident = None
    if args.incident:
        incident_ms = (int(time.time()) // 86400 - 2) * 86_400_000 + 19 * 3_600_000
        incident = Incident(incident_ms, minutes=60, step="add_to_cart", factor=0.0)
        when = time.strftime("%Y-%m-%d 19:00-20:00 UTC", time.gmtime(incident_ms / 1000))
        print(
            f"demo: incident injected: add_to_cart fails for device=android on {when} "
            "(simulated time); the first 3 days are the baseline",
            file=sys.stderr,
        )
    spec = GeneratorSpec(
        seed=args.seed, days=days, start=start,
        new_users_per_day=3000 if args.incident else 300,
        duplicate_rate=0.01, invalid_rate=0.001, incident=incident,
    )  # fmt: skip
    stop = asyncio.Event()
    sent: dict[str, int] = {}
    counts_task = asyncio.create_task(
        produce(spec, bootstrap, config, rate=args.rate, stop=stop, counts=sent)
    )
    last_consumed, last_time = 0, time.monotonic()
    reader = KpiReader(bootstrap, config)  # reads only what is new at each refresh
    await ensure_topics(bootstrap, config, config.app_id)  # the alerts topic, to subscribe
    alerts = AIOKafkaConsumer(
        config.topics.alerts, bootstrap_servers=bootstrap, isolation_level="read_committed",
        auto_offset_reset="earliest", group_id=None, **kafka_security.client_kwargs(),
    )  # fmt: skip
    await alerts.start()
    try:
        while True:
            await asyncio.sleep(args.every)
            if counts_task.done():
                counts_task.result()  # surface producer errors
            report = await reader.report()
            for records in (await alerts.getmany(timeout_ms=100)).values():
                for record in records:
                    print(_alert_line(orjson.loads(record.value)), flush=True)
            now = time.monotonic()
            consumed = report["events"]["consumed"]
            rate = (consumed - last_consumed) / (now - last_time)
            last_consumed, last_time = consumed, now
            lag = sent.get("clicks", 0) + sent.get("orders", 0) - consumed
            print(_summary(report, rate, lag), flush=True)
    finally:
        stop.set()
        await reader.stop()
        await alerts.stop()
        with contextlib.suppress(Exception):
            await counts_task


def _alert_line(alert: dict) -> str:
    """One published alert record (`opspulse.alerts`), as ops would read it."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(alert["ts"] / 1000))
    where = ", ".join(f"{k}={v}" for k, v in alert["dims"].items()) or "broad"
    return f"ALERT {alert['state'].upper()} at {when} [{alert['key']}, {where}]: {alert['detail']}"


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
