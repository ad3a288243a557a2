"""Kafka security from the environment (agents/kafka_security.py) against a real
broker: a Kafka 3.9.1 broker of this module alone (KRaft, the jars of
deploy/local/kafka) with a SASL_SSL listener (SCRAM-SHA-256, a certificate made
here) and an SSL listener that requires a client certificate. The real commands
run through them with only OPSPULSE_* variables: `generate --kafka` creates the
topics and produces, a worker counts everything exactly (snapshot equals replay),
`snapshot` reads it; a wrong password, an untrusted broker certificate and a
missing client certificate each fail within seconds with a clear message.

Runs with the other integration tests (OPSPULSE_TEST_BROKER set; their broker
is not used). OPSPULSE_TEST_SECURE_PORT=N puts the listeners on N..N+3
(default: free ports).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from certs import Pki, make_pki
from cluster import ROOT, Cluster, free_port, same_numbers

from agents import kafka_security

pytestmark = pytest.mark.skipif(
    not os.environ.get("OPSPULSE_TEST_BROKER"),
    reason="integration test: set OPSPULSE_TEST_BROKER (this test starts its own broker)",
)

JARS = ROOT / "deploy" / "local" / ".cache" / "jars"
USER, PASSWORD = "opspulse-svc", "scram-Secret-42"
FAIL_WITHIN_S = 30  # a refused client must fail at least this fast (never hang)


class SecureBroker:
    """One KRaft node: SASL_SSL (SCRAM-SHA-256) on `sasl_port`, SSL with required
    client certificates on `ssl_port`, PLAINTEXT between the broker and itself only."""

    def __init__(self, tmp: Path, pki: Pki) -> None:
        base = os.environ.get("OPSPULSE_TEST_SECURE_PORT")
        ports = [int(base) + i for i in range(4)] if base else [free_port() for _ in range(4)]
        self.sasl_port, self.ssl_port, self.internal_port, self.controller_port = ports
        self.tmp, self.pki = tmp, pki
        self.conf = tmp / "server.properties"
        self.log = tmp / "broker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        (self.tmp / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, out\nlog4j.appender.out=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.out.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.out.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\nlog4j.logger.state.change.logger=WARN\n"
        )
        self.conf.write_text(
            f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{self.controller_port}
listeners=SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port},\
INTERNAL://127.0.0.1:{self.internal_port},CONTROLLER://127.0.0.1:{self.controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.ssl_port},\
INTERNAL://127.0.0.1:{self.internal_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location={self.pki.broker}
ssl.truststore.type=PEM
ssl.truststore.location={self.pki.ca}
listener.name.ssl.ssl.client.auth=required
log.dirs={self.tmp / "logs"}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
"""
        )
        java = ["java", f"-Dlog4j.configuration=file:{self.tmp / 'log4j.properties'}"]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        with open(self.log, "ab") as log:
            subprocess.run(
                [*java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", f"{JARS}/*",
                 "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.conf),
                 "--add-scram", f"SCRAM-SHA-256=[name={USER},password={PASSWORD}]"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
                timeout=120,
            )  # fmt: skip
            self.proc = subprocess.Popen(
                [*java, "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-cp", f"{JARS}/*",
                 "kafka.Kafka", str(self.conf)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def sasl_env(self, password: str = PASSWORD) -> dict[str, str]:
        return {
            "OPSPULSE_BROKER": f"kafka://127.0.0.1:{self.sasl_port}",
            "OPSPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "OPSPULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "OPSPULSE_KAFKA_USERNAME": USER,
            "OPSPULSE_KAFKA_PASSWORD": password,
            "OPSPULSE_KAFKA_CA_FILE": str(self.pki.ca),
        }

    def mtls_env(self) -> dict[str, str]:
        return {
            "OPSPULSE_BROKER": f"kafka://127.0.0.1:{self.ssl_port}",
            "OPSPULSE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "OPSPULSE_KAFKA_CA_FILE": str(self.pki.ca),
            "OPSPULSE_KAFKA_CERT_FILE": str(self.pki.client_cert),
            "OPSPULSE_KAFKA_KEY_FILE": str(self.pki.client_key_encrypted),
            "OPSPULSE_KAFKA_KEY_PASSWORD": self.pki.key_password,
        }

    def wait_ready(self, timeout: float = 60) -> None:
        """Until a SASL_SSL client authenticates and sees the broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the broker exited:\n{self._tail()}")
            if opspulse("snapshot", env=self.sasl_env(), timeout=30).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"the broker did not answer within {timeout}s:\n{self._tail()}")

    def _tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        errors = [line for line in lines if "] ERROR " in line][:5]
        return "\n".join([*errors, "...", *lines[-15:]])


def opspulse(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """An `opspulse` command with these OPSPULSE_* variables (and no others of the caller's)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSPULSE_")}
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if shutil.which("java") is None or not (JARS / ".complete").exists():
        pytest.skip("needs java and the Kafka jars (deploy/local/kafka start fetches them)")
    tmp = tmp_path_factory.mktemp("secure-broker")
    b = SecureBroker(tmp, make_pki(tmp / "pki"))
    try:
        started = time.monotonic()
        b.start()
        b.wait_ready()
        print(f"SASL_SSL broker ready in {time.monotonic() - started:.1f}s")
        yield b
    finally:
        b.stop()


@pytest.fixture
def secure(broker, monkeypatch, tmp_path):
    """A cluster on the SASL_SSL listener: its workers and this process's clients
    (snapshot, replay comparison) get the OPSPULSE_* variables."""
    env = broker.sasl_env()
    for name in [k for k in os.environ if k.startswith("OPSPULSE_KAFKA_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    c = Cluster(f"127.0.0.1:{broker.sasl_port}", tmp_path)
    c.env.update(env)
    yield c
    c.stop_all()


def generated(cluster: Cluster, env: dict[str, str], *spec: str) -> int:
    """`generate --kafka` through `env`, and the same traffic into the cluster's replay
    files; the number of messages sent."""
    sent = opspulse("generate", "--kafka", "--config", str(cluster.config_path), *spec, env=env)
    assert sent.returncode == 0, sent.stderr
    files = opspulse("generate", "--out", str(cluster.tmp), *spec, env={})
    assert files.returncode == 0, files.stderr
    lines = sum(
        len(path.read_bytes().splitlines())
        for path in (cluster.clicks, cluster.orders, cluster.spend)
    )
    assert f"generate: {lines:,} events" in sent.stderr, (lines, sent.stderr)
    return lines


async def test_a_worker_counts_exactly_over_sasl_ssl_with_scram(broker, secure):
    started = time.monotonic()
    spec = ("--seed", "16", "--days", "2", "--users-per-day", "40")
    secure.produced = generated(secure, broker.sasl_env(), *spec)  # creates the topics too
    secure.start("w1")
    await secure.wait_ready(["w1"], timeout=60)
    live = await secure.wait_consumed(timeout=60)
    assert live["events"]["consumed"] == secure.produced > 0
    assert same_numbers(live, secure.replay()) == {}
    # The command line reads the same report through SASL_SSL.
    cli = opspulse("snapshot", "--config", str(secure.config_path), env=broker.sasl_env())
    assert cli.returncode == 0, cli.stderr
    assert orjson.loads(cli.stdout)["events"] == live["events"]
    # The worker's own /report agrees.
    assert secure.get("w1", "/report")["events"] == live["events"]
    assert secure.stop("w1") == 0
    log = secure.log("w1")
    assert PASSWORD not in log and "SaslAuthenticationFailed" not in log
    print(f"SASL_SSL flow: {secure.produced} events in {time.monotonic() - started:.1f}s")


async def test_mutual_tls_produces_and_reads(broker, tmp_path, monkeypatch):
    env = broker.mtls_env()
    cluster = Cluster(f"127.0.0.1:{broker.ssl_port}", tmp_path)  # for its config and files
    sent = generated(cluster, env, "--seed", "3", "--days", "1", "--users-per-day", "10")
    assert sent > 0
    report = opspulse("snapshot", "--config", str(cluster.config_path), env=env)
    assert report.returncode == 0, report.stderr
    assert orjson.loads(report.stdout)["events"]["consumed"] == 0  # no worker ran
    # Everything arrived: the topics' end offsets, read over mutual TLS in this process.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap, **kafka_security.client_kwargs()
    )
    await consumer.start()
    try:
        topics = cluster.config.topics
        tps = [
            TopicPartition(topic, p)
            for topic in (topics.clicks, topics.orders, topics.spend)  # generate: same count
            for p in range(topics.partitions)
        ]
        assert sum((await consumer.end_offsets(tps)).values()) == sent
    finally:
        await consumer.stop()
    # Without a client certificate the broker refuses the TLS session.
    no_cert = {k: v for k, v in env.items() if "_CERT_" not in k and "_KEY_" not in k}
    refused, took = timed("snapshot", "--config", str(cluster.config_path), env=no_cert)
    assert refused.returncode == 1 and took < FAIL_WITHIN_S, (took, refused.stderr)
    assert "Unable to bootstrap" in refused.stderr, refused.stderr


def timed(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = opspulse(*args, env=env, timeout=FAIL_WITHIN_S * 2)
    return done, time.monotonic() - started


def test_refused_clients_fail_fast_with_a_clear_message(broker, tmp_path):
    config = tmp_path / "opspulse.toml"
    config.write_text(f'app_id = "it-refused-{uuid.uuid4().hex[:8]}"\n')
    wrong = broker.sasl_env(password="not-the-password")
    for command in (["worker", "--web-port", str(free_port()), "--data-dir", str(tmp_path)],
                    ["snapshot"]):  # fmt: skip
        done, took = timed(*command, "--config", str(config), env=wrong)
        assert done.returncode == 1 and took < FAIL_WITHIN_S, (command, took, done.stderr)
        assert "Authentication failed" in done.stderr and "SCRAM-SHA-256" in done.stderr
        assert f"opspulse {command[0]}: error: " in done.stderr
        assert "not-the-password" not in done.stderr + done.stdout
    # A broker certificate not signed by the CA we trust.
    untrusted = {**broker.sasl_env(), "OPSPULSE_KAFKA_CA_FILE": str(broker.pki.other_ca)}
    done, took = timed("snapshot", "--config", str(config), env=untrusted)
    assert done.returncode == 1 and took < FAIL_WITHIN_S, (took, done.stderr)
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr, done.stderr
    # SASL without TLS on a TLS listener is not a hang either.
    plain = {**broker.sasl_env(), "OPSPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    del plain["OPSPULSE_KAFKA_CA_FILE"]
    done, took = timed("snapshot", "--config", str(config), env=plain)
    assert done.returncode == 1 and took < FAIL_WITHIN_S, (took, done.stderr)
