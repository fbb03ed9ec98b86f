"""The Feast repository end to end: apply, materialize, Feast's own online and
historical reads return the hand-computed values; SQLite and a real Redis agree."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pandas as pd
import pytest

from couponrank.features import repo
from couponrank.features.build import build_features
from handmade import at

ENTITY = {"user_id": "u1", "coupon_id": "c1", "category": "shoes"}
REQUEST = {"cart_value": 50.0, "cart_categories": "shoes|books", "placement": "cart",
           "request_ts_unix": at(30).timestamp()}


def _online(ws, online="sqlite"):
    fs = repo.store(ws, online)
    rows = [{**ENTITY, **REQUEST}]
    return fs.get_online_features(features=fs.get_feature_service("ranker_v1"), entity_rows=rows).to_dict()


def test_online_features_for_known_user_and_coupon(handmade_repo):
    got = {k: v[0] for k, v in _online(handmade_repo).items()}
    # the last snapshot is 2026-06-22 (the day after the last event in the data): u1's views
    # on 06-02 (2) and 06-11 (1) are within its 30 days, none within its 7
    assert got["user_views_30d"] == 3 and got["user_views_7d"] == 0
    assert got["user_last_event_unix"] == at(10, 9).timestamp()
    assert got["ucp_redemptions_total"] == 1
    assert got["coupon_value"] == 10.0
    # on-demand request features: 10% of a 50.00 cart; hours to expiry from day 30 to day 40
    assert got["ctx_effective_discount"] == pytest.approx(5.0)
    assert got["ctx_meets_min_spend"] == 1.0
    assert got["ctx_hours_to_expiry"] == pytest.approx(240.0)
    assert got["ctx_cart_has_target_category"] == 1.0
    assert got["ctx_days_since_last_event"] == pytest.approx((at(30) - at(10, 9)).total_seconds() / 86400)


def test_unknown_user_gets_nulls_not_an_error(handmade_repo):
    fs = repo.store(handmade_repo)
    got = fs.get_online_features(
        features=["user_activity:user_views_30d"], entity_rows=[{"user_id": "nobody"}]
    ).to_dict()
    assert got["user_views_30d"] == [None]


def test_historical_features_are_point_in_time(handmade_repo):
    fs = repo.store(handmade_repo)
    times = [at(1, 23.5), at(2), at(9), at(11)]
    edf = pd.DataFrame({"row": range(4), "user_id": "u1", "coupon_id": "c1", "category": "shoes",
                        "event_timestamp": times, "cart_value": 0.0, "cart_categories": "",
                        "placement": "home", "request_ts_unix": [t.timestamp() for t in times]})
    df = fs.get_historical_features(entity_df=edf, features=fs.get_feature_service("ranker_v1")).to_df()
    df = df.sort_values("row")
    assert len(df) == 4, "every entity row must come back, even with no feature row before it"
    # same day as the first events: nothing yet (the snapshot is stamped at the next midnight)
    assert df.user_views_30d.isna().iloc[0]
    assert list(df.user_views_30d.iloc[1:]) == [2, 2, 3]
    assert list(df.user_views_7d.iloc[1:]) == [2, 0, 1]


def test_feast_cli_apply_and_materialize_in_the_repo_folder(tmp_path, handmade_raw):
    """A feature engineer's path: `feast apply` and `feast materialize` inside the folder."""
    ws = repo.init_workspace(tmp_path / "repo")
    build_features(handmade_raw, ws)
    feast = os.path.join(os.path.dirname(sys.executable), "feast")
    for cmd in (["apply"], ["materialize", "2020-01-01T00:00:00", "2026-08-01T00:00:00"]):
        res = subprocess.run([feast, *cmd], cwd=ws, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    got = _online(ws)
    assert got["ucp_redemptions_total"] == [1]


def test_redis_online_store_matches_sqlite(tmp_path, handmade_raw, handmade_repo, redis_server, monkeypatch):
    monkeypatch.setenv("COUPONRANK_REDIS", redis_server)
    ws = repo.init_workspace(tmp_path / "redis_repo")
    build_features(handmade_raw, ws)
    repo.apply(ws, online="redis")
    repo.materialize(ws, end=datetime(2026, 8, 1, tzinfo=timezone.utc), online="redis")
    import redis

    host, port = redis_server.split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() > 0, "nothing was written to Redis"
    assert _online(ws, "redis") == _online(handmade_repo, "sqlite")
