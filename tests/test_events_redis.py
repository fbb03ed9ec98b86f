"""Live events on a redis-server (issue 11): the several-replica event log. The same
counting rules as the SQLite log, checked on both; atomic batches under kill -9; the
consumer group `couponrank ingest` reads, with entries of a dead consumer handed out
again; two servers sharing one log. A real redis-server on loopback (conftest)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import pandas as pd
import pytest

from couponrank.events.log import DAY, EventLog, EventRecord
from couponrank.events.redis_log import RedisEventLog
from couponrank.v1 import coupon_ranking_service_pb2 as pb
from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc
from server_fixtures import limit_one_coupon

pytest_plugins = ["server_fixtures"]  # built, catalog, fresh_ws

ITEM = "i000001"  # in the tiny data's items (test_events.test_items_exist)


def _prefix(request) -> str:
    """Keys of a test of their own on the session's redis-server."""
    return "{t-" + request.node.name + "}:"


@pytest.fixture(params=["sqlite", "redis"])
def any_log(request, tmp_path):
    """The same tests on both logs; ``reopen()`` is another process's view of the log."""
    if request.param == "sqlite":
        def reopen():
            return EventLog(tmp_path / "events.db")
    else:
        url = f"redis://{request.getfixturevalue('redis_server')}/0"

        def reopen():
            return RedisEventLog(url, prefix=_prefix(request))
    log = reopen()
    yield log, reopen
    log.close()


def _red(event_id: str, user="u1", coupon="c1", ts=10 * DAY + 5, discount=2.5) -> EventRecord:
    return EventRecord(event_id, user, "redemption", float(ts), coupon_id=coupon, discount=discount)


def test_both_logs_count_each_event_once_and_by_day(any_log):
    log, reopen = any_log
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
    shown, redeemed = log.coupon_day(["c1", "c2", "c1|x"], 10)  # the coupons' day counters (pushed features)
    assert shown.tolist() == [1.0, 0.0, 0.0] and redeemed.tolist() == [1.0, 0.0, 0.0]
    assert log.coupon_day(["c1"], 12)[1].tolist() == [1.0] and log.coupon_day([], 10)[0].tolist() == []
    assert log.events()[0] == imp  # every field kept
    assert log.recount()
    other = reopen()  # another process sees the same
    assert other.live("u1", ["c1"], since=0)[0].tolist() == [2.0] and other.recount()
    assert other.record([_red("r1")]) == [False]


def test_both_logs_prune_whole_days_and_stay_consistent(any_log):
    """prune(before): the events, rankings and counters of the UTC days before that of
    ``before`` go, the later ones stay, the counters still equal a recount; pruning
    again changes nothing; an id of a pruned event is no longer a duplicate (the server
    refuses events that old before the log sees them)."""
    from couponrank.events.log import RankingRecord

    log, reopen = any_log
    imp = EventRecord("i1", "u1", "impression", 10 * DAY + 1.0, coupon_id="c1", placement="home", position=1)
    log.record([imp, _red("r1"), _red("r2", ts=11 * DAY + 7), _red("r3", user="u2", ts=12 * DAY)])
    ranking = RankingRecord("q", "u1", 10 * DAY, "home", 0.0, "", "v", "", "[]", "[]")
    log.record_rankings([ranking, RankingRecord("q2", "u1", 11 * DAY, "home", 0.0, "", "v", "", "[]", "[]")])
    assert log.pruned_before() == 0.0
    deleted = log.prune(11 * DAY + 3_600)  # within day 11: days before it go
    assert deleted["events"] == 2 and deleted["rankings"] == 1
    assert [e.event_id for e in log.events()] == ["r2", "r3"] and log.recount()
    assert [r.request_id for r in log.rankings()] == ["q2"]
    assert log.coupon_day(["c1"], 10)[1].tolist() == [0.0] and log.coupon_day(["c1"], 11)[1].tolist() == [1.0]
    assert log.live("u1", ["c1"], since=0)[0].tolist() == [1.0]  # day 11's redemption only
    assert log.pruned_before() == 11 * DAY and reopen().pruned_before() == 11 * DAY
    assert log.prune(5 * DAY) == {k: 0 for k in deleted} and log.pruned_before() == 11 * DAY  # never back
    assert [e.event_id for e in log.events()] == ["r2", "r3"]
    assert log.record([_red("r2", ts=11 * DAY + 7)]) == [False]  # a kept event is still a duplicate


def test_both_logs_keep_each_users_recent_behaviour(any_log):
    log, _ = any_log
    t = 20 * DAY
    log.record([EventRecord("v1", "u1", "view", t - 7200, item_id="i1"),
                EventRecord("v2|#", "u1", "add_to_cart", t - 60, item_id="i|2#é"),  # separators in ids
                EventRecord("v3", "u2", "view", t - 30, item_id="i1"),
                EventRecord("v4", "u1", "order", t, item_id="i3", order_id="o1", amount=3.5)])
    ts, kinds, items = log.behaviour("u1", t - 3600, t)  # since excluded, until included
    assert ts.tolist() == [t - 60, t] and kinds.tolist() == ["add_to_cart", "order"]
    assert items.tolist() == ["i|2#é", "i3"]
    assert log.behaviour("u1", t - DAY, t - 1)[1].tolist() == ["view", "add_to_cart"]


def test_the_redis_log_reads_behaviour_it_kept_before_items_were(request, redis_server):
    """A ub: member written before items were kept (<type>|<event_id>) reads with no item."""
    log = RedisEventLog(f"redis://{redis_server}/0", prefix=_prefix(request))
    log.redis.zadd(log._key("ub:u1"), {"view|old-1": 10.0, "add_to_cart|x#1|y": 20.0})
    ts, kinds, items = log.behaviour("u1", 0.0, 30.0)
    assert (ts.tolist(), kinds.tolist(), items.tolist()) == ([10.0, 20.0], ["view", "add_to_cart"], [None, None])
    log.close()


def test_both_followers_hand_out_every_event_and_again_what_was_not_acknowledged(any_log):
    log, _ = any_log
    log.record([_red(f"r{i}", ts=10 * DAY + i) for i in range(5)])
    follower = log.follower(consumer="ingest-1")
    ids, records = follower.read(limit=3)
    assert [r.event_id for r in records] == ["r0", "r1", "r2"]
    follower.ack(ids[:1])
    follower.rewind()  # the push failed: r1 and r2 are handed out again, then the rest
    handed = []
    while True:
        ids, records = follower.read(limit=10)
        if not ids:
            break
        handed += [r.event_id for r in records]
    assert handed == ["r1", "r2", "r3", "r4"]


def test_the_recount_notices_redis_counters_that_disagree_with_the_events(redis_server, request):
    log = RedisEventLog(f"redis://{redis_server}/0", prefix=_prefix(request))
    log.record([_red("r1")])
    assert log.recount()
    log.redis.hincrby(log.prefix + "ur:u1", f"c1|{10}", 1)
    assert not log.recount()


WRITER = r"""
import sys
from couponrank.events.redis_log import RedisEventLog
from couponrank.events.log import EventRecord
log = RedisEventLog(sys.argv[1], prefix=sys.argv[2])
for batch in range(100000):
    ids = [f"e{batch}-{i}" for i in range(20)]
    log.record([EventRecord(e, f"u{i % 7}", "redemption", 864000.0 + i, coupon_id=f"c{i % 3}", discount=1.0)
                for i, e in enumerate(ids)])
    print(batch, flush=True)  # acknowledged by Redis: the batch is recorded
"""


def test_kill_9_of_a_redis_writer_leaves_whole_batches_counted_once(redis_server, request):
    url, prefix = f"redis://{redis_server}/0", _prefix(request)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url, prefix], stdout=subprocess.PIPE, text=True)
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 30:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log = RedisEventLog(url, prefix=prefix)
    ids = {e.event_id for e in log.events()}
    batches: dict[int, int] = {}
    for e in ids:
        batches[int(e[1:].split("-")[0])] = batches.get(int(e[1:].split("-")[0]), 0) + 1
    assert all(f"e{b}-{i}" in ids for b in range(acked + 1) for i in range(20))
    assert set(batches.values()) == {20}  # a batch is one script: whole or not at all
    assert log.recount()
    resend = [EventRecord(f"e{acked + 1}-{i}", f"u{i % 7}", "redemption", 864000.0 + i, coupon_id=f"c{i % 3}",
                          discount=1.0) for i in range(20)]
    log.record(resend)
    assert log.record(resend) == [False] * 20 and log.recount()


def test_a_dead_consumers_entries_go_to_its_successor_or_to_another_consumer(redis_server, request):
    url, prefix = f"redis://{redis_server}/0", _prefix(request)
    log = RedisEventLog(url, prefix=prefix)
    log.record([_red(f"r{i}", ts=10 * DAY + i) for i in range(6)])
    first = log.follower(group="push", consumer="a", claim_idle=3600)
    ids, _ = first.read(limit=2)  # then killed before acknowledging
    assert first.pending() == 2
    other = log.follower(group="push", consumer="b", claim_idle=3600)
    ids_b, records_b = other.read(limit=10)
    assert [r.event_id for r in records_b] == ["r2", "r3", "r4", "r5"]  # a's are not idle long enough
    other.ack(ids_b)
    restarted = log.follower(group="push", consumer="a", claim_idle=3600)  # the same name takes its own back
    ids, records = restarted.read()
    assert [r.event_id for r in records] == ["r0", "r1"]
    log.record([_red("r6", ts=10 * DAY + 6)])
    taker = log.follower(group="push", consumer="c", claim_idle=0)  # a dead a, taken over by c
    ids2, records2 = taker.read()
    assert [r.event_id for r in records2] == ["r0", "r1"]
    taker.ack(ids2)
    assert [r.event_id for r in taker.read()[1]] == ["r6"]
    # a group of its own sees everything from the start
    assert len(log.follower(group="export", consumer="x").read()[1]) == 7


# ------------------------------------------------------------------ servers sharing one Redis
def _event(event_id: str, user: str, when: pd.Timestamp, **kind) -> pb.Event:
    e = pb.Event(event_id=event_id, user_id=user, **kind)
    e.event_time.FromDatetime(when.to_pydatetime())
    return e


def _record(stub, *events) -> list[str]:
    out = stub.RecordEvents(pb.RecordEventsRequest(events=list(events)), timeout=10)
    return [pb.EventStatus.Name(r.status).removeprefix("EVENT_STATUS_") for r in out.results]


def _rank(stub, user: str, coupon: str, when: pd.Timestamp, request_id: str = "") -> str:
    req = pb.RankCouponsRequest(user_id=user, candidate_coupon_ids=[coupon], top_k=1, request_id=request_id,
                                context=pb.RequestContext(placement=pb.PLACEMENT_HOME, cart_total=pb.Money(
                                    currency_code="USD", amount_minor=10_000_000)))
    req.context.request_time.FromDatetime(when.to_pydatetime())
    res = stub.RankCoupons(req, timeout=10)
    if res.ranked_coupons:
        return "RANKED"
    return pb.IneligibilityReason.Name(res.ineligible_coupons[0].reason).removeprefix("INELIGIBILITY_REASON_")


def test_two_servers_sharing_a_redis_log_see_each_others_events(built, catalog, redis_server, tmp_path):
    """A redemption recorded through one replica limits the user on the other; a resend
    to the other is a duplicate; the served rankings of both export with their carts."""

    from couponrank.cli import main
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    url = f"redis://{redis_server}/5"  # a database of its own: the server's default key prefix
    import redis

    redis.Redis.from_url(url).flushdb()
    now = pd.Timestamp(NOW)
    coupon, user = limit_one_coupon(catalog, now), "u-replicas"
    config = ServerConfig(events_db=url, catalog_refresh_seconds=0, push_features=False)
    replicas = [serve(built.repo, built.models, port=0, config=config, clock=UNIX_CLOCK) for _ in range(2)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{r.port}") for r in replicas]
    try:
        a, b = (pb_grpc.CouponRankingServiceStub(ch) for ch in channels)
        assert _rank(a, user, coupon, now, request_id="req-a") == "RANKED"
        assert _rank(b, user, coupon, now) == "RANKED"
        shown = _event("rep-imp", user, now - pd.Timedelta(minutes=30), impression=pb.ImpressionEvent(
            request_id="req-a", coupon_id=coupon, position=1, placement=pb.PLACEMENT_HOME))
        used = _event("rep-red", user, now - pd.Timedelta(minutes=10), redemption=pb.RedemptionEvent(
            coupon_id=coupon, discount=pb.Money(currency_code="USD", amount_minor=300)))
        assert _record(a, shown) == ["ACCEPTED"]
        assert _record(b, used) == ["ACCEPTED"]  # b knows the impression a recorded
        assert _rank(a, user, coupon, now) == "PER_USER_LIMIT_REACHED"
        assert _rank(b, user, coupon, now) == "PER_USER_LIMIT_REACHED"
        assert _record(b, shown, used) == ["DUPLICATE", "DUPLICATE"]
        for r in replicas:
            r.ranker.rankings.flush()
    finally:
        for ch in channels:
            ch.close()
        for r in replicas:
            r.stop(0).wait(5)
    log = RedisEventLog(url)
    assert log.recount() and len(log.rankings()) == 4
    raw = tmp_path / "raw"
    assert main(["export-events", "--repo", str(built.repo), "--raw", str(raw), "--events-db", url]) == 0
    exported = pd.read_parquet(raw / "live" / "coupon_events")
    assert sorted(exported.event_id) == ["rep-imp", "rep-red"]
    assert exported.set_index("event_id").cart_value["rep-imp"] == 100_000.0  # the cart of req-a, served by a


def test_couponrank_ingest_follows_a_redis_log_and_acknowledges_what_it_pushed(built, fresh_ws, redis_server):
    """Servers with --no-push on a Redis log; `couponrank ingest` reads the stream in a
    consumer group, pushes, acknowledges. An ingest that died with entries unacknowledged
    (read, never acked) has them pushed by the next one of the same name."""
    from couponrank.cli import main
    from couponrank.features import recent, repo
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    url = f"redis://{redis_server}/6"
    import redis

    redis.Redis.from_url(url).flushdb()
    running = serve(fresh_ws, built.models, port=0, clock=UNIX_CLOCK, config=ServerConfig(
        events_db=url, push_features=False, catalog_refresh_seconds=0))
    users = ["u-redis-ingest-1", "u-redis-ingest-2"]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            views = [_event(f"ri-{u}-{i}", u, pd.Timestamp(NOW) - pd.Timedelta(minutes=10 * i),
                            behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW, item_id=ITEM))
                     for u in users for i in range(1 + users.index(u))]
            assert _record(stub, *views) == ["ACCEPTED"] * 3
    finally:
        running.stop(0).wait(5)
    store = repo.store(fresh_ws)

    def views_1h(user):
        return store.get_online_features(features=[f"{recent.VIEW}:recent_views_1h"],
                                         entity_rows=[{"user_id": user}]).to_dict()["recent_views_1h"][0]

    log = RedisEventLog(url)
    dead = log.follower(group="ingest", consumer="ingest-a")
    dead.read()  # a consumer that read every entry and died before pushing
    assert dead.pending() == 3 and views_1h(users[0]) is None
    assert main(["ingest", "--repo", str(fresh_ws), "--events-db", url, "--consumer", "ingest-b", "--once"]) == 0
    assert views_1h(users[0]) is None  # not idle long enough to be taken from ingest-a
    assert main(["ingest", "--repo", str(fresh_ws), "--events-db", url, "--consumer", "ingest-a", "--once"]) == 0
    assert (views_1h(users[0]), views_1h(users[1])) == (1.0, 2.0)
    assert dead.pending() == 0


def test_an_unreachable_redis_log_stops_the_server_naming_it_without_the_password(built, capsys):
    from conftest import free_port

    from couponrank.cli import main

    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    assert main(["serve", "--repo", str(built.repo), "--model", str(built.models), "--port", "0",
                 "--events-db", url]) == 2
    err = capsys.readouterr().err
    assert f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}" in err and "cannot open the event log" in err
    assert "s3cret" not in err


def test_a_hung_redis_log_does_not_hold_rankings(built, catalog, tmp_path):
    """A redis-server that stops answering (SIGSTOP): RankCoupons still answers well
    within its deadline, from the snapshots alone (logged), and counts the recorded
    redemption again once Redis is back."""
    import shutil
    import time

    import redis

    from conftest import free_port
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import NOW, UNIX_CLOCK

    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    now = pd.Timestamp(NOW)
    coupon, user = limit_one_coupon(catalog, now), "u-hung-redis"
    running = serve(built.repo, built.models, port=0, clock=UNIX_CLOCK, config=ServerConfig(
        events_db=url, push_features=False, catalog_refresh_seconds=0, store_timeout=0.25))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.CouponRankingServiceStub(channel)
            assert _record(stub, _event("hung-imp", user, now - pd.Timedelta(minutes=30),
                                        impression=pb.ImpressionEvent(coupon_id=coupon, position=1,
                                                                      placement=pb.PLACEMENT_HOME)),
                           _event("hung-red", user, now - pd.Timedelta(minutes=10),
                                  redemption=pb.RedemptionEvent(coupon_id=coupon))) == ["ACCEPTED"] * 2
            assert _rank(stub, user, coupon, now) == "PER_USER_LIMIT_REACHED"
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                # the event log's own timeout is 5 s: a 2 s deadline fails if the ranking waits for it
                req_deadline = 2.0
                req = pb.RankCouponsRequest(user_id=user, candidate_coupon_ids=[coupon], top_k=1,
                                            context=pb.RequestContext(placement=pb.PLACEMENT_HOME, cart_total=pb.Money(
                                                currency_code="USD", amount_minor=10_000_000)))
                req.context.request_time.FromDatetime(now.to_pydatetime())
                res = stub.RankCoupons(req, timeout=req_deadline)
                assert [r.coupon_id for r in res.ranked_coupons] == [coupon]  # the snapshots alone
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            assert _rank(stub, user, coupon, now) == "PER_USER_LIMIT_REACHED"
    finally:
        running.stop(0).wait(5)
        proc.kill()
        proc.wait()
