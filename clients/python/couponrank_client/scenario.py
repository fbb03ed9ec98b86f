"""Run a JSON list of RankCoupons and RecordEvents scenarios; one JSON line per scenario.

The Python twin of the Go client's ``internal/scenario`` package and the Java client's
``ScenarioRunner``: the same input, the same output lines, so the same scenarios can
be run from Python, Go and Java against one server and the answers compared (see
scripts/test.sh). The format is documented in clients/go/README.md; in short:

Input: a JSON array of objects, every key optional but ``user_id`` (unknown keys are
an error)::

    {"name": "cart-known-user", "request_id": "r-1", "user_id": "u1",
     "candidate_coupon_ids": ["c1", "c2"], "placement": "cart",
     "cart_total_minor": 4599, "currency_code": "USD", "cart_categories": ["shoes"],
     "cart_brands": [], "cart_merchant_ids": [], "request_time": "2026-11-01T12:00:00Z",
     "top_k": 5, "explain": false, "max_reasons": 3, "deadline_ms": 300,
     "membership_tier": "gold", "membership_segment_ids": ["newsletter"]}

A scenario with ``events`` (a list, maybe empty) sends one RecordEvents call instead;
only ``name`` and ``deadline_ms`` may go with it. Each event is an object of these
optional keys (the fields of ``couponrank.v1.Event``, flattened)::

    {"event_id": "e-1", "user_id": "u1", "event_time": "2026-11-01T12:00:00Z",
     "kind": "impression", "coupon_id": "c1", "request_id": "r-1", "position": 1,
     "placement": "home"}

``kind`` is ``impression`` (with ``coupon_id``, ``request_id``, ``position``,
``placement``), ``claim`` (``coupon_id``, ``impression_event_id``), ``redemption``
(``coupon_id``, ``order_id``, ``impression_event_id``, ``discount_minor``,
``order_total_minor``, ``currency_code``) or ``behaviour`` (``behaviour_type``: ``view``,
``add_to_cart``, ``favourite``, ``order``; ``item_id``, ``order_id``, ``amount_minor``,
``currency_code``); absent, the event has none. A Money field is sent when its
``*_minor`` key is present. A key of another kind, an unknown kind, placement or
behaviour type, or a bad ``event_time`` is a CLIENT_ERROR line (nothing sent).

The request carries ``context.membership`` when ``membership_tier`` or
``membership_segment_ids`` is present (``"membership_tier": ""`` alone: explicitly not
a member); without both the server uses the membership it has stored.

Output, one line per scenario, in input order::

    {"index":0,"name":"..","ok":true,"ranked":[{"coupon_id":"c1","rank":1,"score":0.42}],
     "ineligible":[{"coupon_id":"c2","reason":"INELIGIBILITY_REASON_EXPIRED"}],
     "model_version":"..","cold_start":false,"degraded":false,
     "degraded_reason":"DEGRADED_REASON_UNSPECIFIED","note":""}
    {"index":1,"name":"..","ok":false,"error_code":"INVALID_ARGUMENT","error_message":"user_id: .."}
    {"index":2,"name":"..","ok":true,"results":[{"event_id":"e-1","status":"EVENT_STATUS_ACCEPTED","detail":""}]}

A run may be given an event id prefix (``-event-id-prefix``): it goes in front of every
non-empty ``event_id`` and ``impression_event_id`` sent, and comes off the event ids
answered, so that several runs of the same scenarios against one server (the contract
tests run three languages) each record their own events and print the same lines.

Command line (the flags of the Go and Java examples' scenario mode; exit status 0 when
every scenario succeeded, 1 when one failed, 2 on bad input)::

    python -m couponrank.client.scenario -addr localhost:50051 -scenarios scenarios.json [-event-id-prefix py/]

:func:`differences` compares two lines the way the contract tests do.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any

from couponrank.client.client import CouponRankClient, CouponRankError, EventResult, RankResult, _behaviour_type
from couponrank.v1 import coupon_ranking_service_pb2 as pb

STRING_KEYS = ("name", "request_id", "user_id", "placement", "currency_code", "request_time", "membership_tier")
LIST_KEYS = ("candidate_coupon_ids", "cart_categories", "cart_brands", "cart_merchant_ids", "membership_segment_ids")
INT_KEYS = ("cart_total_minor", "top_k", "max_reasons", "deadline_ms")
KEYS = frozenset(STRING_KEYS + LIST_KEYS + INT_KEYS + ("explain", "events"))
EVENT_KEYS = frozenset(("events", "name", "deadline_ms"))  # what may go with "events"

EVENT_STRING_KEYS = ("event_id", "user_id", "event_time", "kind", "coupon_id", "request_id", "placement",
                     "impression_event_id", "order_id", "currency_code", "behaviour_type", "item_id")
EVENT_INT_KEYS = ("position", "discount_minor", "order_total_minor", "amount_minor")
EVENT_COMMON = ("event_id", "user_id", "event_time", "kind")
# the keys each kind takes besides the common ones
EVENT_KINDS = {
    "impression": ("coupon_id", "request_id", "position", "placement"),
    "claim": ("coupon_id", "impression_event_id"),
    "redemption": ("coupon_id", "order_id", "impression_event_id", "discount_minor", "order_total_minor",
                   "currency_code"),
    "behaviour": ("behaviour_type", "item_id", "order_id", "amount_minor", "currency_code"),
}


def parse(text: str) -> list[dict[str, Any]]:
    """Parse a JSON array of scenarios; raises ValueError on a wrong shape, an unknown key
    or a value of the wrong type. Null is the same as absent. A bad placement or
    request_time is not raised here: that scenario reports CLIENT_ERROR when run."""
    try:
        root = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"scenarios: {exc}") from None
    if not isinstance(root, list):
        raise ValueError("scenarios: want a JSON array of objects")
    out = []
    for i, s in enumerate(root):
        where = f"scenarios[{i}]"
        if not isinstance(s, dict):
            raise ValueError(f"{where}: not an object")
        unknown = sorted(set(s) - KEYS)
        if unknown:
            raise ValueError(f'{where}: unknown key "{unknown[0]}"')
        s = {k: v for k, v in s.items() if v is not None}
        if "events" in s:
            s["events"] = _parse_events(s["events"], f"{where}.events")
            extra = sorted(set(s) - EVENT_KEYS)
            if extra:
                raise ValueError(f'{where}.{extra[0]}: not used with "events"')
        for k, v in s.items():
            if k == "events":
                continue
            ok = (isinstance(v, str) if k in STRING_KEYS else
                  isinstance(v, list) and all(isinstance(x, str) for x in v) if k in LIST_KEYS else
                  isinstance(v, int) and not isinstance(v, bool) if k in INT_KEYS else
                  isinstance(v, bool))
            if not ok:
                want = ("a string" if k in STRING_KEYS else "a list of strings" if k in LIST_KEYS else
                        "an integer" if k in INT_KEYS else "true or false")
                raise ValueError(f"{where}.{k}: want {want}")
        out.append(s)
    return out


def _parse_events(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: want a list of objects")
    out = []
    for j, e in enumerate(value):
        at = f"{where}[{j}]"
        if not isinstance(e, dict):
            raise ValueError(f"{at}: not an object")
        unknown = sorted(set(e) - set(EVENT_STRING_KEYS) - set(EVENT_INT_KEYS))
        if unknown:
            raise ValueError(f'{at}: unknown key "{unknown[0]}"')
        e = {k: v for k, v in e.items() if v is not None}
        for k, v in e.items():
            if k in EVENT_STRING_KEYS and not isinstance(v, str):
                raise ValueError(f"{at}.{k}: want a string")
            if k in EVENT_INT_KEYS and (not isinstance(v, int) or isinstance(v, bool)):
                raise ValueError(f"{at}.{k}: want an integer")
        out.append(e)
    return out


def placement(name: str) -> int:
    """``PLACEMENT_CART``, ``CART`` or ``cart``; empty is PLACEMENT_UNSPECIFIED."""
    if not name:
        return pb.PLACEMENT_UNSPECIFIED
    full = name.strip().upper()
    if not full.startswith("PLACEMENT_"):
        full = "PLACEMENT_" + full
    try:
        return pb.Placement.Value(full)
    except ValueError:
        raise ValueError(f"unknown placement {name!r}") from None


def to_request(s: dict[str, Any]) -> pb.RankCouponsRequest:
    """The RankCoupons request of a scenario (as :func:`parse` leaves it: no null values);
    ValueError for a bad placement or request_time."""
    ctx = pb.RequestContext(placement=placement(s.get("placement", "")),
                            cart_categories=s.get("cart_categories", []), cart_brands=s.get("cart_brands", []),
                            cart_merchant_ids=s.get("cart_merchant_ids", []))
    if "cart_total_minor" in s or "currency_code" in s:
        ctx.cart_total.CopyFrom(pb.Money(currency_code=s.get("currency_code", ""),
                                         amount_minor=s.get("cart_total_minor", 0)))
    if "membership_tier" in s or "membership_segment_ids" in s:  # present, even "" or []: sent
        ctx.membership.CopyFrom(pb.Membership(tier=s.get("membership_tier", ""),
                                              segment_ids=s.get("membership_segment_ids", [])))
    if s.get("request_time"):
        ctx.request_time.FromDatetime(_timestamp(s["request_time"], "request_time"))
    return pb.RankCouponsRequest(request_id=s.get("request_id", ""), user_id=s.get("user_id", ""),
                                 candidate_coupon_ids=s.get("candidate_coupon_ids", []), context=ctx,
                                 top_k=s.get("top_k", 0), explain=s.get("explain", False),
                                 max_reasons=s.get("max_reasons", 0))


def _prefixed(prefix: str, event_id: str) -> str:
    return prefix + event_id if event_id else event_id  # an empty id stays empty (the server rejects it)


def _behaviour(name: str) -> int:
    """``view``, ``VIEW`` or ``BEHAVIOUR_TYPE_VIEW``; empty is BEHAVIOUR_TYPE_UNSPECIFIED."""
    return _behaviour_type(name.strip()) if name else pb.BEHAVIOUR_TYPE_UNSPECIFIED


def _timestamp(text: str, key: str):
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    if at.tzinfo is None:
        raise ValueError(f"{key}: {text!r} has no time zone (want RFC 3339)")
    return at


def to_event(e: dict[str, Any], prefix: str = "") -> pb.Event:
    """The ``couponrank.v1.Event`` of one scenario event (as :func:`parse` leaves it);
    ValueError for an unknown kind, placement or behaviour type, a key of another kind,
    or a bad ``event_time``."""
    kind = e.get("kind")
    if kind is not None and kind not in EVENT_KINDS:
        raise ValueError(f"kind: unknown kind {kind!r} (impression, claim, redemption or behaviour)")
    allowed = set(EVENT_COMMON) | set(EVENT_KINDS.get(kind, ()))
    stray = sorted(set(e) - allowed)
    if stray:
        raise ValueError(f"{stray[0]}: not a field of {'an event without a kind' if kind is None else kind + ' events'}")
    ev = pb.Event(event_id=_prefixed(prefix, e.get("event_id", "")), user_id=e.get("user_id", ""))
    if e.get("event_time"):
        ev.event_time.FromDatetime(_timestamp(e["event_time"], "event_time"))

    def money(key: str) -> pb.Money:
        return pb.Money(currency_code=e.get("currency_code", ""), amount_minor=e[key])

    if kind == "impression":
        try:
            where = placement(e.get("placement", ""))
        except ValueError as exc:
            raise ValueError(f"placement: {exc}") from None
        ev.impression.CopyFrom(pb.ImpressionEvent(request_id=e.get("request_id", ""), coupon_id=e.get("coupon_id", ""),
                                                  position=e.get("position", 0), placement=where))
    elif kind == "claim":  # CopyFrom sets the oneof even for a claim without fields
        ev.claim.CopyFrom(pb.ClaimEvent(coupon_id=e.get("coupon_id", ""),
                                        impression_event_id=_prefixed(prefix, e.get("impression_event_id", ""))))
    elif kind == "redemption":
        ev.redemption.CopyFrom(pb.RedemptionEvent(
            coupon_id=e.get("coupon_id", ""), order_id=e.get("order_id", ""),
            impression_event_id=_prefixed(prefix, e.get("impression_event_id", ""))))
        for key, field in (("discount_minor", "discount"), ("order_total_minor", "order_total")):
            if key in e:
                getattr(ev.redemption, field).CopyFrom(money(key))
    elif kind == "behaviour":
        try:
            what = _behaviour(e.get("behaviour_type", ""))
        except ValueError as exc:
            raise ValueError(f"behaviour_type: {exc}") from None
        ev.behaviour.CopyFrom(pb.BehaviourEvent(type=what, item_id=e.get("item_id", ""),
                                                order_id=e.get("order_id", "")))
        if "amount_minor" in e:
            ev.behaviour.amount.CopyFrom(money("amount_minor"))
    return ev


def to_events_request(s: dict[str, Any], prefix: str = "") -> pb.RecordEventsRequest:
    """The RecordEvents request of an ``events`` scenario; ValueError names the event."""
    events = []
    for j, e in enumerate(s["events"]):
        try:
            events.append(to_event(e, prefix))
        except ValueError as exc:
            raise ValueError(f"events[{j}].{exc}") from None
    return pb.RecordEventsRequest(events=events)


def number(x: float) -> float | None:
    """JSON has no NaN or infinity: those are written as null."""
    return None if math.isnan(x) or math.isinf(x) else x


def _enum(name: str, prefix: str) -> str:
    # RankResult strips the enum prefix; an unknown enum number stays a number
    return name if name.isdigit() else prefix + name


def result_line(index: int, name: str, res: RankResult, explain: bool) -> dict[str, Any]:
    ranked = []
    for c in res.ranked:
        entry: dict[str, Any] = {"coupon_id": c.coupon_id, "rank": c.rank, "score": number(c.score)}
        if explain:
            entry["reasons"] = [{"feature": r.feature, "value": number(r.value),
                                 "contribution": number(r.contribution)} for r in c.reasons]
        ranked.append(entry)
    return {"index": index, "name": name, "ok": True, "ranked": ranked,
            "ineligible": [{"coupon_id": c.coupon_id, "reason": _enum(c.reason, "INELIGIBILITY_REASON_")}
                           for c in res.ineligible],
            "model_version": res.model_version, "cold_start": res.cold_start, "degraded": res.degraded,
            "degraded_reason": _enum(res.degraded_reason or "UNSPECIFIED", "DEGRADED_REASON_"),
            "note": res.note}


def events_line(index: int, name: str, results: Sequence[EventResult], prefix: str = "") -> dict[str, Any]:
    """The line of an ``events`` scenario: each event's id (the run's prefix taken off),
    status (``EVENT_STATUS_ACCEPTED``, ...) and detail."""
    return {"index": index, "name": name, "ok": True,
            "results": [{"event_id": r.event_id.removeprefix(prefix) if prefix else r.event_id,
                         "status": _enum(r.status, "EVENT_STATUS_"), "detail": r.detail} for r in results]}


def run(client: CouponRankClient, index: int, s: dict[str, Any], event_id_prefix: str = "") -> dict[str, Any]:
    """Send one scenario; its output line as a dict."""
    name = s.get("name", "")
    try:
        request = to_events_request(s, event_id_prefix) if "events" in s else to_request(s)
    except ValueError as exc:
        return {"index": index, "name": name, "ok": False, "error_code": "CLIENT_ERROR", "error_message": str(exc)}
    timeout = s["deadline_ms"] / 1000 if s.get("deadline_ms", 0) > 0 else None
    try:
        if "events" in s:
            return events_line(index, name, client.record_events(request.events, timeout=timeout), event_id_prefix)
        res = client.rank(request, timeout=timeout)
    except CouponRankError as exc:
        return {"index": index, "name": name, "ok": False, "error_code": exc.code.name,
                "error_message": exc.details}
    return result_line(index, name, res, s.get("explain", False))


def dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def run_all(client: CouponRankClient, scenarios: Sequence[dict[str, Any]], out: IO[str],
            event_id_prefix: str = "") -> int:
    """Run the scenarios in order, one JSON line each to ``out``; returns how many failed."""
    failed = 0
    for i, s in enumerate(scenarios):
        line = run(client, i, s, event_id_prefix)
        failed += not line["ok"]
        out.write(dumps(line) + "\n")
        out.flush()
    return failed


# ------------------------------------------------------------------ comparing lines
def normalize(line: dict[str, Any]) -> dict[str, Any]:
    """A line as the contract tests compare it: an error keeps its code, and for
    INVALID_ARGUMENT the field its message starts with (``user_id: must not be empty``
    -> ``user_id``); other messages are dropped (each gRPC implementation words its own).
    An expectation may give ``error_field`` instead of a message."""
    line = dict(line)
    if not line.get("ok"):
        message = line.pop("error_message", None)
        field = line.pop("error_field", None)
        if line.get("error_code") == "INVALID_ARGUMENT":
            line["error_field"] = field if field is not None else str(message).partition(":")[0]
    return line


def differences(want: Any, got: Any, path: str = "", rel: float = 1e-9) -> list[str]:
    """Where two parsed JSON values differ (empty: they agree): numbers within ``rel``
    relative tolerance (1 and 1.0 agree), everything else exactly. Normalize lines first."""
    if isinstance(want, bool) or isinstance(got, bool) or want is None or got is None:
        return [] if want is got else [f"{path or '.'}: want {want!r}, got {got!r}"]  # singletons
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        close = want == got or abs(want - got) <= rel * max(abs(want), abs(got))
        return [] if close else [f"{path}: want {want!r}, got {got!r}"]
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in want if k not in got]
        out += [f"{path}.{k}: unexpected {got[k]!r}" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(want[k], got[k], f"{path}.{k}", rel)
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: want {len(want)} entries, got {len(got)}: want {want!r}, got {got!r}"]
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in differences(w, g, f"{path}[{i}]", rel)]
    return [] if type(want) is type(got) and want == got else [f"{path or '.'}: want {want!r}, got {got!r}"]


# ------------------------------------------------------------------ command line
def duration(text: str) -> float:
    """Seconds from a duration as the Go and Java examples take it: ``500ms``, ``2s``,
    ``1m``; a plain number is seconds."""
    for suffix, scale in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * scale
    return float(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m couponrank.client.scenario",
                                 description="Run RankCoupons scenarios; one JSON line each.")
    ap.add_argument("-addr", "--addr", default="localhost:50051", help="CouponRank server address")
    ap.add_argument("-scenarios", "--scenarios", required=True, help="JSON scenarios file ('-': stdin)")
    ap.add_argument("-timeout", "--timeout", type=duration, default=0.5,
                    help="deadline of a call whose scenario has no deadline_ms, e.g. 500ms, 2s (default 500ms)")
    ap.add_argument("-event-id-prefix", "--event-id-prefix", default="",
                    help="put this in front of every event id sent (and take it off those answered), so that "
                         "repeated runs record new events")
    ap.add_argument("-connect-timeout", "--connect-timeout", type=duration, default=5.0,
                    help="wait this long for the connection before the first call (0: don't wait; default 5s)")
    args = ap.parse_args(argv)
    try:
        text = sys.stdin.read() if args.scenarios == "-" else open(args.scenarios, encoding="utf-8").read()
        scenarios = parse(text)
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    with CouponRankClient(args.addr, timeout=args.timeout) as client:
        if args.connect_timeout > 0:
            client.wait_for_ready(args.connect_timeout)  # not ready: the calls report UNAVAILABLE
        try:  # warm-up only, as in Go and Java: set-up costs stay out of the first deadline
            client.model_info()
        except CouponRankError:
            pass
        return 1 if run_all(client, scenarios, sys.stdout, args.event_id_prefix) else 0


if __name__ == "__main__":
    sys.exit(main())
