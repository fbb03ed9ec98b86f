"""Prometheus metrics of one server process (``couponrank serve --metrics-port``).

The gRPC ones carry the names and labels of the standard Go/Java gRPC server
interceptors (go-grpc-prometheus), so existing dashboards and alerts work:
``grpc_server_started_total``, ``grpc_server_handled_total`` (by ``grpc_code``) and
``grpc_server_handling_seconds``, labelled ``grpc_type``, ``grpc_service``,
``grpc_method``. Calls gRPC itself refuses before the servicer (RESOURCE_EXHAUSTED
beyond ``--max-queued``) never reach these counters; clients see them.

The ranking ones: answers by degraded reason, candidates dropped by ineligibility
reason, candidates per request, online-read latency, calls refused before work, the
loaded model (an info metric) and the age of the feature sources. No label holds a
user or coupon id.

Feast sets PROMETHEUS_MULTIPROC_DIR when imported, which puts prometheus_client in
multiprocess mode: values live in mmap files there, one set per process, so two
servers in one process (tests) add to the same counters. A server is one process
(``--workers``: one per worker, each on its own port), so what it exposes is its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server


from couponrank.server.stages import Reason

INELIGIBILITY_REASONS = tuple(r.name for r in Reason if r is not Reason.ELIGIBLE)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.started = Counter("grpc_server_started_total", "Total number of RPCs started on the server.",
                               GRPC_LABELS, registry=r)
        self.handled = Counter("grpc_server_handled_total", "Total number of RPCs completed on the server, "
                               "regardless of success or failure.", (*GRPC_LABELS, "grpc_code"), registry=r)
        self.handling = Histogram("grpc_server_handling_seconds", "Histogram of response latency (seconds) of gRPC "
                                  "that had been application-level handled by the server.", GRPC_LABELS,
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.answers = Counter("couponrank_answers_total", "RankCoupons answers by degraded reason "
                               "(none: the model's full ranking).", ("degraded_reason",), registry=r)
        self.ineligible = Counter("couponrank_ineligible_total", "Candidate coupons not ranked, by reason.",
                                  ("reason",), registry=r)
        self.candidates = Histogram("couponrank_candidates", "Candidate coupons per RankCoupons request.",
                                    buckets=(0, 1, 5, 10, 20, 50, 100, 200, 500), registry=r)
        self.online_read = Histogram("couponrank_online_read_seconds", "Online feature store reads, per request.",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.refused = Counter("couponrank_refused_total", "Calls refused before any work, by why.", ("why",),
                               registry=r)
        self.events = Counter("couponrank_events_total", "RecordEvents events by outcome (accepted, duplicate, "
                              "rejected).", ("status",), registry=r)
        self.model = Info("couponrank_model", "The model being served.", registry=r)
        self.source_age = Gauge("couponrank_feature_source_age_seconds", "Seconds since the coupon feature "
                                "sources (written by build-features) last changed.", registry=r)
        self._http = None
        # Every label value a series can take exists from the start at 0 (as
        # go-grpc-prometheus's InitializeMetrics does): rate() sees the first event.
        for reason in ("none", "FEATURE_STORE_UNAVAILABLE", "DEADLINE_PRESSURE", "MODEL_UNAVAILABLE"):
            self.answers.labels(reason)
        for reason in INELIGIBILITY_REASONS:
            self.ineligible.labels(reason)
        self.refused.labels("deadline_shorter_than_typical_answer")
        for status in ("accepted", "duplicate", "rejected"):
            self.events.labels(status)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics on ``host:port`` (port 0: a free one); returns the port."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def observed(self, service: str, method: str, handler: Callable) -> Callable:
        """``handler(data, context)`` counted and timed under the standard gRPC names."""
        labels = ("unary", service, method)
        started, handling = self.started.labels(*labels), self.handling.labels(*labels)
        for code in grpc.StatusCode:
            self.handled.labels(*labels, code.name)

        def wrapper(data, context):
            started.inc()
            t0 = time.perf_counter()
            code = "UNKNOWN"
            try:
                response = handler(data, context)
                code = "OK"
                return response
            finally:
                if code != "OK":
                    status = context.code()  # set by context.abort
                    code = status.name if status is not None else "UNKNOWN"
                self.handled.labels(*labels, code).inc()
                handling.observe(time.perf_counter() - t0)

        return wrapper
