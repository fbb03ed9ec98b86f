"""Offline ranking metrics over whole arrays, scikit-learn style.

Every function takes flat arrays ``y_true`` (graded labels: 0 nothing, 1 claimed,
2 redeemed), ``y_score`` (higher = ranked first) and ``groups`` (the ranking group of
each row, i.e. the request id; rows of one group need not be contiguous).

Conventions, shared by all metrics:

* Ranking order: within a group, rows are sorted by descending score; equal scores
  keep their original row order (stable tie-break). Ties therefore never average
  over permutations as sklearn's ``ndcg_score(ignore_ties=False)`` does; give the
  ranker's scores a tie-breaker if row order is not meaningful.
* Relevance: a row is *relevant* when ``label >= relevant_at`` (default 2 =
  redeemed). NDCG is the exception: it uses the graded labels directly.
* Averaging: one value per group, then an unweighted mean over groups. Metrics that
  are undefined for a group without relevant rows (recall, F1, MAP; NDCG when the
  ideal DCG is 0) leave such groups out of the mean. A metric with no group to
  average over returns NaN.

Implementation: the rows are sorted once by (group, -score, row index); every
metric is then a handful of numpy operations per row plus ``np.add.reduceat`` per
group, so there is no Python loop over groups (1M rows take about a second).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

__all__ = [
    "precision_at_k",
    "recall_at_k",
    "f1_at_k",
    "ndcg_at_k",
    "mean_average_precision",
    "auc",
    "evaluate_ranking",
    "bootstrap_ndcg",
]


@dataclass
class _Ranked:
    """Rows sorted by (group, -score, original row); groups are contiguous runs."""

    label: np.ndarray  # float64 graded labels in ranked order
    rank: np.ndarray  # 0-based position of the row inside its group
    starts: np.ndarray  # index of each group's first row
    sizes: np.ndarray  # rows per group

    @cached_property
    def ideal_label(self) -> np.ndarray:
        """Labels re-sorted descending inside each group: the ideal ranking for NDCG."""
        group_of_row = np.repeat(np.arange(len(self.starts)), self.sizes)
        return self.label[np.lexsort((-self.label, group_of_row))]

    def group_sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, self.starts)

    def group_cumsum(self, values: np.ndarray) -> np.ndarray:
        """Running sum restarting at every group (inclusive of the current row)."""
        total = np.cumsum(values)
        before_group = total[self.starts] - values[self.starts]
        return total - np.repeat(before_group, self.sizes)


def _as_1d(name: str, values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    return arr


def _numeric(name: str, values) -> np.ndarray:
    arr = _as_1d(name, values)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN ({int(np.isnan(arr).sum())} rows)")
    return arr


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    return int(k)


def _rank(y_true, y_score, groups) -> _Ranked:
    """Validate the inputs and sort them once into per-group ranked order."""
    label = _numeric("y_true", y_true)
    score = _numeric("y_score", y_score)
    grp = _as_1d("groups", groups)
    if not (len(label) == len(score) == len(grp)):
        raise ValueError(
            "y_true, y_score and groups must have the same length, got "
            f"{len(label)}, {len(score)} and {len(grp)}"
        )
    if len(label) == 0:
        raise ValueError("y_true is empty: need at least one row to evaluate")
    if (label < 0).any():
        raise ValueError("y_true must be non-negative graded labels")
    # factorize hashes instead of sorting, so string request ids stay cheap.
    codes, _ = pd.factorize(grp)
    if (codes < 0).any():
        raise ValueError("groups contains missing values (None/NaN)")
    # lexsort: last key is primary, and it is stable, so equal (group, score) rows
    # keep their original order: that is the documented tie-break.
    order = np.lexsort((-score, codes))
    codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(codes)])
    rank = np.arange(len(codes)) - np.repeat(starts, sizes)
    return _Ranked(label=label[order], rank=rank, starts=starts, sizes=sizes)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


# --- per-group values on an already ranked input --------------------------------
# The public functions and evaluate_ranking share these, so evaluate_ranking sorts once.


def _hits_at_k(r: _Ranked, k: int, relevant_at: int) -> tuple[np.ndarray, np.ndarray]:
    """(relevant rows in the top k, relevant rows in the group) per group."""
    rel = r.label >= relevant_at
    return r.group_sum((rel & (r.rank < k)).astype(np.int64)), r.group_sum(rel.astype(np.int64))


def _precision(r: _Ranked, k: int, relevant_at: int) -> np.ndarray:
    hits, _ = _hits_at_k(r, k, relevant_at)
    return hits / np.minimum(k, r.sizes)


def _recall(r: _Ranked, k: int, relevant_at: int) -> np.ndarray:
    hits, n_rel = _hits_at_k(r, k, relevant_at)
    has = n_rel > 0
    return hits[has] / n_rel[has]


def _f1(r: _Ranked, k: int, relevant_at: int) -> np.ndarray:
    hits, n_rel = _hits_at_k(r, k, relevant_at)
    has = n_rel > 0
    p = hits[has] / np.minimum(k, r.sizes[has])
    rec = hits[has] / n_rel[has]
    denom = p + rec
    return np.divide(2 * p * rec, denom, out=np.zeros_like(denom), where=denom > 0)


def _dcg(label: np.ndarray, r: _Ranked, k: int) -> np.ndarray:
    gain = np.where(r.rank < k, (2.0**label - 1.0) / np.log2(r.rank + 2.0), 0.0)
    return r.group_sum(gain)


def _ndcg(r: _Ranked, k: int) -> np.ndarray:
    dcg, idcg = _dcg(r.label, r, k), _dcg(r.ideal_label, r, k)
    has = idcg > 0
    return dcg[has] / idcg[has]


def _average_precision(r: _Ranked, relevant_at: int) -> np.ndarray:
    rel = (r.label >= relevant_at).astype(np.int64)
    # precision at each relevant row's position = relevant rows so far / position
    prec_at_row = r.group_cumsum(rel) / (r.rank + 1.0)
    n_rel = r.group_sum(rel)
    has = n_rel > 0
    return r.group_sum(prec_at_row * rel)[has] / n_rel[has]


# --- public API ------------------------------------------------------------------


def precision_at_k(y_true, y_score, groups, k: int, relevant_at: int = 2) -> float:
    """Mean over all groups of (relevant rows in the top k) / min(k, group size).

    The denominator is ``min(k, group size)`` rather than ``k``: a request shows only
    3-6 coupons, and with denominator k a perfect ranking of a 3-coupon request
    would score at most 3/5 at k=5. Groups without any relevant row are *included*
    (they score 0), so this value scales with the positive rate; multiply by
    n_groups / n_groups_with_positive for the mean over groups with a positive.
    """
    return _mean(_precision(_rank(y_true, y_score, groups), _check_k(k), relevant_at))


def recall_at_k(y_true, y_score, groups, k: int, relevant_at: int = 2) -> float:
    """Mean over groups with >= 1 relevant row of (relevant in top k) / (relevant in group)."""
    return _mean(_recall(_rank(y_true, y_score, groups), _check_k(k), relevant_at))


def f1_at_k(y_true, y_score, groups, k: int, relevant_at: int = 2) -> float:
    """Per-group harmonic mean of precision@k and recall@k, averaged over groups with
    >= 1 relevant row (0 for a group where both are 0). Not the F1 of the averages."""
    return _mean(_f1(_rank(y_true, y_score, groups), _check_k(k), relevant_at))


def ndcg_at_k(y_true, y_score, groups, k: int) -> float:
    """Mean NDCG@k with graded gains ``2**label - 1`` and discounts ``1/log2(rank+1)``.

    Uses the graded labels, so there is no relevance threshold: a claim (1) gains 1,
    a redemption (2) gains 3. Groups whose labels are all 0 have ideal DCG 0 and are
    excluded from the mean (sklearn's ``ndcg_score`` would count them as 0).
    """
    return _mean(_ndcg(_rank(y_true, y_score, groups), _check_k(k)))


def mean_average_precision(y_true, y_score, groups, relevant_at: int = 2) -> float:
    """MAP: average precision over each group's full ranking (no cut-off), averaged
    over groups with >= 1 relevant row."""
    return _mean(_average_precision(_rank(y_true, y_score, groups), relevant_at))


def auc(y_true, y_score, relevant_at: int = 2) -> float:
    """Global ROC AUC of ``label >= relevant_at`` against the score, across all groups.

    Not a per-group metric: it also rewards scores that are comparable across
    requests. Returns NaN (with a RuntimeWarning) when only one class is present,
    because ROC AUC is undefined then.
    """
    label = _numeric("y_true", y_true)
    score = _numeric("y_score", y_score)
    if len(label) != len(score):
        raise ValueError(f"y_true and y_score must have the same length, got {len(label)} and {len(score)}")
    rel = label >= relevant_at
    if rel.all() or not rel.any():
        warnings.warn(
            f"auc: all {len(rel)} rows are {'relevant' if rel.any() else 'non-relevant'} "
            f"at relevant_at={relevant_at}; ROC AUC is undefined, returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    # int8 labels: sklearn's label checks are ~2x faster than on bool.
    return float(roc_auc_score(rel.astype(np.int8), score))


def bootstrap_ndcg(y_true, y_score, groups, k: int = 5, n_resamples: int = 1_000, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of NDCG@k: the groups (those with any gain, the
    metric's population) resampled with replacement ``n_resamples`` times. Per-group
    values are computed once, so this costs little more than the metric itself."""
    per_group = _ndcg(_rank(y_true, y_score, groups), _check_k(k, "k"))
    if len(per_group) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = per_group[rng.integers(0, len(per_group), (n_resamples, len(per_group)))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


def evaluate_ranking(
    y_true, y_score, groups, ks: Iterable[int] = (1, 3, 5), relevant_at: int = 2
) -> dict[str, float]:
    """All metrics in one pass over one sort.

    Keys: ``ndcg@k``, ``precision@k``, ``recall@k``, ``f1@k`` for each k in ``ks``,
    ``map``, ``auc``, ``n_rows``, ``n_groups``, ``n_groups_with_positive`` (groups with
    a row labelled >= relevant_at: the population of recall/F1/MAP) and
    ``n_groups_with_gain`` (groups with any label > 0: the population of NDCG).
    """
    ks = [_check_k(k, "ks") for k in ks]
    r = _rank(y_true, y_score, groups)
    out: dict[str, float] = {}
    for k in ks:
        out[f"ndcg@{k}"] = _mean(_ndcg(r, k))
        out[f"precision@{k}"] = _mean(_precision(r, k, relevant_at))
        out[f"recall@{k}"] = _mean(_recall(r, k, relevant_at))
        out[f"f1@{k}"] = _mean(_f1(r, k, relevant_at))
    out["map"] = _mean(_average_precision(r, relevant_at))
    out["auc"] = auc(y_true, y_score, relevant_at)
    out["n_rows"] = len(r.label)
    out["n_groups"] = len(r.starts)
    out["n_groups_with_positive"] = int((r.group_sum((r.label >= relevant_at).astype(np.int64)) > 0).sum())
    out["n_groups_with_gain"] = int((r.group_sum(r.label) > 0).sum())
    return out
