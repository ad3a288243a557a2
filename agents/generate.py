"""`opspulse generate`: synthetic traffic to JSONL files or to Kafka."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="write clicks/orders/spend JSONL here")
    target.add_argument(
        "--kafka", action="store_true", help="produce to the configured topics ($OPSPULSE_BROKER)"
    )
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration (topic names) for --kafka"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="with --kafka: events per second (default: as fast as possible)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same bytes)")
    parser.add_argument("--days", type=int, default=14, help="simulated days (default 14)")
    parser.add_argument(
        "--start", default="2026-11-01", help="first simulated day, UTC (YYYY-MM-DD)"
    )
    parser.add_argument(
        "--users-per-day", type=int, default=200, help="new users per day (default 200)"
    )
    parser.add_argument(
        "--duplicate-rate", type=float, default=0.01, help="fraction redelivered (default 0.01)"
    )
    parser.add_argument(
        "--invalid-rate", type=float, default=0.0, help="fraction of malformed lines added"
    )
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz files")
    parser.add_argument(
        "--incident",
        metavar="SPEC",
        help="inject a failing step, e.g. 'start=2026-11-05T19:00:00Z,minutes=30,"
        "step=order_paid,device=android,factor=0.3' (step: add_to_cart, checkout, "
        "order_created, order_paid; one of device=, channel=, region=)",
    )
    parser.add_argument(
        "--churn",
        action="store_true",
        help="users leave for good, for known causes (declining engagement, unpaid carts, "
        "refunds, channel); see streams/generator.py",
    )


def parse_incident(text: str) -> object:
    """`--incident` → streams.generator.Incident; UsageError naming what is wrong."""
    from agents.cli import UsageError, _instant
    from streams.generator import Incident

    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not value:
            raise UsageError(f"--incident: expected key=value pairs, got {part!r}")
        fields[key.strip()] = value.strip()
    if "start" not in fields:
        raise UsageError("--incident: start= is required (RFC 3339 or epoch ms)")
    kwargs: dict[str, object] = {"start_ms": _instant(fields.pop("start"), "--incident start")}
    dims = [d for d in ("device", "channel", "region") if d in fields]
    if len(dims) > 1:
        raise UsageError("--incident: one of device=, channel=, region=")
    if dims:
        kwargs["dimension"], kwargs["value"] = dims[0], fields.pop(dims[0])
    try:
        if "minutes" in fields:
            kwargs["minutes"] = int(fields.pop("minutes"))
        if "factor" in fields:
            kwargs["factor"] = float(fields.pop("factor"))
        if "step" in fields:
            kwargs["step"] = fields.pop("step")
        if fields:
            raise ValueError(f"unknown keys {', '.join(sorted(fields))}")
        return Incident(**kwargs)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(f"--incident: {exc}") from None


class _Progress:
    def __init__(self, label: str) -> None:
        self.label = label
        self.started = self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        now = time.monotonic()
        if now - self.last >= 2:
            self.last = now
            rate = n / max(now - self.started, 1e-9)
            print(f"{self.label}: {n:,} events, {rate:,.0f}/s", file=sys.stderr, flush=True)


def run_generate(args: argparse.Namespace) -> int:
    from agents.cli import UsageError
    from streams.generator import GeneratorSpec, write_files

    if args.days <= 0 or args.users_per_day <= 0:
        raise UsageError("--days and --users-per-day must be positive")
    if not (0 <= args.duplicate_rate < 1 and 0 <= args.invalid_rate < 1):
        raise UsageError("--duplicate-rate and --invalid-rate must be in [0, 1)")
    if args.rate < 0:
        raise UsageError("--rate must be >= 0")
    incident = parse_incident(args.incident) if args.incident else None
    spec = GeneratorSpec(
        seed=args.seed, days=args.days, start=args.start, new_users_per_day=args.users_per_day,
        duplicate_rate=args.duplicate_rate, invalid_rate=args.invalid_rate,
        incident=incident, churn=args.churn,
    )  # fmt: skip
    started = time.monotonic()
    if args.kafka:
        from agents.settings import bootstrap_servers, load_config

        counts = asyncio.run(
            produce(spec, bootstrap_servers(), load_config(args.config), args.rate)
        )
        where = bootstrap_servers()
    else:
        out = Path(args.out)
        counts = write_files(spec, out, gzip=args.gzip, progress=_Progress("generate"))
        where = str(out)
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{name}: {n:,}" for name, n in counts.items())
    print(
        f"generate: {sum(counts.values()):,} events in {elapsed:.1f} s to {where} ({summary})",
        file=sys.stderr,
    )
    return 0


async def produce(  # type: ignore[no-untyped-def]
    spec,
    bootstrap: str,
    config,
    rate: float = 0,
    stop: asyncio.Event | None = None,
    counts: dict[str, int] | None = None,
) -> dict[str, int]:
    """Send the generated traffic keyed by user (spend by channel), in event-time order."""
    import orjson
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from agents import kafka_security
    from agents.topics import ensure_topics
    from streams.generator import generate

    partitions = await ensure_topics(bootstrap, config, config.app_id)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security.client_kwargs())
    await admin.start()
    try:
        if config.topics.spend not in await admin.list_topics():
            await admin.create_topics([NewTopic(config.topics.spend, partitions, 1)])
    finally:
        await admin.close()
    names = {
        "clicks": config.topics.clicks,
        "orders": config.topics.orders,
        "spend": config.topics.spend,
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=256 * 1024,
        acks="all",
        **kafka_security.client_kwargs(),
    )
    await producer.start()
    counts = counts if counts is not None else {}
    counts.update({"clicks": 0, "orders": 0, "spend": 0})
    progress = _Progress("generate --kafka")
    started = time.monotonic()
    pending = []
    try:
        for n, (topic, line) in enumerate(generate(spec), 1):
            if stop is not None and stop.is_set():
                break
            try:
                obj = orjson.loads(line)
                key = str(obj.get("channel" if topic == "spend" else "user_id", "")).encode()
            except (orjson.JSONDecodeError, AttributeError):
                key = b""  # a malformed line still goes out, as a producer bug would send it
            pending.append(await producer.send(names[topic], line, key=key))
            counts[topic] += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if rate and n % 100 == 0:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            progress(n)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return counts
