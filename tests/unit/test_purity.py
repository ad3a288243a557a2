"""state/ is the pure core: no framework may be imported there, directly or not."""

import ast
import subprocess
import sys
from pathlib import Path

STATE = Path(__file__).resolve().parents[2] / "state"
FORBIDDEN = ("faust", "aiokafka", "prometheus_client", "mode", "kafka")


def test_state_sources_import_no_framework():
    offenders = []
    for path in STATE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_state_loads_no_framework_module():
    code = (
        "import sys, pkgutil, importlib, state\n"
        "for m in pkgutil.walk_packages(state.__path__, 'state.'): importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
