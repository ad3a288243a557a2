"""What shapes stored state, and whether a new configuration can use it.

The meta record of each partition stores the fingerprint of the configuration
that wrote its state. On load the current configuration is compared with it:
- compatible: adding a funnel or a breakdown dimension (it counts from the day
  after the partition's watermark on, `since`), removing or reordering funnels
  (data is stored by name) or dimensions, shortening `allowed_lateness`, and
  everything not listed below;
- incompatible (the worker stops, exit 2, one line saying what to do):
  another `timezone` (days are local day numbers), other `inactive_types`
  (what counts as activity), a longer `allowed_lateness` (state was already
  compacted with the shorter bound), another partition count (users would
  move), an existing funnel's steps or window changed (give it a new name), or
  a kept breakdown dimension's allow-list or `max_values` changed (users'
  values would move without their history), other `ltv_tiers`, `[rfm]` or
  `[lifecycle]` thresholds (users' classes of coming days are counted ahead).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from state.config import Config, ConfigError

REBUILD_HINT = (
    "revert the change, or rebuild the state from the retained input topics under a new "
    "app_id (README: Config changes and rebuilds)"
)


def fingerprint(
    config: Config,
    funnel_since: dict[str, int],
    retired: dict[str, Any] | None = None,
    breakdown_since: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The state-shaping part of `config`, as stored in each partition's meta record.
    `retired`: funnels removed from the config (name -> steps and window), remembered
    because user records not rewritten since still hold their steps by name."""
    return {
        "retired": retired or {},
        "timezone": config.timezone,
        "inactive_types": sorted(config.inactive_types),
        "activation_events": sorted(config.activation_events),
        "segments": {  # as JSON reads it back (lists, not tuples)
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config.segments).items()
        },
        "allowed_lateness_ms": config.allowed_lateness_ms,
        "partitions": config.topics.partitions,
        "funnels": [
            {
                "name": f.name,
                "steps": list(f.steps),
                "window_ms": f.window_ms,
                "since": funnel_since.get(f.name),
            }
            for f in config.funnels
        ],
        "breakdowns": {
            "max_values": config.breakdowns.max_values,
            "dimensions": [
                {
                    "name": dim,
                    "allow": sorted(allow) if (allow := config.breakdowns.allow.get(dim)) else None,
                    "since": (breakdown_since or {}).get(dim),
                }
                for dim in config.breakdowns.dimensions
            ],
        },
    }


def check_compatible(stored: dict[str, Any], config: Config, app_id: str) -> None:
    """Raise ConfigError naming the first incompatible change."""
    now = fingerprint(config, {})
    problems = []
    for key, what in (
        ("timezone", "days are calendar days in it"),
        ("inactive_types", "they decide what counts as activity"),
        ("activation_events", "users' earliest activation event is kept for them"),
        ("segments", "users' classes of coming days are already counted by them"),
        ("partitions", "users are placed by it"),
    ):
        if key in stored and stored[key] != now[key]:
            problems.append(f"{key} changed from {stored[key]!r} to {now[key]!r} ({what})")
    if now["allowed_lateness_ms"] > stored["allowed_lateness_ms"]:
        problems.append(
            f"allowed_lateness grew from {stored['allowed_lateness_ms']} ms to "
            f"{now['allowed_lateness_ms']} ms (state was compacted with the shorter bound)"
        )
    before = {**stored.get("retired", {}), **{f["name"]: f for f in stored["funnels"]}}
    for f in now["funnels"]:
        old = before.get(f["name"])
        if old and (old["steps"], old["window_ms"]) != (f["steps"], f["window_ms"]):
            problems.append(
                f"funnel {f['name']!r} changed its steps or window (give it a new name to "
                "start counting it afresh)"
            )
    stored_bd = stored.get("breakdowns")
    if stored_bd is not None:
        old_dims = {d["name"]: d for d in stored_bd["dimensions"]}
        for d in now["breakdowns"]["dimensions"]:
            old = old_dims.get(d["name"])
            if old is None:
                continue
            if old["allow"] != d["allow"]:
                problems.append(
                    f"the allow-list of breakdown {d['name']!r} changed (users' values would move)"
                )
            elif d["allow"] is None and stored_bd["max_values"] != now["breakdowns"]["max_values"]:
                problems.append(
                    f"breakdowns.max_values changed from {stored_bd['max_values']} to "
                    f"{now['breakdowns']['max_values']} (users' values would move)"
                )
    if problems:
        raise ConfigError(
            f"the state of app_id {app_id!r} was written with another configuration: "
            f"{problems[0]}; {REBUILD_HINT}"
        )


def retired_funnels(stored: dict[str, Any] | None, config: Config) -> dict[str, Any]:
    """Funnels the stored state knew that the config no longer has (kept for good)."""
    if not stored:
        return {}
    current = {f.name for f in config.funnels}
    retired = {k: v for k, v in stored.get("retired", {}).items() if k not in current}
    for f in stored["funnels"]:
        if f["name"] not in current:
            retired[f["name"]] = {"steps": f["steps"], "window_ms": f["window_ms"]}
    return retired


def funnels_since(
    stored: dict[str, Any] | None, config: Config, today: int | None
) -> dict[str, int]:
    """Per funnel, the first day it counts in full: kept from the stored fingerprint;
    for a funnel new to this state, the day after `today` (the partition's watermark
    day), or nothing when the partition has no data yet (it counts from the start)."""
    known = {f["name"]: f.get("since") for f in stored["funnels"]} if stored else None
    return _since(known, [f.name for f in config.funnels], today)


def breakdowns_since(
    stored: dict[str, Any] | None, config: Config, today: int | None
) -> dict[str, int]:
    """Per breakdown dimension, the first day it counts in full (as `funnels_since`;
    state written before breakdowns existed has none of them)."""
    known = None
    if stored and "breakdowns" in stored:
        known = {d["name"]: d.get("since") for d in stored["breakdowns"]["dimensions"]}
    elif today is not None:
        known = {}  # state with data, written before breakdowns: each starts now
    return _since(known, list(config.breakdowns.dimensions), today)


def _since(
    known: dict[str, int | None] | None, names: list[str], today: int | None
) -> dict[str, int]:
    since: dict[str, int] = {}
    for name in names:
        if known is None or name in known:
            day = known.get(name) if known else None
        else:
            day = None if today is None else today + 1
        if day is not None:
            since[name] = day
    return since
