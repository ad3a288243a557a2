"""Realistic, reproducible synthetic traffic: clicks, orders and spend as JSON lines.

The model (cheap, but shaped like a consumer shop):

- New users arrive every day (Poisson around ``new_users_per_day``) through
  channels of different quality: each channel has its own day-1 return
  probability, retention decay (``p(age) = d1 * age ** -decay``), purchase
  propensity, push open rate and acquisition cost. Every user also has a
  personal engagement and spending multiplier (heavy-tailed: a few whales),
  a device and a region. The region's UTC offset shapes when its users are
  online (a local-time daily curve), so sessions happen at all UTC hours and
  some sessions and funnels cross midnight.
- A user's first session starts with ``signup``; later sessions with
  ``login`` (or straight into page views, or ``push_open``). Sessions browse
  pages (``page_view``), some ``add_to_cart`` (which shows the cart page and
  the ``checkout_button`` experiment: ``exposure`` with the user's sticky
  variant, re-exposed on every cart; 3% of exposures leak the other variant, so
  some users see both), some ``checkout``, ``order_created`` and then ``order_paid``
  (items from a long-tailed catalogue, lognormal prices, 2-decimal amounts);
  a few paid orders are refunded hours to days later (``order_refunded``,
  same ``order_id``, amount <= paid). Treatment converts slightly better.
- One push campaign a day goes to a share of the existing users at the
  campaign's local hour (08:00 to 20:00; ``push_sent``); some open it
  (``push_open``, evening pushes more often), which starts a session.
- Spend: one event per paid channel per day (new users x cost per install).
- Churn, opt-in (``GeneratorSpec(churn=True)``, ``opspulse generate --churn``):
  users leave for good, for known causes, so that a churn model has something
  real to learn. A user who left never comes back: no more sessions and no
  ``push_open`` (the campaign may still send them ``push_sent``; the tail of
  a session under way and the refunds of earlier orders, at most 3 days
  later, still come). An alive user returns with ``1.5 x d1 x engagement`` a
  day, without the age decay: cohorts thin out by departures instead. Every
  day, each user seen on an earlier day and still alive leaves with the hazard

      base(channel) x 6 (an unpaid cart in the last 7 days)
                    x 10 (a refund in the last 14 days)
      + 0.10 x (1 - decline), at most 0.6

  with the causes (1) declining engagement: 35% of users start to decline
  at an age of 3 to 21 days (uniform), after which their engagement (returns,
  sessions per day, push opens) is ``decline = exp(-(age - onset) / 7)``
  times what it was, so their visits thin out before they leave; (2) unpaid
  carts: a session with ``add_to_cart`` and no ``order_paid``, counted from
  the session start; (3) refunds (``order_refunded``, from its ``ts``);
  (4) channel quality, the base daily hazard: referral 0.4%, organic 1.0%,
  push 1.2%, social 2.0%, ads 4.0%. Measured on 40 days of 100 new users a
  day (seeds 1 to 6): 46-48% of the users of the first 30 days have left by
  day 30 (76-79% of a cohort within 30 days of arrival); of the users who
  arrived 10+ days before the end, 61-64% have no activity (any event but
  ``push_sent``) in the last 7 days (52-54% without churn); of the users
  away on days 16 to 22, 6-8% come back later (56-59% without churn); gone
  at the end: 67-69% of the users with an unpaid cart before the last week
  vs 53-57% of the others, refunded 87-92% vs 60-64%, ads 78-81% vs
  referral 36-44%. A logistic model on recency, active days in the last
  7/14/30 days, unpaid carts, refunds, age and channel, refitted every day
  on the labels known by then, reaches a prequential ROC AUC of 0.88-0.89
  for "no activity in the next 7 days" over the users active in the last 30
  days (0.70-0.72 without churn; 0.80 over the users active in the last 7
  days). The leave decisions and the declines come from their own random
  stream, so the output with churn off is unchanged.
- A fraction of events is redelivered (an identical copy, 1 s to 5 min of
  event time later in the stream) and, on request, malformed lines are mixed
  in (not JSON, a JSON array, no ``user_id``, negative amount, bad ``ts``).

Generation is vectorised with numpy, one simulated day at a time: the day's
events for all active users are built as columns, merged with the carry-over
(events of earlier days that fall later: sessions past midnight, refunds,
redeliveries), sorted, and the part before the day's end is serialised and
emitted. Memory is bounded by one day of events plus per-user attributes.
The stream covers exactly the simulated days: whatever would happen after
the last day's end (tails of late sessions, later refunds) is not emitted.

Same spec, same bytes (numpy ``default_rng(seed)`` drawn in a fixed order).
Ids are unique per seed: users ``u0000000``... (numbered from 0 for every
seed), events ``e{seed}-{n}``, sessions ``s{seed}-{n}``, orders ``o{seed}-{n}``.
"""

from __future__ import annotations

import datetime as dt
import gzip as gzip_module
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
MAX_REDELIVERY_MS = 5 * MIN_MS  # a duplicate trails its original by at most this much
MAX_REFUND_DELAY_MS = 3 * DAY_MS

TOPICS = ("clicks", "orders", "spend")


@dataclass(frozen=True)
class Channel:
    """Quality of an acquisition channel."""

    share: float  # of new users
    d1: float  # probability to come back the day after arrival
    decay: float  # return probability at age n days = d1 * n ** -decay (x engagement)
    buy: float  # purchase propensity multiplier
    cpi: float  # acquisition cost per new user (0: no spend events)
    push_open: float  # probability that a push is opened


CHANNELS: dict[str, Channel] = {
    "organic": Channel(0.34, 0.42, 0.42, 1.00, 0.00, 0.08),
    "ads": Channel(0.30, 0.25, 0.62, 0.70, 3.20, 0.05),
    "social": Channel(0.18, 0.30, 0.58, 0.65, 1.80, 0.06),
    "referral": Channel(0.12, 0.50, 0.38, 1.30, 4.50, 0.09),
    "push": Channel(0.06, 0.32, 0.50, 0.90, 0.60, 0.16),
}
DEVICES: dict[str, float] = {"ios": 0.36, "android": 0.46, "web": 0.18}
# region: (share of users, UTC offset in hours)
REGIONS: dict[str, tuple[float, int]] = {
    "cn-north": (0.27, 8),
    "cn-south": (0.23, 8),
    "us-east": (0.18, -5),
    "eu-west": (0.17, 1),
    "apac": (0.15, 9),
}
# relative activity by local hour 0..23
DIURNAL = (
    2.2, 1.3, 0.8, 0.5, 0.4, 0.5, 0.9, 1.7, 2.6, 3.1, 3.4, 3.7,
    4.3, 4.1, 3.6, 3.5, 3.6, 3.9, 4.4, 5.1, 5.8, 6.0, 5.3, 3.8,
)  # fmt: skip
CAMPAIGNS = ("winback", "flash_sale", "new_arrivals", "price_drop", "weekend_deals")
# Each campaign goes out at its own local hour; evening pushes are opened more often.
PUSH_HOURS = (20, 8, 18, 12, 20)
PUSH_HOUR_OPEN = {8: 0.75, 12: 0.9, 18: 1.1, 20: 1.25}
EXPOSURE_LEAK = 0.03  # exposures that show the other variant (a leaky assignment)
STATIC_PAGES = (
    "/", "/search", "/deals", "/category/electronics", "/category/fashion",
    "/category/home", "/category/beauty", "/account",
)  # fmt: skip
STATIC_PAGE_P = (0.22, 0.20, 0.10, 0.12, 0.12, 0.10, 0.08, 0.06)
ITEM_PAGE_P = 0.4  # share of page views that are product pages
CATALOGUE = 20_000  # skus; popularity of the sku of rank r ~ 1 / r
VARIANTS = ("control", "treatment")

# event type codes
SPEND, SIGNUP, LOGIN, PAGE_VIEW, ADD_TO_CART, EXPOSURE, CHECKOUT = 0, 1, 2, 3, 4, 5, 6
PUSH_SENT, PUSH_OPEN, ORDER_CREATED, ORDER_PAID, ORDER_REFUNDED = 7, 8, 9, 10, 11
TYPE_NAMES = (
    "spend", "signup", "login", "page_view", "add_to_cart", "exposure", "checkout",
    "push_sent", "push_open", "order_created", "order_paid", "order_refunded",
)  # fmt: skip
TYPE_TOPIC = ("spend",) + ("clicks",) * 8 + ("orders",) * 3
# gap before an event inside a session: (median ms, lognormal sigma)
_GAP = {
    PAGE_VIEW: (35_000, 1.0),
    ADD_TO_CART: (18_000, 0.7),
    EXPOSURE: (1_200, 0.5),
    CHECKOUT: (50_000, 1.0),
    ORDER_CREATED: (12_000, 0.6),
    ORDER_PAID: (35_000, 1.1),
}

# columns of an event batch
_COLS = ("key", "sub", "ts", "eid", "user", "attr", "typ", "sess", "aux", "amt", "ordno", "bad")
_DTYPES = {
    "key": np.int64, "sub": np.int8, "ts": np.int64, "eid": np.int64, "user": np.int64,
    "attr": np.int32, "typ": np.int8, "sess": np.int64, "aux": np.int64, "amt": np.int64,
    "ordno": np.int64, "bad": np.int8,
}  # fmt: skip
# malformed-line kinds
_NOT_JSON, _NOT_OBJECT, _NO_USER, _TS_STRING, _NEGATIVE_AMOUNT, _TS_FLOAT = 1, 2, 3, 4, 5, 6
_CLICK_BAD = np.array([_NOT_JSON, _NOT_OBJECT, _NO_USER, _TS_STRING, _TS_FLOAT], np.int8)
_ORDER_BAD = np.array(
    [_NOT_JSON, _NOT_OBJECT, _NO_USER, _TS_STRING, _NEGATIVE_AMOUNT, _TS_FLOAT], np.int8
)


INCIDENT_STEPS = ("add_to_cart", "checkout", "order_created", "order_paid")

# churn (GeneratorSpec.churn): the daily probability that an alive user leaves for good
CHURN_BASE = {"organic": 0.010, "ads": 0.040, "social": 0.020, "referral": 0.004, "push": 0.012}
CHURN_CART = (6.0, 7)  # an unpaid cart: the base hazard x6 for the next 7 days
CHURN_REFUND = (10.0, 14)  # a refund: the base hazard x10 for the next 14 days
CHURN_DECLINERS = 0.35  # share of users whose engagement starts to decline
CHURN_DECLINE_ONSET = (3, 21)  # age in days at which the decline starts (uniform, inclusive)
CHURN_DECLINE_DAYS = 7.0  # engagement x exp(-(age - onset) / 7) after the onset
CHURN_DECLINE_HAZARD = 0.10  # plus 0.10 x (1 - that engagement factor)
CHURN_MAX_HAZARD = 0.6
CHURN_RETURN = 1.5  # an alive user returns with 1.5 x d1 x engagement, without the age decay


@dataclass(frozen=True)
class Incident:
    """A funnel step failing for one breakdown value for a while: sessions of users with
    `dimension` = `value` starting in [start, start + minutes) reach `step` with their
    usual probability times `factor` (for alert tests and the demo)."""

    start_ms: int
    minutes: int = 30
    step: str = "order_paid"
    dimension: str = "device"
    value: str = "android"
    factor: float = 0.3

    def __post_init__(self) -> None:
        known: dict[str, Collection[str]] = {
            "device": DEVICES, "channel": CHANNELS, "region": REGIONS,
        }  # fmt: skip
        if self.step not in INCIDENT_STEPS:
            raise ValueError(f"incident step must be one of {', '.join(INCIDENT_STEPS)}")
        if self.dimension not in known or self.value not in known[self.dimension]:
            raise ValueError(
                f"incident {self.dimension}={self.value}: expected device, channel or region "
                "and one of its generated values"
            )
        if self.minutes <= 0 or not 0 <= self.factor <= 1:
            raise ValueError("incident minutes must be > 0 and factor in [0, 1]")


@dataclass(frozen=True)
class GeneratorSpec:
    seed: int = 1
    days: int = 14  # simulated days
    start: str = "2026-11-01"  # first day, UTC date
    new_users_per_day: int = 200
    duplicate_rate: float = 0.01  # fraction of events redelivered (copy <= 5 min later)
    invalid_rate: float = 0.0  # extra malformed click/order lines, per valid one
    channels: tuple[str, ...] = tuple(CHANNELS)  # subset of CHANNELS; shares renormalised
    devices: tuple[str, ...] = tuple(DEVICES)
    regions: tuple[str, ...] = tuple(REGIONS)
    experiment: str = "checkout_button"
    treatment_lift: float = 0.05  # relative lift of checkout and order rates in treatment
    push_rate: float = 0.25  # share of users aged 1-30 days sent the day's push
    refund_rate: float = 0.08  # share of paid orders refunded (about 40% of them partially)
    currency: str = "CNY"
    incident: Incident | None = None
    churn: bool = False  # users leave for good, for known causes (see the module docstring)

    def __post_init__(self) -> None:
        dt.date.fromisoformat(self.start)
        if self.days < 1 or self.new_users_per_day < 0:
            raise ValueError("days must be >= 1 and new_users_per_day >= 0")
        for name in ("duplicate_rate", "invalid_rate", "push_rate", "refund_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        if not 0 <= self.treatment_lift <= 1:
            raise ValueError("treatment_lift must be in [0, 1]")
        for name, known in (("channels", CHANNELS), ("devices", DEVICES), ("regions", REGIONS)):
            values = getattr(self, name)
            if not values or any(v not in known for v in values) or len(set(values)) < len(values):
                raise ValueError(f"{name} must be distinct names from {sorted(known)}")


def generate(spec: GeneratorSpec) -> Iterator[tuple[str, bytes]]:
    """(topic, JSON line without newline) in event-time order; topics clicks/orders/spend.

    Redelivered copies come up to 5 minutes of event time after their original;
    malformed lines sit at the time of the event they were made from."""
    return _Simulation(spec).run()


def write_files(
    spec: GeneratorSpec,
    out_dir: Path,
    *,
    gzip: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """clicks.jsonl, orders.jsonl, spend.jsonl (.jsonl.gz with gzip=True) in out_dir;
    returns the lines written per file. progress(events_so_far) every 100,000
    events and at the end."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".jsonl.gz" if gzip else ".jsonl"
    counts = dict.fromkeys(TOPICS, 0)
    buffers: dict[str, list[bytes]] = {topic: [] for topic in TOPICS}
    handles: dict[str, Any] = {}
    try:
        for topic in TOPICS:
            path = out_dir / f"{topic}{suffix}"
            handles[topic] = (
                gzip_module.open(path, "wb", compresslevel=3) if gzip else open(path, "wb")  # noqa: SIM115
            )
        total = 0
        for topic, line in generate(spec):
            buffer = buffers[topic]
            buffer.append(line)
            if len(buffer) >= 8192:
                handles[topic].write(b"\n".join(buffer) + b"\n")
                counts[topic] += len(buffer)
                buffer.clear()
            total += 1
            if progress is not None and total % 100_000 == 0:
                progress(total)
        for topic, buffer in buffers.items():
            if buffer:
                handles[topic].write(b"\n".join(buffer) + b"\n")
                counts[topic] += len(buffer)
        if progress is not None:
            progress(total)
    finally:
        for handle in handles.values():
            handle.close()
    return counts


class _Users:
    """Per-user attributes in growable numpy arrays (index = user number)."""

    FIELDS = {
        "first_day": np.int64, "chan": np.int64, "reg": np.int64, "attr": np.int64,
        "engage": np.float64, "buy": np.float64, "variant": np.int64,
    }  # fmt: skip

    def __init__(self) -> None:
        self.n = 0
        self.cols = {name: np.zeros(1024, dtype) for name, dtype in self.FIELDS.items()}

    def add(self, **values: np.ndarray) -> None:
        k = len(next(iter(values.values())))
        need = self.n + k
        if need > len(self.cols["first_day"]):
            cap = max(need, 2 * len(self.cols["first_day"]))
            for name, col in self.cols.items():
                grown = np.zeros(cap, col.dtype)
                grown[: self.n] = col[: self.n]
                self.cols[name] = grown
        for name, col in self.cols.items():
            col[self.n : need] = values[name]
        self.n = need

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name][: self.n]


class _Churn:
    """Who is still around (GeneratorSpec.churn), drawn from its own random stream so
    that the main stream is untouched when churn is off."""

    NEVER = -(1 << 60)

    def __init__(self, spec: GeneratorSpec) -> None:
        self.rng = np.random.default_rng([spec.seed, 0x636875726E])  # "churn"
        self.base = np.array([CHURN_BASE[c] for c in spec.channels])
        self.alive = np.zeros(0, bool)
        self.onset = np.zeros(0)  # age at which engagement starts to decline (inf: never)
        self.cart_ms = np.zeros(0, np.int64)  # last unpaid cart (session start), so far
        self.refund_ms = np.zeros(0, np.int64)  # last refund, so far
        # (user, ts, is_refund) of carts and refunds not yet known at the last day start
        self.pending: list[tuple[np.ndarray, np.ndarray, bool]] = []

    def arrive(self, n: int) -> None:
        declines = self.rng.random(n) < CHURN_DECLINERS
        lo, hi = CHURN_DECLINE_ONSET
        onset = np.where(declines, self.rng.integers(lo, hi + 1, n), np.inf)
        self.alive = np.concatenate([self.alive, np.ones(n, bool)])
        self.onset = np.concatenate([self.onset, onset])
        never = np.full(n, self.NEVER, np.int64)
        self.cart_ms = np.concatenate([self.cart_ms, never])
        self.refund_ms = np.concatenate([self.refund_ms, never])

    def engagement(self, age: np.ndarray) -> np.ndarray:
        """Factor on every user's engagement at this age (1 until a decline starts)."""
        return np.exp(-np.maximum(age - self.onset[: len(age)], 0) / CHURN_DECLINE_DAYS)

    def note(self, user: np.ndarray, ts: np.ndarray, refund: bool) -> None:
        self.pending.append((user, ts, refund))

    def leave(self, day_start: int, chan: np.ndarray, age: np.ndarray) -> None:
        """The day's departures among the first len(chan) users (those seen before)."""
        later = []
        for user, ts, refund in self.pending:
            known = ts < day_start
            np.maximum.at(self.refund_ms if refund else self.cart_ms, user[known], ts[known])
            if not known.all():
                later.append((user[~known], ts[~known], refund))
        self.pending = later
        n = len(chan)
        cart_x, cart_days = CHURN_CART
        refund_x, refund_days = CHURN_REFUND
        hazard = self.base[chan].copy()
        hazard *= np.where(day_start - self.cart_ms[:n] <= cart_days * DAY_MS, cart_x, 1.0)
        hazard *= np.where(day_start - self.refund_ms[:n] <= refund_days * DAY_MS, refund_x, 1.0)
        hazard += CHURN_DECLINE_HAZARD * (1 - self.engagement(age))
        self.alive[:n] &= self.rng.random(n) >= np.minimum(hazard, CHURN_MAX_HAZARD)


def _batch(n: int, **cols: Any) -> dict[str, np.ndarray]:
    """An event batch of n rows: given columns (arrays or scalars), the rest defaulted."""
    out = {}
    for name in _COLS:
        value = cols.get(name, -1 if name in ("sess", "aux", "ordno", "user") else 0)
        out[name] = np.broadcast_to(np.asarray(value, _DTYPES[name]), (n,)).copy()
    return out


def _concat(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([b[name] for b in batches]) for name in _COLS}


def _take(batch: dict[str, np.ndarray], index: Any) -> dict[str, np.ndarray]:
    return {name: col[index] for name, col in batch.items()}


def _money(cents: int) -> bytes:
    return b"%d.%02d" % divmod(cents, 100)


class _Simulation:
    def __init__(self, spec: GeneratorSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.first_day = (dt.date.fromisoformat(spec.start) - dt.date(1970, 1, 1)).days
        self.users = _Users()
        self.next_event = 0
        self.next_session = 0
        self.next_order = 0
        self.items: dict[int, bytes] = {}  # order number -> serialised items
        self.order_days: list[tuple[int, int]] = []  # (day, first order number of that day)
        self.churn = _Churn(spec) if spec.churn else None

        chans = [CHANNELS[c] for c in spec.channels]
        share = np.array([c.share for c in chans])
        self.chan_p = share / share.sum()
        self.chan_d1 = np.array([c.d1 for c in chans])
        self.chan_decay = np.array([c.decay for c in chans])
        self.chan_buy = np.array([c.buy for c in chans])
        self.chan_cpi = np.array([c.cpi for c in chans])
        self.chan_open = np.array([c.push_open for c in chans])
        self.chan_push = np.array([c == "push" for c in spec.channels])
        dev = np.array([DEVICES[d] for d in spec.devices])
        self.dev_p = dev / dev.sum()
        reg = np.array([REGIONS[r][0] for r in spec.regions])
        self.reg_p = reg / reg.sum()
        self.reg_offset = np.array([REGIONS[r][1] for r in spec.regions])
        diurnal = np.array(DIURNAL)
        # per region: cumulative distribution of the UTC hour of a session start
        self.hour_cdf = np.stack(
            [np.cumsum(np.roll(diurnal, -off) / diurnal.sum()) for off in self.reg_offset]
        )
        self.hour_cdf[:, -1] = 1.0
        page_p = np.array(STATIC_PAGE_P)
        self.page_cdf = np.cumsum(page_p / page_p.sum())
        self.page_cdf[-1] = 1.0
        popularity = 1.0 / np.arange(1, CATALOGUE + 1)
        self.sku_cdf = np.cumsum(popularity / popularity.sum())
        self.sku_cdf[-1] = 1.0

        seed = spec.seed
        ndev, nreg = len(spec.devices), len(spec.regions)
        self.attr_bytes = [
            b',"channel":"%s","device":"%s","region":"%s"'
            % (spec.channels[a // (ndev * nreg)].encode(),
               spec.devices[a // nreg % ndev].encode(), spec.regions[a % nreg].encode())
            for a in range(len(spec.channels) * ndev * nreg)
        ]  # fmt: skip
        self.head_format = (
            b'{"event_id":"e%d-%%d","user_id":"u%%07d","ts":%%d,"type":"%%s"%%s' % seed
        )
        self.session_format = b',"session_id":"s%d-%%d"' % seed
        self.order_format = b',"order_id":"o%d-%%d","amount":%%s,"currency":%s,"items":%%s}' % (
            seed,
            orjson.dumps(spec.currency),
        )
        self.spend_format = b'{"event_id":"e%d-%%d","ts":%%d,"channel":"%%s","amount":%%s}' % seed
        self.type_bytes = [t.encode() for t in TYPE_NAMES]
        self.channel_bytes = [c.encode() for c in spec.channels]
        self.page_bytes = [b',"page":"%s"}' % p.encode() for p in STATIC_PAGES]
        self.exposure_bytes = [
            b',"experiment":%s,"variant":"%s"}' % (orjson.dumps(spec.experiment), v.encode())
            for v in VARIANTS
        ]
        self.campaign_bytes = [b',"campaign":"%s"}' % c.encode() for c in CAMPAIGNS]

    # ---------------------------------------------------------------- the loop
    def run(self) -> Iterator[tuple[str, bytes]]:
        carry = _batch(0)
        for k in range(self.spec.days):
            day = self.first_day + k
            fresh = self._day(k, day)
            rows = _concat([carry, fresh])
            order = np.lexsort((rows["sub"], rows["eid"], rows["key"]))
            rows = _take(rows, order)
            cut = int(np.searchsorted(rows["key"], (day + 1) * DAY_MS))
            yield from self._serialise(_take(rows, slice(0, cut)))
            carry = _take(rows, slice(cut, None))
            self._forget_orders(day)

    def _forget_orders(self, day: int) -> None:
        """Drop the items of orders whose events can no longer come."""
        horizon = day - (MAX_REFUND_DELAY_MS // DAY_MS + 2)
        while len(self.order_days) > 1 and self.order_days[1][0] <= horizon:
            lo, hi = self.order_days[0][1], self.order_days[1][1]
            for o in range(lo, hi):
                self.items.pop(o, None)
            self.order_days.pop(0)

    # --------------------------------------------------------------- one day
    def _day(self, k: int, day: int) -> dict[str, np.ndarray]:
        spec, rng, users = self.spec, self.rng, self.users
        day_start = day * DAY_MS
        weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday

        # arrivals
        n_new = int(rng.poisson(spec.new_users_per_day)) if spec.new_users_per_day else 0
        chan = rng.choice(len(self.chan_p), n_new, p=self.chan_p)
        dev = rng.choice(len(self.dev_p), n_new, p=self.dev_p)
        reg = rng.choice(len(self.reg_p), n_new, p=self.reg_p)
        ndev, nreg = len(self.dev_p), len(self.reg_p)
        old = users.n
        users.add(
            first_day=np.full(n_new, day),
            chan=chan,
            reg=reg,
            attr=(chan * ndev + dev) * nreg + reg,
            engage=rng.lognormal(-0.18, 0.6, n_new),  # mean 1
            buy=self.chan_buy[chan] * rng.lognormal(-0.32, 0.8, n_new),  # mean 1 x channel
            variant=rng.integers(0, 2, n_new),
        )
        new_idx = np.arange(old, users.n)
        chan_all, engage_all = users["chan"], users["engage"]
        churn = self.churn
        if churn is not None:  # engagement declines for some; some users leave today
            churn.arrive(n_new)
            engage_all = engage_all * churn.engagement(day - users["first_day"])
            churn.leave(day_start, chan_all[:old], day - users["first_day"][:old])

        # returning users: channel-dependent power-law decay, personal engagement, weekends
        age = day - users["first_day"][:old]
        oc = chan_all[:old]
        if churn is None:
            p_return = self.chan_d1[oc] * np.maximum(age, 1) ** -self.chan_decay[oc]
        else:  # the cohort thins out by departures instead of the age decay
            p_return = CHURN_RETURN * self.chan_d1[oc] * churn.alive[:old]
        p_return *= engage_all[:old]
        if weekend:
            p_return *= 1.12
        back_idx = np.flatnonzero(rng.random(old) < np.minimum(p_return, 0.97))

        batches = [self._spend(day_start, chan)]

        # push campaign in the users' local evening
        campaign = k % len(CAMPAIGNS)
        # lifecycle pushes: users in their first 30 days (push-acquired ones more often)
        target_p = np.where(self.chan_push[oc], 1.5, 1.0) * spec.push_rate * (age <= 30)
        pushed = np.flatnonzero(rng.random(old) < target_p)
        sent = (
            day_start
            + ((PUSH_HOURS[campaign] - self.reg_offset[users["reg"][pushed]]) % 24) * HOUR_MS
            + rng.integers(0, HOUR_MS, len(pushed))
        )
        batches.append(
            _batch(
                len(pushed),
                key=sent,
                ts=sent,
                user=pushed,
                attr=users["attr"][pushed],
                typ=PUSH_SENT,
                aux=campaign,
            )  # fmt: skip
        )
        p_open = self.chan_open[chan_all[pushed]] * np.clip(engage_all[pushed], 0.3, 2.0)
        p_open *= PUSH_HOUR_OPEN[PUSH_HOURS[campaign]]
        if churn is not None:  # the push still goes out to users who left; nobody opens it
            p_open *= churn.alive[pushed]
        opened = rng.random(len(pushed)) < p_open
        open_user = pushed[opened]
        open_ts = sent[opened] + np.clip(
            rng.lognormal(np.log(25 * MIN_MS), 1.0, len(open_user)), 10_000, 6 * HOUR_MS
        ).astype(np.int64)

        # sessions: 1 + Poisson per active user, start times from the regional daily curve
        active = np.concatenate([new_idx, back_idx])
        n_sess = 1 + np.minimum(rng.poisson(0.5 * engage_all[active]), 6)
        s_user = np.repeat(active, n_sess)
        s_start = day_start + self._utc_time_of_day(users["reg"][s_user])
        s_head = np.where(rng.random(len(s_user)) < 0.4, LOGIN, 0)
        # a new user's first session is the signup
        by_user = np.lexsort((s_start, s_user))
        first = np.ones(len(by_user), bool)
        first[1:] = s_user[by_user][1:] != s_user[by_user][:-1]
        signup = by_user[first & (s_user[by_user] >= old)]
        s_head[signup] = SIGNUP
        s_user = np.concatenate([s_user, open_user])
        s_start = np.concatenate([s_start, open_ts])
        s_head = np.concatenate([s_head, np.full(len(open_user), PUSH_OPEN)])
        s_aux = np.concatenate([np.full(len(s_user) - len(open_user), -1),
                                np.full(len(open_user), campaign)])  # fmt: skip
        order = np.lexsort((s_user, s_start))
        self.order_days.append((day, self.next_order))
        batches.extend(self._sessions(s_user[order], s_start[order], s_head[order], s_aux[order]))

        fresh = _concat(batches)
        order = np.argsort(fresh["ts"], kind="stable")
        fresh = _take(fresh, order)
        n = len(order)
        fresh["eid"] = self.next_event + np.arange(n)
        fresh["key"] = fresh["ts"]
        self.next_event += n
        extra = [fresh]
        if spec.duplicate_rate:
            dup = _take(fresh, rng.random(n) < spec.duplicate_rate)
            dup["key"] = dup["ts"] + rng.integers(1_000, MAX_REDELIVERY_MS + 1, len(dup["ts"]))
            dup["sub"][:] = 1
            extra.append(dup)
        if spec.invalid_rate:
            bad = _take(fresh, (rng.random(n) < spec.invalid_rate) & (fresh["typ"] != SPEND))
            m = len(bad["ts"])
            is_order = bad["typ"] >= ORDER_CREATED
            bad["bad"] = np.where(
                is_order,
                _ORDER_BAD[rng.integers(0, len(_ORDER_BAD), m)],
                _CLICK_BAD[rng.integers(0, len(_CLICK_BAD), m)],
            )
            bad["sub"][:] = 2
            extra.append(bad)
        return _concat(extra)

    def _utc_time_of_day(self, reg: np.ndarray) -> np.ndarray:
        u = self.rng.random(len(reg))
        hour = np.zeros(len(reg), np.int64)
        for r in range(len(self.hour_cdf)):
            m = reg == r
            hour[m] = np.searchsorted(self.hour_cdf[r], u[m], side="right")
        return hour * HOUR_MS + self.rng.integers(0, HOUR_MS, len(reg))

    def _skus(self, n: int) -> np.ndarray:
        return 1 + np.searchsorted(self.sku_cdf, self.rng.random(n), side="right")

    def _spend(self, day_start: int, chan: np.ndarray) -> dict[str, np.ndarray]:
        paid = np.flatnonzero(self.chan_cpi > 0)
        count = np.bincount(chan, minlength=len(self.chan_cpi))[paid]
        noise = self.rng.lognormal(0.0, 0.1, len(paid))
        cents = np.round(count * self.chan_cpi[paid] * noise * 100).astype(np.int64)
        return _batch(len(paid), key=day_start, ts=day_start, typ=SPEND, aux=paid, amt=cents)

    def _sessions(
        self, s_user: np.ndarray, s_start: np.ndarray, s_head: np.ndarray, s_aux: np.ndarray
    ) -> list[dict[str, np.ndarray]]:
        """Every session's events: [head] page views [cart exposure page views
        [checkout [order_created [order_paid]]]], plus later refunds."""
        rng, users, spec = self.rng, self.users, self.spec
        S = len(s_user)
        sess = self.next_session + np.arange(S)
        self.next_session += S
        buy = users["buy"][s_user]
        variant = users["variant"][s_user]
        lift = 1.0 + spec.treatment_lift * variant
        n_pv1 = rng.geometric(0.18, S)
        hit = self._incident_factors(s_user, s_start)
        cart = rng.random(S) < np.minimum(0.22 * buy, 0.85) * hit["add_to_cart"]
        n_pv2 = np.where(cart, rng.geometric(0.55, S) - 1, 0)
        chk = cart & (rng.random(S) < np.minimum(0.42 * lift, 0.95) * hit["checkout"])
        crt = chk & (
            rng.random(S) < np.minimum(0.5 * np.sqrt(buy) * lift, 0.95) * hit["order_created"]
        )
        paid = crt & (rng.random(S) < 0.87 * hit["order_paid"])
        seg_len = np.stack([s_head != 0, n_pv1, cart, cart, n_pv2, chk, crt, paid], axis=1).astype(
            np.int64
        )
        seg_type = np.array([0, PAGE_VIEW, ADD_TO_CART, EXPOSURE, PAGE_VIEW, CHECKOUT,
                             ORDER_CREATED, ORDER_PAID])  # fmt: skip
        ends = np.cumsum(seg_len, axis=1)
        n_ev = ends[:, -1]
        N = int(n_ev.sum())
        row_s = np.repeat(np.arange(S), n_ev)
        offsets = np.cumsum(n_ev) - n_ev
        pos = np.arange(N) - offsets[row_s]
        seg = np.zeros(N, np.int64)
        for j in range(7):
            seg += pos >= ends[row_s, j]
        typ = seg_type[seg]
        head_row = seg == 0
        typ[head_row] = s_head[row_s[head_row]]

        # time: lognormal gaps by event type, cumulated within the session
        mu = np.zeros(ORDER_REFUNDED + 1)
        sigma = np.zeros(ORDER_REFUNDED + 1)
        for t, (median, sd) in _GAP.items():
            mu[t], sigma[t] = np.log(median), sd
        gap = np.clip(np.exp(mu[typ] + sigma[typ] * rng.standard_normal(N)), 300, 30 * MIN_MS)
        gap = gap.astype(np.int64)
        gap[offsets] = 0
        csum = np.cumsum(gap)
        ts = s_start[row_s] + csum - csum[offsets][row_s]

        aux = np.full(N, -1, np.int64)
        aux[head_row] = s_aux[row_s[head_row]]
        pv = np.flatnonzero(typ == PAGE_VIEW)
        item_page = rng.random(len(pv)) < ITEM_PAGE_P
        static = np.searchsorted(self.page_cdf, rng.random(len(pv)), side="right")
        sku = self._skus(len(pv))
        aux[pv] = np.where(item_page, len(STATIC_PAGES) + sku, static)
        expo = typ == EXPOSURE
        leak = rng.random(int(expo.sum())) < EXPOSURE_LEAK
        aux[expo] = variant[row_s[expo]] ^ leak

        # orders: items from the catalogue, lognormal prices ending in .00/.90/.99
        o_sess = np.flatnonzero(crt)
        n_orders = len(o_sess)
        ordno_s = np.full(S, -1, np.int64)
        ordno_s[o_sess] = self.next_order + np.arange(n_orders)
        self.next_order += n_orders
        n_items = 1 + rng.binomial(3, 0.22, n_orders)
        n_lines = int(n_items.sum())
        units = np.maximum(1, np.round(rng.lognormal(np.log(45), 0.85, n_lines)))
        price = units.astype(np.int64) * 100 - rng.choice([0, 10, 1], n_lines, p=[0.5, 0.3, 0.2])
        qty = 1 + (rng.random(n_lines) < 0.12)
        skus = self._skus(n_lines)
        line_total = price * qty
        starts = np.cumsum(n_items) - n_items
        amount_s = np.zeros(S, np.int64)
        if n_orders:
            amount_s[o_sess] = np.add.reduceat(line_total, starts)
        qty_l, price_l, sku_l = qty.tolist(), price.tolist(), skus.tolist()
        for o, a, b in zip(
            ordno_s[o_sess].tolist(), starts.tolist(), (starts + n_items).tolist(), strict=True
        ):
            self.items[o] = b"[%s]" % b",".join(
                b'{"sku":"sku-%05d","qty":%d,"price":%s}' % (sku_l[i], qty_l[i], _money(price_l[i]))
                for i in range(a, b)
            )
        is_order = typ >= ORDER_CREATED
        ordno = np.where(is_order, ordno_s[row_s], -1)
        amt = np.where(is_order, amount_s[row_s], 0)

        batch = _batch(N, ts=ts, user=s_user[row_s], attr=users["attr"][s_user[row_s]], typ=typ,
                       sess=sess[row_s], aux=aux, amt=amt, ordno=ordno)  # fmt: skip

        # refunds, hours to days after payment; about 40% partial
        paid_rows = np.flatnonzero(typ == ORDER_PAID)
        refunded = paid_rows[rng.random(len(paid_rows)) < spec.refund_rate]
        m = len(refunded)
        delay = np.clip(
            rng.lognormal(np.log(20 * HOUR_MS), 0.9, m), 30 * MIN_MS, MAX_REFUND_DELAY_MS
        )
        r_ts = ts[refunded] + delay.astype(np.int64)
        full = amt[refunded]
        partial = np.floor(full * rng.uniform(0.15, 0.9, m)).astype(np.int64)
        r_amt = np.where(rng.random(m) < 0.6, full, np.minimum(partial, full))
        refunds = _batch(m, ts=r_ts, user=batch["user"][refunded], attr=batch["attr"][refunded],
                         typ=ORDER_REFUNDED, amt=r_amt, ordno=ordno[refunded])  # fmt: skip
        if self.churn is not None:
            unpaid = cart & ~paid
            self.churn.note(s_user[unpaid], s_start[unpaid], refund=False)
            self.churn.note(refunds["user"], r_ts, refund=True)
        return [batch, refunds]

    # ---------------------------------------------------------- serialisation
    def _incident_factors(self, s_user: np.ndarray, s_start: np.ndarray) -> dict[str, Any]:
        """Per step, the success factor of each session (1 outside the incident)."""
        factors: dict[str, Any] = dict.fromkeys(INCIDENT_STEPS, 1.0)
        incident = self.spec.incident
        if incident is None:
            return factors
        ndev, nreg = len(self.spec.devices), len(self.spec.regions)
        attr = self.users["attr"][s_user]
        index = {
            "device": (attr // nreg) % ndev, "channel": attr // (nreg * ndev), "region": attr % nreg,
        }[incident.dimension]  # fmt: skip
        names = {"device": self.spec.devices, "channel": self.spec.channels,
                 "region": self.spec.regions}[incident.dimension]  # fmt: skip
        if incident.value not in names:
            return factors
        end = incident.start_ms + incident.minutes * MIN_MS
        hit = (index == names.index(incident.value)) & (s_start >= incident.start_ms)
        hit &= s_start < end
        factors[incident.step] = np.where(hit, incident.factor, 1.0)
        return factors

    def _serialise(self, rows: dict[str, np.ndarray]) -> Iterator[tuple[str, bytes]]:
        head_format, session_format, order_format = (
            self.head_format, self.session_format, self.order_format,
        )  # fmt: skip
        spend_format, type_bytes, attr_bytes = self.spend_format, self.type_bytes, self.attr_bytes
        page_bytes, exposure_bytes, campaign_bytes = (
            self.page_bytes, self.exposure_bytes, self.campaign_bytes,
        )  # fmt: skip
        channel_bytes, items, n_static = self.channel_bytes, self.items, len(STATIC_PAGES)
        fields = ("ts", "eid", "user", "attr", "typ", "sess", "aux", "amt", "ordno", "bad")
        n = len(rows["ts"])
        for lo in range(0, n, 65_536):
            columns = [rows[f][lo : lo + 65_536].tolist() for f in fields]
            for ts, eid, user, attr, typ, sess, aux, amt, ordno, bad in zip(*columns, strict=True):
                if typ == SPEND:
                    yield "spend", spend_format % (eid, ts, channel_bytes[aux], _money(amt))
                    continue
                line = head_format % (eid, user, ts, type_bytes[typ], attr_bytes[attr])
                if sess >= 0:
                    line += session_format % sess
                if typ == PAGE_VIEW:
                    if aux < n_static:
                        line += page_bytes[aux]
                    else:
                        line += b',"page":"/item/sku-%05d"}' % (aux - n_static)
                elif typ >= ORDER_CREATED:
                    line += order_format % (ordno, _money(amt), items[ordno])
                elif typ == EXPOSURE:
                    line += exposure_bytes[aux]
                elif typ == PUSH_SENT or typ == PUSH_OPEN:
                    line += campaign_bytes[aux]
                else:
                    line += b"}"
                if bad:
                    line = _corrupt(line, bad, user, ts, amt)
                yield ("orders" if typ >= ORDER_CREATED else "clicks"), line


def _corrupt(line: bytes, kind: int, user: int, ts: int, amt: int) -> bytes:
    """A malformed variant of a valid line, as a buggy producer would send it."""
    if kind == _NOT_JSON:
        return line[: len(line) // 2]
    if kind == _NOT_OBJECT:
        return b"[" + line + b"]"
    if kind == _NO_USER:
        return line.replace(b'"user_id":"u%07d",' % user, b"", 1)
    if kind == _TS_STRING:  # local time without an offset
        text = dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        return line.replace(b'"ts":%d' % ts, b'"ts":"%s"' % text.encode(), 1)
    if kind == _NEGATIVE_AMOUNT:
        return line.replace(b'"amount":%s' % _money(amt), b'"amount":-%s' % _money(amt), 1)
    # _TS_FLOAT: seconds with a fraction instead of integer milliseconds
    return line.replace(b'"ts":%d' % ts, b'"ts":%d.%03d' % divmod(ts, 1000), 1)


if __name__ == "__main__":  # python -m streams.generator [new_users_per_day] [days]: rate
    import sys
    import time

    users_per_day = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 14
    started = time.perf_counter()
    counts = dict.fromkeys(TOPICS, 0)
    for topic, _ in generate(GeneratorSpec(days=days, new_users_per_day=users_per_day)):
        counts[topic] += 1
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    print(f"{total:,} events in {elapsed:.1f} s: {total / elapsed:,.0f}/s {counts}")
