"""Splits by whole campaigns (issue 10): the latest campaigns by start are tested, a
campaign never straddles a cut, and labels still close before their part ends."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from couponrank.cli import main
from couponrank.training.artifact import load_artifact
from couponrank.training.ranker import CONFIG_PATH
from couponrank.training.split import TimeSplit, campaign_split, label_known, make_split

T0 = pd.Timestamp("2026-03-02", tz="UTC")


def _impressions():
    """Five campaigns of impressions spread over days; c3 and c4 start on the same day."""
    rows = []
    for campaign, first_day, days in (("c1", 0, 10), ("c2", 5, 12), ("c4", 14, 9), ("c3", 14, 3), ("c5", 20, 4)):
        for d in range(days):
            rows.append((campaign, T0 + pd.Timedelta(days=first_day + d, hours=9)))
    df = pd.DataFrame(rows, columns=["campaign", "ts"])
    return df.ts, df.campaign


def test_whole_campaigns_by_start_ties_by_id():
    ts, campaign = _impressions()
    split = campaign_split(ts, campaign, validation_campaigns=1, test_campaigns=2)
    assert dict(split.campaigns) == {"c1": "train", "c2": "train", "c3": "validation", "c4": "test", "c5": "test"}
    part = split.assign(ts, campaign)
    for c in campaign.unique():  # a campaign is never split, though its days cross the cuts
        assert len(set(part[campaign == c])) == 1
    assert split.validation_start == T0 + pd.Timedelta(days=14, hours=9)  # c3's first impression
    assert split.test_start == T0 + pd.Timedelta(days=14, hours=9)  # c4 starts the same day
    assert split.train_start == T0 and split.test_end == T0 + pd.Timedelta(days=24)
    assert TimeSplit.from_dict(json.loads(json.dumps(split.to_dict()))) == split
    with pytest.raises(ValueError, match="campaign"):
        split.assign(ts)


def test_labels_still_close_before_their_part_ends():
    ts, campaign = _impressions()
    split = campaign_split(ts, campaign, validation_campaigns=1, test_campaigns=2)
    keep, left_out = label_known(ts, split, timedelta(hours=72), ts.max() + pd.Timedelta(days=30), campaign)
    part = split.assign(ts, campaign)
    closes = ts + pd.Timedelta(hours=72)
    # training rows (c1, c2) whose window closes after the first validation start are out,
    # and validation rows (c3) closing after the first test start (c4 starts with it: all)
    crossing_train = (part == "train") & (closes > split.validation_start).to_numpy()
    crossing_valid = (part == "validation") & (closes > split.test_start).to_numpy()
    assert crossing_train.any() and crossing_valid[part == "validation"].all()
    assert not keep[crossing_train | crossing_valid].any() and keep[part == "test"].all()
    assert left_out["crosses_cut"] == int((crossing_train | crossing_valid).sum()) and left_out["censored"] == 0


@pytest.mark.parametrize("config, message", [
    ({"validation_campaigns": 1}, "both"),
    ({"validation_campaigns": 1, "test_campaigns": 1, "test_start": "2026-03-10"}, "alone"),
    ({"validation_campaigns": 0, "test_campaigns": 1}, "validation_campaigns"),
    ({"validation_campaigns": 1, "test_campaigns": 2.5}, "test_campaigns"),
    ({"validation_campaigns": 2, "test_campaigns": 3}, "too few"),
])
def test_bad_campaign_splits_are_refused(config, message):
    ts, campaign = _impressions()
    with pytest.raises(ValueError, match=message):
        make_split(ts, config, campaign)


def test_train_and_evaluate_split_by_campaign(generated_features, tmp_path, capsys):
    from couponrank.features import repo

    import shutil

    source, ws = generated_features
    repo.apply(ws)
    # the generator's campaigns all run the whole period; campaigns that follow one
    # another (a week's new coupons each, as mailers do) are what a campaign split is for
    raw = tmp_path / "raw"
    shutil.copytree(source, raw)
    coupons = pd.read_parquet(raw / "coupons.parquet")
    coupons["campaign_id"] = coupons.valid_from.dt.strftime("w%G-%V")
    coupons.to_parquet(raw / "coupons.parquet")
    assert coupons.campaign_id.nunique() >= 4
    config = yaml.safe_load(CONFIG_PATH.read_text())
    config["split"] = {"validation_campaigns": 1, "test_campaigns": 1}
    path = tmp_path / "by_campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    models = tmp_path / "models"
    assert main(["train", "--raw", str(raw), "--repo", str(ws), "--models", str(models), "--config", str(path),
                 "--quiet"]) == 0
    art = load_artifact(models)
    split = TimeSplit.from_dict(art.metadata["split"])
    parts = dict(split.campaigns)
    assert sorted(parts) == sorted(coupons.campaign_id.astype(str).unique())
    assert list(parts.values()).count("test") == 1 and list(parts.values()).count("validation") == 1
    # the test campaign is the one that started last
    imp = pd.read_parquet(raw / "coupon_events.parquet").query("event_type == 'impression'")
    starts = imp.merge(coupons[["coupon_id", "campaign_id"]], on="coupon_id").groupby("campaign_id").event_ts.min()
    latest = starts.sort_values(kind="stable").index[-1]
    assert parts[str(latest)] == "test"
    assert art.metadata["training_range"]["end"] == split.validation_start.isoformat()
    # a saved model's split is rebuilt the same way
    assert main(["evaluate", "--model", str(models), "--raw", str(raw), "--repo", str(ws),
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert (tmp_path / "eval" / "metrics.csv").is_file()
    np.testing.assert_equal(sorted(parts.values()).count("train"), len(parts) - 2)


def test_warm_up_days_leave_out_the_first_impressions_and_count_them(generated_features, tmp_path):
    from couponrank.training.dataset import data_start, label_impressions
    from couponrank.training.pipeline import split_frame
    from couponrank.training.ranker import load_config

    raw, _ = generated_features
    frame = label_impressions(raw)
    config = load_config()
    config["split"] = {"validation_fraction": 0.15, "test_fraction": 0.2}
    _, without, left = split_frame(frame, {**config, "warm_up_days": 0}, raw)
    assert "warm_up" not in left
    _, with_warm_up, left_w = split_frame(frame, {**config, "warm_up_days": 7}, raw)
    until = data_start(raw) + pd.Timedelta(days=7)
    assert with_warm_up.event_timestamp.min() >= until
    early = int((without.event_timestamp < until).sum())
    assert early > 0 and left_w["warm_up"] == early and len(with_warm_up) == len(without) - early
    assert {k: left_w[k] for k in ("crosses_cut", "censored")} == left
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG_PATH.read_text().replace("warm_up_days: 0", "warm_up_days: -3"))
    with pytest.raises(Exception, match="warm_up_days"):
        load_config(bad)
