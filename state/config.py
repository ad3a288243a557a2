"""The configuration model: validated where it enters, errors name the bad key."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and the rule."""


def parse_duration_ms(value: Any, key: str) -> int:
    """'30m', '24h', '2d', '500ms', or a number of seconds → milliseconds."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like '24h' or seconds, got {value!r}")
    if isinstance(value, int | float):
        ms = int(value * 1000)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        ms = int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    else:
        raise ConfigError(
            f"{key}: expected a duration like '24h', '30m', '2d' or seconds, got {value!r}"
        )
    if ms < 0:
        raise ConfigError(f"{key}: duration must be >= 0, got {value!r}")
    return ms


@dataclass(frozen=True)
class FunnelSpec:
    """An ordered list of event types and the window that binds them to step 1."""

    name: str
    steps: tuple[str, ...]
    window_ms: int


@dataclass(frozen=True)
class Topics:
    clicks: str = "clicks"
    orders: str = "orders"
    spend: str = "spend"
    dlq: str = "opspulse.dlq"
    kpi: str = "opspulse.kpi"
    segments: str = "opspulse.segments"
    churn_scores: str = "opspulse.churn-scores"
    alerts: str = "opspulse.alerts"
    triggers: str = "opspulse.triggers"
    partitions: int = 8


@dataclass(frozen=True)
class Thresholds:
    cart_abandon_after_ms: int = 30 * 60_000


@dataclass(frozen=True)
class Limits:
    """Per-user memory bounds by count (time alone lets one bot grow without bound).

    A user over a bound costs O(1) per event; what is lost is said in the README."""

    dedup_ids_per_user: int = 1000  # event ids remembered for deduplication
    funnel_steps_per_user: int = 256  # step events kept per funnel inside the window
    paid_orders_per_user: int = 256  # paid-order instants kept inside the window (repurchase)
    campaigns_per_user: int = 64  # push campaigns remembered per user (the most recent)
    experiments_per_user: int = 16  # experiments a user's exposures are kept for
    carts_per_user: int = 256  # add_to_cart events kept inside the window (cart triggers)


@dataclass(frozen=True)
class StateSpec:
    """Where a worker keeps its partitions' users (agents/localstore.py): with
    `local_store`, in RocksDB under the data directory, at most `cache_users` of them
    decoded in memory (over all its partitions); otherwise all in memory."""

    local_store: bool = True
    cache_users: int = 100_000


@dataclass(frozen=True)
class SegmentRules:
    """Thresholds of the classifications "as of the end of day d" (METRICS.md): LTV
    tiers and RFM in cents, lifecycle in days. Fixed numbers, so a user's class never
    depends on the partition it lives in."""

    ltv_tier_cents: tuple[int, int] = (30_000, 80_000)  # growth from, high from
    rfm_recency_days: int = 30
    rfm_frequency: int = 2
    rfm_monetary_cents: int = 30_000
    churned_days: int = 30
    churn_warning_days: int = 14
    silent_days: int = 3
    new_days: int = 7


@dataclass(frozen=True)
class AlertSpec:
    """Business alerts on step conversion (METRICS.md, "Alert rates"; state/alerting.py).
    `pairs`: "funnel:A>B" names; None = every consecutive step pair but each funnel's
    first (its entry step, e.g. page_view, is the costliest to track and the least
    actionable)."""

    pairs: tuple[str, ...] | None = None
    window_ms: int = 15 * 60_000  # the recent window judged (whole 5-minute buckets)
    min_attempts: int = 100  # in the window; fewer are not judged
    min_effect: float = 0.05  # absolute change of the rate
    alpha: float = 1e-4  # one-sided significance
    # How long after every partition's stream time passes a bucket's end plus the outcome
    # window it is judged: events arriving later than that are not judged for it.
    grace_ms: int = 2 * 60_000
    # Per rule name, settings that replace the ones above (`[alerts.rules."<name>"]`):
    # (name, ((key, value), ...)) with keys enabled, window_ms, min_attempts, min_effect,
    # alpha, direction. A tuple so the spec stays hashable.
    rules: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def rule(self, name: str, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        """The settings of one rule: the table's, then the rule kind's `defaults`, then
        that rule's overrides."""
        settings: dict[str, Any] = {
            "enabled": True, "window_ms": self.window_ms, "min_attempts": self.min_attempts,
            "min_effect": self.min_effect, "alpha": self.alpha, "direction": "drop",
            **(defaults or {}),
        }  # fmt: skip
        for rule_name, overrides in self.rules:
            if rule_name == name:
                settings.update(overrides)
        return settings


CHURN_MODELS = ("logistic", "forest")


@dataclass(frozen=True)
class ChurnSpec:
    """Churn prediction (METRICS.md, Churn; state/kpis/churn.py): at the end of every
    `every_days`-th day each user active within the horizon is scored; the label is
    whether they stay inactive for the next `horizon_days` days."""

    enabled: bool = True
    horizon_days: int = 7
    every_days: int = 1
    threshold: float = 0.5  # flagged at or above (precision, recall, churn-scores)
    hysteresis: float = 0.05  # unflagged again below threshold - hysteresis
    model: str = "logistic"
    learning_rate: float = 0.03
    # Until the model has learnt this many labels (a tenth of them of each class),
    # users are scored by the cold-start rule (state/churn_model.py).
    min_labels: int = 200
    vocabulary: int = 16  # channel and device values one-hot encoded per partition


@dataclass(frozen=True)
class ExperimentSpec:
    """A/B experiments: the goal event type and the window after the first exposure."""

    goal: str = "order_paid"
    window_ms: int = 7 * DAY_MS
    # Intended traffic split per experiment, {variant: weight} (default: equal), for SRM.
    weights: dict[str, dict[str, float]] = field(default_factory=dict)


BREAKDOWN_DIMENSIONS = ("channel", "device", "region")


@dataclass(frozen=True)
class BreakdownSpec:
    """Which acquisition attributes the user KPIs are broken down by, and the bound on
    their values per partition (or an exact allow-list per dimension)."""

    dimensions: tuple[str, ...] = BREAKDOWN_DIMENSIONS
    max_values: int = 50
    allow: dict[str, frozenset[str]] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash((self.dimensions, self.max_values, tuple(sorted(self.allow))))


DEFAULT_FUNNELS = (
    FunnelSpec("purchase", ("page_view", "add_to_cart", "checkout", "order_paid"), DAY_MS),
)


@dataclass(frozen=True)
class Config:
    app_id: str = "opspulse"  # names the consumer group and the state topic
    timezone: str = "UTC"
    funnels: tuple[FunnelSpec, ...] = DEFAULT_FUNNELS
    allowed_lateness_ms: int = 2 * DAY_MS
    inactive_types: frozenset[str] = frozenset({"push_sent", "order_refunded"})
    max_message_bytes: int = 64 * 1024
    commit_interval_ms: int = 1000
    topics: Topics = field(default_factory=Topics)
    thresholds: Thresholds = field(default_factory=Thresholds)
    limits: Limits = field(default_factory=Limits)
    breakdowns: BreakdownSpec = field(default_factory=BreakdownSpec)
    activation_events: frozenset[str] = frozenset({"order_paid"})
    segments: SegmentRules = field(default_factory=SegmentRules)
    experiments: ExperimentSpec = field(default_factory=ExperimentSpec)
    alerts: AlertSpec = field(default_factory=AlertSpec)
    churn: ChurnSpec = field(default_factory=ChurnSpec)
    state: StateSpec = field(default_factory=StateSpec)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Config:
        """Build from parsed TOML; unknown or malformed keys raise ConfigError."""
        known = {
            "app_id", "timezone", "funnels", "allowed_lateness", "inactive_types",
            "max_message_bytes", "commit_interval", "topics", "thresholds", "limits",
            "breakdowns", "activation", "ltv_tiers", "rfm", "lifecycle", "experiments",
            "alerts", "churn", "state",
        }  # fmt: skip
        for key in data:
            if key not in known:
                raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(known))})")
        kwargs: dict[str, Any] = {}
        if "app_id" in data:
            app_id = data["app_id"]
            if not isinstance(app_id, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", app_id):
                raise ConfigError(
                    f"app_id: expected 1-100 letters, digits, '.', '_' or '-', got {app_id!r}"
                )
            kwargs["app_id"] = app_id
        if "timezone" in data:
            kwargs["timezone"] = _timezone(data["timezone"])
        if "funnels" in data:
            kwargs["funnels"] = _funnels(data["funnels"])
        if "allowed_lateness" in data:
            kwargs["allowed_lateness_ms"] = parse_duration_ms(
                data["allowed_lateness"], "allowed_lateness"
            )
        if "commit_interval" in data:
            kwargs["commit_interval_ms"] = parse_duration_ms(
                data["commit_interval"], "commit_interval"
            )
            if kwargs["commit_interval_ms"] <= 0:
                raise ConfigError("commit_interval: must be > 0")
        if "inactive_types" in data:
            kwargs["inactive_types"] = frozenset(
                _string_list(data["inactive_types"], "inactive_types")
            )
        if "max_message_bytes" in data:
            kwargs["max_message_bytes"] = _positive_int(
                data["max_message_bytes"], "max_message_bytes"
            )
        if "topics" in data:
            kwargs["topics"] = _topics(data["topics"])
        if "thresholds" in data:
            kwargs["thresholds"] = _thresholds(data["thresholds"])
        if "limits" in data:
            kwargs["limits"] = _limits(data["limits"])
        if "activation" in data:
            activation = data["activation"]
            if not isinstance(activation, dict) or set(activation) - {"events"}:
                raise ConfigError("activation: expected a table with `events` (a list of types)")
            if "events" in activation:
                kwargs["activation_events"] = frozenset(
                    _string_list(activation["events"], "activation.events")
                )
        if "breakdowns" in data:
            kwargs["breakdowns"] = _breakdowns(data["breakdowns"])
        if "experiments" in data:
            kwargs["experiments"] = _experiments(data["experiments"])
        if "alerts" in data:
            kwargs["alerts"] = _alerts(data["alerts"])
        if "churn" in data:
            kwargs["churn"] = _churn(data["churn"])
        if "state" in data:
            kwargs["state"] = _state(data["state"])
        if {"ltv_tiers", "rfm", "lifecycle"} & data.keys():
            kwargs["segments"] = _segments(data)
        config = cls(**kwargs)
        if config.alerts.rules:
            from state.alert_evaluator import rule_names  # it reads the config

            names = rule_names(config)
            for name, overrides in config.alerts.rules:
                if name not in names:
                    raise ConfigError(
                        f'alerts.rules."{name}": no such rule (rules: {", ".join(names)})'
                    )
                if name.endswith(":volume") and dict(overrides).get("direction") == "rise":
                    raise ConfigError(f'alerts.rules."{name}".direction: volume rules watch drops')
        return config


def _alerts(value: Any) -> AlertSpec:
    """`[alerts] pairs = ["purchase:checkout>order_paid"], window = "15m", min_attempts,
    min_effect, alpha, grace = "2m"`, and per rule `[alerts.rules."<name>"] enabled,
    window, min_attempts, min_effect, alpha, direction`."""
    known = {"pairs", "window", "min_attempts", "min_effect", "alpha", "grace", "rules"}
    if not isinstance(value, dict) or set(value) - known:
        raise ConfigError(f"alerts: expected a table with {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = _alert_settings(value, "alerts")
    if "pairs" in value:
        pairs = _string_list(value["pairs"], "alerts.pairs")
        for pair in pairs:
            if not re.fullmatch(r"[^:>]+:[^:>]+>[^:>]+", pair):
                raise ConfigError(f"alerts.pairs: expected 'funnel:A>B', got {pair!r}")
        kwargs["pairs"] = tuple(pairs)
    if "grace" in value:
        kwargs["grace_ms"] = parse_duration_ms(value["grace"], "alerts.grace")
    rules = value.get("rules", {})
    if not isinstance(rules, dict):
        raise ConfigError('alerts.rules: expected tables like [alerts.rules."purchase:a>b"]')
    overrides = []
    for name, table in rules.items():
        key = f'alerts.rules."{name}"'
        rule_keys = {"enabled", "window", "min_attempts", "min_effect", "alpha", "direction"}
        if not isinstance(table, dict) or set(table) - rule_keys:
            raise ConfigError(f"{key}: expected a table with {', '.join(sorted(rule_keys))}")
        settings = _alert_settings(table, key)
        if "enabled" in table:
            if not isinstance(table["enabled"], bool):
                raise ConfigError(f"{key}.enabled: expected true or false")
            settings["enabled"] = table["enabled"]
        if "direction" in table:
            if table["direction"] not in ("drop", "rise"):
                raise ConfigError(f"{key}.direction: expected 'drop' or 'rise'")
            settings["direction"] = table["direction"]
        overrides.append((name, tuple(sorted(settings.items()))))
    kwargs["rules"] = tuple(overrides)
    return AlertSpec(**kwargs)


def _alert_settings(value: dict[str, Any], where: str) -> dict[str, Any]:
    """`window`, `min_attempts`, `min_effect` and `alpha` of `[alerts]` or of one rule."""
    kwargs: dict[str, Any] = {}
    if "window" in value:
        window = parse_duration_ms(value["window"], f"{where}.window")
        if window <= 0 or window % (5 * 60_000):
            raise ConfigError(f"{where}.window: a positive multiple of 5 minutes")
        kwargs["window_ms"] = window
    if "min_attempts" in value:
        kwargs["min_attempts"] = _positive_int(value["min_attempts"], f"{where}.min_attempts")
    for key, high in (("min_effect", 1.0), ("alpha", 0.5)):
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= high:
                raise ConfigError(f"{where}.{key}: expected a number in (0, {high}], got {v!r}")
            kwargs[key] = float(v)
    return kwargs


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"timezone: expected an IANA name like 'Asia/Shanghai', got {value!r}")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone: unknown IANA timezone {value!r}") from None
    return value


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a list of non-empty strings, got {value!r}")
    return value


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


def _funnels(value: Any) -> tuple[FunnelSpec, ...]:
    if not isinstance(value, list):
        raise ConfigError("funnels: expected an array of tables ([[funnels]])")
    specs, names = [], set()
    for i, item in enumerate(value):
        key = f"funnels[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{key}: expected a table with name, steps, window")
        for k in item:
            if k not in ("name", "steps", "window"):
                raise ConfigError(f"{key}.{k}: unknown key (known: name, steps, window)")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}.name: expected a non-empty string")
        if name in names:
            raise ConfigError(f"{key}.name: funnel {name!r} is defined twice")
        names.add(name)
        steps = _string_list(item.get("steps"), f"{key}.steps")
        if not 1 <= len(steps) <= 32:
            raise ConfigError(f"{key}.steps: expected 1 to 32 steps, got {len(steps)}")
        if len(set(steps)) != len(steps):
            raise ConfigError(f"{key}.steps: each event type may appear once, got {steps}")
        window = parse_duration_ms(item.get("window", "24h"), f"{key}.window")
        if window <= 0:
            raise ConfigError(f"{key}.window: must be > 0")
        specs.append(FunnelSpec(name, tuple(steps), window))
    return tuple(specs)


def _topics(value: Any) -> Topics:
    if not isinstance(value, dict):
        raise ConfigError("topics: expected a table")
    defaults = Topics()
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        attr = k.replace("-", "_")
        if not hasattr(defaults, attr):
            raise ConfigError(f"topics.{k}: unknown key")
        if attr == "partitions":
            kwargs[attr] = _positive_int(v, "topics.partitions")
        elif not isinstance(v, str) or not v:
            raise ConfigError(f"topics.{k}: expected a topic name")
        else:
            kwargs[attr] = v
    return Topics(**kwargs)


def _thresholds(value: Any) -> Thresholds:
    if not isinstance(value, dict):
        raise ConfigError("thresholds: expected a table")
    durations = {"cart_abandon_after"}
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        key = f"thresholds.{k}"
        if k in durations:
            kwargs[f"{k}_ms"] = parse_duration_ms(v, key)
        elif k == "experiment_window":
            raise ConfigError(f"{key}: moved to `[experiments] window`")
        elif k in ("ltv_growth", "ltv_high"):
            raise ConfigError(f"{key}: moved to `ltv_tiers = [growth, high]` (currency units)")
        elif k in ("churn_horizon", "churn_risk"):
            new = "horizon" if k == "churn_horizon" else "threshold"
            raise ConfigError(f"{key}: moved to `[churn] {new}`")
        else:
            raise ConfigError(f"{key}: unknown key")
    return Thresholds(**kwargs)


def _state(value: Any) -> StateSpec:
    """`[state] local_store = true, cache_users = 100000`."""
    if not isinstance(value, dict):
        raise ConfigError("state: expected a table")
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        if k == "local_store":
            if not isinstance(v, bool):
                raise ConfigError(f"state.{k}: expected true or false, got {v!r}")
            kwargs[k] = v
        elif k == "cache_users":
            kwargs[k] = _positive_int(v, f"state.{k}")
        else:
            raise ConfigError(f"state.{k}: unknown key (known: cache_users, local_store)")
    return StateSpec(**kwargs)


def _limits(value: Any) -> Limits:
    if not isinstance(value, dict):
        raise ConfigError("limits: expected a table")
    known = Limits.__dataclass_fields__
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        if k not in known:
            raise ConfigError(f"limits.{k}: unknown key (known: {', '.join(sorted(known))})")
        kwargs[k] = _positive_int(v, f"limits.{k}")
    return Limits(**kwargs)


def _breakdowns(value: Any) -> BreakdownSpec:
    """`[breakdowns]`: dimensions = [...], max_values = n, and per dimension an
    optional allow-list (`channel = ["ads", "organic"]`)."""
    if not isinstance(value, dict):
        raise ConfigError("breakdowns: expected a table")
    kwargs: dict[str, Any] = {}
    allow: dict[str, frozenset[str]] = {}
    for k, v in value.items():
        key = f"breakdowns.{k}"
        if k == "dimensions":
            dims = _string_list(v, key)
            unknown = [d for d in dims if d not in BREAKDOWN_DIMENSIONS]
            if unknown or len(set(dims)) != len(dims):
                raise ConfigError(
                    f"{key}: expected distinct names among {', '.join(BREAKDOWN_DIMENSIONS)}, "
                    f"got {dims!r}"
                )
            kwargs["dimensions"] = tuple(dims)
        elif k == "max_values":
            kwargs["max_values"] = _positive_int(v, key)
        elif k in BREAKDOWN_DIMENSIONS:
            values = _string_list(v, key)
            if any(len(x) > 64 for x in values):
                raise ConfigError(f"{key}: values are at most 64 characters")
            allow[k] = frozenset(values)
        else:
            raise ConfigError(
                f"{key}: unknown key (known: dimensions, max_values, "
                f"{', '.join(BREAKDOWN_DIMENSIONS)})"
            )
    return BreakdownSpec(allow=allow, **kwargs)


def _cents(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key}: expected an amount >= 0 in currency units, got {value!r}")
    return round(value * 100)


def _segments(data: dict[str, Any]) -> SegmentRules:
    """`ltv_tiers = [growth, high]`, `[rfm] recency_days, frequency, monetary` and
    `[lifecycle] churned_days, churn_warning_days, silent_days, new_days`."""
    kwargs: dict[str, Any] = {}
    if "ltv_tiers" in data:
        tiers = data["ltv_tiers"]
        if not isinstance(tiers, list) or len(tiers) != 2:
            raise ConfigError(f"ltv_tiers: expected [growth, high] amounts, got {tiers!r}")
        growth, high = (_cents(v, "ltv_tiers") for v in tiers)
        if not growth < high:
            raise ConfigError(f"ltv_tiers: expected growth < high, got {tiers!r}")
        kwargs["ltv_tier_cents"] = (growth, high)
    for section, keys in (
        ("rfm", {"recency_days": "rfm_recency_days", "frequency": "rfm_frequency"}),
        (
            "lifecycle",
            {k: k for k in ("churned_days", "churn_warning_days", "silent_days", "new_days")},
        ),
    ):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a table")
        known = {*keys, "monetary"} if section == "rfm" else set(keys)
        for k, v in table.items():
            if k not in known:
                raise ConfigError(f"{section}.{k}: unknown key (known: {', '.join(sorted(known))})")
            if k == "monetary":
                kwargs["rfm_monetary_cents"] = _cents(v, "rfm.monetary")
            else:
                kwargs[keys[k]] = _positive_int(v, f"{section}.{k}")
    rules = SegmentRules(**kwargs)
    if not rules.silent_days < rules.churn_warning_days < rules.churned_days:
        raise ConfigError("lifecycle: expected silent_days < churn_warning_days < churned_days")
    return rules


def _experiments(value: Any) -> ExperimentSpec:
    """`[experiments] goal = "order_paid", window = "7d"` and `[experiments.weights]`
    `<experiment> = {<variant> = weight, ...}`."""
    if not isinstance(value, dict) or set(value) - {"goal", "window", "weights"}:
        raise ConfigError("experiments: expected a table with `goal`, `window` and `weights`")
    kwargs: dict[str, Any] = {}
    if "goal" in value:
        goal = value["goal"]
        if not isinstance(goal, str) or not goal:
            raise ConfigError(f"experiments.goal: expected an event type, got {goal!r}")
        kwargs["goal"] = goal
    if "window" in value:
        kwargs["window_ms"] = parse_duration_ms(value["window"], "experiments.window")
        if kwargs["window_ms"] <= 0:
            raise ConfigError("experiments.window: must be > 0")
    if "weights" in value:
        weights = value["weights"]
        if not isinstance(weights, dict):
            raise ConfigError("experiments.weights: expected a table of experiments")
        for name, split in weights.items():
            key = f"experiments.weights.{name}"
            if not isinstance(split, dict) or len(split) < 2:
                raise ConfigError(f"{key}: expected {{variant = weight, ...}} with 2+ variants")
            for variant, w in split.items():
                if isinstance(w, bool) or not isinstance(w, int | float) or w <= 0:
                    raise ConfigError(f"{key}.{variant}: expected a weight > 0, got {w!r}")
        kwargs["weights"] = {n: {v: float(w) for v, w in s.items()} for n, s in weights.items()}
    return ExperimentSpec(**kwargs)


def _churn(value: Any) -> ChurnSpec:
    """`[churn] enabled, horizon = "7d", every = "1d", threshold, hysteresis, model,
    learning_rate, min_labels, vocabulary`."""
    known = {
        "enabled", "horizon", "every", "threshold", "hysteresis", "model", "learning_rate",
        "min_labels", "vocabulary",
    }  # fmt: skip
    if not isinstance(value, dict):
        raise ConfigError("churn: expected a table")
    kwargs: dict[str, Any] = {}
    for k, v in value.items():
        key = f"churn.{k}"
        if k not in known:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(known))})")
        if k == "enabled":
            if not isinstance(v, bool):
                raise ConfigError(f"{key}: expected true or false, got {v!r}")
            kwargs[k] = v
        elif k in ("horizon", "every"):
            ms = parse_duration_ms(v, key)
            if ms <= 0 or ms % DAY_MS:
                raise ConfigError(f"{key}: expected whole days like '7d', got {v!r}")
            kwargs[f"{k}_days"] = ms // DAY_MS
        elif k in ("threshold", "hysteresis", "learning_rate"):
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise ConfigError(f"{key}: expected a number in 0..1, got {v!r}")
            kwargs[k] = float(v)
        elif k == "model":
            if v not in CHURN_MODELS:
                raise ConfigError(f"{key}: expected one of {', '.join(CHURN_MODELS)}, got {v!r}")
            kwargs[k] = v
        else:
            kwargs[k] = _positive_int(v, key)
    return ChurnSpec(**kwargs)
