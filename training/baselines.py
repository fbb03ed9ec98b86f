"""Baseline rankers that the LightGBM ranker has to beat.

Every ranker has ``fit(train, interactions=None) -> self`` and ``score(df) -> ndarray``
(one float per row of ``df``, higher = rank first). ``train``/``df`` are ranking data
sets (one row per coupon impression: request_id, user_id, coupon_id, label, features,
...); ``interactions`` is the user x coupon table (user_id, coupon_id, weight) that
the collaborative-filtering rankers need. The binary target everywhere is
``label >= relevant_at`` (default 2 = redeemed), matching ``training.metrics``.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler, normalize
from sklearn.tree import DecisionTreeClassifier

# Added to every collaborative-filtering score, times normalised coupon popularity
# (in [0, 1]). Small enough not to reorder real similarity scores (which are on the
# interaction-weight scale, ~1), large enough to order the zero-score rows: unknown
# users, unknown coupons, or coupons none of a user's neighbours touched.
CF_POPULARITY_EPS = 1e-6


@runtime_checkable
class Ranker(Protocol):
    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None) -> "Ranker": ...

    def score(self, df: pd.DataFrame) -> np.ndarray: ...


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")


def _binary_target(train: pd.DataFrame, relevant_at: int) -> np.ndarray:
    _require_columns(train, ["label"], "train")
    y = (train["label"].to_numpy() >= relevant_at).astype(np.int8)
    if y.min() == y.max():
        raise ValueError(
            f"train has only one class at relevant_at={relevant_at} "
            f"({'all' if y.min() else 'no'} rows relevant); a classifier cannot be fitted"
        )
    return y


# --- non-personalised -----------------------------------------------------------


class PopularityRanker:
    """Per-coupon redemption rate, Bayesian-smoothed towards the global rate.

    rate(c) = (relevant(c) + prior_strength * global_rate) / (impressions(c) + prior_strength)

    i.e. a Beta prior worth ``prior_strength`` pseudo-impressions, so a coupon seen
    twice and redeemed once does not outrank one redeemed 300 times in 1000.
    Unseen coupons score the global rate.
    """

    def __init__(self, prior_strength: float = 20.0, relevant_at: int = 2):
        if prior_strength < 0:
            raise ValueError(f"prior_strength must be >= 0, got {prior_strength}")
        self.prior_strength = prior_strength
        self.relevant_at = relevant_at

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None) -> "PopularityRanker":
        _require_columns(train, ["coupon_id", "label"], "train")
        if len(train) == 0:
            raise ValueError("train is empty")
        relevant = train["label"] >= self.relevant_at
        self.global_rate_ = float(relevant.mean())
        stats = relevant.groupby(train["coupon_id"]).agg(["sum", "count"])
        m = self.prior_strength
        self.rates_ = (stats["sum"] + m * self.global_rate_) / (stats["count"] + m)
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        _require_columns(df, ["coupon_id"], "df")
        return df["coupon_id"].map(self.rates_).fillna(self.global_rate_).to_numpy(np.float64)


class PointInTimePopularityRanker:
    """A coupon's redemption rate over the 30 days before the impression, as the feature
    store had it then (``coupon_redemption_rate_30d``): what the server's fallback
    ranks by. Unlike PopularityRanker it knows coupons new since training. Missing: 0,
    as in the fallback."""

    def __init__(self, feature: str = "coupon_redemption_rate_30d"):
        self.feature = feature

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None) -> "PointInTimePopularityRanker":
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        _require_columns(df, [self.feature], "df")
        return np.nan_to_num(df[self.feature].to_numpy(np.float64), nan=0.0)


class RandomRanker:
    """A random order (seeded): the floor every model must clear."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None) -> "RandomRanker":
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        return np.random.default_rng(self.seed).random(len(df))


class OracleRanker:
    """Scores with the generator's ground-truth ``p_redeem``: the ceiling on synthetic data."""

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None) -> "OracleRanker":
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        if "p_redeem" not in df.columns:
            raise ValueError("OracleRanker needs a 'p_redeem' column (only synthetic data sets have one)")
        return df["p_redeem"].to_numpy(np.float64)


# --- feature-based classifiers ------------------------------------------------------


class _FeatureClassifierRanker:
    """sklearn classifier on ``feature_names`` with median imputation; score = P(relevant)."""

    def __init__(self, feature_names: Sequence[str], relevant_at: int = 2):
        if not feature_names:
            raise ValueError("feature_names must not be empty")
        self.feature_names = list(feature_names)
        self.relevant_at = relevant_at

    def _steps(self) -> tuple[BaseEstimator, ...]:
        """The pipeline steps after imputation."""
        raise NotImplementedError

    def _features(self, df: pd.DataFrame, what: str) -> np.ndarray:
        _require_columns(df, self.feature_names, what)
        return df[self.feature_names].to_numpy(np.float64)

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None):
        y = _binary_target(train, self.relevant_at)
        # keep_empty_features: an all-NaN column in train must not shift the columns at score time.
        imputer = SimpleImputer(strategy="median", keep_empty_features=True)
        self.model_: Pipeline = make_pipeline(imputer, *self._steps())
        self.model_.fit(self._features(train, "train"), y)
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._features(df, "df"))[:, 1]


class LogisticRegressionRanker(_FeatureClassifierRanker):
    """Logistic regression, the generator's own sigmoid model family, given its inputs the
    way a linear model needs them: categorical codes one-hot (not as magnitudes), each
    numeric feature median-imputed with a missing flag beside it, then standardised; and
    without absolute timestamps (``*_unix``: epoch seconds only drift under a time split;
    the relative ``ctx_days_since_*`` carry the recency)."""

    def __init__(self, feature_names: Sequence[str], C: float = 1.0, random_state: int = 0, relevant_at: int = 2,
                 categorical_features: Sequence[str] = ()):
        super().__init__([f for f in feature_names if not f.endswith("_unix")] or list(feature_names), relevant_at)
        self.C = C
        self.random_state = random_state
        self.categorical_features = [f for f in categorical_features if f in self.feature_names]

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None):
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import OneHotEncoder

        y = _binary_target(train, self.relevant_at)
        cat = [self.feature_names.index(f) for f in self.categorical_features]
        num = [i for i in range(len(self.feature_names)) if i not in cat]
        numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                                StandardScaler())
        categorical = make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0),
                                    OneHotEncoder(handle_unknown="ignore"))
        columns = ColumnTransformer([("numeric", numeric, num), ("categorical", categorical, cat)])
        self.model_ = make_pipeline(columns, LogisticRegression(C=self.C, max_iter=1000,
                                                                random_state=self.random_state))
        self.model_.fit(self._features(train, "train"), y)
        return self


class DecisionTreeRanker(_FeatureClassifierRanker):
    """Single CART tree. ``min_samples_leaf`` keeps leaf probabilities from being 0/1 on a few rows."""

    def __init__(
        self,
        feature_names: Sequence[str],
        max_depth: int = 6,
        min_samples_leaf: int = 20,
        random_state: int = 0,
        relevant_at: int = 2,
    ):
        super().__init__(feature_names, relevant_at)
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def _steps(self):
        return (
            DecisionTreeClassifier(
                max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf, random_state=self.random_state
            ),
        )


class RandomForestRanker(_FeatureClassifierRanker):
    def __init__(
        self,
        feature_names: Sequence[str],
        n_estimators: int = 200,
        max_depth: int = 10,
        min_samples_leaf: int = 5,
        n_jobs: int = 2,
        random_state: int = 0,
        relevant_at: int = 2,
    ):
        super().__init__(feature_names, relevant_at)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _steps(self):
        return (
            RandomForestClassifier(
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                min_samples_leaf=self.min_samples_leaf,
                n_jobs=self.n_jobs,
                random_state=self.random_state,
            ),
        )

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None) -> "RandomForestRanker":
        super().fit(train, interactions)
        # Fit in parallel, but predict on one thread: sklearn sums the trees'
        # probabilities across threads in arbitrary order, so parallel scores differ
        # run to run in the last bit (enough to reorder near-ties). ~2x slower scoring.
        self.model_[-1].set_params(n_jobs=1)
        return self


class LightGBMBinaryRanker:
    """A plain pointwise LightGBM classifier of ``label >= relevant_at`` on the ranker's
    features: LightGBM's defaults except the few parameters below, a fixed number of
    rounds (no validation set here, so no early stopping). The strong baseline: on real
    coupon data it beat lambdarank (issue 10). NaN is LightGBM's missing value, so no
    imputation; ``categorical_features`` absent from ``feature_names`` are ignored."""

    def __init__(
        self,
        feature_names: Sequence[str],
        categorical_features: Sequence[str] = (),
        num_boost_round: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_data_in_leaf: int = 50,
        seed: int = 0,
        num_threads: int = 2,
        relevant_at: int = 2,
    ):
        if not feature_names:
            raise ValueError("feature_names must not be empty")
        self.feature_names = list(feature_names)
        self.categorical_features = [f for f in categorical_features if f in self.feature_names]
        self.num_boost_round = num_boost_round
        self.params = {
            "objective": "binary", "learning_rate": learning_rate, "num_leaves": num_leaves,
            "min_data_in_leaf": min_data_in_leaf, "seed": seed, "deterministic": True, "force_row_wise": True,
            "num_threads": num_threads, "verbose": -1,
        }
        self.relevant_at = relevant_at

    def _features(self, df: pd.DataFrame, what: str) -> np.ndarray:
        _require_columns(df, self.feature_names, what)
        return df[self.feature_names].to_numpy(np.float64)

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None) -> "LightGBMBinaryRanker":
        y = _binary_target(train, self.relevant_at)
        data = lgb.Dataset(self._features(train, "train"), label=y, feature_name=self.feature_names,
                           categorical_feature=self.categorical_features, free_raw_data=True)
        self.booster_ = lgb.train(self.params, data, num_boost_round=self.num_boost_round)
        return self

    def score(self, df: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster_.predict(self._features(df, "df")), dtype=np.float64)


# --- collaborative filtering ----------------------------------------------------------


def _top_k_per_row(sim: np.ndarray, k: int, exclude_cols: np.ndarray) -> sp.csr_matrix:
    """Keep the k largest positive entries of each row of a dense similarity block.

    ``exclude_cols[i]`` is zeroed in row i first: the user/coupon itself, always its
    own best match. Equal similarities are broken by lower column index.
    """
    m, n = sim.shape
    sim[np.arange(m), exclude_cols] = 0.0
    # Cheap pre-filter instead of an argpartition over every entry (the bottleneck at
    # 100k users): split each row into >= k column blocks; the k-th largest block
    # maximum is <= the row's k-th largest value, so entries below it cannot be in
    # the top k. Typically only ~k candidates per row survive.
    width = max(1, min(64, n // k))
    block_max = np.maximum.reduceat(sim, np.arange(0, n, width), axis=1)
    kk = min(k, block_max.shape[1])
    lower = np.partition(block_max, -kk, axis=1)[:, -kk]
    rows, cols = np.nonzero((sim >= lower[:, None]) & (sim > 0))
    vals = sim[rows, cols]
    order = np.lexsort((-vals, rows))  # by row, best first; stable keeps column order on ties
    rows, cols, vals = rows[order], cols[order], vals[order]
    top = np.arange(len(rows)) - np.searchsorted(rows, rows) < k  # position within the row
    return sp.csr_matrix((vals[top], (rows[top], cols[top])), shape=sim.shape)


class _CFRanker:
    """Shared plumbing: id <-> index maps, the sparse user x coupon matrix, popularity."""

    def __init__(self, n_neighbors: int = 50, chunk_size: int = 256):
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
        self.n_neighbors = n_neighbors
        # Rows per dense similarity block: memory is chunk_size x n_users (or n_coupons).
        self.chunk_size = chunk_size

    def fit(self, train: pd.DataFrame, interactions: pd.DataFrame | None = None):
        if interactions is None:
            raise ValueError(f"{type(self).__name__} needs the interactions table (user_id, coupon_id, weight)")
        _require_columns(interactions, ["user_id", "coupon_id", "weight"], "interactions")
        inter = interactions[interactions["weight"] != 0]
        u_codes, self.users_ = pd.factorize(inter["user_id"])
        c_codes, self.coupons_ = pd.factorize(inter["coupon_id"])
        # coo -> csr sums duplicate (user, coupon) rows, e.g. a claim and a redemption.
        self.X_ = sp.csr_matrix(
            (inter["weight"].to_numpy(np.float64), (u_codes, c_codes)),
            shape=(len(self.users_), len(self.coupons_)),
        )
        pop = np.asarray(self.X_.sum(axis=0)).ravel()
        self.popularity_ = pop / pop.max() if len(pop) and pop.max() > 0 else pop
        self._fit_similarity()
        return self

    def _fit_similarity(self) -> None:
        pass

    def _predict_block(self, users: np.ndarray) -> np.ndarray:
        """Dense (len(users) x n_coupons) CF scores for a block of user indices."""
        raise NotImplementedError

    def _pair_scores(self, users: np.ndarray, coupons: np.ndarray) -> np.ndarray:
        """CF score for known (user index, coupon index) pairs, chunk_size users at a time."""
        out = np.zeros(len(users))
        unique_users, inv = np.unique(users, return_inverse=True)
        by_user = np.argsort(inv, kind="stable")
        inv_sorted = inv[by_user]
        for start in range(0, len(unique_users), self.chunk_size):
            stop = start + self.chunk_size
            rows = by_user[np.searchsorted(inv_sorted, start) : np.searchsorted(inv_sorted, stop)]
            pred = self._predict_block(unique_users[start:stop])
            out[rows] = pred[inv[rows] - start, coupons[rows]]
        return out

    def score(self, df: pd.DataFrame) -> np.ndarray:
        _require_columns(df, ["user_id", "coupon_id"], "df")
        u = self.users_.get_indexer(df["user_id"])
        c = self.coupons_.get_indexer(df["coupon_id"])
        out = np.zeros(len(df))
        known = (u >= 0) & (c >= 0)
        out[known] = self._pair_scores(u[known], c[known])
        # Tie-breaker: unknown users/coupons score 0 + eps * popularity (0 for unknown coupons).
        out[c >= 0] += CF_POPULARITY_EPS * self.popularity_[c[c >= 0]]
        return out


class UserKNNRanker(_CFRanker):
    """User-based CF: score(u, c) = sum_v sim(u, v) * w(v, c) / sum_v sim(u, v) over the
    ``n_neighbors`` users v most cosine-similar to u (u itself excluded).

    Dividing by the total neighbour similarity does not change the order within a
    request (one user) but keeps scores on the weight scale across users, which
    matters for the global AUC. Neighbours are found only for the users being
    scored, ``chunk_size`` users at a time, so memory peaks at one dense
    chunk_size x n_users float32 block (~100 MB at 256 x 100k), never n_users x n_users.
    """

    def _fit_similarity(self) -> None:
        # Rows unit length, so a dot product is the cosine. float32 halves the dense
        # block (chunk_size x n_users) and is ample precision for choosing neighbours.
        self.Xn_ = normalize(self.X_, norm="l2", axis=1).astype(np.float32)
        self.XnT_ = self.Xn_.T.tocsr()

    def _predict_block(self, users: np.ndarray) -> np.ndarray:
        sim = (self.Xn_[users] @ self.XnT_).toarray()  # block x n_users
        W = _top_k_per_row(sim, self.n_neighbors, exclude_cols=users)
        total = np.asarray(W.sum(axis=1)).ravel()
        pred = (W @ self.X_).toarray()  # block x n_coupons: dense is fine, coupons are few
        return pred / np.where(total > 0, total, 1.0)[:, None]


class ItemKNNRanker(_CFRanker):
    """Item-based CF: score(u, c) = sum_j sim(c, j) * w(u, j) over the ``n_neighbors``
    coupons j most cosine-similar to c (c itself excluded).

    An unnormalised sum (implicit-feedback top-N convention): dividing by the
    similarity of the user's neighbours would give a coupon with a single weak
    co-redemption the same score as one with many strong ones.
    """

    def _fit_similarity(self) -> None:
        Xc = normalize(self.X_, norm="l2", axis=0).tocsc()  # columns unit length
        n_coupons = Xc.shape[1]
        blocks = []
        for start in range(0, n_coupons, self.chunk_size):
            idx = np.arange(start, min(start + self.chunk_size, n_coupons))
            sim = (Xc[:, idx].T @ Xc).toarray()
            blocks.append(_top_k_per_row(sim, self.n_neighbors, exclude_cols=idx))
        # S_[c, j] = sim(c, j) for j among c's neighbours; transposed for X @ S.T.
        self.S_T_ = sp.vstack(blocks).T.tocsr() if blocks else sp.csr_matrix((0, 0))

    def _predict_block(self, users: np.ndarray) -> np.ndarray:
        return (self.X_[users] @ self.S_T_).toarray()


BASELINES: dict[str, Callable[..., Ranker]] = {
    "popularity": PopularityRanker,
    "pit_popularity": PointInTimePopularityRanker,
    "random": RandomRanker,
    "logistic_regression": LogisticRegressionRanker,
    "user_knn": UserKNNRanker,
    "item_knn": ItemKNNRanker,
    "decision_tree": DecisionTreeRanker,
    "random_forest": RandomForestRanker,
    "lightgbm_binary": LightGBMBinaryRanker,
    "oracle": OracleRanker,
}
