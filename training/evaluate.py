"""Score the ranker and every baseline on the same test rows with the same metrics."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from couponrank.training.baselines import BASELINES
from couponrank.training.metrics import evaluate_ranking

RANKER = "lightgbm_ranker"
FEATURE_BASELINES = {"logistic_regression", "decision_tree", "random_forest"}


def interactions_from(train: pd.DataFrame) -> pd.DataFrame:
    """User x coupon interaction weights from the training period only (claim 1, redemption 3)."""
    pos = train[train.label > 0]
    w = np.where(pos.label >= 2, 3.0, 1.0)
    return (pd.DataFrame({"user_id": pos.user_id, "coupon_id": pos.coupon_id, "weight": w})
            .groupby(["user_id", "coupon_id"], as_index=False)["weight"].sum())


def cold_start_mask(frame: pd.DataFrame) -> np.ndarray:
    """Users with no behaviour before the impression's snapshot: new to the store."""
    return frame["user_last_event_unix"].isna().to_numpy()


def fit_baselines(train: pd.DataFrame, features: list[str], config: dict, with_oracle: bool) -> dict:
    interactions = interactions_from(train)
    models = {}
    for name, params in config["baselines"].items():
        kwargs = dict(params or {})
        if name in FEATURE_BASELINES:
            kwargs["feature_names"] = features
        t = time.perf_counter()
        models[name] = BASELINES[name](**kwargs).fit(train, interactions)
        models[name].fit_seconds_ = time.perf_counter() - t
    if with_oracle:
        models["oracle"] = BASELINES["oracle"]().fit(train)
    return models


def metrics_table(test: pd.DataFrame, scores: dict[str, np.ndarray], config: dict) -> pd.DataFrame:
    """One row per (model, population) with every metric."""
    cold = cold_start_mask(test)
    rows = []
    for name, score in scores.items():
        for population, mask in (("all", np.ones(len(test), bool)), ("cold_start", cold)):
            if not mask.any():
                continue
            m = evaluate_ranking(test.label.to_numpy()[mask], score[mask], test.request_id.to_numpy()[mask],
                                 ks=config["eval_at"], relevant_at=config["relevant_at"])
            rows.append({"model": name, "population": population, **m})
    return pd.DataFrame(rows)


def platt_calibrator(valid_scores: np.ndarray, valid_labels: np.ndarray, relevant_at: int) -> tuple[float, float]:
    """Map ranker scores to redemption probabilities: a, b in sigmoid(a * score + b)."""
    lr = LogisticRegression(C=1e6).fit(valid_scores.reshape(-1, 1), (valid_labels >= relevant_at).astype(int))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def calibration_curve(prob: np.ndarray, labels: np.ndarray, relevant_at: int, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed redemption rate per predicted-probability decile."""
    q = pd.qcut(prob, bins, labels=False, duplicates="drop")
    df = pd.DataFrame({"bin": q, "predicted": prob, "observed": (labels >= relevant_at).astype(float)})
    return df.groupby("bin").agg(predicted=("predicted", "mean"), observed=("observed", "mean"),
                                 rows=("observed", "size")).reset_index()
