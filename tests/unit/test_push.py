"""Push campaigns against a naive reference written from METRICS.md ("Push") alone:
per campaign sent, opened, open rate and by local hour of the first send — in any
arrival order inside the lateness bound, split across partitions, in non-UTC
timezones."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive_actions import naive_push
from sharding import merged_shards
from strategies import T0, TIMEZONES

from state.config import DAY_MS, Config
from state.fold import Fold
from state.report import build_report
from streams.events import Event


@st.composite
def push_events(draw):
    events = []
    for i in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["push_sent", "push_open", "push_open", "page_view"]))
        ts = T0 + draw(st.integers(0, 4 * 24)) * 3_600_000 + draw(st.sampled_from([0, 1, 59_999]))
        events.append(Event(f"e{i}", draw(st.sampled_from(["u0", "u1", "u2"])), ts, kind,
                            campaign=draw(st.sampled_from(["morning", "evening", None]))))  # fmt: skip
    return events + events[: draw(st.integers(0, 3))]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=push_events(), tz=st.sampled_from(TIMEZONES), seed=st.integers(0, 10**6))
def test_push_equals_the_naive_reference(events, tz, seed):
    config = Config(timezone=tz)
    rng = random.Random(seed)
    arrived = sorted(events, key=lambda e: e.ts + rng.randrange(DAY_MS))
    merged = merged_shards(config, arrived)
    for campaign in build_report(merged, config)["push"].values():
        assert sorted(campaign) == ["by_hour", "open_rate", "opened", "sent"]
    assert build_report(merged, config)["push"] == naive_push(events, tz)


def test_an_open_at_the_instant_of_the_first_send_counts_and_one_before_does_not():
    config = Config()
    fold = Fold(config)
    fold.apply_batch(
        [("a", Event("o1", "a", T0 + 5, "push_open", campaign="c")),
         ("a", Event("s1", "a", T0 + 5, "push_sent", campaign="c")),
         ("b", Event("o2", "b", T0 + 4, "push_open", campaign="c")),
         ("b", Event("s2", "b", T0 + 5, "push_sent", campaign="c"))],
        "p",
    )  # fmt: skip
    push = build_report(fold.partials, config)["push"]["c"]
    assert (push["sent"], push["opened"], push["by_hour"]["0"]) == (2, 1, [2, 1])
