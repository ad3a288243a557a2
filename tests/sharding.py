"""The split-and-merge check shared by the reference tests: users folded one event at a
time into partitions (by a hash of the user id), their partials merged."""

from state.fold import Fold
from state.partials import Partials


def merged_shards(config, arrived, shards=2, spend=()):
    """The merged partials of `shards` folds fed `arrived` in order (plus one fold of
    `spend` events, in ts order, when given)."""
    folds = [Fold(config) for _ in range(shards)]
    for e in arrived:
        folds[hash(e.user_id) % shards].apply_batch([(e.user_id, e)], "p")
    if spend:
        spend_fold = Fold(config)
        spend_fold.apply_spend(sorted(spend, key=lambda s: s.ts), "spend")
        folds.append(spend_fold)
    merged = Partials(funnel_steps=folds[0].partials.funnel_steps)
    for fold in folds:
        merged.merge(fold.partials)
    return merged
