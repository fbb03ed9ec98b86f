"""RecordEvents: each event of a batch checked on its own, the accepted ones written to
the durable event log (couponrank/events/log.py) with the live counters they move, in
one transaction, before the answer is sent.

Rules per event (a rejected event's detail starts with the field's name):

* ``event_id`` and ``user_id`` non-empty, at most 128 bytes; a user the feature store
  does not know is accepted (a new shopper);
* ``event_time`` set, a valid timestamp, at most CLOCK_SKEW_SECONDS ahead of the
  server's clock and at most RETENTION_SECONDS behind it;
* exactly one kind; coupon events name a coupon of the catalogue; an impression a
  position >= 1 and a placement; money in an accepted currency, not negative;
* a redemption's coupon must have been offered to the user: an impression recorded
  here, or one in the data the features were built from (``ucp_impressions_total``);
* a behaviour event a type and an item of the item catalogue (``<repo>/data/
  item_catalog.parquet``, written by build-features; not checked without one); an
  order line its order id.

An event whose ``event_id`` is already recorded (in an earlier batch, or earlier in
the same one) is a DUPLICATE: nothing is counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from couponrank.events.log import EventLog, EventRecord
from couponrank.server import push
from couponrank.server.service import (MAX_ID_BYTES, MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS, InvalidArgument,
                                       ServerConfig, _check_size, _placement, money_amount, quote)
from couponrank.v1 import coupon_ranking_service_pb2 as pb

log = logging.getLogger(__name__)


CLOCK_SKEW_SECONDS = 300.0  # how far ahead of the server's clock an event may be
RETENTION_SECONDS = 30 * 86_400  # how far behind: the live counters' horizon
BEHAVIOUR_TYPES = {pb.BEHAVIOUR_TYPE_VIEW: "view", pb.BEHAVIOUR_TYPE_ADD_TO_CART: "add_to_cart",
                   pb.BEHAVIOUR_TYPE_FAVOURITE: "favourite", pb.BEHAVIOUR_TYPE_ORDER: "order"}


class Rejected(ValueError):
    """One event cannot be recorded; the message starts with the field's name."""


def _id(value: str, where: str, required: bool = True) -> str | None:
    if not value:
        if required:
            raise Rejected(f"{where}: must not be empty")
        return None
    try:
        _check_size(where, value)  # the same limit and message as RankCoupons' ids
    except InvalidArgument as exc:
        raise Rejected(str(exc)) from None
    return value


def _money(money: pb.Money, config: ServerConfig, where: str) -> float:
    try:
        return money_amount(money, config, where)
    except InvalidArgument as exc:
        raise Rejected(str(exc)) from None


def to_record(event: pb.Event, config: ServerConfig, known_coupon: Callable[[str], bool],
              now: float, known_item: Callable[[str], bool] = lambda item: True) -> EventRecord:
    """The event as a record of the raw schema; Rejected says why it cannot be one."""
    event_id = _id(event.event_id, "event_id")
    user_id = _id(event.user_id, "user_id")
    if not event.HasField("event_time"):
        raise Rejected("event_time: must be set")
    ts = event.event_time
    if not (MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= ts.nanos <= 999_999_999):
        raise Rejected("event_time: not a valid timestamp")
    t = ts.seconds + ts.nanos / 1e9
    if t > now + CLOCK_SKEW_SECONDS:
        raise Rejected(f"event_time: {(t - now) / 60:.0f} min ahead of the server's clock, more than the allowed "
                       f"{CLOCK_SKEW_SECONDS / 60:.0f} min")
    if t < now - RETENTION_SECONDS:
        raise Rejected(f"event_time: {(now - t) / 86_400:.0f} days old, older than the {RETENTION_SECONDS // 86_400:.0f}"
                       f"-day retention")
    kind = event.WhichOneof("kind")
    base = dict(event_id=event_id, user_id=user_id, event_ts=t)
    if kind is None:
        raise Rejected("kind: one of impression, claim, redemption or behaviour must be set")
    if kind == "behaviour":
        b = event.behaviour
        if b.type not in BEHAVIOUR_TYPES:
            raise Rejected(f"behaviour.type: must be set to a known type, got {b.type}")
        item = _id(b.item_id, "behaviour.item_id")
        if not known_item(item):
            raise Rejected(f"behaviour.item_id: no item {quote(item)} in the item catalogue")
        kind_name = BEHAVIOUR_TYPES[b.type]
        if kind_name != "order":
            return EventRecord(**base, event_type=kind_name, item_id=item)
        order = _id(b.order_id, "behaviour.order_id")
        amount = _money(b.amount, config, "behaviour.amount") if b.HasField("amount") else None
        return EventRecord(**base, event_type="order", item_id=item, order_id=order, amount=amount)
    message = getattr(event, kind)
    coupon = _id(message.coupon_id, f"{kind}.coupon_id")
    if not known_coupon(coupon):
        raise Rejected(f"{kind}.coupon_id: no coupon {quote(coupon)} in the catalogue")
    if kind == "impression":
        if message.position < 1:
            raise Rejected(f"impression.position: must be at least 1, got {message.position}")
        try:
            placement = _placement(message.placement)
        except InvalidArgument as exc:
            raise Rejected(str(exc).replace("context.placement", "impression.placement", 1)) from None
        return EventRecord(**base, event_type="impression", coupon_id=coupon, placement=placement,
                           position=int(message.position),
                           request_id=_id(message.request_id, "impression.request_id", required=False))
    impression = _id(message.impression_event_id, f"{kind}.impression_event_id", required=False)
    if kind == "claim":
        return EventRecord(**base, event_type="claim", coupon_id=coupon, impression_id=impression)
    discount = _money(message.discount, config, "redemption.discount") if message.HasField("discount") else 0.0
    total = _money(message.order_total, config, "redemption.order_total") if message.HasField("order_total") else None
    return EventRecord(**base, event_type="redemption", coupon_id=coupon, impression_id=impression,
                       order_id=_id(message.order_id, "redemption.order_id", required=False), amount=total,
                       discount=discount)


class EventRecorder:
    """The RecordEvents work behind the servicer: check, write, answer."""

    def __init__(self, log_: EventLog, ranker, clock: Callable[[], float], items: frozenset[str] | None = None):
        self.log = log_
        self.items = items  # the item catalogue's ids (build-features' item_catalog); None: not checked
        self.ranker = ranker  # its catalogue (known coupons) and online store (impressions in the batch data)
        self.clock = clock
        self.fresh = None  # server/push.py FreshFeatures: pushes fresh user and coupon features

    def _offered_in_batch_data(self, user_id: str, coupon_id: str) -> bool:
        try:
            read = self.ranker.online.read(user_id, [coupon_id], self.ranker.online.key_values(
                self.ranker.catalog.current, self.ranker.catalog.current.lookup([coupon_id])))
        except Exception as exc:  # the store down: only the log's own impressions count
            log.warning("online store read for a redemption check failed: %s", type(exc).__name__)
            return False
        shown = read.get("ucp_impressions_total")
        return shown is not None and bool(shown[0] > 0)

    def record(self, request: pb.RecordEventsRequest, config: ServerConfig) -> pb.RecordEventsResponse:
        now = self.clock()
        catalog = self.ranker.catalog.current
        known = (lambda cid: cid in catalog.index)
        results: list[pb.EventResult] = []
        accepted: list[tuple[int, EventRecord]] = []
        for i, event in enumerate(request.events):
            try:
                record = to_record(event, config, known, now,
                                   (lambda item: item in self.items) if self.items is not None else (lambda item: True))
                if record.event_type == "redemption" and not (
                        self.log.offered(record.user_id, record.coupon_id)
                        or any(r.event_type == "impression" and r.user_id == record.user_id
                               and r.coupon_id == record.coupon_id for _, r in accepted)
                        or self._offered_in_batch_data(record.user_id, record.coupon_id)):
                    raise Rejected(f"redemption.coupon_id: {quote(record.coupon_id)} was never offered to this user "
                                   "(no impression recorded)")
            except Rejected as exc:
                results.append(pb.EventResult(event_id=event.event_id[:MAX_ID_BYTES], status=pb.EVENT_STATUS_REJECTED,
                                              detail=str(exc)))
                continue
            results.append(pb.EventResult(event_id=record.event_id, status=pb.EVENT_STATUS_ACCEPTED))
            accepted.append((i, record))
        if accepted:
            new = self.log.record([r for _, r in accepted])
            for (i, _), fresh in zip(accepted, new):
                if not fresh:
                    results[i].status = pb.EVENT_STATUS_DUPLICATE
            if self.fresh is not None:
                users, coupons, items = push.latest(r for (_, r), fresh in zip(accepted, new) if fresh)
                if users or coupons:
                    self.fresh.submit(users, coupons, items)
        return pb.RecordEventsResponse(results=results)


def load_items(repo) -> frozenset[str] | None:
    """The item ids of ``<repo>/data/item_catalog.parquet``; None when the workspace was
    built before build-features wrote it (items are then not checked)."""
    from pathlib import Path

    import pandas as pd

    path = Path(repo) / "data" / "item_catalog.parquet"
    if not path.is_file():
        log.warning("%s not found: RecordEvents does not check item ids (run couponrank build-features)", path)
        return None
    return frozenset(pd.read_parquet(path, columns=["item_id"]).item_id.astype(str))
