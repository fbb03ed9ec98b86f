"""The Python client's RecordEvents: event builders, results in order, retries and
errors, against a real gRPC server on loopback whose answers the test scripts (the
server's own event handling is tested with the server)."""

from __future__ import annotations

import threading
from concurrent import futures
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from couponrank.client import (
    CouponRankClient,
    CouponRankError,
    EventResult,
    behaviour,
    claim,
    impression,
    redemption,
)
from couponrank.client.client import MAX_EVENTS_PER_CALL
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


class Recorder(pb_grpc.CouponRankingServiceServicer):
    """Fails with the next status of ``script`` (then answers), recording events by
    id: a new id is ACCEPTED, a known one DUPLICATE, an event without a kind REJECTED."""

    def __init__(self):
        self.lock = threading.Lock()
        self.script: list[grpc.StatusCode] = []
        self.calls = 0
        self.requests: list[pb.RecordEventsRequest] = []
        self.metadata: dict[str, str] = {}
        self.recorded: dict[str, pb.Event] = {}
        self.drop_last_result = False

    def reset(self, script=()):
        with self.lock:
            self.script, self.calls, self.requests, self.recorded = list(script), 0, [], {}
            self.drop_last_result = False

    def RecordEvents(self, request, context):
        with self.lock:
            self.calls += 1
            self.requests.append(request)
            self.metadata = dict(context.invocation_metadata())
            self.time_remaining = context.time_remaining()
            if self.script:
                context.abort(self.script.pop(0), "scripted")
            if not request.events or len(request.events) > MAX_EVENTS_PER_CALL:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"events: {len(request.events)} events")
            results = []
            for ev in request.events:
                if ev.WhichOneof("kind") is None:
                    results.append(pb.EventResult(event_id=ev.event_id, status=pb.EVENT_STATUS_REJECTED,
                                                  detail="kind: required"))
                elif ev.event_id in self.recorded:
                    results.append(pb.EventResult(event_id=ev.event_id, status=pb.EVENT_STATUS_DUPLICATE))
                else:
                    self.recorded[ev.event_id] = ev
                    results.append(pb.EventResult(event_id=ev.event_id, status=pb.EVENT_STATUS_ACCEPTED))
            if self.drop_last_result:
                results.pop()
            return pb.RecordEventsResponse(results=results)


@pytest.fixture(scope="module")
def recorder():
    servicer = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_CouponRankingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def _batch():
    return [
        impression("imp-1", "u1", T0, "c1", position=1, placement="checkout", request_id="r-1"),
        claim("clm-1", "u1", T0 + timedelta(seconds=5), "c1", impression_event_id="imp-1"),
        pb.Event(event_id="bad-1", user_id="u1"),  # no kind: rejected
        redemption("red-1", "u1", T0 + timedelta(minutes=3), "c1", discount_minor=500, currency="USD",
                   order_total_minor=4599, order_id="o-1", impression_event_id="imp-1"),
        behaviour("beh-1", "u1", T0 + timedelta(minutes=3), "order", "item-9", order_id="o-1", amount_minor=4599),
    ]


def test_results_are_mapped_one_per_event_in_order(recorder):
    servicer, target = recorder
    servicer.reset()
    with CouponRankClient(target, timeout=5.0) as client:
        results = client.record_events(_batch())
        again = client.record_events(_batch()[:2] + [claim("clm-2", "u1", T0, "c2")])
    assert results == [
        EventResult("imp-1", "ACCEPTED", ""),
        EventResult("clm-1", "ACCEPTED", ""),
        EventResult("bad-1", "REJECTED", "kind: required"),
        EventResult("red-1", "ACCEPTED", ""),
        EventResult("beh-1", "ACCEPTED", ""),
    ]
    assert [(r.event_id, r.status) for r in again] == [("imp-1", "DUPLICATE"), ("clm-1", "DUPLICATE"),
                                                       ("clm-2", "ACCEPTED")]
    with pytest.raises(AttributeError):  # frozen
        results[0].status = "DUPLICATE"  # type: ignore[misc]


def test_builders_fill_the_event_as_the_proto_says(recorder):
    servicer, target = recorder
    servicer.reset()
    with CouponRankClient(target, timeout=5.0) as client:
        client.record_events(_batch())
    imp, clm, _, red, beh = servicer.requests[0].events
    assert (imp.event_id, imp.user_id, imp.event_time.ToDatetime(tzinfo=timezone.utc)) == ("imp-1", "u1", T0)
    assert imp.impression == pb.ImpressionEvent(request_id="r-1", coupon_id="c1", position=1,
                                                placement=pb.PLACEMENT_CHECKOUT)
    assert clm.claim == pb.ClaimEvent(coupon_id="c1", impression_event_id="imp-1")
    assert red.redemption == pb.RedemptionEvent(
        coupon_id="c1", order_id="o-1", impression_event_id="imp-1",
        discount=pb.Money(currency_code="USD", amount_minor=500),
        order_total=pb.Money(currency_code="USD", amount_minor=4599))
    assert beh.behaviour == pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_ORDER, item_id="item-9", order_id="o-1",
                                              amount=pb.Money(currency_code="USD", amount_minor=4599))


def test_builders_leave_unknown_amounts_unset_and_read_enum_spellings():
    naive = datetime(2026, 11, 1, 12, 0)  # taken as UTC
    red = redemption("red-2", "u1", naive, "c1")
    assert red.event_time.ToDatetime(tzinfo=timezone.utc) == T0
    assert not red.redemption.HasField("discount") and not red.redemption.HasField("order_total")
    assert not behaviour("b", "u1", T0, "view", "i1").behaviour.HasField("amount")
    for spelling in ("add_to_cart", "ADD_TO_CART", "BEHAVIOUR_TYPE_ADD_TO_CART", pb.BEHAVIOUR_TYPE_ADD_TO_CART):
        assert behaviour("b", "u1", T0, spelling, "i1").behaviour.type == pb.BEHAVIOUR_TYPE_ADD_TO_CART
    assert impression("i", "u1", T0, "c1", 2, "MEMBER_CENTRE").impression.placement == pb.PLACEMENT_MEMBER_CENTRE
    with pytest.raises(ValueError, match="behaviour type"):
        behaviour("b", "u1", T0, "purchase", "i1")
    with pytest.raises(ValueError, match="placement"):
        impression("i", "u1", T0, "c1", 1, "sidebar")


def test_unavailable_is_retried_with_the_same_batch(recorder):
    servicer, target = recorder
    servicer.reset([grpc.StatusCode.UNAVAILABLE] * 2)
    with CouponRankClient(target, timeout=5.0, max_attempts=3, backoff=0.01, token="tok-1") as client:
        results = client.record_events(_batch())
    assert servicer.calls == 3
    assert all(r == servicer.requests[0] for r in servicer.requests)
    assert [r.status for r in results] == ["ACCEPTED", "ACCEPTED", "REJECTED", "ACCEPTED", "ACCEPTED"]
    assert servicer.metadata["authorization"] == "Bearer tok-1"


def test_a_batch_sent_again_after_the_attempts_ran_out_comes_back_duplicate(recorder):
    servicer, target = recorder
    servicer.reset([grpc.StatusCode.UNAVAILABLE] * 2)
    events = [claim("clm-9", "u1", T0, "c1")]
    with CouponRankClient(target, timeout=5.0, max_attempts=2, backoff=0.01) as client:
        with pytest.raises(CouponRankError) as exc:
            client.record_events(events)
        assert exc.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == 2
        assert [r.status for r in client.record_events(events)] == ["ACCEPTED"]
        assert [r.status for r in client.record_events(events)] == ["DUPLICATE"]


@pytest.mark.parametrize("code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_other_errors_are_raised_with_their_code_at_once(recorder, code):
    servicer, target = recorder
    servicer.reset([code])
    with CouponRankClient(target, timeout=5.0, max_attempts=3, backoff=0.01) as client:
        with pytest.raises(CouponRankError) as exc:
            client.record_events(_batch())
    assert exc.value.code == code and exc.value.details == "scripted" and servicer.calls == 1
    assert not servicer.recorded


def test_the_server_checks_the_batch_size(recorder):
    servicer, target = recorder
    servicer.reset()
    too_many = [claim(f"e-{i}", "u1", T0, "c1") for i in range(MAX_EVENTS_PER_CALL + 1)]
    with CouponRankClient(target, timeout=5.0) as client:
        for events in ([], too_many):
            with pytest.raises(CouponRankError) as exc:
                client.record_events(events)
            assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(client.record_events(too_many[:MAX_EVENTS_PER_CALL])) == MAX_EVENTS_PER_CALL


def test_an_answer_without_one_result_per_event_is_an_error(recorder):
    servicer, target = recorder
    servicer.reset()
    servicer.drop_last_result = True
    with CouponRankClient(target, timeout=5.0) as client:
        with pytest.raises(CouponRankError) as exc:
            client.record_events(_batch())
    assert exc.value.code == grpc.StatusCode.INTERNAL and "4 results for 5 events" in exc.value.details


def test_a_status_newer_than_the_client_is_its_number():
    class Future(pb_grpc.CouponRankingServiceServicer):
        def RecordEvents(self, request, context):
            return pb.RecordEventsResponse(results=[pb.EventResult(event_id="e1", status=7)])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    pb_grpc.add_CouponRankingServiceServicer_to_server(Future(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with CouponRankClient(f"127.0.0.1:{port}", timeout=5.0) as client:
            assert client.record_events([claim("e1", "u1", T0, "c1")]) == [EventResult("e1", "7", "")]
    finally:
        server.stop(0)


def test_one_deadline_travels_to_the_server(recorder):
    servicer, target = recorder
    servicer.reset()
    with CouponRankClient(target, timeout=30.0) as client:
        client.record_events([claim("e1", "u1", T0, "c1")])
        assert 20.0 < servicer.time_remaining <= 30.1  # the client's timeout
        client.record_events([claim("e2", "u1", T0, "c1")], timeout=2.0)
        assert 1.0 < servicer.time_remaining <= 2.1  # the call's (grpc rounds the timeout up)
