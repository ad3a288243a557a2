"""Static checks of deploy/ (Dockerfile, docker-compose.yml, k8s/): no Docker daemon,
no cluster, no network.

- docker-compose.yml against the Compose Specification schema (check-jsonschema's
  vendored `vendor.compose-spec`) and through `docker-compose config -q` (the Debian
  package docker-compose: parses, interpolates and resolves without a daemon);
- deploy/k8s/*.yaml against the Kubernetes OpenAPI schemas, strict (unknown fields
  rejected), with kubernetes-validate;
- cross-file consistency that neither schema sees (selectors, probe paths, replicas vs
  partitions, published ports on 127.0.0.1, mounted files that exist);
- the Dockerfile, parsed minimally (no build).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from state.config import Config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "k8s"
K8S_FILES = sorted(K8S.glob("*.yaml"))
# A version kubernetes-validate ships schemas for (`kubernetes-validate --help`).
K8S_VERSION = "1.30.0"
TIMEOUT = 120


def _tool(name: str, requirement: str) -> str:
    """The console script `name` from this interpreter's environment, else PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install {requirement!r} (pyproject test extras)")
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"{shlex.join(proc.args)} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _k8s_docs() -> dict[str, dict[str, Any]]:
    """kind/name -> manifest, over deploy/k8s/*.yaml."""
    docs: dict[str, dict[str, Any]] = {}
    for path in K8S_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


# --- docker-compose.yml ---------------------------------------------------------------


def test_compose_matches_compose_spec_schema() -> None:
    tool = _tool("check-jsonschema", "check-jsonschema>=0.37,<0.38")
    _assert_ok(_run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]))


def _compose_cli() -> list[str] | None:
    if exe := shutil.which("docker-compose"):
        return [exe]
    docker = shutil.which("docker")
    if docker and _run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    return None


def test_compose_config_resolves() -> None:
    """`docker-compose config -q`: the file as Compose itself reads it (merge keys,
    interpolation, build context, depends_on), no daemon needed."""
    cli = _compose_cli()
    if cli is None:
        pytest.fail(
            "no docker compose binary: apt-get install -y --no-install-recommends docker-compose"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    proc = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    _assert_ok(proc)


def test_compose_publishes_on_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            spec = port if isinstance(port, str) else port.get("host_ip", "") + ":"
            assert spec.startswith("127.0.0.1:"), f"{name}: port {port!r} not on 127.0.0.1"


def test_compose_bind_mounts_exist() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: mounts missing {source}"
    build = _compose()["services"]["worker1"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_kafka_single_node_transactions() -> None:
    env = _compose()["services"]["kafka"]["environment"]
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert str(env[key]) == "1", key


def test_compose_prometheus_scrapes_every_worker_with_repo_rules() -> None:
    services = _compose()["services"]
    workers = {n for n, s in services.items() if s.get("build")}
    assert len(workers) >= 2
    for name in workers:
        assert services[name]["environment"]["OPSPULSE_BROKER"] == "kafka://kafka:9092"
        assert any(v.endswith(":/data") for v in services[name]["volumes"]), name
    volumes = [v.split(":", 1)[0] for n in workers for v in services[n]["volumes"]]
    assert len(set(volumes)) == len(volumes), "workers must not share a /data volume"

    compose_prom = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    repo_prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert compose_prom["rule_files"] == repo_prom["rule_files"]
    (job,) = compose_prom["scrape_configs"]
    assert job["job_name"] == "opspulse"  # the alerts select job="opspulse"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{name}:6066" for name in workers}
    am = compose_prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]

    ds = yaml.safe_load((DEPLOY / "compose" / "grafana-datasource.yml").read_text())
    repo_ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert ds["datasources"][0]["uid"] == repo_ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"


# --- deploy/k8s -----------------------------------------------------------------------


def test_k8s_manifests_match_schemas_strict() -> None:
    assert K8S_FILES, "no deploy/k8s/*.yaml"
    tool = _tool("kubernetes-validate", "kubernetes-validate>=1.30,<2")
    proc = _run([tool, "--strict", "--quiet", "-k", K8S_VERSION, *map(str, K8S_FILES)])
    _assert_ok(proc)


def test_k8s_cross_references() -> None:
    docs = _k8s_docs()
    sts = docs["StatefulSet/opspulse"]
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()

    headless = docs[f"Service/{sts['spec']['serviceName']}"]
    assert headless["spec"]["clusterIP"] == "None"
    metrics = docs["Service/opspulse-metrics"]
    assert metrics["spec"]["type"] == "ClusterIP"
    assert metrics["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    for svc in (headless, metrics):
        assert svc["spec"]["selector"].items() <= labels.items()
    pdb = docs["PodDisruptionBudget/opspulse"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    spec = pod["spec"]
    assert spec["terminationGracePeriodSeconds"] == 60
    (container,) = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"requests", "limits"} <= container["resources"].keys()
    env = {e["name"]: e for e in container["env"]}
    assert env["OPSPULSE_BROKER"]["value"].startswith("kafka://")
    token = env["OPSPULSE_HTTP_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["optional"] is True

    # OPSPULSE_CONFIG is the ConfigMap's key, mounted.
    config_path = Path(env["OPSPULSE_CONFIG"]["value"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[str(config_path.parent)])
    configmap = docs[f"ConfigMap/{volume['configMap']['name']}"]
    assert config_path.name in configmap["data"]

    # --data-dir is a volumeClaimTemplate (one volume per worker).
    args = container["args"]
    data_dir = args[args.index("--data-dir") + 1]
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert mounts[data_dir] in claims
    port = int(args[args.index("--web-port") + 1])
    assert container["ports"][0]["containerPort"] == port

    # Workers beyond the partition count would own no partition.
    partitions = tomllib.loads(configmap["data"][config_path.name])["topics"]["partitions"]
    hpa = docs["HorizontalPodAutoscaler/opspulse"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "opspulse"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert hpa["spec"]["metrics"][0]["type"] == "External"
    assert sts["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] == partitions


def test_k8s_configmap_is_a_valid_opspulse_config() -> None:
    configmap = _k8s_docs()["ConfigMap/opspulse-config"]
    for text in configmap["data"].values():
        Config.from_mapping(tomllib.loads(text))  # raises ConfigError on a bad key


# --- Dockerfile -----------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return instructions


def test_dockerfile_shape() -> None:
    instructions = _dockerfile_instructions()
    keywords = [k for k, _ in instructions]
    assert keywords[0] == "FROM"
    assert instructions[0][1].split()[0] == "python:3.11-slim"

    users = [arg for k, arg in instructions if k == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"final USER is {users[-1]!r}"

    exec_form = {k: json.loads(a) for k, a in instructions if k in {"ENTRYPOINT", "CMD"}}
    assert exec_form["ENTRYPOINT"] == ["opspulse"]
    cmd = exec_form["CMD"]
    assert cmd[0] == "worker"
    assert cmd[cmd.index("--web-host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--data-dir") + 1] == "/data"

    assert any(k == "RUN" and "pip install ." in a for k, a in instructions)
    assert ("EXPOSE", "6066") in instructions
    (healthcheck,) = [a for k, a in instructions if k == "HEALTHCHECK"]
    assert "/health" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
