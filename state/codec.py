"""Compact, pickle-free encoding of a user record.

User records are positional JSON arrays (orjson); the day bit sets are hex
strings since they may exceed 64 bits; the timestamps of recent event ids and
funnel steps are deltas from one base, and a step's local day is recomputed
on decode instead of stored.
"""

from __future__ import annotations

from typing import Any

import orjson

from state.clock import DayClock
from state.user import UserState

USER_VERSION = 2


def _base_ts(user: UserState) -> int:
    stamps = list(user.recent_ids.values())
    stamps += [steps[0][0] for steps in user.funnel_steps if steps]
    return min(stamps, default=0)


def encode_user(user: UserState) -> bytes:
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
            [
                [item for ts, step, _ in steps for item in (ts - base, step)]
                for steps in user.funnel_steps
            ],
            [list(levels.items()) for levels in user.funnel_levels],
        ]
    )


def decode_user(data: bytes, clock: DayClock) -> UserState:
    row: list[Any] = orjson.loads(data)
    if row[0] != USER_VERSION:
        raise ValueError(f"user record version {row[0]} is not supported (expected {USER_VERSION})")
    base, ids = row[15], row[16]
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
            for f in row[17]
        ],
        funnel_levels=[{day: level for day, level in levels} for levels in row[18]],
    )
