"""The Python client's retries and deadline, against a real gRPC server on loopback
whose answers the test scripts (the ranking itself is tested against the real
CouponRank server in test_server.py and test_contract.py)."""

from __future__ import annotations

import socket
from concurrent import futures

import grpc
import pytest

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from couponrank.client import CouponRankClient, CouponRankError, money, money_amount, timestamp
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.clock  # date-sensitive: run again with the clock moved ahead


class Scripted(pb_grpc.CouponRankingServiceServicer):
    """Answers with the next status of ``script`` (then OK), counting calls."""

    def __init__(self):
        self.script: list[grpc.StatusCode] = []
        self.calls = 0
        self.metadata: dict[str, str] = {}

    def RankCoupons(self, request, context):
        self.calls += 1
        self.metadata = dict(context.invocation_metadata())
        self.request = request
        if self.script:
            context.abort(self.script.pop(0), "scripted")
        return pb.RankCouponsResponse(request_id=request.request_id, model_version="m1",
                                      ranked_coupons=[pb.RankedCoupon(coupon_id="c1", rank=1, score=0.5)])


@pytest.fixture(scope="module")
def scripted():
    servicer = Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_CouponRankingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def _reset(servicer, script):
    servicer.script, servicer.calls = list(script), 0


def test_unavailable_is_retried_until_an_answer(scripted):
    servicer, target = scripted
    _reset(servicer, [grpc.StatusCode.UNAVAILABLE] * 2)
    with CouponRankClient(target, timeout=5.0, max_attempts=3, backoff=0.01) as client:
        res = client.rank_coupons("u1", ["c1"], placement="cart")
    assert servicer.calls == 3 and [c.coupon_id for c in res.ranked] == ["c1"]


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_other_errors_are_not_retried(scripted, code):
    servicer, target = scripted
    _reset(servicer, [code])
    with CouponRankClient(target, timeout=5.0, max_attempts=3, backoff=0.01) as client:
        with pytest.raises(CouponRankError) as exc:
            client.rank_coupons("u1", ["c1"])
    assert exc.value.code == code and servicer.calls == 1


def test_attempts_are_capped(scripted):
    servicer, target = scripted
    _reset(servicer, [grpc.StatusCode.UNAVAILABLE] * 10)
    with CouponRankClient(target, timeout=5.0, max_attempts=4, backoff=0.01) as client:
        with pytest.raises(CouponRankError) as exc:
            client.rank_coupons("u1", ["c1"])
    assert exc.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == 4


def test_one_deadline_covers_every_attempt(scripted):
    servicer, target = scripted
    _reset(servicer, [grpc.StatusCode.UNAVAILABLE] * 10)
    # the first pause (0.25-0.5 s) would pass the 0.2 s deadline: no second attempt
    with CouponRankClient(target, timeout=0.2, max_attempts=10, backoff=0.5) as client:
        with pytest.raises(CouponRankError) as exc:
            client.rank_coupons("u1", ["c1"])
    assert exc.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == 1


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INVALID_ARGUMENT])
def test_fail_open_gives_an_empty_ranking_and_the_error(scripted, code):
    servicer, target = scripted
    _reset(servicer, [code] * 3)
    with CouponRankClient(target, timeout=5.0, max_attempts=3, backoff=0.01) as client:
        result, error = client.rank_coupons_or_empty("u1", ["c1"], request_id="r-7")
    assert result.ranked == () and result.request_id == "r-7" and not result.degraded
    assert isinstance(error, CouponRankError) and error.code == code
    _reset(servicer, [])
    with CouponRankClient(target, timeout=5.0) as client:
        result, error = client.rank_coupons_or_empty("u1", ["c1"])
    assert error is None and [c.coupon_id for c in result.ranked] == ["c1"]


def test_fail_open_when_the_server_is_gone_and_on_a_bad_argument():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with CouponRankClient(f"127.0.0.1:{port}", timeout=0.3, max_attempts=2, backoff=0.01) as client:
        result, error = client.rank_coupons_or_empty("u1", placement="cart")
        assert result.ranked == () and error.code == grpc.StatusCode.UNAVAILABLE
        result, error = client.rank_coupons_or_empty("u1", placement="no-such-placement")
        assert result.ranked == () and isinstance(error, ValueError)


def test_a_token_is_sent_as_bearer_authorization(scripted):
    servicer, target = scripted
    _reset(servicer, [])
    with CouponRankClient(target, timeout=5.0, token="s3cr3t") as client:
        client.rank_coupons("u1", ["c1"])
    assert servicer.metadata.get("authorization") == "Bearer s3cr3t"
    with CouponRankClient(target, timeout=5.0) as client:
        client.rank_coupons("u1", ["c1"])
    assert "authorization" not in servicer.metadata
    with pytest.raises(ValueError, match="token"):
        CouponRankClient(target, token="two words")


def test_rank_options_are_sent_as_given(scripted):
    servicer, target = scripted
    _reset(servicer, [])
    with CouponRankClient(target, timeout=5.0) as client:
        client.rank_coupons("u1", ["c1"], top_k=3, explain=True, max_reasons=2)
        assert (servicer.request.top_k, servicer.request.explain, servicer.request.max_reasons) == (3, True, 2)
        client.rank_coupons("u1", ["c1"])  # defaults: the server's top_k and max_reasons, no explanations
        assert (servicer.request.top_k, servicer.request.explain, servicer.request.max_reasons) == (0, False, 0)


def test_membership_is_sent_only_when_given(scripted):
    servicer, target = scripted
    _reset(servicer, [])
    with CouponRankClient(target, timeout=5.0) as client:
        client.rank_coupons("u1", ["c1"])  # no membership: the server's stored one
        assert not servicer.request.context.HasField("membership")
        client.rank_coupons("u1", ["c1"], membership_tier="gold", membership_segment_ids=["s1", "s2"])
        m = servicer.request.context
        assert m.HasField("membership") and (m.membership.tier, list(m.membership.segment_ids)) == ("gold", ["s1", "s2"])
        client.rank_coupons("u1", ["c1"], membership_tier="")  # explicitly not a member
        m = servicer.request.context
        assert m.HasField("membership") and (m.membership.tier, list(m.membership.segment_ids)) == ("", [])
        client.rank_coupons("u1", membership_tier="", membership_segment_ids=("s1",))
        assert list(servicer.request.context.membership.segment_ids) == ["s1"]
        calls = servicer.calls
        with pytest.raises(ValueError, match="membership_tier"):  # segments need a tier ("" included)
            client.rank_coupons("u1", membership_segment_ids=["s1"])
        assert servicer.calls == calls
        result, error = client.rank_coupons_or_empty("u1", membership_segment_ids=["s1"])
        assert isinstance(error, ValueError) and result.ranked == ()


def test_placements_are_the_enums_by_every_spelling(scripted):
    servicer, target = scripted
    _reset(servicer, [])
    from couponrank.client.client import PLACEMENTS
    assert [f"PLACEMENT_{p.upper()}" for p in PLACEMENTS] == [n for n in pb.Placement.keys() if n != "PLACEMENT_UNSPECIFIED"]
    with CouponRankClient(target, timeout=5.0) as client:
        for spelling in ("member_centre", "MEMBER_CENTRE", pb.PLACEMENT_MEMBER_CENTRE):
            client.rank_coupons("u1", placement=spelling)
            assert servicer.request.context.placement == pb.PLACEMENT_MEMBER_CENTRE
        with pytest.raises(ValueError, match="member_centre"):  # the message lists the placements
            client.rank_coupons("u1", placement="member_center")


def test_results_name_the_not_in_audience_reason():
    from couponrank.client.client import to_result
    res = to_result(pb.RankCouponsResponse(ineligible_coupons=[
        pb.IneligibleCoupon(coupon_id="c1", reason=pb.INELIGIBILITY_REASON_NOT_IN_AUDIENCE, detail="members only")]))
    assert [(c.coupon_id, c.reason, c.detail) for c in res.ineligible] == [("c1", "NOT_IN_AUDIENCE", "members only")]


@pytest.mark.parametrize("amount, currency, minor", [("19.99", "USD", 1999), (Decimal("0.5"), "EUR", 50),
                                                     (1500, "JPY", 1500), ("1.234", "KWD", 1234),
                                                     ("20", "USD", 2000), ("-3.10", "USD", -310)])
def test_money_from_a_decimal_amount(amount, currency, minor):
    m = money(amount, currency)
    assert (m.currency_code, m.amount_minor) == (currency, minor)
    assert money_amount(m) == Decimal(str(amount))


@pytest.mark.parametrize("amount, currency, message", [("19.999", "USD", "more than 2 decimal"),
                                                       ("10.5", "JPY", "more than 0 decimal"),
                                                       (19.99, "USD", "not a float"),
                                                       ("abc", "USD", "not a decimal"),
                                                       ("NaN", "USD", "not a finite"),
                                                       ("1", "usd", "ISO 4217"), ("1", "US", "ISO 4217")])
def test_money_refuses_what_it_cannot_represent_exactly(amount, currency, message):
    with pytest.raises(ValueError, match=message):
        money(amount, currency)


def test_timestamp_from_a_datetime():
    when = datetime(2026, 7, 1, 10, 0, 0, 500000, tzinfo=timezone.utc)
    ts = timestamp(when)
    assert (ts.seconds, ts.nanos) == (1782900000, 500_000_000)
    assert timestamp(when.replace(tzinfo=None)) == ts  # naive = UTC
    assert timestamp(when.astimezone(timezone(timedelta(hours=2)))) == ts


def test_every_currency_table_agrees():
    """The server's, the Python client's and the Go client's ISO 4217 minor units."""
    import re
    from pathlib import Path

    from couponrank.client import client as py_client
    from couponrank.server import service

    go_source = (Path(__file__).parents[1] / "clients/go/couponrank/money.go").read_text()
    go_map = go_source[go_source.index("var minorUnitDigits"):]
    go_map = go_map[:go_map.index("\n}")]
    go = {code: int(d) for code, d in re.findall(r'"([A-Z]{3})": (\d)', go_map)}
    assert len(go) > 20 and go == py_client.MINOR_UNIT_DIGITS == service.MINOR_UNIT_DIGITS
