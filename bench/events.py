"""RecordEvents: ingest rate, freshness, and RankCoupons latency while events stream in.

    .venv/bin/python bench/events.py [--workdir /tmp/bench-events] [--events 20000]

Set-up, once a day (cached in --workdir/<date>): the `demo` data set (3,000 users, 200
coupons) ending today, features, registry, online store and model, as `couponrank demo`
builds them. The server runs in a child process (``couponrank serve``, SQLite online
store and event log) on the wall clock; the events are stamped a minute ago.

1. **log**: EventLog.record straight on a fresh file, batches of 1 and of 100
   (events/s; every batch synced to disk before the next: the durability the RPC has).
2. **rpc**: RecordEvents over loopback gRPC, batches of 1 and of 100 (events/s,
   client side; the same durability, plus decoding, checks and the answer).
3. **freshness**: a new user's impression + redemption of a coupon with a per-user
   limit of 1, then at once a RankCoupons: the share of rankings that already drop
   the coupon (PER_USER_LIMIT_REACHED; must be 100%), and the time from sending the
   events to that answer, p50 and p99. Then pushed features: a new user's view, and
   the time until Feast's online store holds the user's recent_views_1h (polled); and
   an impression of a coupon, until its coupon_impressions_today moves.
4. **latency under ingestion**: RankCoupons over every coupon active now,
   p50 / p99, alone and with another process streaming batches of 100 events at the
   same server (as fast as it answers, or ``--ingest-rate`` events/s); the ratio.

``--push ingest`` runs the pushes in a `couponrank ingest` process beside a server
started with ``--no-push``; ``--push none`` serves with ``--no-push`` and pushes
nothing (what ingestion costs without the pushes). ``--online redis`` materializes the
online store into the bench's redis-server (db 0; the event log, with ``--log redis``,
in db 1) and serves and pushes from there. ``--log redis`` puts the event log on a redis-server the
bench starts (``--appendonly yes --appendfsync always`` by default: every answered
batch on disk, the durability of the SQLite log; ``--appendfsync everysec`` for Redis's
own default) instead of the SQLite file; ``--workers N`` serves with N processes.
``--events-server`` starts a second server on the next port, sharing the event log,
and sends every RecordEvents there (the first server only ranks).

Goals (issue 11): >= 5,000 events/s batched on SQLite, >= 20,000 on Redis; counters
visible <= 50 ms (p99), pushed features <= 1 s; RankCoupons p99 with ingestion as
without.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_server import start_redis  # noqa: E402 (bench/redis_server.py, beside this script)


def prepare(work: Path) -> tuple[Path, Path]:
    from couponrank.clock import utc_today
    from couponrank.demo import run_demo

    today = utc_today()
    work = work / today.isoformat()  # the data ends today, so that its coupons are valid now
    raw, repo, models = work / "raw", work / "features", work / "models"
    if not (models / "LATEST").exists() or not (repo / "data" / "coupon_today_activity.parquet").exists():
        run_demo(raw, repo, models, size="demo", progress=False, end_date=today)
    return repo, models


def _event(pb, event_id: str, user: str, ts: float, **kind):
    e = pb.Event(event_id=event_id, user_id=user, **kind)
    e.event_time.seconds = int(ts)
    return e


ITEMS: list[str] = []  # the workspace's item ids (item_catalog.parquet), set in main


def _views(pb, prefix: str, n: int, ts: float) -> list:
    return [_event(pb, f"{prefix}-{i}", f"u-bench-{i % 997}", ts,
                   behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW, item_id=ITEMS[i % len(ITEMS)]))
            for i in range(n)]


def bench_log(tmp: Path, n: int, url: str | None = None) -> dict[int, float]:
    from couponrank.events.log import EventLog, EventRecord
    from couponrank.events.redis_log import RedisEventLog

    out = {}
    for batch in (1, 100):
        for suffix in ("", "-wal", "-shm"):  # a fresh file: events already there would be duplicates
            Path(f"{tmp / f'log-{batch}.db'}{suffix}").unlink(missing_ok=True)
        log = RedisEventLog(url, prefix=f"{{bench-{batch}}}:") if url else EventLog(tmp / f"log-{batch}.db")
        records = [EventRecord(f"e{i}", f"u{i % 997}", "redemption", 1.7e9 + i, coupon_id=f"c{i % 200}",
                               discount=1.0) for i in range(n if batch > 1 else n // 10)]
        t = time.perf_counter()
        for i in range(0, len(records), batch):
            log.record(records[i:i + batch])
        out[batch] = len(records) / (time.perf_counter() - t)
        log.close()
    return out


def _stream(target: str, ts: float, stop, items: list[str], rate: float, sent) -> None:
    """Another client: batches of 100 view events until told to stop, as fast as the
    server answers (rate 0) or paced to ``rate`` events/s; counts them in ``sent``."""
    ITEMS[:] = items
    import grpc

    from couponrank.v1 import coupon_ranking_service_pb2 as pb
    from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

    stub = pb_grpc.CouponRankingServiceStub(grpc.insecure_channel(target))
    k = 0
    start = time.perf_counter()
    while not stop.is_set():
        if rate > 0:  # the next batch's slot; a late batch goes at once (no catching up in bursts)
            wait = start + k * 100 / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -1.0:
                start, k = time.perf_counter(), 0
        stub.RecordEvents(pb.RecordEventsRequest(events=_views(pb, f"s{sent.value}", 100, ts)), timeout=10)
        k += 1
        sent.value += 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/bench-events")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--pushes", type=int, default=100)
    ap.add_argument("--push", choices=["server", "ingest", "none"], default="server",
                    help="who pushes fresh features: the server process, `couponrank ingest` beside it, or nobody "
                         "(serve --no-push alone: what ingestion costs without the pushes)")
    ap.add_argument("--log", choices=["sqlite", "redis"], default="sqlite", help="the event log's backend")
    ap.add_argument("--online", choices=["sqlite", "redis"], default="sqlite",
                    help="the online store the server reads and the pushes write (redis: the bench's redis-server, "
                         "materialized at the start of the run)")
    ap.add_argument("--appendfsync", choices=["always", "everysec"], default="always",
                    help="the bench's redis-server's AOF sync (--log redis)")
    ap.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    ap.add_argument("--ingest-rate", type=float, default=0.0,
                    help="events/s the streaming client sends while RankCoupons is timed in step 4 "
                         "(0: as fast as the server answers)")
    ap.add_argument("--events-server", action="store_true",
                    help="a second `couponrank serve` on the next port, sharing the event log, takes every "
                         "RecordEvents (and the pushes, with --push server); the first only ranks")
    ap.add_argument("--server-cpus", metavar="LIST",
                    help="run the server on these CPUs (taskset list, e.g. 0) and everything else (bench, "
                         "streaming client, ingest, redis-server) on the others: a machine of its own for the server")
    args = ap.parse_args()
    if args.server_cpus:  # first: the processes started below inherit the bench's CPUs
        server_cpus = {int(c) for part in args.server_cpus.split(",") for c in (
            range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1))}
        others = os.sched_getaffinity(0) - server_cpus
        if not server_cpus or not others:
            sys.exit(f"--server-cpus {args.server_cpus}: leaves no CPU for the rest")
        os.sched_setaffinity(0, others)
    work = Path(args.workdir)
    repo, models = prepare(work)
    ITEMS[:] = sorted(pd.read_parquet(repo / "data" / "item_catalog.parquet").item_id)[:500]
    from couponrank.clock import unix_now

    import grpc

    from couponrank.server.catalog import load_catalog
    from couponrank.v1 import coupon_ranking_service_pb2 as pb
    from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

    redis_server, url = start_redis(work, args.appendfsync) if "redis" in (args.log, args.online) else (None, None)
    if args.online == "redis":  # Feast's keys in db 0; the event log (--log redis) in db 1
        from couponrank.features import repo as feast_repo

        os.environ["COUPONRANK_REDIS"] = url.removeprefix("redis://").rsplit("/", 1)[0]
        t = time.perf_counter()
        feast_repo.apply(repo, online="redis")
        feast_repo.materialize(repo, end=datetime.now(timezone.utc), online="redis")
        print(f"online store: Redis, materialized in {time.perf_counter() - t:.0f} s", flush=True)
    url = url.rsplit("/", 1)[0] + "/1" if url and args.log == "redis" else None
    rates = bench_log(work, args.events, url)
    print(f"log, {'RedisEventLog' if url else 'EventLog'}.record"
          f"{f' (appendfsync {args.appendfsync})' if url else ''}: batch 1 {rates[1]:,.0f} events/s, "
          f"batch 100 {rates[100]:,.0f} events/s", flush=True)

    db = url or work / "events.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work / 'events.db'}{suffix}").unlink(missing_ok=True)
    port = 50000 + os.getpid() % 10000
    ingest = events_server = None

    def start_server(port: int, log_name: str, push: bool) -> subprocess.Popen:
        server_log = work / log_name  # a file, not a pipe: a pipe nobody reads would block the server
        with open(server_log, "w") as out:
            proc = subprocess.Popen((["taskset", "-c", args.server_cpus] if args.server_cpus else [])
                                    + [sys.executable, "-m", "couponrank.cli", "serve", "--repo", str(repo), "--model",
                                       str(models), "--port", str(port), "--events-db", str(db),
                                       "--workers", str(args.workers), "--online", args.online]
                                    + ([] if push else ["--no-push"]), stdout=out, stderr=subprocess.STDOUT)
        while "serving model" not in server_log.read_text():
            if proc.poll() is not None:
                sys.exit(f"server did not start: {server_log.read_text()}")
            time.sleep(0.2)
        return proc

    server = start_server(port, "server.log", args.push == "server" and not args.events_server)
    target = events_target = f"127.0.0.1:{port}"
    try:
        if args.events_server:
            events_server = start_server(port + 1, "events-server.log", args.push == "server")
            events_target = f"127.0.0.1:{port + 1}"
        if args.push == "ingest":
            with open(work / "ingest.log", "w") as out:
                ingest = subprocess.Popen([sys.executable, "-m", "couponrank.cli", "ingest", "--repo", str(repo),
                                           "--events-db", str(db), "--online", args.online],
                                          stdout=out, stderr=subprocess.STDOUT)
        channel = grpc.insecure_channel(target)
        stub = pb_grpc.CouponRankingServiceStub(channel)
        events_stub = pb_grpc.CouponRankingServiceStub(grpc.insecure_channel(events_target))
        now = unix_now()
        ts = now - 60

        # 2. rpc
        for batch in (1, 100):
            n = args.events if batch > 1 else args.events // 10
            events = _views(pb, f"rpc{batch}", n, ts)
            t = time.perf_counter()
            for i in range(0, n, batch):
                events_stub.RecordEvents(pb.RecordEventsRequest(events=events[i:i + batch]), timeout=10)
            print(f"rpc, RecordEvents: batch {batch}: {n / (time.perf_counter() - t):,.0f} events/s "
                  f"({n:,} events)", flush=True)

        # 3. freshness
        cat = load_catalog(repo)
        c = cat.columns
        rows = cat.active(now)
        limited = rows[(c["coupon_per_user_limit"][rows] == 1) & (c["coupon_audience"][rows] == "all")
                       & ~(np.nan_to_num(c["coupon_budget_used_frac"][rows]) >= 1)]
        coupon = str(cat.ids[limited[0]])
        seen, waits = 0, []
        for k in range(args.requests):
            user = f"u-fresh-{os.getpid()}-{k}"
            events = [_event(pb, f"f{k}-i", user, ts, impression=pb.ImpressionEvent(
                          coupon_id=coupon, position=1, placement=pb.PLACEMENT_HOME)),
                      _event(pb, f"f{k}-r", user, ts + 1, redemption=pb.RedemptionEvent(coupon_id=coupon))]
            req = pb.RankCouponsRequest(user_id=user, candidate_coupon_ids=[coupon], context=pb.RequestContext(
                placement=pb.PLACEMENT_HOME, cart_total=pb.Money(currency_code="USD", amount_minor=10**7)))
            t = time.perf_counter()
            events_stub.RecordEvents(pb.RecordEventsRequest(events=events), timeout=10)
            res = stub.RankCoupons(req, timeout=10)
            waits.append(time.perf_counter() - t)
            seen += any(i.reason == pb.INELIGIBILITY_REASON_PER_USER_LIMIT_REACHED for i in res.ineligible_coupons)
        w = np.array(waits) * 1000
        print(f"freshness: {seen}/{args.requests} rankings right after the events drop the coupon; events sent -> "
              f"answer p50 {np.median(w):.2f} ms, p99 {np.quantile(w, 0.99):.2f} ms", flush=True)

        # 3b. pushed features: a view recorded -> the online store's recent_views_1h moves
        from couponrank.features import recent
        from couponrank.features import repo as feast_repo

        store = feast_repo.store(repo, args.online)
        lags = []
        for k in range(args.pushes if args.push != "none" else 0):
            user = f"u-push-{os.getpid()}-{k}"  # new to the online store, whichever run wrote it before
            t = time.perf_counter()
            view = _event(pb, f"push{k}", user, ts, behaviour=pb.BehaviourEvent(type=pb.BEHAVIOUR_TYPE_VIEW,
                                                                                  item_id=ITEMS[0]))
            events_stub.RecordEvents(pb.RecordEventsRequest(events=[view]), timeout=10)
            while True:
                got = store.get_online_features(features=[f"{recent.VIEW}:recent_views_1h"],
                                                entity_rows=[{"user_id": user}]).to_dict()["recent_views_1h"][0]
                if got == 1.0:
                    break
                if time.perf_counter() - t > 30:
                    sys.exit(f"pushed feature of {user} not visible after 30 s")
                time.sleep(0.005)
            lags.append(time.perf_counter() - t)
        p = np.array(lags) * 1000
        if args.push != "none":
            print(f"pushed features: a recorded view -> visible in the online store, p50 {np.median(p):.0f} ms, "
                  f"p99 {np.quantile(p, 0.99):.0f} ms ({args.pushes} users; pushed by the {args.push}: "
                  + ("every 500 ms" if args.push == "server" else "as it reads, polling every 500 ms when idle")
                  + ")", flush=True)

        # 3c. pushed coupon counts: an impression recorded -> coupon_impressions_today moves
        from couponrank.features import coupon_today

        names = {v.name for v in store.list_feature_views()}
        if args.push != "none" and coupon_today.VIEW not in names:
            print(f"pushed coupon counts: not measured, the registry of {repo} has no {coupon_today.VIEW} "
                  "(prepared before it existed: delete the day's folder)", flush=True)
        elif args.push != "none":
            def shown() -> float:
                got = store.get_online_features(features=[f"{coupon_today.VIEW}:coupon_impressions_today"],
                                                entity_rows=[{"coupon_id": coupon}]).to_dict()
                return got["coupon_impressions_today"][0] or 0.0

            time.sleep(1.5)  # the freshness step's pushes land first
            lags = []
            for k in range(args.pushes):
                before = shown()
                t = time.perf_counter()
                events_stub.RecordEvents(pb.RecordEventsRequest(events=[_event(
                    pb, f"cpush{k}", f"u-cpush-{os.getpid()}-{k}", ts, impression=pb.ImpressionEvent(
                        coupon_id=coupon, position=1, placement=pb.PLACEMENT_HOME))]), timeout=10)
                while shown() < before + 1:
                    if time.perf_counter() - t > 30:
                        sys.exit(f"pushed count of {coupon} not visible after 30 s")
                    time.sleep(0.005)
                lags.append(time.perf_counter() - t)
            p = np.array(lags) * 1000
            print(f"pushed coupon counts: a recorded impression -> visible in the online store, p50 "
                  f"{np.median(p):.0f} ms, p99 {np.quantile(p, 0.99):.0f} ms ({args.pushes} impressions)", flush=True)

        # 4. RankCoupons latency, alone and under ingestion
        users = pd.read_parquet(repo / "data" / "user_activity.parquet", columns=["user_id"]).user_id.astype(str)
        users = sorted(set(users))
        ids = [str(i) for i in cat.ids[rows]]
        rng = np.random.default_rng(0)

        def latencies() -> np.ndarray:
            out = []
            for _ in range(args.requests):
                req = pb.RankCouponsRequest(user_id=users[rng.integers(len(users))], candidate_coupon_ids=ids,
                                            context=pb.RequestContext(placement=pb.PLACEMENT_HOME, cart_total=pb.Money(
                                                currency_code="USD", amount_minor=20_000)))
                t = time.perf_counter()
                stub.RankCoupons(req, timeout=10)
                out.append(time.perf_counter() - t)
            return np.array(out) * 1000

        alone = latencies()
        stop, sent = mp.Event(), mp.Value("q", 0)
        streamer = mp.Process(target=_stream, args=(events_target, ts, stop, ITEMS, args.ingest_rate, sent))
        streamer.start()
        time.sleep(1.0)
        before, t0 = sent.value, time.perf_counter()
        busy = latencies()
        streamed = (sent.value - before) / (time.perf_counter() - t0)
        stop.set()
        streamer.join(10)
        print(f"ingestion while timed: {streamed:,.0f} events/s "
              + (f"(paced to {args.ingest_rate:,.0f})" if args.ingest_rate else "(as fast as answered)"))
        for name, lat in (("alone", alone), ("with ingestion", busy)):
            print(f"RankCoupons, {len(ids)} candidates, {name}: p50 {np.median(lat):.2f} ms, "
                  f"p99 {np.quantile(lat, 0.99):.2f} ms")
        print(f"ratio with / without ingestion: p50 {np.median(busy) / np.median(alone):.2f}, "
              f"p99 {np.quantile(busy, 0.99) / np.quantile(alone, 0.99):.2f}")
        print("command: .venv/bin/python bench/events.py " + " ".join(sys.argv[1:]))
        channel.close()
    finally:
        for proc in (server, events_server, ingest, redis_server):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
