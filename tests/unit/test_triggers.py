"""Cart abandonment triggers against a naive reference written from METRICS.md
("Triggers") alone: which carts are abandoned, once each, retracted when a late
event shows otherwise, and the daily counts — in any arrival order inside the
lateness bound, split across partitions."""

import random
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive_actions import naive_abandoned
from strategies import T0

from state.clock import DayClock
from state.config import DAY_MS, Config, Thresholds
from state.fold import Fold
from state.partials import Partials
from state.report import build_report
from streams.events import Event

MINUTE = 60_000
DELAY = 30 * MINUTE


@st.composite
def cart_events(draw):
    events = []
    for i in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["add_to_cart", "add_to_cart", "order_paid", "page_view"]))
        ts = T0 + draw(st.integers(0, 48)) * 10 * MINUTE + draw(st.sampled_from([0, 1, -1]))
        user = draw(st.sampled_from(["u0", "u1", "u2"]))
        events.append(Event(f"e{i}", user, ts, kind, amount_cents=100))
    return events + events[: draw(st.integers(0, 3))]


def split_fold(config, arrived, shards=2):
    folds = [Fold(config) for _ in range(shards)]
    shard_of = {}
    records = []
    for e in arrived:
        shard_of[e.user_id] = hash(e.user_id) % shards
        fold = folds[shard_of[e.user_id]]
        fold.apply_batch([(e.user_id, e)], "p")
        records += [r.value for r in fold.outbox.drain() if r.kind == "triggers"]
    return folds, shard_of, records


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=cart_events(), seed=st.integers(0, 10**6))
def test_triggers_equal_the_naive_reference(events, seed):
    config = Config(thresholds=Thresholds(cart_abandon_after_ms=DELAY))
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(DAY_MS))
    folds, shard_of, records = split_fold(config, arrived)
    # A cart is decided once its partition's stream time has passed its deadline.
    stream = [max(f.watermarks.values()) if f.watermarks else 0 for f in folds]
    expected = {
        cart for cart in naive_abandoned(events) if cart[1] + DELAY < stream[shard_of[cart[0]]]
    }
    published = Counter((r["user_id"], r["cart_ts"], r["cart_event_id"]) for r in records
                        if not r.get("retracted"))  # fmt: skip
    retracted = Counter((r["user_id"], r["cart_ts"], r["cart_event_id"]) for r in records
                        if r.get("retracted"))  # fmt: skip
    assert max(published.values(), default=1) == 1 and max(retracted.values(), default=1) == 1
    assert retracted.keys() <= published.keys()
    assert published.keys() - retracted.keys() == expected
    for r in records:
        assert r["kind"] == "cart_abandoned" and r["ts"] == r["cart_ts"] + DELAY
    merged = Partials(funnel_steps=folds[0].partials.funnel_steps)
    for fold in folds:
        merged.merge(fold.partials)
    by_day = Counter(DayClock.iso(DayClock("UTC").day(ts)) for _, ts, _ in expected)
    assert build_report(merged, config)["triggers"] == {
        "cart_abandoned": dict(sorted(by_day.items()))
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=cart_events())
def test_in_time_arrival_retracts_nothing(events):
    config = Config(thresholds=Thresholds(cart_abandon_after_ms=DELAY))
    _, _, records = split_fold(config, sorted(events, key=lambda e: (e.ts, e.event_id)), 1)
    assert not [r for r in records if r.get("retracted")]


def run(events, config=None):
    fold = Fold(config or Config())
    records = []
    for e in events:
        fold.apply_batch([(e.user_id, e)], "p")
        records += [r.value for r in fold.outbox.drain() if r.kind == "triggers"]
    return fold, records


def test_window_edges():
    c = T0 + 5 * MINUTE
    tick = Event("tick", "z", c + DAY_MS, "page_view")  # moves the stream time past all
    _, records = run([
        Event("a1", "a", c, "add_to_cart"), Event("a2", "a", c + DELAY, "order_paid"),  # paid at the edge
        Event("b1", "b", c, "add_to_cart"), Event("b2", "b", c + DELAY + 1, "order_paid"),
        Event("d1", "d", c, "add_to_cart"), Event("d2", "d", c, "add_to_cart"),  # same instant
        tick,
    ])  # fmt: skip
    assert sorted((r["user_id"], r["cart_event_id"]) for r in records) == [
        ("b", "b1"),
        ("d", "d1"),
        ("d", "d2"),
    ]
    assert records[0] == {"kind": "cart_abandoned", "user_id": "b", "ts": c + DELAY,
                          "cart_ts": c, "cart_event_id": "b1"}  # fmt: skip


def test_fired_when_the_stream_time_passes_the_deadline_and_retracted_by_a_late_order():
    c = T0 + 5 * MINUTE
    fold, records = run([Event("a1", "a", c, "add_to_cart"),
                         Event("x1", "x", c + DELAY, "page_view")])  # fmt: skip
    assert records == []  # the stream time is at the deadline, not past it
    fold.apply_batch([("x", Event("x2", "x", c + DELAY + 1, "page_view"))], "p")
    assert [r.value["cart_event_id"] for r in fold.outbox.drain()] == ["a1"]
    report = build_report(fold.partials, Config())
    assert report["triggers"]["cart_abandoned"] == {"2026-11-01": 1}
    fold.apply_batch([("a", Event("a2", "a", c + 10 * MINUTE, "order_paid", amount_cents=5))], "p")
    retraction = [r.value for r in fold.outbox.drain() if r.kind == "triggers"]
    assert retraction == [{"kind": "cart_abandoned", "user_id": "a", "ts": c + DELAY,
                           "cart_ts": c, "cart_event_id": "a1", "retracted": True}]  # fmt: skip
    assert build_report(fold.partials, Config())["triggers"] == {"cart_abandoned": {}}


def test_a_late_cart_past_its_deadline_fires_at_once():
    c = T0 + 5 * MINUTE
    fold, records = run([Event("x1", "x", c + 2 * DELAY, "page_view"),
                         Event("a1", "a", c, "add_to_cart")])  # fmt: skip
    assert [r["cart_event_id"] for r in records] == ["a1"]


def test_a_burst_of_carts_abandons_only_the_last():
    c = T0 + 5 * MINUTE
    carts = [Event(f"a{i}", "a", c + i * MINUTE, "add_to_cart") for i in range(5)]
    _, records = run([*carts, Event("x", "x", c + DAY_MS, "page_view")])
    assert [r["cart_event_id"] for r in records] == ["a4"]


def test_cart_state_survives_the_record_encoding():
    from state.codec import decode_user, encode_user

    c = T0 + 5 * MINUTE
    fold, _ = run([Event("a1", "a", c, "add_to_cart"), Event("x", "x", c + 2 * DELAY, "page_view")])
    user = fold.users["a"]
    names = [f.name for f in fold.config.funnels]
    again = decode_user(encode_user(user, names), fold.ctx.clock, names)
    assert again.carts == user.carts and user.carts[0][2] == 1  # fired
