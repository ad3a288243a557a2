"""Churn prediction (METRICS.md, Churn; state/kpis/churn.py): which predictions are
made and how they are labelled equals a naive count from the raw events; no label
reaches the model before its horizon; features read nothing after their day; the
model is the same whatever the arrival order and across a restore; its checkpoint
is plain JSON and refuses what it does not know; AUC is exact."""

from __future__ import annotations

import math
import random

import numpy as np
import orjson
import pytest
from scipy.stats import mannwhitneyu

import state.kpis.churn as churn_kpi
from agents.replay import replay_files
from agents.statestore import Outgoing, PartitionStore
from state.churn_features import NUMERIC, snapshot
from state.churn_model import BINS, CheckpointError, ChurnModel, rank_auc
from state.config import ChurnSpec, Config
from state.fold import Fold
from state.partitions import PartitionedFold
from state.report import build_report
from streams.events import parse_event
from streams.generator import GeneratorSpec, generate
from tests.naive import local_day
from tests.naive_churn import naive_churn_counts

DAY_MS = 86_400_000
CONFIG = Config.from_mapping(
    {"allowed_lateness": "1d", "topics": {"partitions": 3},
     "churn": {"horizon": "3d", "every": "1d", "min_labels": 50}}
)  # fmt: skip


@pytest.fixture(scope="module")
def traffic():
    """(topic, parsed event) pairs in ts order: 16 generated days."""
    spec = GeneratorSpec(seed=5, days=16, new_users_per_day=60, duplicate_rate=0.01)
    items = []
    for topic, line in generate(spec):
        if topic in ("clicks", "orders"):
            items.append((topic, parse_event(line, max_bytes=1 << 20, now_ms=1 << 62)))
    items.sort(key=lambda item: item[1].ts)
    return items


def fold_in_order(config, items, batch=500):
    parts = PartitionedFold(config, ["clicks", "orders"])
    records = []
    for i in range(0, len(items), batch):
        parts.apply_batch([(t, e.user_id, e) for t, e in items[i : i + batch]])
        records += [r.value for r in parts.drain_outbox() if r.kind == "churn_scores"]
    return parts, records


def test_predictions_and_labels_equal_a_naive_count(traffic):
    parts, _ = fold_in_order(CONFIG, traffic)
    rows = parts.partials.table(churn_kpi.NAME, churn_kpi.WIDTH)
    got = {
        "predictions": {d: r[churn_kpi.PREDICTIONS] for d, r in rows.items() if r[churn_kpi.PREDICTIONS]},
        "labelled": {d: r[churn_kpi.LABELLED] for d, r in rows.items() if r[churn_kpi.LABELLED]},
        "positives": {d: r[churn_kpi.POSITIVES] for d, r in rows.items() if r[churn_kpi.POSITIVES]},
    }  # fmt: skip
    events = [(t, {"user_id": e.user_id, "ts": e.ts, "type": e.type}) for t, e in traffic]
    expected = naive_churn_counts(events, CONFIG)
    assert got == expected
    assert sum(expected["labelled"].values()) > 1000 and sum(expected["positives"].values()) > 100
    report = build_report(parts.partials, CONFIG)["churn"]
    assert report["labelled"] == sum(expected["labelled"].values())
    assert 0.5 < report["auc"] < 1 and report["log_loss"] > 0 and report["base_log_loss"] > 0


def test_the_model_never_learns_a_label_before_its_horizon(traffic, monkeypatch):
    """Each learn happens on the label day d of a prediction made at d - horizon, and
    only once the partition's stream time minus the lateness has passed the end of d."""
    learnt = []
    original = churn_kpi.ChurnLearner._label

    def checked(self, user_id, user, day, effects):
        fold = self.fold
        final = max(fold.watermarks.values()) - fold.config.allowed_lateness_ms
        assert final >= self.clock.day_start_ms(day + 1)
        for entry in user.churn_pending:
            if entry[1] <= day:
                assert entry[1] == entry[0] + CONFIG.churn.horizon_days == day
                learnt.append((user_id, entry[0]))
        original(self, user_id, user, day, effects)

    monkeypatch.setattr(churn_kpi.ChurnLearner, "_label", checked)
    parts, _ = fold_in_order(CONFIG, traffic)
    assert len(learnt) == len(set(learnt)) == sum(f.churn.model.labels for f in parts.folds)
    assert learnt


def test_features_as_of_a_day_ignore_everything_after_it(traffic):
    """A snapshot from the final record equals one written from the events up to the
    day's end (recency, activity counts, orders, unpaid carts, refunds)."""
    parts, _ = fold_in_order(CONFIG, traffic)
    by_user: dict[str, list] = {}
    for _, e in traffic:
        by_user.setdefault(e.user_id, []).append(e)
    rng = random.Random(7)
    checked = 0
    last = local_day(traffic[-1][1].ts, "UTC")
    for user_id in rng.sample(sorted(by_user), 150):
        user = parts.users[user_id]
        for day in rng.choices(range(local_day(by_user[user_id][0].ts, "UTC") - 1, last + 1), k=3):
            got = snapshot(user, day, 3)
            expected = naive_features(by_user[user_id], day)
            if expected is None:
                assert got is None
                continue
            named = dict(zip(NUMERIC, got, strict=False))
            assert {k: named[k] for k in expected} == expected, (user_id, day)
            checked += 1
    assert checked > 100


def naive_features(events, day):
    end = (day + 1) * DAY_MS
    seen = {e.event_id: e for e in events if e.ts < end}.values()
    active = {e.ts // DAY_MS for e in seen if e.type not in ("push_sent", "order_refunded")}
    if not active:
        return None
    paid_days = {e.ts // DAY_MS for e in seen if e.type == "order_paid"}
    cart_days = {e.ts // DAY_MS for e in seen if e.type == "add_to_cart"}
    refunds = {e.ts // DAY_MS for e in seen if e.type == "order_refunded"}
    return {
        "recency_days": float(day - max(active)),
        "age_days": float(day - min(active)),
        "active_7d": float(sum(day - 7 < a <= day for a in active)),
        "active_30d": float(sum(day - 30 < a <= day for a in active)),
        "orders_log": float(math.log1p(sum(e.type == "order_paid" for e in seen))),
        "unpaid_cart_days_7d": float(sum(day - 7 < c <= day and c not in paid_days for c in cart_days)),
        "refund_days_30d": float(sum(day - 30 < r <= day for r in refunds)),
    }  # fmt: skip


def test_arrival_order_within_the_lateness_changes_nothing(traffic):
    """Orders arriving up to 6 hours late and in big per-topic runs: the same model,
    the same quality, the same scores and the same churn-score records."""
    parts, records = fold_in_order(CONFIG, traffic)
    rng = random.Random(3)
    shuffled = sorted(
        traffic,
        key=lambda item: item[1].ts + (rng.randrange(6 * 3_600_000) if item[0] == "orders" else 0),
    )
    other, other_records = fold_in_order(CONFIG, shuffled, batch=2000)
    assert (
        build_report(other.partials, CONFIG)["churn"]
        == build_report(parts.partials, CONFIG)["churn"]
    )
    assert [f.churn.model.to_json() for f in other.folds] == [
        f.churn.model.to_json() for f in parts.folds
    ]
    key = lambda r: (r["user_id"], r["ts"])  # noqa: E731
    assert sorted(other_records, key=key) == sorted(records, key=key)
    assert records
    last = max(local_day(e.ts, "UTC") for _, e in traffic)
    for user_id in list(parts.users)[:300]:
        assert other.churn_score(user_id, last) == parts.churn_score(user_id, last)


async def test_a_partition_restored_from_its_committed_state_continues_identically(traffic):
    """Commit half-way (users, timers, churn state as the worker writes them), restore
    into a new fold, go on: the same model, quality, scores and records as never stopping."""
    config = Config.from_mapping(
        {"allowed_lateness": "1d", "churn": {"horizon": "3d", "min_labels": 50}}
    )
    store = PartitionStore("unused:9092", "t", 0, config)
    sources = [("clicks", 0), ("orders", 0)]
    straight = Fold(config, sources)
    first = Fold(config, sources)
    half = len(traffic) // 2
    for i in range(0, len(traffic), 500):
        chunk = traffic[i : i + 500]
        for fold in (straight, first) if i < half else (straight,):
            for topic, run in (("clicks", [x for x in chunk if x[0] == "clicks"]),
                               ("orders", [x for x in chunk if x[0] == "orders"])):  # fmt: skip
                fold.apply_batch([(e.user_id, e) for _, e in run], (topic, 0))
    out = Outgoing()
    store.collect(first, {"clicks": 1}, out)
    latest = {key: value for topic, _, key, value, _ in out.records if topic == "t.state"}
    assert b"c" in latest and b"pickle" not in latest[b"c"]
    restored = Fold(config, sources)
    store.restore(restored, latest)
    restored.take_changed()
    before = [orjson.loads(value) for topic, _, _, value, _ in out.records
              if topic == config.topics.churn_scores]  # fmt: skip
    for i in range(half - half % 500, len(traffic), 500):
        chunk = traffic[i : i + 500]
        for topic in ("clicks", "orders"):
            run = [e for t, e in chunk if t == topic]
            restored.apply_batch([(e.user_id, e) for e in run], (topic, 0))
    after = [r.value for r in restored.outbox.drain() if r.kind == "churn_scores"]
    everything = [r.value for r in straight.outbox.drain() if r.kind == "churn_scores"]
    assert before + after == everything and before and after
    assert restored.churn.model.to_json() == straight.churn.model.to_json()
    assert restored.churn.model.labels > 50
    report = build_report(restored.partials, config)["churn"]
    # The restored fold's partials hold the committed days plus what followed.
    assert report == build_report(straight.partials, config)["churn"]
    day = restored.stream_day()
    for user_id in list(straight.users)[:300]:
        assert restored.churn.score(restored.users[user_id], day) == straight.churn.score(
            straight.users[user_id], day
        )


def test_churn_score_records_cross_the_threshold_once_each_way(traffic):
    _, records = fold_in_order(CONFIG, traffic)
    spec = CONFIG.churn
    flagged: dict[str, bool] = {}
    for r in records:
        assert r["flagged"] != flagged.get(r["user_id"], False)
        flagged[r["user_id"]] = r["flagged"]
        if r["flagged"]:
            assert r["score"] >= spec.threshold
        else:
            assert r["score"] < spec.threshold - spec.hysteresis
        assert set(r) == {"user_id", "ts", "score", "flagged", "model_version"}
    assert any(not r["flagged"] for r in records)


def test_checkpoint_is_json_round_trips_and_refuses_the_unknown():
    spec = ChurnSpec(min_labels=10)
    rng = random.Random(1)
    model = ChurnModel(spec)
    rows = [
        [rng.random() * 5 for _ in NUMERIC] + [rng.choice("abc"), rng.choice("xy")]
        for _ in range(300)
    ]
    for row in rows[:200]:
        model.learn(row, rng.random() < row[0] / 5)
    copy = ChurnModel.from_json(spec, orjson.loads(orjson.dumps(model.to_json())))
    for row in rows[200:]:
        assert copy.predict(row) == model.predict(row)
        label = rng.random() < 0.4
        model.learn(row, label)
        copy.learn(row, label)
    assert copy.to_json() == model.to_json()
    with pytest.raises(CheckpointError):
        ChurnModel.from_json(spec, {**model.to_json(), "v": 99})
    with pytest.raises(CheckpointError):
        ChurnModel.from_json(spec, {**model.to_json(), "model": "forest"})


def test_rank_auc_is_the_exact_mann_whitney_statistic():
    rng = np.random.default_rng(4)
    for _ in range(20):
        pos = rng.integers(0, BINS + 1, rng.integers(1, 300))
        neg = rng.integers(0, BINS + 1, rng.integers(1, 300))
        expected = mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg))
        got = rank_auc(np.bincount(pos, minlength=BINS + 1).tolist(),
                       np.bincount(neg, minlength=BINS + 1).tolist())  # fmt: skip
        assert got == pytest.approx(expected, abs=1e-12)
    assert rank_auc([1], [0]) is None


def test_replay_writes_churn_scores_in_users_output(tmp_path, traffic):
    clicks, orders = tmp_path / "clicks.jsonl", tmp_path / "orders.jsonl"
    for path, topic in ((clicks, "clicks"), (orders, "orders")):
        path.write_bytes(b"".join(
            orjson.dumps({"event_id": e.event_id, "user_id": e.user_id, "ts": e.ts, "type": e.type,
                          **({"order_id": e.event_id, "amount": e.amount_cents / 100}
                             if topic == "orders" else {})}) + b"\n"
            for t, e in traffic if t == topic
        ))  # fmt: skip
    report, fold, _ = replay_files(CONFIG, clicks, orders)
    assert report["churn"]["horizon_days"] == 3 and report["churn"]["labelled"] > 0
    last = local_day(traffic[-1][1].ts, "UTC")
    scores = [fold.churn_score(u, last) for u in list(fold.users)[:50]]
    assert all(s is None or 0 <= s <= 1 for s in scores) and any(s is not None for s in scores)


def test_adwin_flags_a_day_whose_losses_moved_and_not_a_steady_one():
    learner = Fold(CONFIG, [("clicks", 0), ("orders", 0)]).churn
    rng = random.Random(2)
    steady = [round(rng.uniform(0.2, 0.4) * 1e6) for _ in range(1900)]
    learner.losses = steady + [round(rng.uniform(0.2, 0.4) * 1e6) for _ in range(100)]
    assert not learner._drifted(100)
    learner.losses = steady + [round(rng.uniform(1.5, 2.5) * 1e6) for _ in range(100)]
    assert learner._drifted(100)
    # Only today's labels count: the same change a day later is not a new drift day.
    learner.losses = (
        steady[200:]
        + [round(rng.uniform(1.5, 2.5) * 1e6) for _ in range(100)]
        + [round(rng.uniform(1.5, 2.5) * 1e6) for _ in range(100)]
    )
    assert not learner._drifted(100)


def test_forest_checkpoint_is_signed_and_nothing_unsigned_is_unpickled():
    spec = ChurnSpec(model="forest", min_labels=10)
    rng = random.Random(1)
    model = ChurnModel(spec)
    rows = [[rng.random() * 5 for _ in NUMERIC] + [rng.choice("abc"), "x"] for _ in range(120)]
    for row in rows[:80]:
        model.learn(row, rng.random() < row[0] / 5)
    with pytest.raises(CheckpointError):
        model.to_json()  # a forest checkpoint needs a key
    saved = model.to_json(b"k1")
    copy = ChurnModel.from_json(spec, orjson.loads(orjson.dumps(saved)), b"k1")
    for row in rows[80:]:
        assert copy.predict(row) == model.predict(row)
    for key in (None, b"k2"):
        with pytest.raises(CheckpointError, match="signature"):
            ChurnModel.from_json(spec, saved, key)
    import base64

    tampered = bytearray(base64.b64decode(saved["pickle"]))
    tampered[len(tampered) // 2] ^= 1
    forged = {**saved, "pickle": base64.b64encode(bytes(tampered)).decode()}
    with pytest.raises(CheckpointError, match="signature"):
        ChurnModel.from_json(spec, forged, b"k1")


async def test_a_forest_partition_commits_in_pieces_and_resumes_identically(monkeypatch):
    """The forest's state (MBs of pickle) goes to the state topic in pieces with a
    digest; restored, the partition goes on as if never stopped; a corrupt piece is
    refused."""
    monkeypatch.setenv("OPSPULSE_CHECKPOINT_KEY", "test-key")
    spec = GeneratorSpec(seed=9, days=9, new_users_per_day=25)
    items = sorted(
        ((t, parse_event(line, max_bytes=1 << 20, now_ms=1 << 62)) for t, line in generate(spec)
         if t in ("clicks", "orders")),
        key=lambda item: item[1].ts,
    )  # fmt: skip
    config = Config.from_mapping(
        {"allowed_lateness": "1d", "churn": {"horizon": "2d", "model": "forest", "min_labels": 20}}
    )
    store = PartitionStore("unused:9092", "t", 0, config)
    sources = [("clicks", 0), ("orders", 0)]
    straight, first = Fold(config, sources), Fold(config, sources)
    half = len(items) // 2

    def feed(fold, chunk):
        for topic in ("clicks", "orders"):
            fold.apply_batch([(e.user_id, e) for t, e in chunk if t == topic], (topic, 0))

    for i in range(0, len(items), 400):
        for fold in (straight, first) if i < half else (straight,):
            feed(fold, items[i : i + 400])
    out = Outgoing()
    store.collect(first, {"clicks": 1}, out)
    latest = {key: value for topic, _, key, value, _ in out.records if topic == "t.state"}
    header = orjson.loads(latest[b"c"])
    assert header["chunks"] > 1 and all(b"c/%d" % i in latest for i in range(header["chunks"]))
    restored = Fold(config, sources)
    PartitionStore("unused:9092", "t", 0, config).restore(restored, latest)
    for i in range(half - half % 400, len(items), 400):
        feed(restored, items[i : i + 400])
    assert restored.churn.model.labels == straight.churn.model.labels > 20
    day = straight.stream_day()
    for user_id in list(straight.users)[:200]:
        assert restored.churn.score(restored.users[user_id], day) == straight.churn.score(
            straight.users[user_id], day
        )
    corrupt = dict(latest)
    corrupt[b"c/0"] = b"x" + corrupt[b"c/0"][1:]
    with pytest.raises(ValueError, match="corrupt"):
        PartitionStore("unused:9092", "t", 0, config).restore(Fold(config, sources), corrupt)
