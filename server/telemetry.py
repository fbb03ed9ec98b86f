"""Structured logs and optional OpenTelemetry tracing of the server.

* ``--log-format json``: one JSON object per log line (``time``, ``level``,
  ``logger``, ``message``, ``pid``, the ``trace_id``/``span_id`` of the request being
  served when tracing is on, ``error`` with the traceback, and any ``extra=`` fields),
  for log shippers that index fields. The messages are the same as in text form and
  hold no user ids (docs/privacy.md).
* ``--otlp-endpoint URL``: a span per RPC (``couponrank.v1.CouponRankingService/
  RankCoupons``: the gRPC semantic-convention attributes, the caller's name, the
  number of candidates, ranked and ineligible coupons, the degraded reason and the
  model version; never the user id) with child spans for the online read, scoring
  and explanations, exported over OTLP/gRPC in batches. A caller's W3C
  ``traceparent`` metadata makes the server span a child of the caller's. Off by
  default: then no tracer exists and the ranking path pays nothing.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from datetime import datetime, timezone

from opentelemetry import trace

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        span = _current_span_context()
        if span is not None:
            out["trace_id"], out["span_id"] = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _current_span_context():
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else None


def configure_logging(level: int, log_format: str = "text", prefix: str = "") -> None:
    """The root logger's one handler: text (``prefix`` before the logger name) or json."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT.replace("%(name)s", prefix + "%(name)s")))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class Tracing:
    """Spans of one server, exported to ``endpoint`` (OTLP/gRPC; ``http://host:port``
    is plaintext, ``https://`` TLS). ``exporter`` replaces the OTLP one (tests)."""

    def __init__(self, endpoint: str | None = None, service_name: str = "couponrank", exporter=None):
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=str(endpoint).startswith("http://"))
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("couponrank.server")

    def server_span(self, full_method: str, metadata):
        """The span of one incoming call, child of the caller's ``traceparent`` if any."""
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind

        service, _, method = full_method.rpartition("/")
        carrier = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
        return self.tracer.start_as_current_span(
            full_method, context=extract(carrier), kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})

    def flush(self) -> None:
        self.provider.force_flush()

    def close(self) -> None:
        self.provider.shutdown()


def stage_span(tracing: Tracing | None, name: str):
    """A child span around one stage of the ranking path; nothing when tracing is off."""
    return nullcontext() if tracing is None else tracing.tracer.start_as_current_span(name)
