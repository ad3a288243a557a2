"""Churn prediction per partition (METRICS.md, Churn): predictions at day ends,
labels made by the stream, prequential quality, churn-score records.

`ChurnLearner` (the fold's part) works one local day at a time, once the day is
final: when the partition's stream time, held back by any input not yet read to
its end (`Fold.complete_ms`), minus the allowed lateness has passed the day's
end, no event of that day can still arrive in time. So each step reads only
final data and the model sees the same sequence in replay and in the workers,
whatever the arrival order. (An input idle for longer than the lateness that
then delivers events that old would be read after their day was processed, as
for the alerts; README "Churn prediction".) For day d, in order:

1. Labels. A prediction made at the end of day t is labelled on d = t + horizon:
   1 when its user had no activity on days t+1..d, else 0. The model is scored
   on it (the score it gave at t: prequential), then learns it, in a shuffled
   order fixed by (user id, d). A label 0 is known as soon as the user returns,
   but it is learnt at the horizon too: learning the returns at once and the
   departures a horizon later biased the model towards "stays" (measured on
   generated traffic: prequential AUC 0.55 learning each label when known,
   0.60-0.66 learning all at the horizon).
2. Predictions, on every `every_days`-th day: each user active within the last
   `horizon_days` days (up to d) is scored from `churn_features.snapshot`; the
   snapshot waits in the user's record for its label. A score crossing the
   threshold (with hysteresis) is published on `opspulse.churn-scores`.

Quality is kept as additive partials keyed by the day labels became known: per
day the labelled count, positives, the summed log losses of the model and of the
base rate (each label predicted by the partition's running label mean before
it), predictions made, days on which ADWIN found the loss changed, and histograms
of the scores of positives and negatives (3-decimal bins), from which AUC,
precision and recall are exact at render.

The model (weights, vocabulary), the recent label losses and the next day to
process are the learner's committed state (`to_json`); the indexes over users are
rebuilt from the records on restore.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from river import drift

from state.churn_features import snapshot
from state.churn_model import BINS, ChurnModel, log_loss_micro, rank_auc, score_bin
from state.partials import TABLE_EFFECT, Effect, Partials, ratio
from state.user import active_bits_between, is_active, last_active_day

if TYPE_CHECKING:
    from state.config import Config
    from state.fold import Fold
    from state.user import Context, EventLike, UserState

NAME, POSITIVE_SCORES, NEGATIVE_SCORES = "churn", "churn_positive_scores", "churn_negative_scores"
# Slots of the "churn" table; DRIFTS: 1 on a day ADWIN found the loss changed.
LABELLED, POSITIVES, LOSS, BASE_LOSS, PREDICTIONS, DRIFTS = range(6)
WIDTH = DRIFTS + 1
DRIFT_WINDOW = 2000  # the last label losses ADWIN looks at (committed with the model)
LAST_DAYS = 7
STATE_VERSION = 1


class Churn:
    """The report's `churn` section, from the partials the learners add."""

    name = NAME

    def wants(self, event_type: str, ctx: Context) -> bool:
        return False

    def apply(
        self, user: UserState, event: EventLike, day: int, ctx: Context, effects: list[Effect]
    ) -> None:
        """Nothing per event: labels and predictions come with the days (ChurnLearner)."""

    def render(
        self, partials: Partials, config: Config, days: range, report: dict[str, Any]
    ) -> None:
        spec = config.churn
        rows = partials.table(NAME, WIDTH)
        if not spec.enabled or not rows:
            report[NAME] = {}
            return
        last = days[-1] if days else max(rows)
        section = {
            "horizon_days": spec.horizon_days,
            "model": spec.model,
            **quality(partials, rows, spec.threshold, lambda d: True),
        }
        section["last_7d"] = quality(
            partials, rows, spec.threshold, lambda d: last - LAST_DAYS < d <= last
        )
        report[NAME] = section


def quality(
    partials: Partials, rows: dict[int, list[int]], threshold: float, keep: Any
) -> dict[str, Any]:
    """Quality over the labels that became known on the days `keep` accepts."""
    totals = [0] * WIDTH
    pos = [0] * (BINS + 1)
    neg = [0] * (BINS + 1)
    for table, into in ((POSITIVE_SCORES, pos), (NEGATIVE_SCORES, neg)):
        for day, row in partials.tables.get(table, {}).items():
            if keep(day):
                for b, n in enumerate(row):
                    into[b] += n
    for day, row in rows.items():
        if keep(day):
            totals = [a + b for a, b in zip(totals, row, strict=True)]
    labelled = totals[LABELLED]
    cut = score_bin(threshold)
    true_pos, flagged = sum(pos[cut:]), sum(pos[cut:]) + sum(neg[cut:])
    return {
        "labelled": labelled,
        "positives": totals[POSITIVES],
        "predictions": totals[PREDICTIONS],
        "auc": _round(rank_auc(pos, neg)),
        "log_loss": _round(ratio(totals[LOSS], labelled * 1_000_000)),
        "base_log_loss": _round(ratio(totals[BASE_LOSS], labelled * 1_000_000)),
        "precision": _round(ratio(true_pos, flagged)),
        "recall": _round(ratio(true_pos, totals[POSITIVES])),
        "flagged_share": _round(ratio(flagged, labelled)),
        "drift_days": totals[DRIFTS],
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class ChurnLearner:
    """The churn model of one partition and the day-by-day work that feeds it."""

    KIND = "churn_scores"  # derived record kind

    def __init__(self, fold: Fold) -> None:
        self.fold = fold
        self.spec = fold.config.churn
        self.clock = fold.ctx.clock
        self.model = ChurnModel(self.spec)
        self.next_day: int | None = None  # the first day not yet processed
        self.next_check_ms = 0  # no day can be final before the stream time reaches this
        self.touched: set[str] = set()  # users with activity on days not yet processed
        self.recent: dict[str, int] = {}  # user -> last active day, within the horizon
        self.due: dict[int, set[str]] = {}  # day -> users with a prediction labelled then
        self.base_labels = [0, 0]  # labels and positives seen: the base rate's running mean
        self.losses: list[int] = []  # the last DRIFT_WINDOW label losses, micro-nats
        self.dirty = False  # model or progress changed since the last `take_changed`

    # -- the fold's hooks ---------------------------------------------------------------

    def advance(self, final_ms: int) -> bool:
        """Process every day that ended before `final_ms` (all events before it are in);
        whether there was any."""
        if self.next_day is None:
            firsts = [
                u.first_day
                for user_id in self.touched
                if (u := self.fold.users.get(user_id)) is not None and u.first_day is not None
            ]
            self.next_day = min([*firsts, self.clock.day(final_ms)])
        start = self.clock.day_start_ms
        processed = False
        while start(self.next_day + 1) <= final_ms:
            self._process(self.next_day)
            self.next_day += 1
            self.dirty = processed = True
        self.next_check_ms = start(self.next_day + 1) + self.fold.config.allowed_lateness_ms
        return processed

    def score(self, user: UserState, day: int) -> float | None:
        """The user's churn score now: the current model on their features as of `day`."""
        features = snapshot(user, day, self.spec.horizon_days)
        return None if features is None else self.model.predict(features)

    # -- one day ------------------------------------------------------------------------

    def _process(self, day: int) -> None:
        users = self.fold.users
        for user_id in list(self.touched):
            user = users.get(user_id)
            if user is None:
                self.touched.discard(user_id)
                continue
            if is_active(user, day):
                self.recent[user_id] = day
            if not _active_after(user, day):
                self.touched.discard(user_id)
        effects: list[Effect] = []
        due = self.due.pop(day, ())
        # Learnt in an order no arrival can change, and shuffled: learning the users in
        # id order made the model chase whichever cohort came last (measured: AUC 0.55).
        learnt = self.model.labels
        for user_id in sorted(due, key=lambda u: _shuffle_key(u, day)):
            if (user := users.get(user_id)) is not None:
                self._label(user_id, user, day, effects)
        if self.model.labels > learnt and self._drifted(self.model.labels - learnt):
            effects.append((TABLE_EFFECT, day, NAME, DRIFTS, 1))
        horizon = self.spec.horizon_days
        for user_id in [u for u, last in self.recent.items() if day - last >= horizon]:
            del self.recent[user_id]
        if day % self.spec.every_days == 0:
            for user_id in sorted(self.recent):
                self._predict(user_id, users[user_id], day, effects)
        if effects:
            self.fold.partials.add(effects)

    def _label(self, user_id: str, user: UserState, day: int, effects: list[Effect]) -> None:
        """Label, score and learn the user's predictions due on `day`."""
        pending = user.churn_pending
        while pending and pending[0][1] <= day:
            entry = pending.pop(0)
            made, due, score = entry[0], entry[1], entry[2]
            label = not active_bits_between(user, made + 1, due)
            seen, positives = self.base_labels
            base = (positives + 0.5) / (seen + 1)
            self.base_labels = [seen + 1, positives + label]
            effects.append((TABLE_EFFECT, day, NAME, LABELLED, 1))
            if label:
                effects.append((TABLE_EFFECT, day, NAME, POSITIVES, 1))
            loss = log_loss_micro(score, label)
            effects.append((TABLE_EFFECT, day, NAME, LOSS, loss))
            self.losses.append(loss)
            effects.append((TABLE_EFFECT, day, NAME, BASE_LOSS, log_loss_micro(base, label)))
            table = POSITIVE_SCORES if label else NEGATIVE_SCORES
            effects.append((TABLE_EFFECT, day, table, score_bin(score), 1))
            self.model.learn(entry[3:], label)
        self.fold.changed.add(user_id)

    def _drifted(self, today: int) -> bool:
        """Whether ADWIN, run over the last DRIFT_WINDOW label losses, detects a change
        among today's. River's ADWIN state cannot be saved, so it is run afresh over a
        window that is: the same answer in replay, live and after a restore."""
        del self.losses[:-DRIFT_WINDOW]
        detector = drift.ADWIN(delta=0.002)
        first_today = len(self.losses) - today
        for i, loss in enumerate(self.losses):
            detector.update(loss / 1_000_000)
            if detector.drift_detected and i >= first_today:
                return True
        return False

    def _predict(self, user_id: str, user: UserState, day: int, effects: list[Effect]) -> None:
        features = snapshot(user, day, self.spec.horizon_days)
        if features is None:
            return
        score = self.model.predict(features)
        due = day + self.spec.horizon_days
        user.churn_pending.append([day, due, score, *features])
        self.due.setdefault(due, set()).add(user_id)
        effects.append((TABLE_EFFECT, day, NAME, PREDICTIONS, 1))
        spec, flagged = self.spec, user.churn_flagged
        if (not flagged and score >= spec.threshold) or (
            flagged and score < spec.threshold - spec.hysteresis
        ):
            user.churn_flagged = not flagged
            ts = self.clock.day_start_ms(day + 1) - 1
            self.fold.outbox.emit(
                self.KIND, user_id,
                {"user_id": user_id, "ts": ts, "score": score, "flagged": not flagged,
                 "model_version": self.model.version},
            )  # fmt: skip
        self.fold.changed.add(user_id)

    # -- committed state ----------------------------------------------------------------

    def take_changed(self, key: bytes | None = None) -> dict[str, Any] | None:
        """The learner's state to commit, if it changed since the last call (`key`
        signs a forest's checkpoint)."""
        if not self.dirty:
            return None
        self.dirty = False
        return self.to_json(key)

    def to_json(self, key: bytes | None = None) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "next_day": self.next_day,
            "base_labels": self.base_labels,
            "losses": self.losses,
            "model": self.model.to_json(key),
        }

    def restore(self, data: dict[str, Any] | None, key: bytes | None = None) -> None:
        """Resume from a committed state (None: nothing committed yet) and rebuild the
        indexes from the user records already restored into the fold."""
        if data is not None:
            if data.get("v") != STATE_VERSION:
                raise ValueError(f"churn state v{data.get('v')}: this version reads v1")
            self.next_day = data["next_day"]
            self.base_labels = list(data["base_labels"])
            self.losses = list(data.get("losses", []))
            self.model = ChurnModel.from_json(self.spec, data["model"], key)
        self.touched.clear()
        self.recent.clear()
        self.due.clear()
        next_day = self.next_day
        for user_id, user in self.fold.activity():
            for entry in user.churn_pending:
                self.due.setdefault(entry[1], set()).add(user_id)
            if user.base_day is None:
                continue
            if next_day is None or _active_after(user, next_day - 1):
                self.touched.add(user_id)
            if next_day is not None:
                last = last_active_day(user, next_day - 1)
                if last is not None and next_day - 1 - last < self.spec.horizon_days:
                    self.recent[user_id] = last
        if next_day is not None:
            start = self.clock.day_start_ms(next_day + 1)
            self.next_check_ms = start + self.fold.config.allowed_lateness_ms
        self.dirty = False


def _shuffle_key(user_id: str, day: int) -> bytes:
    return hashlib.blake2b(f"{user_id}/{day}".encode(), digest_size=8).digest()


def _active_after(user: UserState, day: int) -> bool:
    """Whether the user has an active day after `day`."""
    base = user.base_day
    return base is not None and bool(user.active_bits >> max(day + 1 - base, 0))
