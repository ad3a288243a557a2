"""`opspulse replay`: fold JSONL files (optionally .gz) in `ts` order into a report.

Inputs are read as streams. Files that are in time order up to a small
disorder (redeliveries a few minutes late) go through a bounded reorder
buffer; a file with more disorder is sorted externally in spilled runs, so
memory stays bounded apart from the per-user state.
"""

from __future__ import annotations

import gc
import gzip
import heapq
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from state.config import Config
from state.partitions import PartitionedFold
from state.report import build_report, day_range, user_summary
from streams.events import Event, Invalid, SpendEvent, parse_event, parse_spend

REORDER_MS = 3_600_000  # disorder absorbed in memory before a file is sorted externally
RUN_LINES = 1_000_000  # lines per sorted run when sorting externally
BATCH = 4096


class UnsortedInput(Exception):
    """A file is more out of order than the reorder buffer absorbs."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


def open_lines(path: Path) -> Iterator[bytes]:
    """Non-blank lines of a JSONL file, gzip-compressed if its name ends in .gz."""
    handle: IO[bytes] = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    with handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


@dataclass
class Progress:
    """Throttled progress lines on stderr for long replays."""

    enabled: bool = True
    every_s: float = 2.0
    events: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = field(default_factory=time.monotonic)

    def tick(self, n: int) -> None:
        self.events += n
        now = time.monotonic()
        if self.enabled and now - self._last >= self.every_s:
            self._last = now
            rate = self.events / max(now - self.started, 1e-9)
            print(
                f"replay: {self.events:,} events, {rate:,.0f} events/s", file=sys.stderr, flush=True
            )

    def rate(self) -> float:
        return self.events / max(time.monotonic() - self.started, 1e-9)


class Replay:
    """One replay over click, order and spend files."""

    def __init__(
        self, config: Config, *, progress: Progress | None = None,
        derived_outputs: dict[str, Path] | None = None,
        now_ms: int | None = None, until_ms: int | None = None,
    ) -> None:  # fmt: skip
        """`derived_outputs`: a JSON Lines file per derived record kind (state/outbox.py
        KINDS) to write the records the cluster would send to that derived topic.
        `now_ms`: the wall clock that `ts` more than a day ahead is judged against, as
        the worker does (default: the time the replay starts). `until_ms`: events
        after this event time are not applied (the report as of that moment)."""
        self.config = config
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.until_ms = until_ms
        self.progress = progress or Progress(enabled=False)
        self.derived_outputs = derived_outputs or {}
        self._derived: dict[str, IO[bytes]] = {}
        self._sorted_copies: dict[Path, tuple[list[Path], int]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="opspulse-replay-")

    def _parser(self, kind: str) -> Callable[[bytes], Any]:
        max_bytes, now_ms = self.config.max_message_bytes, self.now_ms
        if kind == "spend":
            return lambda raw: parse_spend(raw, max_bytes=max_bytes, now_ms=now_ms)
        return lambda raw: parse_event(raw, max_bytes=max_bytes, now_ms=now_ms)

    def _events(
        self, path: Path, kind: str, order: int, fold: PartitionedFold
    ) -> Iterator[tuple[int, int, int, Any]]:
        """(ts, file order, line number, event) in ts order; invalid lines are counted."""
        parse = self._parser(kind)
        if path in self._sorted_copies:
            runs, invalid = self._sorted_copies[path]
            fold.count_invalid(invalid)
            merged = heapq.merge(*(open_lines(run) for run in runs))
            for seq, line in enumerate(merged):
                event = parse(line[27:])
                yield event.ts, order, seq, event
            return
        buffer: list[tuple[int, int, int, Any]] = []
        released = -1
        high = -1
        for seq, line in enumerate(open_lines(path)):
            event = parse(line)
            if isinstance(event, Invalid):
                fold.count_invalid()
                continue
            ts = event.ts
            if ts < released:
                raise UnsortedInput(path)
            heapq.heappush(buffer, (ts, order, seq, event))
            if ts > high:
                high = ts
                while buffer and buffer[0][0] < high - REORDER_MS:
                    item = heapq.heappop(buffer)
                    released = item[0]
                    yield item
        while buffer:
            yield heapq.heappop(buffer)

    def _sort_externally(self, path: Path, kind: str) -> None:
        """Sorted runs of the file's valid lines, each line prefixed with a sortable key."""
        parse = self._parser(kind)
        runs: list[Path] = []
        invalid = 0
        lines = enumerate(open_lines(path))
        while True:
            chunk = []
            for seq, line in itertools.islice(lines, RUN_LINES):
                event = parse(line)
                if isinstance(event, Invalid):
                    invalid += 1
                else:
                    chunk.append(b"%015d%012d" % (event.ts, seq) + line)
            if not chunk:
                break
            chunk.sort()
            run = Path(self._tmp.name) / f"{path.name}.{len(runs)}.run"
            run.write_bytes(b"\n".join(chunk) + b"\n")
            runs.append(run)
        self._sorted_copies[path] = (runs, invalid)

    def run(self, inputs: list[tuple[Path, str]]) -> PartitionedFold:
        """Fold the inputs; a too-disordered file is sorted and the replay restarted."""
        topics = self.config.topics
        user_topics = [getattr(topics, kind) for _, kind in inputs if kind != "spend"]
        while True:
            fold = PartitionedFold(self.config, user_topics)
            # (Re)opened on every attempt: a restarted replay starts its outputs afresh.
            self._derived = {kind: open(path, "wb") for kind, path in self.derived_outputs.items()}  # noqa: SIM115
            try:
                self._fold(inputs, fold)
                return fold
            except UnsortedInput as exc:
                kind = dict(inputs)[exc.path]
                print(f"replay: {exc.path} is not in time order; sorting it first", file=sys.stderr)
                self.progress = Progress(enabled=self.progress.enabled)
                self._sort_externally(exc.path, kind)
            finally:
                for handle in self._derived.values():
                    handle.close()

    def _fold(self, inputs: list[tuple[Path, str]], fold: PartitionedFold) -> None:
        streams = [self._events(path, kind, i, fold) for i, (path, kind) in enumerate(inputs)]
        topic_of = [getattr(self.config.topics, kind) for _, kind in inputs]
        batch: list[tuple[str, str, Event]] = []
        until = self.until_ms if self.until_ms is not None else float("inf")
        for ts, order, _, event in heapq.merge(*streams):
            if ts > until:
                continue  # read on: invalid lines anywhere in the files are still counted
            if isinstance(event, SpendEvent):
                self._flush(fold, batch)
                fold.apply_spend([event])
                continue
            batch.append((topic_of[order], event.user_id, event))
            if len(batch) >= BATCH:
                self._flush(fold, batch)
        self._flush(fold, batch)

    def _flush(self, fold: PartitionedFold, batch: list[tuple[str, str, Event]]) -> None:
        if batch:
            fold.apply_batch(batch)
            self.progress.tick(len(batch))
            batch.clear()
        self._write_derived(fold)

    def _write_derived(self, fold: PartitionedFold) -> None:
        """The records the cluster would send to the derived topics, one JSON line each."""
        for record in fold.drain_outbox():
            handle = self._derived.get(record.kind)
            if handle is not None:
                handle.write(orjson.dumps(record.value) + b"\n")


def replay_files(
    config: Config,
    clicks: Path | None,
    orders: Path | None,
    spend: Path | None = None,
    *,
    progress: bool = False,
    derived_outputs: dict[str, Path] | None = None,
    now_ms: int | None = None,
    until_ms: int | None = None,
) -> tuple[dict[str, Any], PartitionedFold, float]:
    """Report, final fold state and events/s for the given files."""
    inputs = [
        (p, kind) for p, kind in ((clicks, "clicks"), (orders, "orders"), (spend, "spend")) if p
    ]
    for path, _ in inputs:
        if not path.exists():
            raise FileNotFoundError(f"input file not found: {path}")
    replay = Replay(
        config, progress=Progress(enabled=progress), derived_outputs=derived_outputs,
        now_ms=now_ms, until_ms=until_ms,
    )  # fmt: skip
    # Millions of long-lived records and no reference cycles: the cyclic GC would only
    # rescan them over and over (measured: +42% events/s without it).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        fold = replay.run(inputs)
    finally:
        if gc_was_enabled:
            gc.enable()
    report = build_report(fold.partials, config)
    report["alerts"] = fold.evaluator.open_alerts()
    return report, fold, replay.progress.rate()


def write_users(fold: PartitionedFold, path: Path) -> None:
    """One line per user, classified as of the end of the report's last day."""
    days = day_range(fold.partials)
    last = days[-1] if days else 0
    with open(path, "wb") as out:
        for user_id in sorted(fold.users):
            score = fold.churn_score(user_id, last)
            summary = user_summary(user_id, fold.users[user_id], last, fold.config, score)
            out.write(orjson.dumps(summary) + b"\n")


def write_json(data: Any, path: str | None) -> None:
    """JSON to a file, or to stdout when no path is given."""
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if path:
        tmp = f"{path}.tmp{os.getpid()}"
        Path(tmp).write_bytes(body)
        os.replace(tmp, path)
    else:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
