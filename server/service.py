"""The CouponRankingService: request validation, the ranking path, degradation.

:class:`Ranker` runs the stages (server/stages.py) with the only I/O of a request --
the online feature read -- in the middle; :class:`CouponRankingServicer` translates
protos to plain values and back and maps errors to status codes:

* INVALID_ARGUMENT, details starting with the field's name: bytes that are no valid
  request ("request"; the server decodes requests itself, :func:`generic_handler`);
  a string over MAX_ID_BYTES or a cart list over MAX_CART_ENTRIES; a request_time
  outside google.protobuf.Timestamp's range; empty ``user_id``;
  ``context.placement`` unspecified or not a known enum value; ``context.cart_total``
  with a currency outside :attr:`ServerConfig.currencies` (default {"USD"}) or a
  negative amount; an empty or duplicate id in ``candidate_coupon_ids``; more
  candidates than :attr:`ServerConfig.max_candidates` (default 500); negative
  ``top_k``; ``max_reasons`` negative or above MAX_REASONS_LIMIT (checked whether or
  not ``explain`` is set); ``context.membership`` naming a tier or segment the
  repository's membership.yaml does not declare, or more than MAX_SEGMENT_IDS segments.
* DEADLINE_EXCEEDED: ``context.time_remaining()`` is checked between stages; the
  request stops as soon as the caller's deadline has passed.
* Online store failure (an exception, or no answer within ``store_timeout`` bounded
  by the caller's deadline; a network store is read on a pool so that the RPC can stop
  waiting, SQLite on the RPC thread with ``store_timeout`` as its busy timeout): OK, ranked by the cached 30-day redemption rate
  (catalogue, loaded at start; ties and unknown rates by coupon id), ``degraded`` with
  FEATURE_STORE_UNAVAILABLE, an empty ``model_version`` and scores equal to that rate.
  The per-user limit cannot be checked then; the budget is checked against the
  cached ``coupon_budget_used_frac``; a user is a non-member (coupons with an audience
  are NOT_IN_AUDIENCE) unless the request carries ``context.membership``. After a
  failure the store is not asked again for ``store_cooldown`` seconds (those requests
  degrade at once instead of queueing behind a dead store).
* The caller's deadline leaves less than ``store_timeout`` and the read does not
  finish within it: the same popularity fallback, degraded with DEADLINE_PRESSURE
  (the store is not blamed, so no cooldown).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace

from couponrank.clock import unix_now
from couponrank.features.membership import Membership
from couponrank.schema import PLACEMENTS
from couponrank.server import stages
from couponrank.server.catalog import DEFAULT_REFRESH_SECONDS, CatalogHolder
from couponrank.server.callers import ANONYMOUS, Caller, Callers, Unauthenticated
from couponrank.server.model import Explanation, RankerModel
from couponrank.server.online import DEFAULT_COUPON_REFRESH_SECONDS, OnlineFeatures, join_features
from couponrank.server.stages import Candidates, RankRequest, Reason
from couponrank.server.store_reader import StoreReadError
from couponrank.server.telemetry import stage_span
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CouponRankingService"].full_name
FEATURE_STORE_UNAVAILABLE = "FEATURE_STORE_UNAVAILABLE"
DEADLINE_PRESSURE = "DEADLINE_PRESSURE"


@dataclass
class ServerConfig:
    default_top_k: int = 10  # used when a request's top_k is 0
    max_candidates: int = 500
    # accepted currency codes -> digits of their minor unit (amount_minor / 10**digits = major units)
    currencies: Mapping[str, int] = field(default_factory=lambda: {"USD": 2})
    # The currency the coupons, the data and so the model's features are in; a cart in
    # another accepted currency is converted at currency_rates[code] (catalogue units per
    # major unit), which every other accepted currency must have (check_currencies).
    catalog_currency: str = "USD"
    currency_rates: Mapping[str, float] = field(default_factory=dict)
    store_timeout: float = 0.25  # seconds; also bounded by the caller's deadline
    deadline_reserve: float = 0.01  # seconds kept after the store read for scoring and the answer
    store_cooldown: float = 1.0  # seconds without store reads after a failure
    # explanations per coupon when a request's max_reasons is 0 (--max-reasons); 0 = every
    # non-zero contribution. A request's own value is at most MAX_REASONS_LIMIT.
    max_reasons: int = 10
    catalog_refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    coupon_features_seconds: float = DEFAULT_COUPON_REFRESH_SECONDS  # coupon feature cache's freshness bound
    scorer: str = "auto"  # auto (compiled by lleaves, else Booster), lleaves, booster: server/scorer.py
    # Calls running at once. Python runs one thread at a time, so more threads mostly add
    # GIL contention (bench/shed.py: 2 and 4 beat 8); 4 leaves room for a few health
    # Watch streams, each of which holds a thread while it lasts.
    max_workers: int = 4
    # Load shedding: calls waiting for a thread beyond max_workers; more get RESOURCE_EXHAUSTED
    # at once (None: no bound). And a call whose deadline leaves less than the typical
    # answer time is refused with DEADLINE_EXCEEDED before any work (admission).
    max_queued: int | None = 8
    admission: bool = True
    store_workers: int = 4  # concurrent online reads
    # Read the online store on the RPC's own thread instead of the read pool (saves a
    # thread hand-off, ~0.3-0.6 ms). None: only for SQLite -- a local file, whose lock
    # waits are bounded by the connection's busy timeout (= store_timeout); a network
    # store (Redis) is always read on the pool, so a dead one cannot hold the RPC.
    read_on_rpc_thread: bool | None = None
    grace_seconds: float = 5.0  # on SIGTERM: time in-flight calls get to finish
    drain_seconds: float = 0.0  # on SIGTERM: NOT_SERVING but still answering, before the listener closes
    reflection: bool = True  # gRPC server reflection (the API is public: protos/)
    # TLS: PEM files of the server's certificate chain and key; with tls_client_ca, mutual
    # TLS: only clients with a certificate signed by that CA get in. None: plaintext.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    model_refresh_seconds: float = 10.0  # serving a models folder: how often LATEST is checked (0: only SIGHUP)
    metrics_port: int | None = None  # Prometheus /metrics on metrics_host:port (0: a free port); None: off
    metrics_host: str = "127.0.0.1"
    # Who may call and see what (server/callers.py); None: everyone is anonymous, and
    # explanations name only coupon and request features.
    callers_file: str | None = None
    # OpenTelemetry: export a span per RPC (with stage spans) over OTLP/gRPC to this
    # endpoint, e.g. http://127.0.0.1:4317 (server/telemetry.py); None: no tracing.
    otlp_endpoint: str | None = None
    log_format: str = "text"  # text or json (server/telemetry.py); worker processes set up their logs with it
    # How often the online store is probed for being empty (server/store_watch.py): an
    # empty store degrades answers and turns health NOT_SERVING. 0: never probed.
    store_check_seconds: float = 5.0
    # The durable event log of RecordEvents and its live counters: a SQLite file
    # (couponrank/events/log.py) or a redis:// URL several replicas share
    # (couponrank/events/redis_log.py); None: <repo>/data/events.db. "" turns RecordEvents
    # off (UNIMPLEMENTED).
    events_db: str | None = None
    # Push fresh recent-activity features (server/push.py) from this process; False when a
    # `couponrank ingest` process does it (keeping the work off the ranking process).
    push_features: bool = True
    # The tiers and segments of the repository's membership.yaml (features/membership.py):
    # what context.membership may name. None: build_ranker reads the repository's.
    membership: Membership | None = None


# ISO 4217 currencies whose minor unit is not 1/100 of the major unit.
MINOR_UNIT_DIGITS = {
    # no minor unit
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # thousandths
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # ten-thousandths (units of account)
    "CLF": 4, "UYW": 4,
}


def currencies(codes) -> dict[str, int]:
    """ServerConfig.currencies for these codes (upper-case ISO 4217)."""
    return {c: MINOR_UNIT_DIGITS.get(c, 2) for c in codes}


def parse_currencies(spec: str) -> tuple[dict[str, int], str, dict[str, float]]:
    """``--currencies``: "USD" or "USD,EUR=1.08,JPY=0.0066": the first is the catalogue's
    currency; each other one with its rate (catalogue units per unit). Returns
    (currencies, catalog_currency, currency_rates); ValueError naming the entry."""
    entries = [e.strip() for e in spec.split(",") if e.strip()]
    if not entries:
        raise ValueError("--currencies: give at least the catalogue's currency, e.g. USD")
    codes, rates = [], {}
    for i, entry in enumerate(entries):
        code, _, rate = entry.partition("=")
        code = code.strip().upper()
        if not (len(code) == 3 and code.isascii() and code.isalpha()):
            raise ValueError(f"--currencies: {entry!r} is not an ISO 4217 code")
        if i == 0:
            if rate and float(rate) != 1.0:
                raise ValueError(f"--currencies: {code} is the catalogue's currency (listed first); it has no rate")
        else:
            try:
                value = float(rate)
            except ValueError:
                raise ValueError(f"--currencies: {code} needs its rate to {codes[0]}, e.g. {code}=0.0066 "
                                 f"({codes[0]} per {code}); carts in it would otherwise reach the model "
                                 f"as {codes[0]}") from None
            if not value > 0 or value == float("inf"):
                raise ValueError(f"--currencies: {code}'s rate must be a positive number, got {rate!r}")
            rates[code] = value
        codes.append(code)
    return currencies(codes), codes[0], rates


def check_currencies(config: ServerConfig) -> None:
    """Every accepted currency is the catalogue's or has a rate to it."""
    missing = sorted(c for c in config.currencies if c != config.catalog_currency and c not in config.currency_rates)
    if missing:
        raise ValueError(f"currencies {', '.join(missing)} have no rate to the catalogue's {config.catalog_currency} "
                         "(ServerConfig.currency_rates; --currencies USD,JPY=0.0066)")


# Size limits of a request (protos/ documents them). A gRPC message is at most 4 MB
# anyway; these keep one caller's ids out of caches and error messages.
MAX_ID_BYTES = 128  # user_id, request_id, each coupon id and each cart entry, UTF-8 bytes
MAX_CART_ENTRIES = 10_000  # each of cart_categories, cart_brands, cart_merchant_ids
MAX_REASONS_LIMIT = 50  # a request's max_reasons; 0 there means ServerConfig.max_reasons
QUOTE_CHARS = 32  # an error message quotes at most this much of a caller's value
# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS = -62_135_596_800, 253_402_300_799


def quote(value: str) -> str:
    """A caller's value for an error message: at most QUOTE_CHARS characters."""
    if len(value) <= QUOTE_CHARS:
        return repr(value)
    return f"{value[:QUOTE_CHARS]!r}... ({len(value.encode())} bytes)"


class Admission:
    """Refuse, before any work, a call whose deadline leaves less time than a typical
    answer takes: it would miss its deadline anyway, and working on it delays the
    calls behind it (so under overload goodput holds instead of collapsing).

    "Typical" is an exponentially weighted mean of recent full answers' durations;
    until ``warm_up`` answers have been seen nothing is refused."""

    def __init__(self, alpha: float = 0.05, warm_up: int = 20):
        self.alpha, self.warm_up = alpha, warm_up
        self.typical = 0.0
        self.seen = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.seen += 1
            self.typical = seconds if self.seen == 1 else self.typical + self.alpha * (seconds - self.typical)

    def refuse(self, time_left: float | None) -> bool:
        return time_left is not None and self.seen >= self.warm_up and time_left < self.typical


class InvalidArgument(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class DeadlineExceeded(Exception):
    pass


@dataclass
class RankedItem:
    coupon_id: str
    score: float
    reasons: list[Explanation] = field(default_factory=list)


@dataclass
class RankOutcome:
    ranked: list[RankedItem]
    ineligible: list[tuple[str, Reason, str]]
    model_version: str
    cold_start: bool = False
    degraded_reason: str | None = None
    degraded_detail: str = ""
    note: str = ""  # why nothing is ranked (stages.empty_note); "" when something is
    n_candidates: int = 0  # candidates considered: named, or active at the request time


# ------------------------------------------------------------------ validation
def _placement(value: int) -> str:
    if value == pb.PLACEMENT_UNSPECIFIED:
        raise InvalidArgument("context.placement", "must be set (PLACEMENT_UNSPECIFIED is not accepted)")
    try:
        name = pb.Placement.Name(value)
    except ValueError:
        raise InvalidArgument("context.placement", f"unknown placement enum value {value}") from None
    placement = name.removeprefix("PLACEMENT_").lower()
    if placement not in PLACEMENTS:
        raise InvalidArgument("context.placement", f"{name} is not served")
    return placement


def _check_size(where: str, value: str, field_name: str | None = None) -> None:
    size = len(value.encode())
    if size > MAX_ID_BYTES:
        raise InvalidArgument(field_name or where, f"{where} is {size} bytes, more than the limit of "
                                                   f"{MAX_ID_BYTES}: {quote(value)}")


def parse_request(request: pb.RankCouponsRequest, config: ServerConfig,
                  clock: Callable[[], float] = unix_now, caller: Caller = ANONYMOUS) -> RankRequest:
    """Validate a RankCouponsRequest; raises InvalidArgument naming the field."""
    if not request.user_id:
        raise InvalidArgument("user_id", "must not be empty")
    _check_size("user_id", request.user_id)
    _check_size("request_id", request.request_id)
    if request.top_k < 0:
        raise InvalidArgument("top_k", f"must not be negative, got {request.top_k}")
    if not 0 <= request.max_reasons <= MAX_REASONS_LIMIT:
        raise InvalidArgument("max_reasons", f"must be in 0 .. {MAX_REASONS_LIMIT} (0: the server's default), "
                                             f"got {request.max_reasons}")
    ctx = request.context
    placement = _placement(ctx.placement)
    cart_total = money_amount(ctx.cart_total, config, "context.cart_total") if ctx.HasField("cart_total") else 0.0
    ids = tuple(request.candidate_coupon_ids)
    if len(ids) > config.max_candidates:
        raise InvalidArgument("candidate_coupon_ids",
                              f"{len(ids)} candidates, more than the limit of {config.max_candidates}")
    seen: set[str] = set()
    for i, cid in enumerate(ids):
        if not cid:
            raise InvalidArgument("candidate_coupon_ids", f"entry {i} is empty")
        _check_size(f"candidate_coupon_ids[{i}]", cid, "candidate_coupon_ids")
        if cid in seen:
            raise InvalidArgument("candidate_coupon_ids", f"duplicate id {quote(cid)}")
        seen.add(cid)
    for name in ("cart_categories", "cart_brands", "cart_merchant_ids"):
        entries = getattr(ctx, name)
        if len(entries) > MAX_CART_ENTRIES:
            raise InvalidArgument(f"context.{name}", f"{len(entries)} entries, more than the limit of "
                                                     f"{MAX_CART_ENTRIES}")
        for i, entry in enumerate(entries):
            _check_size(f"context.{name}[{i}]", entry, f"context.{name}")
    if ctx.HasField("request_time"):
        ts = ctx.request_time
        if not (MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= ts.nanos <= 999_999_999):
            raise InvalidArgument("context.request_time", f"not a valid timestamp (seconds {ts.seconds}, nanos "
                                                          f"{ts.nanos}): 0001-01-01 .. 9999-12-31 UTC, nanos "
                                                          "0 .. 999999999")
        now = ts.seconds + ts.nanos / 1e9
    else:
        now = clock()
    member = _membership(ctx.membership, config.membership or Membership()) if ctx.HasField("membership") else None
    return RankRequest(
        user_id=request.user_id, candidate_ids=ids, placement=placement, cart_total=cart_total,
        cart_categories=tuple(ctx.cart_categories), cart_brands=tuple(ctx.cart_brands),
        cart_merchants=tuple(ctx.cart_merchant_ids), now=now,
        top_k=request.top_k or config.default_top_k, explain=request.explain, max_reasons=request.max_reasons,
        explain_user_features=caller.sees_user_features, membership=member)


def money_amount(money: pb.Money, config: ServerConfig, where: str) -> float:
    """A Money in the catalogue's currency, major units (the model's features are in it):
    InvalidArgument naming ``where``.currency_code / .amount_minor when the currency is not
    accepted or the amount is negative."""
    if money.currency_code not in config.currencies:
        raise InvalidArgument(f"{where}.currency_code", f"{quote(money.currency_code)} is not accepted (accepted: "
                                                        f"{', '.join(sorted(config.currencies))})")
    if money.amount_minor < 0:
        raise InvalidArgument(f"{where}.amount_minor", f"must not be negative, got {money.amount_minor}")
    amount = money.amount_minor / 10 ** config.currencies[money.currency_code]
    if money.currency_code != config.catalog_currency:
        amount *= config.currency_rates[money.currency_code]
    return amount


MAX_SEGMENT_IDS = 100  # context.membership.segment_ids
MAX_EVENTS = 1_000  # RecordEventsRequest.events


def _membership(m: pb.Membership, config: Membership) -> tuple[float, float, float]:
    """The request's membership as (tier rank, segment mask, segments): InvalidArgument
    for a tier or segment the server's membership.yaml does not declare."""
    _check_size("context.membership.tier", m.tier)
    try:
        rank = config.rank(m.tier)
    except KeyError:
        raise InvalidArgument("context.membership.tier", f"{quote(m.tier)} is not one of the server's tiers "
                                                         f"({', '.join(config.tiers) or 'none declared'}; "
                                                         "empty: not a member)") from None
    ids = m.segment_ids
    if len(ids) > MAX_SEGMENT_IDS:
        raise InvalidArgument("context.membership.segment_ids", f"{len(ids)} entries, more than the limit of "
                                                                f"{MAX_SEGMENT_IDS}")
    for i, sid in enumerate(ids):
        if not sid:
            raise InvalidArgument("context.membership.segment_ids", f"entry {i} is empty")
        _check_size(f"context.membership.segment_ids[{i}]", sid, "context.membership.segment_ids")
    try:
        mask = config.mask(dict.fromkeys(ids))
    except KeyError as exc:
        raise InvalidArgument("context.membership.segment_ids",
                              f"{quote(str(exc.args[0]))} is not one of the server's segments "
                              f"({', '.join(config.segments) or 'none declared'})") from None
    return float(rank), float(mask), float(len(set(ids)))


# ------------------------------------------------------------------ the ranking path
class DaemonPool:
    """A fixed pool of daemon worker threads. Unlike ThreadPoolExecutor's, its threads
    are not joined at exit, so a read stuck on a dead store never holds up shutdown."""

    def __init__(self, workers: int, name: str):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(workers):
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the waiting request
                future.set_exception(exc)

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        self._queue.put((future, fn, args))
        return future

    def shutdown(self, workers: int) -> None:
        for _ in range(workers):
            self._queue.put(None)


class Ranker:
    """Everything a request needs, loaded once; :meth:`rank` is thread-safe."""

    def __init__(self, catalog: CatalogHolder, online: OnlineFeatures, model: RankerModel,
                 config: ServerConfig | None = None):
        self.catalog = catalog
        self.online = online
        self.model = model
        self.config = config or ServerConfig()
        self._pool = DaemonPool(self.config.store_workers, "online-read")
        inline = self.config.read_on_rpc_thread
        self.read_inline = (online.reader.kind == "sqlite") if inline is None else bool(inline)
        self._store_down_until = 0.0
        self.store_empty = ""  # why the online store is taken to be empty (server/store_watch.py); "" when not
        self._public_masks: dict[str, np.ndarray] = {}  # model version -> explainable-to-anyone mask
        self._closed = False
        self.metrics = None  # server/metrics.py, when the server exposes metrics
        self.tracing = None  # server/telemetry.py Tracing, when the server exports spans
        # The event log's live counters (couponrank/events/log.py), counted from live_since
        # (unix seconds: the end of what the feature snapshots hold) for the per-user limit
        # and the budget; None: the snapshots alone.
        self.events = None
        self.live_since = 0.0
        self.rankings = None  # the served-ranking log's writer (closed with the ranker)
        self.fresh = None  # server/push.py FreshFeatures (closed with the ranker)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(self.config.store_workers)
            self.online.close()
            if self.rankings is not None:
                self.rankings.close()
            if self.fresh is not None:
                self.fresh.close()
            if self.events is not None:
                self.events.close()

    def _live(self, user_id: str, cat, kept: Candidates, used: np.ndarray | None,
              budget_frac: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The per-user redemptions and budget shares the rules check: the snapshot's
        plus the live counters' since the snapshot ended (each event counted once: the
        snapshot holds events before live_since, the live part those from it on)."""
        if self.events is None:
            return used, budget_frac
        try:
            live_used, live_discount = self.events.live(user_id, list(kept.ids), self.live_since)
        except Exception as exc:  # a locked or broken log must not fail the ranking: snapshots only
            log.warning("event log read failed (%s); per-user limits and budgets from the snapshots only",
                        type(exc).__name__)
            return used, budget_frac
        n = len(kept)
        used = np.full(n, np.nan) if used is None else np.asarray(used, np.float64)
        budget_frac = np.full(n, np.nan) if budget_frac is None else np.asarray(budget_frac, np.float64)
        used = np.where(live_used > 0, np.nan_to_num(used) + live_used, used)
        share = live_discount / cat.take("coupon_budget", kept.rows)  # an unlimited (inf) budget: 0
        return used, np.where(live_discount > 0, np.nan_to_num(budget_frac) + share, budget_frac)

    def submit(self, fn, *args) -> Future:
        """Run ``fn(*args)`` on the read pool, where a hung store cannot hold an RPC thread."""
        return self._pool.submit(fn, *args)

    def submit_read(self, user_id: str, ids, keys) -> Future:
        """Start one online read on the read pool (``keys``: OnlineFeatures.key_values)."""
        return self._pool.submit(self.online.read, user_id, list(ids), keys)

    @staticmethod
    def _checkpoint(time_remaining: Callable[[], float | None], stage: str) -> None:
        left = time_remaining()
        if left is not None and left <= 0:
            raise DeadlineExceeded(f"the deadline passed before {stage}")

    def rank(self, req: RankRequest, time_remaining: Callable[[], float | None] = lambda: None) -> RankOutcome:
        cat = self.catalog.current  # one catalogue for the whole request, even across a reload
        model = self.model  # one model too: a hot swap (server/reload.py) never splits a request
        outcome = self._rank(req, cat, model, time_remaining)
        if not outcome.ranked:
            outcome.note = stages.empty_note(req, cat, outcome.n_candidates, req.now)
        return outcome

    def _rank(self, req: RankRequest, cat, model: RankerModel,
              time_remaining: Callable[[], float | None]) -> RankOutcome:
        """The stages in order."""
        self._checkpoint(time_remaining, "candidate selection")
        cands = stages.candidates(req, cat, req.now)
        given = req.membership[:2] if req.membership is not None else None  # audiences checked at once
        static = stages.eligibility(req, cat, cands, req.now, member=given)
        ineligible = [(cands.ids[i], r, d) for i, r, d in static.dropped()]
        kept = cands.subset(static.keep)
        if len(kept) == 0:
            return RankOutcome([], ineligible, model.version, n_candidates=len(cands))

        self._checkpoint(time_remaining, "the online feature read")
        keys = self.online.key_values(cat, kept.rows)  # declared join keys (target category, ...)
        with stage_span(self.tracing, "online_read"):
            read, problem, cause = self._read(req.user_id, kept.ids, keys, time_remaining)
        if read is None:
            self._checkpoint(time_remaining, "the fallback ranking")  # no answer past the deadline
            outcome = self._fallback(req, cat, kept, ineligible, problem, cause)
            outcome.n_candidates = len(cands)
            return outcome

        if req.membership is not None:  # the caller's view replaces the stored one, features too
            for name, value in zip(MEMBERSHIP_FEATURES, req.membership):
                if name in read:
                    read[name] = np.full(len(kept), value)
        used, budget_frac = self._live(req.user_id, cat, kept, read.get("ucp_redemptions_total"),
                                       read.get("coupon_budget_used_frac"))
        usage = stages.eligibility(req, cat, kept, req.now, used, budget_frac,
                                   member=given if given is not None else _member(read))
        ineligible += [(kept.ids[i], r, d) for i, r, d in usage.dropped()]
        cold = self.online.cold_start(read)
        read = {k: v[usage.keep] for k, v in read.items()}
        kept = kept.subset(usage.keep)

        self._checkpoint(time_remaining, "scoring")
        features = join_features(read, cat, kept.rows, req, self.online.catalog_features, self.online.on_demand)
        X = stages.assemble(features, model.features)
        with stage_span(self.tracing, "score"):
            scores = stages.score(model, X)
        top = stages.order(scores, kept.ids, req.top_k)
        ranked = [RankedItem(kept.ids[i], float(scores[i])) for i in top]
        if req.explain and len(top):
            self._checkpoint(time_remaining, "explanations")
            shown = None if req.explain_user_features else self._public_mask(model)
            with stage_span(self.tracing, "explain"):
                explained = model.explain(X[top], req.max_reasons or self.config.max_reasons, shown)
            for item, reasons in zip(ranked, explained):
                item.reasons = reasons
        return RankOutcome(ranked, ineligible, model.version, cold_start=cold, n_candidates=len(cands))

    def _public_mask(self, model: RankerModel) -> np.ndarray:
        """Which of the model's features any caller may see explained; once per model
        version (a hot swap brings a new one), not per request."""
        mask = self._public_masks.get(model.version)
        if mask is None:
            mask = self._public_masks[model.version] = np.isin(model.features, self.online.public_features)
        return mask

    def _read(self, user_id: str, ids: np.ndarray, keys: dict[str, np.ndarray],
              time_remaining: Callable[[], float | None]) -> tuple[dict | None, str, str]:
        """The online read under a timeout bounded by the deadline: (features, "", "")
        or (None, why not, degraded reason)."""
        if self.store_empty:
            return None, self.store_empty, FEATURE_STORE_UNAVAILABLE
        now = time.monotonic()
        if now < self._store_down_until:
            return None, (f"online store failed recently; not asked again for another "
                          f"{self._store_down_until - now:.2f}s"), FEATURE_STORE_UNAVAILABLE
        timeout = self.config.store_timeout
        left = time_remaining()
        if left is not None:
            timeout = min(timeout, max(left - self.config.deadline_reserve, 0.001))
        started = time.perf_counter()
        try:
            if self.read_inline:
                self.online.reader.bound_wait(timeout)  # a locked SQLite file: wait no longer than the deadline allows
                read = self.online.read(user_id, list(ids), keys)
            else:
                future = self.submit_read(user_id, ids, keys)
                read = future.result(timeout=timeout)
            if self.metrics is not None:
                self.metrics.online_read.observe(time.perf_counter() - started)
            return read, "", ""
        except FutureTimeout:
            future.cancel()
            if timeout < self.config.store_timeout:  # the caller's deadline, not the store, was short
                return None, (f"online store read not done within the {timeout * 1000:.0f} ms the "
                              f"caller's deadline left"), DEADLINE_PRESSURE
            self._store_down_until = time.monotonic() + self.config.store_cooldown
            log.warning("online store read timed out after %.0f ms", timeout * 1000)
            return None, f"online store read timed out after {timeout * 1000:.0f} ms", FEATURE_STORE_UNAVAILABLE
        except StoreReadError as exc:
            if exc.busy and timeout < self.config.store_timeout:  # locked, and the deadline cut the wait short
                return None, (f"online store locked for the {timeout * 1000:.0f} ms the caller's deadline "
                              "left"), DEADLINE_PRESSURE
            return self._store_failed(exc)
        except Exception as exc:  # any store error: degrade, never fail the request
            return self._store_failed(exc)

    def _store_failed(self, exc: Exception) -> tuple[None, str, str]:
        """Blame the store: cool down, log the details, answer without them."""
        self._store_down_until = time.monotonic() + self.config.store_cooldown
        log.warning("online store read failed: %s: %s", type(exc).__name__, exc)
        # the answer names the error's type only: its message may hold the store's path or address
        return (None, f"online store read failed ({type(exc).__name__}; the server log has the details)",
                FEATURE_STORE_UNAVAILABLE)

    def _fallback(self, req: RankRequest, cat, kept: Candidates, ineligible: list, problem: str,
                  cause: str = FEATURE_STORE_UNAVAILABLE) -> RankOutcome:
        """Popularity ranking from the catalogue's cached coupon stats."""
        # the cached budget share and, without the store's snapshot, the live counters alone
        used, budget = self._live(req.user_id, cat, kept, None, cat.take("coupon_budget_used_frac", kept.rows))
        # without the store a user is a non-member, unless the request says otherwise
        member = req.membership[:2] if req.membership is not None else (0.0, 0.0)
        el = stages.eligibility(req, cat, kept, req.now, used, budget, member=member)
        ineligible = ineligible + [(kept.ids[i], r, d) for i, r, d in el.dropped()]
        kept = kept.subset(el.keep)
        popularity = cat.take("coupon_redemption_rate_30d", kept.rows)
        top = stages.order(popularity, kept.ids, req.top_k)
        ranked = [RankedItem(kept.ids[i], float(np.nan_to_num(popularity[i], nan=0.0))) for i in top]
        detail = (f"{problem}; ranked by the cached 30-day redemption rate, per-user limits checked against "
                  f"recorded events only" if self.events is not None else
                  f"{problem}; ranked by the cached 30-day redemption rate, per-user limits not checked")
        return RankOutcome(ranked, ineligible, "", degraded_reason=cause,
                           degraded_detail=detail)


# The user_membership features a request's context.membership replaces, in the order of
# RankRequest.membership.
MEMBERSHIP_FEATURES = ("membership_tier_rank", "membership_segment_mask", "membership_segment_count")


def _member(read: dict[str, np.ndarray]) -> tuple[float, float]:
    """The user's (tier rank, segment mask) from the read: one user, the same value on
    every candidate's row; NaN (no row for the user, or a registry without
    user_membership) is a non-member."""
    rank, mask = read.get(MEMBERSHIP_FEATURES[0]), read.get(MEMBERSHIP_FEATURES[1])
    first = (lambda a: float(a[0]) if a is not None and len(a) else np.nan)
    return first(rank), first(mask)


# ------------------------------------------------------------------ gRPC
def _timestamp(iso: str | None) -> Timestamp | None:
    if not iso:
        return None
    ts = Timestamp()
    ts.FromDatetime(datetime.fromisoformat(str(iso)))
    return ts


class CouponRankingServicer(pb_grpc.CouponRankingServiceServicer):
    """``clock``: unix seconds, the request time of a request without ``request_time``
    (injected by tests and pinned demos; the wall clock otherwise)."""

    def __init__(self, ranker: Ranker, clock: Callable[[], float] = unix_now, callers: Callers | None = None):
        self.ranker = ranker
        self.config = ranker.config
        self.clock = clock
        self.callers = callers or Callers()
        self.admission = Admission()
        self.metrics = None  # server/metrics.py, when the server exposes metrics
        self.tracing = None  # server/telemetry.py Tracing, when the server exports spans
        self.recorder = None  # server/events.py EventRecorder, when the server keeps an event log
        self.rankings = None  # couponrank.events.log.RankingWriter: every answer, logged in the background
        self._model_info = self._build_model_info(ranker.model)

    @staticmethod
    def _build_model_info(model: RankerModel) -> pb.GetModelInfoResponse:
        meta = model.artifact.metadata
        info = pb.GetModelInfoResponse(model_version=model.version, feature_names=model.features)
        for name, value in (meta.get("metrics") or {}).items():
            if isinstance(value, (int, float)):
                info.metrics[name] = float(value)
        rng = meta.get("training_range") or {}
        for target, iso in (("training_data_start_time", rng.get("start")),
                            ("training_data_end_time", rng.get("end")), ("create_time", meta.get("created_at"))):
            ts = _timestamp(iso)
            if ts is not None:
                getattr(info, target).CopyFrom(ts)
        return info

    def _caller(self, context) -> Caller:
        try:
            return self.callers.identify(context.invocation_metadata(), context.auth_context)
        except Unauthenticated as exc:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))

    def RankCoupons(self, request, context):
        started = time.monotonic()
        caller = self._caller(context)
        left = context.time_remaining()
        if self.config.admission and self.admission.refuse(left):
            if self.metrics is not None:
                self.metrics.refused.labels("deadline_shorter_than_typical_answer").inc()
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"refused before any work: {left * 1000:.1f} ms left, answers take "
                          f"{self.admission.typical * 1000:.1f} ms")
        try:
            req = parse_request(request, self.config, self.clock, caller)
        except InvalidArgument as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            outcome = self.ranker.rank(req, context.time_remaining)
        except DeadlineExceeded as exc:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except Exception:  # a bug, not the caller's fault: log it, answer INTERNAL without internals
            log.exception("RankCoupons failed for request %s", quote(request.request_id))
            context.abort(grpc.StatusCode.INTERNAL, "internal error while ranking; see the server log")
        if not outcome.degraded_reason:  # a full answer: what admission expects a call to cost
            self.admission.observe(time.monotonic() - started)
        if self.tracing is not None:  # what the answer was, never who it was for
            trace.get_current_span().set_attributes({
                "couponrank.caller": caller.name, "couponrank.candidates": outcome.n_candidates,
                "couponrank.ranked": len(outcome.ranked), "couponrank.ineligible": len(outcome.ineligible),
                "couponrank.degraded_reason": outcome.degraded_reason or "", "couponrank.model_version":
                    outcome.model_version, "couponrank.explain": req.explain})
        if self.metrics is not None:
            m = self.metrics
            m.answers.labels(outcome.degraded_reason or "none").inc()
            m.candidates.observe(outcome.n_candidates)
            for _, reason, _ in outcome.ineligible:
                m.ineligible.labels(reason.name).inc()
        response = to_response(outcome, request.request_id or uuid.uuid4().hex)
        if self.rankings is not None:
            self.rankings.submit(ranking_record(response.request_id, req, outcome))
        return response

    def GetModelInfo(self, request, context):
        self._caller(context)
        info = self._model_info
        model = self.ranker.model
        if info.model_version != model.version:  # swapped since (server/reload.py)
            info = self._model_info = self._build_model_info(model)
        return info

    # The server deserializes requests itself (see :func:`generic_handler`): a
    # malformed message gets INVALID_ARGUMENT, not grpcio's INTERNAL "Exception
    # deserializing request!" with a logged traceback and memory it never frees.
    def RecordEvents(self, request, context):
        caller = self._caller(context)
        if self.recorder is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server keeps no event log (started with --events-db '')")
        if not self.callers.may_record_events(caller):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "this caller may not record events (the callers file "
                                                             "gives record_events = true to those who may)")
        n = len(request.events)
        if not 1 <= n <= MAX_EVENTS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"events: {n} events; send 1 to {MAX_EVENTS} per call")
        try:
            response = self.recorder.record(request, self.config)
        except Exception:  # the log cannot be written: nothing of the batch is recorded, so a resend is safe
            log.exception("RecordEvents failed for a batch of %d events", n)
            context.abort(grpc.StatusCode.UNAVAILABLE, "the event log cannot be written now; nothing of this batch "
                                                       "was recorded: send it again later")
        if self.metrics is not None:
            for r in response.results:
                self.metrics.events.labels(pb.EventStatus.Name(r.status).removeprefix("EVENT_STATUS_").lower()).inc()
        return response

    def record_events_bytes(self, data: bytes, context):
        return self.RecordEvents(_parse(pb.RecordEventsRequest, data, context), context)

    def rank_coupons_bytes(self, data: bytes, context):
        return self.RankCoupons(_parse(pb.RankCouponsRequest, data, context), context)

    def get_model_info_bytes(self, data: bytes, context):
        return self.GetModelInfo(_parse(pb.GetModelInfoRequest, data, context), context)


def _parse(message_type, data: bytes, context):
    try:
        return message_type.FromString(data)
    except Exception:  # DecodeError, invalid UTF-8 in a string field, ...
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"request: not a valid {message_type.DESCRIPTOR.full_name} message ({len(data)} bytes)")


def generic_handler(servicer: CouponRankingServicer) -> grpc.GenericRpcHandler:
    """CouponRankingService's methods with the request bytes handed to the servicer
    undecoded (request_deserializer None), responses serialized as usual."""
    def counted(name, handler):
        if servicer.tracing is not None:
            handler = traced(servicer.tracing, f"{SERVICE_NAME}/{name}", handler)
        return handler if servicer.metrics is None else servicer.metrics.observed(SERVICE_NAME, name, handler)

    methods = {
        "RankCoupons": grpc.unary_unary_rpc_method_handler(
            counted("RankCoupons", servicer.rank_coupons_bytes),
            response_serializer=pb.RankCouponsResponse.SerializeToString),
        "GetModelInfo": grpc.unary_unary_rpc_method_handler(
            counted("GetModelInfo", servicer.get_model_info_bytes),
            response_serializer=pb.GetModelInfoResponse.SerializeToString),
        "RecordEvents": grpc.unary_unary_rpc_method_handler(
            counted("RecordEvents", servicer.record_events_bytes),
            response_serializer=pb.RecordEventsResponse.SerializeToString),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)


def traced(tracing, full_method: str, handler: Callable) -> Callable:
    """``handler(data, context)`` inside a server span, with its gRPC status code."""
    def wrapper(data, context):
        with tracing.server_span(full_method, context.invocation_metadata()) as span:
            try:
                response = handler(data, context)
                span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.OK.value[0])
                return response
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN  # set by context.abort
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
                raise

    return wrapper


def ranking_record(request_id: str, req: RankRequest, outcome: RankOutcome):
    """The served-ranking log's row of one answer (couponrank.events.log.RankingRecord)."""
    import json

    from couponrank.events.log import RankingRecord

    return RankingRecord(
        request_id=request_id, user_id=req.user_id, ts=req.now, placement=req.placement,
        cart_value=float(req.cart_total), cart_categories="|".join(req.cart_categories),
        model_version=outcome.model_version, degraded_reason=outcome.degraded_reason or "",
        ranked=json.dumps([[str(r.coupon_id), round(float(r.score), 12)] for r in outcome.ranked]),
        ineligible=json.dumps([[str(cid), reason.name] for cid, reason, _ in outcome.ineligible]))


def to_response(outcome: RankOutcome, request_id: str) -> pb.RankCouponsResponse:
    resp = pb.RankCouponsResponse(request_id=request_id, model_version=outcome.model_version,
                                  cold_start=outcome.cold_start)
    for rank, item in enumerate(outcome.ranked, start=1):
        rc = resp.ranked_coupons.add(coupon_id=item.coupon_id, rank=rank, score=item.score)
        for r in item.reasons:
            rc.reasons.add(feature=r.feature, value=r.value, contribution=r.contribution)
    for cid, reason, detail in outcome.ineligible:
        resp.ineligible_coupons.add(coupon_id=cid, reason=int(reason), detail=detail)
    if outcome.degraded_reason:
        resp.degraded = True
        resp.degraded_reason = pb.DegradedReason.Value(f"DEGRADED_REASON_{outcome.degraded_reason}")
        resp.degraded_detail = outcome.degraded_detail
    resp.note = outcome.note
    return resp
