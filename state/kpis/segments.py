"""Classifications as of the end of each day (METRICS.md, "As of the end of day d"):
lifecycle stage, RFM segment, LTV tier, repurchase within 30 days, and revenue
by LTV tier (a cohort view).

A user's class on day d is a pure function of their events with `ts` before the
end of d. It is piecewise constant in d, and its change points after the last
event are known from the events so far (inactivity reaching 3, 14 or 30 days,
age reaching 7, an order leaving the 30-day window or the recency). So each
user contributes a step function, kept as a difference row: +1 for a class on
the day the user enters it, -1 on the day they leave it, summed at render. An
event on day e changes the classification only from e on: the module computes
the user's schedule from e with and without the event and adds the difference,
so any arrival order inside the lateness bound gives the same rows.

The record keeps what the schedule needs beyond the active days: the first
`add_to_cart` day and, per day, paid orders and net revenue for the days a late
event can still reach (plus 31 for the 30-day repurchase window); older days
are summed into a base.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from state.clock import DayClock
from state.money import from_cents
from state.partials import TABLE_EFFECT, Effect, Partials, ratio
from state.user import is_active

if TYPE_CHECKING:
    from state.config import Config, SegmentRules
    from state.fold import Fold
    from state.user import Context, EventLike, UserState

LIFECYCLE = (
    "new", "silent_new", "active", "potential_paying",
    "paying", "high_value", "churn_warning", "churned",
)  # fmt: skip
RFM = (
    "champions", "loyal_low_spend", "promising_big_spender", "new_or_light",
    "at_risk_valuable", "at_risk_frequent", "hibernating_big", "lost", "no_purchase",
)  # fmt: skip
TIERS = ("potential", "growth", "high")
NEW, SILENT_NEW, ACTIVE, POTENTIAL_PAYING, PAYING, HIGH_VALUE, CHURN_WARNING, CHURNED = range(8)
# Slots of the "segments" difference row.
RFM_SLOT = len(LIFECYCLE)
NO_PURCHASE_SLOT = RFM_SLOT + len(RFM) - 1
TIER_SLOT = RFM_SLOT + len(RFM)
BUYERS_30D_SLOT = TIER_SLOT + len(TIERS)  # ≥ 1 paid order in days d-29..d
REPEAT_BUYERS_30D_SLOT = BUYERS_30D_SLOT + 1  # ≥ 2 there
WIDTH = REPEAT_BUYERS_30D_SLOT + 1
REPURCHASE_DAYS = 30
NAME, REVENUE_BY_TIER = "segments", "revenue_by_tier"
MONEY_TYPES = ("order_paid", "order_refunded")

Slots = tuple[int, ...]


class History:
    """What a user's classification on any day from the compaction horizon on is
    computed from: first active day, active days, money per day, first cart day."""

    __slots__ = ("first_day", "base_day", "bits", "money", "base", "cart_day")

    def __init__(self, user: UserState) -> None:
        self.first_day = user.first_day
        self.base_day = user.base_day
        self.bits = user.active_bits
        self.money: list[list[int]] = user.money or []  # [day, paid orders, net cents]
        self.base: list[Any] = user.money_base  # [paid, net cents, last paid day] before them
        self.cart_day = user.cart_day

    def copy(self) -> History:
        other = History.__new__(History)
        for name in History.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def last_active(self, day: int) -> int | None:
        """The last active day ≤ `day`."""
        base = self.base_day
        if base is None or day < base:
            return None
        below = self.bits & ((2 << (day - base)) - 1)
        return base + below.bit_length() - 1 if below else None

    def classes(self, day: int, rules: SegmentRules) -> tuple[Slots, int | None]:
        """The user's slots on `day` (empty before the first activity), and the LTV tier."""
        first = self.first_day
        if first is None or day < first:
            return (), None
        paid, cents, last_paid, window = money_as_of(self.money, self.base, day)
        idle = day - self.last_active(day)  # type: ignore[operator]  # first day is active
        growth, high = rules.ltv_tier_cents
        tier = None if not paid else 0 if cents < growth else 1 if cents < high else 2
        if idle >= rules.churned_days:
            stage = CHURNED
        elif idle >= rules.churn_warning_days:
            stage = CHURN_WARNING
        elif tier == 2:
            stage = HIGH_VALUE
        elif paid:
            stage = PAYING
        elif day - first < rules.new_days:
            stage = SILENT_NEW if idle >= rules.silent_days else NEW
        elif self.cart_day is not None and self.cart_day <= day:
            stage = POTENTIAL_PAYING
        else:
            stage = ACTIVE
        if tier is None:
            slots: Slots = (stage, NO_PURCHASE_SLOT)
        else:
            segment = (
                (day - last_paid > rules.rfm_recency_days) << 2  # type: ignore[operator]  # paid
                | (paid < rules.rfm_frequency) << 1
                | (cents < rules.rfm_monetary_cents)
            )
            slots = (stage, RFM_SLOT + segment, TIER_SLOT + tier)
        if window:
            slots += (BUYERS_30D_SLOT, REPEAT_BUYERS_30D_SLOT) if window > 1 else (BUYERS_30D_SLOT,)
        return slots, tier

    def change_days(self, start: int, rules: SegmentRules) -> list[int]:
        """Days ≥ `start` on which the class may change (a superset, ascending)."""
        first = self.first_day
        if first is None:
            return []
        days = {start, first, first + rules.new_days}
        # Inactivity thresholds are reached only inside a gap between active days.
        base: int = self.base_day  # type: ignore[assignment]  # set with the first day
        lo = max(start - rules.churned_days, base)
        bits = self.bits >> (lo - base)
        idle = (rules.silent_days, rules.churn_warning_days, rules.churned_days)
        before: int | None = None
        while bits:
            low = bits & -bits
            a = lo + low.bit_length() - 1
            if before is not None and a - before > idle[0]:
                days.update(before + k for k in idle if before + k < a)
            days.add(a)
            before = a
            bits ^= low
        if before is not None:
            days.update(before + k for k in idle)
        if self.cart_day is not None:
            days.add(self.cart_day)
        leaves_recency = rules.rfm_recency_days + 1
        for d, p, _ in self.money:
            days.add(d)
            if p:
                days.update((d + REPURCHASE_DAYS, d + leaves_recency))
        if self.base[2] is not None:
            days.add(self.base[2] + leaves_recency)
        return sorted(d for d in days if d >= start)


def money_as_of(
    money: list[list[int]], base: list[Any], day: int
) -> tuple[int, int, int | None, int]:
    """Paid orders, net cents, the last paid day, and paid orders in the last
    `REPURCHASE_DAYS` days, counting the days up to `day` (`money` per day over `base`)."""
    paid, cents, last_paid = base
    window = 0
    for d, p, c in money:
        if d > day:
            break
        paid += p
        cents += c
        if p:
            last_paid = d
            if d > day - REPURCHASE_DAYS:
                window += p
    return paid, cents, last_paid, window


def schedule_deltas(
    history: History, start: int, rules: SegmentRules, sign: int, deltas: dict[tuple[int, int], int]
) -> None:
    """Add `sign` × the user's difference row on days ≥ `start` to `deltas` ((day, slot) -> n)."""
    prev, _ = history.classes(start - 1, rules)
    for day in history.change_days(start, rules):
        now, _ = history.classes(day, rules)
        if now != prev:
            for slot in prev:
                deltas[(day, slot)] = deltas.get((day, slot), 0) - sign
            for slot in now:
                deltas[(day, slot)] = deltas.get((day, slot), 0) + sign
            prev = now


def revenue_deltas(
    history: History, start: int, rules: SegmentRules, sign: int, deltas: dict[tuple[int, int], int]
) -> None:
    """Add `sign` × the user's net revenue per day ≥ `start`, by their tier that day."""
    for day, _, cents in history.money:
        if day >= start and cents:
            _, tier = history.classes(day, rules)
            if tier is not None:
                deltas[(day, tier)] = deltas.get((day, tier), 0) + sign * cents


class Segments:
    name = NAME

    def wants(self, event_type: str, ctx: Context) -> bool:
        return event_type not in ctx.inactive_types or event_type in (*MONEY_TYPES, "add_to_cart")

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        kind = event.type
        activity = kind not in ctx.inactive_types
        new_day = activity and not is_active(user, day)
        money = kind in MONEY_TYPES
        cart = kind == "add_to_cart" and (user.cart_day is None or day < user.cart_day)
        if not (new_day or money or cart):
            return  # on an active day, nothing the classes depend on changes
        rules = ctx.config.segments
        ctx.reclassified = True  # the fold publishes a change of today's class (SegmentChanges)
        contributed = user.money is not None  # None: a record from before segments
        old = History(user)
        new = old.copy()
        if new_day:
            new.first_day = day if new.first_day is None else min(new.first_day, day)
            if new.base_day is None:
                new.base_day = day
            elif day < new.base_day:
                new.bits <<= new.base_day - day
                new.base_day = day
            new.bits |= 1 << (day - new.base_day)
        if cart:
            new.cart_day = user.cart_day = day
        if money:
            paid = kind == "order_paid"
            cents = event.amount_cents if paid else -event.amount_cents
            new.money = _add_money(old.money, day, int(paid), cents)
        deltas: dict[tuple[int, int], int] = {}
        schedule_deltas(new, day, rules, 1, deltas)
        if contributed:
            schedule_deltas(old, day, rules, -1, deltas)
        else:  # nothing of this user is counted yet: count them from this day on
            prev, _ = new.classes(day - 1, rules)
            for slot in prev:
                deltas[(day, slot)] = deltas.get((day, slot), 0) + 1
        for (d, slot), n in deltas.items():
            if n:
                effects.append((TABLE_EFFECT, d, NAME, slot, n))
        if money or new_day:
            revenue: dict[tuple[int, int], int] = {}
            revenue_deltas(new, day, rules, 1, revenue)
            if contributed:
                revenue_deltas(old, day, rules, -1, revenue)
            for (d, tier), n in revenue.items():
                if n:
                    effects.append((TABLE_EFFECT, d, REVENUE_BY_TIER, tier, n))
        if money:  # after both schedules: compaction changes the shared base
            user.money = _compact(new.money, user.money_base, ctx)
        elif not contributed:
            user.money = []

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        for out, counts in zip(
            report["days"].values(), running_counts(partials, days), strict=True
        ):
            out.update(
                repurchase_rate_30d=ratio(counts[REPEAT_BUYERS_30D_SLOT], counts[BUYERS_30D_SLOT]),
                ltv_tiers=dict(zip(TIERS, counts[TIER_SLOT:BUYERS_30D_SLOT], strict=True)),
                rfm=dict(zip(RFM, counts[RFM_SLOT:TIER_SLOT], strict=True)),
                lifecycle=dict(zip(LIFECYCLE, counts[:RFM_SLOT], strict=True)),
            )
        revenue = partials.table(REVENUE_BY_TIER, len(TIERS))
        report.setdefault("cohorts", {})[REVENUE_BY_TIER] = {
            DayClock.iso(d): {
                tier: from_cents(cents)
                for tier, cents in zip(TIERS, revenue.get(d, (0, 0, 0)), strict=True)
            }
            for d in days
        }


def running_counts(partials: Partials, days: range) -> Iterator[list[int]]:
    """Per day of `days`, the "segments" slots: users in each class as of its end."""
    rows = iter(partials.table(NAME, WIDTH).items())
    running = [0] * WIDTH
    pending = next(rows, None)
    for d in days:
        while pending is not None and pending[0] <= d:
            running = [a + b for a, b in zip(running, pending[1], strict=True)]
            pending = next(rows, None)
        yield running


def user_segments(user: UserState, day: int, rules: SegmentRules) -> dict[str, str | None]:
    """A user's `lifecycle`, `rfm_segment` and `ltv_tier` as of the end of `day`
    (None before their first activity)."""
    slots, tier = History(user).classes(day, rules)
    if not slots:
        return {"lifecycle": None, "rfm_segment": None, "ltv_tier": None}
    return {
        "lifecycle": LIFECYCLE[slots[0]],
        "rfm_segment": RFM[slots[1] - RFM_SLOT],
        "ltv_tier": None if tier is None else TIERS[tier],
    }


class SegmentChanges:
    """Publishes users' lifecycle stage and RFM segment for the partition's current day
    (the day of its stream time) on `opspulse.segments` (METRICS.md, "Segment
    changes"): after an event that changed what classes depend on, and from a timer
    at the user's next change point when time alone changes them. The last published
    pair is in the user's record, committed with the records in the same
    transaction: a restart neither repeats nor skips a change."""

    KIND = "segments"  # timer kind and derived record kind

    def __init__(self, fold: Fold) -> None:
        self.fold = fold
        self.rules = fold.config.segments
        self.clock = fold.ctx.clock
        fold.timer_handlers[self.KIND] = self.on_timer

    def after_event(self, user_id: str, user: UserState, ts: int) -> None:
        today = self.fold.stream_day()
        if today is not None:
            self._publish(user_id, user, today, ts)

    def on_timer(self, fold: Fold, due_ms: int, user_id: str) -> None:
        user = fold.users.get(user_id)
        today = fold.stream_day()
        if user is not None and today is not None:
            self._publish(user_id, user, today, due_ms + 1)

    def _publish(self, user_id: str, user: UserState, today: int, ts: int) -> None:
        history = History(user)
        slots, _ = history.classes(today, self.rules)
        if not slots:
            return
        now = [slots[0], slots[1] - RFM_SLOT]
        was = user.published
        for i, (kind, names) in enumerate((("lifecycle", LIFECYCLE), ("rfm", RFM))):
            if was[i] != now[i]:
                before = None if was[i] is None else names[was[i]]  # type: ignore[index]
                self.fold.outbox.emit(
                    self.KIND, user_id,
                    {"user_id": user_id, "ts": ts, "kind": kind, "from": before, "to": names[now[i]]},
                )  # fmt: skip
        user.published = now  # type: ignore[assignment]
        self.fold.changed.add(user_id)
        # The next day on which the pair changes with time alone, if no event comes first.
        for day in history.change_days(today + 1, self.rules):
            later, _ = history.classes(day, self.rules)
            if [later[0], later[1] - RFM_SLOT] != now:
                self.fold.timers.schedule(self.clock.day_start_ms(day) - 1, self.KIND, user_id)
                return
        self.fold.timers.cancel(self.KIND, user_id)


def _add_money(money: list[list[int]], day: int, paid: int, cents: int) -> list[list[int]]:
    """A new money list with one more event (the old one is the schedule without it)."""
    out = [list(entry) for entry in money]
    for entry in out:
        if entry[0] == day:
            entry[1] += paid
            entry[2] += cents
            return out
    out.append([day, paid, cents])
    out.sort()
    return out


def _compact(money: list[list[int]], base: list[Any], ctx: Context) -> list[list[int]]:
    """Sum the days no late event can reach (minus the 30-day window) into `base`."""
    if not money or not ctx.horizon_ms:
        return money
    cut = ctx.clock.day(ctx.horizon_ms) - REPURCHASE_DAYS - 1
    keep = 0
    while keep < len(money) and money[keep][0] < cut:
        d, p, c = money[keep]
        base[0] += p
        base[1] += c
        if p:
            base[2] = d if base[2] is None else max(base[2], d)
        keep += 1
    return money[keep:]
