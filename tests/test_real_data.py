"""The UCI in-vehicle coupon adapter and evaluation (training/real_data.py).

Needs ../shared/data/in-vehicle-coupon/in-vehicle-coupon-recommendation.csv; skipped
when it is absent (the data is not copied into the repo).
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from couponrank.training import real_data as rd
from couponrank.training.dataset import TrainingDataError

pytestmark = pytest.mark.skipif(
    not rd.DATA_PATH.is_file(),
    reason="../shared/data/in-vehicle-coupon not present: real-data evaluation skipped")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return rd.load_uci()


@pytest.fixture(scope="module")
def frame(raw) -> pd.DataFrame:
    return rd.to_training_set(raw)


def test_load_shape(raw):
    assert raw.shape == (12684, 26)


def test_one_row_per_answer(raw, frame):
    assert len(frame) == len(raw)
    assert (frame["source_row"].to_numpy() == np.arange(len(raw))).all()


def test_respondent_groups_share_profile(raw, frame):
    profile = raw[rd.PROFILE_COLUMNS].fillna("missing").astype(str).agg("|".join, axis=1)
    joined = pd.DataFrame({"user_id": frame["user_id"], "request_id": frame["request_id"],
                           "profile": profile.to_numpy()[frame["source_row"]]})
    assert (joined.groupby("user_id")["profile"].nunique() == 1).all()
    assert (joined.groupby("request_id")["profile"].nunique() == 1).all()
    # a different profile is a different respondent
    assert (joined.groupby("profile")["user_id"].nunique() == 1).all()


def test_groups_are_one_situation(raw, frame):
    situation = raw[rd.SITUATION_COLUMNS].astype(str).agg("|".join, axis=1).to_numpy()[frame["source_row"]]
    assert (pd.Series(situation).groupby(frame["request_id"].to_numpy()).nunique() == 1).all()
    sizes = rd.group_size_counts(frame)
    assert sizes.index.max() <= 50 and (sizes.index * sizes).sum() == len(frame)
    # positions are 1..n inside every group
    pos = frame.groupby("request_id")["position"].agg(["min", "max", "size"])
    assert (pos["min"] == 1).all() and (pos["max"] == pos["size"]).all()


def test_labels_are_0_or_2(raw, frame):
    assert set(frame["label"].unique()) == {0, 2}
    assert ((frame["label"] == 2) == (raw["Y"].to_numpy() == 1)).all()


def test_feature_matrix_is_numeric(frame):
    for features in (rd.RANKER_FEATURES, rd.BASELINE_FEATURES):
        x = frame[features]
        assert not any(dt == object for dt in x.dtypes), x.dtypes[x.dtypes == object]
        assert all(np.issubdtype(dt, np.floating) for dt in x.dtypes)
    assert set(rd.CATEGORICAL_FEATURES) <= set(rd.RANKER_FEATURES)
    assert set(rd.MONOTONE_CONSTRAINTS) <= set(rd.RANKER_FEATURES)


def test_missing_answers_stay_nan(raw, frame):
    assert frame["bar_freq"].isna().sum() == raw["Bar"].isna().sum() > 0
    counts = rd.missing_counts(frame)
    assert set(counts.index) <= set(rd.FREQUENCY_COLUMNS.values()) | {"venue_freq"}


def test_ordinal_encoding(frame, raw):
    assert frame.loc[raw["Bar"] == "gt8", "bar_freq"].eq(4).all()
    assert frame.loc[raw["Bar"] == "never", "bar_freq"].eq(0).all()
    bar = raw["coupon"] == "Bar"
    assert frame.loc[bar, "venue_freq"].equals(frame.loc[bar, "bar_freq"])
    assert frame.loc[raw["toCoupon_GEQ25min"] == 1, "distance_level"].eq(2).all()
    assert set(frame["coupon_id"]) == {f"{c}|{e}" for c in rd.COUPON_SHORT.values() for e in ("2h", "1d")}


def test_respondent_split_is_disjoint(frame):
    part = rd.split_by_respondent(frame, seed=0)
    assert (frame.groupby("user_id").apply(lambda g: part[g.index].nunique(), include_groups=False) == 1).all()
    users = {p: set(frame.loc[part == p, "user_id"]) for p in ("train", "validation", "test")}
    assert not (users["train"] & users["validation"] or users["train"] & users["test"]
                or users["validation"] & users["test"])
    share = {p: len(u) / frame["user_id"].nunique() for p, u in users.items()}
    assert share["train"] == pytest.approx(0.6, abs=0.02) and share["test"] == pytest.approx(0.2, abs=0.02)
    assert part.equals(rd.split_by_respondent(frame, seed=0))  # seeded
    assert not part.equals(rd.split_by_respondent(frame, seed=1))


def test_warm_split_keeps_groups_whole(frame):
    part = rd.split_warm(frame, seed=0)
    assert (part.groupby(frame["request_id"]).nunique() == 1).all()
    test_users = set(frame.loc[part == "test", "user_id"])
    train_users = set(frame.loc[part == "train", "user_id"])
    assert len(test_users - train_users) == 0  # every test respondent has history
    assert (part == "train").mean() == pytest.approx(0.6, abs=0.03)


def test_missing_column_is_named(raw, tmp_path):
    with pytest.raises(TrainingDataError, match="CoffeeHouse"):
        rd.to_training_set(raw.drop(columns=["CoffeeHouse"]))
    path = tmp_path / "coupons.csv"
    raw.drop(columns=["Y"]).head(20).to_csv(path, index=False)
    with pytest.raises(TrainingDataError, match=r"coupons\.csv: missing column\(s\) Y"):
        rd.load_uci(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(TrainingDataError, match="nowhere.csv"):
        rd.load_uci(tmp_path / "nowhere.csv")


def test_unknown_category_is_an_error(raw):
    bad = raw.head(50).copy()
    bad.loc[3, "Bar"] = "daily"
    with pytest.raises(TrainingDataError, match="column Bar: unexpected value"):
        rd.to_training_set(bad)


@pytest.mark.parametrize("split", rd.SPLITS)
def test_end_to_end_subsample(frame, split):
    config = rd.real_data_config()
    config["baselines"]["random_forest"]["n_estimators"] = 20
    sample = rd.subsample_respondents(frame, 150, seed=0)
    table = rd.evaluate_frame(sample, config, split=split, seed=0)
    expected = {rd.RANKER, rd.RANDOM} | (set(rd.BASELINES) - {"oracle", "pit_popularity"})  # no coupon stats here
    assert set(table["model"]) == expected
    assert set(table["population"]) == set(rd.POPULATIONS)
    assert np.isfinite(table["ndcg@5"]).all()
    assert table[["ndcg@1", "ndcg@3", "precision@3", "recall@3", "map", "auc"]].notna().all().all()
    # evaluate_real (load + adapt + subsample + evaluate) reproduces it exactly: seeded
    again = rd.evaluate_real(rd.DATA_PATH, config, split=split, seed=0, max_respondents=150)
    pd.testing.assert_frame_equal(table.drop(columns="fit_seconds"), again.drop(columns="fit_seconds"))
