"""The cluster's alert evaluator is deterministic in what it publishes: advanced in many
small steps or once at the end (a worker's evaluator started late), or stopped at any
bucket and resumed from its saved state by a successor (failover), it publishes the
same records, equal to judging the merged series bucket by bucket by hand."""

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_alerting import START, run, simulate

from state.alert_evaluator import Evaluator
from state.alerting import BUCKET_MS, DAY_BUCKETS, AlertState, bucket_end_ms, judge, step
from state.config import AlertSpec, Config
from state.kpis.alert_rates import OUTCOME_WINDOW_MS, table_name
from state.partials import Partials

# The reference judges each rule on its own: the sustained rule, which defers to the
# fast one, is off here and checked in the tests at the end.
NO_SUSTAINED = (("purchase:checkout>order_paid:sustained", (("enabled", False),)),)
CONFIG = Config(alerts=AlertSpec(pairs=("purchase:checkout>order_paid",), rules=NO_SUSTAINED))
DAYS = 9  # 7 baseline days, then the incident day
INCIDENT = START + (DAYS - 1) * DAY_BUCKETS + 19 * 12  # last day, 19:00, 30 minutes


def as_partials(series, shards=2, seed=3):
    """The series as the step tables of `shards` partitions (counts split at random)."""
    rng = np.random.default_rng(seed)
    parts = [Partials(funnel_steps=(4,)) for _ in range(shards)]

    def put(name, rows):
        for bucket, (n, x) in rows.items():
            day, slot = divmod(bucket, DAY_BUCKETS)
            n_split = rng.multinomial(n, [1 / shards] * shards)
            x_split = [0] * shards
            for _ in range(x):  # successes among each shard's attempts
                left = [n_split[i] - x_split[i] for i in range(shards)]
                i = rng.choice(shards, p=np.array(left) / sum(left))
                x_split[i] += 1
            for part, a, s in zip(parts, n_split, x_split, strict=True):
                row = part.tables.setdefault(name, {}).setdefault(day, [0] * (2 * DAY_BUCKETS))
                row[2 * slot] += int(a)
                row[2 * slot + 1] += s

    put(table_name("purchase", 2), series.total)
    for (dim, value), rows in series.by_value.items():
        put(table_name("purchase", 2, dim, value), rows)
    return parts


SERIES = simulate(DAYS, incident=(INCIDENT, 6, "android", 0.35))
PARTS = as_partials(SERIES)
END_MS = bucket_end_ms(START + DAYS * DAY_BUCKETS - 1) + OUTCOME_WINDOW_MS + 1


def by_hand():
    """Every bucket from the first day's start judged on the unsplit series, by each
    rule (the step pair's conversion, then its first step's volume) in turn."""
    rules = [rule for rule, _ in Evaluator(CONFIG).rules]
    assert [r.statistic for r in rules] == ["rate", "volume", "volume"]  # + paid orders
    states, records = [AlertState() for _ in rules], []
    for b in range(START, START + DAYS * DAY_BUCKETS):
        for rule, state in zip(rules, states, strict=True):
            record = step(rule, state, judge(rule, SERIES, b), bucket_end_ms(b))
            if record:
                records.append(record)
    return records


EXPECTED = by_hand()


def test_the_reference_run_fires_once_on_the_incident_and_resolves():
    assert [r["state"] for r in EXPECTED] == ["firing", "resolved"]
    assert EXPECTED[0]["dims"] == {"device": "android"}


def test_one_late_call_publishes_what_many_small_steps_do():
    late = Evaluator(CONFIG)
    assert late.advance(PARTS, END_MS) == EXPECTED
    stepped, records = Evaluator(CONFIG), []
    rng = np.random.default_rng(5)
    ms = START * BUCKET_MS
    while ms < END_MS:
        ms = min(END_MS, ms + int(rng.integers(1, 4 * BUCKET_MS)))
        records += stepped.advance(PARTS, ms)
    assert records == EXPECTED
    assert stepped.open_alerts() == late.open_alerts() == []


def test_nothing_is_judged_before_there_is_data():
    assert Evaluator(CONFIG).advance([Partials(funnel_steps=(4,))], END_MS) == []


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(INCIDENT - 12, INCIDENT + 24))
def test_a_successor_resumes_from_the_saved_state(cut):
    """Stopped after any bucket around the incident (firing or not), saved as JSON and
    resumed by a new evaluator that only has the partials: the same records."""
    first = Evaluator(CONFIG)
    records = first.advance(PARTS, bucket_end_ms(cut) + OUTCOME_WINDOW_MS + 1)
    saved = orjson.loads(orjson.dumps(first.to_json()))
    successor = Evaluator(CONFIG)
    successor.restore(saved, PARTS)
    assert successor.open_alerts() == first.open_alerts()
    records += successor.advance(PARTS, END_MS)
    assert records == EXPECTED


def test_state_of_an_unknown_version_is_refused():
    import pytest

    with pytest.raises(ValueError, match="v0"):
        Evaluator(CONFIG).restore({"v": 0}, PARTS)


def rules_config(rules):
    rules = {"purchase:checkout>order_paid:sustained": {"enabled": False}, **rules}
    return Config.from_mapping(
        {"alerts": {"pairs": ["purchase:checkout>order_paid"], "rules": rules}}
    )


def test_each_rule_takes_its_own_settings_from_the_config():
    """The reference incident fires with the defaults; the same rule switched off, or
    needing more attempts than its window has, stays quiet; the volume rule is untouched."""
    assert Evaluator(rules_config({})).advance(PARTS, END_MS) == EXPECTED
    off = rules_config({"purchase:checkout>order_paid": {"enabled": False}})
    assert [r.name for r, _ in Evaluator(off).rules] == [
        "purchase:checkout:volume", "orders:volume",
    ]  # fmt: skip
    assert Evaluator(off).advance(PARTS, END_MS) == []
    strict = rules_config({"purchase:checkout>order_paid": {"min_attempts": 10**6}})
    assert Evaluator(strict).advance(PARTS, END_MS) == []
    longer = rules_config({"purchase:checkout>order_paid": {"window": "30m", "alpha": 0.01},
                           "purchase:checkout:volume": {"min_effect": 0.5}})  # fmt: skip
    rate, volume, _ = (rule for rule, _ in Evaluator(longer).rules)
    assert (rate.window_buckets, rate.alpha, rate.min_effect) == (6, 0.01, 0.05)
    assert (volume.window_buckets, volume.min_effect) == (3, 0.5)
    fired = Evaluator(longer).advance(PARTS, END_MS)  # alpha 0.01: more alerts than before
    assert len(fired) > len(EXPECTED) and {r["state"] for r in fired} == {"firing", "resolved"}


def test_a_rule_can_watch_rises_instead():
    """Set to "rise", the step rule ignores the reference drop; a surge fires it."""
    rise = rules_config({"purchase:checkout>order_paid": {"direction": "rise"}})
    assert [r.direction for r, _ in Evaluator(rise).rules] == ["rise", "drop", "drop"]
    assert Evaluator(rise).advance(PARTS, END_MS) == []
    surge = as_partials(simulate(DAYS, incident=(INCIDENT, 6, "*", 0.97)))
    fired = Evaluator(rise).advance(surge, END_MS)
    assert [r["state"] for r in fired] == ["firing", "resolved"] and "rose" in fired[0]["detail"]


def test_a_rule_the_config_does_not_have_is_refused_with_the_known_names():
    import pytest

    from state.config import ConfigError

    with pytest.raises(
        ConfigError,
        match=r'alerts.rules."purchase:checkout>paid": no such rule \(rules: purchase:checkout>order_paid, purchase:checkout>order_paid:sustained, purchase:checkout:volume, orders:volume\)',
    ):
        rules_config({"purchase:checkout>paid": {"enabled": False}})
    with pytest.raises(ConfigError, match="volume rules watch drops"):
        rules_config({"purchase:checkout:volume": {"direction": "rise"}})
    with pytest.raises(ConfigError, match="min_attempts"):
        rules_config({"purchase:checkout>order_paid": {"min_attempts": 0}})


SUSTAINED_ON = Config.from_mapping({"alerts": {
    "pairs": ["purchase:checkout>order_paid"],
    "rules": {"purchase:checkout>order_paid:sustained": {"enabled": True}},
}})  # fmt: skip


def test_sustained_rules_are_off_unless_enabled():
    assert not any(r.name.endswith(":sustained") for r, _ in Evaluator(Config()).rules)


def test_the_sustained_rule_stays_quiet_while_the_fast_one_has_the_incident():
    """The reference incident with every default rule: the fast rule fires and resolves,
    its 2-hour companion never fires (it defers while its window holds the incident)."""
    records = Evaluator(SUSTAINED_ON).advance(PARTS, END_MS)
    assert records == EXPECTED


def test_a_small_drop_that_lasts_fires_the_sustained_rule_only():
    """Every device converts 5 points less from 17:00 for 4 hours on the last day: too
    small for the 15-minute rule (~150 attempts, days varying by 1 point), caught over
    2 hours, resolved once it is over."""
    shift = START + (DAYS - 1) * DAY_BUCKETS + 17 * 12

    def rate(device, b, day_rate):
        return day_rate - 0.05 if shift <= b < shift + 48 else day_rate

    parts = as_partials(simulate(DAYS, seed=2, rate=rate))
    records = Evaluator(SUSTAINED_ON).advance(parts, END_MS)
    assert [(r["key"], r["state"]) for r in records] == [
        ("purchase:checkout>order_paid:sustained", "firing"),
        ("purchase:checkout>order_paid:sustained", "resolved"),
    ], records
    fired = (records[0]["ts"] - bucket_end_ms(shift)) / 60_000
    assert 60 <= fired <= 180, fired  # measured: 145 minutes
    assert records[0]["value"] < records[0]["baseline"] - 0.02
    assert records[1]["ts"] >= bucket_end_ms(shift + 48)


@pytest.mark.parametrize("seed", [7, 8, 9])  # 10 and 11 too when alpha was chosen
def test_thirty_clean_days_fire_no_sustained_alert(seed):
    rule = next(r for r, _ in Evaluator(SUSTAINED_ON).rules if r.name.endswith(":sustained"))
    assert (rule.window_buckets, rule.min_effect, rule.alpha) == (24, 0.02, 1e-6)
    series = simulate(30, seed=seed)
    assert run(series, START + 7 * DAY_BUCKETS, START + 30 * DAY_BUCKETS - 1, rule=rule) == []
