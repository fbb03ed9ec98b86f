"""The LightGBM lambdarank model: input checks, training with early stopping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml

from couponrank.training.dataset import TrainingDataError

CONFIG_PATH = Path(__file__).resolve().parent / "ranker.yaml"


def load_config(path: Path = CONFIG_PATH) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"{path}: training config not found")
    config = yaml.safe_load(path.read_text())
    for key in ("config_version", "lightgbm", "split", "max_group_size", "relevant_at"):
        if key not in config:
            raise TrainingDataError(f"{path}: missing key '{key}'")
    return config


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
    validation_ndcg: float

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return self.booster.predict(frame[self.features].to_numpy(np.float64),
                                    num_iteration=self.best_iteration)


def _dataset(frame: pd.DataFrame, features: list[str], config: dict, reference=None) -> lgb.Dataset:
    # lambdarank needs each group's rows contiguous; sort by request then keep order
    frame = frame.sort_values(["request_id", "position"], kind="stable")
    groups = frame.groupby("request_id", sort=False).size().to_numpy()
    return lgb.Dataset(
        frame[features].to_numpy(np.float64), label=frame["label"].to_numpy(), group=groups,
        feature_name=features, categorical_feature=list(config.get("categorical_features", [])),
        reference=reference, free_raw_data=True,
    )


def train_ranker(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], config: dict) -> TrainedRanker:
    check_training_frame(train, features, config, "training period")
    check_training_frame(valid, features, config, "validation period")
    params = dict(config["lightgbm"])
    monotone = config.get("monotone_constraints", {})
    params["monotone_constraints"] = [int(monotone.get(f, 0)) for f in features]
    dtrain = _dataset(train, features, config)
    dvalid = _dataset(valid, features, config, reference=dtrain)
    evals: dict = {}
    callbacks = [lgb.record_evaluation(evals)]
    if config.get("early_stopping_rounds"):  # 0 or null: keep every round
        callbacks.append(lgb.early_stopping(config["early_stopping_rounds"], verbose=False))
    booster = lgb.train(
        params, dtrain, num_boost_round=config["num_boost_round"], valid_sets=[dvalid], valid_names=["validation"],
        callbacks=callbacks,
    )
    best = booster.best_iteration or booster.current_iteration()
    metric = f"ndcg@{params['eval_at'][0]}"
    return TrainedRanker(booster, features, best, float(evals["validation"][metric][best - 1]))
