"""One partition's churn model: River's logistic regression, saved as JSON.

The model learns online from labelled predictions (state/kpis/churn.py) in a
deterministic order, so replay and the workers hold the same weights. Its
state (weights, intercept, the categorical vocabulary, the label counts) is plain JSON committed with the partition: nothing is pickled,
and a checkpoint of another version or model is refused, not guessed at.

The adaptive forest (`model = "forest"`, River's ARFClassifier) can only be saved
with pickle. Its checkpoint is ours, versioned, and signed: `to_json(key)` puts an
HMAC-SHA256 of the pickle under `key` (the worker's OPSPULSE_CHECKPOINT_KEY), and
`from_json` unpickles nothing whose signature does not match.

Cold start: until the model has learnt `min_labels` labels, a tenth of them of
each class, a user is scored by the rule in `churn_features.cold_start_probability`
(the model still learns meanwhile; the rule is also one of its features).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import pickle
from collections.abc import Sequence
from typing import Any

from river import forest, linear_model, optim

from state.churn_features import CATEGORICAL, NUMERIC, PRIOR, Snapshot, model_inputs
from state.config import ChurnSpec

CHECKPOINT_VERSION = 1
BINS = 1000  # scores are published and ranked at 3 decimals (0.000 .. 1.000)
LOSS_SCALE = 1_000_000  # log losses are summed in micro-nats: integers add up exactly
P_FLOOR = 1e-4  # probabilities are clipped to [P_FLOOR, 1 - P_FLOOR] for the log loss


class CheckpointError(ValueError):
    """A stored model that this version cannot read."""


class ChurnModel:
    def __init__(self, spec: ChurnSpec) -> None:
        self.spec = spec
        self.classifier: Any = (
            _forest() if spec.model == "forest" else _logistic(spec.learning_rate)
        )
        self.log_horizon = math.log1p(spec.horizon_days)
        self.vocabulary: dict[str, list[str]] = {name: [] for name in CATEGORICAL}
        self.labels = 0
        self.positives = 0

    @property
    def warm(self) -> bool:
        """Whether scores come from the model (else from the cold-start rule)."""
        least = self.spec.min_labels // 10
        negatives = self.labels - self.positives
        return self.labels >= self.spec.min_labels and min(self.positives, negatives) >= least

    @property
    def version(self) -> str:
        """What scored: the model and how many labels it had learnt, or the cold start."""
        return f"{self.spec.model}/{self.labels}" if self.warm else f"cold-start/{self.labels}"

    def predict(self, features: Snapshot) -> float:
        """P(churn within the horizon), rounded to the published 3 decimals."""
        if not self.warm:
            p = 1.0 / (1.0 + math.exp(-features[PRIOR]))
        else:
            p = self.classifier.predict_proba_one(self._x(features)).get(True, 0.0)
        return round(p, 3)

    def learn(self, features: Snapshot, label: bool) -> None:
        """Learn one labelled prediction (grows the vocabulary up to its bound)."""
        for name, value in zip(CATEGORICAL, features[len(NUMERIC) :], strict=True):
            known = self.vocabulary[name]
            if value not in known and len(known) < self.spec.vocabulary:
                known.append(value)
        self.classifier.learn_one(self._x(features), label)
        self.labels += 1
        self.positives += label

    def _x(self, features: Snapshot) -> dict[str, float]:
        x = model_inputs(features, self.log_horizon)
        for name, value in zip(CATEGORICAL, features[len(NUMERIC) :], strict=True):
            x[f"{name}={value if value in self.vocabulary[name] else '(other)'}"] = 1.0
        return x

    def to_json(self, key: bytes | None = None) -> dict[str, Any]:
        """The checkpoint; `key` signs a forest's pickle (required for a forest)."""
        data: dict[str, Any] = {
            "v": CHECKPOINT_VERSION, "model": self.spec.model, "vocabulary": self.vocabulary,
            "labels": self.labels, "positives": self.positives,
        }  # fmt: skip
        if self.spec.model == "forest":
            if not key:
                raise CheckpointError("a forest checkpoint is signed: no key given")
            body = pickle.dumps(self.classifier, protocol=pickle.HIGHEST_PROTOCOL)
            data["pickle"] = base64.b64encode(body).decode()
            data["hmac_sha256"] = hmac.new(key, body, hashlib.sha256).hexdigest()
            return data
        lr = self.classifier
        data.update(
            weights=dict(lr._weights), intercept=lr.intercept,
            iterations=lr.optimizer.n_iterations,
        )  # fmt: skip
        return data

    @classmethod
    def from_json(
        cls, spec: ChurnSpec, data: dict[str, Any], key: bytes | None = None
    ) -> ChurnModel:
        if data.get("v") != CHECKPOINT_VERSION or data.get("model") != spec.model:
            raise CheckpointError(
                f"churn model checkpoint v{data.get('v')} {data.get('model')!r}: this version "
                f"reads v{CHECKPOINT_VERSION} {spec.model!r}"
            )
        model = cls(spec)
        if spec.model == "forest":
            body = base64.b64decode(data["pickle"])
            signature = hmac.new(key or b"", body, hashlib.sha256).hexdigest()
            if not key or not hmac.compare_digest(signature, str(data.get("hmac_sha256"))):
                raise CheckpointError(
                    "churn forest checkpoint: its signature does not match "
                    "OPSPULSE_CHECKPOINT_KEY; not unpickled"
                )
            model.classifier = pickle.loads(body)  # noqa: S301 (ours, signed, checked above)
        else:
            lr = model.classifier
            for name, weight in data["weights"].items():
                lr._weights[name] = weight
            lr.intercept = data["intercept"]
            lr.optimizer.n_iterations = data["iterations"]
        model.vocabulary = {name: list(data["vocabulary"].get(name, [])) for name in CATEGORICAL}
        model.labels, model.positives = data["labels"], data["positives"]
        return model


def _forest() -> Any:
    return forest.ARFClassifier(n_models=10, seed=42)


def _logistic(learning_rate: float) -> linear_model.LogisticRegression:
    return linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))


def score_bin(score: float) -> int:
    """The histogram bin of a published score."""
    return min(max(round(score * BINS), 0), BINS)


def log_loss_micro(p: float, label: bool) -> int:
    """The log loss of one prediction, in integer micro-nats."""
    p = min(max(p, P_FLOOR), 1.0 - P_FLOOR)
    return round(-math.log(p if label else 1.0 - p) * LOSS_SCALE)


def rank_auc(positives: Sequence[int], negatives: Sequence[int]) -> float | None:
    """The exact ROC AUC (Mann-Whitney, ties count half) of scores given as histograms
    over `score_bin`: P(a positive scores above a negative). None without both classes."""
    n_pos, n_neg = sum(positives), sum(negatives)
    if not n_pos or not n_neg:
        return None
    below = 0  # negatives in lower bins
    wins2 = 0  # twice the Mann-Whitney U
    for b in range(max(len(positives), len(negatives))):
        pos = positives[b] if b < len(positives) else 0
        neg = negatives[b] if b < len(negatives) else 0
        wins2 += pos * (2 * below + neg)
        below += neg
    return wins2 / (2 * n_pos * n_neg)
