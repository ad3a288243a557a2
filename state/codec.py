"""Compact, pickle-free, versioned encodings of the stored records.

User records are positional JSON arrays (orjson) whose first element is the
version; the day bit sets are hex strings since they may exceed 64 bits; the
timestamps of recent event ids and funnel steps are deltas from one base, and
a step's local day is recomputed on decode instead of stored. Funnel data is
keyed by funnel name (since v3 / day records v2), so adding, removing or
reordering funnels needs no rewrite. Older versions stay decodable: v2 user
records and unversioned (v1) day records hold funnels by position, in the order
of the funnel names the meta record saved (or the current config's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from state.breakdowns import decode_ledger, encode_ledger
from state.clock import DayClock
from state.user import UserState
from state.user_table import Activity

USER_VERSION = 6  # v4: + breakdown ledger; v5: + activation ts, paid-order instants;
# v6: + first cart day, money per day (state/kpis/segments.py); later fields are appended
# to v6 (absent in older v6 records): published, push, experiments, carts, alert steps,
# churn signals and pending predictions
DAY_VERSION = 3  # v3: + breakdowns


def _base_ts(user: UserState) -> int:
    stamps = list(user.recent_ids.values())
    stamps += [steps[0][0] for steps in user.funnel_steps if steps]
    return min(stamps, default=0)


def encode_user(user: UserState, funnel_names: Sequence[str]) -> bytes:
    base = _base_ts(user)
    return orjson.dumps(
        [
            USER_VERSION,
            user.first_ts,
            user.first_event_id,
            user.first_day,
            user.last_ts,
            user.channel,
            user.device,
            user.region,
            user.base_day,
            format(user.active_bits, "x"),
            format(user.paid_bits, "x"),
            user.orders_paid,
            user.revenue_cents,
            user.first_order_ts,
            user.last_order_ts,
            base,
            [item for event_id, ts in user.recent_ids.items() for item in (event_id, ts - base)],
            {
                name: [item for ts, step, _ in steps for item in (ts - base, step)]
                for name, steps in zip(funnel_names, user.funnel_steps, strict=True)
            }
            if user.funnel_steps  # empty until the user's first step event
            else {},
            {
                name: list(levels.items())
                for name, levels in zip(funnel_names, user.funnel_levels, strict=True)
            }
            if user.funnel_levels
            else {},
            encode_ledger(user.ledger, funnel_names),
            user.activation_ts,
            user.order_ts,
            user.cart_day,
            user.money,
            user.money_base,
            user.published,
            user.push,
            user.experiments,
            user.goal_ts,
            user.carts,
            user.alert_steps,
            [user.cart_days, user.refund_days, user.churn_pending, user.churn_flagged],
        ]
    )


def decode_user(
    data: bytes,
    clock: DayClock,
    funnel_names: Sequence[str],
    written_funnels: Sequence[str] | None = None,
) -> UserState:
    """A stored user record, its funnel data mapped to the current `funnel_names`;
    `written_funnels`: the funnel names, in order, of the config that wrote a v2 record."""
    row: list[Any] = orjson.loads(data)
    version = row[0]
    ledger = None  # unknown before v4
    # Before v5: the earliest paid order (right for the default activation events) and the
    # last paid order (the next repurchase gap starts there).
    activation_ts, order_ts = row[13], [row[14]] if row[14] is not None else []
    # Before v6: no cart day, money per day unknown (the user is counted in the
    # classifications from their next event on), totals as the base.
    cart_day, money = None, None
    published: list[int | None] = [None, None]
    push: dict[str, list[int | None]] = {}
    experiments: dict[str, list[Any]] = {}
    goal_ts: list[int] = []
    carts: list[list[Any]] = []
    alert_steps: list[list[Any]] = []
    churn: list[Any] = [[], [], [], False]
    money_base = [row[11], row[12], None if row[14] is None else clock.day(row[14])]
    if version in (3, 4, 5, USER_VERSION):
        steps_by_name, levels_by_name = row[17], row[18]
        if version >= 4:
            ledger = decode_ledger(row[19], funnel_names)
        if version >= 5:
            activation_ts, order_ts = row[20], row[21]
        if version >= 6:
            cart_day, money, money_base = row[22], row[23], row[24]
            if len(row) > 25:
                published = row[25]
            if len(row) > 26:
                push = row[26]
            if len(row) > 27:
                experiments, goal_ts = row[27], row[28]
            if len(row) > 29:
                carts = row[29]
            if len(row) > 30:
                alert_steps = row[30]
            if len(row) > 31:
                churn = row[31]
    elif version == 2:
        names = _positional_names(len(row[17]), funnel_names, written_funnels)
        steps_by_name = dict(zip(names, row[17], strict=True))
        levels_by_name = dict(zip(names, row[18], strict=True))
    else:
        raise ValueError(f"user record version {version} is not supported (2..{USER_VERSION})")
    base, ids = row[15], row[16]
    has_funnels = bool(steps_by_name)
    return UserState(
        first_ts=row[1],
        first_event_id=row[2],
        first_day=row[3],
        last_ts=row[4],
        channel=row[5],
        device=row[6],
        region=row[7],
        base_day=row[8],
        active_bits=int(row[9], 16),
        paid_bits=int(row[10], 16),
        orders_paid=row[11],
        revenue_cents=row[12],
        first_order_ts=row[13],
        last_order_ts=row[14],
        recent_ids={ids[i]: base + ids[i + 1] for i in range(0, len(ids), 2)},
        funnel_steps=[
            [(base + f[i], f[i + 1], clock.day(base + f[i])) for i in range(0, len(f), 2)]
            for f in (steps_by_name.get(name, []) for name in funnel_names)
        ]
        if has_funnels
        else [],
        funnel_levels=[
            {day: level for day, level in levels_by_name.get(name, [])} for name in funnel_names
        ]
        if has_funnels
        else [],
        ledger=ledger,
        activation_ts=activation_ts,
        order_ts=order_ts,
        cart_day=cart_day,
        money=money,
        money_base=money_base,
        published=published,
        push=push,
        experiments=experiments,
        goal_ts=goal_ts,
        carts=carts,
        alert_steps=alert_steps,
        cart_days=churn[0],
        refund_days=churn[1],
        churn_pending=churn[2],
        churn_flagged=churn[3],
    )


def peek_activity(data: bytes) -> Activity:
    """A stored user's active days and pending churn predictions, without decoding the
    rest (rebuilding the churn indexes over a store of millions of users)."""
    row: list[Any] = orjson.loads(data)
    pending = row[31][2] if row[0] == USER_VERSION and len(row) > 31 else []
    return Activity(row[8], int(row[9], 16), pending)


def encode_day(record: dict[str, Any], funnel_names: Sequence[str]) -> dict[str, Any]:
    """A `Partials.day_record` as stored (v3): funnel rows by name, breakdown values
    as {dimension: {value: their fields, retention and funnel rows}}."""
    breakdowns: dict[str, dict[str, Any]] = {}
    for (dim, value), sub in record.get("breakdowns", {}).items():
        breakdowns.setdefault(dim, {})[value] = {
            "fields": sub["fields"],
            "retention": sub["retention"],
            "funnels": _funnels_by_name(sub["funnels"], funnel_names),
        }
    return {
        "v": DAY_VERSION,
        "day": record["day"],
        "fields": record["fields"],
        "retention": record["retention"],
        "funnels": _funnels_by_name(record["funnels"], funnel_names),
        "spend": record.get("spend", {}),
        "tables": record.get("tables", {}),
        "breakdowns": breakdowns,
    }


def _funnels_by_name(rows: Sequence[Any], funnel_names: Sequence[str]) -> dict[str, Any]:
    return {name: row for name, row in zip(funnel_names, rows, strict=True) if row is not None}


def decode_day(
    stored: dict[str, Any],
    funnel_names: Sequence[str],
    written_funnels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A stored day record (v1 or v2) as a `Partials.day_record` of the current funnels."""
    version = stored.get("v", 1)
    if version in (2, DAY_VERSION):
        by_name = stored["funnels"]
    elif version == 1:
        names = _positional_names(len(stored["funnels"]), funnel_names, written_funnels)
        by_name = dict(zip(names, stored["funnels"], strict=True))
    else:
        raise ValueError(f"day record version {version} is not supported (1..{DAY_VERSION})")
    day = stored["day"]
    return {
        "day": day,
        "fields": stored["fields"],
        "retention": stored["retention"],
        "funnels": [by_name.get(name) for name in funnel_names],
        "spend": stored.get("spend", {}),
        "tables": stored.get("tables", {}),
        "breakdowns": {
            (dim, value): {
                "day": day,
                "fields": sub["fields"],
                "retention": sub["retention"],
                "funnels": [sub["funnels"].get(name) for name in funnel_names],
            }
            for dim, values in stored.get("breakdowns", {}).items()
            for value, sub in values.items()
        },
    }


def _positional_names(
    n: int, funnel_names: Sequence[str], written_funnels: Sequence[str] | None
) -> Sequence[str]:
    names = written_funnels if written_funnels is not None else funnel_names
    if len(names) != n:
        raise ValueError(
            f"a record written before funnels were stored by name holds {n} funnels, "
            f"but {len(names)} are known ({', '.join(names)}): rebuild the state"
        )
    return names
