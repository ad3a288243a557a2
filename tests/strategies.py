"""Hypothesis strategies shared by the property and oracle tests."""

from hypothesis import strategies as st

from state.config import DAY_MS
from streams.events import Event

T0 = 20758 * DAY_MS  # 2026-11-01T00:00Z
TYPES = [
    "page_view",
    "add_to_cart",
    "checkout",
    "order_paid",
    "order_refunded",
    "push_sent",
    "login",
]
TIMEZONES = ["UTC", "Asia/Shanghai", "America/New_York"]


@st.composite
def event_sets(draw, max_days=40):
    n = draw(st.integers(1, 40))
    users = [f"u{i}" for i in range(draw(st.integers(1, 5)))]
    events = []
    for i in range(n):
        # Coarse times make ties and window edges likely; a few events far apart test WAU/MAU/retention.
        day = draw(st.integers(0, max_days))
        offset = draw(st.sampled_from([0, 1, 1000, 3_600_000, DAY_MS - 1, DAY_MS, DAY_MS + 1]))
        offset += draw(st.integers(0, 3)) * 60_000
        kind = draw(st.sampled_from(TYPES))
        amount = draw(st.integers(0, 100_000)) if kind.startswith("order") else 0
        events.append(
            Event(f"e{i}", draw(st.sampled_from(users)), T0 + day * DAY_MS // 3 + offset, kind,
                  channel=draw(st.sampled_from(["ads", "organic", None])),
                  device=draw(st.sampled_from(["ios", "android", None])),
                  order_id="o" if kind.startswith("order") else None, amount_cents=amount)
        )  # fmt: skip
    # Redeliveries: identical copies.
    events += [events[j] for j in draw(st.lists(st.integers(0, n - 1), max_size=5))]
    return events
