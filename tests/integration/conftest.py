"""Integration tests run against a real Apache Kafka broker (deploy/local/kafka)."""

import os
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """`OPSPULSE_TEST_BROKER` if set, else a broker started (and stopped) here."""
    given = os.environ.get("OPSPULSE_TEST_BROKER")
    if given:
        yield given
        return
    env = {**os.environ, "KAFKA_PORT": os.environ.get("KAFKA_PORT", "9092")}
    script = ROOT / "deploy" / "local" / "kafka"
    was_running = subprocess.run([script, "status"], env=env, capture_output=True).returncode == 0
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, check=True)
    yield started.stdout.strip().splitlines()[-1]
    if not was_running:
        subprocess.run([script, "stop"], env=env, check=False)


@pytest.fixture
def topic_name():
    return f"test-{uuid.uuid4().hex[:10]}"
