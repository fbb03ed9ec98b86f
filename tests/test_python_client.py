"""The Python client's retries and deadline, against a real gRPC server on loopback
whose answers the test scripts (the ranking itself is tested against the real
CouponRank server in test_server.py and test_contract.py)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from couponrank.client import CouponRankClient, CouponRankError
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.clock  # date-sensitive: run again with the clock moved ahead


class Scripted(pb_grpc.CouponRankingServiceServicer):
    """Answers with the next status of ``script`` (then OK), counting calls."""

    def __init__(self):
        self.script: list[grpc.StatusCode] = []
        self.calls = 0

    def RankCoupons(self, request, context):
        self.calls += 1
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
