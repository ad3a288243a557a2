"""Business alerts on generated traffic (3,000 new users a day, push campaigns, weekends):
30 clean days fire nothing; the same configuration catches an injected incident and
names its device. Long (a replay of 3.8M events, ~4 minutes on 2 cores): run with
OPSPULSE_LONG_TESTS=1. The live cluster's incident test (tests/integration/
test_alerts_live.py) runs in CI."""

import os
from datetime import UTC, datetime

import orjson
import pytest

from agents.replay import replay_files
from state.config import AlertSpec, Config
from streams.generator import GeneratorSpec, Incident, generate

pytestmark = pytest.mark.skipif(
    os.environ.get("OPSPULSE_LONG_TESTS") != "1", reason="long: set OPSPULSE_LONG_TESTS=1"
)

RULE = "purchase:page_view>add_to_cart"
CONFIG = Config(alerts=AlertSpec(pairs=(RULE, "purchase:add_to_cart>checkout")))


def alerts_of(spec, tmp_path):
    files = {kind: open(tmp_path / f"{kind}.jsonl", "wb") for kind in ("clicks", "orders")}
    for kind, line in generate(spec):
        if kind in files:
            files[kind].write(line + b"\n")
    for handle in files.values():
        handle.close()
    out = tmp_path / "alerts.jsonl"
    replay_files(
        CONFIG, tmp_path / "clicks.jsonl", tmp_path / "orders.jsonl",
        derived_outputs={"alerts": out},
    )  # fmt: skip
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def test_thirty_clean_days_raise_no_alert(tmp_path):
    spec = GeneratorSpec(seed=7, days=30, start="2026-09-01", new_users_per_day=3000)
    assert alerts_of(spec, tmp_path) == []


def test_an_incident_fires_once_names_the_device_and_resolves(tmp_path):
    start = int(datetime(2026, 10, 9, 19, tzinfo=UTC).timestamp() * 1000)
    incident = Incident(start, minutes=60, step="add_to_cart", factor=0.0)
    spec = GeneratorSpec(
        seed=11, days=9, start="2026-10-01", new_users_per_day=3000, incident=incident
    )
    records = alerts_of(spec, tmp_path)
    assert [(r["key"], r["state"], r["dims"]) for r in records] == [
        (RULE, "firing", {"device": "android"}),
        (RULE, "resolved", {"device": "android"}),
    ]
    fired, resolved = (r["ts"] for r in records)
    assert start < fired <= start + 45 * 60_000 < resolved
