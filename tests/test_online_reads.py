"""The fast online path: entity keys, value decoding, the SQLite and Redis readers
against Feast's own get_online_features, the coupon feature cache's freshness bound,
and the compiled scorer against LightGBM."""

from __future__ import annotations

import shutil
import struct
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from couponrank.features import coverage, repo
from couponrank.server import scorer as scorer_mod
from couponrank.server.online import OnlineFeatures
from couponrank.server.store_reader import (FeastReader, KeyEncoder, RedisReader, SqliteReader, StoreReadError,
                                            ViewLayout, decode_value)
from couponrank.training.artifact import load_artifact

pytest_plugins = ["server_fixtures"]  # built


# ================================================================== keys and values
@pytest.mark.parametrize("join_keys,values", [
    (["user_id"], {"user_id": ["u1", "ü-ñ", ""]}),
    (["user_id", "coupon_id"], {"user_id": ["u1", "u22", "u1"], "coupon_id": ["c9", "c1", "ç"]}),
    (["user_id", "category"], {"user_id": ["u1"] * 3, "category": ["cat00", "cat01", "toys & games"]}),
])
def test_entity_keys_are_feasts(join_keys, values):
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    n = len(next(iter(values.values())))
    ours = KeyEncoder(join_keys).encode(values, n)
    feasts = [serialize_entity_key(EntityKey(join_keys=join_keys, entity_values=[Value(string_val=values[k][i])
                                                                                  for k in join_keys]), 3)
              for i in range(n)]
    assert ours == feasts
    # one value for every entity is the same as repeating it
    scalar = {k: (v[0] if k == "user_id" else v) for k, v in values.items()}
    if all(v == values["user_id"][0] for v in values["user_id"]):
        assert KeyEncoder(join_keys).encode(scalar, n) == feasts


def test_values_decode_like_feast():
    from feast.protos.feast.types.Value_pb2 import Value

    assert decode_value(Value(double_val=2.5).SerializeToString()) == 2.5
    assert decode_value(Value(double_val=-0.0).SerializeToString()) == 0.0
    assert decode_value(Value(float_val=1.25).SerializeToString()) == 1.25
    assert decode_value(Value(int64_val=-7).SerializeToString()) == -7.0
    assert decode_value(Value(bool_val=True).SerializeToString()) == 1.0
    assert np.isnan(decode_value(b""))
    assert np.isnan(decode_value(None))
    assert np.isnan(decode_value(Value(string_val="x").SerializeToString()))
    nan = Value(double_val=float("nan")).SerializeToString()
    assert nan[0] == 0x29 and np.isnan(decode_value(nan))
    assert decode_value(b"\x29" + struct.pack("<d", 1e300)) == 1e300


# ================================================================== readers vs Feast
def _sample(built, n_users=6, n_coupons=40):
    """Known users, a never-seen one; coupons with and without rows; their categories."""
    ua = pd.read_parquet(built.repo / "data" / "user_activity.parquet", columns=["user_id"])
    usage = pd.read_parquet(built.repo / "data" / "user_coupon_usage.parquet", columns=["user_id", "coupon_id"])
    attrs = pd.read_parquet(built.repo / "data" / "coupon_attributes.parquet",
                            columns=["coupon_id", "coupon_target_category"]).drop_duplicates("coupon_id")
    rows = usage.user_id.astype(str).value_counts()
    busiest = sorted(rows.index, key=lambda u: (-rows[u], u))  # ties by id, on any CPU
    users = busiest[: n_users - 1] + ["never-seen-user"]
    assert set(users[:-1]) <= set(ua.user_id.astype(str))
    coupons = attrs.head(n_coupons)
    return users, list(coupons.coupon_id.astype(str)) + ["no-such-coupon"], \
        list(coupons.coupon_target_category.astype(str)) + ["cat00"]


def _feast_values(store, online: OnlineFeatures, user, coupons, categories) -> dict[str, np.ndarray]:
    refs = [f"{view}:{name}" for view, names in online.view_features.items() for name in names]
    rows = {"user_id": [user] * len(coupons), "coupon_id": coupons, "category": categories}
    got = store.get_online_features(features=refs, entity_rows=rows).to_dict()
    return {name: np.array(got[name], dtype=np.float64) for name in online.names}


def _assert_same(ours: dict, feasts: dict) -> int:
    assert ours.keys() == feasts.keys()
    present = 0
    for name in feasts:
        np.testing.assert_array_equal(ours[name], feasts[name], err_msg=name)  # NaN == NaN here
        present += int(np.isfinite(feasts[name]).sum())
    return present


def test_sqlite_reads_equal_feasts(built):
    store = repo.store(built.repo)
    online = OnlineFeatures(store, refresh_seconds=0)
    assert isinstance(online.reader, SqliteReader)
    assert set(online.live_views) == {"user_activity", "user_coupon_behaviour", "user_category_affinity",
                                      "user_coupon_usage", "user_coupon_coverage", "user_membership",
                                      "user_recent_activity", "user_category_recent_activity"}
    assert online.coupons.views == ["coupon_stats"]
    users, coupons, categories = _sample(built)
    present = 0
    for user in users:
        ours = online.read(user, coupons, categories)
        present += _assert_same(ours, _feast_values(store, online, user, coupons, categories))
        if user == "never-seen-user":
            assert online.cold_start(ours)
    assert present > 1000  # the sample really holds values, not just NaN
    online.close()


def test_other_stores_are_read_through_feasts_online_read(built):
    """Online stores without a direct reader go through Feast's OnlineStore.online_read
    (exercised here on the SQLite store)."""
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    store = repo.store(built.repo)
    fast = OnlineFeatures(store, refresh_seconds=0)
    layouts = [ViewLayout(v, fast.reader.views[v].join_keys, f) for v, f in fast.view_features.items()]
    fvs = {v: store.get_feature_view(v) for v in fast.view_features}
    online = OnlineFeatures(store, refresh_seconds=0,
                            reader=FeastReader(SqliteOnlineStore(), store.config, fvs, layouts))
    users, coupons, categories = _sample(built, n_users=3)
    present = sum(_assert_same(online.read(u, coupons, categories), _feast_values(store, online, u, coupons, categories))
                  for u in users)
    assert present > 300
    fast.close()


def test_redis_reads_equal_feasts(built, tmp_path, redis_server, monkeypatch):
    monkeypatch.setenv("COUPONRANK_REDIS", redis_server)
    ws = tmp_path / "features"
    shutil.copytree(built.repo, ws)
    repo.apply(ws, online="redis")
    repo.materialize(ws, end=built.last_snapshot.to_pydatetime() + pd.Timedelta(days=1), online="redis")
    store = repo.store(ws, online="redis")
    online = OnlineFeatures(store, refresh_seconds=0)
    assert isinstance(online.reader, RedisReader)
    users, coupons, categories = _sample(built)
    present = sum(_assert_same(online.read(u, coupons, categories),
                               _feast_values(store, online, u, coupons, categories)) for u in users)
    assert present > 1000
    online.close()


def test_a_missing_store_is_a_read_error(built, tmp_path):
    ws = tmp_path / "features"
    shutil.copytree(built.repo, ws)
    online = OnlineFeatures(repo.store(ws), refresh_seconds=0)
    (ws / "data" / "online_store.db").unlink()
    with pytest.raises(StoreReadError, match="online_store.db"):
        online.read("u", ["c"], ["cat00"])


# ================================================================== coupon feature cache
def test_coupon_features_are_cached_within_their_freshness_bound(built, tmp_path):
    ws = tmp_path / "features"
    shutil.copytree(built.repo, ws)
    store = repo.store(ws)
    stats = pd.read_parquet(ws / "data" / "coupon_stats.parquet")
    coupon = str(stats.coupon_id.iloc[-1])
    attrs = pd.read_parquet(ws / "data" / "coupon_attributes.parquet", columns=["coupon_id"])
    ids = list(attrs.coupon_id.astype(str).unique())
    online = OnlineFeatures(store, coupon_ids=lambda: ids, refresh_seconds=0.2)
    online.coupons.refresh()
    before = online.read("u", [coupon], ["cat00"])["coupon_redemption_rate_30d"][0]

    # materialization writes a new value into the online store
    row = stats[stats.coupon_id.astype(str) == coupon].tail(1).copy()
    row["coupon_redemption_rate_30d"] = 0.987654
    row["event_timestamp"] = row["event_timestamp"] + pd.Timedelta(days=1)
    row["coupon_id"] = row["coupon_id"].astype(str)
    store.write_to_online_store("coupon_stats", row)
    assert online.read("u", [coupon], ["cat00"])["coupon_redemption_rate_30d"][0] == before  # cached

    online.start()  # the background refresh picks it up within refresh_seconds
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if online.read("u", [coupon], ["cat00"])["coupon_redemption_rate_30d"][0] == 0.987654:
            break
        time.sleep(0.05)
    online.coupons.stop()
    assert online.read("u", [coupon], ["cat00"])["coupon_redemption_rate_30d"][0] == 0.987654
    assert before != 0.987654
    online.close()


def test_coupons_the_cache_has_not_seen_are_read_live(built):
    store = repo.store(built.repo)
    stats = pd.read_parquet(built.repo / "data" / "coupon_stats.parquet", columns=["coupon_id"])
    known = str(stats.coupon_id.iloc[0])
    online = OnlineFeatures(store, coupon_ids=lambda: [], refresh_seconds=0)  # caches nothing
    ours = online.read("u", [known], ["cat00"])
    feasts = _feast_values(store, online, "u", [known], ["cat00"])
    assert np.isfinite(feasts["coupon_redemption_rate_30d"][0])
    _assert_same(ours, feasts)
    online.close()


# ================================================================== compiled scorer
def test_compiled_scores_equal_lightgbm_and_are_cached(built, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    art = load_artifact(built.models)
    booster = lgb.Booster(model_file=str(art.model_file))
    compiled = scorer_mod.make_scorer(art, booster, "lleaves")
    assert compiled.name == "lleaves" and compiled.path.parent == art.path / "compiled"
    rng = np.random.default_rng(7)
    X = rng.normal(0, 50, size=(500, booster.num_feature()))
    X[rng.random(X.shape) < 0.3] = np.nan
    for j, name in enumerate(booster.feature_name()):
        if name in ("ctx_placement", "ctx_coupon_type", "ctx_coupon_scope"):  # codes, unseen ones and NaN
            X[:, j] = rng.choice([0, 1, 2, 3, 4, 9, np.nan], size=len(X))
    np.testing.assert_allclose(compiled.predict(X), booster.predict(X, raw_score=True), rtol=0, atol=1e-9)

    mtime = compiled.path.stat().st_mtime_ns
    again = scorer_mod.make_scorer(art, booster, "auto")
    assert again.path == compiled.path and again.path.stat().st_mtime_ns == mtime  # loaded, not recompiled
    assert not list(compiled.path.parent.glob(".compiling-*"))


def test_scorer_falls_back_to_lightgbm_only_when_asked_to(built, monkeypatch):
    import lleaves

    art = load_artifact(built.models)
    booster = lgb.Booster(model_file=str(art.model_file))
    monkeypatch.setattr(scorer_mod, "compile_artifact", lambda a: (_ for _ in ()).throw(OSError("no LLVM here")))
    assert scorer_mod.make_scorer(art, booster, "auto").name == "booster"
    with pytest.raises(OSError, match="no LLVM"):
        scorer_mod.make_scorer(art, booster, "lleaves")
    with pytest.raises(ValueError, match="scorer must be one of"):
        scorer_mod.make_scorer(art, booster, "fast")
    assert lleaves  # imported: lleaves is installed, the fallback above was forced


def test_coverage_features_read_online_equal_feasts(handmade_raw, tmp_path):
    """user_coupon_coverage (from raw coupon_items) reaches the server's reader with the
    values Feast serves: train/serve parity for the new view."""
    from couponrank import schema
    from couponrank.features.build import build_features

    raw = tmp_path / "raw"
    shutil.copytree(handmade_raw, raw)
    pd.DataFrame({"coupon_id": ["c1", "c1", "c2"], "item_id": ["i1", "i2", "i3"]}).to_parquet(
        raw / schema.COUPON_ITEMS.file, index=False)
    ws = repo.init_workspace(tmp_path / "ws")
    build_features(raw, ws)
    repo.apply(ws)
    repo.materialize(ws, end=pd.Timestamp("2026-07-01", tz="UTC").to_pydatetime())
    store = repo.store(ws)
    online = OnlineFeatures(store, coupon_ids=lambda: ["c1", "c2", "c3"], refresh_seconds=0)
    coupons, categories = ["c1", "c2", "c3"], ["shoes", "books", "shoes"]
    for user in ("u1", "u2", "u3"):
        ours = online.read(user, coupons, categories)
        _assert_same(ours, _feast_values(store, online, user, coupons, categories))
    u1 = online.read("u1", coupons, categories)
    assert u1["ucov_spend_365d"][0] == 120.0 and np.isnan(u1["ucov_spend_365d"][1])  # u1 never bought c2's item
    assert online.read("u2", coupons, categories)["ucov_lines_365d"][1] == 1.0

    # coverage_rate_features (issue 10): the server's ProjectView equals Feast's on-demand
    # view online, and both are the 365-day sums over the days of purchase data observed
    online.close()
    online = OnlineFeatures(store, service_name="ranker_v6", coupon_ids=lambda: coupons, refresh_seconds=0)
    u1 = online.read("u1", coupons, categories)
    first_order = pd.read_parquet(raw / "behaviour_events.parquet").query("event_type == 'order'").event_ts.min()
    assert u1[coverage.OBSERVED_FROM][0] == first_order.timestamp()
    [view] = [v for v in online.on_demand if v.name == coverage.CONTEXT_VIEW]
    for now in (first_order + pd.Timedelta(hours=6), pd.Timestamp("2026-07-01", tz="UTC"),
                first_order + pd.Timedelta(days=400)):
        ours = view.compute(u1, {"request_ts_unix": np.full(len(coupons), now.timestamp())})
        theirs = store.get_online_features(
            features=[f"{coverage.CONTEXT_VIEW}:{name}" for name in coverage.OUTPUTS],
            entity_rows=[{"user_id": "u1", "coupon_id": c, "request_ts_unix": now.timestamp(), "cart_value": 0.0,
                          "cart_categories": "", "placement": "home"} for c in coupons]).to_dict()
        for name in coverage.OUTPUTS:
            np.testing.assert_array_equal(ours[name], np.array(theirs[name], dtype=np.float64), err_msg=name)
        days = min(max((now - first_order) / pd.Timedelta(days=1), 1.0), 365.0)
        assert ours["ctx_ucov_spend_per_day_365d"][0] == pytest.approx(120.0 / days)
        assert np.isnan(ours["ctx_ucov_lines_per_day_365d"][1])  # no purchase of c2's items: no row, no rate
    online.close()
