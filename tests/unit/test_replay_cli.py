"""`opspulse replay` as a user runs it: files in, report out, errors as one line."""

import gzip
import random
import re
import subprocess
import sys

import orjson
import pytest

from agents.cli import main
from agents.replay import replay_files
from state.config import DAY_MS, Config

T0 = 20758 * DAY_MS


def write_jsonl(path, rows, compress=False):
    body = b"".join((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n" for row in rows)
    path.write_bytes(gzip.compress(body) if compress else body)
    return path


def clicks_rows(n=50):
    return [
        {"event_id": f"c{i}", "user_id": f"u{i % 7}", "ts": T0 + i * 3_600_000, "type": "page_view"}
        for i in range(n)
    ]


def test_replay_writes_the_report_and_users(tmp_path):
    clicks = write_jsonl(tmp_path / "clicks.jsonl.gz", clicks_rows() + [b"{bad"], compress=True)
    orders = write_jsonl(
        tmp_path / "orders.jsonl",
        [
            {
                "event_id": "o1",
                "user_id": "u1",
                "ts": T0 + 5,
                "type": "order_paid",
                "order_id": "x",
                "amount": 9.99,
            }
        ],
    )
    out, users = tmp_path / "report.json", tmp_path / "users.jsonl"
    code = main(["replay", "--clicks", str(clicks), "--orders", str(orders), "--output", str(out),
                 "--users-output", str(users), "--quiet"])  # fmt: skip
    assert code == 0
    report = orjson.loads(out.read_bytes())
    assert report["schema"] == "opspulse.report/1"
    # 50 clicks + 1 order valid, 1 invalid line.
    assert report["events"] == {
        "consumed": 52,
        "valid": 51,
        "duplicates": 0,
        "invalid": 1,
        "late": 0,
    }
    assert report["days"]["2026-11-01"]["gmv"] == 9.99
    lines = [orjson.loads(line) for line in users.read_bytes().splitlines()]
    assert [u["user_id"] for u in lines] == [f"u{i}" for i in range(7)]
    assert lines[1]["orders_paid"] == 1 and lines[1]["revenue"] == 9.99
    # Classified as of the end of the report's last day (2026-11-03): u1 paid on day 1.
    assert (lines[1]["lifecycle"], lines[1]["rfm_segment"], lines[1]["ltv_tier"]) == (
        "paying", "new_or_light", "potential"
    )  # fmt: skip
    assert (lines[0]["lifecycle"], lines[0]["rfm_segment"], lines[0]["ltv_tier"]) == (
        "new", "no_purchase", None
    )  # fmt: skip


def test_unsorted_input_gives_the_same_report_as_sorted(tmp_path, monkeypatch):
    rows = clicks_rows(400)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    monkeypatch.setattr("agents.replay.RUN_LINES", 37)  # several spilled runs
    sorted_report, _, _ = replay_files(Config(), write_jsonl(tmp_path / "a.jsonl", rows), None)
    shuffled_report, _, _ = replay_files(
        Config(), write_jsonl(tmp_path / "b.jsonl", shuffled + [b"[]"]), None
    )
    assert shuffled_report["events"]["invalid"] == 1
    shuffled_report["events"] = sorted_report["events"]
    assert shuffled_report == sorted_report


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True
    )


def test_bad_config_exits_2_naming_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('timezone = "Mars/Olympus"\n')
    clicks = write_jsonl(tmp_path / "c.jsonl", clicks_rows(3))
    result = run_cli("replay", "--clicks", str(clicks), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"opspulse replay: config {config}: timezone: unknown IANA timezone 'Mars/Olympus'"
    ]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[[funnels]]\nname='f'\nsteps=['a','a']\n", "funnels[0].steps"),
        ("[[funnels]]\nname='f'\nsteps=['a']\nwindow='soon'\n", "funnels[0].window"),
        ("allowed_lateness = -3\n", "allowed_lateness"),
        ("colour = 'blue'\n", "colour"),
        ("[topics]\npartitions = 0\n", "topics.partitions"),
        ("[experiments.weights]\nx = {a = 1, b = 0}\n", "experiments.weights.x.b"),
        ("[experiments.weights]\nx = {a = 1}\n", "experiments.weights.x"),
        ("[thresholds]\nexperiment_window = '7d'\n", "thresholds.experiment_window"),
        ("[limits]\ncarts_per_user = 0\n", "limits.carts_per_user"),
        ("[alerts]\nwindow = '7m'\n", "alerts.window"),
        ("[alerts]\npairs = ['purchase:checkout']\n", "alerts.pairs"),
        ("[alerts]\nalpha = 0\n", "alerts.alpha"),
    ],
)
def test_config_errors_name_the_bad_key(tmp_path, toml, key):
    from agents.settings import load_config
    from state.config import ConfigError

    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match="^" + re.escape(f"config {path}: {key}:")):
        load_config(str(path))


def test_config_file_sets_timezone_and_funnels(tmp_path):
    from agents.settings import load_config

    path = tmp_path / "c.toml"
    path.write_text('timezone = "Asia/Shanghai"\nallowed_lateness = "6h"\n'
                    '[[funnels]]\nname = "signup"\nsteps = ["page_view", "signup"]\nwindow = "30m"\n')  # fmt: skip
    config = load_config(str(path))
    assert config.timezone == "Asia/Shanghai" and config.allowed_lateness_ms == 6 * 3_600_000
    assert [(f.name, f.steps, f.window_ms) for f in config.funnels] == [
        ("signup", ("page_view", "signup"), 1_800_000)
    ]


def test_missing_input_is_a_one_line_runtime_error(tmp_path):
    result = run_cli("replay", "--clicks", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"opspulse replay: error: input file not found: {tmp_path / 'nope.jsonl'}"
    )


def test_replay_without_inputs_is_bad_usage():
    assert run_cli("replay").returncode == 2


def test_replay_judges_far_future_ts_as_the_worker_does(tmp_path):
    """A ts of year 5138 is invalid in replay as on a worker (wall clock, or --now)."""
    far = {"event_id": "f1", "user_id": "u1", "ts": 99_999_999_999_999, "type": "page_view"}
    clicks = write_jsonl(tmp_path / "clicks.jsonl", clicks_rows(3) + [far])
    report, _, _ = replay_files(Config(), clicks, None)
    assert report["events"]["invalid"] == 1 and report["events"]["valid"] == 3
    assert not any(day.startswith("5138") for day in report["days"])
    # --now in the past: events more than a day after it are invalid too.
    out = tmp_path / "report.json"
    now = "2026-11-01T12:00:00+00:00"  # T0 is 2026-11-01T00:00Z; rows are hourly
    rows = clicks_rows(50)
    clicks = write_jsonl(tmp_path / "clicks50.jsonl", rows)
    assert (
        main(["replay", "--clicks", str(clicks), "--now", now, "--output", str(out), "--quiet"])
        == 0
    )
    events = orjson.loads(out.read_bytes())["events"]
    expected_valid = sum(1 for r in rows if r["ts"] <= T0 + 12 * 3_600_000 + DAY_MS)
    assert events["valid"] == expected_valid == 37 and events["invalid"] == 50 - 37


def test_replay_until_gives_the_report_as_of_that_moment(tmp_path):
    from naive import comparable, naive_report

    from streams.events import parse_event

    rng = random.Random(7)
    kinds = ["page_view", "add_to_cart", "checkout", "order_paid", "login"]
    rows = []
    for i in range(400):
        kind = rng.choice(kinds)
        row = {"event_id": f"e{i}", "user_id": f"u{rng.randrange(30)}",
               "ts": T0 + rng.randrange(20 * DAY_MS), "type": kind}  # fmt: skip
        if kind == "order_paid":
            row |= {"order_id": f"o{i}", "amount": rng.randrange(1, 500)}
        rows.append(row)
    rows.sort(key=lambda r: r["ts"])
    clicks = write_jsonl(tmp_path / "clicks.jsonl", rows + [b"{bad"])
    until = T0 + 9 * DAY_MS + 12 * 3_600_000
    out = tmp_path / "report.json"
    assert main(["replay", "--clicks", str(clicks), "--until", str(until), "--output", str(out), "--quiet"]) == 0  # fmt: skip
    report = orjson.loads(out.read_bytes())
    kept = [parse_event(orjson.dumps(r), now_ms=1 << 62) for r in rows if r["ts"] <= until]
    assert comparable(report) == naive_report(kept)
    assert report["events"]["valid"] == len(kept) and report["events"]["invalid"] == 1


def test_bad_until_is_a_usage_error(tmp_path, capsys):
    clicks = write_jsonl(tmp_path / "clicks.jsonl", clicks_rows(3))
    assert main(["replay", "--clicks", str(clicks), "--until", "yesterday", "--quiet"]) == 2
    assert "--until: expected epoch milliseconds or RFC 3339" in capsys.readouterr().err
