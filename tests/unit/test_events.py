"""The contract's parser: valid events or exactly one documented reason, never an exception."""

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events import REASONS, Event, Invalid, SpendEvent, parse_event, parse_spend

NOW = 1_795_000_000_000  # 2026-11-18, a fixed wall clock for the future check


def click(**fields):
    base = {"event_id": "e1", "user_id": "u1", "ts": 1_790_000_000_000, "type": "page_view"}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def order(**fields):
    return click(**{"type": "order_paid", "order_id": "o1", "amount": 12.5, **fields})


def reason(raw, **kw):
    result = parse_event(raw, now_ms=NOW, **kw)
    assert isinstance(result, Invalid), result
    return result.reason


def test_valid_click_keeps_its_fields():
    event = parse_event(click(channel="ads", device="ios", region="eu"), now_ms=NOW)
    assert event == Event("e1", "u1", 1_790_000_000_000, "page_view", "ads", "ios", "eu")


def test_order_amount_is_kept_in_cents():
    event = parse_event(order(), now_ms=NOW)
    assert isinstance(event, Event) and event.amount_cents == 1250 and event.order_id == "o1"


def test_rfc3339_ts_is_converted_to_epoch_ms():
    event = parse_event(click(ts="2026-11-01T08:00:00.123+08:00"), now_ms=NOW)
    # 2026-11-01T00:00:00Z is day 20758 since the epoch: 20758 * 86400000 = 1793491200000
    assert event.ts == 1_793_491_200_123


def test_unknown_types_are_valid_activity():
    assert isinstance(parse_event(click(type="wishlist_add"), now_ms=NOW), Event)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (click(event_id=...), "missing_field"),
        (click(user_id=None), "missing_field"),
        (click(ts=...), "missing_field"),
        (click(type=...), "missing_field"),
        (click(user_id=7), "bad_type"),
        (click(ts=1.5e12), "bad_type"),
        (click(ts=True), "bad_type"),
        (click(ts=-1), "bad_value"),
        (click(ts="yesterday"), "bad_value"),
        (click(ts="2026-11-01T08:00:00"), "bad_value"),
        (click(ts=NOW + 86_400_001), "bad_value"),
        (click(user_id=""), "bad_value"),
        (click(event_id="x" * 129), "bad_value"),
        (click(type="t" * 65), "bad_value"),
        (click(channel=3), "bad_type"),
        (click(properties=[1]), "bad_type"),
        (order(amount=...), "missing_field"),
        (click(type="order_paid", amount=1.0), "missing_field"),
        (order(amount="12"), "bad_type"),
        (order(amount=-0.01), "bad_value"),
        (
            b'{"event_id":"e","user_id":"u","ts":1,"type":"order_paid","order_id":"o","amount":1e999}',
            "not_json",
        ),
    ],
)
def test_each_bad_input_has_its_documented_reason(raw, expected):
    assert reason(raw) == expected


def test_ts_up_to_one_day_ahead_is_accepted():
    assert isinstance(parse_event(click(ts=NOW + 86_400_000), now_ms=NOW), Event)


def test_size_limit_applies_before_decoding():
    raw = click(page="p" * 70_000)
    assert reason(raw) == "too_large"
    assert isinstance(parse_event(raw, now_ms=NOW, max_bytes=100_000), Event)


def test_spend_event_needs_channel_and_amount():
    raw = orjson.dumps(
        {"event_id": "s1", "ts": 1_790_000_000_000, "channel": "ads", "amount": 99.99}
    )
    assert parse_spend(raw, now_ms=NOW) == SpendEvent("s1", 1_790_000_000_000, "ads", 9999)
    bad = orjson.dumps({"event_id": "s1", "ts": 1_790_000_000_000, "amount": 1})
    assert parse_spend(bad, now_ms=NOW) == Invalid("missing_field", "channel is required")


def _check_total(result):
    if isinstance(result, Invalid):
        assert result.reason in REASONS and result.reason != "late"
        assert isinstance(result.detail, str) and result.detail
    else:
        assert isinstance(result, Event | SpendEvent)


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw):
    _check_total(parse_event(raw, now_ms=NOW))
    _check_total(parse_spend(raw, now_ms=NOW))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = st.one_of(
    json_values,
    st.integers(min_value=-10, max_value=NOW + 2 * 86_400_000),
    st.sampled_from(["page_view", "order_paid", "order_refunded", "", "2026-11-01T00:00:00Z"]),
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        name: field_values
        for name in (
            "event_id",
            "user_id",
            "ts",
            "type",
            "order_id",
            "amount",
            "channel",
            "properties",
        )
    },
)


@settings(max_examples=600)
@given(st.one_of(json_values, event_like))
def test_arbitrary_json_is_an_event_or_has_exactly_one_reason(value):
    raw = json.dumps(value).encode()
    for result in (parse_event(raw, now_ms=NOW), parse_spend(raw, now_ms=NOW)):
        _check_total(result)
        if not isinstance(value, dict):
            assert result.reason == "not_object"
