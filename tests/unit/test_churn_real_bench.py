"""bench/churn_real.py on small hand-made logs: conversion, labels, AUC, BG/NBD."""

from __future__ import annotations

from datetime import date

import numpy as np
import orjson
import pytest

from bench.churn_real import (
    Purchase,
    Split,
    bgnbd_library,
    calibrate,
    churn_config,
    event_ts,
    format_table,
    parse_log,
    parse_split,
    read_log,
    roc_auc,
    run_bench,
    write_events,
)

# As in CDNOW_master.txt: a header, leading blanks, zero-padded ids, CRLF.
CDNOW_LINES = (
    " customer_id  date number_of_cds  dollar_value\r\n"
    " 00001 19970101  1   11.77\r\n"
    " 00002 19970112  1   12.00\r\n"
    " 00002 19970112  5   77.00\r\n"
    " 00003 19970102  2   20.76\r\n"
    " 00003 19970330  2   20.76\r\n"
    "\r\n"
    " 00003 19970402  2   19.54\r\n"
)

# 1997-01-01 is 9862 days after 1970-01-01.
JAN1_MS = 9862 * 86_400_000
NOON = 12 * 3_600_000


def test_parse_cdnow_lines() -> None:
    purchases = parse_log(CDNOW_LINES.splitlines(keepends=True))
    assert [(p.customer, p.day, p.amount, p.line) for p in purchases] == [
        ("1", date(1997, 1, 1), 11.77, 0),
        ("2", date(1997, 1, 12), 12.0, 1),
        ("2", date(1997, 1, 12), 77.0, 2),
        ("3", date(1997, 1, 2), 20.76, 3),
        ("3", date(1997, 3, 30), 20.76, 4),
        ("3", date(1997, 4, 2), 19.54, 5),
    ]


def test_parse_other_layouts() -> None:
    lines = ["customer,date,amount", "a7,1997-01-05,3.5", "0,19970106,0"]
    got = [(p.customer, p.day, p.amount) for p in parse_log(lines)]
    assert got == [("a7", date(1997, 1, 5), 3.5), ("0", date(1997, 1, 6), 0.0)]
    with pytest.raises(ValueError, match="line 3"):
        parse_log(["1 19970101 1 2.0", "2 19970101 1 2.0", "3 notadate 1 x"])


def test_events_written_in_ts_order(tmp_path) -> None:
    log = tmp_path / "log.txt"
    log.write_bytes(CDNOW_LINES.encode())
    purchases = read_log(log)
    assert event_ts(purchases[0]) == JAN1_MS + NOON
    assert event_ts(purchases[2]) == JAN1_MS + 11 * 86_400_000 + NOON + 2
    clicks, orders = tmp_path / "c.jsonl", tmp_path / "o.jsonl"
    assert write_events(purchases, clicks, orders) == 6
    c = [orjson.loads(line) for line in clicks.read_bytes().splitlines()]
    o = [orjson.loads(line) for line in orders.read_bytes().splitlines()]
    # 1 (Jan 1), 3 (Jan 2), 2 twice (Jan 12, file order), 3 (Mar 30), 3 (Apr 2)
    assert [e["user_id"] for e in o] == ["1", "3", "2", "2", "3", "3"]
    assert [e["ts"] for e in o] == sorted(e["ts"] for e in o)
    assert o[0] == {
        "event_id": "o0",
        "user_id": "1",
        "ts": JAN1_MS + NOON,
        "type": "order_paid",
        "order_id": "order-0",
        "amount": 11.77,
    }
    assert o[1]["ts"] == JAN1_MS + 86_400_000 + NOON + 3
    assert [(e["type"], e["user_id"], e["ts"]) for e in c] == [
        ("page_view", e["user_id"], e["ts"]) for e in o
    ]
    assert len({e["event_id"] for e in c + o}) == 12
    assert len({e["order_id"] for e in o}) == 6


def test_split_parsing_and_until() -> None:
    s = parse_split("1997-09-30:39w")
    assert s == Split(date(1997, 9, 30), 273)
    assert s.label == "1997-09-30+39w"
    assert parse_split("1998-03-31:10d").label == "1998-03-31+10d"
    # the last millisecond of 1997-09-30 UTC: 10134 days after the epoch, plus one day
    assert s.until_ms == 10135 * 86_400_000 - 1
    for bad in ("1997-09-30", "1997-09-30:0w", "30/09/1997:3w", "1997-09-30:3m"):
        with pytest.raises(ValueError):
            parse_split(bad)
    assert churn_config(273) == '[churn]\nhorizon = "273d"\nevery = "28d"\n'
    assert churn_config(91) == '[churn]\nhorizon = "91d"\nevery = "10d"\n'
    assert churn_config(5) == '[churn]\nhorizon = "5d"\nevery = "1d"\n'


def test_labels_and_calibration_summary() -> None:
    p = [
        Purchase("a", date(1997, 1, 1), 1.0, 0),
        Purchase("a", date(1997, 1, 1), 1.0, 1),  # same day: one purchase day
        Purchase("a", date(1997, 1, 11), 1.0, 2),
        Purchase("a", date(1997, 2, 5), 1.0, 3),  # in (T, T+L]: not churned
        Purchase("b", date(1997, 1, 5), 1.0, 4),
        Purchase("b", date(1997, 1, 31), 1.0, 5),  # on T: calibration
        Purchase("b", date(1997, 3, 15), 1.0, 6),  # after T+L: churned
        Purchase("c", date(1997, 1, 20), 1.0, 7),
        Purchase("c", date(1997, 3, 14), 1.0, 8),  # = T+L: inside the holdout
        Purchase("d", date(1997, 2, 2), 1.0, 9),  # first seen after T: not a customer
    ]
    cal = calibrate(p, Split(date(1997, 1, 31), 42))  # holdout Feb 1 .. Mar 14
    assert cal.customers == ["a", "b", "c"]
    assert cal.label.tolist() == [0, 1, 0]
    assert cal.frequency.tolist() == [1, 1, 0]
    assert cal.recency_days.tolist() == [10, 26, 0]
    assert cal.age_days.tolist() == [30, 26, 11]
    assert cal.idle_days.tolist() == [20, 0, 11]


def test_auc_by_hand() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    # pairs (pos, neg): (0.8,0.1) 1, (0.8,0.4) 1, (0.35,0.1) 1, (0.35,0.4) 0 → 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # ties count 1/2: (0.5,0.5) ½, (0.5,0.2) 1, (0.9,0.5) 1, (0.9,0.2) 1 → 3.5/4
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2]) == 0.875
    # all tied: 1/2; one class only: undefined
    assert roc_auc([1, 0, 0], [3, 3, 3]) == 0.5
    assert roc_auc([1, 1], [0.1, 0.2]) is None
    # 1 positive among 3 negatives, ties at 2: (2,1) 1, (2,2) ½, (2,3) 0 → 1.5/3
    assert roc_auc(np.array([0, 1, 0, 0]), np.array([1.0, 2.0, 2.0, 3.0])) == 0.5


def test_auc_matches_pairs_on_random_ties() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 10, 300).astype(float)
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert roc_auc(y, s) == pytest.approx(expected, abs=1e-12)


def _synthetic_log(tmp_path):
    """60 customers: the first 30 buy every 10 days all year, the others twice in January."""
    lines = []
    for c in range(60):
        days = range(1 + c % 5, 366, 10) if c < 30 else (1 + c % 5, 20 + c % 7)
        for d in days:
            lines.append(
                f"{c:05d} {date.fromordinal(date(1997, 1, 1).toordinal() + d - 1):%Y%m%d} 1 9.99"
            )
    path = tmp_path / "log.txt"
    path.write_text("customer_id date cds dollars\n" + "\n".join(lines) + "\n")
    return path


def test_bench_without_replay(tmp_path) -> None:
    result = run_bench(
        _synthetic_log(tmp_path), [Split(date(1997, 3, 31), 91)], replay=False, progress=False
    )
    (row,) = result["splits"]
    assert row["customers"] == 60 and row["churned"] == 30
    assert row["auc_recency"] == 1.0
    assert row["auc_churn_score"] is None and row["replay_seconds"] is None
    if bgnbd_library() is None:
        assert row["auc_bgnbd_expected"] is None
    assert "1997-03-31+13w" in format_table(result)


def _bgnbd_like_log(tmp_path):
    """400 customers who buy at a gamma-distributed rate until they drop out (seeded)."""
    rng = np.random.default_rng(11)
    lines = []
    for c in range(400):
        rate, day = rng.gamma(0.8, 0.03), int(rng.integers(0, 60))
        life = rng.exponential(120)
        while day < min(life, 365):
            lines.append(f"{c} {date.fromordinal(date(1997, 1, 1).toordinal() + day):%Y%m%d} 1 5")
            day += 1 + int(rng.exponential(1 / rate))
    path = tmp_path / "bgnbd.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bgnbd_ranks_a_bgnbd_like_log(tmp_path) -> None:
    pytest.importorskip("lifetimes")
    result = run_bench(
        _bgnbd_like_log(tmp_path), [Split(date(1997, 6, 30), 91)], replay=False, progress=False
    )
    (row,) = result["splits"]
    assert row["notes"] == []
    assert set(row["bgnbd"]["params"]) == {"r", "alpha", "a", "b"}
    assert row["auc_bgnbd_expected"] > 0.6 and row["auc_recency"] > 0.6
    assert 0 <= row["auc_bgnbd_p_dead"] <= 1
    assert result["bgnbd_library"].startswith("lifetimes ")


def test_bgnbd_fit_failure_is_a_note(tmp_path) -> None:
    pytest.importorskip("lifetimes")
    # two kinds of customers and nothing in between: the fit does not converge
    result = run_bench(
        _synthetic_log(tmp_path), [Split(date(1997, 3, 31), 91)], replay=False, progress=False
    )
    (row,) = result["splits"]
    if row["bgnbd"] is None:
        assert row["auc_bgnbd_expected"] is None
        assert any("BG/NBD fit failed" in note for note in row["notes"])


def test_bench_with_replay(tmp_path) -> None:
    """The whole harness on a tiny log, `opspulse replay` included: churn_score may
    still be null everywhere, but the replay runs and every customer is read back."""
    result = run_bench(
        _synthetic_log(tmp_path), [Split(date(1997, 3, 31), 91)], timeout_s=120, progress=False
    )
    (row,) = result["splits"]
    assert row["replay_seconds"] is not None
    assert not any("missing from --users-output" in note for note in row["notes"])
    assert 0 <= row["churn_scored"] <= 60
    assert row["auc_churn_score"] is None or 0 <= row["auc_churn_score"] <= 1
