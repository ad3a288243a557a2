"""The Prometheus and Alertmanager configs in deploy/ pass promtool and amtool: the
configs parse, the rules' unit tests (deploy/prometheus/tests/) pass, alerts route
to the intended receivers.

promtool and amtool come with the Debian packages `prometheus` and
`prometheus-alertmanager` (.ci/run installs them); without them these tests fail."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = PROMETHEUS / "tests" / "opspulse-rules.test.yml"
ALERTS = PROMETHEUS / "rules" / "opspulse-alerts.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
INSTALL = (
    "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager "
    "(Debian/Ubuntu; .ci/run does it)"
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: install it with {INSTALL}", pytrace=False)
    return path


def run(*args: str | Path, stdout_only: bool = False) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{output}"
    return done.stdout if stdout_only else output


def test_prometheus_config_and_its_rule_files_are_valid():
    out = run(tool("promtool"), "check", "config", CONFIG)
    assert "SUCCESS: 2 rule files found" in out, out


def test_rule_files_are_valid():
    assert [p.name for p in RULES] == ["opspulse-alerts.yml", "opspulse-recording.yml"]
    out = run(tool("promtool"), "check", "rules", *RULES)
    assert out.count("SUCCESS") == len(RULES), out


def test_rule_unit_tests_pass():
    out = run(tool("promtool"), "test", "rules", RULE_TESTS)
    assert "SUCCESS" in out, out


def test_every_alert_is_unit_tested_and_documented():
    """Each alert: a severity, summary/description/runbook annotations, and cases in
    the unit tests where it does not fire yet and where it fires."""
    alerts = ALERTS.read_text()
    blocks = re.split(r"^\s*- alert: ", alerts, flags=re.M)[1:]
    names = [block.split()[0] for block in blocks]
    assert names == [
        "OpspulseWorkerDown", "OpspulseConsumerLagGrowing", "OpspulseEventTimeLagHigh",
        "OpspulseNoData", "OpspulseInvalidRatioHigh", "OpspulseRecoveryStuck",
        "OpspulseBusinessAlert",
    ]  # fmt: skip
    for name, block in zip(names, blocks, strict=True):
        for key in ("severity:", "summary:", "description:", "runbook:"):
            assert re.search(rf"^\s+{key}", block, flags=re.M), (name, key)
    tests = RULE_TESTS.read_text()
    cases = re.findall(
        r"alertname: (\w+)\n\s+exp_alerts:(\s*\[\])?", tests
    )  # (name, "[]" when it must not fire)
    for name in names:
        assert (name, " []") in cases, f"{name}: no case where it must not fire"
        assert (name, "") in cases, f"{name}: no case where it fires"
    documented = (ROOT / "README.md").read_text()
    assert all(f"`{name}`" in documented for name in names)


def test_alertmanager_config_is_valid():
    out = run(tool("amtool"), "check-config", ALERTMANAGER)
    assert "SUCCESS" in out and "4 receivers" in out, out


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=X"], "opspulse-critical"),
        (["severity=critical", "alertname=OpspulseWorkerDown"], "opspulse-critical"),
        (["severity=warning", "alertname=OpspulseInvalidRatioHigh"], "opspulse-warning"),
        (
            ["severity=warning", "category=business", "alertname=OpspulseBusinessAlert"],
            "opspulse-business",
        ),
        (["alertname=Unlabelled"], "opspulse-default"),
    ],
)
def test_alerts_route_by_severity(labels, receiver):
    out = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels,
        stdout_only=True,
    )  # fmt: skip
    assert out.strip() == receiver, out
