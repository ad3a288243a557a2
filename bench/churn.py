"""`opspulse bench --churn`: the churn model's quality and costs (issue targets: exact
prequential AUC >= 0.80 at a 7-day horizon on generated traffic; <= 30 µs per scored
user-day; <= 5 µs per event on the hot path), and, with `lifetimes` installed, the
comparison with recency and BG/NBD on a real purchase log (bench/churn_real.py).

Everything runs in this process on generated files (no broker): the churn work is
pure state/ code, the same in replay and in the workers.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from agents.replay import replay_files
from state.config import Config
from state.kpis.churn import ChurnLearner
from streams.generator import GeneratorSpec, write_files

KEYS = (
    "churn_auc_generated", "churn_auc_generated_last_7d", "churn_log_loss_generated",
    "churn_base_log_loss_generated", "churn_labelled_generated", "churn_us_per_scored_user_day",
    "churn_us_per_event", "churn_bytes_per_pending_prediction",
    "churn_stored_bytes_per_pending_prediction", "churn_real",
)  # fmt: skip


def add_churn_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--churn", action="store_true",
        help="churn model quality (generated traffic, and a real purchase log) and costs",
    )  # fmt: skip
    parser.add_argument(
        "--churn-days", type=int, default=60, metavar="DAYS",
        help="simulated days of the generated churn traffic (default 60)",
    )  # fmt: skip


def churn_bench(days: int, say: Any) -> dict[str, Any]:
    spec = GeneratorSpec(seed=11, days=days, new_users_per_day=300, churn=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="opspulse-churn-bench-") as tmp:
        say(f"churn: generating {days} days with churn causes")
        write_files(spec, Path(tmp))
        clicks, orders = Path(tmp) / "clicks.jsonl", Path(tmp) / "orders.jsonl"
        say("churn: replay with it (7-day horizon, the defaults)")
        in_days = [0.0]
        advance = ChurnLearner.advance

        def timed(self: ChurnLearner, final_ms: int) -> bool:
            t = time.perf_counter()
            done = advance(self, final_ms)
            in_days[0] += time.perf_counter() - t
            return done

        ChurnLearner.advance = timed  # type: ignore[method-assign]
        try:
            report, fold, _ = replay_files(Config(), clicks, orders)
        finally:
            ChurnLearner.advance = advance  # type: ignore[method-assign]
        say("churn: the hot path, 3 x (replay without the model, with it but no day work)")
        hot_path_us = hot_path_cost(clicks, orders, report["events"]["consumed"])
    churn = report["churn"]
    events = report["events"]["consumed"]
    scored = churn["predictions"] + churn["labelled"]
    pending = [e for f in fold.folds for u in f.users.values() for e in u.churn_pending]
    stored = orjson.dumps(pending)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = orjson.loads(stored)  # new objects, as a restore makes them (copies share floats)
    per_pending = (tracemalloc.get_traced_memory()[0] - before) / max(len(kept), 1)
    tracemalloc.stop()
    results.update(
        churn_auc_generated=churn["auc"],
        churn_auc_generated_last_7d=churn["last_7d"]["auc"],
        churn_log_loss_generated=churn["log_loss"],
        churn_base_log_loss_generated=churn["base_log_loss"],
        churn_labelled_generated=churn["labelled"],
        # The day-end work (features, scoring, labelling, learning) per prediction made
        # or labelled; the hot path is what the rest of the replay costs more per event.
        churn_us_per_scored_user_day=round(in_days[0] / max(scored, 1) * 1e6, 2),
        churn_us_per_event=hot_path_us,
        churn_bytes_per_pending_prediction=round(per_pending),
        churn_stored_bytes_per_pending_prediction=round(
            sum(len(orjson.dumps(e)) for e in pending) / max(len(pending), 1)
        ),
        churn_events=events,
    )
    results["churn_real"] = real_log_comparison(say)
    return results


def hot_path_cost(clicks: Path, orders: Path, events: int) -> float:
    """µs per event the model adds outside the day-end work (marking active users,
    the day-boundary check, the cart and refund days): the median of 3 paired replays,
    one without the model and one with it and its day work switched off."""
    off = Config.from_mapping({"churn": {"enabled": False}})
    advance = ChurnLearner.advance
    differences = []
    for _ in range(3):
        started = time.perf_counter()
        replay_files(off, clicks, orders)
        seconds_off = time.perf_counter() - started
        ChurnLearner.advance = lambda self, final_ms: False  # type: ignore[method-assign]
        try:
            started = time.perf_counter()
            replay_files(Config(), clicks, orders)
            seconds_on = time.perf_counter() - started
        finally:
            ChurnLearner.advance = advance  # type: ignore[method-assign]
        differences.append((seconds_on - seconds_off) / events * 1e6)
    return round(statistics.median(differences), 3)


def real_log_comparison(say: Any) -> dict[str, Any] | None:
    """AUC of churn_score, recency and BG/NBD per split of CDNOW (None without lifetimes)."""
    from bench import churn_real

    if churn_real.bgnbd_library() is None:
        say("churn: lifetimes not installed (pip install -e '.[bench]'): no real-log comparison")
        return None
    splits = [churn_real.parse_split(s) for s in churn_real.DEFAULT_SPLITS]
    result = churn_real.run_bench(churn_real.default_log(), splits)
    return {
        row["split"]: {k: row[k] for k in ("auc_churn_score", "auc_recency", "auc_bgnbd_expected")}
        for row in result["splits"]
    }
