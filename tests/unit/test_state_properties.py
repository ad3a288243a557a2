"""Property tests: the incremental fold equals the naive reference, whatever the
partitioning and whatever the arrival order within the lateness bound."""

import random
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import comparable, naive_report, stream_time_free
from strategies import TIMEZONES, event_sets

from state.config import DAY_MS, Config, FunnelSpec
from state.fold import Fold
from state.partials import Partials
from state.report import build_report


def fold_report(config, batches):
    """Each batch is (source, events); one Fold for all (one partition)."""
    fold = Fold(config, sources={source for source, _ in batches})
    for source, events in batches:
        fold.apply_batch([(e.user_id, e) for e in events], source)
    return fold, build_report(fold.partials, config)


def config_for(tz, lateness=2 * DAY_MS):
    return Config(timezone=tz, allowed_lateness_ms=lateness,
                  funnels=(FunnelSpec("purchase", ("page_view", "add_to_cart", "checkout", "order_paid"), DAY_MS),
                           FunnelSpec("quick", ("login", "add_to_cart"), 3_600_000)))  # fmt: skip


NAIVE_FUNNELS = [
    ("purchase", ["page_view", "add_to_cart", "checkout", "order_paid"], DAY_MS),
    ("quick", ["login", "add_to_cart"], 3_600_000),
]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(event_sets(), st.sampled_from(TIMEZONES))
def test_fold_in_time_order_equals_naive_reference(events, tz):
    ordered = sorted(events, key=lambda e: e.ts)
    fold, report = fold_report(config_for(tz), [("p0", ordered)])
    assert comparable(report) == naive_report(events, timezone=tz, funnels=NAIVE_FUNNELS)
    assert report["events"]["late"] == 0
    assert report["events"]["valid"] == len({e.event_id for e in events})
    assert report["events"]["duplicates"] == len(events) - len({e.event_id for e in events})


@SETTINGS
@given(event_sets(), st.sampled_from(TIMEZONES), st.randoms(use_true_random=False))
def test_any_arrival_order_within_the_bound_gives_the_same_report(events, tz, rnd):
    # A lateness bound wider than the data: every permutation is "in time".
    shuffled = list(events)
    rnd.shuffle(shuffled)
    config = config_for(tz, lateness=60 * DAY_MS)
    _, in_order = fold_report(config, [("p0", sorted(events, key=lambda e: e.ts))])
    _, arrived = fold_report(config, [("p0", shuffled)])
    assert arrived["events"]["late"] == 0
    assert comparable(arrived) == comparable(in_order)
    assert comparable(arrived) == naive_report(events, timezone=tz, funnels=NAIVE_FUNNELS)


@SETTINGS
@given(event_sets(max_days=120), st.integers(0, 2**32 - 1))
def test_bounded_disorder_under_default_lateness_is_never_late_and_exact(events, seed):
    # Arrival = event time plus a delay below the bound: compaction must not lose anything.
    rnd = random.Random(seed)
    arrivals = sorted(events, key=lambda e: e.ts + rnd.randrange(0, 2 * DAY_MS - 1))
    config = config_for("UTC")
    _, report = fold_report(config, [("p0", arrivals)])
    assert report["events"]["late"] == 0
    assert comparable(report) == naive_report(events, timezone="UTC", funnels=NAIVE_FUNNELS)


@SETTINGS
@given(event_sets(), st.integers(1, 4), st.sampled_from(TIMEZONES))
def test_partitions_by_user_merge_to_the_single_partition_report(events, n_partitions, tz):
    config = config_for(tz)
    ordered = sorted(events, key=lambda e: e.ts)
    _, whole = fold_report(config, [("p0", ordered)])
    merged = Partials(funnel_steps=(4, 2))
    for p in range(n_partitions):
        mine = [e for e in ordered if zlib.crc32(e.user_id.encode()) % n_partitions == p]
        fold, _ = fold_report(config, [(f"clicks-{p}", mine)])
        merged.merge(fold.partials)
    assert stream_time_free(build_report(merged, config)) == stream_time_free(whole)


@SETTINGS
@given(event_sets(), st.randoms(use_true_random=False))
def test_clicks_and_orders_sources_keep_separate_watermarks(events, rnd):
    # Orders arrive long after clicks (a backlog): they must not be late, and nothing changes.
    clicks = sorted((e for e in events if not e.type.startswith("order")), key=lambda e: e.ts)
    orders = sorted((e for e in events if e.type.startswith("order")), key=lambda e: e.ts)
    config = config_for("UTC")
    _, report = fold_report(config, [("clicks-0", clicks), ("orders-0", orders)])
    assert report["events"]["late"] == 0
    assert comparable(report) == naive_report(events, funnels=NAIVE_FUNNELS)
