"""Integration tests run against a real Apache Kafka broker.

`OPSPULSE_TEST_BROKER=127.0.0.1:9092` uses a broker that is already running;
otherwise `deploy/local/kafka start` brings one up on KAFKA_PORT (default 9092)
for the session and stops it at the end, unless it was already running before.
"""

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KAFKA = ROOT / "deploy" / "local" / "kafka"
# A cold start fetches ~46 MB of jars with Maven first; a warm one takes ~3 s.
START_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """The bootstrap address "127.0.0.1:PORT" of a broker that answers."""
    given = os.environ.get("OPSPULSE_TEST_BROKER")
    if given:
        yield given.removeprefix("kafka://")
        return
    env = {**os.environ, "KAFKA_PORT": os.environ.get("KAFKA_PORT", "9092")}
    was_running = subprocess.run([KAFKA, "status"], env=env, capture_output=True).returncode == 0
    try:
        started = subprocess.run(
            [KAFKA, "start"],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{KAFKA} start took over {START_TIMEOUT_S} s", pytrace=False)
    if started.returncode != 0:
        pytest.fail(
            f"{KAFKA} start failed (exit {started.returncode}):\n{started.stderr}", pytrace=False
        )
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        if not was_running:
            subprocess.run([KAFKA, "stop"], env=env, check=False, stdin=subprocess.DEVNULL)


@pytest.fixture
def topic_name(request):
    """A topic name no other test (or earlier run on the same broker) has used."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-")
    return f"it-{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cluster(kafka_bootstrap, tmp_path):
    """A small opspulse cluster (tests/integration/cluster.py); workers stopped after."""
    from cluster import Cluster

    c = Cluster(kafka_bootstrap, tmp_path)
    yield c
    c.stop_all()
