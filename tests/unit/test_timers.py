"""Event-time timers and the outbox: checked against a naive model (a dict of due
times, scanned in full) under any sequence of operations."""

from hypothesis import given, settings
from hypothesis import strategies as st

from state.config import Config
from state.fold import Fold
from state.outbox import Outbox
from state.timers import Timers
from streams.events import Event

KINDS = ["cart", "day_end"]
KEYS = ["u1", "u2", "u3"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), st.integers(0, 50), st.sampled_from(KINDS), st.sampled_from(KEYS)),
        st.tuples(st.just("cancel"), st.sampled_from(KINDS), st.sampled_from(KEYS)),
        st.tuples(st.just("fire"), st.integers(0, 60)),
        st.tuples(st.just("commit_and_recover")),
    ),
    max_size=60,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(operations)
def test_timers_fire_as_a_naive_scan_would_across_recoveries(ops):
    timers, naive = Timers(), {}
    committed: dict = {}
    for op in ops:
        if op[0] == "schedule":
            _, due, kind, key = op
            timers.schedule(due, kind, key)
            naive[(kind, key)] = due
        elif op[0] == "cancel":
            timers.cancel(op[1], op[2])
            naive.pop((op[1], op[2]), None)
        elif op[0] == "fire":
            fired = list(timers.fire(op[1]))
            expected = sorted((due, kind, key) for (kind, key), due in naive.items() if due < op[1])
            assert fired == expected
            for _, kind, key in fired:
                del naive[(kind, key)]
        else:  # what a commit stores, then a new owner loads
            for timer, due in timers.take_changes().items():
                if due is None:
                    committed.pop(timer, None)
                else:
                    committed[timer] = due
            timers = Timers()
            for (kind, key), due in committed.items():
                timers.restore(kind, key, due)
            assert timers.take_changes() == {}  # restoring is not a change
        assert len(timers) == len(naive)
        assert all(timers.due_of(k, key) == due for (k, key), due in naive.items())


def test_a_timer_fires_once_and_only_after_the_watermark_passes_it():
    timers = Timers()
    timers.schedule(100, "cart", "u1")
    assert list(timers.fire(100)) == []  # not past yet
    assert list(timers.fire(101)) == [(100, "cart", "u1")]
    assert list(timers.fire(10_000)) == []


def test_rescheduling_moves_the_timer_instead_of_adding_one():
    timers = Timers()
    timers.schedule(100, "cart", "u1")
    timers.schedule(300, "cart", "u1")
    assert list(timers.fire(200)) == []
    assert list(timers.fire(301)) == [(300, "cart", "u1")]


def test_stale_heap_entries_stay_bounded_when_a_timer_moves_often():
    timers = Timers()
    for due in range(100_000):
        timers.schedule(due, "cart", "bot")
    assert len(timers._heap) <= 2 * len(timers) + 65


def page_view(i, user, ts):
    return Event(f"e{i}", user, ts, "page_view")


def test_fold_fires_timers_when_stream_time_passes_them_before_applying_the_event():
    fold = Fold(Config(), sources=["clicks-0", "orders-0"])
    seen: list = []

    def on_cart(f, due_ms, key):
        # The handler sees the state before the event that moved time past `due_ms`.
        seen.append((due_ms, key, f.partials.counters["valid"]))
        f.outbox.emit("triggers", key, {"kind": "cart_abandoned", "user_id": key, "ts": due_ms})
        if key == "u1":
            f.timers.schedule(due_ms + 1, "cart", "u1-again")  # already due: same pass

    fold.timer_handlers["cart"] = on_cart
    fold.timers.schedule(1_000, "cart", "u1")
    fold.apply_batch([("u1", page_view(1, "u1", 500))], "clicks-0")
    assert seen == []
    fold.apply_batch([("u1", page_view(2, "u1", 900))], "orders-0")  # older source: no move
    fold.apply_batch([("u1", page_view(3, "u1", 5_000))], "clicks-0")
    assert seen == [(1_000, "u1", 2), (1_001, "u1-again", 2)]
    records = [r for r in fold.outbox.drain() if r.kind == "triggers"]
    assert [r.key for r in records] == ["u1", "u1-again"]
    assert fold.outbox.drain() == []


def test_outbox_rejects_unknown_kinds():
    import pytest

    with pytest.raises(ValueError, match="unknown derived record kind"):
        Outbox().emit("segmentz", "u1", {})
