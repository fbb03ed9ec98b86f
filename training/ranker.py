"""The LightGBM ranker: input checks, training with early stopping, objective selection.

``lightgbm.objective`` in ranker.yaml names one objective (``lambdarank``,
``rank_xendcg``, ``binary``), a list of them, or ``auto`` (all three). With several,
each is trained on the same rows, features, monotone constraints, categorical features
and seed, early-stopped on the validation set with its own LightGBM metric (NDCG for
the ranking objectives, binary log loss for ``binary``), and the one with the best
validation NDCG@k under the project's own metric (training.metrics: graded gains, mean
over the groups holding any gain; the figure the report shows for the test set) is
kept. LightGBM's own NDCG scores a group without any positive as 1, which inflates it
wherever most groups hold no redemption; it is never reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

from couponrank.features.services import DEFAULT_FEATURE_SERVICE
from couponrank.training.dataset import TrainingDataError
from couponrank.training.metrics import ndcg_at_k

CONFIG_PATH = Path(__file__).resolve().parent / "ranker.yaml"

OBJECTIVES = ("lambdarank", "rank_xendcg", "binary")  # `auto` = all, in this order (ties keep the earlier)
RANKING_OBJECTIVES = {"lambdarank", "rank_xendcg"}
# Validation NDCG cut-off when the config's lightgbm section has no eval_at.
DEFAULT_SELECT_AT = 5


def load_config(path: Path = CONFIG_PATH) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"{path}: training config not found")
    config = yaml.safe_load(path.read_text())
    for key in ("config_version", "lightgbm", "split", "max_group_size", "relevant_at"):
        if key not in config:
            raise TrainingDataError(f"{path}: missing key '{key}'")
    try:
        objectives(config)
    except TrainingDataError as exc:
        raise TrainingDataError(f"{path}: {exc}") from None
    try:
        variants(config)
    except TrainingDataError as exc:
        raise TrainingDataError(f"{path}: {exc}") from None
    try:
        warm_up_days(config)
    except TrainingDataError as exc:
        raise TrainingDataError(f"{path}: {exc}") from None
    service = config.setdefault("feature_service", DEFAULT_FEATURE_SERVICE)
    if not isinstance(service, str) or not service.strip():
        raise TrainingDataError(f"{path}: feature_service: expected the name of a feature service, got {service!r}")
    return config


def objectives(config: dict) -> list[str]:
    """The candidate objectives named by ``lightgbm.objective``, in order, without repeats."""
    value = config.get("lightgbm", {}).get("objective", "lambdarank")
    allowed = f"one of {', '.join(OBJECTIVES)}, a list of them, or auto (all three)"
    if value == "auto":
        return list(OBJECTIVES)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise TrainingDataError(f"lightgbm.objective: expected {allowed}; got {value!r}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise TrainingDataError(
            f"lightgbm.objective: unknown objective {', '.join(repr(n) for n in unknown)}; expected {allowed}")
    return list(dict.fromkeys(names))


def variants(config: dict) -> list[dict]:
    """``lightgbm_variants``: parameter sets tried with every objective, each overriding
    ``lightgbm``'s (default: one, with no overrides)."""
    value = config.get("lightgbm_variants") or [{}]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TrainingDataError(f"lightgbm_variants: expected a list of parameter mappings; got {value!r}")
    for v in value:
        bad = [k for k in v if not isinstance(k, str) or k in ("objective", "metric")]
        if bad:
            raise TrainingDataError(f"lightgbm_variants: {', '.join(map(repr, bad))} cannot vary "
                                    "(objective: lightgbm.objective; metric follows the objective)")
    return value


def warm_up_days(config: dict) -> float:
    """``warm_up_days``: days after the data's first event left out of every part (0: none)."""
    days = config.get("warm_up_days") or 0
    if not isinstance(days, (int, float)) or isinstance(days, bool) or days < 0:
        raise TrainingDataError(f"warm_up_days: expected a number of days >= 0, got {days!r}")
    return days


def _candidate_name(objective: str, variant: dict, several: bool) -> str:
    if not several:
        return objective
    return objective + (" " + " ".join(f"{k}={v}" for k, v in variant.items()) if variant else " (lightgbm)")


def select_at(config: dict) -> int:
    """k of the validation NDCG@k that early stopping (ranking objectives) and selection use."""
    eval_at = config.get("lightgbm", {}).get("eval_at") or [DEFAULT_SELECT_AT]
    return int(eval_at[0])


def check_training_frame(frame: pd.DataFrame, features: list[str], config: dict, what: str) -> None:
    """Refuse data that cannot give a trustworthy model, naming the problem."""
    if frame.empty:
        raise TrainingDataError(f"{what}: no impressions (empty training set)")
    if frame["label"].isna().any():
        n = int(frame["label"].isna().sum())
        raise TrainingDataError(f"{what}: {n} impression(s) with a NaN label")
    if frame["label"].nunique() < 2:
        raise TrainingDataError(
            f"{what}: a single class (every label is {frame['label'].iat[0]}); nothing to learn to rank")
    sizes = frame.groupby("request_id").size()
    if sizes.max() > config["max_group_size"]:
        rid = sizes.idxmax()
        raise TrainingDataError(
            f"{what}: request {rid} shows {sizes.max()} coupons, more than max_group_size="
            f"{config['max_group_size']}")
    named = set(config.get("categorical_features", [])) | set(config.get("monotone_constraints", {}))
    unknown = sorted(named - set(features))
    if unknown:
        raise TrainingDataError(
            f"config names feature(s) missing from the registry's feature service: {', '.join(unknown)}")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise TrainingDataError(f"{what}: feature column(s) missing: {', '.join(missing)}")


@dataclass
class TrainedRanker:
    booster: lgb.Booster
    features: list[str]
    best_iteration: int
    # Validation NDCG@k of the kept model, the project's metric (training.metrics.ndcg_at_k).
    validation_ndcg: float
    objective: str = "lambdarank"
    # Every candidate tried (objective, with its lightgbm_variants overrides when there are
    # several) -> its validation NDCG@k (project metric); the kept one is the max.
    candidates: dict[str, float] = field(default_factory=dict)
    variant: dict = field(default_factory=dict)  # the kept candidate's overrides of lightgbm

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw scores, the scale the server serves (for ``binary``: the log-odds, not the probability)."""
        return self.booster.predict(frame[self.features].to_numpy(np.float64),
                                    num_iteration=self.best_iteration, raw_score=True)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    # the ranking objectives need each group's rows contiguous; sort by request then keep order
    return frame.sort_values(["request_id", "position"], kind="stable")


def _dataset(frame: pd.DataFrame, features: list[str], config: dict, objective: str,
             reference=None) -> lgb.Dataset:
    """``frame`` already sorted by _sorted. Binary: relevant (label >= relevant_at), no groups."""
    if objective == "binary":
        label, groups = (frame["label"].to_numpy() >= config["relevant_at"]).astype(np.float64), None
    else:
        label, groups = frame["label"].to_numpy(), frame.groupby("request_id", sort=False).size().to_numpy()
    return lgb.Dataset(
        frame[features].to_numpy(np.float64), label=label, group=groups,
        feature_name=features, categorical_feature=list(config.get("categorical_features", [])),
        reference=reference, free_raw_data=True,
    )


def _params(config: dict, features: list[str], objective: str, variant: dict | None = None) -> dict:
    params = {**config["lightgbm"], **(variant or {})}
    monotone = config.get("monotone_constraints", {})
    params["monotone_constraints"] = [int(monotone.get(f, 0)) for f in features]
    params["objective"] = objective
    if objective in RANKING_OBJECTIVES:
        # LightGBM's NDCG (a group without gain counts 1) only steers early stopping: those groups
        # add the same constant at every iteration, so (ties aside) it picks the project NDCG's iteration
        params.setdefault("metric", "ndcg")
        params.setdefault("eval_at", [select_at(config)])
    else:
        # binary stops early on the project's NDCG (train_ranker's feval), as candidates are
        # chosen by it: its log loss bottoms out long before its ranking does (issue 10:
        # 47 trees by log loss on Complete Journey, 255 by NDCG@5)
        params["metric"] = "None"
        for key in ("eval_at", "label_gain", "lambdarank_truncation_level", "lambdarank_norm"):
            params.pop(key, None)
    return params


def _check_binary(frame: pd.DataFrame, config: dict, what: str) -> str | None:
    """Why ``binary`` cannot train on ``frame`` (one class at relevant_at), or None."""
    relevant = frame["label"] >= config["relevant_at"]
    if relevant.all() or not relevant.any():
        return (f"{what}: objective binary needs relevant (label >= relevant_at={config['relevant_at']}) and "
                f"non-relevant rows; {'every' if relevant.all() else 'no'} row is relevant")
    return None


def _project_ndcg(valid_sorted: pd.DataFrame, k: int):
    """binary's early-stopping metric (a LightGBM feval) on the rows of the validation
    Dataset, in their (sorted) order: only the groups with a gain count in the project's
    NDCG, so only theirs are scored at each round."""
    with_gain = (valid_sorted.groupby("request_id", sort=False)["label"].transform("max") > 0).to_numpy()
    labels = valid_sorted["label"].to_numpy()[with_gain]
    groups = pd.factorize(valid_sorted["request_id"])[0][with_gain]

    def feval(scores, _data):
        value = ndcg_at_k(labels, scores[with_gain], groups, k) if with_gain.any() else float("nan")
        return f"ndcg@{k}", value, True

    return feval


def train_ranker(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], config: dict) -> TrainedRanker:
    """Train every candidate objective and keep the best on validation NDCG@k (project metric)."""
    names = objectives(config)
    check_training_frame(train, features, config, "training period")
    check_training_frame(valid, features, config, "validation period")
    if "binary" in names:
        problem = _check_binary(train, config, "training period")
        if problem and len(names) == 1:
            raise TrainingDataError(problem)
        if problem:  # auto / a list: the other objectives still can
            names.remove("binary")
    k = select_at(config)
    train_sorted, valid_sorted = _sorted(train), _sorted(valid)
    X_valid = valid[features].to_numpy(np.float64)
    project_ndcg = _project_ndcg(valid_sorted, k) if "binary" in names else None

    sets = variants(config)
    results: dict[str, tuple[lgb.Booster, int, float, str, dict]] = {}
    for objective in names:
        for variant in sets:
            # a Dataset per candidate: its binning and pre-filtering follow the parameters
            dtrain = _dataset(train_sorted, features, config, objective)
            dvalid = _dataset(valid_sorted, features, config, objective, reference=dtrain)
            callbacks = []
            if config.get("early_stopping_rounds"):  # 0 or null: keep every round
                callbacks.append(lgb.early_stopping(config["early_stopping_rounds"], verbose=False))
            booster = lgb.train(
                _params(config, features, objective, variant), dtrain, num_boost_round=config["num_boost_round"],
                valid_sets=[dvalid], valid_names=["validation"], callbacks=callbacks,
                feval=project_ndcg if objective == "binary" else None,
            )
            best = booster.best_iteration or booster.current_iteration()
            # scored in the validation frame's own row order: the test metrics' tie-break (metrics.py)
            scores = booster.predict(X_valid, num_iteration=best, raw_score=True)
            ndcg = ndcg_at_k(valid["label"].to_numpy(), scores, valid["request_id"].to_numpy(), k)
            results[_candidate_name(objective, variant, len(sets) > 1)] = (booster, best, float(ndcg), objective,
                                                                           dict(variant))
    candidates = {name: r[2] for name, r in results.items()}
    # NaN (no validation group with any gain) never wins; max keeps the first of equals
    chosen = max(candidates, key=lambda n: -np.inf if np.isnan(candidates[n]) else candidates[n])
    booster, best, ndcg, objective, variant = results[chosen]
    return TrainedRanker(booster, features, best, ndcg, objective, candidates, variant)
