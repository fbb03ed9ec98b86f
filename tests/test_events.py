"""Live events (issue 11): the durable event log and its counters, RecordEvents on the
real server (accepted, duplicate, rejected with the field), and the loop it closes: a
recorded redemption makes the next RankCoupons see the per-user limit and the budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import numpy as np
import pandas as pd
import pytest

from couponrank.events.log import DAY, EventLog, EventRecord
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

pytest_plugins = ["server_fixtures"]  # built, callers_file


# ------------------------------------------------------------------ the log
def _red(event_id: str, user="u1", coupon="c1", ts=10 * DAY + 5, discount=2.5) -> EventRecord:
    return EventRecord(event_id, user, "redemption", float(ts), coupon_id=coupon, discount=discount)


def test_each_event_is_counted_once_and_by_day(tmp_path):
    log = EventLog(tmp_path / "events.db")
    imp = EventRecord("i1", "u1", "impression", 10 * DAY + 1.0, coupon_id="c1", placement="home", position=1)
    assert log.record([imp, _red("r1"), _red("r1"), _red("r2", ts=12 * DAY)]) == [True, True, False, True]
    assert log.record([_red("r2", ts=12 * DAY)]) == [False]  # a resent batch moves nothing
    used, discount = log.live("u1", ["c1", "c2"], since=10 * DAY + 3600)  # counted from day 10 on
    assert used.tolist() == [2.0, 0.0] and discount.tolist() == [5.0, 0.0]
    used, discount = log.live("u1", ["c1"], since=11 * DAY)  # the snapshot holds day 10
    assert used.tolist() == [1.0] and discount.tolist() == [2.5]
    assert log.live("u2", ["c1"], since=0)[0].tolist() == [0.0]
    assert log.live("u2", ["c1"], since=0)[1].tolist() == [5.0]  # the budget is everyone's
    assert log.offered("u1", "c1") and not log.offered("u2", "c1")
    assert [e.event_id for e in log.events()] == ["i1", "r1", "r2"]
    assert log.recount()
    log.close()
    reopened = EventLog(tmp_path / "events.db")  # durable: a new process sees the same
    assert reopened.live("u1", ["c1"], since=0)[0].tolist() == [2.0] and reopened.recount()


def test_recount_notices_counters_that_disagree_with_the_events(tmp_path):
    import sqlite3

    log = EventLog(tmp_path / "events.db")
    log.record([_red("r1")])
    with sqlite3.connect(tmp_path / "events.db") as conn:
        conn.execute("UPDATE live_user_coupon SET redemptions = redemptions + 1")
    assert not log.recount()


WRITER = r"""
import sys
from couponrank.events.log import EventLog, EventRecord
log = EventLog(sys.argv[1])
for batch in range(100000):
    ids = [f"e{batch}-{i}" for i in range(20)]
    log.record([EventRecord(e, f"u{i % 7}", "redemption", 864000.0 + i, coupon_id=f"c{i % 3}", discount=1.0)
                for i, e in enumerate(ids)])
    print(batch, flush=True)  # acknowledged: the batch is on disk
"""


def test_kill_9_loses_no_acknowledged_event_and_counts_none_twice(tmp_path):
    """A writer killed mid-stream: every batch it acknowledged is there, no batch is
    half there, and the counters equal a recount of the events."""
    path = tmp_path / "events.db"
    EventLog(path).close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 30:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log = EventLog(path)
    ids = {e.event_id for e in log.events()}
    batches = {}
    for e in ids:
        b, _ = e[1:].split("-")
        batches[int(b)] = batches.get(int(b), 0) + 1
    assert all(f"e{b}-{i}" in ids for b in range(acked + 1) for i in range(20))
    assert set(batches.values()) == {20}  # whole batches only
    assert log.recount()
    # the client resends its unacknowledged batch: nothing is counted twice
    resend = [EventRecord(f"e{acked + 1}-{i}", f"u{i % 7}", "redemption", 864000.0 + i, coupon_id=f"c{i % 3}",
                          discount=1.0) for i in range(20)]
    log.record(resend)
    assert log.record(resend) == [False] * 20 and log.recount()


# ------------------------------------------------------------------ the server
@pytest.fixture(scope="module")
def live(built, tmp_path_factory, callers_file):
    """A server of its own with its own event log (the session's workspace stays as it is)."""
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    db = tmp_path_factory.mktemp("events") / "events.db"
    running = serve(built.repo, built.models, port=0, config=ServerConfig(events_db=str(db), store_cooldown=0.0,
                                                                          catalog_refresh_seconds=0), clock=UNIX_CLOCK)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield running, pb_grpc.CouponRankingServiceStub(channel), db
    channel.close()
    running.stop(0).wait(5)


def _event(event_id: str, user: str, when: pd.Timestamp, **kind) -> pb.Event:
    e = pb.Event(event_id=event_id, user_id=user, **kind)
    e.event_time.FromDatetime(when.to_pydatetime())
    return e


def _record(stub, *events) -> list[tuple[str, str]]:
    out = stub.RecordEvents(pb.RecordEventsRequest(events=list(events)), timeout=10)
    return [(pb.EventStatus.Name(r.status).removeprefix("EVENT_STATUS_"), r.detail) for r in out.results]


def _rank(stub, user: str, coupons: list[str], when: pd.Timestamp) -> dict[str, str]:
    req = pb.RankCouponsRequest(user_id=user, candidate_coupon_ids=coupons, top_k=len(coupons), context=pb.RequestContext(
        placement=pb.PLACEMENT_HOME, cart_total=pb.Money(currency_code="USD", amount_minor=10_000_000)))
    req.context.request_time.FromDatetime(when.to_pydatetime())
    res = stub.RankCoupons(req, timeout=10)
    out = {c.coupon_id: "RANKED" for c in res.ranked_coupons}
    out.update({i.coupon_id: pb.IneligibilityReason.Name(i.reason).removeprefix("INELIGIBILITY_REASON_")
                for i in res.ineligible_coupons})
    return out


def _limit_one_coupon(catalog, when: pd.Timestamp) -> str:
    c = catalog.columns
    rows = catalog.active(when.timestamp())
    rows = rows[(c["coupon_per_user_limit"][rows] == 1) & (c["coupon_audience"][rows] == "all")
                & ~(np.nan_to_num(c["coupon_budget_used_frac"][rows]) >= 1)]
    return str(min(catalog.ids[rows]))


def test_a_recorded_redemption_reaches_the_next_ranking(live, built, catalog):
    from pinned import NOW

    _, stub, _ = live
    now = pd.Timestamp(NOW)
    coupon, user = _limit_one_coupon(catalog, now), "u-events-new-shopper"
    assert _rank(stub, user, [coupon], now) == {coupon: "RANKED"}
    shown = _event("ev-imp-1", user, now - pd.Timedelta(minutes=30),
                   impression=pb.ImpressionEvent(request_id="r-1", coupon_id=coupon, position=1,
                                                 placement=pb.PLACEMENT_HOME))
    used = _event("ev-red-1", user, now - pd.Timedelta(minutes=10),
                  redemption=pb.RedemptionEvent(coupon_id=coupon, order_id="o-1",
                                                discount=pb.Money(currency_code="USD", amount_minor=500)))
    assert _record(stub, shown, used) == [("ACCEPTED", ""), ("ACCEPTED", "")]
    assert _rank(stub, user, [coupon], now) == {coupon: "PER_USER_LIMIT_REACHED"}
    # the answer was lost; the client sends the batch again: nothing counted twice
    assert _record(stub, shown, used) == [("DUPLICATE", ""), ("DUPLICATE", "")]
    assert EventLog(live[2]).live(user, [coupon], since=0)[0].tolist() == [1.0]
    # another user is not affected
    assert _rank(stub, "u-events-someone-else", [coupon], now) == {coupon: "RANKED"}


def test_recorded_discounts_exhaust_a_budget_for_everyone(live, catalog):
    from pinned import NOW

    _, stub, _ = live
    now = pd.Timestamp(NOW)
    c = catalog.columns
    rows = catalog.active(now.timestamp())
    rows = rows[np.isfinite(c["coupon_budget"][rows]) & (c["coupon_audience"][rows] == "all")
                & (c["coupon_per_user_limit"][rows] > 1)]
    coupon = str(min(catalog.ids[rows]))
    budget = c["coupon_budget"][catalog.index[coupon]]
    user = "u-events-big-spender"
    events = [_event("ev-b-imp", user, now - pd.Timedelta(hours=1), impression=pb.ImpressionEvent(
        coupon_id=coupon, position=2, placement=pb.PLACEMENT_CART)),
        _event("ev-b-red", user, now - pd.Timedelta(minutes=50), redemption=pb.RedemptionEvent(
            coupon_id=coupon, discount=pb.Money(currency_code="USD", amount_minor=int(budget * 100) + 100)))]
    assert _record(stub, *events) == [("ACCEPTED", "")] * 2
    assert _rank(stub, "u-events-anyone", [coupon], now) == {coupon: "BUDGET_EXHAUSTED"}


@pytest.mark.parametrize("make, field", [
    (lambda now, c: _event("", "u1", now, claim=pb.ClaimEvent(coupon_id=c)), "event_id"),
    (lambda now, c: _event("x1", "", now, claim=pb.ClaimEvent(coupon_id=c)), "user_id"),
    (lambda now, c: pb.Event(event_id="x2", user_id="u1", claim=pb.ClaimEvent(coupon_id=c)), "event_time"),
    (lambda now, c: _event("x3", "u1", now + pd.Timedelta(hours=2), claim=pb.ClaimEvent(coupon_id=c)), "event_time"),
    (lambda now, c: _event("x4", "u1", now - pd.Timedelta(days=31), claim=pb.ClaimEvent(coupon_id=c)), "event_time"),
    (lambda now, c: _event("x5", "u1", now), "kind"),
    (lambda now, c: _event("x6", "u1", now, claim=pb.ClaimEvent(coupon_id="c-no-such")), "claim.coupon_id"),
    (lambda now, c: _event("x7", "u1", now, impression=pb.ImpressionEvent(coupon_id=c, position=0,
                                                                          placement=pb.PLACEMENT_HOME)),
     "impression.position"),
    (lambda now, c: _event("x8", "u1", now, impression=pb.ImpressionEvent(coupon_id=c, position=1)),
     "impression.placement"),
    (lambda now, c: _event("x9", "u-never-shown", now, redemption=pb.RedemptionEvent(coupon_id=c)),
     "redemption.coupon_id"),
    (lambda now, c: _event("x10", "u1", now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_ORDER, item_id="i1",
                                                                         order_id="o1", amount=pb.Money(
                                                                             currency_code="USD", amount_minor=-1))),
     "behaviour.amount.amount_minor"),
    (lambda now, c: _event("x11", "u1", now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_ORDER, item_id="i1")),
     "behaviour.order_id"),
    (lambda now, c: _event("x12", "u1", now, behaviour=pb.BehaviourEvent(item_id="i1")), "behaviour.type"),
    (lambda now, c: _event("x13", "u1", now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW, item_id="i1",
                                                                         order_id="o" * 129)), None),
])
def test_a_bad_event_is_rejected_naming_the_field_and_the_rest_is_recorded(live, catalog, make, field):
    from pinned import NOW

    _, stub, _ = live
    now = pd.Timestamp(NOW)
    coupon = _limit_one_coupon(catalog, now)
    bad = make(now, coupon)
    good = _event(f"ok-after-{bad.event_id or 'no-id'}", "u-events-ok", now, behaviour=pb.BehaviourEvent(
        type=pb.BEHAVIOUR_TYPE_VIEW, item_id="i1"))
    (status, detail), after = _record(stub, bad, good)
    assert after == ("ACCEPTED", "")
    if field is None:  # not an order: its order_id is not read
        assert status == "ACCEPTED"
        return
    assert status == "REJECTED" and detail.startswith(field + ":"), detail


def test_a_batch_over_the_limit_or_empty_is_invalid_argument(live):
    _, stub, _ = live
    for n in (0, 1001):
        events = [pb.Event(event_id=f"n{i}") for i in range(n)]
        with pytest.raises(grpc.RpcError) as err:
            stub.RecordEvents(pb.RecordEventsRequest(events=events), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("events:")


def test_only_callers_allowed_may_record_when_the_server_names_callers(built, tmp_path):
    from couponrank.server.callers import token_hash
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    callers = tmp_path / "callers.toml"
    callers.write_text(f'[callers.checkout]\ntoken_sha256 = "{token_hash("t-checkout")}"\n'
                       f'[callers.events]\ntoken_sha256 = "{token_hash("t-events")}"\nrecord_events = true\n')
    running = serve(built.repo, built.models, port=0, config=ServerConfig(
        events_db=str(tmp_path / "events.db"), callers_file=str(callers), catalog_refresh_seconds=0),
        clock=UNIX_CLOCK)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            event = _event("p1", "u1", pd.Timestamp(NOW), behaviour=pb.BehaviourEvent(
                type=pb.BEHAVIOUR_TYPE_VIEW, item_id="i1"))
            request = pb.RecordEventsRequest(events=[event])
            for metadata in ((), (("authorization", "Bearer t-checkout"),)):
                with pytest.raises(grpc.RpcError) as err:
                    stub.RecordEvents(request, metadata=metadata, timeout=10)
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            out = stub.RecordEvents(request, metadata=(("authorization", "Bearer t-events"),), timeout=10)
            assert [r.status for r in out.results] == [pb.EVENT_STATUS_ACCEPTED]
    finally:
        running.stop(0).wait(5)


def test_with_the_store_down_recorded_redemptions_still_count(live, catalog, monkeypatch):
    from pinned import NOW

    running, stub, _ = live
    now = pd.Timestamp(NOW)
    coupon, user = _limit_one_coupon(catalog, now), "u-events-store-down"
    assert _record(stub, _event("sd-imp", user, now - pd.Timedelta(minutes=5), impression=pb.ImpressionEvent(
        coupon_id=coupon, position=1, placement=pb.PLACEMENT_HOME)), _event(
        "sd-red", user, now - pd.Timedelta(minutes=4), redemption=pb.RedemptionEvent(coupon_id=coupon))) == [
        ("ACCEPTED", "")] * 2

    def broken(*args, **kwargs):
        raise ConnectionError("down")

    monkeypatch.setattr(running.ranker.online.reader, "read_many", broken)
    assert _rank(stub, user, [coupon], now) == {coupon: "PER_USER_LIMIT_REACHED"}


def test_events_recorded_before_the_snapshots_end_are_not_counted_again(live, built, catalog):
    """The snapshots hold every event before the build's end: a live event from before
    then is already in them (or will be after the next build), so the live part of a
    count starts at the build's end."""
    from couponrank.features.repo import built_until

    running, stub, db = live
    assert running.ranker.live_since == built_until(built.repo).timestamp()
    log = EventLog(db)
    before = running.ranker.live_since - 3600
    log.record([_red("old-red", user="u-events-old", coupon="c-old", ts=before)])
    assert log.live("u-events-old", ["c-old"], since=running.ranker.live_since)[0].tolist() == [0.0]
    assert log.live("u-events-old", ["c-old"], since=before)[0].tolist() == [1.0]


def test_the_server_can_run_without_an_event_log(built):
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    running = serve(built.repo, built.models, port=0, config=ServerConfig(events_db="", catalog_refresh_seconds=0),
                    clock=UNIX_CLOCK)
    try:
        assert running.ranker.events is None
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.CouponRankingServiceStub(channel).RecordEvents(
                    pb.RecordEventsRequest(events=[pb.Event(event_id="e")]), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        running.stop(0).wait(5)


# ------------------------------------------------------------------ back into the raw data
def test_exported_events_are_read_with_the_batch_data_once(tmp_path, handmade_raw):
    """export-events writes the log into RAW/live/<table>/<day>.parquet; cleaning and the
    labels read them with the batch files; an event in both counts once; a second
    export rewrites the same files."""
    import shutil

    from couponrank.cli import main
    from couponrank.features.cleaning import clean_raw
    from couponrank.training.dataset import label_impressions
    import handmade

    raw = tmp_path / "raw"
    shutil.copytree(handmade_raw, raw)
    repo = tmp_path / "repo"
    log = EventLog(repo / "data" / "events.db")
    t = handmade.at(20, 9).timestamp()
    batch = pd.read_parquet(raw / "coupon_events.parquet")
    already = batch.iloc[0]  # an event the batch data holds too
    log.record([
        EventRecord("live-imp", "u2", "impression", t, coupon_id="c1", placement="home", position=1,
                    request_id="live-req"),
        EventRecord("live-red", "u2", "redemption", t + 600, coupon_id="c1", impression_id="live-imp", discount=3.0),
        EventRecord("live-view", "u2", "view", t + 60, item_id="i3"),
        EventRecord(str(already.event_id), str(already.user_id), str(already.event_type),
                    already.event_ts.timestamp(), coupon_id=str(already.coupon_id),
                    placement=already.placement, position=None if pd.isna(already.position) else int(already.position),
                    request_id=already.request_id),
    ])
    for _ in range(2):
        assert main(["export-events", "--repo", str(repo), "--raw", str(raw)]) == 0
    days = sorted({f"{already.event_ts:%Y-%m-%d}.parquet", "2026-06-21.parquet"})
    assert sorted(p.name for p in (raw / "live" / "coupon_events").iterdir()) == days  # no temporary left

    data = clean_raw(raw)
    ce = data.coupon_events
    assert {"live-imp", "live-red"} <= set(ce.event_id.astype(str))
    assert (ce.event_id.astype(str) == str(already.event_id)).sum() == 1  # the batch's copy kept, once
    assert "live-view" in set(data.behaviour_events.event_id.astype(str))
    labels = label_impressions(raw)
    row = labels[labels.impression_id.astype(str) == "live-imp"]
    assert row.label.tolist() == [2]  # redeemed within the window
    assert (labels.impression_id.astype(str) == str(already.event_id)).sum() <= 1


def test_every_answer_is_in_the_served_ranking_log_and_exports_carry_its_cart(live, catalog, tmp_path,
                                                                            handmade_raw):
    """The served-ranking log holds each answer (user, time, placement, cart, model,
    ranked with scores, ineligible with reasons); an impression exported from the log
    takes its cart from the ranking that showed it."""
    import json
    import shutil

    from couponrank.events.log import export
    from pinned import NOW

    running, stub, db = live
    now = pd.Timestamp(NOW)
    coupon = _limit_one_coupon(catalog, now)
    req = pb.RankCouponsRequest(request_id="req-logged-1", user_id="u-events-logged", candidate_coupon_ids=[
        coupon, "c-no-such"], context=pb.RequestContext(placement=pb.PLACEMENT_CART, cart_categories=["cat01"],
                                                        cart_total=pb.Money(currency_code="USD", amount_minor=4_599)))
    req.context.request_time.FromDatetime(now.to_pydatetime())
    res = stub.RankCoupons(req, timeout=10)
    assert _record(stub, _event("logged-imp", "u-events-logged", now, impression=pb.ImpressionEvent(
        request_id="req-logged-1", coupon_id=coupon, position=1, placement=pb.PLACEMENT_CART))) == [("ACCEPTED", "")]
    running.ranker.rankings.flush()
    log = EventLog(db)
    [row] = log.rankings(["req-logged-1"])
    assert (row.user_id, row.ts, row.placement, row.cart_value, row.cart_categories) == (
        "u-events-logged", now.timestamp(), "cart", 45.99, "cat01")
    assert row.model_version == res.model_version and not row.degraded_reason
    assert json.loads(row.ranked) == [[c.coupon_id, pytest.approx(c.score)] for c in res.ranked_coupons]
    assert ["c-no-such", "UNKNOWN_COUPON"] in json.loads(row.ineligible)

    raw = tmp_path / "raw"
    shutil.copytree(handmade_raw, raw)
    export(log, raw)
    live_ce = pd.concat(pd.read_parquet(p) for p in (raw / "live" / "coupon_events").glob("*.parquet"))
    shown = live_ce[live_ce.event_id == "logged-imp"].iloc[0]
    assert (shown.cart_value, shown.cart_categories, shown.request_id) == (45.99, "cat01", "req-logged-1")
