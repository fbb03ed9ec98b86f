"""Score the ranker and every baseline on the same test rows with the same metrics."""

from __future__ import annotations

import inspect
import time

import numpy as np
import pandas as pd

from couponrank.training.baselines import BASELINES
from couponrank.training.metrics import bootstrap_ndcg, evaluate_ranking

RANKER = "lightgbm_ranker"
FEATURE_BASELINES = {"logistic_regression", "decision_tree", "random_forest", "lightgbm_binary"}


def interactions_from(train: pd.DataFrame) -> pd.DataFrame:
    """User x coupon interaction weights from the training period only (claim 1, redemption 3)."""
    pos = train[train.label > 0]
    w = np.where(pos.label >= 2, 3.0, 1.0)
    return (pd.DataFrame({"user_id": pos.user_id, "coupon_id": pos.coupon_id, "weight": w})
            .groupby(["user_id", "coupon_id"], as_index=False)["weight"].sum())


def cold_start_mask(frame: pd.DataFrame) -> np.ndarray:
    """Users with no behaviour before the impression's snapshot: new to the store (no
    last event, so no days since it: ranker_v2 holds the relative time, ranker_v1 both).
    A frame with neither column has no known cold start."""
    for column in ("ctx_days_since_last_event", "user_last_event_unix"):
        if column in frame:
            return frame[column].isna().to_numpy()
    return np.zeros(len(frame), dtype=bool)


def fit_baselines(train: pd.DataFrame, features: list[str], config: dict, with_oracle: bool) -> dict:
    interactions = interactions_from(train)
    models = {}
    for name, params in config["baselines"].items():
        kwargs = dict(params or {})
        if name in FEATURE_BASELINES:
            kwargs["feature_names"] = features
        if name in ("lightgbm_binary", "logistic_regression"):
            kwargs.setdefault("categorical_features", list(config.get("categorical_features", [])))
        if "relevant_at" in inspect.signature(BASELINES[name]).parameters:
            kwargs.setdefault("relevant_at", config["relevant_at"])
        needs = kwargs.get("feature", inspect.signature(BASELINES[name]).parameters.get("feature"))
        needs = getattr(needs, "default", needs)
        if isinstance(needs, str) and needs not in train.columns:
            continue  # a baseline of one feature this data set does not have (e.g. UCI: no coupon stats)
        t = time.perf_counter()
        models[name] = BASELINES[name](**kwargs).fit(train, interactions)
        models[name].fit_seconds_ = time.perf_counter() - t
    if with_oracle:
        models["oracle"] = BASELINES["oracle"]().fit(train)
    return models


TIE_SEED = 0  # the one shuffle that decides ties, the same for every model
SCOPE_CHECKED_PLACEMENTS = ("cart", "checkout")  # as server/stages.py


def served_mask(frame: pd.DataFrame) -> np.ndarray:
    """Impressions the server would have ranked: its static rules on the logged request.
    Minimum spend met (or none) at every placement; at cart and checkout a category-
    scoped coupon's category in the cart. Brand and merchant scopes cannot be checked
    from the log (it holds the cart's categories only) and count as served. Columns
    missing (another feature set): every row counts as served."""
    served = np.ones(len(frame), dtype=bool)
    if "ctx_meets_min_spend" in frame:
        served &= frame["ctx_meets_min_spend"].to_numpy() != 0  # NaN: no minimum spend
    if {"placement", "ctx_coupon_scope", "ctx_cart_has_target_category"} <= set(frame.columns):
        from couponrank.features.request_features import COUPON_SCOPE_CODES

        checked = frame["placement"].isin(SCOPE_CHECKED_PLACEMENTS).to_numpy()
        category = frame["ctx_coupon_scope"].to_numpy() == COUPON_SCOPE_CODES["category"]
        served &= ~(checked & category & (frame["ctx_cart_has_target_category"].to_numpy() != 1))
    if {"membership_tier_rank", "coupon_audience_min_tier"} <= set(frame.columns):
        # a coupon's audience: members / a tier or above (segment audiences are not in the
        # frame's features and count as served); no membership row is a non-member
        rank = np.nan_to_num(frame["membership_tier_rank"].to_numpy(np.float64))
        served &= ~(frame["coupon_audience_min_tier"].to_numpy(np.float64) > rank)
    return served


def placement_masks(frame: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """("placement=<name>", rows) for each placement in the frame, in schema order (the
    member centre, issue 13, and every other one reported on its own)."""
    if "placement" not in frame:
        return []
    from couponrank.schema import PLACEMENTS

    placement = frame["placement"].astype(str).to_numpy()
    return [(f"placement={p}", placement == p) for p in PLACEMENTS if (placement == p).any()]


def metrics_table(test: pd.DataFrame, scores: dict[str, np.ndarray], config: dict) -> pd.DataFrame:
    """One row per (model, population: all, cold_start, served (the impressions the
    server's rules would have let through, served_mask), placement=<name> for each
    placement) with every metric, the sizes of the populations
    they average over (n_groups: precision; n_groups_with_positive: recall, F1, MAP;
    n_groups_with_gain: NDCG) and a 95% bootstrap interval of NDCG@5 (over requests).

    Ties are broken in one seeded random order of the rows, the same for every model: not
    by the logged position, which the logging policy (and the generator) reward, so that
    a constant score would otherwise beat a random order."""
    shuffle = np.random.default_rng(TIE_SEED).permutation(len(test))
    test = test.iloc[shuffle]
    cold = cold_start_mask(test)
    served = served_mask(test)
    k = 5 if 5 in config["eval_at"] else max(config["eval_at"])
    rows = []
    for name, score in scores.items():
        score = np.asarray(score)[shuffle]
        populations = [("all", np.ones(len(test), bool)), ("cold_start", cold), ("served", served),
                       *placement_masks(test)]
        for population, mask in populations:
            if not mask.any():
                continue
            args = (test.label.to_numpy()[mask], score[mask], test.request_id.to_numpy()[mask])
            m = evaluate_ranking(*args, ks=config["eval_at"], relevant_at=config["relevant_at"])
            lo, hi = bootstrap_ndcg(*args, k=k)
            rows.append({"model": name, "population": population, **m, f"ndcg@{k}_lo": lo, f"ndcg@{k}_hi": hi})
    return pd.DataFrame(rows)


def calibration_curve(prob: np.ndarray, labels: np.ndarray, relevant_at: int, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed redemption rate per predicted-probability decile."""
    q = pd.qcut(prob, bins, labels=False, duplicates="drop")
    df = pd.DataFrame({"bin": q, "predicted": prob, "observed": (labels >= relevant_at).astype(float)})
    return df.groupby("bin").agg(predicted=("predicted", "mean"), observed=("observed", "mean"),
                                 rows=("observed", "size")).reset_index()
