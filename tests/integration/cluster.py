"""A small opspulse cluster for integration tests: real workers (subprocesses) on a
real broker, traffic from the generator, snapshots compared with replay."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from agents.replay import replay_files
from agents.settings import load_config
from agents.snapshot import snapshot_report
from agents.topics import ensure_topics
from streams.generator import GeneratorSpec, generate

ROOT = Path(__file__).resolve().parents[2]
COMPARED = (
    "days", "retention", "funnels", "events", "channels", "breakdowns", "cohorts",
    "experiments", "push", "triggers", "churn",
)  # fmt: skip
SPEND_PARTITIONS = 3  # spend has its own partition count (not the user partitions')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, bootstrap: str, tmp: Path, partitions: int = 4, extra: str = "") -> None:
        """`extra`: TOML tables appended to the configuration (e.g. an `[alerts]` table)."""
        self.bootstrap = bootstrap
        self.tmp = tmp
        run = uuid.uuid4().hex[:8]
        self.config_path = tmp / "opspulse.toml"
        self.config_path.write_text(
            f'app_id = "it-{run}"\ncommit_interval = "500ms"\n'
            f'[topics]\nclicks = "it-{run}.clicks"\norders = "it-{run}.orders"\n'
            f'spend = "it-{run}.spend"\n'
            f'dlq = "it-{run}.dlq"\nkpi = "it-{run}.kpi"\nsegments = "it-{run}.segments"\n'
            f'triggers = "it-{run}.triggers"\nalerts = "it-{run}.alerts"\n'
            f'churn_scores = "it-{run}.churn-scores"\n'
            f"partitions = {partitions}\n"
            # Few users decoded in memory: most events read their user from the local store.
            f"[state]\ncache_users = 40\n"
            # Labels within the tests' few days: a 2-day horizon, the model warm at 20.
            f'[churn]\nhorizon = "2d"\nmin_labels = 20\n{extra}'
        )
        self.config = load_config(str(self.config_path))
        self.workers: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.produced = 0
        self.clicks = tmp / "clicks.jsonl"
        self.orders = tmp / "orders.jsonl"
        self.spend = tmp / "spend.jsonl"
        self.env = {
            **os.environ,
            "OPSPULSE_BROKER": f"kafka://{bootstrap}",
            "PYTHONUNBUFFERED": "1",
        }

    # workers
    def start(self, name: str) -> None:
        port = self.ports.setdefault(name, free_port())
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker", "--config", str(self.config_path),
             "--web-port", str(port), "--data-dir", str(self.tmp / name), "--loglevel", "info"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def restart_exited(self) -> list[tuple[str, int]]:
        """Supervisor: start again every worker whose process has exited; (name, status)."""
        exited = [(n, p.returncode) for n, p in self.workers.items() if p.poll() is not None]
        for name, _ in exited:
            self.start(name)
        return exited

    def kill(self, name: str) -> None:
        self.workers.pop(name).send_signal(signal.SIGKILL)

    def stop(self, name: str, timeout: float = 30) -> int:
        proc = self.workers.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(
                f"worker {name} did not stop within {timeout}s on SIGTERM"
            ) from None

    def stop_all(self) -> None:
        for name in list(self.workers):
            proc = self.workers.pop(name)
            proc.kill()
            proc.wait()

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def get(self, name: str, path: str, expect: int = 200, headers: dict | None = None):
        return _get(f"http://127.0.0.1:{self.ports[name]}{path}", expect, headers)

    def scrape(self, name: str) -> dict:
        """/metrics as {(name, sorted labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self.get(name, "/metrics").decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    async def wait_ready(self, names: list[str], timeout: float = 60) -> None:
        """Until every named worker is ready and together they own all partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = [self.get(n, "/ready") for n in names]
                if sum(len(s["partitions"]) for s in states) == self.config.topics.partitions:
                    return
            except (AssertionError, OSError):
                pass
            await asyncio.sleep(0.5)
        raise AssertionError(f"workers {names} not ready within {timeout}s")

    async def dead_letters(self, expected: int, timeout: float = 30) -> list[tuple[bytes, dict]]:
        records = await self.read_topic(self.config.topics.dlq, expected, timeout)
        return [(r.value, dict(r.headers)) for r in records]

    async def read_topic(self, topic: str, expected: int = 0, timeout: float = 30) -> list:
        """The committed records of `topic` (read_committed), once at least `expected`
        arrived and a poll brings nothing more, in partition order."""
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
            isolation_level="read_committed", group_id=None,
        )  # fmt: skip
        await consumer.start()
        records: list = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                for batch in batches.values():
                    records += batch
                if len(records) >= expected and not batches:
                    break
        finally:
            await consumer.stop()
        return records

    # traffic
    async def produce(
        self, spec: GeneratorSpec, *, rate: float = 0,
        key_of: Callable[[bytes], bytes | None] | None = None,
        flowing: asyncio.Event | None = None, flushed: asyncio.Event | None = None,
        keep: Callable[[int], bool] | None = None,
    ) -> int:  # fmt: skip
        """Send the generated clicks and orders (keyed by user unless `key_of` says
        otherwise, in stream order) and spend (keyed by channel, to a topic with its
        own partition count); keep the same lines in files for replay.

        While `flowing` is cleared, sending pauses once everything sent so far is
        acknowledged (then `flushed` is set), e.g. to take the broker down. `keep`: send
        (and keep) only the lines whose `ts` it accepts, e.g. one part of a day."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            if self.config.topics.spend not in await admin.list_topics():
                await admin.create_topics([NewTopic(self.config.topics.spend, SPEND_PARTITIONS, 1)])
        finally:
            await admin.close()
        await ensure_topics(self.bootstrap, self.config, self.config.app_id)
        # Idempotent: a retry after a broker failure never writes a message twice.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=10, enable_idempotence=True
        )
        await producer.start()
        topics = {
            "clicks": self.config.topics.clicks, "orders": self.config.topics.orders,
            "spend": self.config.topics.spend,
        }  # fmt: skip
        sent = 0
        started = time.monotonic()
        with (
            open(self.clicks, "ab") as clicks,
            open(self.orders, "ab") as orders,
            open(self.spend, "ab") as spend,
        ):
            files = {"clicks": clicks, "orders": orders, "spend": spend}
            try:
                for topic, line in generate(spec):
                    if keep is not None and not keep(orjson.loads(line).get("ts", 0)):
                        continue
                    files[topic].write(line + b"\n")
                    key: bytes | None
                    if topic == "spend":
                        key = orjson.loads(line)["channel"].encode()
                    elif key_of is not None:
                        key = key_of(line)
                    else:
                        try:
                            key = orjson.loads(line).get("user_id", "").encode()
                        except (orjson.JSONDecodeError, AttributeError):
                            key = b""
                    if flowing is not None and not flowing.is_set():
                        await producer.flush()
                        if flushed is not None:
                            flushed.set()
                        await flowing.wait()
                    await producer.send(topics[topic], line, key=key)
                    sent += 1
                    if rate and sent % 50 == 0:
                        ahead = sent / rate - (time.monotonic() - started)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                await producer.flush()
            finally:
                await producer.stop()
        self.produced += sent
        return sent

    # reading results
    async def snapshot(self) -> dict:
        return await snapshot_report(self.bootstrap, self.config)

    async def wait_consumed(self, timeout: float = 120) -> dict:
        """The snapshot once every produced message is counted and two reads in a row
        agree (or fail with the last one): a transaction's commit markers reach the KPI
        topic's partitions one after another, so one read can catch half of one."""
        deadline = time.monotonic() + timeout
        report, previous = await self.snapshot(), None
        while (
            report["events"]["consumed"] < self.produced or report != previous
        ) and time.monotonic() < deadline:
            await asyncio.sleep(0.5 if report["events"]["consumed"] >= self.produced else 1)
            previous, report = report, await self.snapshot()
        assert report["events"]["consumed"] == self.produced, (report["events"], self.produced)
        return report

    def replay(self, derived_outputs: dict | None = None) -> dict:
        spend = self.spend if self.spend.exists() else None
        report, _, _ = replay_files(
            self.config, self.clicks, self.orders, spend, derived_outputs=derived_outputs
        )
        return report

    async def group_lag(self) -> int:
        """End offsets minus the group's committed offsets over both input topics."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.config.app_id)
        finally:
            await admin.close()
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            tps = [
                TopicPartition(t, p)
                for t in (self.config.topics.clicks, self.config.topics.orders)
                for p in range(self.config.topics.partitions)
            ] + [TopicPartition(self.config.topics.spend, q) for q in range(SPEND_PARTITIONS)]
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)

    async def wait_lag_zero(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        lag = await self.group_lag()
        while lag and time.monotonic() < deadline:
            await asyncio.sleep(1)
            lag = await self.group_lag()
        return lag


class _NoRetry(Exception):
    pass


def _get(url: str, expect: int = 200, headers: dict | None = None):
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    assert status == expect, (url, status, body[:200])
    return orjson.loads(body) if body.startswith(b"{") else body


def same_numbers(live: dict, replayed: dict) -> dict:
    """The parts that differ, empty when the live report equals the replay."""
    return {k: (live[k], replayed[k]) for k in COMPARED if live[k] != replayed[k]}
