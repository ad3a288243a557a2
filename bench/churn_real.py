"""Churn on a real purchase log: does `churn_score` rank who buys nothing afterwards at
least as well as the classic batch models fitted on the same history?

    python -m bench.churn_real [--log PATH] [--splits 1997-09-30:39w ...] [--json]

The log (default: the CDNOW master log that the `lifetimes` package ships, 23,570
customers, 69,659 purchases, Jan 1997 - Jun 1998) becomes opspulse JSON Lines: one
`order_paid` per purchase and one `page_view` at the same instant (the engine moves
its event-time clock on both inputs). For each split, calibration end T and holdout
length L, every customer seen by T is labelled 1 if they buy nothing in (T, T+L],
else 0, and these scores, fitted on purchases up to T only, are ranked against the
label by ROC AUC (higher score = more likely to churn):

- recency: days since the last purchase at T;
- BG/NBD (`lifetimes.BetaGeoFitter`): minus the expected purchases in L, and
  1 - P(alive);
- churn_score: from `opspulse replay --until T --users-output` with `[churn]
  horizon = L, every = ceil(L/10)`; null while the replay gives none.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy.stats import rankdata

DAY_MS = 86_400_000
NOON_MS = 12 * 3_600_000
_EPOCH = date(1970, 1, 1)
# (calibration end T, holdout length L): the holdouts end at the log's last day.
DEFAULT_SPLITS = ("1997-09-30:39w", "1997-12-31:26w", "1998-03-31:13w")
REPLAY_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class Purchase:
    customer: str
    day: date
    amount: float
    line: int  # 0-based index among the log's purchases, in file order


@dataclass(frozen=True, slots=True)
class Split:
    end: date  # calibration end T (purchases on T are calibration)
    holdout_days: int  # L

    @property
    def label(self) -> str:
        weeks, rest = divmod(self.holdout_days, 7)
        return (
            f"{self.end.isoformat()}+{weeks}w" if not rest else f"{self.end}+{self.holdout_days}d"
        )

    @property
    def until_ms(self) -> int:
        """The last instant of day T (UTC), epoch ms."""
        return day_ms(self.end + timedelta(days=1)) - 1


def day_ms(day: date) -> int:
    return (day - _EPOCH).days * DAY_MS


def parse_split(text: str) -> Split:
    """'1997-09-30:39w' or '1997-09-30:273d' → Split."""
    m = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2})\s*[:/]\s*(\d+)\s*([dw])\s*", text)
    if not m:
        raise ValueError(f"split {text!r}: expected T:L like 1997-09-30:39w or 1997-09-30:273d")
    days = int(m[2]) * (7 if m[3] == "w" else 1)
    if days <= 0:
        raise ValueError(f"split {text!r}: the holdout must be at least 1 day")
    return Split(date.fromisoformat(m[1]), days)


# --- the log ------------------------------------------------------------------------


def default_log() -> Path:
    """CDNOW_master.txt inside the installed `lifetimes` package (not imported)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no --log given and the `lifetimes` package (which ships CDNOW_master.txt) "
            "is not installed: pip install -e '.[bench]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found in the installed lifetimes package")
    return path


def _parse_day(text: str) -> date:
    text = text.strip().strip('"')
    if re.fullmatch(r"\d{8}", text):
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return datetime.fromisoformat(text).date()


def parse_log(lines: Iterable[str]) -> list[Purchase]:
    """Purchases of a CDNOW-style log: `customer_id date [quantity] amount` per line,
    separated by blanks or commas; dates YYYYMMDD or ISO; header and blank lines
    skipped, CRLF ok. Customer ids lose their leading zeros ('00042' → '42')."""
    purchases: list[Purchase] = []
    for number, raw in enumerate(lines, 1):
        fields = [f for f in re.split(r"[\s,;]+", raw.strip()) if f]
        if not fields:
            continue
        if len(fields) < 3:
            raise ValueError(f"line {number}: expected 'customer date [quantity] amount'")
        try:
            day = _parse_day(fields[1])
            amount = float(fields[-1])
        except ValueError:
            if not purchases:
                continue  # a header line
            raise ValueError(f"line {number}: cannot read {raw.strip()!r}") from None
        customer = fields[0].strip('"')
        customer = (customer.lstrip("0") or "0") if customer.isdigit() else customer
        purchases.append(Purchase(customer, day, amount, len(purchases)))
    return purchases


def read_log(path: Path) -> list[Purchase]:
    with open(path, encoding="utf-8", errors="replace", newline=None) as handle:
        return parse_log(handle)


def event_ts(purchase: Purchase) -> int:
    """12:00 UTC of the purchase's day plus its line index in ms (file order kept)."""
    return day_ms(purchase.day) + NOON_MS + purchase.line


def write_events(purchases: Sequence[Purchase], clicks: Path, orders: Path) -> int:
    """The opspulse input files, in ts order; returns the number of purchases."""
    ordered = sorted(purchases, key=lambda p: (event_ts(p), p.line))
    with open(clicks, "wb") as c, open(orders, "wb") as o:
        for p in ordered:
            ts = event_ts(p)
            c.write(
                orjson.dumps(
                    {"event_id": f"c{p.line}", "user_id": p.customer, "ts": ts, "type": "page_view"}
                )
                + b"\n"
            )
            o.write(
                orjson.dumps(
                    {
                        "event_id": f"o{p.line}",
                        "user_id": p.customer,
                        "ts": ts,
                        "type": "order_paid",
                        "order_id": f"order-{p.line}",
                        "amount": p.amount,
                    }
                )
                + b"\n"
            )
    return len(ordered)


# --- labels and the batch baselines ---------------------------------------------------


@dataclass
class Calibration:
    """Per customer seen by T (sorted ids): the label and the summary of purchases to T."""

    customers: list[str]
    label: np.ndarray  # 1: no purchase in (T, T+L]
    frequency: np.ndarray  # repeat purchase days (distinct days - 1)
    recency_days: np.ndarray  # first to last purchase day
    age_days: np.ndarray  # first purchase day to T
    idle_days: np.ndarray  # last purchase day to T (the recency baseline)


def calibrate(purchases: Iterable[Purchase], split: Split) -> Calibration:
    end, stop = split.end, split.end + timedelta(days=split.holdout_days)
    days: dict[str, set[date]] = {}
    bought_later: set[str] = set()
    for p in purchases:
        if p.day <= end:
            days.setdefault(p.customer, set()).add(p.day)
        elif p.day <= stop:
            bought_later.add(p.customer)
    customers = sorted(days, key=lambda c: (len(c), c))
    first = [min(days[c]) for c in customers]
    last = [max(days[c]) for c in customers]
    return Calibration(
        customers=customers,
        label=np.array([c not in bought_later for c in customers], dtype=np.int8),
        frequency=np.array([len(days[c]) - 1 for c in customers], dtype=float),
        recency_days=np.array(
            [(b - a).days for a, b in zip(first, last, strict=True)], dtype=float
        ),
        age_days=np.array([(end - a).days for a in first], dtype=float),
        idle_days=np.array([(end - b).days for b in last], dtype=float),
    )


def roc_auc(label: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting 1/2
    (Mann-Whitney U from average ranks); None without both classes."""
    y = np.asarray(label, dtype=bool)
    s = np.asarray(score, dtype=float)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(s)  # average ranks: ties split evenly
    u = ranks[y].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def bgnbd_library() -> str | None:
    """'lifetimes <version>' when the BG/NBD library can be imported, else None."""
    try:
        import lifetimes
    except ImportError:
        return None
    return f"lifetimes {lifetimes.__version__}"


def bgnbd_scores(cal: Calibration, holdout_days: int) -> dict[str, Any]:
    """BG/NBD fitted on the calibration summary (time in weeks): expected purchases in
    the holdout and P(alive) at T, per customer, with the fitted parameters."""
    import warnings

    from lifetimes import BetaGeoFitter

    weeks = 7.0
    f, r, t = cal.frequency, cal.recency_days / weeks, cal.age_days / weeks
    last_error: Exception | None = None
    for penalizer in (0.0, 0.001, 0.01):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = BetaGeoFitter(penalizer_coef=penalizer).fit(f, r, t)
                expected = model.conditional_expected_number_of_purchases_up_to_time(
                    holdout_days / weeks, f, r, t
                )
                alive = model.conditional_probability_alive(f, r, t)
        except Exception as exc:  # a fit that does not converge: retry with a penalizer
            last_error = exc
            continue
        expected, alive = np.asarray(expected, dtype=float), np.asarray(alive, dtype=float)
        if np.isfinite(expected).all() and np.isfinite(alive).all():
            params = {k: round(float(v), 4) for k, v in model.params_.items()}
            return {"expected": expected, "alive": alive, "params": params, "penalizer": penalizer}
        last_error = ValueError("non-finite predictions")
    raise RuntimeError(f"BG/NBD fit failed: {last_error}")


# --- the opspulse replay ------------------------------------------------------------


def churn_config(holdout_days: int) -> str:
    """`[churn]` with the horizon = the holdout, at most ~10 pending predictions per user."""
    every = max(1, math.ceil(holdout_days / 10))
    return f'[churn]\nhorizon = "{holdout_days}d"\nevery = "{every}d"\n'


def replay_command(
    clicks: Path, orders: Path, config: Path, until_ms: int, users: Path
) -> list[str]:
    return [
        sys.executable, "-m", "agents.cli", "replay", "--quiet",
        "--clicks", str(clicks), "--orders", str(orders), "--config", str(config),
        "--until", str(until_ms), "--users-output", str(users), "--output", str(users.with_suffix(".report.json")),
    ]  # fmt: skip


def run_replay(
    clicks: Path, orders: Path, split: Split, workdir: Path, *, timeout_s: float = REPLAY_TIMEOUT_S
) -> dict[str, Any]:
    """Replay up to T with the churn config; churn_score per user (None where null).
    A config that the engine rejects for its `[churn]` section (churn not there yet)
    is reported and the replay is run again without it, so the timing is still had."""
    config = workdir / f"churn-{split.end}-{split.holdout_days}d.toml"
    config.write_text(churn_config(split.holdout_days))
    users = workdir / f"users-{split.end}-{split.holdout_days}d.jsonl"
    note = None
    for attempt in (0, 1):
        started = time.monotonic()
        proc = subprocess.run(
            replay_command(clicks, orders, config, split.until_ms, users),
            capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        seconds = time.monotonic() - started
        if proc.returncode == 0:
            break
        err = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        if attempt == 0 and proc.returncode == 2 and "churn" in proc.stderr:
            note = f"[churn] config rejected ({err[0]}); replayed without it"
            print(f"churn_real: {note}", file=sys.stderr, flush=True)
            config.write_text("")
            continue
        raise RuntimeError(f"opspulse replay failed: {err[0]}")
    scores: dict[str, float | None] = {}
    with open(users, "rb") as handle:
        for line in handle:
            if line.strip():
                row = orjson.loads(line)
                value = row.get("churn_score")
                scores[str(row["user_id"])] = None if value is None else float(value)
    return {"scores": scores, "seconds": seconds, "note": note}


# --- one split, all splits ----------------------------------------------------------


def _auc_or_none(label: np.ndarray, score: np.ndarray | None) -> float | None:
    auc = None if score is None else roc_auc(label, score)
    return None if auc is None else round(auc, 4)


def evaluate_split(
    purchases: Sequence[Purchase],
    split: Split,
    clicks: Path,
    orders: Path,
    workdir: Path,
    *,
    timeout_s: float = REPLAY_TIMEOUT_S,
    replay: bool = True,
) -> dict[str, Any]:
    """Labels, the three scores and their AUCs for one split."""
    cal = calibrate(purchases, split)
    y = cal.label
    row: dict[str, Any] = {
        "split": split.label,
        "calibration_end": split.end.isoformat(),
        "holdout_days": split.holdout_days,
        "customers": len(cal.customers),
        "churned": int(y.sum()),
        "churn_share": round(float(y.mean()), 4) if len(y) else None,
        "auc_recency": _auc_or_none(y, cal.idle_days),
        "auc_bgnbd_expected": None,
        "auc_bgnbd_p_dead": None,
        "bgnbd": None,
        "auc_churn_score": None,
        "churn_scored": 0,
        "replay_seconds": None,
        "notes": [],
    }
    if bgnbd_library() is None:
        row["notes"].append("BG/NBD skipped: lifetimes is not installed")
    elif len(cal.customers):
        try:
            fit = bgnbd_scores(cal, split.holdout_days)
        except RuntimeError as exc:
            row["notes"].append(str(exc))
        else:
            row["auc_bgnbd_expected"] = _auc_or_none(y, -fit["expected"])
            row["auc_bgnbd_p_dead"] = _auc_or_none(y, 1.0 - fit["alive"])
            row["bgnbd"] = {"params": fit["params"], "penalizer": fit["penalizer"]}
    if replay:
        result = run_replay(clicks, orders, split, workdir, timeout_s=timeout_s)
        row["replay_seconds"] = round(result["seconds"], 2)
        if result["note"]:
            row["notes"].append(result["note"])
        scores = result["scores"]
        missing = [c for c in cal.customers if c not in scores]
        if missing:
            row["notes"].append(f"{len(missing)} customers missing from --users-output")
        churn = [scores.get(c) for c in cal.customers]
        scored = np.array([s is not None for s in churn], dtype=bool)
        row["churn_scored"] = int(scored.sum())
        if scored.any():
            values = np.array([s for s in churn if s is not None], dtype=float)
            row["auc_churn_score"] = _auc_or_none(y[scored], values)
            if not scored.all():
                row["notes"].append(f"churn_score null for {int((~scored).sum())} customers")
        else:
            row["notes"].append("churn_score is null for every customer")
    return row


def run_bench(
    log: Path,
    splits: Sequence[Split],
    *,
    timeout_s: float = REPLAY_TIMEOUT_S,
    replay: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Every split on one log; a JSON-ready result."""
    started = time.monotonic()

    def say(text: str) -> None:
        if progress:
            print(f"churn_real: {text}", file=sys.stderr, flush=True)

    purchases = read_log(log)
    if not purchases:
        raise ValueError(f"{log}: no purchases")
    customers = len({p.customer for p in purchases})
    first, last = min(p.day for p in purchases), max(p.day for p in purchases)
    say(f"{log}: {len(purchases):,} purchases by {customers:,} customers, {first} .. {last}")
    result: dict[str, Any] = {
        "log": str(log),
        "purchases": len(purchases),
        "customers": customers,
        "first_day": first.isoformat(),
        "last_day": last.isoformat(),
        "bgnbd_library": bgnbd_library(),
        "splits": [],
    }
    with tempfile.TemporaryDirectory(prefix="opspulse-churn-real-") as tmp:
        workdir = Path(tmp)
        clicks, orders = workdir / "clicks.jsonl", workdir / "orders.jsonl"
        write_events(purchases, clicks, orders)
        for split in splits:
            if split.end + timedelta(days=split.holdout_days) > last + timedelta(days=1):
                say(f"{split.label}: the holdout ends after the log's last day {last}")
            say(f"{split.label}: labels, BG/NBD fit" + (", replay --until T" if replay else ""))
            row = evaluate_split(
                purchases, split, clicks, orders, workdir, timeout_s=timeout_s, replay=replay
            )
            say(
                f"{split.label}: {row['customers']:,} customers, AUC recency {row['auc_recency']}, "
                f"BG/NBD {row['auc_bgnbd_expected']}, churn_score {row['auc_churn_score']}"
                + (f", replay {row['replay_seconds']} s" if replay else "")
            )
            result["splits"].append(row)
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def format_table(result: dict[str, Any]) -> str:
    header = (
        "split",
        "customers",
        "churn share",
        "AUC recency",
        "AUC BG/NBD E[n]",
        "AUC BG/NBD 1-P(alive)",
        "AUC churn_score",
        "replay s",
    )
    rows = [header]
    for s in result["splits"]:
        rows.append(
            (
                s["split"],
                _fmt(s["customers"]),
                _fmt(s["churn_share"], 3),
                _fmt(s["auc_recency"]),
                _fmt(s["auc_bgnbd_expected"]),
                _fmt(s["auc_bgnbd_p_dead"]),
                _fmt(s["auc_churn_score"]),
                _fmt(s["replay_seconds"], 1),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"{result['log']}: {result['purchases']:,} purchases, {result['customers']:,} customers, "
        f"{result['first_day']} .. {result['last_day']}; BG/NBD: {result['bgnbd_library'] or 'n/a'}"
    ]
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for s in result["splits"]:
        for note in s["notes"]:
            lines.append(f"{s['split']}: {note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.churn_real",
        description="churn_score vs recency and BG/NBD on a real purchase log (ROC AUC).",
    )
    parser.add_argument(
        "--log", type=Path, help="purchase log: customer date [quantity] amount per line "
        "(default: CDNOW_master.txt from the lifetimes package)",
    )  # fmt: skip
    parser.add_argument(
        "--splits", nargs="+", default=list(DEFAULT_SPLITS), metavar="T:L",
        help="calibration end and holdout length, e.g. 1997-09-30:39w or 1998-03-31:91d "
        f"(default: {' '.join(DEFAULT_SPLITS)})",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--timeout", type=float, default=REPLAY_TIMEOUT_S, help="seconds per replay"
    )
    parser.add_argument("--no-replay", action="store_true", help="baselines only")
    args = parser.parse_args(argv)
    try:
        splits = [parse_split(s) for s in args.splits]
        log = args.log or default_log()
        result = run_bench(log, splits, timeout_s=args.timeout, replay=not args.no_replay)
    except (ValueError, FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"churn_real: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
