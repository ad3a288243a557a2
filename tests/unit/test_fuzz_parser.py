"""The parsers under a coverage-guided fuzzer (atheris) for a bounded time, seeded
with generated lines and malformed ones: no exception escapes, every input is an
event or has one documented reason (tests/fuzz/fuzz_parser.py says what is checked)."""

import re
import subprocess
import sys
from pathlib import Path

from streams.generator import GeneratorSpec, generate

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 20


def test_fuzzing_the_parsers_finds_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    spec = GeneratorSpec(seed=3, days=1, new_users_per_day=20, invalid_rate=0.05)
    for i, (_, line) in enumerate(generate(spec)):
        if i % 7 == 0:
            (corpus / f"seed{i}").write_bytes(line)
    result = subprocess.run(
        [sys.executable, "tests/fuzz/fuzz_parser.py", f"-max_total_time={SECONDS}",
         "-print_final_stats=1", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/",
         str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    assert runs and int(runs.group(1)) > 10_000, output[-2000:]
    print(f"fuzzed {runs.group(1)} inputs in {SECONDS}s")
