"""Start the gRPC server: load everything once, then serve.

At start, and never per request: the Feast registry (cached forever:
``cache_ttl_seconds = 0``), the feature service's layout, the model artifact
(checksums verified, model.txt tried in a child process and then parsed once,
features checked against the registry,
the trees compiled or their compiled code loaded from the cache: server/scorer.py),
the coupon catalogue (refreshed in the background, see server/catalog.py), the
coupon feature cache (server/online.py) and one warm-up read per read thread.

The server offers CouponRankingService, the standard health service
(grpc.health.v1.Health: SERVING for "" and for the service, NOT_SERVING once
shutting down) and server reflection (``ServerConfig.reflection``), on loopback
unless told otherwise. SIGTERM / SIGINT (in :func:`run`): health NOT_SERVING at once,
calls still answered for ``drain_seconds``, then no new calls and ``grace_seconds``
for those in flight, exit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from couponrank.clock import unix_now
from couponrank.server.callers import Callers
from couponrank.server.catalog import FLOAT_COLUMNS, CatalogHolder
from couponrank.features import membership
from couponrank.features.services import UnknownFeatureService, feature_names
from couponrank.server.model import ModelMismatchError, RankerModel
from couponrank.server.online import OnlineFeatures, RegistryError
from couponrank.server.service import (SERVICE_NAME, CouponRankingServicer, Ranker, ServerConfig, check_currencies,
                                       generic_handler)
from couponrank.server.store_watch import StoreWatch
from couponrank.server.telemetry import configure_logging

log = logging.getLogger(__name__)

WARM_UP_TIMEOUT = 1.0  # seconds; a store that does not answer by then is reported, not waited for


def build_store(repo: Path, online: str = "sqlite"):
    """A FeatureStore whose registry is read once and cached forever."""
    from feast import FeatureStore
    from feast.repo_config import load_repo_config

    from couponrank.features.repo import yaml_for

    repo = Path(repo).resolve()
    config = load_repo_config(repo, yaml_for(repo, online))
    config.registry.cache_ttl_seconds = 0
    return FeatureStore(repo_path=str(repo), config=config)


def build_ranker(repo: Path, model: Path, online: str = "sqlite", config: ServerConfig | None = None,
                 store=None) -> Ranker:
    """Load store, model and catalogue; raises ModelMismatchError (or ArtifactError,
    CatalogError) with a clear message when they cannot be served together."""
    config = config or ServerConfig()
    if config.membership is None:
        try:
            config = replace(config, membership=membership.load(Path(repo)))
        except membership.MembershipConfigError as exc:
            raise ModelMismatchError(str(exc)) from None
    store = store if store is not None else build_store(repo, online)
    ranker_model = RankerModel.load(Path(model), config.scorer)

    def service_features(name: str) -> list[str]:
        """A feature service's model inputs, from the (cached) registry."""
        try:
            return feature_names(store, name)
        except UnknownFeatureService as exc:
            raise ModelMismatchError(f"a model trained on feature service '{name}' cannot be served: {exc}") from None

    ranker_model.check_features(service_features(ranker_model.feature_service))
    catalog = CatalogHolder(Path(repo), config.catalog_refresh_seconds)
    try:
        features = OnlineFeatures(store, coupon_ids=lambda: catalog.current.ids,
                                  service_name=ranker_model.feature_service,
                                  refresh_seconds=config.coupon_features_seconds, timeout=config.store_timeout)
        features.check_on_demand()
    except RegistryError as exc:
        raise ModelMismatchError(str(exc)) from None
    if catalog.current.restricted and not features.reads_membership:
        raise ModelMismatchError(f"{catalog.current.restricted} coupon(s) have an audience, but the feature registry "
                                 "has no user_membership view to check it with (membership_tier_rank, "
                                 "membership_segment_mask); add it to definitions.py (see the project's) and apply")
    no_provider = [f for f in ranker_model.features if f not in features.provided]
    if no_provider:
        raise ModelMismatchError(f"model {ranker_model.version} inputs the server has no provider for: "
                                 f"{', '.join(no_provider)}")
    not_in_catalog = [f for f in features.catalog_features if f not in FLOAT_COLUMNS]
    if not_in_catalog:
        raise ModelMismatchError(f"coupon_attributes features the catalogue cannot serve: {', '.join(not_in_catalog)}")
    _score_warm_up(features, catalog.current, ranker_model)
    ranker = Ranker(catalog, features, ranker_model, config)
    ranker.service_features = service_features  # what a hot-reloaded model is checked against
    if config.events_db != "":
        from couponrank.events import open_log
        from couponrank.features.repo import built_until

        ranker.events = open_log(config.events_db, repo, read_timeout=config.store_timeout)
        warning = getattr(ranker.events, "durability_warning", lambda: None)()
        if warning:
            log.warning("event log %s: %s", ranker.events.where, warning)
        ranker.live_since = built_until(repo).timestamp()
    _warm_up(ranker)
    return ranker


def _score_warm_up(online: OnlineFeatures, cat, model: RankerModel) -> None:
    """Score one candidate of a user the store does not know, built from the registry's
    views as a request would be: a model that cannot be fed or scored is refused here
    rather than failing every request."""
    if not len(cat):
        return
    from couponrank.server.online import join_features
    from couponrank.server.stages import RankRequest, assemble, score

    rows = np.arange(1)
    read = {name: np.full(1, np.nan) for name in online.names}
    request = RankRequest(user_id="__warm_up__", candidate_ids=(str(cat.ids[0]),),
                          now=float(np.nan_to_num(cat.columns["coupon_valid_from_unix"][0])))
    try:
        X = assemble(join_features(read, cat, rows, request, online.catalog_features, online.on_demand),
                     model.features)
        scores = score(model, X)
    except Exception as exc:  # whatever fails here would fail every request
        raise ModelMismatchError(f"model {model.version} cannot score a warm-up request "
                                 f"({type(exc).__name__}: {exc})") from None
    if scores.shape != (1,):
        raise ModelMismatchError(f"model {model.version} gave {scores.shape} scores for one warm-up candidate")


def _warm_up(ranker: Ranker) -> None:
    """Load the coupon feature cache, and one read per read thread, so the first
    requests do not pay for opening the store."""
    cat = ranker.catalog.current
    if not len(cat):
        return
    try:
        ranker.submit(ranker.online.coupons.refresh).result(timeout=WARM_UP_TIMEOUT)
        reads = [ranker.submit_read("__warm_up__", [cat.ids[0]], ranker.online.key_values(cat, np.arange(1)))
                 for _ in range(ranker.config.store_workers)]
        for future in reads:
            future.result(timeout=WARM_UP_TIMEOUT)
    except Exception as exc:  # the server still starts; requests degrade until the store answers
        log.warning("online store warm-up read failed (%s: %s); requests degrade until it answers",
                    type(exc).__name__, exc)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    servicer: CouponRankingServicer
    health: health.HealthServicer
    metrics_port: int | None = None  # Prometheus /metrics, when on
    reloader: object | None = None  # server/reload.py ModelReloader, when serving a models folder
    store_watch: StoreWatch | None = None

    @property
    def ranker(self) -> Ranker:
        return self.servicer.ranker

    def stop(self, grace: float | None = None, drain: float | None = None) -> threading.Event:
        """Health reads NOT_SERVING at once; for ``drain`` seconds (ServerConfig.drain_seconds)
        calls are still answered, so that load balancers and clients watching health move
        away first; then new calls are refused and in-flight ones get ``grace`` seconds.
        Returns at once; the event is set when the server has stopped."""
        config = self.servicer.config
        grace = config.grace_seconds if grace is None else grace
        drain = config.drain_seconds if drain is None else drain
        self.health.enter_graceful_shutdown()
        done = threading.Event()

        def stop_now() -> threading.Event:  # no new calls from here on
            if self.reloader is not None:
                self.reloader.stop()
            if self.store_watch is not None:
                self.store_watch.stop()
            stopped = self.server.stop(grace)
            self.ranker.catalog.stop()
            self.ranker.online.coupons.stop()
            return stopped

        def finish(stopped: threading.Event | None) -> None:
            if stopped is None:  # draining: still answering
                time.sleep(drain)
                stopped = stop_now()
            stopped.wait()
            self.ranker.close()
            if self.servicer.metrics is not None:
                self.servicer.metrics.close()
            if self.servicer.tracing is not None:
                self.servicer.tracing.close()  # exports the spans still batched
            done.set()

        threading.Thread(target=finish, args=(None if drain > 0 else stop_now(),), name="stop", daemon=True).start()
        return done

    def wait(self) -> None:
        self.server.wait_for_termination()


class TlsConfigError(ValueError):
    """The TLS options are incomplete or a file cannot be read; the message names it."""


def _pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{path}: the {what} is not in PEM format")
    return data


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS (``tls_cert`` + ``tls_key``) or mutual TLS (+ ``tls_client_ca``); None: plaintext."""
    if not (config.tls_cert or config.tls_key or config.tls_client_ca):
        return None
    if not (config.tls_cert and config.tls_key):
        raise TlsConfigError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
    pair = (_pem(config.tls_key, "TLS key"), _pem(config.tls_cert, "TLS certificate"))
    ca = _pem(config.tls_client_ca, "client CA certificate") if config.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def serve(repo: Path, model: Path, port: int = 50051, online: str = "sqlite", config: ServerConfig | None = None,
          host: str = "127.0.0.1", ranker: Ranker | None = None,
          clock: Callable[[], float] = unix_now) -> RunningServer:
    """Build everything and start serving on ``host:port`` (port 0: a free one);
    returns at once with the running server. ``clock`` (unix seconds) is the request
    time of requests that set none."""
    config = config or ServerConfig()
    check_currencies(config)
    credentials = server_credentials(config)  # before loading anything: a bad TLS or callers file fails fast
    callers = Callers.load(config.callers_file) if config.callers_file else Callers()
    if callers.uses_tokens and credentials is None:
        log.warning("bearer tokens over plaintext: anyone on the network path can read them; serve TLS "
                    "(--tls-cert/--tls-key) unless the listener is loopback only")
    ranker = ranker or build_ranker(repo, model, online, config)
    servicer = CouponRankingServicer(ranker, clock, callers)
    if ranker.events is not None:
        from couponrank.events.log import RankingWriter
        from couponrank.server.events import EventRecorder, load_items

        servicer.recorder = EventRecorder(ranker.events, ranker, clock, load_items(repo))
        servicer.rankings = ranker.rankings = RankingWriter(ranker.events)
        from couponrank.server import push

        if not config.push_features:
            log.info("fresh features are pushed by another process (couponrank ingest), not this one")
        elif push.supported(ranker.online.store):
            servicer.recorder.fresh = ranker.fresh = push.FreshFeatures(ranker.online.store, ranker.events,
                                                                        tail=push.load_tail(repo),
                                                                        categories=push.load_categories(repo),
                                                                        built_until=ranker.live_since)
        else:
            log.info("the feature registry has no %s view: recorded events push no fresh features", push.recent.VIEW)
    if config.otlp_endpoint:
        from couponrank.server.telemetry import Tracing

        servicer.tracing = ranker.tracing = Tracing(config.otlp_endpoint)
    metrics = None
    if config.metrics_port is not None:
        from couponrank.server.metrics import Metrics

        metrics = servicer.metrics = ranker.metrics = Metrics()
        metrics.model.info({"version": ranker.model.version, "scorer": ranker.model.scorer.name})
        metrics.source_age.set_function(lambda: unix_now() - max(ranker.catalog.current.mtimes))
    # Load shedding, part 1: at most max_workers calls running and max_queued waiting;
    # gRPC answers any call beyond that RESOURCE_EXHAUSTED at once, without queueing it.
    bound = None if config.max_queued is None else config.max_workers + config.max_queued
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="rpc"),
                         maximum_concurrent_rpcs=bound)
    server.add_generic_rpc_handlers((generic_handler(servicer),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = (server.add_secure_port(f"{host}:{port}", credentials) if credentials
             else server.add_insecure_port(f"{host}:{port}"))
    if bound == 0:
        ranker.close()
        raise OSError(f"cannot listen on {host}:{port}")
    metrics_port = None
    if metrics is not None:
        try:
            metrics_port = metrics.serve_http(config.metrics_port, config.metrics_host)
        except OSError as exc:
            ranker.close()
            raise OSError(f"cannot serve metrics on {config.metrics_host}:{config.metrics_port} ({exc})") from None
    reloader = None
    if (Path(model) / "LATEST").is_file():
        from couponrank.server.reload import ModelReloader

        reloader = ModelReloader(ranker, Path(model), getattr(ranker, "service_features", None),
                                 config.scorer, config.model_refresh_seconds)
    def set_health(empty: bool) -> None:
        status = health_pb2.HealthCheckResponse.NOT_SERVING if empty else health_pb2.HealthCheckResponse.SERVING
        for name in ("", SERVICE_NAME):
            health_servicer.set(name, status)

    store_watch = StoreWatch(ranker, set_health, config.store_check_seconds)
    if config.store_check_seconds > 0:
        try:  # on the read pool: a dead store cannot hold the start-up
            ranker.submit(store_watch.check).result(timeout=WARM_UP_TIMEOUT)
        except Exception as exc:
            log.warning("online store probe at start failed (%s); probing again every %.0f s",
                        type(exc).__name__, config.store_check_seconds)
    server.start()
    ranker.catalog.start()
    ranker.online.start()
    store_watch.start()
    if reloader is not None:
        reloader.start()
    set_health(bool(ranker.store_empty))
    log.info("serving model %s on %s:%d (%d coupons in the catalogue)", ranker.model.version, host, bound,
             len(ranker.catalog.current))
    return RunningServer(server, bound, servicer, health_servicer, metrics_port, reloader, store_watch)


def run(repo: Path, model: Path, port: int = 50051, online: str = "sqlite", config: ServerConfig | None = None,
        host: str = "127.0.0.1", on_start=None, workers: int = 1) -> None:
    """Serve until SIGTERM / SIGINT, then shut down gracefully (main thread only).
    ``workers`` > 1: that many server processes on one port (:func:`run_workers`)."""
    if workers > 1:
        run_workers(repo, model, port, online, config, host, on_start, workers)
        return
    running = serve(repo, model, port, online, config, host)
    if on_start is not None:
        on_start(running.port, running.ranker.model.version)

    def shutdown(signum, _frame):
        log.info("signal %d: stopping (grace %.1fs)", signum, running.servicer.config.grace_seconds)
        running.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    _reload_on_sighup(running)
    running.wait()


# ------------------------------------------------------------------ several processes
# One Python process runs Python code on one core at a time (the GIL). To use more
# cores, gRPC's own recipe (examples/python/multiprocessing): independent server
# processes listening on the same port with SO_REUSEPORT; the kernel spreads incoming
# connections over them. Each process loads its own registry, model and caches.

def _worker(repo, model, port, online, config, host, ready, log_level) -> None:
    configure_logging(log_level, config.log_format, prefix=f"worker {os.getpid()} ")
    running = serve(repo, model, port, online, config, host)
    ready.put((running.port, running.ranker.model.version))

    def shutdown(signum, _frame):
        running.stop()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    _reload_on_sighup(running)
    running.wait()


def _reload_on_sighup(running: RunningServer) -> None:
    """SIGHUP: look at LATEST now (it used to end the process, undrained)."""
    def hup(_signum, _frame):
        if running.reloader is not None:
            running.reloader.check_soon()
        else:
            log.info("SIGHUP: serving a version folder, not a models folder; nothing to reload")

    signal.signal(signal.SIGHUP, hup)


def run_workers(repo: Path, model: Path, port: int, online: str, config: ServerConfig | None, host: str,
                on_start, workers: int) -> None:
    """``workers`` server processes on one port; SIGTERM / SIGINT stops them all
    gracefully. With port 0 a free port is picked first (held with SO_REUSEPORT
    while the workers bind it)."""
    import multiprocessing
    import socket

    from couponrank.server.scorer import compile_artifact
    from couponrank.training.artifact import load_artifact

    config = config or ServerConfig()
    if config.scorer != "booster":
        try:
            compile_artifact(load_artifact(Path(model)))  # once here, not racing in every worker
        except Exception as exc:
            log.warning("compiling the model failed (%s); the workers decide per --scorer", exc)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        port = sock.getsockname()[1]
        ctx = multiprocessing.get_context("spawn")  # gRPC must not be forked once started
        ready = ctx.Queue()
        # metrics: worker i on metrics_port + i (each process counts its own calls)
        procs = [ctx.Process(target=_worker, args=(repo, model, port, online,
                                                   config if config.metrics_port is None else
                                                   replace(config, metrics_port=config.metrics_port + i),
                                                   host, ready, logging.getLogger().getEffectiveLevel()),
                             name=f"couponrank-worker-{i}", daemon=False) for i in range(workers)]
        for p in procs:
            p.start()
        started = []
        while len(started) < workers:
            try:
                started.append(ready.get(timeout=1.0))
            except Exception:  # queue.Empty: check that no worker died on start
                dead = [p for p in procs if p.exitcode is not None]
                if dead:
                    for p in procs:
                        p.terminate()
                    raise RuntimeError(f"server worker {dead[0].name} exited with code {dead[0].exitcode} "
                                       "while starting (see its log above)") from None
    if on_start is not None:
        on_start(port, started[0][1])

    def shutdown(signum, _frame):
        log.info("signal %d: stopping %d workers", signum, workers)
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    def hup(_signum, _frame):  # each worker reloads on its own
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGHUP, hup)
    for p in procs:
        p.join()
