"""OpenTelemetry tracing to a real OTLP/gRPC receiver on loopback, and JSON logs
(server/telemetry.py)."""

from __future__ import annotations

import json
import logging
import threading
from concurrent import futures

import grpc
import pandas as pd
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from couponrank.client import CouponRankClient
from couponrank.server.main import serve
from couponrank.server.service import ServerConfig
from couponrank.server.telemetry import JsonFormatter
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc
from pinned import UNIX_CLOCK

pytest_plugins = ["server_fixtures"]  # built

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE_ID}-00f067aa0ba902b7-01"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector: keeps every span it is sent."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            for rs in request.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
                for ss in rs.scope_spans:
                    self.spans += [(service, s) for s in ss.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver():
    collector = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield collector, f"http://127.0.0.1:{port}"
    server.stop(0)


def _attrs(span) -> dict:
    out = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind)
    return out


def test_spans_reach_an_otlp_collector_with_stages_and_no_user_id(built, receiver):
    collector, endpoint = receiver
    running = serve(built.repo, built.models, port=0, clock=UNIX_CLOCK,
                    config=ServerConfig(otlp_endpoint=endpoint))
    at = (built.last_snapshot + pd.Timedelta(hours=10)).to_pydatetime()
    try:
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=5.0) as c:
            c.rank_coupons("u000001", placement="home", explain=True, request_time=at)
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            stub.RankCoupons(pb.RankCouponsRequest(user_id="u000002", context=pb.RequestContext(
                placement=pb.PLACEMENT_HOME)), metadata=(("traceparent", TRACEPARENT),), timeout=5)
            with pytest.raises(grpc.RpcError):
                stub.RankCoupons(pb.RankCouponsRequest(user_id=""), timeout=5)
    finally:
        running.stop(0).wait(10)  # flushes the batched spans
    spans = [s for service, s in collector.spans if service == "couponrank"]
    rpc = [s for s in spans if s.name == "couponrank.v1.CouponRankingService/RankCoupons"]
    assert len(rpc) == 3
    first, child, bad = rpc
    assert _attrs(first)["rpc.system"] == "grpc" and _attrs(first)["rpc.method"] == "RankCoupons"
    assert _attrs(first)["rpc.grpc.status_code"] == 0 and _attrs(first)["couponrank.ranked"] > 0
    assert _attrs(bad)["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert child.trace_id.hex() == CALLER_TRACE_ID  # joined the caller's trace
    stages = {s.name for s in spans if s.trace_id == first.trace_id and s.parent_span_id == first.span_id}
    assert {"online_read", "score", "explain"} <= stages
    assert not any("u00000" in str(_attrs(s)) for s in spans)  # no user id anywhere


def test_json_logs_are_one_object_per_line_with_extra_fields():
    record = logging.LogRecord("couponrank.server.reload", logging.INFO, __file__, 1, "model swapped: %s -> %s",
                               ("a", "b"), None)
    record.model_version = "b"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert (out["level"], out["logger"], out["message"], out["model_version"]) == \
        ("INFO", "couponrank.server.reload", "model swapped: a -> b", "b")
    assert out["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["error"]
