"""The traffic generator: reproducible, time-ordered, realistic enough to exercise every KPI."""

import gzip
from collections import Counter, defaultdict
from dataclasses import replace
from functools import cache

import orjson
import pytest

from streams.events import Event, Invalid, SpendEvent, parse_event, parse_spend
from streams.generator import MAX_REDELIVERY_MS, REGIONS, GeneratorSpec, generate, write_files

DAY = 86_400_000
FAR_FUTURE = 1 << 62
SPEC = GeneratorSpec(seed=5, days=6, new_users_per_day=80, duplicate_rate=0.02)
CLICK_TYPES = ("page_view", "signup", "login", "add_to_cart", "checkout", "exposure",
               "push_sent", "push_open")  # fmt: skip
ORDER_TYPES = ("order_created", "order_paid", "order_refunded")


def lines(spec=None):
    return _lines(spec or SPEC)


def events(spec=None):
    return _events(spec or SPEC)


@cache
def _lines(spec):
    return tuple(generate(spec))


@cache
def _events(spec):
    return tuple((topic, orjson.loads(line)) for topic, line in _lines(spec))


def originals(spec=None):
    """Each event once (the first delivery)."""
    seen = set()
    for topic, e in events(spec):
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            yield topic, e


def test_same_seed_same_bytes_other_seed_other_bytes():
    assert list(generate(SPEC)) == list(lines())
    other = list(generate(GeneratorSpec(seed=6, days=6, new_users_per_day=80)))
    assert other != list(lines())
    ids = {e["event_id"] for _, e in events()}
    assert not ids & {orjson.loads(line)["event_id"] for _, line in other}  # seed in the ids


def test_stream_is_in_event_time_order_and_copies_trail_by_at_most_five_minutes():
    high, seen = 0, set()
    for _, e in events():
        if e["event_id"] in seen:  # a redelivery: later in the stream than its original
            assert high - MAX_REDELIVERY_MS <= e["ts"] <= high
        else:
            assert e["ts"] >= high  # originals: exactly in ts order
            seen.add(e["event_id"])
        high = max(high, e["ts"])
    start = DAY * 20758  # 2026-11-01
    assert start <= min(e["ts"] for _, e in events()) and high < start + 6 * DAY


def test_every_line_parses_and_has_the_contract_fields():
    assert {topic for topic, _ in lines()} == {"clicks", "orders", "spend"}
    for topic, line in lines():
        if topic == "spend":
            spend = parse_spend(line, now_ms=FAR_FUTURE)
            assert isinstance(spend, SpendEvent), (spend, line)
            continue
        event = parse_event(line, now_ms=FAR_FUTURE)
        assert isinstance(event, Event), (event, line)
        e = orjson.loads(line)
        assert isinstance(e["ts"], int) and e["ts"] == event.ts
        assert e["type"] in (ORDER_TYPES if topic == "orders" else CLICK_TYPES)
        assert {"channel", "device", "region"} <= e.keys()
        if topic == "orders":
            assert e["order_id"] and e["amount"] >= 0 and e["currency"]
            assert round(e["amount"], 2) == e["amount"]
            assert isinstance(e["items"], list) and e["items"]
            if e["type"] != "order_refunded":
                items = sum(round(i["price"] * 100) * i["qty"] for i in e["items"])
                assert items == round(e["amount"] * 100)
        if e["type"] == "exposure":
            assert e["experiment"] == "checkout_button" and e["variant"] in ("control", "treatment")
        if e["type"].startswith("push_"):
            assert e["campaign"]
        if e["type"] == "page_view":
            assert e["page"].startswith("/")


def test_every_event_type_appears():
    types = Counter(e["type"] for topic, e in events() if topic != "spend")
    for kind in CLICK_TYPES + ORDER_TYPES:
        assert types[kind] > 0, kind
    # the shape: mostly page views; a funnel that narrows
    assert types["page_view"] > 0.5 * sum(types.values())
    assert types["signup"] > types["add_to_cart"] > types["checkout"] > types["order_created"]
    assert types["order_created"] >= types["order_paid"] > types["order_refunded"]
    assert types["push_sent"] > types["push_open"]


def test_duplicates_are_identical_copies_at_about_the_asked_rate():
    by_id = defaultdict(list)
    for _, line in lines():
        by_id[orjson.loads(line)["event_id"]].append(line)
    copies = [v for v in by_id.values() if len(v) > 1]
    assert 0.015 < len(copies) / len(by_id) < 0.025
    assert all(len(v) == 2 and v[0] == v[1] for v in copies)
    no_dups = GeneratorSpec(seed=5, days=2, new_users_per_day=80, duplicate_rate=0.0)
    ids = [orjson.loads(line)["event_id"] for _, line in generate(no_dups)]
    assert len(ids) == len(set(ids))


def test_a_user_keeps_acquisition_attributes_and_mostly_one_variant():
    attrs, variants = {}, defaultdict(Counter)
    for _, e in originals():
        if "user_id" not in e:
            continue
        u = e["user_id"]
        assert attrs.setdefault(u, (e["channel"], e["device"], e["region"])) == (
            e["channel"], e["device"], e["region"],
        )  # fmt: skip
        if e["type"] == "exposure":
            variants[u][e["variant"]] += 1
    assert {a[0] for a in attrs.values()} == {"organic", "ads", "social", "referral", "push"}
    assert {a[1] for a in attrs.values()} == {"ios", "android", "web"}
    # Sticky variants with a 3% leak: some users see both, most exposures are sticky.
    exposures = sum(sum(c.values()) for c in variants.values())
    minority = sum(min(c.values()) if len(c) == 2 else 0 for c in variants.values())
    assert 0.005 < minority / exposures < 0.06
    assert any(len(c) == 2 for c in variants.values())
    assert {v for c in variants.values() for v in c} == {"control", "treatment"}


def test_push_campaigns_go_out_at_their_own_local_hours():
    hours = defaultdict(set)
    offsets = {r: offset for r, (_, offset) in REGIONS.items()}
    for _, e in originals():
        if e.get("type") == "push_sent":
            local = (e["ts"] // 3_600_000 + offsets[e["region"]]) % 24
            hours[e["campaign"]].add(local)
    assert len({h for hs in hours.values() for h in hs}) >= 2
    assert all(len(hs) == 1 for hs in hours.values())


def test_first_event_of_a_user_is_the_signup_and_sessions_have_ids():
    first = {}
    for _, e in originals():
        if "user_id" in e and e["type"] not in ("push_sent", "order_refunded"):
            first.setdefault(e["user_id"], e)
    assert all(e["type"] == "signup" for e in first.values())
    in_session = Counter(e["type"] for _, e in originals() if "session_id" in e)
    assert in_session["page_view"] and "push_sent" not in in_session


def test_some_users_are_active_on_both_sides_of_midnight_within_an_hour():
    by_user = defaultdict(list)
    for _, e in originals():
        if "user_id" in e and e["type"] not in ("push_sent", "order_refunded"):
            by_user[e["user_id"]].append(e["ts"])
    crossing = sum(
        any(b // DAY > a // DAY and b - a < 3_600_000 for a, b in zip(ts, ts[1:], strict=False))
        for ts in by_user.values()
    )
    assert crossing > 0
    by_session = defaultdict(set)
    for _, e in originals():
        if "session_id" in e:
            by_session[e["session_id"]].add(e["ts"] // DAY)
    assert any(len(days) > 1 for days in by_session.values())


@pytest.mark.parametrize("spec", [SPEC, GeneratorSpec(seed=8, days=5, new_users_per_day=400)])
def test_orders_are_created_then_paid_and_refunds_never_exceed_what_was_paid(spec):
    created, paid, refunded = {}, {}, defaultdict(int)
    for topic, e in originals(spec):
        if topic != "orders":
            continue
        cents = round(e["amount"] * 100)
        if e["type"] == "order_created":
            created[e["order_id"]] = (e["ts"], cents, e["user_id"])
        elif e["type"] == "order_paid":
            ts, amount, user = created[e["order_id"]]
            assert ts < e["ts"] and amount == cents and user == e["user_id"]
            paid[e["order_id"]] = (e["ts"], cents)
        else:
            ts, amount = paid[e["order_id"]]
            assert ts < e["ts"]
            refunded[e["order_id"]] += cents
    assert refunded and all(cents <= paid[o][1] for o, cents in refunded.items())
    if spec is not SPEC:
        assert any(cents < paid[o][1] for o, cents in refunded.items())  # some partial refunds
        assert any(cents == paid[o][1] for o, cents in refunded.items())
        assert len(created) > len(paid) > 10 * len(refunded) / 2


def test_spend_is_one_event_per_paid_channel_per_day():
    spend = [e for topic, e in originals() if topic == "spend"]
    per_day = Counter((e["ts"] // DAY, e["channel"]) for e in spend)
    assert set(per_day.values()) == {1}
    assert {c for _, c in per_day} == {"ads", "social", "referral", "push"}
    assert len({d for d, _ in per_day}) == 6 and all(e["amount"] >= 0 for e in spend)


def test_invalid_rate_mixes_in_malformed_lines_of_every_kind():
    spec = GeneratorSpec(seed=2, days=2, new_users_per_day=50, invalid_rate=0.05)
    raw = [line for topic, line in generate(spec) if topic != "spend"]
    results = [parse_event(line, now_ms=FAR_FUTURE) for line in raw]
    reasons = Counter(r.reason for r in results if isinstance(r, Invalid))
    valid = sum(isinstance(r, Event) for r in results)
    assert 0.035 < sum(reasons.values()) / valid < 0.065
    assert set(reasons) == {"not_json", "not_object", "missing_field", "bad_type", "bad_value"}
    many = GeneratorSpec(seed=2, days=2, new_users_per_day=1000, invalid_rate=0.2)
    negative = [
        line for topic, line in generate(many) if topic == "orders" and b'"amount":-' in line
    ]
    assert negative
    assert all(parse_event(line, now_ms=FAR_FUTURE).reason == "bad_value" for line in negative)
    # without invalid_rate, nothing is invalid
    assert not any(
        isinstance(parse_event(line, now_ms=FAR_FUTURE), Invalid)
        for topic, line in lines()
        if topic != "spend"
    )


def test_write_files_plain_and_gzip(tmp_path):
    spec = GeneratorSpec(seed=3, days=2, new_users_per_day=40)
    seen = []
    counts = write_files(spec, tmp_path / "plain", progress=seen.append)
    expected = Counter(topic for topic, _ in generate(spec))
    assert counts == dict(expected) and seen[-1] == sum(counts.values())
    for name, n in counts.items():
        data = (tmp_path / "plain" / f"{name}.jsonl").read_bytes()
        assert data.count(b"\n") == n and data.endswith(b"\n")
    assert write_files(spec, tmp_path / "gz", gzip=True) == counts
    for name in counts:
        assert (
            gzip.decompress((tmp_path / "gz" / f"{name}.jsonl.gz").read_bytes())
            == (tmp_path / "plain" / f"{name}.jsonl").read_bytes()
        )


def test_spec_is_validated_and_knobs_take_effect():
    with pytest.raises(ValueError):
        GeneratorSpec(duplicate_rate=1.5)
    with pytest.raises(ValueError):
        GeneratorSpec(channels=("tv",))
    with pytest.raises(ValueError):
        GeneratorSpec(start="November")
    spec = GeneratorSpec(
        seed=4, days=2, new_users_per_day=30, channels=("organic",), regions=("eu-west",)
    )
    seen = {(e.get("channel"), e.get("region")) for _, e in events(spec)}
    assert seen == {("organic", "eu-west")}  # no paid channel: no spend either


def test_traffic_grows_with_new_users_per_day():
    small = sum(1 for _ in generate(GeneratorSpec(seed=9, days=3, new_users_per_day=50)))
    large = sum(1 for _ in generate(GeneratorSpec(seed=9, days=3, new_users_per_day=500)))
    assert 7 < large / small < 13


def test_an_incident_fails_one_step_for_one_device_in_its_window_only():
    from streams.generator import Incident

    start = 1_793_491_200_000 + 3 * 86_400_000 + 12 * 3_600_000  # day 4, 12:00 UTC
    incident = Incident(start_ms=start, minutes=240, step="order_paid", factor=0.2)
    spec = GeneratorSpec(seed=9, days=5, new_users_per_day=400, duplicate_rate=0.0)
    events = [orjson.loads(line) for _, line in generate(replace(spec, incident=incident))]
    created, paid = Counter(), Counter()
    for e in events:
        if e.get("type") in ("order_created", "order_paid"):
            inside = start <= e["ts"] < start + 240 * 60_000 + 3_600_000  # a session's tail
            key = (e["device"], inside and e["ts"] >= start + 30 * 60_000)
            (created if e["type"] == "order_created" else paid)[key] += 1
    assert paid[("android", True)] / created[("android", True)] < 0.4
    assert paid[("ios", True)] / created[("ios", True)] > 0.75
    assert paid[("android", False)] / created[("android", False)] > 0.75
    # Outside any session it touches, the same bytes as without it.
    before = replace(incident, start_ms=0, minutes=1)
    assert list(generate(replace(spec, incident=before))) == list(generate(spec))
