"""The traffic generator: reproducible, time-ordered, realistic enough to exercise every KPI."""

from collections import Counter, defaultdict

import orjson

from streams.generator import GeneratorSpec, generate

SPEC = GeneratorSpec(seed=5, days=6, new_users_per_day=80, duplicate_rate=0.02)


def events(spec=SPEC):
    return [(topic, orjson.loads(line)) for topic, line in generate(spec)]


def test_same_seed_same_bytes_other_seed_other_bytes():
    assert list(generate(SPEC)) == list(generate(SPEC))
    assert list(generate(SPEC)) != list(
        generate(GeneratorSpec(seed=6, days=6, new_users_per_day=80))
    )


def test_stream_is_in_event_time_order_up_to_redelivery_delay():
    high = 0
    for _, event in events():
        assert event["ts"] >= high - 5 * 60_000
        high = max(high, event["ts"])


def test_every_event_type_appears_and_duplicates_are_identical_copies():
    evs = events()
    types = Counter(e["type"] for topic, e in evs if topic != "spend")
    for kind in ("page_view", "signup", "login", "add_to_cart", "checkout", "exposure", "push_sent",
                 "push_open", "order_created", "order_paid", "order_refunded"):  # fmt: skip
        assert types[kind] > 0, kind
    by_id = defaultdict(list)
    for _, e in evs:
        by_id[e["event_id"]].append(e)
    copies = [v for v in by_id.values() if len(v) > 1]
    assert 0.01 < len(copies) / len(by_id) < 0.03
    assert all(all(c == v[0] for c in v) for v in copies)


def test_some_sessions_cross_midnight():
    day = 86_400_000
    by_session = defaultdict(set)
    for _, e in events():
        if "session_id" in e:
            by_session[e["session_id"]].add(e["ts"] // day)
    assert sum(1 for days in by_session.values() if len(days) > 1) > 0


def test_refunds_never_exceed_what_was_paid():
    paid, refunded = {}, defaultdict(float)
    for topic, e in events():
        if topic != "orders":
            continue
        if e["type"] == "order_paid":
            paid[e["order_id"]] = e["amount"]
        elif e["type"] == "order_refunded":
            refunded[e["order_id"]] = e["amount"]
    assert refunded and all(amount <= paid[o] for o, amount in refunded.items())


def test_invalid_rate_mixes_in_malformed_lines():
    from streams.events import Invalid, parse_event

    lines = [
        line
        for topic, line in generate(
            GeneratorSpec(seed=2, days=2, new_users_per_day=50, invalid_rate=0.05)
        )
        if topic != "spend"
    ]
    reasons = Counter(r.reason for r in map(parse_event, lines) if isinstance(r, Invalid))
    assert sum(reasons.values()) > 0.03 * len(lines) and len(reasons) >= 3
