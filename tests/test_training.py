"""Training: point-in-time training sets, a leak-free time split, bad input refused
with no artifact written, a verified artifact."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from couponrank.cli import main
from couponrank.features import repo
from couponrank.training import artifact
from couponrank.training.dataset import TrainingDataError, build_training_set, label_impressions
from couponrank.training.ranker import CONFIG_PATH, check_training_frame, load_config, train_ranker
from couponrank.training.split import time_split

pytestmark = pytest.mark.clock  # date-sensitive: run again with the clock moved ahead
SERVICE = load_config()["feature_service"]


@pytest.fixture(scope="module")
def tiny_repo(generated_features):
    raw, ws = generated_features
    repo.apply(ws)
    return raw, ws


@pytest.fixture(scope="module")
def training_set(tiny_repo):
    raw, ws = tiny_repo
    return build_training_set(ws, label_impressions(raw), SERVICE)


def test_the_join_in_chunks_equals_the_join_at_once(training_set, tiny_repo):
    raw, ws = tiny_repo
    impressions = label_impressions(raw)
    n = len(impressions)
    assert n > 3_000  # several chunks of 1,000, the last one short
    chunked = build_training_set(ws, impressions, SERVICE, chunk_rows=1_000)
    at_once = build_training_set(ws, impressions, SERVICE, chunk_rows=0)
    pd.testing.assert_frame_equal(chunked.frame, at_once.frame)
    pd.testing.assert_frame_equal(chunked.frame, training_set.frame)


def test_labels_follow_the_impression_within_the_window(generated_raw):
    imp = label_impressions(generated_raw, timedelta(hours=72)).set_index("impression_id")
    ce = pd.read_parquet(generated_raw / "coupon_events.parquet")
    red = ce[ce.event_type == "redemption"]
    shown = imp.loc[red.impression_id, "event_timestamp"].to_numpy()
    within = (red.event_ts.to_numpy() - shown) <= np.timedelta64(72, "h")
    assert (imp.loc[red.impression_id[within], "label"] == 2).all()
    assert set(imp.label.unique()) == {0, 1, 2}
    # a zero-length window leaves nothing redeemed
    assert (label_impressions(generated_raw, timedelta(0)).label == 0).all()
    assert (imp.label_closes == imp.event_timestamp + pd.Timedelta(hours=72)).all()


def test_labels_over_the_coupons_validity(generated_raw):
    """label_window None: a redemption counts whenever it falls within the coupon's
    validity, as a campaign's coupon may be redeemed any time it runs."""
    window = label_impressions(generated_raw, timedelta(hours=1)).set_index("impression_id")
    validity = label_impressions(generated_raw, None).set_index("impression_id")
    valid_to = pd.read_parquet(generated_raw / "coupons.parquet").set_index("coupon_id").valid_to
    assert (validity.label_closes == validity.coupon_id.map(valid_to)).all()
    assert (validity.label >= window.label).all() and (validity.label > window.label).any()
    ce = pd.read_parquet(generated_raw / "coupon_events.parquet")
    red = ce[ce.event_type == "redemption"]
    assert (validity.loc[red.impression_id, "label"] == 2).all()  # the generator redeems within validity


def test_training_rows_only_see_snapshots_from_their_past(training_set, tiny_repo):
    """Recompute user_activity by hand: the latest source row stamped <= the impression."""
    _, ws = tiny_repo
    src = pd.read_parquet(ws / "data" / "user_activity.parquet")
    src["user_id"] = src.user_id.astype(str)
    frame = training_set.frame.sample(500, random_state=1).sort_values("event_timestamp")
    expected = pd.merge_asof(frame[["impression_id", "user_id", "event_timestamp"]],
                             src.sort_values("event_timestamp")[["user_id", "event_timestamp", "user_views_30d",
                                                                 "user_last_event_unix"]],
                             on="event_timestamp", by="user_id", direction="backward", allow_exact_matches=True)
    got = frame.set_index("impression_id").loc[expected.impression_id]
    np.testing.assert_array_equal(got.user_views_30d.to_numpy(), expected.user_views_30d.to_numpy())
    # the on-demand view read the same snapshot's last event (an input the service itself
    # does not hold), and no feature is computed from an event at or after the impression
    ts = expected.event_timestamp.map(pd.Timestamp.timestamp).to_numpy()
    days = (ts - expected.user_last_event_unix.to_numpy()) / 86400
    np.testing.assert_allclose(got.ctx_days_since_last_event.to_numpy(), days, equal_nan=True)
    assert np.isfinite(days).mean() > 0.5 and (days[np.isfinite(days)] > 0).all()
    assert frame.user_views_30d.notna().mean() > 0.5


def test_every_impression_keeps_its_row_and_features_are_numeric(training_set, generated_raw):
    assert len(training_set.frame) == len(label_impressions(generated_raw))
    assert len(training_set.features) >= 40
    assert all(training_set.frame[f].dtype == np.float64 for f in training_set.features)


def test_split_never_leaks_future_data(training_set):
    frame = training_set.frame
    split = time_split(frame.event_timestamp, validation_fraction=0.15, test_fraction=0.2)
    part = split.assign(frame.event_timestamp)
    ts = frame.event_timestamp
    assert ts[part == "train"].max() < split.validation_start <= ts[part == "validation"].min()
    assert ts[part == "validation"].max() < split.test_start <= ts[part == "test"].min()
    # a request never straddles two parts
    assert (frame.assign(p=part).groupby("request_id").p.nunique() == 1).all()


def test_split_dates_by_hand():
    ts = pd.Series(pd.date_range("2026-06-01", "2026-06-20 23:00", freq="h", tz="UTC"))
    s = time_split(ts, validation_fraction=0.15, test_fraction=0.2)
    assert (s.validation_start, s.test_start, s.test_end) == (
        pd.Timestamp("2026-06-14", tz="UTC"), pd.Timestamp("2026-06-17", tz="UTC"), pd.Timestamp("2026-06-21", tz="UTC"))


@pytest.mark.parametrize("breakage, message", [
    (lambda f: f.iloc[0:0], "empty training set"),
    (lambda f: f.assign(label=0), "single class"),
    (lambda f: f.assign(label=f.label.where(f.index != f.index[0], np.nan)), "NaN label"),
    (lambda f: f.assign(request_id="one-giant-request"), "more than max_group_size"),
])
def test_bad_training_data_is_refused(training_set, breakage, message):
    with pytest.raises(TrainingDataError, match=message):
        check_training_frame(breakage(training_set.frame), training_set.features, load_config(), "training period")


def test_config_naming_a_feature_missing_from_the_registry(training_set):
    config = load_config()
    config["monotone_constraints"] = {**config["monotone_constraints"], "user_shoe_size": 1}
    with pytest.raises(TrainingDataError, match="missing from the registry.*user_shoe_size"):
        train_ranker(training_set.frame, training_set.frame, training_set.features, config)


def test_early_stopping_off_keeps_every_round(training_set):
    from couponrank.training.split import time_split

    config = load_config()
    config.update(num_boost_round=7, early_stopping_rounds=0)
    frame = training_set.frame
    part = time_split(frame.event_timestamp, **config["split"]).assign(frame.event_timestamp)
    ranker = train_ranker(frame[part == "train"], frame[part == "validation"], training_set.features, config)
    assert ranker.best_iteration == 7 and ranker.booster.num_trees() == 7


def test_train_cli_writes_no_artifact_on_bad_input(tiny_repo, tmp_path, capsys):
    raw, ws = tiny_repo
    bad = tmp_path / "config.yaml"
    bad.write_text(CONFIG_PATH.read_text().replace("max_group_size: 50", "max_group_size: 2"))
    models = tmp_path / "models"
    code = main(["train", "--raw", str(raw), "--repo", str(ws), "--models", str(models), "--config", str(bad),
                 "--quiet"])
    assert code == 2
    assert "more than max_group_size=2" in capsys.readouterr().err
    assert not models.exists() or not any(models.iterdir())


def test_train_writes_a_verified_artifact(tiny_repo, tmp_path, capsys):
    raw, ws = tiny_repo
    models = tmp_path / "models"
    assert main(["train", "--raw", str(raw), "--repo", str(ws), "--models", str(models), "--quiet"]) == 0
    assert "compiled scorer cached" in capsys.readouterr().out
    art = artifact.load_artifact(models)  # via LATEST
    assert list((art.path / "compiled").glob("*.o"))  # the trees compiled for serving, with the artifact
    for name in ("model.txt", "features.json", "metadata.json", "report.html", "ndcg_at_k.png",
                 "feature_importance.png", "calibration.png", "metrics.csv"):
        assert (art.path / name).is_file(), name
    meta = art.metadata
    assert meta["split"]["train_start"] < meta["split"]["validation_start"] < meta["split"]["test_start"]
    # the model's training data ends where validation starts (GetModelInfo.training_data_end_time)
    assert meta["training_range"] == {"start": meta["split"]["train_start"], "end": meta["split"]["validation_start"]}
    # scores -> probabilities: Platt or isotonic, chosen on held-out validation rows
    assert meta["calibration"]["method"] in ("platt", "isotonic")
    assert set(meta["calibration_validation_ece"]) == {"platt", "isotonic"}
    assert "test ECE" in (art.path / "report.html").read_text()
    # labels not known in time were left out and counted: 72 h windows crossing the two cuts, and at the log's end
    assert meta["rows_left_out"]["crosses_cut"] > 0 and meta["rows_left_out"]["censored"] > 0
    assert set(meta["baseline_ndcg@5"]) >= {"popularity", "logistic_regression", "user_knn", "item_knn",
                                            "decision_tree", "random_forest", "oracle"}
    assert len(art.features) >= 40 and art.features == json.loads((art.path / "features.json").read_text())["features"]
    # the model scores the training data the same after a round trip through the file
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(art.model_file))
    assert booster.feature_name() == art.features
    # altering the model afterwards is detected
    (art.path / "model.txt").write_text((art.path / "model.txt").read_text() + "\n")
    with pytest.raises(artifact.ArtifactError, match="checksum mismatch"):
        artifact.load_artifact(art.path)
