"""A naive reading of METRICS.md, Churn, for the label machinery: from the raw events
alone, which predictions are made on which day and what their labels are.

Written from the definitions, not from state/: per partition (Kafka's default
partitioner on the user id), a day is processed once the partition's stream time
(the largest `ts` of its events; input in `ts` order is always read to its end)
minus the allowed lateness is past its end; on a processed day d with
d % every == 0, each user active within (d - horizon, d] is predicted; the
prediction made on day t is labelled on day t + horizon (if processed): 1 when
the user has no activity on days t+1 .. t+horizon.
"""

from __future__ import annotations

from collections import defaultdict

from state.partitioner import UserPartitions
from tests.naive import local_day

DAY_MS = 86_400_000


def naive_churn_counts(events, config):
    """{"predictions": {day: n}, "labelled": {day: n}, "positives": {day: n}} for
    `events`: (topic, dict) pairs of valid events in any order."""
    spec, tz = config.churn, config.timezone
    partition_of = UserPartitions(config.topics.partitions)
    active = defaultdict(set)  # user -> active days
    latest = defaultdict(dict)  # partition -> topic -> largest ts
    users_of = defaultdict(set)
    for topic, e in events:
        p = partition_of(e["user_id"])
        latest[p][topic] = max(latest[p].get(topic, e["ts"]), e["ts"])
        if e["type"] not in config.inactive_types:
            active[e["user_id"]].add(local_day(e["ts"], tz))
            users_of[p].add(e["user_id"])
    predictions, labelled, positives = defaultdict(int), defaultdict(int), defaultdict(int)
    for p, users in users_of.items():
        final = max(latest[p].values()) - config.allowed_lateness_ms
        first = min(min(active[u]) for u in users)
        last = first
        while (last + 1) * DAY_MS <= final:  # UTC: a day ends at (day + 1) * DAY_MS
            last += 1
        processed = range(first, last)  # days whose end is before `final`
        for u in users:
            days = active[u]
            for d in processed:
                if d % spec.every_days:
                    continue
                if not any(d - spec.horizon_days < a <= d for a in days):
                    continue
                predictions[d] += 1
                due = d + spec.horizon_days
                if due in processed:
                    labelled[due] += 1
                    if not any(d < a <= due for a in days):
                        positives[due] += 1
    return {"predictions": dict(predictions), "labelled": dict(labelled),
            "positives": dict(positives)}  # fmt: skip
