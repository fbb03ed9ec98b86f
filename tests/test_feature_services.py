"""Versioned feature services (issue 14): a model records the service it was trained on
and is served with it, so an older model serves beside a newer service and the two
swap either way; a model naming a service the registry lacks is refused; and the
eligibility rules read their inputs whether or not the model's service holds them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from couponrank.cli import main
from couponrank.client import CouponRankClient
from couponrank.features import repo
from couponrank.training.artifact import load_artifact
from couponrank.training.ranker import CONFIG_PATH

pytestmark = pytest.mark.slow
pytest_plugins = ["server_fixtures"]  # built

ABSOLUTE = {"user_last_event_unix", "user_last_order_unix", "user_last_redemption_unix"}


def _config(tmp_path, service: str):
    config = yaml.safe_load(CONFIG_PATH.read_text())
    config["feature_service"] = service
    path = tmp_path / f"{service}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _train(raw, ws, models, config) -> str:
    assert main(["train", "--raw", str(raw), "--repo", str(ws), "--models", str(models), "--config", str(config),
                 "--quiet"]) == 0
    return load_artifact(models).version


def test_the_shipped_config_trains_ranker_v4_without_absolute_times_with_membership_and_recent_activity(built):
    from couponrank.features import recent

    art = load_artifact(built.models)  # the demo trained with training/ranker.yaml
    assert art.metadata["feature_service"] == "ranker_v4"
    assert not ABSOLUTE & set(art.features)
    assert {"membership_tier_rank", "membership_segment_count", "coupon_audience_min_tier",
            "coupon_audience_segment_count"} <= set(art.features)
    # the recent activity as it stands at the request, never the rows' absolute instants
    assert set(recent.OUTPUTS) <= set(art.features) and not {recent.AT, recent.CATEGORY_AT} & set(art.features)
    # the relative times computed from them are still model inputs
    assert {"ctx_days_since_last_event", "ctx_days_since_last_order"} <= set(art.features)


def test_no_service_reads_the_coverage_start_and_ranker_v6_is_ranker_v2_plus_the_rates(built):
    """ucov_observed_from_unix came after every published service: each still lists its
    old inputs (user_coupon_coverage's five window sums), and ranker_v6 adds the two
    rates of coverage_rate_features to ranker_v2 (issue 10)."""
    from couponrank.features import coverage
    from couponrank.features.services import feature_names

    store = repo.store(built.repo)
    names = {f"ranker_v{i}": feature_names(store, f"ranker_v{i}") for i in range(1, 7)}
    for service, inputs in names.items():
        assert coverage.OBSERVED_FROM not in inputs, service
        assert [n for n in inputs if n.startswith("ucov_")] == [
            "ucov_lines_30d", "ucov_lines_90d", "ucov_lines_365d", "ucov_spend_90d", "ucov_spend_365d"], service
    assert names["ranker_v6"] == names["ranker_v2"] + list(coverage.OUTPUTS)


@pytest.fixture(scope="module")
def two_services(built, tmp_path_factory):
    """A models folder holding the demo's ranker_v4 model and a ranker_v1 one trained on
    the same registry, LATEST naming the ranker_v1 one."""
    tmp = tmp_path_factory.mktemp("services")
    v1 = _train(built.raw, built.repo, tmp / "v1", _config(tmp, "ranker_v1"))
    v2 = load_artifact(built.models).version
    folder = tmp / "models"
    folder.mkdir()
    shutil.copytree(tmp / "v1" / v1, folder / v1)
    shutil.copytree(built.models / v2, folder / v2)
    (folder / "LATEST").write_text(v1 + "\n")
    (folder / "HISTORY").write_text(v1 + "\n")
    return folder, v1, v2


def test_an_older_services_model_serves_beside_the_newer_and_they_swap_both_ways(built, two_services):
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    folder, v1, v2 = two_services
    old = load_artifact(folder / v1)
    assert old.metadata["feature_service"] == "ranker_v1" and ABSOLUTE <= set(old.features)
    running = serve(built.repo, folder, port=0, config=ServerConfig(model_refresh_seconds=0), clock=UNIX_CLOCK)
    try:
        assert running.ranker.model.feature_service == "ranker_v1"
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=10.0) as client:
            def rank():
                res = client.rank_coupons("u000001", placement="home", explain=True)
                assert not res.degraded and res.ranked
                return res.model_version

            assert rank() == v1
            for version in (v2, v1, v2):  # promote the newer, roll back, promote again
                assert main(["promote", version, "--models", str(folder)]) == 0
                assert running.reloader.check()
                assert rank() == version
    finally:
        running.stop(0).wait(5)


def test_a_model_naming_a_feature_service_the_registry_lacks_is_refused(built, two_services, tmp_path, capsys):
    from couponrank.server.main import build_ranker
    from couponrank.server.model import ModelMismatchError

    folder, v1, _ = two_services
    models = tmp_path / "models"
    shutil.copytree(folder / v1, models / "ranker-v9")
    meta = json.loads((models / "ranker-v9" / "metadata.json").read_text())
    meta.update(version="ranker-v9", feature_service="ranker_v9")
    (models / "ranker-v9" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError) as exc:
        build_ranker(built.repo, models / "ranker-v9")
    assert "'ranker_v9'" in str(exc.value) and "ranker_v1, ranker_v2" in str(exc.value)
    code = main(["serve", "--repo", str(built.repo), "--model", str(models / "ranker-v9"), "--port", "0",
                 "--host", "127.0.0.1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "'ranker_v9'" in err and "not started" in err


EXTRA_DEFINITIONS = '''

# ---- test only (tests/test_feature_services.py)
# a service without the views the eligibility rules read
ruleless_test = FeatureService(
    name="ruleless_test",
    features=[user_activity, coupon_attributes[["coupon_value", "coupon_min_spend"]], request_context_features],
)


# a feature engineer's own on-demand view, beside the project's request-context view
@on_demand_feature_view(
    sources=[user_activity, request_context],
    schema=[Field(name="spend_per_order_30d", dtype=Float64), Field(name="cart_to_order_value", dtype=Float64)],
    mode="pandas",
)
def order_values(inputs: pd.DataFrame) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    orders = inputs["user_orders_30d"].where(inputs["user_orders_30d"] > 0)
    spend = inputs["user_spend_30d"] / orders
    return pd.DataFrame({"spend_per_order_30d": spend,
                         "cart_to_order_value": inputs["cart_value"] / spend.replace(0, np.nan)}, index=inputs.index)


odfv_test = FeatureService(name="odfv_test", features=[
    _without(user_activity), _without(user_coupon_behaviour), user_category_affinity, user_coupon_usage,
    _without(user_coupon_coverage), coupon_stats,
    coupon_attributes[["coupon_value", "coupon_min_spend", "coupon_per_user_limit"]], request_context_features,
    order_values])

# an on-demand view reading a request field no RankCouponsRequest carries
loyalty = RequestSource(name="loyalty", schema=[Field(name="loyalty_tier", dtype=Float64)])


@on_demand_feature_view(sources=[user_activity, loyalty], schema=[Field(name="tier_spend", dtype=Float64)],
                        mode="pandas")
def tier_spend(inputs: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"tier_spend": inputs["loyalty_tier"] * inputs["user_spend_30d"]}, index=inputs.index)


odfv_unservable = FeatureService(name="odfv_unservable", features=[user_activity, tier_spend])

# a view keyed by a new entity, declared to come from the coupon's campaign
campaign = Entity(name="campaign", join_keys=["campaign_id"], value_type=ValueType.STRING,
                  tags={"couponrank.from_coupon": "coupon_campaign_id"})
campaign_facts = FeatureView(name="campaign_facts", entities=[campaign], ttl=NO_TTL,
                             schema=[Field(name="campaign_coupons", dtype=Float64)], source=_source("campaign_facts"))
campaign_test = FeatureService(name="campaign_test", features=[
    _without(user_activity), _without(user_coupon_behaviour), user_category_affinity, user_coupon_usage,
    coupon_stats, request_context_features, campaign_facts])

# an entity nothing says how to fill
region = Entity(name="region", join_keys=["region_id"], value_type=ValueType.STRING)
region_facts = FeatureView(name="region_facts", entities=[region], ttl=NO_TTL,
                           schema=[Field(name="region_coupons", dtype=Float64)], source=_source("region_facts"))
undeclared_test = FeatureService(name="undeclared_test", features=[user_activity, region_facts])
'''


def _campaign_facts(ws) -> pd.DataFrame:
    """One row per campaign (its number of coupons), stamped before any impression."""
    attrs = pd.read_parquet(ws / "data" / "coupon_attributes.parquet")
    counts = attrs.drop_duplicates("coupon_id").groupby("coupon_campaign_id").size()
    stamp = attrs.event_timestamp.min() - pd.Timedelta(days=1)
    return pd.DataFrame({"campaign_id": counts.index.astype(str), "campaign_coupons": counts.to_numpy(float),
                         "event_timestamp": stamp, "created_timestamp": stamp}).astype(
        {"event_timestamp": "datetime64[us, UTC]", "created_timestamp": "datetime64[us, UTC]"})


@pytest.fixture(scope="module")
def workspace(built, tmp_path_factory):
    """A workspace of its own (the session's stays untouched) with the test services
    added to definitions.py, applied and materialized: (folder, materialized until)."""
    ws = repo.init_workspace(tmp_path_factory.mktemp("services-ws") / "ws")
    for source in (built.repo / "data").glob("*.parquet"):
        shutil.copy2(source, ws / "data" / source.name)
    facts = _campaign_facts(ws)
    facts.to_parquet(ws / "data" / "campaign_facts.parquet")
    facts.rename(columns={"campaign_id": "region_id", "campaign_coupons": "region_coupons"}).to_parquet(
        ws / "data" / "region_facts.parquet")
    (ws / "definitions.py").write_text((ws / "definitions.py").read_text() + EXTRA_DEFINITIONS)
    repo.apply(ws)
    end = repo.last_snapshot(ws) + pd.Timedelta(seconds=1)
    repo.materialize(ws, end=end.to_pydatetime())
    return ws, end


def test_a_service_without_the_rules_views_still_has_its_limits_enforced(built, workspace, tmp_path):
    """Dropping user_coupon_usage from the model's service used to turn the per-user
    limit off silently; the rules now read their inputs whatever the model uses."""
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    ws, end = workspace
    version = _train(built.raw, ws, tmp_path / "models", _config(tmp_path, "ruleless_test"))
    art = load_artifact(tmp_path / "models" / version)
    assert art.metadata["feature_service"] == "ruleless_test"
    assert "ucp_redemptions_total" not in art.features and "coupon_budget_used_frac" not in art.features

    # a user who has used a coupon up (as tests/test_server.py finds one)
    from couponrank.server.catalog import load_catalog

    catalog = load_catalog(ws)
    T = end + pd.Timedelta(hours=10)
    usage = pd.read_parquet(ws / "data" / "user_coupon_usage.parquet")
    usage = usage.sort_values("event_timestamp", kind="stable").drop_duplicates(["user_id", "coupon_id"], keep="last")
    limit = dict(zip(catalog.ids, catalog.columns["coupon_per_user_limit"]))
    active = set(catalog.ids[catalog.active(T.timestamp())])
    usage = usage[usage.coupon_id.astype(str).isin(active)]
    hit = usage[usage.ucp_redemptions_total >= usage.coupon_id.astype(str).map(limit)].iloc[0]

    running = serve(ws, tmp_path / "models", port=0, config=ServerConfig(), clock=UNIX_CLOCK)
    try:
        assert running.ranker.model.feature_service == "ruleless_test"
        # both rules' inputs are read though the service holds neither view (budget: BUDGET_EXHAUSTED)
        assert {"ucp_redemptions_total", "coupon_budget_used_frac"} <= set(running.ranker.online.names)
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=10.0) as client:
            res = client.rank_coupons(str(hit.user_id), candidate_ids=[str(hit.coupon_id)], placement="home",
                                      cart_total_minor=10_000_000, request_time=T.to_pydatetime())
        assert not res.degraded
        assert [(i.coupon_id, i.reason) for i in res.ineligible] == [(str(hit.coupon_id), "PER_USER_LIMIT_REACHED")]
    finally:
        running.stop(0).wait(5)


def test_a_feature_engineers_on_demand_view_trains_and_serves_as_feast_computes_it(built, workspace, tmp_path):
    """A new on-demand view used to pass start-up and then fail every RankCoupons
    (INTERNAL): the server assumed every on-demand view was request_features.compute."""
    from couponrank.server.main import build_ranker
    from couponrank.server.online import join_features
    from couponrank.server.stages import RankRequest

    ws, end = workspace
    version = _train(built.raw, ws, tmp_path / "models", _config(tmp_path, "odfv_test"))
    art = load_artifact(tmp_path / "models" / version)
    assert {"spend_per_order_30d", "cart_to_order_value"} <= set(art.features)
    ranker = build_ranker(ws, tmp_path / "models")  # starts: every model input has a provider
    try:
        # the engineer's view run through Feast; the project's recent activity (read whatever
        # the service, for hot swaps) on arrays
        assert [(v.name, type(v).__name__) for v in ranker.online.on_demand] == [
            ("order_values", "OnDemandView"), ("recent_activity_features", "ProjectView")]
        # the served values equal Feast's own online computation of the view
        store = repo.store(ws)
        ua = pd.read_parquet(ws / "data" / "user_activity.parquet")
        users = sorted(ua.loc[ua.user_orders_30d > 0, "user_id"].astype(str).unique())[:3] + ["nobody"]
        cat = ranker.catalog.current
        rows = np.arange(2)
        cart = 37.5
        for user in users:
            read = ranker.online.read(user, list(cat.ids[rows]), list(cat.columns["coupon_target_category"][rows]))
            req = RankRequest(user_id=user, candidate_ids=list(cat.ids[rows]), placement="cart", cart_total=cart,
                              cart_categories=(), now=end.timestamp() + 3600)
            served = join_features(read, cat, rows, req, ranker.online.catalog_features, ranker.online.on_demand)
            want = store.get_online_features(
                features=["order_values:spend_per_order_30d", "order_values:cart_to_order_value"],
                entity_rows=[{"user_id": user, "cart_value": cart, "cart_categories": "", "placement": "cart",
                              "request_ts_unix": end.timestamp() + 3600}]).to_dict()
            for name in ("spend_per_order_30d", "cart_to_order_value"):
                expected = np.array([np.nan if want[name][0] is None else want[name][0]] * len(rows), dtype=float)
                np.testing.assert_allclose(served[name], expected, rtol=1e-12, equal_nan=True)
        assert np.isfinite(served["spend_per_order_30d"]).sum() == 0  # "nobody": no row, NaN as in training
    finally:
        ranker.close()


def test_an_on_demand_view_the_server_cannot_feed_is_refused_at_start(workspace):
    from couponrank.server.online import OnlineFeatures, RegistryError

    ws, _ = workspace
    with pytest.raises(RegistryError, match="tier_spend.*loyalty_tier|loyalty_tier"):
        OnlineFeatures(repo.store(ws), service_name="odfv_unservable")


def test_a_view_keyed_by_a_declared_entity_trains_and_serves(built, workspace, tmp_path):
    """A view keyed by a new entity (campaign_id) used to kill couponrank train with a
    traceback (the entity frame's columns were fixed); the entity now declares the coupon
    attribute its value comes from."""
    from couponrank.server.main import build_ranker
    from couponrank.training.dataset import build_training_set, label_impressions

    ws, end = workspace
    facts = _campaign_facts(ws).set_index("campaign_id").campaign_coupons
    attrs = pd.read_parquet(ws / "data" / "coupon_attributes.parquet").drop_duplicates("coupon_id", keep="last")
    campaign_of = attrs.set_index("coupon_id").coupon_campaign_id.astype(str)
    assert facts.nunique() > 1  # campaigns differ: a wrong join would show

    ts = build_training_set(ws, label_impressions(built.raw), "campaign_test")
    expected = ts.frame.coupon_id.map(campaign_of).map(facts).to_numpy()
    np.testing.assert_array_equal(ts.frame.campaign_coupons.to_numpy(), expected)

    version = _train(built.raw, ws, tmp_path / "models", _config(tmp_path, "campaign_test"))
    assert "campaign_coupons" in load_artifact(tmp_path / "models" / version).features
    ranker = build_ranker(ws, tmp_path / "models")
    try:
        assert ranker.online.key_values(ranker.catalog.current, np.arange(1)).keys() == {"campaign_id", "category"}
        cat = ranker.catalog.current
        rows = np.arange(len(cat.ids))
        read = ranker.online.read("u000001", list(cat.ids), ranker.online.key_values(cat, rows))
        np.testing.assert_array_equal(read["campaign_coupons"], pd.Series(cat.ids).map(campaign_of).map(facts))
        # and as Feast serves the view online
        store = repo.store(ws)
        some = sorted(facts.index)[:3]
        got = store.get_online_features(features=["campaign_facts:campaign_coupons"],
                                        entity_rows=[{"campaign_id": c} for c in some]).to_dict()
        assert got["campaign_coupons"] == [facts[c] for c in some]
    finally:
        ranker.close()


def test_a_view_keyed_by_an_undeclared_entity_is_refused_naming_it(built, workspace, tmp_path, capsys):
    from couponrank.server.online import OnlineFeatures, RegistryError

    ws, _ = workspace
    code = main(["train", "--raw", str(built.raw), "--repo", str(ws), "--models", str(tmp_path / "models"),
                 "--config", str(_config(tmp_path, "undeclared_test")), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "region_facts" in err and "'region_id'" in err and "couponrank.from_coupon" in err
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    with pytest.raises(RegistryError, match="region_id"):
        OnlineFeatures(repo.store(ws), service_name="undeclared_test")


def test_a_hot_reload_to_a_model_whose_inputs_the_server_does_not_read_is_refused(built, workspace, tmp_path,
                                                                                    caplog):
    """Swapping between services the server already reads works (above); a model needing
    inputs it does not read (here an engineer's on-demand view) keeps the old one serving."""
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    ws, _ = workspace
    version = _train(built.raw, ws, tmp_path / "odfv", _config(tmp_path, "odfv_test"))
    first = load_artifact(built.models).version  # ranker_v4
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copytree(built.models / first, folder / first)
    shutil.copytree(tmp_path / "odfv" / version, folder / version)
    (folder / "LATEST").write_text(first + "\n")
    (folder / "HISTORY").write_text(first + "\n")
    running = serve(ws, folder, port=0, config=ServerConfig(model_refresh_seconds=0), clock=UNIX_CLOCK)
    try:
        assert main(["promote", version, "--models", str(folder)]) == 0
        with caplog.at_level("ERROR", logger="couponrank.server.reload"):
            assert not running.reloader.check()
        assert running.ranker.model.version == first
        assert "does not read: spend_per_order_30d, cart_to_order_value" in caplog.text
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=10.0) as client:
            assert client.rank_coupons("u000001", placement="home").model_version == first
    finally:
        running.stop(0).wait(5)


def test_a_registry_without_user_membership_serves_non_members_or_refuses_audiences(built, two_services, tmp_path):
    """A registry applied before user_membership existed (a workspace's own older
    definitions.py): every user is then a non-member, so a catalogue holding coupons
    with an audience is refused at start, naming the view; one without them serves."""
    import re

    from couponrank.server.main import build_ranker
    from couponrank.server.model import ModelMismatchError
    from couponrank.server.stages import RankRequest

    folder, v1, _ = two_services  # a ranker_v1 model: no membership features
    ws = repo.init_workspace(tmp_path / "ws")
    for source in (built.repo / "data").glob("*.parquet"):
        shutil.copy2(source, ws / "data" / source.name)
    text = (ws / "definitions.py").read_text()
    text = re.sub(r"(?ms)^user_membership = FeatureView\(.*?^\)\n", "", text)
    text = re.sub(r"(?ms)^ranker_features_v[345] = FeatureService\(.*?^\)\n", "", text)
    assert "user_membership =" not in text and not re.search(r'name="ranker_v[345]"', text)
    (ws / "definitions.py").write_text(text)
    repo.apply(ws)
    repo.materialize(ws, end=(repo.last_snapshot(ws) + pd.Timedelta(seconds=1)).to_pydatetime())
    models = tmp_path / "models"
    shutil.copytree(folder / v1, models / v1)
    (models / "LATEST").write_text(v1 + "\n")

    attrs = pd.read_parquet(ws / "data" / "coupon_attributes.parquet")
    assert (attrs.coupon_audience != "all").any()
    with pytest.raises(ModelMismatchError, match=r"coupon\(s\) have an audience.*no user_membership view"):
        build_ranker(ws, models)

    attrs.assign(coupon_audience="all", coupon_audience_min_tier=0.0, coupon_audience_segment_mask=0.0,
                 coupon_audience_segment_count=0.0).to_parquet(ws / "data" / "coupon_attributes.parquet")
    ranker = build_ranker(ws, models)
    try:
        assert not ranker.online.reads_membership
        out = ranker.rank(RankRequest("u000001", placement="member_centre", cart_total=1e6,
                                      now=float(attrs.coupon_valid_from_unix.max())))
        assert out.ranked and not [r for r in out.ineligible if r[1].name == "NOT_IN_AUDIENCE"]
    finally:
        ranker.close()
