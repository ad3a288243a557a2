"""The configuration example in the README is valid TOML and loads as a config
(keeps the README true when keys are added or moved)."""

import re
import tomllib
from pathlib import Path

from state.config import Config


def test_the_readme_configuration_example_loads():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "app_id" in b)
    config = Config.from_mapping(tomllib.loads(block))
    assert config.timezone == "Asia/Shanghai" and config.segments.ltv_tier_cents == (30000, 80000)
    assert config.experiments.goal == "order_paid" and config.limits.experiments_per_user == 16
