"""`couponrank train`: training set -> time split -> ranker + baselines -> report -> artifact."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from couponrank.clock import utc_now
from couponrank.features.services import DEFAULT_FEATURE_SERVICE
from couponrank.training import artifact, evaluate, report
from couponrank.training.calibration import Calibrator, expected_calibration_error, fit_calibrator
from couponrank.training.dataset import (TrainingDataError, TrainingSet, build_training_set, data_start,
                                         label_impressions, log_end)
from couponrank.training.ranker import load_config, train_ranker, warm_up_days
from couponrank.training.split import TimeSplit, label_known, make_split


@dataclass
class TrainResult:
    path: Path
    version: str
    metrics: pd.DataFrame
    seconds: dict[str, float]


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _training_set(raw: Path, repo: Path, config: dict, quiet: bool) -> TrainingSet:
    _log("building the point-in-time training set through Feast ...", quiet)
    impressions = label_impressions(raw, label_window(config))
    return build_training_set(repo, impressions, service=config["feature_service"])


def train(raw: Path, repo: Path, models_dir: Path, config_path: Path | None = None,
          training_set: TrainingSet | None = None, quiet: bool = False) -> TrainResult:
    config = load_config(config_path) if config_path else load_config()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if training_set is None:
        training_set = _training_set(raw, repo, config, quiet)
    seconds["training_set"] = time.perf_counter() - t0
    if training_set.service != config["feature_service"]:
        raise TrainingDataError(f"the training set holds feature service '{training_set.service}''s features, the "
                                f"config names '{config['feature_service']}'; rebuild it")
    frame, features = training_set.frame, training_set.features
    split, frame, left_out = split_frame(frame, config, raw)
    part = split.assign(frame.event_timestamp, frame.get("campaign_id"))
    train_df, valid_df, test_df = (frame[part == p] for p in ("train", "validation", "test"))
    _log(f"split: train {split.train_start:%Y-%m-%d}..{split.validation_start:%Y-%m-%d} ({len(train_df):,}), "
         f"validation ..{split.test_start:%Y-%m-%d} ({len(valid_df):,}), "
         f"test ..{split.test_end:%Y-%m-%d} ({len(test_df):,}); left out: {left_out['crosses_cut']:,} whose "
         f"label window crosses into the next period, {left_out['censored']:,} censored at the log's end"
         + (f", {left_out['warm_up']:,} in the warm-up" if "warm_up" in left_out else "")
         + ("; by campaign: " + ", ".join(f"{sum(q == p for _, q in split.campaigns)} {p}"
                                           for p in ("train", "validation", "test")) if split.campaigns else ""),
         quiet)

    t = time.perf_counter()
    ranker = train_ranker(train_df, valid_df, features, config)
    seconds["ranker"] = time.perf_counter() - t
    tried = ", ".join(f"{k} {v:.4f}" for k, v in ranker.candidates.items())
    variant = "".join(f" {k}={v}" for k, v in ranker.variant.items())
    _log(f"ranker: {ranker.objective}{variant}, {ranker.best_iteration} trees, validation NDCG@5 {ranker.validation_ndcg:.4f} "
         f"(candidates: {tried}) ({seconds['ranker']:.1f}s)", quiet)

    t = time.perf_counter()
    calibrator, calibration_ece = fit_calibrator(ranker.score(valid_df), valid_df.label.to_numpy(),
                                                 valid_df.request_id.to_numpy(), config["relevant_at"])
    model_text = ranker.booster.model_to_string(num_iteration=ranker.best_iteration)
    version = artifact.new_version(model_text)
    with tempfile.TemporaryDirectory() as tmp:
        table = evaluate_and_report(train_df, test_df, features, config, ranker.score(test_df), calibrator,
                                    ranker.booster, Path(tmp), version, split, ranker.validation_ndcg,
                                    ranker.objective, ranker.candidates,
                                    report.service_sources(repo, config["feature_service"]))
        seconds["evaluation"] = time.perf_counter() - t
        summary = table[table.population == "all"].set_index("model")
        metadata = {
            "created_at": utc_now().isoformat(),
            "config_version": config["config_version"],
            "config": config,
            "feature_service": config["feature_service"],
            # the data the model was fitted on: the training period (validation and test follow it)
            "training_range": {"start": split.train_start.isoformat(), "end": split.validation_start.isoformat()},
            "split": split.to_dict(),
            "rows": {"train": len(train_df), "validation": len(valid_df), "test": len(test_df)},
            "rows_left_out": left_out,
            "best_iteration": ranker.best_iteration,
            "objective": ranker.objective,
            # validation NDCG@5 of each objective tried, by the project's metric (groups with a gain)
            "objective_candidates": ranker.candidates,
            # the kept candidate's lightgbm_variants overrides ({}: lightgbm's parameters as they are)
            "lightgbm_variant": ranker.variant,
            "validation_ndcg@5": ranker.validation_ndcg,
            "metrics": {k: float(v) for k, v in summary.loc[evaluate.RANKER].items()
                        if isinstance(v, (int, float))},
            "baseline_ndcg@5": {m: float(summary.loc[m, "ndcg@5"]) for m in summary.index if m != evaluate.RANKER},
            # scores -> redemption probabilities (training/calibration.py), and each method's
            # held-out ECE on validation that chose it
            "calibration": calibrator.to_dict(),
            "calibration_validation_ece": calibration_ece,
            "seconds": seconds,
        }
        features_doc = {"features": features, "categorical": config.get("categorical_features", []),
                        "monotone_constraints": config.get("monotone_constraints", {})}
        files = {n: Path(tmp) / n for n in REPORT_FILES}
        path = artifact.write_artifact(models_dir, version, model_text, features_doc, metadata, files)
    seconds["total"] = time.perf_counter() - t0
    return TrainResult(path, version, table, seconds)


def label_window(config: dict) -> timedelta | None:
    """``label_window_hours``: hours after the impression; null: the coupon's validity."""
    hours = config["label_window_hours"]
    return None if hours is None else timedelta(hours=hours)


def _closes(frame: pd.DataFrame, config: dict):
    """When each label became final: the training set's column (older cached sets: the window)."""
    if "label_closes" in frame:
        return frame.label_closes
    window = label_window(config)
    if window is None:
        raise ValueError("label_window_hours: null needs a training set with label_closes (rebuild it)")
    return window


def split_frame(frame: pd.DataFrame, config: dict, raw: Path | None) -> tuple[TimeSplit, pd.DataFrame, dict]:
    """The split, the impressions whose labels were known in time (split.label_known),
    and how many were left out."""
    by_campaign = any(k in config["split"] for k in ("validation_campaigns", "test_campaigns"))
    if by_campaign:
        frame = with_campaigns(frame, raw)
    split = make_split(frame.event_timestamp, config["split"], frame.get("campaign_id"))
    keep, left_out = known_rows(frame, split, config, raw)
    return split, frame[keep], left_out


def known_rows(frame: pd.DataFrame, split: TimeSplit, config: dict, raw: Path | None) -> tuple[np.ndarray, dict]:
    """Which impressions a model may learn from or be scored on: labels known in time
    (split.label_known) and past the warm-up; and how many were left out, by why."""
    end = log_end(raw) if raw is not None and (Path(raw) / "coupon_events.parquet").exists() \
        else frame.event_timestamp.max()
    keep, left_out = label_known(frame.event_timestamp, split, _closes(frame, config), end, frame.get("campaign_id"))
    warm_up = warm_up_until(frame, config, raw)
    if warm_up is not None:
        early = (frame.event_timestamp < warm_up).to_numpy() & keep
        left_out["warm_up"] = int(early.sum())
        keep &= ~early
    return keep, left_out


def warm_up_until(frame: pd.DataFrame, config: dict, raw: Path | None) -> pd.Timestamp | None:
    """``warm_up_days`` after the data's first event: impressions before it see feature
    windows the data's start cuts short, and are left out (None: no warm-up)."""
    days = warm_up_days(config)
    if not days:
        return None
    start = data_start(raw) if raw is not None and Path(raw).exists() else frame.event_timestamp.min()
    return start + pd.Timedelta(days=days)


def with_campaigns(frame: pd.DataFrame, raw: Path | None) -> pd.DataFrame:
    """``frame`` with each impression's campaign (its coupon's campaign_id in the raw data)."""
    if "campaign_id" in frame:
        return frame
    if raw is None or not (Path(raw) / "coupons.parquet").exists():
        raise TrainingDataError("split by campaign: the raw coupons table (coupons.campaign_id) is needed")
    coupons = pd.read_parquet(Path(raw) / "coupons.parquet", columns=["coupon_id", "campaign_id"])
    campaign = coupons.drop_duplicates("coupon_id", keep="last").set_index("coupon_id")["campaign_id"]
    return frame.assign(campaign_id=frame.coupon_id.map(campaign))


REPORT_FILES = ("report.html", "ndcg_at_k.png", "feature_importance.png", "calibration.png", "metrics.csv",
                "features.csv")


def evaluate_and_report(train_df, test_df, features, config, ranker_scores, calibration, booster, out: Path,
                        version: str, split, validation_ndcg: float | None = None, objective: str | None = None,
                        candidates: dict | None = None, sources: dict[str, str] | None = None) -> pd.DataFrame:
    """Baselines fitted on train_df, every model scored on test_df, report files in ``out``.
    ``sources``: feature -> its feature view, for the feature table (None: left blank)."""
    with_oracle = "p_redeem" in test_df and test_df.p_redeem.notna().all() and len(test_df) > 0
    baselines = evaluate.fit_baselines(train_df, features, config, with_oracle)
    scores = {evaluate.RANKER: ranker_scores}
    scores.update({name: m.score(test_df) for name, m in baselines.items()})
    table = evaluate.metrics_table(test_df, scores, config)
    prob = calibration(ranker_scores)
    curve = evaluate.calibration_curve(prob, test_df.label.to_numpy(), config["relevant_at"])
    test_ece = expected_calibration_error(prob, test_df.label.to_numpy() >= config["relevant_at"])
    # null rates over train_df: the rows the booster was fitted on
    features_table = report.feature_table(booster, features, train_df, sources)
    importance = features_table.set_index("feature").gain
    out.mkdir(parents=True, exist_ok=True)
    report.plot_ndcg_curves(test_df, scores, out / "ndcg_at_k.png")
    report.plot_importance(importance, out / "feature_importance.png")
    report.plot_calibration(curve, out / "calibration.png")
    table.to_csv(out / "metrics.csv", index=False)
    features_table.to_csv(out / "features.csv", index=False)
    facts = {"version": version, "split": json.dumps(split.to_dict()),
             "test rows": f"{len(test_df):,}", "trees": str(booster.current_iteration())}
    if validation_ndcg is not None:
        facts["validation NDCG@5"] = f"{validation_ndcg:.4f}"
    facts["calibration"] = f"{calibration.method}, test ECE {test_ece:.4f}"
    if objective is not None:
        facts["objective"] = objective + "".join(f"; tried {k}: validation NDCG@5 {v:.4f}"
                                                 for k, v in (candidates or {}).items())
    report.write_html(out / "report.html", f"CouponRank model {version}", facts, table,
                      ["ndcg_at_k.png", "feature_importance.png", "calibration.png"], {"Features": features_table})
    return table


def evaluate_model(model: Path, raw: Path, repo: Path, out: Path | None = None,
                   quiet: bool = False) -> pd.DataFrame:
    """`couponrank evaluate`: rebuild the data, re-score the saved model and baselines."""
    import lightgbm as lgb

    art = artifact.load_artifact(model)
    config = dict(art.metadata["config"])
    config.setdefault("feature_service", art.metadata.get("feature_service", DEFAULT_FEATURE_SERVICE))
    ts = _training_set(raw, repo, config, quiet)
    missing = [f for f in art.features if f not in ts.features]
    if missing:
        raise artifact.ArtifactError(f"{art.path}: model features missing from the registry: {', '.join(missing)}")
    split = TimeSplit.from_dict(art.metadata["split"])
    frame = with_campaigns(ts.frame, raw) if split.campaigns else ts.frame
    keep, _ = known_rows(frame, split, config, raw)
    frame = frame[keep]
    part = split.assign(frame.event_timestamp, frame.get("campaign_id"))
    train_df, test_df = frame[part == "train"], frame[part == "test"]
    booster = lgb.Booster(model_file=str(art.model_file))
    scores = booster.predict(test_df[art.features].to_numpy(np.float64), raw_score=True)  # as served
    cal = Calibrator.from_dict(art.metadata["calibration"])
    # the views of the service the model was trained on (as recorded), not of a newer one
    sources = report.service_sources(repo, art.metadata.get("feature_service", DEFAULT_FEATURE_SERVICE))
    return evaluate_and_report(train_df, test_df, art.features, config, scores, cal,
                               booster, Path(out or art.path), art.version, split, sources=sources)
