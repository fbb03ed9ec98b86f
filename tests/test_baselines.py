"""Baseline rankers on small synthetic data sets built here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from couponrank.training.baselines import (
    BASELINES,
    CF_POPULARITY_EPS,
    DecisionTreeRanker,
    ItemKNNRanker,
    LogisticRegressionRanker,
    OracleRanker,
    PopularityRanker,
    RandomForestRanker,
    Ranker,
    UserKNNRanker,
)
from couponrank.training.metrics import auc

FEATURES = ["x_signal", "x_noise"]


def make_ranking_df(n_requests: int = 200, per_request: int = 4, seed: int = 0) -> pd.DataFrame:
    """Requests of 4 coupons; redemption driven by x_signal through a sigmoid, x_noise is noise."""
    rng = np.random.default_rng(seed)
    n = n_requests * per_request
    x_signal = rng.normal(size=n)
    x_noise = rng.normal(size=n)
    x_noise[rng.random(n) < 0.05] = np.nan  # imputation must cope
    p_redeem = 1 / (1 + np.exp(-(-1.0 + 2.5 * x_signal)))
    u = rng.random(n)
    label = np.where(u < p_redeem, 2, np.where(u < p_redeem + 0.15, 1, 0))
    request = np.repeat(np.arange(n_requests), per_request)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in request],
            "user_id": [f"u{i % 40}" for i in request],
            "coupon_id": [f"c{i}" for i in rng.integers(0, 8, size=n)],
            "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(request, unit="min"),
            "label": label,
            "x_signal": x_signal,
            "x_noise": x_noise,
            "p_redeem": p_redeem,
        }
    )


def make_interactions(df: pd.DataFrame) -> pd.DataFrame:
    """claim = 1, redemption = 3, as the lead builds them from training events."""
    pos = df[df["label"] > 0]
    return pd.DataFrame(
        {"user_id": pos["user_id"], "coupon_id": pos["coupon_id"], "weight": np.where(pos["label"] == 2, 3.0, 1.0)}
    )


def interactions(pairs: dict[str, dict[str, float]]) -> pd.DataFrame:
    rows = [(u, c, w) for u, cs in pairs.items() for c, w in cs.items()]
    return pd.DataFrame(rows, columns=["user_id", "coupon_id", "weight"])


def pairs_df(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["user_id", "coupon_id"])


@pytest.fixture(scope="module")
def data():
    df = make_ranking_df()
    train = df[df["request_id"].str[1:].astype(int) < 120]
    test = df[df["request_id"].str[1:].astype(int) >= 120]
    return train, test, make_interactions(train)


CONSTRUCTORS = {
    "popularity": {},
    "pit_popularity": {"feature": FEATURES[0]},
    "random": {},
    "logistic_regression": {"feature_names": FEATURES},
    "user_knn": {"n_neighbors": 5},
    "item_knn": {"n_neighbors": 5},
    "decision_tree": {"feature_names": FEATURES},
    "random_forest": {"feature_names": FEATURES, "n_estimators": 30},
    "lightgbm_binary": {"feature_names": FEATURES, "num_boost_round": 30},
    "oracle": {},
}


def test_registry_covers_all_baselines():
    assert set(BASELINES) == set(CONSTRUCTORS)


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_every_baseline_fits_and_scores_one_float_per_row(name, data):
    train, test, inter = data
    model = BASELINES[name](**CONSTRUCTORS[name])
    assert isinstance(model, Ranker)
    assert model.fit(train, inter) is model
    scores = model.score(test)
    assert scores.shape == (len(test),)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()


# --- popularity ------------------------------------------------------------------------


def test_popularity_smoothed_rates_and_unseen_coupon():
    # cA: 10 impressions, 5 redeemed; cB: 10 impressions, 1 redeemed (and 2 claims, not relevant)
    # global rate = 6/20 = 0.3; prior_strength m = 20:
    #   cA = (5 + 20*0.3)/(10 + 20) = 11/30, cB = (1 + 6)/30 = 7/30, unseen cZ = 0.3
    train = pd.DataFrame(
        {"coupon_id": ["cA"] * 10 + ["cB"] * 10, "label": [2] * 5 + [0] * 5 + [2] + [1] * 2 + [0] * 7}
    )
    model = PopularityRanker(prior_strength=20).fit(train)
    scores = model.score(pd.DataFrame({"coupon_id": ["cB", "cA", "cZ"]}))
    np.testing.assert_allclose(scores, [7 / 30, 11 / 30, 0.3])
    assert scores[1] > scores[2] > scores[0]
    # no prior: raw rates
    raw = PopularityRanker(prior_strength=0).fit(train).score(pd.DataFrame({"coupon_id": ["cA", "cB"]}))
    np.testing.assert_allclose(raw, [0.5, 0.1])


# --- feature classifiers --------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        LogisticRegressionRanker(FEATURES),
        RandomForestRanker(FEATURES, n_estimators=50),
        DecisionTreeRanker(FEATURES, max_depth=3),
    ],
    ids=["logreg", "forest", "tree"],
)
def test_feature_models_beat_random_on_auc(model, data):
    train, test, _ = data
    model_auc = auc(test["label"], model.fit(train).score(test))
    random_auc = auc(test["label"], np.random.default_rng(0).random(len(test)))
    oracle_auc = auc(test["label"], test["p_redeem"])
    assert model_auc > 0.7 > random_auc + 0.1
    assert model_auc <= oracle_auc + 0.05  # sanity: cannot be much better than the truth


def test_logistic_regression_learns_the_sign_of_the_signal(data):
    train, _, _ = data
    model = LogisticRegressionRanker(FEATURES).fit(train)
    probe = pd.DataFrame({"x_signal": [-1.0, 0.0, 1.0], "x_noise": [np.nan, 0.0, 0.0]})
    assert np.all(np.diff(model.score(probe)) > 0)


@pytest.mark.parametrize("cls", [LogisticRegressionRanker, DecisionTreeRanker, RandomForestRanker])
def test_fixed_random_state_is_deterministic(cls, data):
    train, test, _ = data
    kwargs = {"n_estimators": 30} if cls is RandomForestRanker else {}
    a = cls(FEATURES, random_state=7, **kwargs).fit(train).score(test)
    b = cls(FEATURES, random_state=7, **kwargs).fit(train).score(test)
    np.testing.assert_array_equal(a, b)


def test_feature_model_errors(data):
    train, test, _ = data
    with pytest.raises(ValueError, match="x_missing"):
        LogisticRegressionRanker(["x_signal", "x_missing"]).fit(train)
    with pytest.raises(ValueError, match="only one class"):
        LogisticRegressionRanker(FEATURES).fit(train.assign(label=0))
    model = RandomForestRanker(FEATURES, n_estimators=5).fit(train)
    with pytest.raises(ValueError, match="x_noise"):
        model.score(test.drop(columns="x_noise"))


# --- collaborative filtering ------------------------------------------------------------


def test_user_knn_recommends_what_a_near_identical_user_redeemed():
    inter = interactions(
        {
            "alice": {"c1": 3, "c2": 3, "c3": 3},
            "alice_twin": {"c1": 3, "c2": 3},  # alice minus c3
            # c4 is more popular than c3 overall, but only among unrelated users
            "bob": {"c4": 3, "c5": 1},
            "carol": {"c4": 3, "c6": 3},
            "dave": {"c4": 1, "c5": 3},
        }
    )
    for k in (1, 50):
        model = UserKNNRanker(n_neighbors=k).fit(None, inter)
        s = model.score(pairs_df([("alice_twin", "c3"), ("alice_twin", "c4")]))
        assert s[0] > s[1], k
        # weighted average of the neighbours' weights: alice (the only overlapping user) gave c3 a 3
        assert s[0] == pytest.approx(3.0, abs=1e-5)


def test_item_knn_ranks_co_redeemed_coupon_above_unrelated():
    pairs = {f"u{i}": {"cA": 3, "cB": 3} for i in range(5)}  # cA and cB always together
    pairs.update({f"v{i}": {"cC": 3, "cD": 1} for i in range(8)})  # cC more popular, never with cA
    pairs["target"] = {"cA": 3}
    model = ItemKNNRanker(n_neighbors=5).fit(None, interactions(pairs))
    s = model.score(pairs_df([("target", "cB"), ("target", "cC")]))
    assert s[0] > s[1]
    assert s[1] == pytest.approx(0.0, abs=1e-5)  # cC: no similarity to cA, only the tie-breaker


def test_cf_unknown_users_and_coupons_get_popularity_tie_breaker():
    inter = interactions({"a": {"c1": 3, "c2": 1}, "b": {"c1": 3}})
    for cls in (UserKNNRanker, ItemKNNRanker):
        model = cls().fit(None, inter)
        s = model.score(pairs_df([("stranger", "c1"), ("stranger", "c2"), ("stranger", "new"), ("a", "new")]))
        # popularity c1 = 6 (max -> 1.0), c2 = 1 -> 1/6; unknown coupon -> exactly 0
        np.testing.assert_allclose(s, [CF_POPULARITY_EPS, CF_POPULARITY_EPS / 6, 0.0, 0.0])


def _brute_force_cf(inter: pd.DataFrame, users, coupons, k: int, user_based: bool) -> np.ndarray:
    """Dense reference implementation of both CF rankers (without the tie-breaker)."""
    X = inter.pivot_table(index="user_id", columns="coupon_id", values="weight", aggfunc="sum", fill_value=0.0)
    M = X.to_numpy() if user_based else X.to_numpy().T
    unit = M / np.linalg.norm(M, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, 0.0)
    keep = np.zeros_like(sim, dtype=bool)
    np.put_along_axis(keep, np.argsort(-sim, axis=1)[:, :k], True, axis=1)
    S = np.where(keep & (sim > 0), sim, 0.0)
    ui, ci = X.index.get_indexer(users), X.columns.get_indexer(coupons)
    if user_based:
        pred = S @ M / S.sum(axis=1, keepdims=True)
        return pred[ui, ci]
    return (X.to_numpy() @ S.T)[ui, ci]


@pytest.mark.parametrize("cls, user_based", [(UserKNNRanker, True), (ItemKNNRanker, False)])
def test_cf_matches_dense_reference_and_chunking_does_not_matter(cls, user_based):
    rng = np.random.default_rng(5)
    n = 400  # continuous weights: no similarity ties, so top-k is unambiguous
    inter = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in rng.integers(0, 60, n)],
            "coupon_id": [f"c{i}" for i in rng.integers(0, 25, n)],
            "weight": rng.uniform(0.5, 3.0, n),
        }
    )
    # every user and coupon in the query appears in inter
    q = inter.sample(300, replace=True, random_state=1)[["user_id", "coupon_id"]]
    q["coupon_id"] = rng.permutation(q["coupon_id"].to_numpy())
    model = cls(n_neighbors=7, chunk_size=256).fit(None, inter)
    pop = inter.groupby("coupon_id")["weight"].sum()
    tie_break = CF_POPULARITY_EPS * (pop / pop.max()).loc[q["coupon_id"]].to_numpy()
    got = model.score(q) - tie_break
    expected = _brute_force_cf(inter, q["user_id"], q["coupon_id"], k=7, user_based=user_based)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)
    small_chunks = cls(n_neighbors=7, chunk_size=3).fit(None, inter).score(q)
    np.testing.assert_allclose(small_chunks, model.score(q), rtol=1e-6)


def test_cf_needs_interactions(data):
    train, _, _ = data
    with pytest.raises(ValueError, match="interactions"):
        UserKNNRanker().fit(train)
    with pytest.raises(ValueError, match="weight"):
        ItemKNNRanker().fit(train, pd.DataFrame({"user_id": ["a"], "coupon_id": ["c"]}))


# --- oracle --------------------------------------------------------------------------------


def test_oracle_reproduces_p_redeem_order(data):
    _, test, _ = data
    scores = OracleRanker().fit(test).score(test)
    np.testing.assert_array_equal(scores, test["p_redeem"].to_numpy())
    np.testing.assert_array_equal(np.argsort(scores), np.argsort(test["p_redeem"].to_numpy()))
    with pytest.raises(ValueError, match="p_redeem"):
        OracleRanker().score(test.drop(columns="p_redeem"))


def test_logistic_regression_one_hot_encodes_categories_and_skips_epoch_seconds():
    """A category whose middle code redeems best is learnt (a linear term in the code
    cannot); a missing value gets its own flag; *_unix inputs are not used."""
    from couponrank.training.baselines import LogisticRegressionRanker

    rng = np.random.default_rng(0)
    n = 3_000
    code = rng.integers(0, 3, n).astype(float)
    signal = rng.normal(size=n)
    signal[rng.random(n) < 0.2] = np.nan  # missing: a strong signal of its own below
    p = 1 / (1 + np.exp(-(np.where(code == 1, 2.0, -2.0) + np.where(np.isnan(signal), 1.5, 0.0))))
    df = pd.DataFrame({"request_id": np.arange(n).astype(str), "coupon_id": "c", "user_id": "u",
                       "label": np.where(rng.random(n) < p, 2, 0), "ctx_code": code, "x": signal,
                       "user_last_event_unix": rng.normal(1.8e9, 1e6, n)})
    model = LogisticRegressionRanker(["ctx_code", "x", "user_last_event_unix"], categorical_features=["ctx_code"])
    assert model.feature_names == ["ctx_code", "x"]
    scores = model.fit(df).score(df)
    by_code = pd.Series(scores).groupby(code).mean()
    assert by_code[1.0] > by_code[0.0] and by_code[1.0] > by_code[2.0]
    assert scores[np.isnan(signal)].mean() > scores[~np.isnan(signal)].mean()
