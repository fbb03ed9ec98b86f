"""The RankCoupons service: the pure stages, then the real gRPC server in-process on
tiny data (ranking, eligibility, explanations, train/serve parity, cold start, bad
input, deadlines, a broken online store, health, reflection, model info, a model the
registry does not match)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timezone

import grpc
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from couponrank.client import CouponRankClient, CouponRankError
from couponrank.server import stages
from couponrank.server.catalog import FLOAT_COLUMNS, STATS_COLUMNS, STRING_COLUMNS, Catalog
from couponrank.server.stages import RankRequest, Reason
from couponrank.training.artifact import load_artifact
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.slow, pytest.mark.clock]  # clock: run again with the clock moved ahead
pytest_plugins = ["server_fixtures"]  # built, server, target, client, stub, catalog


# ================================================================== pure stages
def _catalog(rows: dict[str, dict]) -> Catalog:
    ids = np.array(sorted(rows), dtype=object)
    defaults = {"coupon_type": "percent_off", "coupon_scope": "all", "coupon_scope_value": "",
                "coupon_target_category": "__all__", "coupon_campaign_id": "k", "coupon_value": 10.0,
                "coupon_min_spend": 0.0, "coupon_valid_from_unix": 0.0, "coupon_valid_to_unix": 1000.0,
                "coupon_per_user_limit": 1.0, "coupon_budget": 100.0, "coupon_redemption_rate_30d": np.nan,
                "coupon_budget_used_frac": 0.0, "coupon_audience": "all", "coupon_audience_min_tier": 0.0,
                "coupon_audience_segment_mask": 0.0, "coupon_audience_segment_count": 0.0}
    cols = {}
    for name in STRING_COLUMNS:
        cols[name] = np.array([rows[i].get(name, defaults[name]) for i in ids], dtype=object)
    for name in FLOAT_COLUMNS + STATS_COLUMNS:
        cols[name] = np.array([rows[i].get(name, defaults[name]) for i in ids], dtype=np.float64)
    return Catalog(ids, cols, 0.0)


HAND = _catalog({
    "c1": {"coupon_per_user_limit": 2.0},
    "c2": {"coupon_valid_to_unix": 100.0},  # expired at 500
    "c3": {"coupon_valid_from_unix": 600.0},  # not yet valid at 500
    "c4": {"coupon_scope": "category", "coupon_scope_value": "shoes"},
    "c5": {"coupon_min_spend": 100.0},
    "c6": {"coupon_scope": "brand", "coupon_scope_value": "acme"},
    "c7": {"coupon_scope": "merchant", "coupon_scope_value": "m1"},
})


def _reasons(el: stages.Eligibility, cands: stages.Candidates) -> dict[str, Reason]:
    return {cands.ids[i]: Reason(int(r)) for i, r in enumerate(el.reason)}


def test_candidates_default_to_the_coupons_active_now():
    req = RankRequest("u", now=500.0)
    assert list(stages.candidates(req, HAND, 500.0).ids) == ["c1", "c4", "c5", "c6", "c7"]
    named = stages.candidates(RankRequest("u", candidate_ids=("c7", "zz")), HAND, 500.0)
    assert list(named.ids) == ["c7", "zz"] and list(named.rows) == [6, -1]


def test_eligibility_gives_each_dropped_coupon_its_reason():
    req = RankRequest("u", candidate_ids=("c1", "c2", "c3", "c4", "c5", "c6", "c7", "zz"), placement="cart",
                      cart_total=50.0, cart_categories=("shoes",), cart_merchants=("m1",), now=500.0)
    cands = stages.candidates(req, HAND, req.now)
    el = stages.eligibility(req, HAND, cands, req.now)
    assert _reasons(el, cands) == {
        "c1": Reason.ELIGIBLE, "c2": Reason.EXPIRED, "c3": Reason.NOT_YET_VALID, "c4": Reason.ELIGIBLE,
        "c5": Reason.MIN_SPEND_NOT_MET, "c6": Reason.OUT_OF_SCOPE, "c7": Reason.ELIGIBLE,
        "zz": Reason.UNKNOWN_COUPON}
    assert "50.00" in el.detail[4] and "100.00" in el.detail[4]
    assert all(el.detail[i] == "" for i in np.flatnonzero(el.keep))
    # online features: per-user limit (c1 limit 2) and budget; NaN means unknown, not dropped
    ucp = np.array([2, 0, 0, 5, 0, 0, np.nan, 0], dtype=float)
    budget = np.array([0, 0, 0, 1.0, 0, 0, np.nan, 0])
    el = stages.eligibility(req, HAND, cands, req.now, ucp, budget)
    got = _reasons(el, cands)
    assert got["c1"] is Reason.PER_USER_LIMIT_REACHED and got["c4"] is Reason.PER_USER_LIMIT_REACHED
    assert got["c7"] is Reason.ELIGIBLE
    el = stages.eligibility(req, HAND, cands, req.now, np.zeros(8), budget)
    assert _reasons(el, cands)["c4"] is Reason.BUDGET_EXHAUSTED


def test_scope_is_checked_only_where_the_cart_is_used():
    ids = ("c1", "c4", "c6", "c7")
    for placement, expected in (("home", [True] * 4), ("product_page", [True] * 4),
                                ("checkout", [True, False, False, False])):  # empty cart at checkout
        req = RankRequest("u", candidate_ids=ids, placement=placement, now=500.0)
        cands = stages.candidates(req, HAND, req.now)
        assert list(stages.eligibility(req, HAND, cands, req.now).keep) == expected, placement


def test_an_empty_ranking_says_why():
    at = "1970-01-01T00:08:20Z"  # 500 s
    none_active = RankRequest("u", now=5_000.0)
    assert stages.empty_note(none_active, HAND, 0, 5_000.0) == (
        "no coupon is active at 1970-01-01T01:23:20Z; the catalogue's coupons are valid 1970-01-01 .. 1970-01-01")
    named = RankRequest("u", candidate_ids=("c2", "nope"), now=500.0)
    assert stages.empty_note(named, HAND, 2, 500.0) == (
        f"none of the 2 candidates is eligible at {at}; see ineligible_coupons")
    one = RankRequest("u", candidate_ids=("c2",), now=500.0)
    assert stages.empty_note(one, HAND, 1, 500.0) == f"the one candidate is not eligible at {at}; see ineligible_coupons"
    every_active = RankRequest("u", now=500.0)
    assert stages.empty_note(every_active, HAND, 5, 500.0) == (
        f"none of the 5 coupons active at {at} is eligible; see ineligible_coupons")
    empty = _catalog({})
    assert stages.empty_note(RankRequest("u", now=500.0), empty, 0, 500.0) == "the catalogue holds no coupon"


def test_assemble_order_and_score():
    X = stages.assemble({"b": np.array([1.0, 2.0]), "a": np.array([3.0, np.nan])}, ["a", "b"])
    np.testing.assert_array_equal(X, [[3.0, 1.0], [np.nan, 2.0]])
    assert X.dtype == np.float64
    with pytest.raises(KeyError, match="zzz"):
        stages.assemble({"a": np.zeros(2)}, ["a", "zzz"])
    ids = np.array(["d", "c", "a", "b", "e"], dtype=object)
    scores = np.array([1.0, 2.0, 2.0, np.nan, 0.5])
    assert list(stages.order(scores, ids)) == [2, 1, 0, 4, 3]  # ties by id, NaN last
    assert list(stages.order(scores, ids, top_k=2)) == [2, 1]

    class Twice:
        def predict(self, X):
            return 2 * X[:, 0]

    np.testing.assert_array_equal(stages.score(Twice(), X[:1]), [6.0])
    assert stages.score(Twice(), np.empty((0, 2))).shape == (0,)


# ================================================================== helpers
def _request_time(built, hours: float = 10.0) -> pd.Timestamp:
    """A time after the last snapshot: the online store and the historical join agree."""
    return built.last_snapshot + pd.Timedelta(hours=hours)


def _active_user(built) -> str:
    ua = pd.read_parquet(built.repo / "data" / "user_activity.parquet", columns=["user_id"])
    rows = ua.user_id.astype(str).value_counts()
    return min(rows.index[rows == rows.max()])  # ties by id: value_counts orders ties by CPU (SIMD sort)


def _artifact(built):
    return load_artifact(built.models)


# ================================================================== ranking
def test_ranking_is_sorted_with_ranks_and_model_version(built, client, catalog):
    T = _request_time(built)
    res = client.rank_coupons(_active_user(built), placement="home", cart_total_minor=20000, top_k=0,
                              request_time=T.to_pydatetime(), request_id="req-1")
    assert res.request_id == "req-1"
    assert res.model_version == _artifact(built).version
    assert not res.degraded and not res.cold_start
    assert 0 < len(res.ranked) <= 10  # top_k 0: the server's default (10)
    assert [c.rank for c in res.ranked] == list(range(1, len(res.ranked) + 1))
    scores = [c.score for c in res.ranked]
    assert scores == sorted(scores, reverse=True)
    # empty candidates = every coupon active at T; each is ranked or dropped with a reason
    active = set(catalog.ids[catalog.active(T.timestamp())])
    everything = client.rank_coupons(_active_user(built), placement="home", cart_total_minor=20000,
                                     top_k=500, request_time=T.to_pydatetime())
    assert {c.coupon_id for c in everything.ranked} | {c.coupon_id for c in everything.ineligible} == active
    assert not {c.coupon_id for c in everything.ranked} & {c.coupon_id for c in everything.ineligible}
    # a request without an id gets one
    assert client.rank_coupons("u000001", placement="home", request_time=T.to_pydatetime()).request_id


def test_a_request_without_a_time_ranks_at_the_servers_clock(built, client):
    """The test server's clock is pinned (tests/pinned.py): no request_time means that
    instant, and an answer with nothing active says why instead of an empty list."""
    from pinned import NOW

    assert NOW > built.last_snapshot
    user = _active_user(built)
    ask = dict(placement="checkout", cart_total_minor=12_000, cart_categories=["cat01"], top_k=5)
    implicit = client.rank_coupons(user, **ask)
    explicit = client.rank_coupons(user, **ask, request_time=NOW)
    assert implicit.ranked and implicit.note == ""
    assert implicit.ranked == explicit.ranked and implicit.ineligible == explicit.ineligible
    later = client.rank_coupons(user, **ask, request_time=NOW + pd.Timedelta(days=400))
    assert later.ranked == () and later.ineligible == ()
    assert later.note.startswith(f"no coupon is active at {(NOW + pd.Timedelta(days=400)):%Y-%m-%dT%H:%M:%SZ}; "
                                 "the catalogue's coupons are valid ")


def test_ineligible_candidates_carry_their_reason(built, client, catalog):
    c = catalog.columns
    vf, vt, ms = c["coupon_valid_from_unix"], c["coupon_valid_to_unix"], c["coupon_min_spend"]
    scope = c["coupon_scope"]
    # a time at which some coupons have ended, some not begun, and the rest are varied enough
    for t in np.sort(vf) + 1:
        active = (vf <= t) & (t < vt)
        picks = {
            "EXPIRED": np.flatnonzero(vt <= t), "NOT_YET_VALID": np.flatnonzero(vf > t),
            "MIN_SPEND_NOT_MET": np.flatnonzero(active & (scope == "all") & (ms > 0)),
            "OUT_OF_SCOPE": np.flatnonzero(active & (scope == "category") & (ms == 0)),
            "ranked": np.flatnonzero(active & (scope == "all") & (ms == 0)),
        }
        if all(len(v) for v in picks.values()):
            break
    else:
        pytest.fail("no request time gives every kind of candidate in the tiny data")
    chosen = {kind: str(catalog.ids[rows[0]]) for kind, rows in picks.items()}
    chosen["UNKNOWN_COUPON"] = "no-such-coupon"
    res = client.rank_coupons("u000001", candidate_ids=list(chosen.values()), placement="cart",
                              cart_total_minor=0, cart_categories=["not-a-category"],
                              request_time=pd.Timestamp(t, unit="s", tz="UTC").to_pydatetime())
    assert [r.coupon_id for r in res.ranked] == [chosen["ranked"]]
    assert {i.coupon_id: i.reason for i in res.ineligible} == {
        v: k for k, v in chosen.items() if k != "ranked"}
    assert all(i.detail for i in res.ineligible)


def test_per_user_limit_from_the_online_store(built, client, catalog):
    T = _request_time(built)
    usage = pd.read_parquet(built.repo / "data" / "user_coupon_usage.parquet")
    usage = usage.sort_values("event_timestamp", kind="stable").drop_duplicates(["user_id", "coupon_id"], keep="last")
    limit = dict(zip(catalog.ids, catalog.columns["coupon_per_user_limit"]))
    active = set(catalog.ids[catalog.active(T.timestamp())])
    usage = usage[usage.coupon_id.astype(str).isin(active)]
    hit = usage[usage.ucp_redemptions_total >= usage.coupon_id.astype(str).map(limit)].iloc[0]
    res = client.rank_coupons(str(hit.user_id), candidate_ids=[str(hit.coupon_id)], placement="home",
                              cart_total_minor=10_000_000, request_time=T.to_pydatetime())
    assert [(i.coupon_id, i.reason) for i in res.ineligible] == [(str(hit.coupon_id), "PER_USER_LIMIT_REACHED")]


def test_explanations_add_up_to_the_score(built, trusted_client):
    """For a caller allowed to see every feature (server/callers.py)."""
    client = trusted_client
    art = _artifact(built)
    booster = lgb.Booster(model_file=str(art.model_file))
    bias = booster.predict(np.zeros((1, len(art.features))), pred_contrib=True)[0, -1]
    res = client.rank_coupons(_active_user(built), placement="cart", cart_total_minor=9999,
                              cart_categories=["cat01"], explain=True, top_k=5,
                              request_time=_request_time(built).to_pydatetime())
    assert res.ranked
    for c in res.ranked:
        assert c.reasons and {r.feature for r in c.reasons} <= set(art.features)
        assert abs(sum(r.contribution for r in c.reasons) + bias - c.score) < 1e-6
        sizes = [abs(r.contribution) for r in c.reasons]
        assert sizes == sorted(sizes, reverse=True)
    without = client.rank_coupons(_active_user(built), placement="cart", cart_total_minor=9999, top_k=5,
                                  cart_categories=["cat01"], request_time=_request_time(built).to_pydatetime())
    assert all(not c.reasons for c in without.ranked)


def test_max_reasons_caps_the_reasons_of_each_coupon(built, trusted_client):
    """A request's max_reasons keeps the largest contributions; 0 is the server's default
    (this module's server: every non-zero contribution); without explain, no reasons."""
    ask = dict(placement="cart", cart_total_minor=9999, cart_categories=["cat01"], top_k=5,
               request_time=_request_time(built).to_pydatetime())
    full = trusted_client.rank_coupons(_active_user(built), explain=True, **ask)
    assert full.ranked and max(len(c.reasons) for c in full.ranked) > 2  # else the cap could not show
    capped = trusted_client.rank_coupons(_active_user(built), explain=True, max_reasons=2, **ask)
    assert [(c.coupon_id, c.score) for c in capped.ranked] == [(c.coupon_id, c.score) for c in full.ranked]
    def named(coupon):  # a reason's value may be NaN (missing), which equals nothing
        return [(r.feature, r.contribution) for r in coupon.reasons]

    for c, f in zip(capped.ranked, full.ranked):
        assert 0 < len(c.reasons) <= 2 and named(c) == named(f)[:2]  # the two largest, as the full list orders
    at_limit = trusted_client.rank_coupons(_active_user(built), explain=True, max_reasons=50, **ask)
    assert [named(c) for c in at_limit.ranked] == [named(f)[:50] for f in full.ranked]
    unexplained = trusted_client.rank_coupons(_active_user(built), max_reasons=2, **ask)
    assert unexplained.ranked and all(not c.reasons for c in unexplained.ranked)


def test_max_reasons_is_carried_to_the_ranker():
    from couponrank.server.service import MAX_REASONS_LIMIT, ServerConfig, parse_request

    assert MAX_REASONS_LIMIT == 50
    for value in (0, 1, MAX_REASONS_LIMIT):
        request = _valid_request()
        request.explain, request.max_reasons = True, value
        assert parse_request(request, ServerConfig(), clock=lambda: 0.0).max_reasons == value
    assert RankRequest("u").max_reasons == 0  # the server's default


def test_served_scores_equal_offline_scores(built, client, catalog):
    """Train/serve parity: the served score is booster.predict on Feast's historical
    row for the same user, coupon, cart, placement and time."""
    from couponrank.features import repo

    T = _request_time(built, hours=13.5)
    user = _active_user(built)
    active = list(catalog.ids[catalog.active(T.timestamp())])
    res = client.rank_coupons(user, candidate_ids=active, placement="product_page", cart_total_minor=12345,
                              cart_categories=["cat01", "cat03"], top_k=len(active),
                              request_time=T.to_pydatetime())
    served = {c.coupon_id: c.score for c in res.ranked}
    assert len(served) >= 5
    ids = list(served)
    target = dict(zip(catalog.ids, catalog.columns["coupon_target_category"]))
    entity_df = pd.DataFrame({
        "user_id": user, "coupon_id": ids, "category": [target[i] for i in ids],
        "event_timestamp": pd.Series([T] * len(ids)).astype("datetime64[us, UTC]"),
        "cart_value": 123.45, "cart_categories": "cat01|cat03", "placement": "product_page",
        "request_ts_unix": T.timestamp(),
    })
    store = repo.store(built.repo)
    art = _artifact(built)
    hist = store.get_historical_features(entity_df=entity_df,
                                         features=store.get_feature_service(art.metadata["feature_service"])).to_df()
    X = hist.set_index("coupon_id").loc[ids, art.features].astype(np.float64).to_numpy()
    expected = lgb.Booster(model_file=str(art.model_file)).predict(X, raw_score=True)  # any objective: raw
    np.testing.assert_allclose([served[i] for i in ids], expected, rtol=0, atol=1e-9)


def test_unknown_user_is_ranked_as_a_cold_start(built, client):
    T = _request_time(built).to_pydatetime()
    res = client.rank_coupons("u-never-seen", placement="home", cart_total_minor=5000, request_time=T)
    assert res.cold_start and not res.degraded and res.ranked and res.model_version
    assert not client.rank_coupons(_active_user(built), placement="home", request_time=T).cold_start


# ================================================================== bad input
def _valid_request() -> pb.RankCouponsRequest:
    return pb.RankCouponsRequest(user_id="u000001", context=pb.RequestContext(
        placement=pb.PLACEMENT_CART, cart_total=pb.Money(currency_code="USD", amount_minor=100)))


BAD_INPUT = {
    "empty user": ("user_id", lambda r: setattr(r, "user_id", "")),
    "no placement": ("context.placement", lambda r: setattr(r.context, "placement", pb.PLACEMENT_UNSPECIFIED)),
    "unknown placement": ("context.placement", lambda r: setattr(r.context, "placement", 99)),
    "negative cart": ("context.cart_total.amount_minor",
                      lambda r: setattr(r.context.cart_total, "amount_minor", -1)),
    "other currency": ("context.cart_total.currency_code",
                       lambda r: setattr(r.context.cart_total, "currency_code", "EUR")),
    "no currency": ("context.cart_total.currency_code",
                    lambda r: setattr(r.context.cart_total, "currency_code", "")),
    "duplicate ids": ("candidate_coupon_ids", lambda r: r.candidate_coupon_ids.extend(["c00001", "c00001"])),
    "too many ids": ("candidate_coupon_ids", lambda r: r.candidate_coupon_ids.extend(f"c{i}" for i in range(501))),
    "negative top_k": ("top_k", lambda r: setattr(r, "top_k", -1)),
    "negative max_reasons": ("max_reasons", lambda r: (setattr(r, "explain", True), setattr(r, "max_reasons", -1))),
    "max_reasons over 50": ("max_reasons", lambda r: (setattr(r, "explain", True), setattr(r, "max_reasons", 51))),
    "max_reasons over 50, no explain": ("max_reasons", lambda r: setattr(r, "max_reasons", 51)),
    "10 KB currency": ("context.cart_total.currency_code",
                       lambda r: setattr(r.context.cart_total, "currency_code", "EUR" * 3_400)),
    "long user id": ("user_id", lambda r: setattr(r, "user_id", "u" * 129)),
    "long request id": ("request_id", lambda r: setattr(r, "request_id", "r" * 129)),
    "long candidate id": ("candidate_coupon_ids", lambda r: r.candidate_coupon_ids.extend(["c00001", "c" * 10_000])),
    "long duplicate id": ("candidate_coupon_ids", lambda r: r.candidate_coupon_ids.extend(["é" * 60] * 2)),
    "long category": ("context.cart_categories", lambda r: r.context.cart_categories.append("x" * 129)),
    "too many brands": ("context.cart_brands", lambda r: r.context.cart_brands.extend(["b"] * 10_001)),
    "too many merchants": ("context.cart_merchant_ids",
                           lambda r: r.context.cart_merchant_ids.extend(["m"] * 10_001)),
    "time past year 9999": ("context.request_time", lambda r: setattr(r.context.request_time, "seconds", 2 ** 62)),
    "negative nanos": ("context.request_time", lambda r: setattr(r.context.request_time, "nanos", -1)),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_rejected_naming_the_field(stub, case):
    field_name, spoil = BAD_INPUT[case]
    assert stub.RankCoupons(_valid_request(), timeout=5).ranked_coupons is not None  # the base request is fine
    request = _valid_request()
    spoil(request)
    with pytest.raises(grpc.RpcError) as exc:
        stub.RankCoupons(request, timeout=5)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith(field_name + ":")
    assert len(exc.value.details()) < 300  # quotes at most a short prefix of the caller's value


def test_limits_are_inclusive(stub):
    request = _valid_request()
    request.user_id = "u" * 128
    request.context.cart_brands.extend(["b" * 128] * 10_000)
    assert stub.RankCoupons(request, timeout=10).ranked_coupons is not None


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x12\x05\xc3\x28abc", b"\x0a" + b"\x80" * 11])
def test_malformed_bytes_are_invalid_argument_without_a_traceback(target, caplog, data):
    """The server decodes requests itself: bytes that are no RankCouponsRequest (bad
    framing, invalid UTF-8 in user_id, an overlong varint) get INVALID_ARGUMENT, and
    nothing is logged (grpcio's own decoder answered INTERNAL and logged a traceback)."""
    from couponrank.server.service import SERVICE_NAME

    with grpc.insecure_channel(target) as channel:
        raw = channel.unary_unary(f"/{SERVICE_NAME}/RankCoupons")  # no serializers: bytes as they are
        with caplog.at_level("DEBUG"):
            with pytest.raises(grpc.RpcError) as exc:
                raw(data, timeout=5)
            with pytest.raises(grpc.RpcError) as info_exc:
                channel.unary_unary(f"/{SERVICE_NAME}/GetModelInfo")(b"\xff", timeout=5)
            assert channel.unary_unary(f"/{SERVICE_NAME}/GetModelInfo")(b"", timeout=5)  # an empty request is fine
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith("request: not a valid couponrank.v1.RankCouponsRequest message")
    assert info_exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


# ================================================================== deadlines and a broken store
class _Aborted(Exception):
    pass


class _FakeContext:
    def __init__(self, remaining):
        self.remaining = remaining
        self.aborted = None

    def time_remaining(self):
        return self.remaining

    def invocation_metadata(self):
        return ()

    def auth_context(self):
        return {}

    def abort(self, code, details):
        self.aborted = (code, details)
        raise _Aborted(details)


def test_a_passed_deadline_stops_the_request(built, server, client):
    T = _request_time(built).to_pydatetime()
    with pytest.raises(CouponRankError) as exc:
        client.rank_coupons(_active_user(built), placement="home", request_time=T, timeout=0.0)  # passed at once
    assert exc.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # on the server: the deadline is checked between stages
    ctx = _FakeContext(remaining=0.0)
    with pytest.raises(_Aborted):
        server.servicer.RankCoupons(_valid_request(), ctx)
    assert ctx.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert server.servicer.RankCoupons(_valid_request(), _FakeContext(remaining=5.0)).request_id


def test_admission_refuses_only_deadlines_shorter_than_a_typical_answer():
    from couponrank.server.service import Admission

    a = Admission(alpha=0.5, warm_up=3)
    a.observe(0.010)
    a.observe(0.010)
    assert not a.refuse(0.001)  # still warming up: nothing refused
    a.observe(0.020)
    assert a.typical == pytest.approx(0.015)
    assert a.refuse(0.014) and not a.refuse(0.016) and not a.refuse(None)  # None: no deadline


def test_a_call_that_cannot_meet_its_deadline_is_refused_before_work(server, monkeypatch):
    from couponrank.server.service import Admission

    servicer = server.servicer
    monkeypatch.setattr(servicer, "admission", Admission(warm_up=1))
    servicer.admission.observe(0.010)
    called = []
    monkeypatch.setattr(servicer.ranker, "rank", lambda *a, **k: called.append(1))
    ctx = _FakeContext(remaining=0.004)
    with pytest.raises(_Aborted, match="refused before any work"):
        servicer.RankCoupons(_valid_request(), ctx)
    assert ctx.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED and not called


def test_calls_beyond_running_and_queued_are_shed_at_once(built, monkeypatch):
    """One thread and no queue: while a call runs, the next gets RESOURCE_EXHAUSTED
    without waiting for it."""
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    running = serve(built.repo, built.models, port=0, config=ServerConfig(max_workers=1, max_queued=0),
                    clock=UNIX_CLOCK)
    entered, release = threading.Event(), threading.Event()
    rank = running.ranker.rank

    def held_rank(*args, **kwargs):
        entered.set()
        release.wait(10)
        return rank(*args, **kwargs)

    monkeypatch.setattr(running.ranker, "rank", held_rank)
    target = f"127.0.0.1:{running.port}"
    try:
        with CouponRankClient(target, timeout=10.0) as c:
            result = {}
            first = threading.Thread(target=lambda: result.update(r=c.rank_coupons("u000001", placement="home")))
            first.start()
            assert entered.wait(10)  # the first call holds the only thread
            with grpc.insecure_channel(target) as channel:
                with pytest.raises(grpc.RpcError) as shed:
                    pb_grpc.CouponRankingServiceStub(channel).RankCoupons(_valid_request(), timeout=10)
                assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert first.is_alive() and not release.is_set()  # answered while the first still held the thread
            release.set()
            first.join(10)
            assert result["r"].ranked
    finally:
        release.set()
        running.stop(0).wait(5)


def test_a_locked_sqlite_store_is_waited_for_only_within_the_deadline(built, server, client):
    """A writer holding the SQLite file's lock: the read waits what the caller's
    deadline leaves (not the fixed store timeout), and the answer is the popularity
    ranking with DEADLINE_PRESSURE, inside the deadline."""
    import sqlite3

    config = server.ranker.config
    assert server.ranker.read_inline and config.store_timeout == 0.25
    # a deadline under the store timeout; the reserve after the read is generous so that the
    # fallback answers in time even on a loaded machine (the read itself waits 0.24 - 0.12 s)
    reserve, config.deadline_reserve = config.deadline_reserve, 0.12
    writer = sqlite3.connect(built.repo / "data" / "online_store.db", timeout=1, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        res = client.rank_coupons("u000001", placement="home", request_time=_request_time(built).to_pydatetime(),
                                  timeout=0.24)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        config.deadline_reserve = reserve
    assert res.degraded and res.degraded_reason == "DEADLINE_PRESSURE" and res.ranked, res.degraded_detail
    assert "locked" in res.degraded_detail
    after = client.rank_coupons("u000001", placement="home", request_time=_request_time(built).to_pydatetime())
    assert not after.degraded  # no cooldown: the store was not to blame


def test_a_replaced_or_deleted_sqlite_store_is_noticed_and_reopened(built, catalog, tmp_path):
    """The store file deleted: degraded answers (not stale data); a new file moved into
    its place (here: one where nobody has used any coupon): read from then on."""
    import os
    import shutil
    import sqlite3

    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    repo = tmp_path / "features"
    shutil.copytree(built.repo, repo)
    store = repo / "data" / "online_store.db"
    T = _request_time(built)
    usage = pd.read_parquet(repo / "data" / "user_coupon_usage.parquet").sort_values("event_timestamp", kind="stable")
    usage = usage.drop_duplicates(["user_id", "coupon_id"], keep="last")
    limit = dict(zip(catalog.ids, catalog.columns["coupon_per_user_limit"]))
    active = set(catalog.ids[catalog.active(T.timestamp())])
    usage = usage[usage.coupon_id.astype(str).isin(active)]
    hit = usage[usage.ucp_redemptions_total >= usage.coupon_id.astype(str).map(limit)]
    hit = hit.sort_values(["user_id", "coupon_id"], kind="stable").iloc[0]
    user, coupon = str(hit.user_id), str(hit.coupon_id)

    running = serve(repo, built.models, port=0, config=ServerConfig(store_cooldown=0.0), clock=UNIX_CLOCK)
    running.ranker.online.reader.check_seconds = 0.0  # check the file at every read
    ask = dict(candidate_ids=[coupon], placement="home", cart_total_minor=10_000_000, request_time=T.to_pydatetime())
    try:
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=5.0) as c:
            first = c.rank_coupons(user, **ask)
            assert not first.degraded and [i.reason for i in first.ineligible] == ["PER_USER_LIMIT_REACHED"]

            fresh = tmp_path / "fresh.db"
            shutil.copy2(store, fresh)
            with sqlite3.connect(fresh) as db:
                (table,) = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                      "AND name LIKE '%user_coupon_usage'").fetchone()
                db.execute(f'DELETE FROM "{table}"')
            os.remove(store)
            gone = c.rank_coupons(user, **ask)
            assert gone.degraded and gone.degraded_reason == "FEATURE_STORE_UNAVAILABLE"

            os.replace(fresh, store)
            back = c.rank_coupons(user, **ask)
            assert not back.degraded and [r.coupon_id for r in back.ranked] == [coupon]  # the new file's data
    finally:
        running.stop(0).wait(5)


def test_online_store_failure_degrades_to_popularity(built, server, client, catalog, monkeypatch):
    T = _request_time(built).to_pydatetime()

    def broken(*args, **kwargs):
        raise ConnectionError("/srv/couponrank/features/data/online_store.db is down")

    assert server.ranker.read_inline  # SQLite: read on the RPC thread by default; a failure still degrades
    monkeypatch.setattr(server.ranker.online.reader, "read_many", broken)
    start = time.perf_counter()
    res = client.rank_coupons(_active_user(built), placement="home", cart_total_minor=20000, top_k=50,
                              request_time=T, timeout=0.5)
    assert time.perf_counter() - start < 0.5
    assert res.degraded and res.degraded_reason == "FEATURE_STORE_UNAVAILABLE"
    # the answer names the failure, never the store's path (it is in the server's log)
    assert "ConnectionError" in res.degraded_detail and "/srv/" not in res.degraded_detail
    assert res.model_version == "" and res.ranked
    assert [c.rank for c in res.ranked] == list(range(1, len(res.ranked) + 1))
    popularity = dict(zip(catalog.ids, np.nan_to_num(catalog.columns["coupon_redemption_rate_30d"])))
    assert [c.score for c in res.ranked] == pytest.approx([popularity[c.coupon_id] for c in res.ranked])
    assert [c.score for c in res.ranked] == sorted((c.score for c in res.ranked), reverse=True)

    def hanging(*args, **kwargs):
        time.sleep(1.0)
        raise AssertionError("unreachable: the request has been answered")

    # a store that hangs (a network store, read on the pool): answered within the store timeout
    monkeypatch.setattr(server.ranker, "read_inline", False)
    monkeypatch.setattr(server.ranker.online.reader, "read_many", hanging)
    start = time.perf_counter()
    res = client.rank_coupons(_active_user(built), placement="home", request_time=T, timeout=0.5)
    assert time.perf_counter() - start < 0.5
    assert res.degraded and "timed out" in res.degraded_detail
    assert res.degraded_reason == "FEATURE_STORE_UNAVAILABLE"

    # a deadline shorter than the store timeout: the caller's deadline is the cause, not the store
    server.ranker._store_down_until = 0.0
    res = client.rank_coupons(_active_user(built), placement="home", request_time=T, timeout=0.15)
    assert res.degraded and res.degraded_reason == "DEADLINE_PRESSURE", res.degraded_detail
    assert "deadline" in res.degraded_detail and res.ranked
    assert server.ranker._store_down_until == 0.0  # no cooldown: the store was not at fault


def test_unreachable_redis_degrades_within_the_deadline_and_stops_gracefully(built, monkeypatch):
    from server_fixtures import free_port

    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig

    monkeypatch.setenv("COUPONRANK_REDIS", f"127.0.0.1:{free_port()}")  # nothing listens there
    running = serve(built.repo, built.models, port=0, host="127.0.0.1", online="redis",
                    config=ServerConfig(store_timeout=0.2, store_cooldown=30.0))
    assert not running.ranker.read_inline  # a network store is read on the pool, under the store timeout
    T = _request_time(built).to_pydatetime()
    try:
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=0.5) as c:
            for _ in range(2):  # the second call skips the store during the cooldown
                start = time.perf_counter()
                res = c.rank_coupons("u000001", placement="home", request_time=T)
                assert time.perf_counter() - start < 0.5
                assert res.degraded and res.degraded_reason == "FEATURE_STORE_UNAVAILABLE" and res.ranked

            # graceful stop: an in-flight call finishes, new calls are refused
            rank = running.ranker.rank

            def slow_rank(*args, **kwargs):
                time.sleep(0.3)
                return rank(*args, **kwargs)

            monkeypatch.setattr(running.ranker, "rank", slow_rank)
            result = {}
            call = threading.Thread(target=lambda: result.update(
                r=c.rank_coupons("u000001", placement="home", request_time=T, timeout=3)))
            call.start()
            time.sleep(0.1)
            done = running.stop(grace=3)
            call.join(5)
            assert result["r"].ranked
            assert done.wait(5)
    finally:
        running.stop(0)
    with CouponRankClient(f"127.0.0.1:{running.port}", timeout=0.5, max_attempts=2, backoff=0.01) as c:
        with pytest.raises(CouponRankError) as exc:
            c.rank_coupons("u000001", placement="home", request_time=T)
        assert exc.value.code == grpc.StatusCode.UNAVAILABLE


# ================================================================== the server around the service
def test_health_reports_serving(target):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from couponrank.server.service import SERVICE_NAME

    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_every_method_of_the_service_is_served_from_raw_bytes(server):
    """A method added to the proto must be added to generic_handler too."""
    from types import SimpleNamespace

    from couponrank.server.service import generic_handler

    handler = generic_handler(server.servicer)
    for method in pb.DESCRIPTOR.services_by_name["CouponRankingService"].methods:
        h = handler.service(SimpleNamespace(method=f"/{method.full_name.rpartition('.')[0]}/{method.name}"))
        assert h is not None and h.request_deserializer is None, method.name


def test_secure_defaults_loopback_and_a_switch_for_reflection():
    import inspect

    from couponrank.cli import build_parser
    from couponrank.server.main import run, serve

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(run).parameters["host"].default == "127.0.0.1"
    assert build_parser().parse_args(["serve", "--no-reflection"]).reflection is False


def test_stopping_drains_then_refuses_and_reflection_can_be_off(built):
    """On stop, health reads NOT_SERVING at once while calls are still answered for
    the drain period; then new calls are refused (UNAVAILABLE, which clients retry)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    running = serve(built.repo, built.models, port=0, config=ServerConfig(reflection=False, drain_seconds=1.5),
                    clock=UNIX_CLOCK)
    target = f"127.0.0.1:{running.port}"
    with grpc.insecure_channel(target) as channel:
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                           timeout=5))
        assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
        health = health_pb2_grpc.HealthStub(channel)
        done = running.stop(grace=1.0)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
        with CouponRankClient(target, timeout=5.0) as c:
            assert c.rank_coupons("u000001", placement="home").ranked  # still answered while draining
        assert done.wait(10)
    with CouponRankClient(target, timeout=1.0, max_attempts=2, backoff=0.01) as c:
        with pytest.raises(CouponRankError) as refused:
            c.rank_coupons("u000001", placement="home")
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE


def test_prometheus_metrics_count_calls_codes_and_rankings(built, tmp_path):
    """--metrics-port: the standard gRPC server metrics by method and code, and the
    ranking ones, scraped over HTTP from a real server after known calls."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    running = serve(built.repo, built.models, port=0, config=ServerConfig(
        metrics_port=0, events_db=str(tmp_path / "events.db")), clock=UNIX_CLOCK)
    target = f"127.0.0.1:{running.port}"
    url = f"http://127.0.0.1:{running.metrics_port}/metrics"

    def scrape() -> dict:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return text, {(s.name, tuple(sorted(s.labels.items()))): s.value
                      for fam in text_string_to_metric_families(text) for s in fam.samples}

    # counters are per process (Feast's import puts prometheus_client in multiprocess
    # mode), and other servers in this test process counted too: compare with a baseline
    _, before = scrape()
    try:
        with CouponRankClient(target, timeout=5.0) as c:
            for _ in range(3):
                c.rank_coupons("u000001", placement="home", cart_total_minor=0)
            c.rank_coupons("u000001", candidate_ids=["c-nope"], placement="home")
            with pytest.raises(CouponRankError):
                c.rank_coupons("", placement="home")
            from couponrank.client import behaviour
            from pinned import NOW

            view = behaviour("metrics-view-1", "u000001", NOW, "view", "i000001")
            c.record_events([view, view, pb.Event(event_id="metrics-no-kind", user_id="u000001")])
        with grpc.insecure_channel(target) as channel:
            with pytest.raises(grpc.RpcError):
                channel.unary_unary(f"/{pb.DESCRIPTOR.services_by_name['CouponRankingService'].full_name}"
                                    "/RankCoupons")(b"\xff", timeout=5)
        text, after = scrape()
    finally:
        running.stop(0).wait(5)

    def value(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - (0.0 if name.endswith(("_info", "_seconds")) else before.get(key, 0.0))

    grpc_labels = dict(grpc_type="unary", grpc_service="couponrank.v1.CouponRankingService", grpc_method="RankCoupons")
    assert value("grpc_server_started_total", **grpc_labels) == 6
    assert value("grpc_server_handled_total", **grpc_labels, grpc_code="OK") == 4
    assert value("grpc_server_handled_total", **grpc_labels, grpc_code="INVALID_ARGUMENT") == 2
    assert value("grpc_server_handling_seconds_count", **grpc_labels) == 6
    assert value("couponrank_answers_total", degraded_reason="none") == 4
    assert [value("couponrank_events_total", status=s) for s in ("accepted", "duplicate", "rejected")] == [1, 1, 1]
    assert value("couponrank_ineligible_total", reason="UNKNOWN_COUPON") == 1
    assert value("couponrank_ineligible_total", reason="MIN_SPEND_NOT_MET") >= 1  # an empty cart at home
    assert value("couponrank_candidates_count") == 4
    assert value("couponrank_online_read_seconds_count") >= 3
    assert value("couponrank_model_info", version=_artifact(built).version, scorer="lleaves") == 1
    assert value("couponrank_feature_source_age_seconds") > 0
    assert "u000001" not in text  # no user ids in labels


def test_reflection_lists_the_service(target):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                            timeout=5)
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"couponrank.v1.CouponRankingService", "grpc.health.v1.Health"} <= names


def test_model_info_describes_the_loaded_model(built, client):
    art = _artifact(built)
    info = client.model_info()
    assert info.model_version == art.version
    assert list(info.feature_names) == art.features
    assert info.metrics["ndcg@5"] == pytest.approx(art.metadata["metrics"]["ndcg@5"])
    assert info.training_data_start_time < info.training_data_end_time
    assert info.create_time is not None and info.create_time.tzinfo == timezone.utc


def test_rank_command_prints_ranking_and_dropped_coupons(built, target, capsys):
    from couponrank.cli import main

    T = _request_time(built)
    code = main(["rank", "--addr", target, "--user", _active_user(built), "--placement", "checkout",
                 "--cart-total", "49.90", "--cart-categories", "cat01,cat03", "--top-k", "3", "--explain",
                 "--time", T.isoformat()])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ranked:" in out and "not eligible:" in out and " 1. c" in out
    assert "OUT_OF_SCOPE" in out or "MIN_SPEND_NOT_MET" in out


def test_several_worker_processes_share_one_port_and_stop_on_sigterm(built):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "couponrank"
    proc = subprocess.Popen([str(exe), "serve", "--repo", str(built.repo), "--model", str(built.models),
                             "--port", "0", "--host", "127.0.0.1", "--workers", "2", "--threads", "2",
                             "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "2 processes" in line, line
        target = line.split(" on ", 1)[1].split(" ", 1)[0]
        T = _request_time(built).to_pydatetime()
        with CouponRankClient(target, timeout=5.0) as c:
            # separate channels land on either process; every one answers the same ranking
            answers = []
            for _ in range(6):
                with CouponRankClient(target, timeout=5.0) as fresh:
                    res = fresh.rank_coupons(_active_user(built), placement="home", request_time=T)
                    answers.append([(x.coupon_id, x.score) for x in res.ranked])
            assert answers[0] and all(a == answers[0] for a in answers)
            assert c.model_info().model_version == load_artifact(built.models).version
        workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True,
                                 text=True).stdout.split()
        assert len(workers) == 2  # the two server processes
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    logs = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]  # every line is JSON
    assert {r["pid"] for r in logs if r["message"].startswith("serving model")} == {int(p) for p in workers}
    for pid in workers:  # joined by the parent before it exited
        assert not Path(f"/proc/{pid}").exists() or "spawn_main" not in Path(f"/proc/{pid}/cmdline").read_text(), \
            "a worker outlived SIGTERM"


def test_a_model_the_registry_does_not_match_is_refused(built, tmp_path, capsys):
    from couponrank.cli import main
    from couponrank.features import repo
    from couponrank.server.main import build_ranker
    from couponrank.server.model import ModelMismatchError
    from couponrank.training.artifact import write_artifact
    from couponrank.training.dataset import feature_names

    names = feature_names(repo.store(built.repo))
    wrong = names[1:] + ["bogus_feature"]
    rng = np.random.default_rng(0)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(rng.normal(size=(100, len(wrong))), rng.integers(0, 2, 100),
                                    feature_name=wrong), num_boost_round=2)
    write_artifact(tmp_path / "models", "ranker-wrong", booster.model_to_string(),
                   {"features": wrong, "categorical": []}, {"metrics": {}})
    with pytest.raises(ModelMismatchError) as exc:
        build_ranker(built.repo, tmp_path / "models")
    assert "bogus_feature" in str(exc.value) and names[0] in str(exc.value)
    code = main(["serve", "--repo", str(built.repo), "--model", str(tmp_path / "models"), "--port", "0",
                 "--host", "127.0.0.1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "bogus_feature" in err and names[0] in err and "not started" in err


def test_catalog_reloads_when_its_source_changes(built, tmp_path):
    import os
    import shutil

    from couponrank.server.catalog import ATTRIBUTES_FILE, STATS_FILE, CatalogHolder

    (tmp_path / "data").mkdir()
    for name in (ATTRIBUTES_FILE, STATS_FILE):
        shutil.copy2(built.repo / "data" / name, tmp_path / "data" / name)
    holder = CatalogHolder(tmp_path, refresh_seconds=0)
    before = holder.current
    assert not holder.refresh()  # nothing changed
    attrs = pd.read_parquet(tmp_path / "data" / ATTRIBUTES_FILE)
    attrs[attrs.coupon_id.astype(str) != before.ids[0]].to_parquet(tmp_path / "data" / ATTRIBUTES_FILE)
    os.utime(tmp_path / "data" / ATTRIBUTES_FILE, (time.time() + 5, time.time() + 5))
    assert holder.refresh() and len(holder.current) == len(before) - 1
    assert holder.current.lookup([before.ids[0]])[0] == -1
    (tmp_path / "data" / ATTRIBUTES_FILE).write_text("not parquet")
    os.utime(tmp_path / "data" / ATTRIBUTES_FILE, (time.time() + 10, time.time() + 10))
    assert not holder.refresh() and len(holder.current) == len(before) - 1  # a bad file keeps the old one
    # a valid but empty or sharply shrunken catalogue is refused too (a broken build, most likely)
    for share, stamp in ((0.0, 15), (0.4, 20)):
        attrs.iloc[: int(share * len(attrs))].to_parquet(tmp_path / "data" / ATTRIBUTES_FILE)
        os.utime(tmp_path / "data" / ATTRIBUTES_FILE, (time.time() + stamp, time.time() + stamp))
        assert not holder.refresh() and len(holder.current) == len(before) - 1, share
        assert not holder.refresh()  # refused once, not at every check until the file changes
    # ... and a server does not start on an empty one
    from couponrank.server.catalog import CatalogError

    attrs.iloc[:0].to_parquet(tmp_path / "data" / ATTRIBUTES_FILE)
    with pytest.raises(CatalogError, match="no coupon"):
        CatalogHolder(tmp_path, refresh_seconds=0)


def test_a_cart_in_another_currency_is_converted_to_the_catalogues(built):
    """--currencies USD,JPY=0.01: 10,000 yen reach the model as 100.00 USD (they used to
    reach it as 10,000 USD); a currency without a rate is refused at start."""
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig, parse_currencies
    from pinned import UNIX_CLOCK

    accepted, catalog, rates = parse_currencies("USD,JPY=0.01")
    config = ServerConfig(currencies=accepted, catalog_currency=catalog, currency_rates=rates)
    running = serve(built.repo, built.models, port=0, config=config, clock=UNIX_CLOCK)
    T = _request_time(built).to_pydatetime()
    try:
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=5.0) as c:
            def ask(minor, currency):
                r = c.rank_coupons(_active_user(built), placement="cart", cart_total_minor=minor, currency=currency,
                                   cart_categories=["cat01"], request_time=T)
                return [(x.coupon_id, round(x.score, 9)) for x in r.ranked], sorted((i.coupon_id, i.reason)
                                                                                      for i in r.ineligible)
            yen, dollars = ask(10_000, "JPY"), ask(10_000, "USD")
            assert yen == dollars and yen[0]
            assert ask(1_000_000, "JPY") != yen  # 10,000 USD: another answer, so the conversion matters
    finally:
        running.stop(0).wait(5)
    with pytest.raises(ValueError, match="JPY have no rate"):
        serve(built.repo, built.models, port=0, config=ServerConfig(currencies={"USD": 2, "JPY": 0}))


@pytest.mark.parametrize("spec, message", [("USD,JPY", "JPY needs its rate to USD"),
                                           ("USD,JPY=-1", "rate must be a positive number"),
                                           ("USD=2", "USD is the catalogue's currency"),
                                           ("US", "not an ISO 4217 code"), ("", "at least the catalogue's")])
def test_bad_currency_options_are_refused(built, capsys, spec, message):
    from couponrank.cli import main

    assert main(["serve", "--repo", str(built.repo), "--model", str(built.models), "--port", "0",
                 "--currencies", spec]) == 2
    assert message in capsys.readouterr().err


def test_max_reasons_option_sets_the_servers_default(built, capsys, monkeypatch):
    from couponrank.cli import main
    from couponrank.server import main as server_main

    seen = []
    monkeypatch.setattr(server_main, "run", lambda *args, config, **kwargs: seen.append(config.max_reasons))
    base = ["serve", "--repo", str(built.repo), "--model", str(built.models), "--port", "0"]
    assert main(base) == 0 and main(base + ["--max-reasons", "3"]) == 0 and main(base + ["--max-reasons", "0"]) == 0
    assert seen == [10, 3, 0]
    assert main(base + ["--max-reasons", "-1"]) == 2
    assert "--max-reasons must not be negative" in capsys.readouterr().err
