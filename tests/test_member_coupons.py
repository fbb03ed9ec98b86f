"""Member-exclusive coupons and the member centre (issue 13) through the real server on
the tiny data set: the audience rule, the request's membership, cold start, the
fallback path, bad input, and train/serve parity of the membership features."""

from __future__ import annotations

import grpc
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from couponrank.features import membership
from couponrank.server import stages
from couponrank.server.catalog import FLOAT_COLUMNS, STATS_COLUMNS, STRING_COLUMNS, Catalog
from couponrank.server.stages import RankRequest, Reason
from couponrank.training.artifact import load_artifact
from couponrank.v1 import coupon_ranking_service_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.clock]
pytest_plugins = ["server_fixtures"]  # built, server, target, client, stub, catalog

CONFIG = membership.load()


# ------------------------------------------------------------------ the pure rule
def _catalog(audiences: dict[str, str]) -> Catalog:
    ids = np.array(sorted(audiences), dtype=object)
    parsed = [membership.parse_audience(audiences[i], CONFIG) for i in ids]
    n = len(ids)
    cols = {name: np.full(n, "", dtype=object) for name in STRING_COLUMNS}
    cols.update({name: np.zeros(n) for name in FLOAT_COLUMNS + STATS_COLUMNS})
    cols["coupon_scope"][:] = "all"
    cols["coupon_valid_to_unix"][:] = 1000.0
    cols["coupon_per_user_limit"][:] = 1.0
    cols["coupon_audience"] = np.array([a.text for a in parsed], dtype=object)
    cols["coupon_audience_min_tier"] = np.array([a.min_tier for a in parsed], float)
    cols["coupon_audience_segment_mask"] = np.array([a.segment_mask for a in parsed], float)
    return Catalog(ids, cols, 0.0)


AUDIENCES = _catalog({"a-all": "all", "b-members": "members", "c-gold": "tier>=gold",
                      "d-students": "segments:students", "e-min-spend": "members"})


def test_not_in_audience_comes_after_the_catalogue_rules_and_before_the_per_user_limit():
    cat = AUDIENCES
    cat.columns["coupon_min_spend"][cat.index["e-min-spend"]] = 50.0
    cands = stages.candidates(RankRequest("u"), cat, 500.0)
    silver = (float(CONFIG.rank("silver")), 0.0)
    el = stages.eligibility(RankRequest("u", placement="member_centre"), cat, cands, 500.0,
                            ucp_redemptions=np.ones(len(cands)) * [0, 1, 0, 0, 0], member=silver)
    reasons = {cands.ids[i]: Reason(int(r)) for i, r in enumerate(el.reason)}
    assert reasons == {"a-all": Reason.ELIGIBLE, "b-members": Reason.PER_USER_LIMIT_REACHED,
                       "c-gold": Reason.NOT_IN_AUDIENCE, "d-students": Reason.NOT_IN_AUDIENCE,
                       "e-min-spend": Reason.MIN_SPEND_NOT_MET}
    assert el.detail[list(cands.ids).index("c-gold")] == "for members of tier 'gold' or above"
    # not checked at all without a membership (the first pass of a request that carries none)
    unchecked = stages.eligibility(RankRequest("u"), cat, cands, 500.0)
    assert Reason.NOT_IN_AUDIENCE not in unchecked.reason
    assert int(Reason.NOT_IN_AUDIENCE) == pb.INELIGIBILITY_REASON_NOT_IN_AUDIENCE


# ------------------------------------------------------------------ the served data
def _when(built) -> pd.Timestamp:
    return built.last_snapshot + pd.Timedelta(hours=10)


def _memberships(built) -> pd.DataFrame:
    """Each user's membership in the online store: the latest row up to the last snapshot."""
    m = pd.read_parquet(built.repo / "data" / "user_membership.parquet")
    m = m[m.event_timestamp <= built.last_snapshot].sort_values("event_timestamp", kind="stable")
    return m.drop_duplicates("user_id", keep="last").assign(user_id=lambda d: d.user_id.astype(str))


def _pick(built, rank: int, mask: int | None = None) -> str:
    m = _memberships(built)
    m = m[(m.membership_tier_rank == rank) & ((m.membership_segment_mask == mask) if mask is not None else True)]
    assert len(m), f"the tiny data has no user of tier rank {rank}"
    return min(m.user_id)


def _non_member(built) -> str:
    """A user who is in the store (has activity) and has no membership row at all."""
    ua = pd.read_parquet(built.repo / "data" / "user_activity.parquet", columns=["user_id"])
    users = sorted(set(ua.user_id.astype(str)) - set(_memberships(built).user_id))
    return users[0]


CART = dict(cart_total_minor=10_000_000)  # $100,000: every minimum spend is met


def _restricted_candidates(catalog, t: float) -> tuple[list[str], dict[str, str]]:
    """The coupons active at t and the audience of each."""
    rows = catalog.active(t)
    ids = [str(i) for i in catalog.ids[rows]]
    return ids, dict(zip(ids, catalog.columns["coupon_audience"][rows]))


def test_a_member_sees_member_coupons_at_the_member_centre_a_non_member_gets_not_in_audience(built, client, catalog):
    T = _when(built)
    ids, audience = _restricted_candidates(catalog, T.timestamp())
    tiered = {i for i, a in audience.items() if a == "members" or a.startswith("tier>=")}
    assert {audience[i] for i in tiered} >= {"members", "tier>=gold"}, "the tiny data lacks active member coupons"
    ask = dict(candidate_ids=ids, placement="member_centre", top_k=len(ids), request_time=T.to_pydatetime(), **CART)

    top = _pick(built, len(CONFIG.tiers))  # the highest tier: every tier audience admits it
    member = client.rank_coupons(top, explain=True, **ask)
    assert not member.degraded and member.model_version
    assert not [i for i in member.ineligible if i.reason == "NOT_IN_AUDIENCE" and i.coupon_id in tiered]
    ranked_exclusive = [c for c in member.ranked if c.coupon_id in tiered]
    assert ranked_exclusive and all(c.reasons is not None for c in ranked_exclusive)

    outsider = client.rank_coupons(_non_member(built), **ask)
    dropped = {i.coupon_id: i for i in outsider.ineligible if i.reason == "NOT_IN_AUDIENCE"}
    restricted = {i for i, a in audience.items() if a != "all"}
    assert set(dropped) == restricted  # exactly the coupons with an audience, whatever else holds
    assert not {c.coupon_id for c in outsider.ranked} & restricted
    for cid, item in dropped.items():
        assert item.detail == membership.describe(audience[cid]) and top not in item.detail


def test_a_lower_tier_is_refused_the_higher_tiers_coupons(built, client, catalog):
    T = _when(built)
    ids, audience = _restricted_candidates(catalog, T.timestamp())
    silver = _pick(built, 1)
    res = client.rank_coupons(silver, candidate_ids=ids, placement="member_centre", top_k=len(ids),
                              request_time=T.to_pydatetime(), **CART)
    dropped = {i.coupon_id for i in res.ineligible if i.reason == "NOT_IN_AUDIENCE"}
    above = {i for i, a in audience.items() if a.startswith("tier>=") and CONFIG.rank(a[6:]) > 1}
    members_only = {i for i, a in audience.items() if a == "members"}
    assert above and members_only
    assert above <= dropped and not members_only & dropped


def test_the_requests_membership_replaces_the_stored_one(built, client, catalog):
    T = _when(built)
    ids, audience = _restricted_candidates(catalog, T.timestamp())
    ask = dict(candidate_ids=ids, placement="member_centre", top_k=len(ids), request_time=T.to_pydatetime(), **CART)
    restricted = {i for i, a in audience.items() if a != "all"}
    top = CONFIG.tiers[-1]

    outsider = _non_member(built)
    promoted = client.rank_coupons(outsider, membership_tier=top, membership_segment_ids=list(CONFIG.segments), **ask)
    assert not [i for i in promoted.ineligible if i.reason == "NOT_IN_AUDIENCE"]
    assert {c.coupon_id for c in promoted.ranked} & restricted

    member = _pick(built, len(CONFIG.tiers))
    demoted = client.rank_coupons(member, membership_tier="", **ask)
    assert {i.coupon_id for i in demoted.ineligible if i.reason == "NOT_IN_AUDIENCE"} == restricted

    # and the model's membership features follow the request's: the same user, ranked as
    # a top-tier member by the store and by the request, gets the same scores
    stored = client.rank_coupons(member, **ask)
    said = client.rank_coupons(member, membership_tier=top, membership_segment_ids=CONFIG.segment_names(
        _memberships(built).set_index("user_id").loc[member, "membership_segment_mask"]), **ask)
    assert [(c.coupon_id, c.score) for c in said.ranked] == [(c.coupon_id, c.score) for c in stored.ranked]


def test_a_cold_start_user_is_no_member_unless_the_request_says_so(built, client, catalog):
    T = _when(built)
    ids, audience = _restricted_candidates(catalog, T.timestamp())
    restricted = {i for i, a in audience.items() if a != "all"}
    ask = dict(candidate_ids=ids, placement="member_centre", top_k=len(ids), request_time=T.to_pydatetime(), **CART)
    new = client.rank_coupons("u-never-seen-by-the-store", **ask)
    assert new.cold_start
    assert {i.coupon_id for i in new.ineligible if i.reason == "NOT_IN_AUDIENCE"} == restricted
    joined = client.rank_coupons("u-never-seen-by-the-store", membership_tier="silver", **ask)
    assert not {i.coupon_id for i in joined.ineligible if i.reason == "NOT_IN_AUDIENCE"} & \
        {i for i, a in audience.items() if a == "members"}


def test_without_the_store_a_user_is_no_member_unless_the_request_says_so(built, server, client, catalog,
                                                                          monkeypatch):
    T = _when(built)
    ids, audience = _restricted_candidates(catalog, T.timestamp())
    restricted = {i for i, a in audience.items() if a != "all"}
    ask = dict(candidate_ids=ids, placement="member_centre", top_k=len(ids), request_time=T.to_pydatetime(), **CART)

    def broken(*args, **kwargs):
        raise ConnectionError("down")

    monkeypatch.setattr(server.ranker.online.reader, "read_many", broken)
    member = _pick(built, len(CONFIG.tiers))
    fallback = client.rank_coupons(member, **ask)
    assert fallback.degraded
    assert {i.coupon_id for i in fallback.ineligible if i.reason == "NOT_IN_AUDIENCE"} == restricted
    said = client.rank_coupons(member, membership_tier=CONFIG.tiers[-1], membership_segment_ids=list(CONFIG.segments),
                               **ask)
    assert said.degraded and not [i for i in said.ineligible if i.reason == "NOT_IN_AUDIENCE"]


@pytest.mark.parametrize("membership, field, words", [
    (pb.Membership(tier="diamond"), "context.membership.tier", "is not one of the server's tiers"),
    (pb.Membership(tier="x" * 129), "context.membership.tier", "more than the limit of 128"),
    (pb.Membership(segment_ids=["chess_club"]), "context.membership.segment_ids", "not one of the server's segments"),
    (pb.Membership(segment_ids=["students", ""]), "context.membership.segment_ids", "entry 1 is empty"),
    (pb.Membership(segment_ids=["students"] * 101), "context.membership.segment_ids", "101 entries"),
])
def test_a_bad_membership_is_invalid_argument_naming_the_field(stub, membership, field, words):
    request = pb.RankCouponsRequest(user_id="u1", context=pb.RequestContext(
        placement=pb.PLACEMENT_MEMBER_CENTRE, membership=membership))
    with pytest.raises(grpc.RpcError) as err:
        stub.RankCoupons(request, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field) and words in err.value.details()


def test_limits_are_inclusive_and_repeats_count_once(stub, built):
    T = _when(built)
    request = pb.RankCouponsRequest(user_id="u1", context=pb.RequestContext(
        placement=pb.PLACEMENT_MEMBER_CENTRE, membership=pb.Membership(tier=CONFIG.tiers[0], segment_ids=["students"] * 100)))
    request.context.request_time.FromDatetime(T.to_pydatetime())
    assert stub.RankCoupons(request, timeout=5).request_id


def _historical(built, catalog, art, user: str, ids: list[str], T: pd.Timestamp) -> pd.DataFrame:
    """Feast's historical rows of the model's feature service for a member-centre request
    at T with the test's cart, one per coupon in ``ids`` (indexed by coupon id)."""
    from couponrank.features import repo

    target = dict(zip(catalog.ids, catalog.columns["coupon_target_category"]))
    entity_df = pd.DataFrame({
        "user_id": user, "coupon_id": ids, "category": [target[i] for i in ids],
        "event_timestamp": pd.Series([T] * len(ids)).astype("datetime64[us, UTC]"),
        "cart_value": CART["cart_total_minor"] / 100, "cart_categories": "", "placement": "member_centre",
        "request_ts_unix": T.timestamp(),
    })
    store = repo.store(built.repo)
    hist = store.get_historical_features(entity_df=entity_df,
                                         features=store.get_feature_service(art.metadata["feature_service"])).to_df()
    return hist.set_index("coupon_id").loc[ids]


def test_member_centre_scores_equal_offline_scores_with_membership_features(built, client, catalog):
    """Train/serve parity at the member centre for a member: the served score is the
    booster's on Feast's historical row (membership features included)."""
    T = _when(built) + pd.Timedelta(hours=3.5)
    user = _pick(built, len(CONFIG.tiers))
    art = load_artifact(built.models)
    assert {"membership_tier_rank", "coupon_audience_min_tier"} <= set(art.features)
    ids, _ = _restricted_candidates(catalog, T.timestamp())
    res = client.rank_coupons(user, candidate_ids=ids, placement="member_centre", top_k=len(ids),
                              request_time=T.to_pydatetime(), **CART)
    served = {c.coupon_id: c.score for c in res.ranked}
    assert len(served) >= 3
    ranked = list(served)
    hist = _historical(built, catalog, art, user, ranked, T)
    assert (hist.membership_tier_rank == len(CONFIG.tiers)).all()
    X = hist[art.features].astype(np.float64).to_numpy()
    expected = lgb.Booster(model_file=str(art.model_file)).predict(X, raw_score=True)
    np.testing.assert_allclose([served[i] for i in ranked], expected, rtol=0, atol=1e-9)


def test_the_requests_membership_feeds_the_models_membership_features(built, client, catalog):
    """A non-member said by the request to be a top-tier member in every segment is
    scored on exactly those membership features (Feast's row, membership replaced)."""
    T = _when(built) + pd.Timedelta(hours=3.5)
    user = _non_member(built)
    art = load_artifact(built.models)
    ids, _ = _restricted_candidates(catalog, T.timestamp())
    ask = dict(candidate_ids=ids, placement="member_centre", top_k=len(ids), request_time=T.to_pydatetime(), **CART)
    said = client.rank_coupons(user, membership_tier=CONFIG.tiers[-1], membership_segment_ids=list(CONFIG.segments),
                               **ask)
    served = {c.coupon_id: c.score for c in said.ranked}
    ranked = list(served)
    hist = _historical(built, catalog, art, user, ranked, T)
    assert hist.membership_tier_rank.isna().all()  # the store knows no membership for this user
    booster = lgb.Booster(model_file=str(art.model_file))
    as_stored = booster.predict(hist[art.features].astype(np.float64).to_numpy(), raw_score=True)
    hist = hist.assign(membership_tier_rank=float(len(CONFIG.tiers)), membership_segment_count=float(len(CONFIG.segments)))
    as_said = booster.predict(hist[art.features].astype(np.float64).to_numpy(), raw_score=True)
    np.testing.assert_allclose([served[i] for i in ranked], as_said, rtol=0, atol=1e-9)
    assert np.abs(as_said - as_stored).max() > 1e-6  # the model reads membership: the override is visible
