"""A small typed client for couponrank.v1.CouponRankingService.

    with CouponRankClient("localhost:50051") as client:
        result = client.rank_coupons("u000001", placement="cart", cart_total_minor=4990)
        for coupon in result.ranked:
            print(coupon.rank, coupon.coupon_id, coupon.score)

Calls that fail with UNAVAILABLE are retried (up to ``max_attempts`` in all, with
exponential backoff and jitter); every other failure raises :class:`CouponRankError`
at once, as the contract says only UNAVAILABLE is worth retrying. A checkout that
must never wait on coupons calls :meth:`CouponRankClient.rank_coupons_or_empty`
instead: an empty ranking and the error on any failure, never an exception.

Events (impressions, claims, redemptions, shopping behaviour) go to the server with
:meth:`CouponRankClient.record_events`, built with :func:`impression`, :func:`claim`,
:func:`redemption` and :func:`behaviour`:

    results = client.record_events([
        impression("imp-8812-1", "u000001", shown_at, "c1", position=1,
                   placement="checkout", request_id=result.request_id),
    ])
    for r in results:  # one per event, in order
        if r.status == "REJECTED":
            log.warning("event %s rejected: %s", r.event_id, r.detail)

The call is idempotent by ``event_id`` (an event already recorded comes back
"DUPLICATE"), so it is retried on UNAVAILABLE like the others, and a batch whose
answer was lost may be sent again as is.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from google.protobuf.timestamp_pb2 import Timestamp

import grpc

from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

# The Placement enum's names without "PLACEMENT_", lower case (as couponrank.schema.PLACEMENTS,
# which this client does not import: it needs only grpcio, protobuf and couponrank.v1).
PLACEMENTS = ("home", "product_page", "cart", "checkout", "order_confirmation", "campaign", "member_centre")
# The BehaviourType enum's names without "BEHAVIOUR_TYPE_", lower case.
BEHAVIOUR_TYPES = ("view", "add_to_cart", "favourite", "order")
# The most events one RecordEvents call takes (the server answers INVALID_ARGUMENT above it):
# split longer lists into batches of at most this many.
MAX_EVENTS_PER_CALL = 1000


class CouponRankError(Exception):
    """A call that failed: ``code`` is the gRPC status, ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float
    contribution: float


@dataclass(frozen=True)
class RankedCoupon:
    coupon_id: str
    rank: int
    score: float
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class IneligibleCoupon:
    coupon_id: str
    reason: str  # IneligibilityReason without its prefix, e.g. "EXPIRED", "NOT_IN_AUDIENCE"
    detail: str = ""


@dataclass(frozen=True)
class RankResult:
    request_id: str
    ranked: tuple[RankedCoupon, ...]
    ineligible: tuple[IneligibleCoupon, ...]
    model_version: str
    cold_start: bool
    degraded: bool
    degraded_reason: str  # DegradedReason without its prefix; "" when not degraded
    degraded_detail: str
    note: str = ""  # why nothing is ranked, in words (for logs); "" when something is


@dataclass(frozen=True)
class ModelInfo:
    model_version: str
    feature_names: tuple[str, ...]
    metrics: dict[str, float]
    training_data_start_time: datetime | None
    training_data_end_time: datetime | None
    create_time: datetime | None


@dataclass(frozen=True)
class EventResult:
    """What became of one recorded event (:meth:`CouponRankClient.record_events`)."""

    event_id: str
    status: str  # EventStatus without its prefix: "ACCEPTED", "DUPLICATE" or "REJECTED"
    detail: str = ""  # why it was rejected, in words starting with the field's name; "" otherwise


def _placement(placement: str | int) -> "pb.Placement":
    if isinstance(placement, int):
        return placement  # type: ignore[return-value]  # an enum value, maybe one this client does not know
    name = placement.lower()
    if name not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; one of {', '.join(PLACEMENTS)}")
    return pb.Placement.Value(f"PLACEMENT_{name.upper()}")


def _behaviour_type(kind: str | int) -> "pb.BehaviourType":
    if isinstance(kind, int):
        return kind  # type: ignore[return-value]  # an enum value, maybe one this client does not know
    name = kind.lower().removeprefix("behaviour_type_")
    if name not in BEHAVIOUR_TYPES:
        raise ValueError(f"unknown behaviour type {kind!r}; one of {', '.join(BEHAVIOUR_TYPES)}")
    return pb.BehaviourType.Value(f"BEHAVIOUR_TYPE_{name.upper()}")


def _strip(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix)


def _enum_name(enum, value: int, prefix: str) -> str:
    """An enum value's name without ``prefix``; a value newer than this client: its number."""
    return _strip(enum.Name(value), prefix) if value in enum.values() else str(value)


def _time(ts) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=timezone.utc)


def to_result(resp: pb.RankCouponsResponse) -> RankResult:
    return RankResult(
        request_id=resp.request_id,
        ranked=tuple(RankedCoupon(c.coupon_id, c.rank, c.score,
                                  tuple(Reason(r.feature, r.value, r.contribution) for r in c.reasons))
                     for c in resp.ranked_coupons),
        ineligible=tuple(IneligibleCoupon(c.coupon_id,
                                          _strip(pb.IneligibilityReason.Name(c.reason), "INELIGIBILITY_REASON_")
                                          if c.reason in pb.IneligibilityReason.values() else str(c.reason),
                                          c.detail)
                         for c in resp.ineligible_coupons),
        model_version=resp.model_version,
        cold_start=resp.cold_start,
        degraded=resp.degraded,
        degraded_reason=("" if not resp.degraded else
                         _strip(pb.DegradedReason.Name(resp.degraded_reason), "DEGRADED_REASON_")
                         if resp.degraded_reason in pb.DegradedReason.values() else str(resp.degraded_reason)),
        degraded_detail=resp.degraded_detail,
        note=resp.note,
    )


# ISO 4217 currencies whose minor unit is not 1/100 of the major unit (the rest: 2 digits).
MINOR_UNIT_DIGITS = {
    # no minor unit
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # thousandths
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # ten-thousandths (units of account)
    "CLF": 4, "UYW": 4,
}


def money(amount: str | Decimal | int, currency: str) -> pb.Money:
    """A Money from a decimal amount in major units: ``money("19.99", "USD")`` is 1999
    cents; ``money(1500, "JPY")`` is 1500 yen. Raises ValueError for a currency code
    that is not three upper-case letters or an amount with more decimals than the
    currency's minor unit has (no silent rounding). Floats are refused: 19.99 is
    not exact in binary; pass a string or a Decimal."""
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isupper()
            and currency.isalpha()):
        raise ValueError(f"currency: expected an ISO 4217 code such as 'USD', got {currency!r}")
    if isinstance(amount, float):
        raise ValueError("amount: pass a str or Decimal, not a float (binary floats are not exact)")
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        raise ValueError(f"amount: not a decimal number: {str(amount)[:32]!r}") from None
    if not value.is_finite():
        raise ValueError(f"amount: not a finite number: {amount!r}")
    digits = MINOR_UNIT_DIGITS.get(currency, 2)
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        raise ValueError(f"amount: {amount} {currency} has more than {digits} decimal(s)")
    return pb.Money(currency_code=currency, amount_minor=int(minor))


def money_amount(m: pb.Money) -> Decimal:
    """The amount of a Money in major units, exactly (``Decimal("19.99")``)."""
    return Decimal(m.amount_minor).scaleb(-MINOR_UNIT_DIGITS.get(m.currency_code, 2))


def timestamp(when: datetime) -> Timestamp:
    """A request time from a datetime (naive ones are taken as UTC). For "now", leave
    ``request_time`` unset: the server's clock is used."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def _event(event_id: str, user_id: str, event_time: datetime) -> pb.Event:
    return pb.Event(event_id=event_id, user_id=user_id, event_time=timestamp(event_time))


def impression(event_id: str, user_id: str, event_time: datetime, coupon_id: str, position: int,
               placement: str | int, request_id: str = "") -> pb.Event:
    """An event: ``coupon_id`` was shown to the user in the 1-based slot ``position`` at
    ``placement`` (a name of :data:`PLACEMENTS`, or a ``pb.Placement`` value) of the
    ranking of RankCoupons call ``request_id`` (``RankResult.request_id``, to join them).
    ``event_id`` is the caller's own id of the event, its idempotency key; ``event_time``
    when it happened (naive datetimes are taken as UTC)."""
    ev = _event(event_id, user_id, event_time)
    ev.impression.CopyFrom(pb.ImpressionEvent(request_id=request_id, coupon_id=coupon_id, position=position,
                                              placement=_placement(placement)))
    return ev


def claim(event_id: str, user_id: str, event_time: datetime, coupon_id: str,
          impression_event_id: str = "") -> pb.Event:
    """An event: the user claimed (saved) ``coupon_id``, after the impression
    ``impression_event_id`` when known."""
    ev = _event(event_id, user_id, event_time)
    ev.claim.CopyFrom(pb.ClaimEvent(coupon_id=coupon_id, impression_event_id=impression_event_id))
    return ev


def redemption(event_id: str, user_id: str, event_time: datetime, coupon_id: str, discount_minor: int = 0,
               currency: str = "USD", order_total_minor: int | None = None, order_id: str = "",
               impression_event_id: str = "") -> pb.Event:
    """An event: the user redeemed ``coupon_id`` on order ``order_id``, for a discount of
    ``discount_minor`` minor units of ``currency`` (counted against the coupon's budget;
    0 sends none, which the server reads as zero) on an order of ``order_total_minor``
    before the discount (None: unknown, not sent)."""
    ev = _event(event_id, user_id, event_time)
    ev.redemption.CopyFrom(pb.RedemptionEvent(coupon_id=coupon_id, order_id=order_id,
                                              impression_event_id=impression_event_id))
    if discount_minor:
        ev.redemption.discount.CopyFrom(pb.Money(currency_code=currency, amount_minor=int(discount_minor)))
    if order_total_minor is not None:
        ev.redemption.order_total.CopyFrom(pb.Money(currency_code=currency, amount_minor=int(order_total_minor)))
    return ev


def behaviour(event_id: str, user_id: str, event_time: datetime, type: str | int, item_id: str,
              order_id: str = "", amount_minor: int | None = None, currency: str = "USD") -> pb.Event:
    """An event: a step of the user's shopping on ``item_id``. ``type``: one of
    :data:`BEHAVIOUR_TYPES` (``"view"``, ``"add_to_cart"``, ``"favourite"``, ``"order"``;
    also ``"BEHAVIOUR_TYPE_VIEW"``), or a ``pb.BehaviourType`` value. An ``"order"`` is
    one order line: ``order_id`` (required for orders) and the line's ``amount_minor``
    minor units of ``currency`` (None: not sent)."""
    ev = _event(event_id, user_id, event_time)
    ev.behaviour.CopyFrom(pb.BehaviourEvent(type=_behaviour_type(type), item_id=item_id, order_id=order_id))
    if amount_minor is not None:
        ev.behaviour.amount.CopyFrom(pb.Money(currency_code=currency, amount_minor=int(amount_minor)))
    return ev


def empty_result(request_id: str = "") -> RankResult:
    """What a fail-open caller shows when ranking failed: no coupons."""
    return RankResult(request_id, (), (), "", False, False, "", "", "")


def tls_credentials(ca_file: str | None = None, cert_file: str | None = None,
                    key_file: str | None = None) -> grpc.ChannelCredentials:
    """TLS for :class:`CouponRankClient`: trust ``ca_file`` (PEM; None: the system's
    roots) and, for a server that asks for mutual TLS, present ``cert_file`` with
    ``key_file``."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs its key, and a key its certificate")

    def read(path):
        return None if path is None else open(path, "rb").read()

    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


class CouponRankClient:
    def __init__(self, target: str, timeout: float = 0.5, max_attempts: int = 3,
                 backoff: float = 0.05, max_backoff: float = 1.0, channel: grpc.Channel | None = None,
                 credentials: grpc.ChannelCredentials | None = None, token: str | None = None):
        """``credentials``: TLS (:func:`tls_credentials`); None: plaintext. ``token``: a
        bearer token naming this caller to the server (its ``--callers`` file), sent
        as ``authorization`` metadata on every call; use it over TLS."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("token must be a non-empty string without spaces")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.target = target
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._channel = channel or (grpc.secure_channel(target, credentials) if credentials
                                    else grpc.insecure_channel(target))
        self._stub = pb_grpc.CouponRankingServiceStub(self._channel)

    # -------------------------------------------------------------- plumbing
    def _call(self, method, request, timeout: float | None):
        """One deadline (``timeout`` seconds from now) covers every attempt, as in the Go
        and Java clients; a retry whose pause would pass the deadline is not made."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for attempt in range(1, self.max_attempts + 1):
            try:
                return method(request, timeout=max(deadline - time.monotonic(), 0.0), metadata=self._metadata)
            except grpc.RpcError as exc:
                code = exc.code()
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                if (code != grpc.StatusCode.UNAVAILABLE or attempt == self.max_attempts
                        or time.monotonic() + delay >= deadline):
                    raise CouponRankError(code, exc.details() or "") from None
                time.sleep(delay)
        raise AssertionError("unreachable")

    # -------------------------------------------------------------- API
    def rank_coupons(self, user_id: str, candidate_ids: Sequence[str] = (), placement: str | int = "cart",
                     cart_total_minor: int = 0, currency: str = "USD", cart_categories: Sequence[str] = (),
                     top_k: int = 0, explain: bool = False, timeout: float | None = None, *,
                     cart_brands: Sequence[str] = (), cart_merchant_ids: Sequence[str] = (),
                     request_time: datetime | None = None, request_id: str = "",
                     max_reasons: int = 0, membership_tier: str | None = None,
                     membership_segment_ids: Sequence[str] = ()) -> RankResult:
        """Rank coupons for one user; ``request_time`` defaults to the server's now.

        ``top_k``: coupons to return (0: the server's default). ``explain``: each ranked
        coupon carries the feature contributions behind its score, at most
        ``max_reasons`` of them (0: the server's default, 10 unless configured; the
        server accepts 0 .. 50 and rejects anything else with INVALID_ARGUMENT, even
        without ``explain``, which it otherwise ignores).

        ``membership_tier``: the user's membership as the caller knows it now (e.g.
        right after the user joined), sent as ``context.membership`` in place of the
        membership the server has stored: one of the server's tiers (``"gold"``), or
        ``""`` for a user who is not a member, with the user's audience segments in
        ``membership_segment_ids``. None (the default): no membership is sent and the
        server uses its stored one. Segment ids need a tier (``""`` included): a
        ValueError otherwise. The server checks the values (INVALID_ARGUMENT naming
        ``context.membership.tier`` or ``context.membership.segment_ids``)."""
        ctx = pb.RequestContext(
            placement=_placement(placement),
            cart_total=pb.Money(currency_code=currency, amount_minor=int(cart_total_minor)),
            cart_categories=list(cart_categories), cart_brands=list(cart_brands),
            cart_merchant_ids=list(cart_merchant_ids))
        if membership_tier is not None:
            ctx.membership.CopyFrom(pb.Membership(tier=membership_tier, segment_ids=list(membership_segment_ids)))
        elif membership_segment_ids:
            raise ValueError("membership_segment_ids needs membership_tier ('' for a user who is not a member)")
        if request_time is not None:
            if request_time.tzinfo is None:
                request_time = request_time.replace(tzinfo=timezone.utc)
            ctx.request_time.FromDatetime(request_time)
        request = pb.RankCouponsRequest(request_id=request_id, user_id=user_id,
                                        candidate_coupon_ids=list(candidate_ids), context=ctx,
                                        top_k=top_k, explain=explain, max_reasons=max_reasons)
        return self.rank(request, timeout)

    def rank_coupons_or_empty(self, user_id: str, *args, **kwargs) -> tuple[RankResult, Exception | None]:
        """Fail open: :meth:`rank_coupons` with the same arguments, but on any error
        (the server down, a deadline, a bad argument, a bug) an empty ranking and the
        error, for the caller to log, instead of an exception. The checkout waits at
        most the client's timeout, retries included."""
        try:
            return self.rank_coupons(user_id, *args, **kwargs), None
        except Exception as exc:  # fail open on anything: coupons must never block a checkout
            return empty_result(kwargs.get("request_id", "")), exc

    def rank(self, request: pb.RankCouponsRequest, timeout: float | None = None) -> RankResult:
        """Send a RankCouponsRequest built by the caller (every field as given; e.g. no
        ``cart_total`` at all), with the same deadline and retries as :meth:`rank_coupons`."""
        return to_result(self._call(self._stub.RankCoupons, request, timeout))

    def record_events(self, events: Iterable[pb.Event], timeout: float | None = None) -> list[EventResult]:
        """Record a batch of events (build them with :func:`impression`, :func:`claim`,
        :func:`redemption`, :func:`behaviour`, or as ``pb.Event`` messages): one
        :class:`EventResult` per event, in the order given. Each event is answered on
        its own: "ACCEPTED" (recorded now), "DUPLICATE" (an event with this
        ``event_id`` was recorded before; nothing is counted twice) or "REJECTED"
        (``detail`` says why; the rest of the batch is unaffected).

        Same deadline and retries as :meth:`rank_coupons`: RecordEvents is idempotent by
        ``event_id``, so UNAVAILABLE is retried with the same batch, and after a
        CouponRankError for UNAVAILABLE or DEADLINE_EXCEEDED the caller may send the
        batch again as is. Raises CouponRankError on failure: INVALID_ARGUMENT for an
        empty batch or one of more than :data:`MAX_EVENTS_PER_CALL` events (the server
        checks), PERMISSION_DENIED when the server names its callers and this one may
        not record events; and INTERNAL when the answer does not have one result per
        event."""
        request = pb.RecordEventsRequest(events=list(events))
        resp = self._call(self._stub.RecordEvents, request, timeout)
        if len(resp.results) != len(request.events):
            raise CouponRankError(grpc.StatusCode.INTERNAL,
                                  f"the server answered {len(resp.results)} results for {len(request.events)} events")
        return [EventResult(r.event_id, _enum_name(pb.EventStatus, r.status, "EVENT_STATUS_"), r.detail)
                for r in resp.results]

    def model_info(self, timeout: float | None = None) -> ModelInfo:
        r = self._call(self._stub.GetModelInfo, pb.GetModelInfoRequest(), timeout)
        return ModelInfo(r.model_version, tuple(r.feature_names), dict(r.metrics),
                         _time(r.training_data_start_time) if r.HasField("training_data_start_time") else None,
                         _time(r.training_data_end_time) if r.HasField("training_data_end_time") else None,
                         _time(r.create_time) if r.HasField("create_time") else None)

    def wait_for_ready(self, timeout: float) -> bool:
        """Connect ahead of the first call (at start-up); False if not ready within ``timeout`` s."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            return False

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "CouponRankClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
