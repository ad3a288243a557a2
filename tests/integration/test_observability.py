"""A real Prometheus scrapes a real worker with the repo's rules, and a real
Alertmanager (the repo's config) posts the firing invalid-ratio alert to a webhook.

Needs the `prometheus` and `prometheus-alertmanager` Debian packages (.ci/run
installs them); fails, does not skip, without them."""

import asyncio
import importlib.util
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cluster import free_port

from streams.generator import GeneratorSpec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
EXAMPLE_RECEIVER = ROOT / "deploy" / "alertmanager" / "example_receiver.py"
# 5% malformed lines per valid one: an invalid ratio of ~4.8%, over the 1% threshold.
SPEC = GeneratorSpec(seed=31, days=1, new_users_per_day=40, invalid_rate=0.05)
# Slow enough that several 1 s scrapes see the counters grow (rate() needs that).
RATE = 80  # messages/s: ~6 s for SPEC's ~500 messages
TIMEOUT_S = 60


def binary(*names: str) -> str:
    for name in names:
        if path := shutil.which(name):
            return path
    pytest.fail(
        f"none of {names} is on PATH: apt-get install -y --no-install-recommends "
        "prometheus prometheus-alertmanager (.ci/run does it)",
        pytrace=False,
    )


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def processes(tmp_path):
    """start(name, *argv): a subprocess logging to <tmp>/obs/<name>.log, stopped after."""
    started: list[tuple[subprocess.Popen, object]] = []

    def start(name: str, *argv: str) -> subprocess.Popen:
        log = open(tmp_path / "obs" / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        started.append((proc, log))
        return proc

    (tmp_path / "obs").mkdir()
    yield start
    for proc, log in reversed(started):
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def webhook():
    """(url, payloads): deploy/alertmanager/example_receiver.py's server on a free port,
    collecting each posted Alertmanager payload."""
    spec = importlib.util.spec_from_file_location("example_receiver", EXAMPLE_RECEIVER)
    receiver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(receiver)
    payloads: list[dict] = []
    server = receiver.make_server("127.0.0.1", 0, payloads.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", payloads
    finally:
        server.shutdown()
        server.server_close()


def start_prometheus(
    processes, workdir: Path, worker_port: int, rule_files: list[Path], alertmanager_port=None
) -> int:
    """A real Prometheus scraping one worker every second, evaluating `rule_files` every
    second (alerts to `alertmanager_port` if given); its port. JSON is YAML; job
    "opspulse" as in deploy/prometheus/prometheus.yml (the alerts select it)."""
    config: dict = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": "opspulse", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]}
        ],
    }
    if alertmanager_port is not None:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        }
    (workdir / "prometheus.yml").write_text(json.dumps(config, indent=1))
    port = free_port()
    processes(
        "prometheus", binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    )  # fmt: skip
    return port


def query_prometheus(port: int, expr: str) -> list[dict]:
    """An instant query's result (a failed or malformed query fails the test)."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = get_json(url)
    except urllib.error.HTTPError as exc:  # a bad query: 400 with Prometheus' error
        pytest.fail(f"{expr!r}: HTTP {exc.code} {exc.read().decode()}", pytrace=False)
    assert body["status"] == "success", body
    return body["data"]["result"]


async def wait_for(what: str, check, logs: Path, timeout: float = TIMEOUT_S, detail=None):
    """check()'s first truthy result, polled every 0.5 s; fails with detail() and the
    logs' tails."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except OSError as exc:
            last = exc
        await asyncio.sleep(0.5)
    tails = "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        for log in sorted(logs.glob("*.log"))
    )
    seen = f"\n{detail()}" if detail else ""
    pytest.fail(
        f"{what}: not within {timeout}s (last error {last!r}){seen}\n{tails}", pytrace=False
    )


async def test_prometheus_scrapes_a_worker_and_alertmanager_posts_the_alert(
    cluster, processes, webhook, tmp_path
):
    alertmanager = binary("prometheus-alertmanager", "alertmanager")
    obs = tmp_path / "obs"
    webhook_url, payloads = webhook
    cluster.start("w1")

    # The repo's rules with every `for:` shortened to 1s for the test (expressions and
    # thresholds unchanged); Prometheus below scrapes and evaluates every 1s.
    (obs / "rules").mkdir()
    for path in sorted(RULES.glob("*.yml")):
        text, n = re.subn(r"(?m)^(\s+for:\s*)\S+\s*$", r"\g<1>1s", path.read_text())
        assert (n > 0) == (path.name == "opspulse-alerts.yml"), (path, n)
        (obs / "rules" / path.name).write_text(text)

    # The repo's Alertmanager config, posting to the test's webhook, with 1s groups.
    am_config = ALERTMANAGER_CONFIG.read_text()
    for key, value in (("url", webhook_url), ("group_wait", "1s"), ("group_interval", "1s")):
        am_config, n = re.subn(rf"(?m)^(\s*(?:- )?{key}:\s*).*$", rf"\g<1>{value}", am_config)
        assert n > 0, key
    (obs / "alertmanager.yml").write_text(am_config)
    am_port = free_port()
    processes(
        "alertmanager", alertmanager, f"--config.file={obs / 'alertmanager.yml'}",
        f"--storage.path={obs / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=",
    )  # fmt: skip

    # Scrape the worker once it serves (`up` never 0: no WorkerDown).
    await cluster.wait_ready(["w1"])
    prom_port = start_prometheus(
        processes, obs, cluster.ports["w1"], sorted((obs / "rules").glob("*.yml")), am_port
    )
    await wait_for("Alertmanager ready", lambda: is_ready(am_port), obs)
    await wait_for("Prometheus ready", lambda: is_ready(prom_port), obs)

    def query(expr: str) -> list[dict]:
        return query_prometheus(prom_port, expr)

    # (a) Prometheus scrapes the worker.
    up = await wait_for("up == 1", lambda: query('up{job="opspulse"} == 1'), obs)
    assert up[0]["metric"]["instance"] == f"127.0.0.1:{cluster.ports['w1']}"

    sent = await cluster.produce(SPEC, rate=RATE)
    assert sent > 300
    clicks = cluster.config.topics.clicks

    # (b) The recording rules: the consumed rate, and the invalid ratio over 1%.
    consumed = await wait_for(
        "opspulse:events_consumed:rate5m",
        lambda: query(f'opspulse:events_consumed:rate5m{{topic="{clicks}"}} > 0'),
        obs,
    )
    assert consumed[0]["metric"] == {
        "__name__": "opspulse:events_consumed:rate5m", "job": "opspulse", "topic": clicks,
    }  # fmt: skip
    ratio = await wait_for(
        "opspulse:invalid_ratio:rate5m > 0.01",
        lambda: query(f'opspulse:invalid_ratio:rate5m{{topic="{clicks}"}} > 0.01'),
        obs,
    )
    assert 0.01 < float(ratio[0]["value"][1]) < 0.2

    # (c) Alertmanager posts the firing alert to the warning receiver's webhook.
    def invalid_ratio_alerts() -> list[tuple[str, dict]]:
        return [
            (payload["receiver"], alert)
            for payload in list(payloads)
            for alert in payload["alerts"]
            if alert["labels"]["alertname"] == "OpspulseInvalidRatioHigh"
            and alert["status"] == "firing"
        ]

    def posted_so_far() -> str:
        return "posted: " + ", ".join(
            f"{a['labels']['alertname']} ({a['status']})" for p in payloads for a in p["alerts"]
        )

    posted = await wait_for(
        "OpspulseInvalidRatioHigh posted", invalid_ratio_alerts, obs, detail=posted_so_far
    )
    receiver, alert = posted[0]
    assert receiver == "opspulse-warning"
    assert alert["labels"] == {
        "alertname": "OpspulseInvalidRatioHigh", "severity": "warning", "job": "opspulse",
        "topic": clicks,
    }  # fmt: skip
    assert alert["annotations"]["summary"].endswith(f"% of {clicks} messages are invalid")
    assert set(alert["annotations"]) == {"summary", "description", "runbook"}
    # Others may fire too with `for: 1s`: NoData before the traffic, EventTimeLagHigh
    # (the generated events are days old). The worker was never down.
    fired = {a["labels"]["alertname"] for p in payloads for a in p["alerts"]}
    assert "OpspulseWorkerDown" not in fired, fired
