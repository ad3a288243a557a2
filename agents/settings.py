"""Where configuration comes from: `--config`, else `OPSPULSE_CONFIG`, else defaults."""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path

from state.config import Config, ConfigError

DEFAULT_BROKER = "kafka://127.0.0.1:9092"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration (default: $OPSPULSE_CONFIG)"
    )


def load_config(path: str | None = None) -> Config:
    """The validated configuration; ConfigError names the file and the bad key."""
    path = path or os.environ.get("OPSPULSE_CONFIG") or None
    if not path:
        return Config()
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config {path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None
    try:
        return Config.from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"config {path}: {exc}") from None


def broker_url() -> str:
    """`OPSPULSE_BROKER` as a Faust URL (kafka://host:port[;host:port])."""
    url = os.environ.get("OPSPULSE_BROKER", DEFAULT_BROKER)
    return url if "://" in url else f"kafka://{url}"


def bootstrap_servers() -> str:
    """`OPSPULSE_BROKER` as an aiokafka bootstrap list (host:port,host:port)."""
    return broker_url().split("://", 1)[1].replace(";", ",")
