"""Parse and validate input events exactly as the contract says.

Every input is either a valid `Event` / `SpendEvent` or an `Invalid` with
exactly one reason code; parsing never raises. Decoding is orjson on bytes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from state.money import to_cents

MAX_MESSAGE_BYTES = 64 * 1024
ORDER_TYPES = frozenset({"order_created", "order_paid", "order_refunded"})
FUTURE_TOLERANCE_MS = 86_400_000

Reason = Literal["not_json", "not_object", "missing_field", "bad_type", "bad_value", "too_large"]
REASONS: tuple[str, ...] = (
    "not_json",
    "not_object",
    "missing_field",
    "bad_type",
    "bad_value",
    "too_large",
    "late",
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(slots=True, frozen=True)
class Event:
    """A valid click or order event, reduced to what the KPIs use."""

    event_id: str
    user_id: str
    ts: int
    type: str
    channel: str | None = None
    device: str | None = None
    region: str | None = None
    order_id: str | None = None
    amount_cents: int = 0
    experiment: str | None = None
    variant: str | None = None
    campaign: str | None = None


@dataclass(slots=True, frozen=True)
class SpendEvent:
    """Money spent on acquisition in one channel."""

    event_id: str
    ts: int
    channel: str
    amount_cents: int


@dataclass(slots=True, frozen=True)
class Invalid:
    """Why an input was rejected; `detail` never contains payload data."""

    reason: Reason
    detail: str


class _Reject(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def parse_ts(value: Any, now_ms: int | None = None) -> int:
    """`ts` as epoch ms: an integer, or an RFC 3339 string with an offset."""
    if isinstance(value, bool):
        raise _Reject("bad_type", "ts must be an integer (epoch ms) or an RFC 3339 string")
    if isinstance(value, int):
        ts = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _Reject("bad_value", "ts is not an RFC 3339 timestamp") from None
        if dt.tzinfo is None or len(value) < 20:
            raise _Reject("bad_value", "ts string needs a date, a time and a UTC offset (RFC 3339)")
        ts = (dt - _EPOCH) // _MS
    else:
        raise _Reject("bad_type", "ts must be an integer (epoch ms) or an RFC 3339 string")
    if ts < 0:
        raise _Reject("bad_value", "ts is before 1970")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ts > now + FUTURE_TOLERANCE_MS:
        raise _Reject("bad_value", "ts is more than 1 day ahead of the wall clock")
    return ts


def _string(obj: dict, name: str, max_len: int, *, required: bool, min_len: int = 1) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _Reject("missing_field", f"{name} is required")
        return None
    if not isinstance(value, str):
        raise _Reject("bad_type", f"{name} must be a string")
    if not (min_len <= len(value) <= max_len):
        raise _Reject("bad_value", f"{name} must have {min_len}-{max_len} characters")
    return value


def _amount_cents(obj: dict) -> int:
    value = obj.get("amount")
    if value is None:
        raise _Reject("missing_field", "amount is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Reject("bad_type", "amount must be a number")
    if not math.isfinite(value) or value < 0:
        raise _Reject("bad_value", "amount must be finite and >= 0")
    return to_cents(value)


def _decode(raw: bytes, max_bytes: int) -> dict:
    if len(raw) > max_bytes:
        raise _Reject("too_large", f"message is {len(raw)} bytes, limit {max_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Reject("not_json", "value is not valid UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise _Reject("not_object", f"value is a JSON {type(obj).__name__}, not an object")
    return obj


_OPTIONAL_SHORT = ("channel", "device", "region")
_OPTIONAL_TEXT = ("experiment", "variant", "campaign")


def _fast_event(obj: dict, now_ms: int | None) -> Event | None:
    """The common case, a well-formed event, checked with few calls; None sends the
    input through `_event`, which finds the exact reason."""
    get = obj.get
    event_id, user_id, ts, kind = get("event_id"), get("user_id"), get("ts"), get("type")
    if not (
        type(event_id) is str and type(user_id) is str and type(kind) is str and type(ts) is int
        and 0 < len(event_id) <= 128 and 0 < len(user_id) <= 128 and 0 < len(kind) <= 64 and ts >= 0
    ):  # fmt: skip
        return None
    if ts > (int(time.time() * 1000) if now_ms is None else now_ms) + FUTURE_TOLERANCE_MS:
        return None
    short = [get(name) for name in _OPTIONAL_SHORT]
    text = [get(name) for name in _OPTIONAL_TEXT]
    for value in short:
        if value is not None and (type(value) is not str or len(value) > 64):
            return None
    for value in text:
        if value is not None and (type(value) is not str or len(value) > 128):
            return None
    for name in ("session_id", "page"):
        value = get(name)
        if value is not None and type(value) is not str:
            return None
    properties = get("properties")
    if properties is not None and type(properties) is not dict:
        return None
    order_id, amount_cents = None, 0
    if kind in ORDER_TYPES:
        order_id, amount = get("order_id"), get("amount")
        if not (type(order_id) is str and 0 < len(order_id) <= 128):
            return None
        if type(amount) is int or type(amount) is float:
            if not (amount >= 0 and math.isfinite(amount)):
                return None
            amount_cents = to_cents(amount)
        else:
            return None
    channel, device, region = short
    experiment, variant, campaign = text
    return Event(
        event_id,
        user_id,
        ts,
        kind,
        channel,
        device,
        region,
        order_id,
        amount_cents,
        experiment,
        variant,
        campaign,
    )


def _event(obj: dict, now_ms: int | None) -> Event:
    event_id = _string(obj, "event_id", 128, required=True)
    user_id = _string(obj, "user_id", 128, required=True)
    if "ts" not in obj or obj["ts"] is None:
        raise _Reject("missing_field", "ts is required")
    event_type = _string(obj, "type", 64, required=True)
    ts = parse_ts(obj["ts"], now_ms)
    channel = _string(obj, "channel", 64, required=False, min_len=0)
    device = _string(obj, "device", 64, required=False, min_len=0)
    region = _string(obj, "region", 64, required=False, min_len=0)
    for name in ("session_id", "page"):
        _string(obj, name, 1 << 62, required=False, min_len=0)
    if obj.get("properties") is not None and not isinstance(obj["properties"], dict):
        raise _Reject("bad_type", "properties must be an object")
    order_id = None
    amount_cents = 0
    if event_type in ORDER_TYPES:
        order_id = _string(obj, "order_id", 128, required=True)
        amount_cents = _amount_cents(obj)
    return Event(
        event_id=event_id,  # type: ignore[arg-type]
        user_id=user_id,  # type: ignore[arg-type]
        ts=ts,
        type=event_type,  # type: ignore[arg-type]
        channel=channel,
        device=device,
        region=region,
        order_id=order_id,
        amount_cents=amount_cents,
        experiment=_string(obj, "experiment", 128, required=False, min_len=0),
        variant=_string(obj, "variant", 128, required=False, min_len=0),
        campaign=_string(obj, "campaign", 128, required=False, min_len=0),
    )


def parse_event(
    raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, now_ms: int | None = None
) -> Event | Invalid:
    """A click or order message → `Event`, or `Invalid` with its reason."""
    try:
        obj = _decode(raw, max_bytes)
        return _fast_event(obj, now_ms) or _event(obj, now_ms)
    except _Reject as reject:
        return Invalid(reject.reason, reject.detail)


def parse_spend(
    raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, now_ms: int | None = None
) -> SpendEvent | Invalid:
    """A spend message → `SpendEvent`, or `Invalid` with its reason."""
    try:
        obj = _decode(raw, max_bytes)
        event_id = _string(obj, "event_id", 128, required=True)
        if "ts" not in obj or obj["ts"] is None:
            raise _Reject("missing_field", "ts is required")
        channel = _string(obj, "channel", 64, required=True)
        ts = parse_ts(obj["ts"], now_ms)
        return SpendEvent(event_id, ts, channel, _amount_cents(obj))  # type: ignore[arg-type]
    except _Reject as reject:
        return Invalid(reject.reason, reject.detail)
