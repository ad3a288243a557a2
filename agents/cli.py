"""The `opspulse` command line (see the contract: replay, worker, snapshot, report, generate,
demo, bench).

Exit status: 0 ok, 2 bad usage or configuration, 1 runtime error with a
one-line message (the traceback only with --debug).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from agents.settings import add_config_argument
from state.config import ConfigError
from state.outbox import KINDS


class UsageError(Exception):
    """Bad command-line usage (exit 2)."""


def _replay(args: argparse.Namespace) -> int:
    from agents.replay import replay_files, write_json, write_users
    from agents.settings import load_config

    config = load_config(args.config)
    if not args.clicks and not args.orders:
        raise UsageError("replay needs --clicks and/or --orders")
    report, fold, rate = replay_files(
        config,
        Path(args.clicks) if args.clicks else None,
        Path(args.orders) if args.orders else None,
        Path(args.spend) if args.spend else None,
        progress=not args.quiet,
        derived_outputs={
            kind: Path(path) for kind in KINDS if (path := getattr(args, f"{kind}_output", None))
        },
        now_ms=_instant(args.now, "--now"),
        until_ms=_instant(args.until, "--until"),
    )
    write_json(report, args.output)
    if args.users_output:
        write_users(fold, Path(args.users_output))
    if not args.quiet:
        events = report["events"]
        print(
            f"replay: {events['consumed']:,} events ({events['valid']:,} valid, "
            f"{events['duplicates']:,} duplicates, {events['invalid']:,} invalid), "
            f"{len(fold.users):,} users, {rate:,.0f} events/s",
            file=sys.stderr,
        )
    return 0


def _instant(text: str | None, flag: str) -> int | None:
    """An instant given on the command line: epoch ms or RFC 3339 with an offset."""
    if text is None:
        return None
    from streams.events import parse_ts

    try:
        return parse_ts(int(text) if text.lstrip("-").isdigit() else text, now_ms=1 << 62)
    except Exception:
        raise UsageError(
            f"{flag}: expected epoch milliseconds or RFC 3339 like 2026-11-05T00:00:00+08:00, "
            f"got {text!r}"
        ) from None


def _generate(args: argparse.Namespace) -> int:
    from agents.generate import run_generate

    return run_generate(args)


def _worker(args: argparse.Namespace) -> int:
    from agents.worker import run_worker

    return run_worker(args)


def _snapshot(args: argparse.Namespace) -> int:
    from agents.snapshot import run_snapshot

    return run_snapshot(args)


def _report(args: argparse.Namespace) -> int:
    """The report as one self-contained HTML page: from --input (a report JSON file,
    '-' for stdin), else the live cluster snapshot (as `opspulse snapshot`)."""
    import orjson

    from agents.page import render_page

    if args.input is None:
        import asyncio

        from agents.settings import bootstrap_servers, load_config
        from agents.snapshot import snapshot_report

        report = asyncio.run(snapshot_report(bootstrap_servers(), load_config(args.config)))
    else:
        source = "stdin" if args.input == "-" else args.input
        try:
            body = sys.stdin.buffer.read() if args.input == "-" else Path(args.input).read_bytes()
        except FileNotFoundError:
            raise RuntimeError(f"input file not found: {args.input}") from None
        try:
            report = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RuntimeError(f"{source}: not JSON ({exc})") from None
        if not isinstance(report, dict) or report.get("schema") != "opspulse.report/1":
            raise RuntimeError(f"{source}: not an opspulse report (schema opspulse.report/1)")
    page = render_page(report)
    if args.html == "-":
        sys.stdout.write(page)
        sys.stdout.flush()
    else:
        tmp = Path(f"{args.html}.tmp{os.getpid()}")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, args.html)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from agents.demo import run_demo

    return run_demo(args)


def _bench(args: argparse.Namespace) -> int:
    from bench.run import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opspulse",
        description="Real-time operations metrics from Kafka click and order streams.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    replay = sub.add_parser("replay", help="compute the report from JSONL files (batch)")
    replay.add_argument("--clicks", metavar="FILE", help="click events, JSON Lines (.gz ok)")
    replay.add_argument("--orders", metavar="FILE", help="order events, JSON Lines (.gz ok)")
    replay.add_argument("--spend", metavar="FILE", help="acquisition spend events, JSON Lines")
    add_config_argument(replay)
    replay.add_argument("--output", metavar="FILE", help="write the report here (default: stdout)")
    replay.add_argument("--users-output", metavar="FILE", help="write one JSON line per user here")
    for kind in KINDS:
        flag = kind.replace("_", "-")
        replay.add_argument(
            f"--{flag}-output", metavar="FILE",
            help=f"write the records the cluster sends to the {flag} topic here (JSON Lines)",
        )  # fmt: skip
    replay.add_argument(
        "--now", metavar="TS",
        help="judge ts more than 1 day ahead of this instant invalid, as workers do with "
        "their clock (epoch ms or RFC 3339; default: now)",
    )  # fmt: skip
    replay.add_argument(
        "--until", metavar="TS",
        help="apply events up to this event time only: the report and users as of then",
    )  # fmt: skip
    replay.add_argument("--quiet", action="store_true", help="no progress on stderr")
    replay.set_defaults(func=_replay)

    generate = sub.add_parser("generate", help="synthetic click/order/spend traffic")
    from agents.generate import add_generate_arguments

    add_generate_arguments(generate)
    generate.set_defaults(func=_generate)

    worker = sub.add_parser("worker", help="run one streaming worker (Faust)")
    add_config_argument(worker)
    worker.add_argument("--web-port", type=int, default=6066, help="HTTP port (default 6066)")
    worker.add_argument(
        "--web-host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)"
    )
    worker.add_argument(
        "--data-dir", default=".opspulse", help="local state directory (default .opspulse)"
    )
    worker.add_argument(
        "--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"]
    )
    worker.set_defaults(func=_worker)

    snapshot = sub.add_parser("snapshot", help="the live cluster-wide report (from opspulse.kpi)")
    add_config_argument(snapshot)
    snapshot.add_argument(
        "--output", metavar="FILE", help="write the report here (default: stdout)"
    )
    snapshot.set_defaults(func=_snapshot)

    report = sub.add_parser(
        "report", help="the report as one self-contained HTML page (charts, tables)"
    )
    report.add_argument(
        "--html", metavar="FILE", required=True, help="write the page here ('-': stdout)"
    )
    report.add_argument(
        "--input", metavar="FILE",
        help="the report JSON to show, as `replay` or `snapshot` write it ('-': stdin; "
        "default: the live cluster snapshot, read like `opspulse snapshot`)",
    )  # fmt: skip
    add_config_argument(report)
    report.set_defaults(func=_report)

    demo = sub.add_parser("demo", help="local Kafka + one worker + generated traffic, live summary")
    from agents.demo import add_demo_arguments

    add_demo_arguments(demo)
    demo.set_defaults(func=_demo)

    bench = sub.add_parser(
        "bench", help="throughput, latency, memory and recovery against local Kafka"
    )
    from bench.run import add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError) as exc:
        print(f"opspulse {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for people, the traceback on request
        if args.debug:
            traceback.print_exc()
        print(f"opspulse {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
