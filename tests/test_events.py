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
from server_fixtures import limit_one_coupon

pytest_plugins = ["server_fixtures"]  # built, callers_file

ITEM, OTHER_ITEM = "i000001", "i000002"  # in the tiny data's items (test_items_exist checks)


# ------------------------------------------------------------------ the log
def _red(event_id: str, user="u1", coupon="c1", ts=10 * DAY + 5, discount=2.5) -> EventRecord:
    return EventRecord(event_id, user, "redemption", float(ts), coupon_id=coupon, discount=discount)


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
def test_items_exist(built):
    items = set(pd.read_parquet(built.repo / "data" / "item_catalog.parquet").item_id)
    assert {ITEM, OTHER_ITEM} <= items


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


def test_a_recorded_redemption_reaches_the_next_ranking(live, built, catalog):
    from pinned import NOW

    _, stub, _ = live
    now = pd.Timestamp(NOW)
    coupon, user = limit_one_coupon(catalog, now), "u-events-new-shopper"
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
    (lambda now, c: _event("x0" + "e" * 127, "u1", now, claim=pb.ClaimEvent(coupon_id=c)), "event_id"),
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
    (lambda now, c: _event("x10", "u1", now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_ORDER, item_id=ITEM,
                                                                         order_id="o1", amount=pb.Money(
                                                                             currency_code="USD", amount_minor=-1))),
     "behaviour.amount.amount_minor"),
    (lambda now, c: _event("x11", "u1", now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_ORDER, item_id=ITEM)),
     "behaviour.order_id"),
    (lambda now, c: _event("x12", "u1", now, behaviour=pb.BehaviourEvent(item_id=ITEM)), "behaviour.type"),
    (lambda now, c: _event("x14", "u1", now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW,
                                                                         item_id="i-not-sold-here")),
     "behaviour.item_id"),
    (lambda now, c: _event("x13", "u1", now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW, item_id=ITEM,
                                                                         order_id="o" * 129)), None),
])
def test_a_bad_event_is_rejected_naming_the_field_and_the_rest_is_recorded(live, catalog, make, field):
    from pinned import NOW

    _, stub, _ = live
    now = pd.Timestamp(NOW)
    coupon = limit_one_coupon(catalog, now)
    bad = make(now, coupon)
    good = _event(f"ok-after-{bad.event_id[:8] or 'no-id'}", "u-events-ok", now, behaviour=pb.BehaviourEvent(
        type=pb.BEHAVIOUR_TYPE_VIEW, item_id=ITEM))
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
                type=pb.BEHAVIOUR_TYPE_VIEW, item_id=ITEM))
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
    coupon, user = limit_one_coupon(catalog, now), "u-events-store-down"
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
        # a new shopper the users table does not list: first seen the next day
        EventRecord("new-view", "u-new-shopper", "view", t + 86_400 + 120, item_id="i3"),
        EventRecord("new-imp", "u-new-shopper", "impression", t + 86_400 + 60, coupon_id="c1", placement="home",
                    position=1, request_id="live-req-2"),
        EventRecord(str(already.event_id), str(already.user_id), str(already.event_type),
                    already.event_ts.timestamp(), coupon_id=str(already.coupon_id),
                    placement=already.placement, position=None if pd.isna(already.position) else int(already.position),
                    request_id=already.request_id),
    ])
    for _ in range(2):
        assert main(["export-events", "--repo", str(repo), "--raw", str(raw)]) == 0
    days = sorted({f"{already.event_ts:%Y-%m-%d}.parquet", "2026-06-21.parquet", "2026-06-22.parquet"})
    assert sorted(p.name for p in (raw / "live" / "coupon_events").iterdir()) == days  # no temporary left
    assert sorted(p.name for p in (raw / "live" / "users").iterdir()) == ["2026-06-22.parquet"]

    data = clean_raw(raw)
    ce = data.coupon_events
    assert {"live-imp", "live-red", "new-imp"} <= set(ce.event_id.astype(str))
    assert (ce.event_id.astype(str) == str(already.event_id)).sum() == 1  # the batch's copy kept, once
    assert {"live-view", "new-view"} <= set(data.behaviour_events.event_id.astype(str))
    new = data.users[data.users.user_id.astype(str) == "u-new-shopper"]
    assert new.country.tolist() == ["unknown"]  # filled and counted by cleaning
    assert new.signup_ts.tolist() == [pd.Timestamp(t + 86_400 + 60, unit="s", tz="UTC")]  # first seen
    assert (data.users.user_id.astype(str) == "u2").sum() == 1  # listed already: not exported again
    labels = label_impressions(raw)
    row = labels[labels.impression_id.astype(str) == "live-imp"]
    assert row.label.tolist() == [2]  # redeemed within the window
    assert (labels.impression_id.astype(str) == str(already.event_id)).sum() <= 1

    # once the users table lists the new shopper, an export leaves no stale row of theirs
    users = pd.read_parquet(raw / "users.parquet")
    pd.concat([users, users.iloc[[0]].assign(user_id="u-new-shopper")]).to_parquet(raw / "users.parquet")
    assert main(["export-events", "--repo", str(repo), "--raw", str(raw)]) == 0
    assert list((raw / "live" / "users").iterdir()) == []
    assert (clean_raw(raw).users.user_id.astype(str) == "u-new-shopper").sum() == 1


def test_prune_events_exports_the_log_then_drops_the_old_days(tmp_path, handmade_raw, capsys):
    """prune-events: a day later than the built snapshots' end is refused (nothing
    pruned); otherwise the log is exported into RAW/live first, then the days before
    --before are deleted from it. Exports after it leave those days' files, and their new
    shoppers, as they were: the cleaned data holds every event and user once."""
    import json
    import shutil

    from couponrank.cli import main
    from couponrank.features.cleaning import clean_raw
    import handmade

    raw = tmp_path / "raw"
    shutil.copytree(handmade_raw, raw)
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "build.json").write_text(json.dumps({"start": "2026-06-01T00:00:00+00:00",
                                                          "end": "2026-06-23T00:00:00+00:00"}))
    log = EventLog(repo / "data" / "events.db")
    t = handmade.at(20, 9).timestamp()  # 2026-06-21 (day 0 is 06-01)
    log.record([
        EventRecord("p-imp", "u2", "impression", t, coupon_id="c1", placement="home", position=1, request_id="p-req"),
        EventRecord("p-new", "u-pruned-shopper", "view", t + 86_400, item_id="i3"),  # first seen 06-22
        EventRecord("p-kept", "u-pruned-shopper", "view", t + 2 * 86_400, item_id="i3"),  # 06-23: after the end
    ])
    assert main(["prune-events", "--repo", str(tmp_path / "unbuilt"), "--raw", str(raw)]) == 2
    assert "build.json: cannot tell when the built snapshots end" in capsys.readouterr().err
    assert main(["prune-events", "--repo", str(repo), "--raw", str(raw), "--before", "2026-06-24"]) != 0
    assert "--before: 2026-06-24 is later than 2026-06-23" in capsys.readouterr().err
    assert len(log.events()) == 3 and not (raw / "live").exists()

    assert main(["prune-events", "--repo", str(repo), "--raw", str(raw), "--before", "2026-06-23"]) == 0
    assert "pruned the log before 2026-06-23: 2 events" in capsys.readouterr().out
    assert [e.event_id for e in log.events()] == ["p-kept"] and log.recount()
    assert sorted(p.name for p in (raw / "live" / "behaviour_events").iterdir()) == [
        "2026-06-22.parquet", "2026-06-23.parquet"]  # the whole log, exported before the cut
    assert sorted(p.name for p in (raw / "live" / "users").iterdir()) == ["2026-06-22.parquet"]
    assert main(["export-events", "--repo", str(repo), "--raw", str(raw)]) == 0  # the log's days from 06-23 on
    assert sorted(p.name for p in (raw / "live" / "behaviour_events").iterdir()) == [
        "2026-06-22.parquet", "2026-06-23.parquet"]
    assert sorted(p.name for p in (raw / "live" / "users").iterdir()) == ["2026-06-22.parquet"]  # not new again
    data = clean_raw(raw)
    assert (data.users.user_id.astype(str) == "u-pruned-shopper").sum() == 1
    assert {"p-new", "p-kept"} <= set(data.behaviour_events.event_id.astype(str))
    assert (data.coupon_events.event_id.astype(str) == "p-imp").sum() == 1


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
    coupon = limit_one_coupon(catalog, now)
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


# ------------------------------------------------------------------ fresh features (Feast push)
def test_the_batch_history_of_recent_activity_equals_the_shared_definition(built):
    """build-features' user_recent_activity (all users at once) equals recent.counts,
    which the server's pushes use, user by user."""
    from couponrank.features import recent
    from couponrank.features.cleaning import clean_raw

    built_rows = pd.read_parquet(built.repo / "data" / "user_recent_activity.parquet")
    be = clean_raw(built.raw).behaviour_events
    be = be.assign(user_id=be.user_id.astype(str), event_type=be.event_type.astype(str))
    assert len(built_rows) == len(be.drop_duplicates(["user_id", "event_ts"]))
    checked = 0
    for user in sorted(be.user_id.unique())[:40]:
        mine = be[be.user_id == user].sort_values("event_ts", kind="stable")
        rows = built_rows[built_rows.user_id == user].sort_values("event_timestamp", kind="stable")
        ts = (mine.event_ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        at = (rows.event_timestamp - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        expected = recent.counts(ts, mine.event_type.to_numpy(), at)
        for name in recent.FEATURES:
            np.testing.assert_array_equal(rows[name].to_numpy(), expected[name], err_msg=f"{user} {name}")
        checked += int((rows[list(recent.FEATURES)].to_numpy() > 1).sum())
        np.testing.assert_array_equal(rows[recent.AT].to_numpy(), at)  # each row says when it was
    assert checked > 0  # windows that really hold several events


def test_the_batch_history_of_recent_activity_by_category_equals_the_shared_definition(built):
    """build-features' user_category_recent_activity equals recent.counts over the
    user's events of the category's items, at each instant they did something in it."""
    from couponrank.features import recent
    from couponrank.features.cleaning import clean_raw

    built_rows = pd.read_parquet(built.repo / "data" / "user_category_recent_activity.parquet")
    data = clean_raw(built.raw)
    be = data.behaviour_events
    be = be.assign(user_id=be.user_id.astype(str), event_type=be.event_type.astype(str),
                   category=be.item_id.astype(str).map(dict(zip(data.items.item_id.astype(str),
                                                                data.items.category.astype(str)))))
    assert be.category.notna().all()  # every cleaned event's item is known
    assert len(built_rows) == len(be.drop_duplicates(["user_id", "category", "event_ts"]))
    checked = 0
    pairs = sorted(set(zip(be.user_id, be.category)))
    for user, cat in pairs[:: max(1, len(pairs) // 60)]:
        mine = be[(be.user_id == user) & (be.category == cat)].sort_values("event_ts", kind="stable")
        rows = built_rows[(built_rows.user_id == user) & (built_rows.category == cat)].sort_values(
            "event_timestamp", kind="stable")
        ts = (mine.event_ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        at = (rows.event_timestamp - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        assert len(at) == len(np.unique(ts))
        expected = recent.counts(ts, mine.event_type.to_numpy(), at, prefix="recent_category_")
        for name in recent.CATEGORY_FEATURES:
            np.testing.assert_array_equal(rows[name].to_numpy(), expected[name], err_msg=f"{user} {cat} {name}")
        np.testing.assert_array_equal(rows[recent.CATEGORY_AT].to_numpy(), at)
        checked += int((rows[list(recent.CATEGORY_FEATURES)].to_numpy() > 1).sum())
    assert checked > 0


def test_recent_activity_is_aged_to_the_request():
    """recent.context: a window closed before the request counts 0, an open one the
    row's count; no row: zero counts, unknown age."""
    from couponrank.features import recent

    t = 1_000_000.0
    values = {name: np.array([2.0, 2.0, 2.0, np.nan]) for name in (*recent.FEATURES, *recent.CATEGORY_FEATURES)}
    values[recent.AT] = values[recent.CATEGORY_AT] = np.array([t, t, t, np.nan])
    values["request_ts_unix"] = np.array([t + 1_800, t + 7_200, t + 90_000, t])  # 30 min, 2 h, 25 h after
    out = recent.context(values)
    assert list(out) == list(recent.OUTPUTS)
    assert out["ctx_recent_views_1h"].tolist() == [2.0, 0.0, 0.0, 0.0]
    assert out["ctx_recent_category_carts_24h"].tolist() == [2.0, 2.0, 0.0, 0.0]
    np.testing.assert_array_equal(out["ctx_hours_since_category_activity"], [0.5, 2.0, 25.0, np.nan])


def _item_categories(built) -> dict[str, str]:
    items = pd.read_parquet(built.repo / "data" / "item_catalog.parquet")
    return dict(zip(items.item_id, items.category))


def test_recorded_behaviour_is_pushed_into_the_online_store(built, fresh_ws, tmp_path):
    """RecordEvents of views, carts and an order line: the user's recent-activity counts
    at the latest event reach the online store through Feast's push API."""
    from couponrank.features import recent, repo
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    running = serve(fresh_ws, built.models, port=0, clock=UNIX_CLOCK, config=ServerConfig(
        events_db=str(tmp_path / "events.db"), catalog_refresh_seconds=0))
    try:
        assert running.ranker.fresh is not None
        now = pd.Timestamp(NOW)
        user = "u-events-fresh"
        kinds = [(pb.BEHAVIOUR_TYPE_VIEW, 150), (pb.BEHAVIOUR_TYPE_VIEW, 50), (pb.BEHAVIOUR_TYPE_VIEW, 5),
                 (pb.BEHAVIOUR_TYPE_ADD_TO_CART, 4), (pb.BEHAVIOUR_TYPE_ORDER, 1)]  # minutes before now
        events = [_event(f"fresh-{i}", user, now - pd.Timedelta(minutes=m), behaviour=pb.BehaviourEvent(
            type=t, item_id=ITEM, order_id="o-fresh" if t == pb.BEHAVIOUR_TYPE_ORDER else "",
            amount=pb.Money(currency_code="USD", amount_minor=1_000) if t == pb.BEHAVIOUR_TYPE_ORDER else None))
            for i, (t, m) in enumerate(kinds)]
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            assert _record(stub, *events) == [("ACCEPTED", "")] * len(events)
            running.ranker.fresh.flush()
            assert running.ranker.fresh.failed == 0
            store = repo.store(fresh_ws)
            got = store.get_online_features(features=[f"{recent.VIEW}:{f}" for f in recent.FEATURES],
                                            entity_rows=[{"user_id": user}]).to_dict()
            assert {f: got[f][0] for f in recent.FEATURES} == {
                "recent_views_1h": 2.0, "recent_carts_1h": 1.0, "recent_orders_1h": 1.0,
                "recent_views_24h": 3.0, "recent_carts_24h": 1.0, "recent_orders_24h": 1.0}
            latest = (now - pd.Timedelta(minutes=1)).timestamp()
            assert store.get_online_features(features=[f"{recent.VIEW}:{recent.AT}"], entity_rows=[
                {"user_id": user}]).to_dict()[recent.AT] == [latest]
            # and per category of the items: ITEM's category holds them all, OTHER_ITEM's none yet
            categories = _item_categories(built)
            assert categories[ITEM] != categories[OTHER_ITEM]
            by_category = [f"{recent.CATEGORY_VIEW}:{f}" for f in recent.ALL_CATEGORY_FEATURES]
            got = store.get_online_features(features=by_category, entity_rows=[
                {"user_id": user, "category": categories[ITEM]},
                {"user_id": user, "category": categories[OTHER_ITEM]}]).to_dict()
            assert got["recent_category_views_24h"] == [3.0, None] and got["recent_category_carts_1h"] == [1.0, None]
            assert got[recent.CATEGORY_AT] == [latest, None]
            # a duplicate resend pushes nothing new, and a later view moves the counts on
            assert _record(stub, events[0]) == [("DUPLICATE", "")]
            later = _event("fresh-later", user, now, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW,
                                                                                 item_id=OTHER_ITEM))
            assert _record(stub, later) == [("ACCEPTED", "")]
            running.ranker.fresh.flush()
            got = store.get_online_features(features=[f"{recent.VIEW}:recent_views_1h"],
                                            entity_rows=[{"user_id": user}]).to_dict()
            assert got["recent_views_1h"] == [3.0]
            got = store.get_online_features(features=by_category, entity_rows=[
                {"user_id": user, "category": categories[ITEM]},
                {"user_id": user, "category": categories[OTHER_ITEM]}]).to_dict()
            assert got["recent_category_views_1h"] == [2.0, 1.0]  # each category's row at its own latest event
            assert got[recent.CATEGORY_AT] == [latest, now.timestamp()]
    finally:
        running.stop(0).wait(5)


def test_pushed_counts_hold_the_batch_events_of_the_day_before_the_build_end(built, fresh_ws, tmp_path):
    """In the first day after a build, a pushed count holds the batch's events of its
    window before the snapshots' end (build-features' recent_behaviour_tail) and the
    recorded ones from it on: the counts build-features would write once both are in
    the batch data. A recorded event from before the end is not counted again."""
    from couponrank.features import recent, repo
    from couponrank.features.cleaning import clean_raw
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    end = repo.built_until(fresh_ws)
    now = pd.Timestamp(NOW)
    assert end < now < end + pd.Timedelta(days=1)
    # the tail file: the cleaned batch's behaviour events of the widest window before the end
    be = clean_raw(built.raw).behaviour_events
    window = be[(be.event_ts >= end - pd.Timedelta(days=1)) & (be.event_ts < end)
                & be.event_type.astype(str).isin(list(recent.TYPES))]
    tail = pd.read_parquet(fresh_ws / "data" / "recent_behaviour_tail.parquet")
    assert sorted(zip(tail.user_id, tail.event_ts, tail.event_type)) == sorted(
        zip(window.user_id.astype(str), window.event_ts, window.event_type.astype(str)))
    # the user with the most batch views in the last day before the end (ties by id)
    views = tail[tail.event_type == "view"].groupby("user_id").size()
    user = min(views.index[views == views.max()])
    mine = tail[tail.user_id == user]
    assert views.max() >= 2

    running = serve(fresh_ws, built.models, port=0, clock=UNIX_CLOCK, config=ServerConfig(
        events_db=str(tmp_path / "events.db"), catalog_refresh_seconds=0))
    try:
        recorded = [("tail-before-end", end - pd.Timedelta(minutes=30)),  # before the end: the batch's business
                    ("tail-after-end", now - pd.Timedelta(minutes=20))]
        events = [_event(eid, user, at, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW, item_id=ITEM))
                  for eid, at in recorded]
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            assert _record(stub, *events) == [("ACCEPTED", "")] * 2
        running.ranker.fresh.flush()
        assert running.ranker.fresh.failed == 0
        got = repo.store(fresh_ws).get_online_features(features=[f"{recent.VIEW}:{f}" for f in recent.FEATURES],
                                                       entity_rows=[{"user_id": user}]).to_dict()
        at = recorded[1][1]
        ts = np.r_[[t.timestamp() for t in mine.event_ts], at.timestamp()]
        kinds = np.r_[mine.event_type.to_numpy(dtype=object), np.array(["view"], dtype=object)]
        order = np.argsort(ts, kind="stable")
        want = recent.counts(ts[order], kinds[order], np.array([at.timestamp()]))
        assert {f: got[f][0] for f in recent.FEATURES} == {f: float(want[f][0]) for f in recent.FEATURES}
        assert got["recent_views_24h"][0] > 1  # the batch's views are in it
    finally:
        running.stop(0).wait(5)


def test_a_workspace_built_before_the_tail_file_pushes_from_the_log_alone(tmp_path, caplog):
    """No recent_behaviour_tail.parquet (built before it existed): a warning naming the
    file, and the pushed counts come from the log alone, before the end included."""
    from couponrank.server import push

    (tmp_path / "data").mkdir()
    with caplog.at_level("WARNING"):
        assert push.load_tail(tmp_path) is None
    assert push.TAIL_FILE in caplog.text
    log = EventLog(tmp_path / "events.db")
    log.record([EventRecord("a", "u1", "view", 1_000.0, item_id="i1"),
                EventRecord("b", "u1", "view", 2_000.0, item_id="i1")])
    fresh = push.FreshFeatures(None, log, interval=None)
    ts, _, items = fresh.events("u1", 0.0, 3_000.0)
    assert ts.tolist() == [1_000.0, 2_000.0] and items.tolist() == ["i1", "i1"]
    # with a tail ending at 1,500: the tail's events before it, the log's from it on
    fresh.tail = push.BatchTail(1_500.0, pd.DataFrame({"user_id": ["u1", "u2"], "event_type": ["add_to_cart", "view"],
                                                       "event_ts": pd.to_datetime([1_200, 1_300], unit="s", utc=True)}))
    ts, kinds, items = fresh.events("u1", 0.0, 3_000.0)
    assert (ts.tolist(), kinds.tolist(), items.tolist()) == ([1_200.0, 2_000.0], ["add_to_cart", "view"], [None, "i1"])
    assert fresh.events("u1", 1_250.0, 3_000.0)[0].tolist() == [2_000.0]  # the window's start applies to both


def test_a_push_rewrites_only_the_categories_of_the_new_events(tmp_path):
    """A category's row depends on that category's events alone, so a push after new
    events writes the rows of their items' categories (all of the user's last day when
    the items are not known); the user's row always. Counts as recent.counts gives them."""
    from couponrank.features import recent
    from couponrank.server import push

    log = EventLog(tmp_path / "events.db")
    t = 20 * DAY
    log.record([EventRecord("a1", "u1", "view", t - 7_200, item_id="i1"),
                EventRecord("a2", "u1", "add_to_cart", t - 600, item_id="i1"),
                EventRecord("b1", "u1", "view", t - 60, item_id="i2"),
                EventRecord("b2", "u1", "view", t, item_id="i2"),
                EventRecord("c1", "u2", "view", t - 30, item_id="i1")])
    fresh = push.FreshFeatures(None, log, interval=None, categories={"i1": "A", "i2": "B"})
    fresh._fields = (list(recent.ALL_FEATURES), list(recent.ALL_CATEGORY_FEATURES))  # as the registry has them
    users, _, items = push.latest(log.events(since=t - 60))
    assert users == {"u1": t, "u2": t - 30} and items == {"u1": {"i2"}, "u2": {"i1"}}
    user_rows, category_rows = fresh.frames(users, items)
    assert user_rows.set_index("user_id").loc["u1", ["recent_views_1h", "recent_carts_1h", "recent_views_24h"]
                                               ].tolist() == [2.0, 1.0, 3.0]
    got = {(r.user_id, r.category): (r.recent_category_views_1h, r.recent_category_carts_1h, r.recent_category_at_unix)
           for r in category_rows.itertuples()}
    assert got == {("u1", "B"): (2.0, 0.0, t), ("u2", "A"): (1.0, 0.0, t - 30)}  # not u1's A: no new event there
    _, every = fresh.frames(users)  # items unknown: every category of the user's last day
    assert sorted(zip(every.user_id, every.category)) == [("u1", "A"), ("u1", "B"), ("u2", "A")]
    a = every[(every.user_id == "u1") & (every.category == "A")].iloc[0]
    assert (a.recent_category_views_1h, a.recent_category_carts_1h, a.recent_category_at_unix) == (0.0, 1.0, t - 600)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_kill_9_of_the_server_mid_stream_loses_nothing_a_client_resends(built, tmp_path, backend, request):
    """The whole server killed with SIGKILL while a client streams batches: after a
    restart, the client resends the batch whose answer it did not get; every event is
    in the log once and the counters equal a recount. On SQLite and on Redis."""
    import socket

    from couponrank.client import CouponRankClient, CouponRankError, behaviour, impression

    if backend == "redis":
        import redis

        from couponrank.events.redis_log import RedisEventLog

        db = f"redis://{request.getfixturevalue('redis_server')}/7"
        redis.Redis.from_url(db).flushdb()
    else:
        db = tmp_path / "events.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def start() -> subprocess.Popen:
        out = open(tmp_path / "server.log", "a")
        proc = subprocess.Popen([sys.executable, "-m", "couponrank.cli", "serve", "--repo", str(built.repo),
                                 "--model", str(built.models), "--port", str(port), "--events-db", str(db)],
                                stdout=out, stderr=subprocess.STDOUT)
        with CouponRankClient(f"127.0.0.1:{port}", timeout=60.0) as c:
            assert c.wait_for_ready(120), (tmp_path / "server.log").read_text()
        return proc

    from couponrank.clock import utc_now

    now = utc_now()  # the server runs on the wall clock: events are stamped now
    catalog_coupon = pd.read_parquet(built.repo / "data" / "coupon_attributes.parquet").coupon_id.astype(str).min()
    batches = [[impression(f"k{b}-imp-{i}", f"u-kill-{i % 5}", now, catalog_coupon, position=1, placement="home")
                if i % 2 else behaviour(f"k{b}-view-{i}", f"u-kill-{i % 5}", now, "view", ITEM)
                for i in range(50)] for b in range(400)]
    server = start()
    acked = 0
    try:
        with CouponRankClient(f"127.0.0.1:{port}", timeout=10.0) as client:
            for batch in batches:
                if acked == 20:
                    os.kill(server.pid, signal.SIGKILL)  # mid-stream: the next call has no server
                    server.wait()
                try:
                    client.record_events(batch)
                    acked += 1
                except CouponRankError:
                    break
        server = start()
        with CouponRankClient(f"127.0.0.1:{port}", timeout=30.0) as client:
            for batch in batches[acked:acked + 3]:  # the unanswered batch, resent as is, and two more
                assert {r.status for r in client.record_events(batch)} <= {"ACCEPTED", "DUPLICATE"}
            assert {r.status for r in client.record_events(batches[0])} == {"DUPLICATE"}
    finally:
        server.kill()
        server.wait()
    log = RedisEventLog(db) if backend == "redis" else EventLog(db)
    ids = [e.event_id for e in log.events()]
    assert len(ids) == len(set(ids)) == 50 * (acked + 3)
    assert log.recount()


def test_couponrank_ingest_pushes_fresh_features_from_its_own_process(built, fresh_ws, tmp_path):
    """Servers started with --no-push leave the pushes to `couponrank ingest`, which
    follows the event log: nothing reaches the online store until it runs."""
    from couponrank.cli import main
    from couponrank.features import recent, repo
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    db = tmp_path / "events.db"
    running = serve(fresh_ws, built.models, port=0, clock=UNIX_CLOCK, config=ServerConfig(
        events_db=str(db), push_features=False, catalog_refresh_seconds=0))
    user = "u-events-ingest"
    try:
        assert running.ranker.fresh is None
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            views = [_event(f"ingest-{i}", user, pd.Timestamp(NOW) - pd.Timedelta(minutes=10 * i), behaviour=pb.BehaviourEvent(
                type=pb.BEHAVIOUR_TYPE_VIEW, item_id=ITEM)) for i in range(3)]
            coupon = sorted(running.ranker.catalog.current.index)[-1]
            shown = _event("ingest-imp", user, pd.Timestamp(NOW), impression=pb.ImpressionEvent(
                coupon_id=coupon, position=1, placement=pb.PLACEMENT_HOME))
            assert _record(stub, *views, shown) == [("ACCEPTED", "")] * 4
    finally:
        running.stop(0).wait(5)
    store = repo.store(fresh_ws)

    def shown_today():
        got = store.get_online_features(features=["coupon_today_activity:coupon_impressions_today",
                                                  "coupon_today_activity:coupon_today_at_unix"],
                                        entity_rows=[{"coupon_id": coupon}]).to_dict()
        return got["coupon_today_at_unix"][0], got["coupon_impressions_today"][0]

    def views_1h():
        return store.get_online_features(features=[f"{recent.VIEW}:recent_views_1h"],
                                         entity_rows=[{"user_id": user}]).to_dict()["recent_views_1h"][0]

    now = pd.Timestamp(NOW).timestamp()
    assert views_1h() is None and shown_today()[0] != now  # the batch's row (of an earlier day), or none
    assert main(["ingest", "--repo", str(fresh_ws), "--events-db", str(db), "--once"]) == 0
    assert views_1h() == 3.0 and shown_today() == (now, 1.0)  # the coupon's count today, from the log
