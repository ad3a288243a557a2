"""Realistic, reproducible synthetic traffic: clicks, orders and spend as JSON lines.

Users arrive every day through channels of different quality (retention and
paid conversion), come back with decaying probability, browse in sessions
at any hour (so sessions and funnels cross midnight), add to cart, check
out, pay and sometimes get refunded; some are exposed to an experiment whose
treatment converts a little better; push campaigns are sent and opened.
A fraction of events is redelivered (an identical copy a few minutes later
in the stream) and, on request, malformed lines are mixed in.

Output is in event-time order (duplicates trail their original by at most
five minutes), generated day by day in bounded memory. Same spec, same bytes.
"""

from __future__ import annotations

import datetime as dt
import gzip as gzip_module
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

DAY_MS = 86_400_000
MIN_MS = 60_000

# channel: (share of new users, return-probability base, pay propensity, cost per new user)
CHANNELS: dict[str, tuple[float, float, float, float]] = {
    "organic": (0.35, 0.40, 0.10, 0.0),
    "ads": (0.30, 0.22, 0.06, 3.5),
    "social": (0.20, 0.28, 0.05, 2.0),
    "referral": (0.10, 0.50, 0.14, 5.0),
    "push": (0.05, 0.30, 0.07, 1.0),
}
DEVICES = ("ios", "android", "web")
DEVICE_P = (0.38, 0.42, 0.20)
REGIONS = ("cn-north", "cn-south", "us-east", "eu-west", "apac")
REGION_P = (0.3, 0.25, 0.2, 0.15, 0.1)
CAMPAIGNS = ("winback", "flash_sale", "new_arrivals")
PAGES = ("/", "/search", "/item", "/category", "/deals")


@dataclass(frozen=True)
class GeneratorSpec:
    seed: int = 1
    days: int = 14
    start: str = "2026-11-01"
    new_users_per_day: int = 200
    duplicate_rate: float = 0.01
    invalid_rate: float = 0.0


@dataclass
class _User:
    uid: str
    channel: str
    device: str
    region: str
    first_day: int
    return_p: float
    pay_p: float
    variant: str | None = None
    carts: int = 0


_INVALID = (
    b"{not json at all",
    b"[1, 2, 3]",
    b'{"event_id": "x", "ts": 1793491200000, "type": "page_view"}',
    b'{"event_id": "x", "user_id": "u", "ts": 1793491200000, "type": "order_paid", "order_id": "o", "amount": -5}',
    b'{"event_id": "x", "user_id": "u", "ts": "yesterday", "type": "page_view"}',
)


class _Stream:
    """Events of the simulation, released in emission order once a day is complete."""

    def __init__(self, spec: GeneratorSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        self.heap: list[tuple[int, int, str, bytes]] = []
        self.seq = 0

    def push(self, topic: str, event: dict) -> None:
        line = orjson.dumps(event)
        self.seq += 1
        heapq.heappush(self.heap, (event["ts"], self.seq, topic, line))
        rng = self.rng
        if self.spec.duplicate_rate and rng.random() < self.spec.duplicate_rate:
            self.seq += 1
            delay = int(rng.integers(1_000, 5 * MIN_MS))
            heapq.heappush(self.heap, (event["ts"] + delay, self.seq, topic, line))
        if self.spec.invalid_rate and rng.random() < self.spec.invalid_rate:
            self.seq += 1
            bad = _INVALID[int(rng.integers(len(_INVALID)))]
            heapq.heappush(self.heap, (event["ts"], self.seq, topic, bad))

    def release(self, before_ts: int) -> Iterator[tuple[str, bytes]]:
        heap = self.heap
        while heap and heap[0][0] < before_ts:
            _, _, topic, line = heapq.heappop(heap)
            yield topic, line


def generate(spec: GeneratorSpec) -> Iterator[tuple[str, bytes]]:
    """(topic, JSON line without newline) in event-time order; topics clicks/orders/spend."""
    rng = np.random.default_rng(spec.seed)
    first_day = (dt.date.fromisoformat(spec.start) - dt.date(1970, 1, 1)).days
    stream = _Stream(spec, rng)
    users: list[_User] = []
    channel_names = list(CHANNELS)
    channel_p = np.array([c[0] for c in CHANNELS.values()])
    counter = [0]

    def next_id() -> str:
        counter[0] += 1
        return f"e{spec.seed}-{counter[0]}"

    for day in range(first_day, first_day + spec.days):
        day_start = day * DAY_MS
        arrivals = int(rng.poisson(spec.new_users_per_day))
        channels = rng.choice(len(channel_names), size=arrivals, p=channel_p)
        for c in channels:
            name = channel_names[int(c)]
            _, ret, pay, _ = CHANNELS[name]
            users.append(
                _User(
                    uid=f"u{len(users):07d}",
                    channel=name,
                    device=DEVICES[int(rng.choice(3, p=DEVICE_P))],
                    region=REGIONS[int(rng.choice(5, p=REGION_P))],
                    first_day=day,
                    return_p=ret * float(rng.uniform(0.6, 1.4)),
                    pay_p=pay * float(rng.uniform(0.5, 1.5)),
                )
            )
        for name, count in zip(
            channel_names, np.bincount(channels, minlength=len(channel_names)), strict=True
        ):
            cost = CHANNELS[name][3]
            if cost and count:
                amount = round(float(count) * cost * float(rng.uniform(0.8, 1.2)), 2)
                stream.push(
                    "spend",
                    {"event_id": next_id(), "ts": day_start, "channel": name, "amount": amount},
                )
        for user in users:
            age = day - user.first_day
            if age < 0:
                continue
            if age > 0 and rng.random() >= user.return_p * (0.93**age):
                if age <= 30 and rng.random() < 0.25:
                    _push(stream, rng, user, day_start, next_id)
                continue
            for _ in range(1 + int(rng.poisson(0.6))):
                _session(
                    stream, rng, user, day_start + int(rng.integers(0, DAY_MS)), age == 0, next_id
                )
        yield from stream.release(day_start + DAY_MS)
    yield from stream.release(1 << 62)


def _common(user: _User, event_id: str, ts: int, kind: str) -> dict:
    return {
        "event_id": event_id, "user_id": user.uid, "ts": ts, "type": kind,
        "channel": user.channel, "device": user.device, "region": user.region,
    }  # fmt: skip


def _push(
    stream: _Stream,
    rng: np.random.Generator,
    user: _User,
    day_start: int,
    next_id: Callable[[], str],
) -> None:
    campaign = CAMPAIGNS[int(rng.integers(len(CAMPAIGNS)))]
    ts = day_start + int(rng.choice((9, 12, 19))) * 3_600_000
    stream.push("clicks", {**_common(user, next_id(), ts, "push_sent"), "campaign": campaign})
    if rng.random() < 0.12:
        opened = ts + int(rng.integers(MIN_MS, 90 * MIN_MS))
        stream.push(
            "clicks", {**_common(user, next_id(), opened, "push_open"), "campaign": campaign}
        )


def _session(
    stream: _Stream,
    rng: np.random.Generator,
    user: _User,
    ts: int,
    first: bool,
    next_id: Callable[[], str],
) -> None:
    session_id = f"s{next_id()}"

    def click(kind: str, **extra: object) -> None:
        stream.push(
            "clicks", {**_common(user, next_id(), ts, kind), "session_id": session_id, **extra}
        )

    if first:
        click("signup")
    else:
        click("login")
    if user.variant is None and rng.random() < 0.5:
        user.variant = "treatment" if rng.random() < 0.5 else "control"
        ts += int(rng.integers(1_000, 20_000))
        click("exposure", experiment="checkout_button", variant=user.variant)
    for _ in range(1 + int(rng.geometric(0.3))):
        ts += int(rng.integers(5_000, 120_000))
        click("page_view", page=PAGES[int(rng.integers(len(PAGES)))])
    if rng.random() >= 0.35:
        return
    ts += int(rng.integers(10_000, 300_000))
    items = int(rng.integers(1, 4))
    click("add_to_cart")
    user.carts += 1
    if rng.random() >= 0.55:
        return
    ts += int(rng.integers(20_000, 40 * MIN_MS))
    click("checkout")
    boost = 1.25 if user.variant == "treatment" else 1.0
    if rng.random() >= min(0.95, 4 * user.pay_p * boost):
        return
    order_id = f"o{next_id()}"
    amount = round(float(rng.lognormal(3.6, 0.8)) * items, 2)
    order = {"order_id": order_id, "amount": amount, "currency": "CNY", "items": items}
    ts += int(rng.integers(5_000, 60_000))
    stream.push("orders", {**_common(user, next_id(), ts, "order_created"), **order})
    ts += int(rng.integers(2_000, 10 * MIN_MS))
    stream.push("orders", {**_common(user, next_id(), ts, "order_paid"), **order})
    if rng.random() < 0.05:
        refund_ts = ts + int(rng.integers(30 * MIN_MS, 3 * DAY_MS // 2))
        refund = {**order, "amount": round(amount * float(rng.choice((0.5, 1.0))), 2)}
        stream.push("orders", {**_common(user, next_id(), refund_ts, "order_refunded"), **refund})


def write_files(
    spec: GeneratorSpec,
    out_dir: Path,
    *,
    gzip: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """clicks.jsonl, orders.jsonl, spend.jsonl (.gz with gzip=True); lines per file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".jsonl.gz" if gzip else ".jsonl"
    handles: dict[str, Any] = {}
    counts = {"clicks": 0, "orders": 0, "spend": 0}
    try:
        for topic in counts:
            path = out_dir / f"{topic}{suffix}"
            handles[topic] = (
                gzip_module.open(path, "wb", compresslevel=3) if gzip else open(path, "wb")
            )  # noqa: SIM115
        total = 0
        for topic, line in generate(spec):
            handles[topic].write(line + b"\n")
            counts[topic] += 1
            total += 1
            if progress is not None and total % 100_000 == 0:
                progress(total)
    finally:
        for handle in handles.values():
            handle.close()
    return counts
