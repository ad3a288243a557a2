"""The paid-orders alert (`orders:volume`, state/kpis/alert_orders.py): its tables are
a per-bucket count and sum of the paid orders, whatever the arrival order; the rule
fires when android's payments stop for an hour, names android and the GMV lost, and
stays quiet on the same days without the outage."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np

from state.alert_evaluator import Evaluator
from state.alerting import BUCKET_MS, DAY_BUCKETS, bucket_end_ms
from state.config import Config
from state.fold import Fold
from state.kpis.alert_orders import ORDERS_TABLE
from state.kpis.alert_rates import OUTCOME_WINDOW_MS
from state.partials import Partials
from streams.events import Event

DAY0 = 20_400  # a UTC day number
CONFIG = Config.from_mapping(
    {"alerts": {"pairs": [], "rules": {"orders:volume": {"min_attempts": 60}}}}
)


def orders(days, outage=None, seed=1):
    """Paid orders: ~6-60 per 5 minutes by hour, 45% android; `outage`: (day, hour) from
    which android pays nothing for an hour."""
    rng = np.random.default_rng(seed)
    events, n = [], 0
    for d in range(days):
        for slot in range(DAY_BUCKETS):
            hour = slot / 12
            rate = 6 + 54 * (0.5 - 0.5 * np.cos((hour - 8) / 24 * 2 * np.pi)) ** 2
            for device, share in (("android", 0.45), ("ios", 0.35), ("web", 0.2)):
                down = outage and d == outage[0] and outage[1] <= hour < outage[1] + 1
                for _ in range(0 if down and device == "android" else rng.poisson(rate * share)):
                    ts = ((DAY0 + d) * DAY_BUCKETS + slot) * BUCKET_MS + int(
                        rng.integers(BUCKET_MS)
                    )
                    cents = int(rng.integers(500, 20_000))
                    events.append(Event(f"o{n}", f"u{n % 500}", ts, "order_paid", device=device,
                                        order_id=f"o{n}", amount_cents=cents))  # fmt: skip
                    n += 1
    return events


def test_tables_count_and_sum_the_paid_orders_of_each_bucket_in_any_order():
    events = orders(2)
    expected: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for e in events:
        bucket = e.ts // BUCKET_MS
        for name in (ORDERS_TABLE, f"{ORDERS_TABLE}/device/{e.device}"):
            expected[(name, bucket)][0] += 1
            expected[(name, bucket)][1] += e.amount_cents
    shuffled = events + random.Random(2).sample(events, 200)  # redelivered, any order
    random.Random(3).shuffle(shuffled)
    fold = Fold(Config(allowed_lateness_ms=3 * 86_400_000))
    fold.apply_batch([(e.user_id, e) for e in sorted(shuffled, key=lambda e: e.ts)], "s")
    other = Fold(Config(allowed_lateness_ms=3 * 86_400_000))
    other.apply_batch([(e.user_id, e) for e in shuffled], "s")
    for f in (fold, other):
        got = {}
        for name, rows in f.partials.tables.items():
            if name == ORDERS_TABLE or name.startswith(f"{ORDERS_TABLE}/device/"):
                for day, row in rows.items():
                    for slot in range(len(row) // 2):
                        if row[2 * slot]:
                            got[(name, day * DAY_BUCKETS + slot)] = row[2 * slot : 2 * slot + 2]
        assert got == dict(expected)


def judged(events, days):
    fold = Fold(CONFIG)
    fold.apply_batch([(e.user_id, e) for e in events], "s")
    end = bucket_end_ms((DAY0 + days) * DAY_BUCKETS - 1) + OUTCOME_WINDOW_MS + 1
    partials = Partials(funnel_steps=fold.partials.funnel_steps).merge(fold.partials)
    return Evaluator(CONFIG).advance([partials], end)


def test_payments_stopping_on_android_fire_the_orders_rule_naming_android_and_the_gmv():
    records = judged(orders(9, outage=(8, 19)), 9)
    assert [r["state"] for r in records] == ["firing", "resolved"], records
    firing = records[0]
    assert firing["key"] == "orders:volume" and firing["metric"] == "paid_orders"
    assert firing["dims"] == {"device": "android"}
    assert "GMV" in firing["detail"] and "usually" in firing["detail"]
    hour = (firing["ts"] // 60_000) % (24 * 60) / 60
    assert 19 < hour <= 20, hour


def test_the_same_days_without_the_outage_fire_nothing():
    assert judged(orders(9), 9) == []
