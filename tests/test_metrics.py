"""Ranking metrics: hand-computed cases, invariances, and agreement with sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score

from couponrank.training.metrics import (
    auc,
    evaluate_ranking,
    f1_at_k,
    mean_average_precision,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

L2, L3 = math.log2(3), math.log2(4)  # discounts of ranks 2 and 3 (rank 1: log2(2) = 1)


# --- NDCG ----------------------------------------------------------------------


def test_ndcg_hand_computed():
    # labels [2,0,1] scored [0.1,0.9,0.5] -> ranked labels [0,1,2]
    # DCG@3  = (2^0-1)/1 + (2^1-1)/log2(3) + (2^2-1)/log2(4) = 0 + 0.6309 + 1.5 = 2.1309
    # IDCG@3 = ranked [2,1,0]: 3/1 + 1/log2(3) + 0 = 3.6309
    dcg, idcg = 1 / L2 + 3 / L3, 3 + 1 / L2
    assert ndcg_at_k([2, 0, 1], [0.1, 0.9, 0.5], [7, 7, 7], k=3) == pytest.approx(dcg / idcg)
    assert dcg / idcg == pytest.approx(0.58688, abs=1e-5)
    # @1: DCG = 0 (top row has label 0), IDCG = 3 -> 0
    assert ndcg_at_k([2, 0, 1], [0.1, 0.9, 0.5], [7, 7, 7], k=1) == 0.0
    # @2: DCG = 0 + 1/log2(3); IDCG = 3 + 1/log2(3)
    assert ndcg_at_k([2, 0, 1], [0.1, 0.9, 0.5], [7, 7, 7], k=2) == pytest.approx((1 / L2) / (3 + 1 / L2))


def test_ndcg_perfect_and_reversed():
    y = [2, 1, 0, 0]
    assert ndcg_at_k(y, [4, 3, 2, 1], [0] * 4, k=4) == pytest.approx(1.0)
    # reversed: ranked labels [0,0,1,2]: DCG = 1/log2(4) + 3/log2(5); IDCG = 3 + 1/log2(3)
    expected = (1 / L3 + 3 / math.log2(5)) / (3 + 1 / L2)
    assert ndcg_at_k(y, [1, 2, 3, 4], [0] * 4, k=4) == pytest.approx(expected)


def test_ndcg_excludes_groups_without_gain():
    # group "a" perfect (1.0); group "b" all zeros -> IDCG = 0 -> left out, not counted as 0
    y = [2, 0, 0, 0]
    s = [0.9, 0.1, 0.5, 0.4]
    g = ["a", "a", "b", "b"]
    assert ndcg_at_k(y, s, g, k=2) == pytest.approx(1.0)
    assert math.isnan(ndcg_at_k([0, 0], [0.3, 0.2], [1, 1], k=2))


def test_ndcg_counts_claim_only_groups():
    # NDCG uses graded labels with no threshold: a claim-only group is evaluated.
    # group 1 perfect = 1; group 2 ranked labels [0,1]: DCG = 1/log2(3), IDCG = 1
    y, s, g = [2, 0, 0, 1], [0.9, 0.1, 0.9, 0.1], [1, 1, 2, 2]
    assert ndcg_at_k(y, s, g, k=2) == pytest.approx((1 + 1 / L2) / 2)


def test_ndcg_matches_sklearn_with_exponential_gains():
    # sklearn's ndcg_score uses the relevance as the gain (linear), so we feed it
    # 2^label - 1. It needs equal-size groups (2-D input) and scores all-zero groups
    # as 0, so compare per group on groups with some gain.
    rng = np.random.default_rng(0)
    n_groups, size = 300, 5
    y = rng.choice([0, 1, 2], size=(n_groups, size), p=[0.6, 0.25, 0.15])
    s = rng.random((n_groups, size))  # continuous: no ties, so tie handling cannot differ
    keep = y.sum(axis=1) > 0
    groups = np.repeat(np.arange(n_groups), size)
    for k in (1, 3, 5):
        ours = ndcg_at_k(y.ravel(), s.ravel(), groups, k=k)
        theirs = ndcg_score(2.0 ** y[keep] - 1, s[keep], k=k)
        assert ours == pytest.approx(theirs, rel=1e-12)


# --- precision / recall / F1 ------------------------------------------------------


def test_precision_recall_f1_hand_computed():
    # group A (4 rows): labels [2,0,2,1], scores [0.8,0.9,0.1,0.5] -> ranked [0,2,1,2]
    # group B (3 rows): labels [0,2,0],   scores [0.3,0.2,0.1]     -> ranked [0,2,0]
    # group C (2 rows): labels [1,0]  (no redemption: not relevant at relevant_at=2)
    y = [2, 0, 2, 1, 0, 2, 0, 1, 0]
    s = [0.8, 0.9, 0.1, 0.5, 0.3, 0.2, 0.1, 0.7, 0.2]
    g = ["A"] * 4 + ["B"] * 3 + ["C"] * 2
    # @1: hits A=0, B=0, C=0 -> precision (0+0+0)/3 = 0; recall (0+0)/2 = 0; F1 = 0
    assert precision_at_k(y, s, g, k=1) == 0.0
    assert recall_at_k(y, s, g, k=1) == 0.0
    assert f1_at_k(y, s, g, k=1) == 0.0
    # @2: hits A=1 (of 2), B=1 (of 1), C=0
    #   precision = (1/2 + 1/2 + 0/2) / 3 = 1/3      (C has no positive but still counts)
    #   recall    = (1/2 + 1/1) / 2 = 3/4             (C excluded)
    #   F1: A = 2*.5*.5/(.5+.5) = .5; B = 2*.5*1/(1.5) = 2/3 -> mean 7/12
    assert precision_at_k(y, s, g, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(y, s, g, k=2) == pytest.approx(3 / 4)
    assert f1_at_k(y, s, g, k=2) == pytest.approx(7 / 12)
    # @5 > every group size: denominator min(k, size) = 4, 3, 2
    #   precision = (2/4 + 1/3 + 0/2) / 3 = 5/18; recall = 1 in A and B
    assert precision_at_k(y, s, g, k=5) == pytest.approx(5 / 18)
    assert recall_at_k(y, s, g, k=5) == pytest.approx(1.0)
    # relevant_at=1 makes claims relevant: @1 hits A=0 (label 0 on top), B=0, C=1
    assert precision_at_k(y, s, g, k=1, relevant_at=1) == pytest.approx(1 / 3)


def test_precision_perfect_small_group_is_one():
    # min(k, size) denominator: a perfect 3-item group where all are relevant scores 1 at k=5
    assert precision_at_k([2, 2, 2], [3, 2, 1], [0, 0, 0], k=5) == pytest.approx(1.0)


def test_recall_nan_without_any_positive():
    assert math.isnan(recall_at_k([0, 1], [0.1, 0.2], [0, 0], k=1))
    assert math.isnan(f1_at_k([0, 1], [0.1, 0.2], [0, 0], k=1))


# --- MAP -----------------------------------------------------------------------------


def test_map_hand_computed():
    # group 1 ranked labels [0,2,0,2]: relevant at ranks 2 and 4 -> AP = (1/2 + 2/4) / 2 = 0.5
    # group 2 ranked labels [2,0]:      AP = 1/1 = 1
    # group 3 no relevant rows: excluded -> MAP = 0.75
    y = [0, 2, 0, 2, 2, 0, 1, 0]
    s = [4, 3, 2, 1, 9, 8, 5, 6]
    g = [1, 1, 1, 1, 2, 2, 3, 3]
    assert mean_average_precision(y, s, g) == pytest.approx(0.75)
    assert mean_average_precision([2, 2, 0], [3, 2, 1], [0, 0, 0]) == pytest.approx(1.0)
    # reversed [0,2,2]: (1/2 + 2/3) / 2 = 7/12
    assert mean_average_precision([2, 2, 0], [1, 2, 3], [0, 0, 0]) == pytest.approx(7 / 12)


def test_map_matches_sklearn_average_precision():
    rng = np.random.default_rng(1)
    sizes = rng.integers(2, 8, size=200)
    g = np.repeat(np.arange(len(sizes)), sizes)
    y = rng.choice([0, 1, 2], size=len(g), p=[0.6, 0.2, 0.2])
    s = rng.random(len(g))
    expected = [
        average_precision_score(y[g == i] >= 2, s[g == i]) for i in range(len(sizes)) if (y[g == i] >= 2).any()
    ]
    assert mean_average_precision(y, s, g) == pytest.approx(np.mean(expected), rel=1e-12)


# --- shared conventions: ties, non-contiguous groups ----------------------------------


def test_ties_break_by_original_row_order():
    # Equal scores keep row order, so the same labels give different results by position.
    assert ndcg_at_k([2, 0], [0.5, 0.5], [0, 0], k=1) == 1.0
    assert ndcg_at_k([0, 2], [0.5, 0.5], [0, 0], k=1) == 0.0
    assert precision_at_k([0, 2], [0.5, 0.5], [0, 0], k=1) == 0.0


def test_non_contiguous_groups_equal_contiguous():
    # Interleaved groups give the same answer as the same rows sorted by group.
    y = np.array([2, 0, 0, 1, 2, 0, 0, 2])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    g = np.array(["x", "y", "x", "y", "x", "y", "x", "y"])
    by_group = np.argsort(g, kind="stable")
    a = evaluate_ranking(y, s, g, ks=(1, 2, 3))
    b = evaluate_ranking(y[by_group], s[by_group], g[by_group], ks=(1, 2, 3))
    assert a == pytest.approx(b)
    # hand check group x: labels [2,0,2,0] scores [.1,.3,.5,.7] -> ranked [0,2,0,2]
    #   AP = (1/2 + 2/4)/2 = 0.5; group y: labels [0,1,0,2] scores [.2,.4,.6,.8] -> [2,0,1,0]: AP = 1
    assert a["map"] == pytest.approx(0.75)


def test_row_permutation_invariance_on_random_data():
    rng = np.random.default_rng(2)
    n = 5_000
    g = rng.integers(0, 1_000, size=n)
    y = rng.choice([0, 1, 2], size=n, p=[0.7, 0.2, 0.1])
    s = rng.random(n)
    perm = rng.permutation(n)
    a = evaluate_ranking(y, s, g)
    b = evaluate_ranking(y[perm], s[perm], g[perm])
    assert a == pytest.approx(b)


# --- AUC and evaluate_ranking ---------------------------------------------------------


def test_auc_global_and_single_class():
    y = np.array([2, 0, 1, 2, 0])
    s = np.array([0.9, 0.1, 0.8, 0.4, 0.5])
    # binary relevance [1,0,0,1,0]; positives 0.9, 0.4 vs negatives 0.1, 0.8, 0.5:
    # pairs won: 0.9 beats all 3, 0.4 beats 0.1 only -> 4/6
    assert auc(y, s) == pytest.approx(4 / 6)
    assert auc(y, s) == pytest.approx(roc_auc_score(y >= 2, s))
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert math.isnan(auc([0, 1, 1], [0.1, 0.2, 0.3]))


def test_evaluate_ranking_keys_and_consistency():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(400), 5)
    y = rng.choice([0, 1, 2], size=len(g), p=[0.7, 0.2, 0.1])
    s = rng.random(len(g)) + 0.5 * y
    out = evaluate_ranking(y, s, g, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert out[f"ndcg@{k}"] == pytest.approx(ndcg_at_k(y, s, g, k))
        assert out[f"precision@{k}"] == pytest.approx(precision_at_k(y, s, g, k))
        assert out[f"recall@{k}"] == pytest.approx(recall_at_k(y, s, g, k))
        assert out[f"f1@{k}"] == pytest.approx(f1_at_k(y, s, g, k))
    assert out["map"] == pytest.approx(mean_average_precision(y, s, g))
    assert out["auc"] == pytest.approx(roc_auc_score(y >= 2, s))
    assert out["n_rows"] == 2000 and out["n_groups"] == 400
    has_pos = np.bincount(g, weights=y >= 2) > 0
    assert out["n_groups_with_positive"] == has_pos.sum()
    assert out["n_groups_with_gain"] == (np.bincount(g, weights=y) > 0).sum()
    # informative scores beat the default of random ranking
    assert out["auc"] > 0.7


# --- input validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "y, s, g, k, match",
    [
        ([2, 0], [0.1, 0.2, 0.3], [0, 0], 1, "same length"),
        ([2, 0], [0.1, 0.2], [0], 1, "same length"),
        ([2, 0], [0.1, np.nan], [0, 0], 1, "y_score contains NaN"),
        ([2, np.nan], [0.1, 0.2], [0, 0], 1, "y_true contains NaN"),
        ([2, 0], [0.1, 0.2], [0, None], 1, "groups contains missing"),
        ([2, -1], [0.1, 0.2], [0, 0], 1, "non-negative"),
        ([], [], [], 1, "empty"),
        ([2, 0], [0.1, 0.2], [0, 0], 0, "k must be >= 1"),
        ([2, 0], [0.1, 0.2], [0, 0], 1.5, "k must be an integer"),
    ],
)
def test_bad_inputs_raise(y, s, g, k, match):
    with pytest.raises(ValueError, match=match):
        ndcg_at_k(y, s, g, k=k)


def test_bad_ks_and_auc_inputs_raise():
    with pytest.raises(ValueError, match="ks must be >= 1"):
        evaluate_ranking([2, 0], [0.1, 0.2], [0, 0], ks=(0, 3))
    with pytest.raises(ValueError, match="y_score contains NaN"):
        auc([2, 0], [np.nan, 0.2])
    with pytest.raises(ValueError, match="same length"):
        auc([2, 0], [0.2])


# --- intervals and ties in the evaluation table ---------------------------------


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_groups():
    from couponrank.training.metrics import bootstrap_ndcg

    rng = np.random.default_rng(3)

    def data(n_groups):
        groups = np.repeat(np.arange(n_groups), 5)
        y = (rng.random(len(groups)) < 0.3).astype(float) * 2
        return y, y + rng.normal(0, 2, len(y)), groups

    y, s, g = data(200)
    lo, hi = bootstrap_ndcg(y, s, g, k=5)
    assert lo < ndcg_at_k(y, s, g, k=5) < hi
    assert bootstrap_ndcg(y, s, g, k=5) == (lo, hi)  # seeded
    y2, s2, g2 = data(5_000)
    lo2, hi2 = bootstrap_ndcg(y2, s2, g2, k=5)
    assert hi2 - lo2 < (hi - lo) / 3
    assert all(math.isnan(v) for v in bootstrap_ndcg([0, 0], [1, 2], [1, 1]))  # no group with gain


def test_ties_are_not_broken_by_the_logged_position():
    """A constant score must not earn the logged order's NDCG: with positives always logged
    first, the old stable tie-break gave a constant score NDCG 1."""
    import pandas as pd

    from couponrank.training.evaluate import metrics_table

    n = 400
    test = pd.DataFrame({"request_id": np.repeat(np.arange(n // 4), 4).astype(str),
                         "label": np.tile([2, 0, 0, 0], n // 4), "user_last_event_unix": 1.0})
    config = {"eval_at": [1, 5], "relevant_at": 2}
    table = metrics_table(test, {"constant": np.zeros(n), "perfect": test.label.to_numpy(float)}, config)
    by = table[table.population == "all"].set_index("model")
    assert by.loc["perfect", "ndcg@1"] == 1.0
    assert 0.15 < by.loc["constant", "ndcg@1"] < 0.35  # about 1 in 4, as a random order
    assert {"n_groups", "n_groups_with_gain", "ndcg@5_lo", "ndcg@5_hi"} <= set(table.columns)


def test_served_slates_follow_the_servers_static_rules():
    import pandas as pd

    from couponrank.features.request_features import COUPON_SCOPE_CODES
    from couponrank.training.evaluate import served_mask

    cat, every = COUPON_SCOPE_CODES["category"], COUPON_SCOPE_CODES["all"]
    frame = pd.DataFrame({
        "placement":                    ["home", "home", "cart", "cart", "checkout", "home"],
        "ctx_meets_min_spend":          [1.0,    0.0,    1.0,    1.0,    np.nan,     1.0],
        "ctx_coupon_scope":             [cat,    every,  cat,    cat,    every,      cat],
        "ctx_cart_has_target_category": [0.0,    1.0,    0.0,    1.0,    0.0,        0.0],
    })
    # below the minimum spend: never; category not in the cart: only at cart / checkout
    assert served_mask(frame).tolist() == [True, False, False, True, True, True]
    assert served_mask(frame[["placement"]]).all()  # another feature set: no rule to apply


def test_served_slates_check_scope_where_the_server_does():
    from couponrank.server.stages import SCOPE_CHECKED_PLACEMENTS
    from couponrank.training.evaluate import SCOPE_CHECKED_PLACEMENTS as evaluation

    assert set(evaluation) == set(SCOPE_CHECKED_PLACEMENTS)  # training may not import the server
