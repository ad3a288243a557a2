"""Today's classes and the current week/month cohort views as Prometheus gauges: each
worker exports counts of its own partitions; summed over workers they equal the
cluster report (ratios such as M1 are PromQL divisions of those sums)."""

from collections import defaultdict

from agents.metrics import _current_period_gauges
from state.clock import DayClock, month_index, month_key, month_start
from state.config import Config
from state.fold import Fold
from state.partials import Partials
from state.report import build_report, day_range
from streams.events import Event, parse_event
from streams.generator import GeneratorSpec, write_files


def gauges(partials, config, today):
    out = defaultdict(float)
    for family in _current_period_gauges(partials, config, today):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return out


def test_workers_gauges_sum_to_the_cluster_report(tmp_path):
    write_files(GeneratorSpec(seed=5, days=75, new_users_per_day=10, start="2026-07-01"), tmp_path)
    events = [
        e
        for name in ("clicks", "orders")
        for e in map(parse_event, (tmp_path / f"{name}.jsonl").read_bytes().splitlines())
        if isinstance(e, Event)
    ]
    events.sort(key=lambda e: e.ts)
    config = Config(timezone="Asia/Shanghai")
    workers = [Fold(config), Fold(config)]
    for e in events:
        workers[hash(e.user_id) % 2].apply_batch([(e.user_id, e)], "p")
    today = max(day_range(fold.partials)[-1] for fold in workers)
    whole = defaultdict(float)  # what PromQL's sum() over the workers gives
    for fold in workers:
        for key, value in gauges(fold.partials, config, today).items():
            whole[key] += value
    merged = Partials(funnel_steps=workers[0].partials.funnel_steps)
    for fold in workers:
        merged.merge(fold.partials)
    merged = build_report(merged, config)

    day = merged["days"][DayClock.iso(today)]
    for stage, n in day["lifecycle"].items():
        assert whole[("opspulse_lifecycle_users", (("stage", stage),))] == n
    for segment, n in day["rfm"].items():
        assert whole[("opspulse_rfm_users", (("segment", segment),))] == n
    buyers = whole[("opspulse_buyers_30d_users", (("orders", "1+"),))]
    repeat = whole[("opspulse_buyers_30d_users", (("orders", "2+"),))]
    assert repeat / buyers == day["repurchase_rate_30d"]
    month = month_key(month_start(month_index(today)))
    cohorts = merged["cohorts"]
    m1 = cohorts["retention_monthly"][
        month_key(month_start(month_index(today) - 1))
    ]  # the previous month's cohort, active this month
    assert whole[("opspulse_cohort_users", (("of", "retained"), ("periods_ago", "1"),
                                            ("view", "retention_monthly")))] == m1[1]  # fmt: skip
    assert (
        whole[("opspulse_month_users", (("figure", "active"),))]
        == (cohorts["active_days"][month]["users"])
    )
    assert (
        whole[("opspulse_month_users", (("figure", "dormant"),))]
        == (cohorts["reactivation"][month]["dormant"])
    )
    assert (
        sum(
            whole[("opspulse_revenue_by_tier", (("tier", t),))]
            for t in ("potential", "growth", "high")
        )
        > 0
    )

    # Channels: summed over workers, the report's per-channel figures.
    iso = DayClock.iso
    window = {iso(d) for d in range(today - 29, today + 1)}
    for channel, body in merged["channels"].items():
        new_30d = sum(r["new_users"] for d, r in body["days"].items() if d in window)
        assert whole[("opspulse_channel", (("channel", channel), ("figure", "new_users_30d")))] == (
            new_30d
        )
        row = body["retention"].get(iso(today - 7))
        if row is not None:
            key = (("channel", channel), ("days_ago", "7"), ("of", "retained"))
            assert whole[("opspulse_channel_cohort_users", key)] == row[7]
    assert sum(v for (name, _), v in whole.items() if name == "opspulse_channel_cohort_users") > 0


def test_channel_labels_are_bounded():
    from agents.metrics import _channel_gauges

    day = {"new_users": 1, "paid_7d": 0, "revenue": 2.5, "spend": 1.0, "cac": 1.0}
    channels = {
        f"c{i}": {"days": {DayClock.iso(20758): dict(day, new_users=i)}, "retention": {}}
        for i in range(10)
    }
    samples = [s for family in _channel_gauges(channels, 20758, 3) for s in family.samples]
    labels = {s.labels["channel"] for s in samples}
    assert labels == {"c9", "c8", "c7", "other"}
    other = {s.labels["figure"]: s.value for s in samples if s.labels["channel"] == "other"}
    assert other["new_users_today"] == sum(range(7)) and other["revenue_30d"] == 2.5 * 7
