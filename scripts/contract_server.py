"""The live server of the cross-language contract tests (scripts/test.sh starts it).

    .venv/bin/python scripts/contract_server.py --dir DIR

1. builds a tiny served workspace in DIR/work, as tests/server_fixtures.py does
   (the demo on the tiny size, its data ending on END_DATE: data, features, online
   store, model), or reuses the one an earlier run built there;
2. starts the real gRPC server on 127.0.0.1, on a free port, its clock pinned to NOW
   (the tiny data ends on END_DATE), so that nothing depends on the day it runs;
3. picks scenarios from the built data, with fixed request times (or none: the
   pinned clock), choosing by sorted ids so that ties never depend on the machine:
   a known and a cold-start user, explain on and off, top_k, max_reasons, candidates that are
   expired, not yet valid, below their minimum spend, out of the cart's scope, over
   the user's limit, unknown; empty answers that say why (`note`); every
   INVALID_ARGUMENT case; a passed deadline; a scenario the clients must refuse
   themselves; RecordEvents batches (accepted, resent, each kind of rejection, bad
   batch sizes) and a ranking that shows a recorded redemption. Writes them to
   DIR/scenarios.json (the scenario format of clients/go/README.md);
4. writes DIR/expected.json, one entry per scenario: the line a client must print,
   computed by calling the same server's servicer in process (no gRPC; its events
   under the id prefix EXPECTED_PREFIX, each client run under its own); for an error
   its status code and, for INVALID_ARGUMENT, the field the message must start with
   (``error_field``). It first checks each scenario still means what its name says
   and stops with a message when the data or the server changed under it;
5. writes DIR/server.json ({"addr": "127.0.0.1:PORT"}) last: it exists once the
   server is ready;
then serves until SIGTERM or SIGINT. The event log is DIR/events.db, new at each start. Each client's contract test writes its lines to
DIR/<python|go|java>.jsonl; scripts/contract_check.py checks that they agree.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from couponrank.client import scenario
from couponrank.clock import fixed, unix_seconds
from couponrank.features import repo as feast_repo
from couponrank.v1 import coupon_ranking_service_pb2 as pb

# Pinned dates: the tiny data ends on END_DATE and the server's clock reads NOW (10 h
# later), so scenarios without a request_time, like the README snippets, rank at a
# fixed instant whatever day the tests run on.
END_DATE = date(2026, 7, 1)
NOW = datetime(2026, 7, 1, 10, tzinfo=UTC)
OK_DEADLINE_MS = 20_000  # generous: a loaded CI machine must not turn an answer into DEADLINE_EXCEEDED
IN_CART = "contract-in-cart"  # scope values no coupon has
# The in-process answers record their events under this id prefix; each client's run
# uses its own (-event-id-prefix), so that every run records its own events.
EXPECTED_PREFIX = "expected/"
EVENTS_USER = "u-contract-events"  # a new shopper: no row in the online store


@dataclass
class Case:
    scenario: dict[str, Any]
    check: Callable[[dict], bool]  # does the in-process answer show what the name says?
    deadline_passed: bool = False  # answer in process as if the caller's deadline had passed


def build(work: Path) -> tuple[Path, Path]:
    from couponrank.demo import run_demo

    repo, models = work / "features", work / "models"
    if (work / "built").exists():  # --dir reused: the workspace is already there
        return repo, models
    run_demo(work / "raw", repo, models, size="tiny", progress=False, end_date=END_DATE, clock=fixed(NOW))
    (work / "built").touch()
    return repo, models


def rfc3339(t: pd.Timestamp) -> str:
    return t.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def ids(line: dict, key: str = "ranked") -> list[str]:
    return [c["coupon_id"] for c in line.get(key, [])]


def reasons(line: dict) -> dict[str, str]:
    return {c["coupon_id"]: c["reason"].removeprefix("INELIGIBILITY_REASON_") for c in line.get("ineligible", [])}


def latest(path: Path, keys: list[str]) -> pd.DataFrame:
    """The newest row per key of a snapshot source (what the online store holds); a
    stable sort, so that ties do not depend on the CPU's sorting kernel."""
    frame = pd.read_parquet(path).sort_values("event_timestamp", kind="stable")
    frame = frame.drop_duplicates(keys, keep="last").sort_values(keys, kind="stable").reset_index(drop=True)
    return frame.astype({k: str for k in keys})


def cases(repo: Path, max_candidates: int) -> list[Case]:
    """The scenarios, chosen from the built catalogue and feature data."""
    data = repo / "data"
    T = pd.Timestamp(NOW)  # the server's clock
    if T <= feast_repo.last_snapshot(repo):
        sys.exit("contract_server: NOW must lie after the last feature snapshot, so that every feature is known")
    at = rfc3339(T)
    # Every pick below is by sorted ids or stable sorts: an unstable sort (numpy's
    # quicksort, which pandas' single-key sort_values and value_counts use) orders ties
    # differently on CPUs with different SIMD sorting kernels (AVX-512 or not).
    cat = latest(data / "coupon_attributes.parquet", ["coupon_id"])
    vf, vt, ms, scope = cat.coupon_valid_from_unix, cat.coupon_valid_to_unix, cat.coupon_min_spend, cat.coupon_scope
    active_T = cat[(vf <= T.timestamp()) & (T.timestamp() < vt)]
    users = pd.read_parquet(data / "user_activity.parquet", columns=["user_id"]).user_id.astype(str)
    rows_per_user = users.value_counts()
    user = min(rows_per_user.index[rows_per_user == rows_per_user.max()])  # the most active user; ties by id
    usage = latest(data / "user_coupon_usage.parquet", ["user_id", "coupon_id"])
    limit = usage.coupon_id.map(dict(zip(cat.coupon_id, cat.coupon_per_user_limit)))
    used_up = usage[usage.ucp_redemptions_total >= limit]  # (user, coupon) pairs over the per-user limit
    stats = latest(data / "coupon_stats.parquet", ["coupon_id"])
    spent = set(stats.coupon_id[stats.coupon_budget_used_frac >= 1])
    usable = active_T[(active_T.coupon_scope == "all") & ~active_T.coupon_id.isin(spent)
                      & ~active_T.coupon_id.isin(used_up.coupon_id[used_up.user_id == user])]

    def ok(extra: Callable[[dict], bool] = lambda line: True) -> Callable[[dict], bool]:
        return lambda line: line["ok"] and not line["degraded"] and extra(line)

    def invalid(field: str) -> Callable[[dict], bool]:
        return lambda line: line.get("error_code") == "INVALID_ARGUMENT" and line.get("error_field") == field

    def case(check, name, deadline_passed=False, **fields) -> Case:
        s = {"name": name, **({} if "events" in fields else {"request_id": f"contract-{name}"}), **fields}
        s.setdefault("deadline_ms", OK_DEADLINE_MS)
        return Case(s, check, deadline_passed)

    known = dict(user_id=user, request_time=at)
    out = [
        case(ok(lambda l: len(l["ranked"]) > 1 and not l["cold_start"]), "known-user-home-every-active-coupon",
             placement="home", cart_total_minor=20_000, currency_code="USD", **known),
        case(ok(lambda l: 0 < len(l["ranked"]) <= 5 and all(c["reasons"] for c in l["ranked"])),
             "known-user-cart-explain-top5", placement="PLACEMENT_CART", cart_total_minor=9_999,
             currency_code="USD", cart_categories=["cat01"], top_k=5, explain=True, **known),
        # the request's max_reasons below the server's default (10): the same coupons, two reasons each
        case(ok(lambda l: 0 < len(l["ranked"]) <= 5 and all(0 < len(c["reasons"]) <= 2 for c in l["ranked"])
                and any(len(c["reasons"]) == 2 for c in l["ranked"])),
             "known-user-cart-explain-max-reasons-2", placement="PLACEMENT_CART", cart_total_minor=9_999,
             currency_code="USD", cart_categories=["cat01"], top_k=5, explain=True, max_reasons=2, **known),
        case(ok(lambda l: len(l["ranked"]) == 1 and not l["ineligible"]), "known-user-checkout-top1",
             placement="CHECKOUT", cart_total_minor=1_000_000, currency_code="USD",
             candidate_coupon_ids=list(usable.coupon_id[:4]), top_k=1, **known),
        case(ok(lambda l: bool(l["ranked"])), "known-user-product-page-no-cart-total", placement="product_page",
             **known),
        # no request_time: the server's clock (pinned to NOW, as `at`), like the README snippets
        case(ok(lambda l: len(l["ranked"]) > 1 and not l["note"]), "known-user-checkout-server-clock",
             user_id=user, placement="checkout", cart_total_minor=12_000, currency_code="USD",
             cart_categories=["cat01"], top_k=5),
        case(ok(lambda l: not l["ranked"] and not l["ineligible"] and l["note"].startswith("no coupon is active at ")),
             "nothing-active-says-why", user_id=user, placement="home", cart_total_minor=20_000,
             currency_code="USD", request_time=rfc3339(pd.Timestamp(vt.max() + 86_400, unit="s", tz="UTC"))),
        case(ok(lambda l: l["cold_start"] and bool(l["ranked"]) and all(c["reasons"] for c in l["ranked"])),
             "cold-start-user-explain", user_id="u-contract-never-seen", placement="home",
             cart_total_minor=5_000, currency_code="USD", top_k=3, explain=True, request_time=at),
    ]

    # one candidate of each catalogue-only reason, at a time when all of them exist
    for t in np.sort(vf.to_numpy()) + 1:
        active = (vf <= t) & (t < vt)
        rows = {"EXPIRED": vt <= t, "NOT_YET_VALID": vf > t, "MIN_SPEND_NOT_MET": active & (scope == "all") & (ms > 0),
                "OUT_OF_SCOPE": active & (scope == "category") & (ms == 0),
                "ranked": active & (scope == "all") & (ms == 0)}
        if all(r.any() for r in rows.values()):
            break
    else:
        sys.exit("contract_server: no request time gives every kind of ineligible candidate in the tiny data")
    chosen = {kind: cat.coupon_id[r].iloc[0] for kind, r in rows.items()}
    chosen["UNKNOWN_COUPON"] = "c-contract-unknown"
    want = {cid: kind for kind, cid in chosen.items() if kind != "ranked"}
    at_t = rfc3339(pd.Timestamp(t, unit="s", tz="UTC"))
    out.append(case(ok(lambda l: ids(l) == [chosen["ranked"]] and reasons(l) == want and not l["note"]),
                    "eligibility-reasons", user_id="u000001", candidate_coupon_ids=list(chosen.values()),
                    placement="cart", cart_total_minor=0, currency_code="USD", cart_categories=["not-a-category"],
                    request_time=at_t))
    dropped = {k: chosen[k] for k in ("EXPIRED", "UNKNOWN_COUPON")}
    out.append(case(ok(lambda l: not l["ranked"] and reasons(l) == {v: k for k, v in dropped.items()}
                       and l["note"].startswith("none of the 2 candidates is eligible at ")),
                    "every-candidate-ineligible-says-why", user_id="u000001",
                    candidate_coupon_ids=sorted(dropped.values()), placement="home", cart_total_minor=0,
                    currency_code="USD", request_time=at_t))

    # per-user limit: a (user, coupon) whose redemptions reached the coupon's limit (online store)
    hit = used_up[used_up.coupon_id.isin(active_T.coupon_id) & ~used_up.coupon_id.isin(spent)]
    hit = hit.sort_values(["user_id", "coupon_id"], kind="stable")
    if len(hit):
        u, limited = hit.user_id.iloc[0], hit.coupon_id.iloc[0]
        out.append(case(ok(lambda l: reasons(l) == {limited: "PER_USER_LIMIT_REACHED"}), "per-user-limit-reached",
                        user_id=u, candidate_coupon_ids=[limited], placement="home", cart_total_minor=10_000_000,
                        currency_code="USD", request_time=at))

    # scope: one coupon per scope kind, active at T, no minimum spend; every cart list is sent
    free = active_T[(active_T.coupon_min_spend == 0) & (active_T.coupon_audience == "all")]  # for anyone
    scoped = {k: free[free.coupon_scope == k] for k in ("category", "brand", "merchant")}
    if not all(len(v) for v in scoped.values()):
        sys.exit("contract_server: the tiny data has no active category, brand and merchant coupons at once")
    value = {k: v.coupon_scope_value.iloc[0] for k, v in scoped.items()}
    three = sorted(v.coupon_id.iloc[0] for v in scoped.values())
    cart = dict(user_id="u-contract-scope", candidate_coupon_ids=three, placement="cart", cart_total_minor=10_000,
                currency_code="USD", request_time=at)
    out += [
        case(ok(lambda l: sorted(ids(l)) == three), "scope-every-cart-list-matches", **cart,
             cart_categories=[IN_CART, value["category"]], cart_brands=[IN_CART, value["brand"]],
             cart_merchant_ids=[value["merchant"]]),
        case(ok(lambda l: reasons(l) == dict.fromkeys(three, "OUT_OF_SCOPE")), "scope-no-cart-list-matches", **cart,
             cart_categories=[IN_CART], cart_brands=[IN_CART], cart_merchant_ids=[IN_CART]),
    ]

    # audiences (issue 13): at the member centre, with a cart meeting every minimum spend,
    # for the highest-tier member in the store, for a user with no membership, and for
    # each with the request's membership
    members = latest(data / "user_membership.parquet", ["user_id"])  # the online store's rows
    top = members[members.membership_tier_rank == members.membership_tier_rank.max()].user_id
    if not len(top):
        sys.exit("contract_server: the tiny data has no member")
    top = min(top)
    outsider = min(set(users) - set(members.user_id))
    open_ = active_T[(active_T.coupon_audience == "all") & ~active_T.coupon_id.isin(spent)
                     & ~active_T.coupon_id.isin(used_up.coupon_id[used_up.user_id == top])]
    exclusive = active_T[(active_T.coupon_audience == "members") & ~active_T.coupon_id.isin(spent)
                         & ~active_T.coupon_id.isin(used_up.coupon_id[used_up.user_id == top])]
    if not len(open_) or not len(exclusive):
        sys.exit("contract_server: the tiny data has no open and members-only coupons active at once")
    pair = sorted([open_.coupon_id.iloc[0], exclusive.coupon_id.iloc[0]])
    members_only = exclusive.coupon_id.iloc[0]
    centre = dict(candidate_coupon_ids=pair, placement="member_centre", cart_total_minor=10_000_000,
                  currency_code="USD", request_time=at)
    out += [
        case(ok(lambda l: sorted(ids(l)) == pair and not l["ineligible"]), "member-centre-member-sees-member-coupon",
             user_id=top, **centre),
        case(ok(lambda l: ids(l) == [c for c in pair if c != members_only]
                and reasons(l) == {members_only: "NOT_IN_AUDIENCE"}), "member-centre-non-member-not-in-audience",
             user_id=outsider, **centre),
        case(ok(lambda l: sorted(ids(l)) == pair and not l["ineligible"]), "member-centre-requests-membership-wins",
             user_id=outsider, membership_tier="silver", membership_segment_ids=["students"], **centre),
        case(ok(lambda l: reasons(l) == {members_only: "NOT_IN_AUDIENCE"}), "member-centre-request-says-not-a-member",
             user_id=top, membership_tier="", **centre),
    ]

    out += event_cases(data, T, active_T, spent, case, ok, invalid)

    some = list(active_T.coupon_id[:3])
    valid = dict(user_id=user, placement="cart", cart_total_minor=4_599, currency_code="USD", request_time=at)
    out += [
        case(invalid("user_id"), "invalid-empty-user-id", **{**valid, "user_id": ""}),
        case(invalid("context.placement"), "invalid-placement-unspecified", **{**valid, "placement": ""}),
        case(invalid("context.cart_total.amount_minor"), "invalid-negative-cart-total",
             **{**valid, "cart_total_minor": -1}),
        case(invalid("context.cart_total.currency_code"), "invalid-unknown-currency",
             **{**valid, "currency_code": "EUR"}),
        case(invalid("candidate_coupon_ids"), "invalid-duplicate-candidates",
             candidate_coupon_ids=[some[0], some[1], some[0]], **valid),
        case(invalid("candidate_coupon_ids"), "invalid-too-many-candidates",
             candidate_coupon_ids=[f"c-many-{i}" for i in range(max_candidates + 1)], **valid),
        case(invalid("top_k"), "invalid-negative-top-k", top_k=-1, **valid),
        case(invalid("max_reasons"), "invalid-max-reasons-over-limit", explain=True, max_reasons=51, **valid),
        case(invalid("context.membership.tier"), "invalid-unknown-membership-tier", membership_tier="diamond",
             **valid),
        case(invalid("context.membership.segment_ids"), "invalid-unknown-membership-segment", membership_tier="",
             membership_segment_ids=["c-contract-no-such-segment"], **valid),
        # 10 KB of currency code: the message quotes 32 characters (it once went over gRPC's
        # 8 KB metadata limit and reached the client as RESOURCE_EXHAUSTED)
        case(invalid("context.cart_total.currency_code"), "invalid-oversized-currency",
             **{**valid, "currency_code": "X" * 10_000}),
        case(invalid("user_id"), "invalid-oversized-user-id", **{**valid, "user_id": "u" * 10_000}),
        case(invalid("candidate_coupon_ids"), "invalid-oversized-candidate-id",
             candidate_coupon_ids=[some[0], "c" * 10_000], **valid),
        case(invalid("context.cart_brands"), "invalid-too-many-cart-brands",
             cart_brands=[f"b{i}" for i in range(10_001)], **valid),
        # 1 ms for every coupon, explained, and a cart of 10,000 brands of 122 bytes (1.2 MB, at
        # the limits): merely reading it takes the server longer, so it stops at its first
        # deadline check (a small request can beat 1 ms with a DEADLINE_PRESSURE answer before a
        # client notices its deadline)
        case(lambda l: l.get("error_code") == "DEADLINE_EXCEEDED", "deadline-exceeded", deadline_passed=True,
             user_id=user, placement="cart", cart_total_minor=20_000, currency_code="USD", request_time=at,
             cart_brands=[f"contract-brand-{i:06d}-" + "x" * 100 for i in range(10_000)], top_k=len(cat),
             explain=True, deadline_ms=1),
        case(lambda l: l.get("error_code") == "CLIENT_ERROR", "client-refuses-unknown-placement",
             user_id=user, placement="basket", request_time=at),
    ]
    return out


def event_cases(data: Path, T: pd.Timestamp, active_T: pd.DataFrame, spent: set, case, ok, invalid) -> list[Case]:
    """RecordEvents scenarios (issue 11): a batch of every kind accepted, the same batch
    resent, a ranking that shows its redemption, a batch answering each bad event with
    its reason, bad batch sizes, an event the clients refuse."""
    at = rfc3339(T - pd.Timedelta(minutes=1))
    # a coupon anyone may use at T, limited to one redemption per user (ranked at home, where
    # scope does not apply)
    once = active_T[(active_T.coupon_per_user_limit == 1) & (active_T.coupon_audience == "all")
                    & ~active_T.coupon_id.isin(spent)]
    if not len(once):
        sys.exit("contract_server: the tiny data has no active coupon limited to one redemption per user")
    coupon = once.coupon_id.iloc[0]
    item = min(pd.read_parquet(data / "item_catalog.parquet", columns=["item_id"]).item_id.astype(str))
    user = dict(user_id=EVENTS_USER, event_time=at)
    shown = dict(kind="impression", coupon_id=coupon, request_id="contract-events-ranking", position=1,
                 placement="home", **user)
    every_kind = [
        dict(event_id="e-impression", **shown),
        dict(event_id="e-claim", kind="claim", coupon_id=coupon, impression_event_id="e-impression", **user),
        dict(event_id="e-redemption", kind="redemption", coupon_id=coupon, order_id="o-1",
             impression_event_id="e-impression", discount_minor=100, order_total_minor=5_000, currency_code="USD",
             **user),
        dict(event_id="e-view", kind="behaviour", behaviour_type="view", item_id=item, **user),
        dict(event_id="e-order-line", kind="behaviour", behaviour_type="order", item_id=item, order_id="o-1",
             amount_minor=5_000, currency_code="USD", **user),
    ]
    view = dict(kind="behaviour", behaviour_type="view", item_id=item, **user)
    # (event, the status it must get, what its detail must start with: the field)
    mixed = [
        (dict(event_id="e-mixed-view", **view), "ACCEPTED", ""),
        (dict(event_id="e-mixed-view", **view), "DUPLICATE", ""),  # the same id twice in one batch
        (dict(event_id="", **view), "REJECTED", "event_id"),
        (dict(view, event_id="e-no-user", user_id=""), "REJECTED", "user_id"),
        (dict(view, event_id="e-no-time", event_time=None), "REJECTED", "event_time"),
        (dict(view, event_id="e-future", event_time=rfc3339(T + pd.Timedelta(hours=1))), "REJECTED", "event_time"),
        (dict(view, event_id="e-too-old", event_time=rfc3339(T - pd.Timedelta(days=40))), "REJECTED", "event_time"),
        (dict(event_id="e-no-kind", **user), "REJECTED", "kind"),
        (dict(shown, event_id="e-unknown-coupon", coupon_id="c-contract-unknown"), "REJECTED", "impression.coupon_id"),
        (dict(shown, event_id="e-position-0", position=0), "REJECTED", "impression.position"),
        (dict(shown, event_id="e-no-placement", placement=None), "REJECTED", "impression.placement"),
        (dict(view, event_id="e-unknown-item", item_id="i-contract-unknown"), "REJECTED", "behaviour.item_id"),
        (dict(view, event_id="e-no-behaviour-type", behaviour_type=None), "REJECTED", "behaviour.type"),
        (dict(view, event_id="e-order-no-order-id", behaviour_type="order", amount_minor=100, currency_code="USD"),
         "REJECTED", "behaviour.order_id"),
        (dict(event_id="e-negative-discount", kind="redemption", coupon_id=coupon, discount_minor=-1,
              currency_code="USD", **user), "REJECTED", "redemption.discount"),
        (dict(event_id="e-unknown-currency", kind="redemption", coupon_id=coupon, discount_minor=100,
              currency_code="EUR", **user), "REJECTED", "redemption.discount"),
        (dict(event_id="e-never-offered", kind="redemption", coupon_id=coupon, discount_minor=100,
              currency_code="USD", user_id=EVENTS_USER + "-never-offered", event_time=at),
         "REJECTED", "redemption.coupon_id"),
    ]
    mixed_events = [{k: v for k, v in e.items() if v is not None} for e, _, _ in mixed]

    def statuses(want: list[tuple[str, str]]) -> Callable[[dict], bool]:
        def check(line: dict) -> bool:
            got = line.get("results", [])
            return line["ok"] and len(got) == len(want) and all(
                r["status"] == "EVENT_STATUS_" + status and r["detail"].startswith(field)
                and (r["detail"] == "") == (field == "") for r, (status, field) in zip(got, want))
        return check

    return [
        case(statuses([("ACCEPTED", "")] * len(every_kind)), "events-every-kind-accepted", events=every_kind),
        case(statuses([("DUPLICATE", "")] * len(every_kind)), "events-resent-batch-duplicate", events=every_kind),
        case(ok(lambda l: not l["ranked"] and reasons(l) == {coupon: "PER_USER_LIMIT_REACHED"}),
             "events-recorded-redemption-reaches-the-limit", user_id=EVENTS_USER, candidate_coupon_ids=[coupon],
             placement="home", cart_total_minor=10_000_000, currency_code="USD", request_time=rfc3339(T)),
        case(statuses([(status, field) for _, status, field in mixed]), "events-each-answered-the-rest-accepted",
             events=mixed_events),
        case(invalid("events"), "events-invalid-empty-batch", events=[]),
        case(invalid("events"), "events-invalid-too-many",
             events=[dict(view, event_id=f"e-many-{i:04d}") for i in range(1_001)]),
        case(lambda l: l.get("error_code") == "CLIENT_ERROR", "events-client-refuses-unknown-kind",
             events=[dict(user, event_id="e-purchase", kind="purchase")]),
    ]


class _Aborted(Exception):
    def __init__(self, code, details):
        super().__init__(details)
        self.code, self.details = code, details


class InProcess:
    """The part of grpc.ServicerContext the servicer uses, to call it without gRPC."""

    def __init__(self, remaining: float | None):
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining

    def invocation_metadata(self):  # an anonymous caller, as the clients' calls are
        return ()

    def auth_context(self):
        return {}

    def abort(self, code, details):
        raise _Aborted(code, details)


def expected(servicer, index: int, case: Case) -> dict[str, Any]:
    """The line a client must print for this scenario, from the servicer in process."""
    s = case.scenario
    head = {"index": index, "name": s["name"]}
    try:
        request = (scenario.to_events_request(s, EXPECTED_PREFIX) if "events" in s else scenario.to_request(s))
    except ValueError:
        return {**head, "ok": False, "error_code": "CLIENT_ERROR"}
    try:
        if "events" in s:
            answer = servicer.RecordEvents(request, InProcess(None))
            return {**head, "ok": True, "results": [
                {"event_id": r.event_id.removeprefix(EXPECTED_PREFIX), "status": pb.EventStatus.Name(r.status),
                 "detail": r.detail} for r in answer.results]}
        resp = servicer.RankCoupons(request, InProcess(0.0 if case.deadline_passed else None))
    except _Aborted as exc:
        line = {**head, "ok": False, "error_code": exc.code.name}
        if exc.code.name == "INVALID_ARGUMENT":
            line["error_field"] = exc.details.partition(":")[0]
        return line
    ranked = []
    for c in resp.ranked_coupons:
        entry = {"coupon_id": c.coupon_id, "rank": c.rank, "score": scenario.number(c.score)}
        if s.get("explain"):
            entry["reasons"] = [{"feature": r.feature, "value": scenario.number(r.value),
                                 "contribution": scenario.number(r.contribution)} for r in c.reasons]
        ranked.append(entry)
    return {**head, "ok": True, "ranked": ranked,
            "ineligible": [{"coupon_id": c.coupon_id, "reason": pb.IneligibilityReason.Name(c.reason)}
                           for c in resp.ineligible_coupons],
            "model_version": resp.model_version, "cold_start": resp.cold_start, "degraded": resp.degraded,
            "degraded_reason": pb.DegradedReason.Name(resp.degraded_reason), "note": resp.note}


def write_json(path: Path, value) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)  # readers never see half a file


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, required=True, help="workspace, scenarios, expectations, results")
    ap.add_argument("--scenarios-only", action="store_true",
                    help="write scenarios.json and expected.json, then stop without serving (tests compare the "
                         "picks made under another CPU's sort kernel)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="contract_server: %(levelname)s %(name)s: %(message)s")
    out = args.dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "server.json").unlink(missing_ok=True)
    repo, models = build(out / "work")

    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig

    # no catalogue reloads while the clients run; a store read never times out under a generous
    # deadline; a new event log, so that a reused --dir answers the events scenarios as the first time
    events_db = out / "events.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{events_db}{suffix}").unlink(missing_ok=True)
    config = ServerConfig(store_timeout=10.0, catalog_refresh_seconds=0, events_db=str(events_db))
    running = serve(repo, models, port=0, host="127.0.0.1", config=config, clock=unix_seconds(fixed(NOW)))
    try:
        all_cases = cases(repo, config.max_candidates)
        lines = [expected(running.servicer, i, c) for i, c in enumerate(all_cases)]
        wrong = [c.scenario["name"] for c, line in zip(all_cases, lines) if not c.check(scenario.normalize(line))]
        if wrong:
            sys.exit(f"contract_server: scenarios no longer mean what their names say (data or server changed?): "
                     f"{', '.join(wrong)}; expectations: {json.dumps(lines)[:4000]}")
        write_json(out / "scenarios.json", [c.scenario for c in all_cases])
        write_json(out / "expected.json", lines)
        if args.scenarios_only:
            running.stop(0).wait(5)
            return 0
        addr = f"127.0.0.1:{running.port}"
        write_json(out / "server.json", {"addr": addr, "pid": os.getpid()})
    except BaseException:
        running.stop(0)
        raise
    print(f"contract_server: serving on {addr}; {len(lines)} scenarios in {out}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    running.stop(1.0).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
