"""Per-user memory is bounded by count as well as by time: a user over a bound costs
O(1) per event, keeps at most the bound, and the overflow is counted."""

from hypothesis import given, settings
from hypothesis import strategies as st

from state.config import DAY_MS, Config, ConfigError, Limits
from state.fold import Fold
from streams.events import Event

T0 = 20758 * DAY_MS


def fold_with(ids=5, steps=4):
    return Fold(Config(limits=Limits(dedup_ids_per_user=ids, funnel_steps_per_user=steps)))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 40), ids=st.integers(1, 10), steps=st.integers(1, 10))
def test_never_more_than_the_bound_is_kept_and_the_overflow_is_counted(n, ids, steps):
    fold = fold_with(ids, steps)
    kinds = ["page_view", "login"]  # page_view is funnel step 1, login is not a step
    events = [Event(f"e{i}", "bot", T0 + i * 1000, kinds[i % 2]) for i in range(n)]
    fold.apply_batch([("bot", e) for e in events], "clicks")
    user = fold.users["bot"]
    page_views = (n + 1) // 2
    assert len(user.recent_ids) == min(n, ids)
    assert fold.ctx.overflow["dedup_ids"] == max(0, n - ids)
    assert len(user.funnel_steps[0]) == min(page_views, steps)
    assert fold.ctx.overflow["funnel_steps"] == max(0, page_views - steps)
    assert fold.partials.counters["valid"] == n


def test_a_redelivery_within_the_last_n_ids_is_still_dropped():
    fold = fold_with(ids=3)
    events = [Event(f"e{i}", "u1", T0 + i, "login") for i in range(5)]
    fold.apply_batch([("u1", e) for e in events], "clicks")
    fold.apply_batch([("u1", events[4]), ("u1", events[2])], "clicks")  # among the last 3
    assert fold.partials.counters["duplicates"] == 2
    # An id evicted by the bound is forgotten: its redelivery counts again (the
    # documented cost of the bound, visible in the overflow counter).
    fold.apply_batch([("u1", events[0])], "clicks")
    assert fold.partials.counters["duplicates"] == 2 and fold.ctx.overflow["dedup_ids"] >= 2


def test_steps_over_the_bound_never_retract_a_count():
    fold = fold_with(steps=2)
    steps = ["page_view", "add_to_cart", "checkout", "order_paid"]
    events = [Event(f"e{i}", "u1", T0 + i * 60_000, steps[i]) for i in range(4)]
    fold.apply_batch([("u1", e) for e in events], "clicks")
    assert fold.partials.funnels[0][20758] == [1, 1, 0, 0]  # later steps over the bound


def test_limits_are_validated():
    import pytest

    assert (
        Config.from_mapping({"limits": {"dedup_ids_per_user": 10}}).limits.dedup_ids_per_user == 10
    )
    with pytest.raises(ConfigError, match="limits.funnel_steps_per_user"):
        Config.from_mapping({"limits": {"funnel_steps_per_user": 0}})
    with pytest.raises(ConfigError, match="limits.nope: unknown key"):
        Config.from_mapping({"limits": {"nope": 1}})
