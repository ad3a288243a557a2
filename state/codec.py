"""Compact, pickle-free encodings of a user record and of one day's partials.

User records are positional JSON arrays (orjson); the day bit sets are hex
strings since they may exceed 64 bits.
"""

from __future__ import annotations

from typing import Any

import orjson

from state.user import UserState

USER_VERSION = 1


def encode_user(user: UserState) -> bytes:
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
            list(user.recent_ids.items()),
            user.funnel_steps,
            [list(levels.items()) for levels in user.funnel_levels],
        ]
    )


def decode_user(data: bytes) -> UserState:
    row: list[Any] = orjson.loads(data)
    if row[0] != USER_VERSION:
        raise ValueError(f"user record version {row[0]} is not supported (expected {USER_VERSION})")
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
        recent_ids=dict(row[15]),
        funnel_steps=[[tuple(step) for step in steps] for steps in row[16]],  # type: ignore[misc]
        funnel_levels=[{day: level for day, level in levels} for levels in row[17]],
    )
