"""`opspulse generate`: synthetic traffic to JSONL files (and, later, to Kafka)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", metavar="DIR", required=True, help="write clicks/orders/spend JSONL here"
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


def run_generate(args: argparse.Namespace) -> int:
    from agents.cli import UsageError
    from streams.generator import GeneratorSpec, write_files

    if args.days <= 0 or args.users_per_day <= 0:
        raise UsageError("--days and --users-per-day must be positive")
    if not (0 <= args.duplicate_rate < 1 and 0 <= args.invalid_rate < 1):
        raise UsageError("--duplicate-rate and --invalid-rate must be in [0, 1)")
    spec = GeneratorSpec(
        seed=args.seed,
        days=args.days,
        start=args.start,
        new_users_per_day=args.users_per_day,
        duplicate_rate=args.duplicate_rate,
        invalid_rate=args.invalid_rate,
    )
    started = time.monotonic()
    last = [started]

    def progress(n: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2:
            last[0] = now
            print(f"generate: {n:,} events", file=sys.stderr, flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = write_files(spec, out, gzip=args.gzip, progress=progress)
    elapsed = time.monotonic() - started
    total = sum(counts.values())
    summary = ", ".join(f"{name}: {n:,}" for name, n in counts.items())
    print(f"generate: {total:,} lines in {elapsed:.1f} s to {out} ({summary})", file=sys.stderr)
    return 0
