"""The report's feature table: every model feature once, with its gain, share of the gain,
splits, null rate on the training rows and source view; in features.csv and report.html."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

from couponrank.cli import main
from couponrank.features import repo
from couponrank.features.services import get_service
from couponrank.training import artifact, report
from couponrank.training.dataset import build_training_set, label_impressions
from couponrank.training.pipeline import label_window, split_frame

FEATURES = ["signal", "with_nans", "constant", "noise"]
SOURCES = {"signal": "user_activity", "with_nans": "user_activity", "constant": "coupon_stats",
           "noise": "request_context_features"}
N_ROWS, N_NANS = 400, 100


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    signal = rng.normal(size=N_ROWS)
    with_nans = signal + rng.normal(scale=0.5, size=N_ROWS)
    with_nans[rng.choice(N_ROWS, N_NANS, replace=False)] = np.nan
    return pd.DataFrame({"signal": signal, "with_nans": with_nans, "constant": np.full(N_ROWS, 3.0),
                         "noise": rng.normal(size=N_ROWS),
                         "label": (signal + rng.normal(scale=0.3, size=N_ROWS) > 0).astype(float)})


def _booster(frame: pd.DataFrame, features: list[str], rounds: int = 20) -> lgb.Booster:
    params = {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 10, "learning_rate": 0.2,
              "num_threads": 1, "seed": 0, "deterministic": True, "verbose": -1}
    data = lgb.Dataset(frame[features].to_numpy(np.float64), label=frame.label, feature_name=features)
    return lgb.train(params, data, num_boost_round=rounds)


@pytest.fixture(scope="module")
def booster(frame) -> lgb.Booster:
    return _booster(frame, FEATURES)


def test_every_feature_once_with_its_importance(booster, frame):
    table = report.feature_table(booster, FEATURES, frame, SOURCES)
    assert list(table.columns) == report.FEATURE_COLUMNS
    assert sorted(table.feature) == sorted(FEATURES) and len(table) == len(FEATURES)
    rows = table.set_index("feature")
    # by name, whatever the table's order: the booster's own figures
    gain = dict(zip(FEATURES, booster.feature_importance("gain")))
    splits = dict(zip(FEATURES, booster.feature_importance("split")))
    for f in FEATURES:
        assert rows.loc[f, "gain"] == pytest.approx(gain[f]) and rows.loc[f, "splits"] == splits[f]
    assert rows.loc["signal", "gain"] > 0 and rows.loc["signal", "splits"] > 0
    assert table.gain_share.sum() == pytest.approx(1.0)
    assert table.gain.is_monotonic_decreasing  # sorted by gain, highest first
    assert rows.loc["signal", "gain"] == table.gain.max()


def test_a_feature_never_split_on_is_listed_with_zeros(booster, frame):
    rows = report.feature_table(booster, FEATURES, frame, SOURCES).set_index("feature")
    assert rows.loc["constant", ["gain", "gain_share", "splits"]].tolist() == [0, 0, 0]


def test_null_rate_is_the_share_of_nan_in_the_rows_given(booster, frame):
    rows = report.feature_table(booster, FEATURES, frame, SOURCES).set_index("feature")
    assert rows.null_rate.to_dict() == {"signal": 0.0, "with_nans": N_NANS / N_ROWS, "constant": 0.0, "noise": 0.0}
    # the rows passed, not some other frame: half of them hold a different count of NaN
    half = frame.iloc[: N_ROWS // 2]
    rows = report.feature_table(booster, FEATURES, half, SOURCES).set_index("feature")
    assert rows.loc["with_nans", "null_rate"] == half.with_nans.isna().mean()


def test_sources_mapped_and_blank_when_unknown(booster, frame):
    rows = report.feature_table(booster, FEATURES, frame, SOURCES).set_index("feature")
    assert rows.source.to_dict() == SOURCES
    assert set(report.feature_table(booster, FEATURES, frame).source) == {""}
    partial = report.feature_table(booster, FEATURES, frame, {"signal": "user_activity"}).set_index("feature")
    assert partial.source.to_dict() == {"signal": "user_activity", "with_nans": "", "constant": "", "noise": ""}


def test_features_in_another_order_than_the_model_are_refused(booster, frame):
    with pytest.raises(ValueError, match="not"):
        report.feature_table(booster, list(reversed(FEATURES)), frame, SOURCES)


def test_a_model_that_never_split_has_no_gain_share(frame):
    flat = _booster(frame.assign(signal=1.0, with_nans=2.0, noise=4.0), FEATURES, rounds=3)
    table = report.feature_table(flat, FEATURES, frame, SOURCES)
    assert sorted(table.feature) == sorted(FEATURES)
    assert (table.gain == 0).all() and (table.splits == 0).all() and table.gain_share.isna().all()


def test_sources_from_a_feature_service():
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    source = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
    activity = FeatureView(name="user_activity", entities=[user], source=source,
                           schema=[Field(name="views", dtype=Float64), Field(name="orders", dtype=Float64)])
    stats = FeatureView(name="coupon_stats", entities=[user], source=source,
                        schema=[Field(name="ctr", dtype=Float64), Field(name="shown", dtype=Float64)])
    service = FeatureService(name="svc", features=[activity, stats[["ctr"]]])
    assert report.feature_sources(service) == {"views": "user_activity", "orders": "user_activity",
                                               "ctr": "coupon_stats"}


def test_html_holds_the_extra_tables(booster, frame, tmp_path):
    metrics = pd.DataFrame({"model": ["m"], "population": ["all"], "ndcg@5": [0.5], "map": [0.4], "auc": [0.6],
                            "n_groups": [3], "n_groups_with_positive": [2]})
    table = report.feature_table(booster, FEATURES, frame, {**SOURCES, "noise": "<odd & view>"})
    report.write_html(tmp_path / "r.html", "t", {"k": "v"}, metrics, [], {"Features": table})
    text = (tmp_path / "r.html").read_text()
    features_html = text.split("<h2>Features</h2>", 1)[1]
    for f, source in SOURCES.items():
        assert f"<td>{f}</td><td>{source if f != 'noise' else '&lt;odd &amp; view&gt;'}</td>" in features_html
    assert "<h2>Test-period metrics</h2>" in text and "<td>0.5000</td>" in text


# ------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny_repo(generated_features):
    raw, ws = generated_features
    repo.apply(ws)
    return raw, ws


@pytest.mark.slow
@pytest.mark.clock
def test_train_writes_the_feature_table(tiny_repo, tmp_path):
    raw, ws = tiny_repo
    models = tmp_path / "models"
    assert main(["train", "--raw", str(raw), "--repo", str(ws), "--models", str(models), "--quiet"]) == 0
    art = artifact.load_artifact(models)
    service = art.metadata["feature_service"]
    # the registry's own word on which view each of the service's features comes from
    expected = {f.name: p.name for p in get_service(repo.store(ws), service).feature_view_projections
                for f in p.features}
    assert set(expected) == set(art.features)
    assert expected["user_views_30d"] == "user_activity"
    assert expected["ctx_days_since_last_event"] == "request_context_features"  # the on-demand view

    table = pd.read_csv(art.path / "features.csv", keep_default_na=False)
    assert sorted(table.feature) == sorted(art.features) and len(table) == len(art.features)
    assert dict(zip(table.feature, table.source)) == expected
    assert table.gain_share.astype(float).sum() == pytest.approx(1.0)
    # the saved model's importances (model.txt holds the kept trees only)
    booster = lgb.Booster(model_file=str(art.model_file))
    rows = table.set_index("feature")
    np.testing.assert_allclose(rows.loc[art.features, "gain"].astype(float), booster.feature_importance("gain"),
                               rtol=1e-9)
    np.testing.assert_array_equal(rows.loc[art.features, "splits"].astype(int), booster.feature_importance("split"))

    # null rates over the training period's rows, the ones the model was fitted on
    config = art.metadata["config"]
    ts = build_training_set(ws, label_impressions(raw, label_window(config)), service)
    split, kept, _ = split_frame(ts.frame, config, raw)
    train_rows = kept[split.assign(kept.event_timestamp) == "train"]
    assert len(train_rows) == art.metadata["rows"]["train"]
    null_rate = train_rows[art.features].isna().mean()
    np.testing.assert_allclose(rows.loc[art.features, "null_rate"].astype(float), null_rate.to_numpy(), rtol=1e-12)
    assert (null_rate > 0).any()  # the check can tell a null rate from zero

    html = (art.path / "report.html").read_text()
    features_html = html.split("<h2>Features</h2>", 1)[1]
    for f in art.features:
        assert f"<td>{f}</td><td>{expected[f]}</td>" in features_html, f

    # `couponrank evaluate` rewrites the same table from the artifact's recorded service
    out = tmp_path / "evaluated"
    assert main(["evaluate", "--model", str(art.path), "--raw", str(raw), "--repo", str(ws), "--out", str(out),
                 "--quiet"]) == 0
    again = pd.read_csv(out / "features.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(again, table, check_exact=False, rtol=1e-9)
