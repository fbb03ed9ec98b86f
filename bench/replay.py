"""Replay the demo's coupon events through RecordEvents with a ranking before every
impression: how many rankings offer a coupon its user has already used up (per-user
limit) or whose budget is spent, with the live counters and without them.

    .venv/bin/python bench/replay.py [--workdir /tmp/bench-replay] [--days 5]

Set-up, once (cached in --workdir): the `demo` data set (3,000 users, 200 coupons, 60
days ending 2026-07-01); the features are built, applied and materialized, and a model
trained, on the data *before* the last --days days only: the server starts with
snapshots that end where the replay begins, as a server does between two batch runs.

Then twice, once with the event log (the server's default) and once without it
(``--events-db ''``: the snapshots alone, as before issue 11), a fresh server in this
process, its clock moved to each event's time, replays the later events in time order:
before each impression, RankCoupons for that user and coupon at that time; then the
impression, claims and redemptions go in through RecordEvents (with the redemption's
discount). A ranking *violates* when it offers the coupon although the user's
redemptions of it before that time already reach its per-user limit, or its
redemptions' discounts reach its budget (the ground truth from the full data).
Goal (issue 11): 0 violations with the event log. ``--redis`` replays a third time
with the event log on a redis-server the bench starts (``appendfsync always``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

END = pd.Timestamp("2026-07-01", tz="UTC")


def prepare(work: Path, days: int) -> tuple[Path, Path, Path, pd.Timestamp]:
    from couponrank.features import repo as feast_repo
    from couponrank.features.build import build_features
    from couponrank.generate import SIZES, generate
    from couponrank.training.pipeline import train

    raw, cut, ws, models = work / "raw", work / "raw-cut", work / "features", work / "models"
    start = END - pd.Timedelta(days=days)
    if (models / "LATEST").exists():
        return raw, ws, models, start
    generate(raw, SIZES["demo"].replace(end_date=END.date()))
    cut.mkdir(parents=True, exist_ok=True)
    for path in raw.glob("*.parquet"):
        table = pq.read_table(path)
        if "event_ts" in table.column_names:
            df = table.to_pandas()
            df = df[df.event_ts < start]
            if "impression_id" in df:  # claims / redemptions of impressions kept, only
                kept = set(df.event_id[df.event_type == "impression"])
                df = df[(df.event_type == "impression") | df.impression_id.isin(kept)]
            table = table.from_pandas(df, schema=table.schema, preserve_index=False)
        pq.write_table(table, cut / path.name)
    feast_repo.init_workspace(ws)
    build_features(cut, ws)
    feast_repo.apply(ws)
    feast_repo.materialize(ws, end=start.to_pydatetime())
    train(cut, ws, models, quiet=True)
    return raw, ws, models, start


def replay(raw: Path, ws: Path, models: Path, start: pd.Timestamp, events_db: str) -> dict:
    import grpc

    from couponrank.server.catalog import load_catalog
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from couponrank.v1 import coupon_ranking_service_pb2 as pb
    from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

    ce = pd.read_parquet(raw / "coupon_events.parquet").sort_values(["event_ts", "event_id"], kind="stable")
    cat = load_catalog(ws)
    limit = dict(zip(cat.ids, cat.columns["coupon_per_user_limit"]))
    budget = dict(zip(cat.ids, cat.columns["coupon_budget"]))
    used: dict[tuple[str, str], int] = {}
    spent: dict[str, float] = {}
    for r in ce[(ce.event_type == "redemption") & (ce.event_ts < start)].itertuples():
        used[(r.user_id, r.coupon_id)] = used.get((r.user_id, r.coupon_id), 0) + 1
        spent[r.coupon_id] = spent.get(r.coupon_id, 0.0) + float(r.discount_amount or 0.0)
    later = ce[ce.event_ts >= start]

    now = [start.timestamp()]
    running = serve(ws, models, port=0, clock=lambda: now[0],
                    config=ServerConfig(events_db=events_db, catalog_refresh_seconds=0, model_refresh_seconds=0,
                                        store_check_seconds=0))
    stub = pb_grpc.CouponRankingServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
    rankings = violations = over_limit = over_budget = 0
    t0 = time.perf_counter()
    try:
        for r in later.itertuples():
            ts = r.event_ts.timestamp()
            now[0] = ts
            e = pb.Event(event_id=r.event_id, user_id=r.user_id)
            e.event_time.seconds, e.event_time.nanos = int(ts), int(round((ts % 1) * 1e9)) % 1_000_000_000
            if r.event_type == "impression":
                req = pb.RankCouponsRequest(user_id=r.user_id, candidate_coupon_ids=[r.coupon_id],
                                            context=pb.RequestContext(placement=getattr(pb, "PLACEMENT_" + str(
                                                r.placement).upper()), cart_total=pb.Money(
                                                currency_code="USD", amount_minor=10**9)))
                req.context.request_time.CopyFrom(e.event_time)
                res = stub.RankCoupons(req, timeout=10)
                offered = any(c.coupon_id == r.coupon_id for c in res.ranked_coupons)
                limited = used.get((r.user_id, r.coupon_id), 0) >= limit[r.coupon_id]
                broke = spent.get(r.coupon_id, 0.0) >= budget[r.coupon_id]
                rankings += 1
                violations += offered and (limited or broke)
                over_limit += offered and limited
                over_budget += offered and broke
                e.impression.CopyFrom(pb.ImpressionEvent(request_id=str(r.request_id), coupon_id=r.coupon_id,
                                                         position=int(r.position), placement=req.context.placement))
            elif r.event_type == "claim":
                e.claim.CopyFrom(pb.ClaimEvent(coupon_id=r.coupon_id, impression_event_id=str(r.impression_id)))
            else:
                discount = float(r.discount_amount or 0.0)
                e.redemption.CopyFrom(pb.RedemptionEvent(coupon_id=r.coupon_id, impression_event_id=str(
                    r.impression_id), discount=pb.Money(currency_code="USD", amount_minor=round(discount * 100))))
                used[(r.user_id, r.coupon_id)] = used.get((r.user_id, r.coupon_id), 0) + 1
                spent[r.coupon_id] = spent.get(r.coupon_id, 0.0) + round(discount * 100) / 100
            if events_db != "":
                out = stub.RecordEvents(pb.RecordEventsRequest(events=[e]), timeout=10)
                if out.results[0].status != pb.EVENT_STATUS_ACCEPTED:
                    sys.exit(f"event {r.event_id} not accepted: {out.results[0].detail}")
    finally:
        running.stop(0).wait(5)
    return {"rankings": rankings, "violations": violations, "over_limit": over_limit, "over_budget": over_budget,
            "events": len(later), "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/bench-replay")
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--redis", action="store_true", help="also replay with the event log on Redis")
    args = ap.parse_args()
    work = Path(args.workdir)
    raw, ws, models, start = prepare(work, args.days)
    db = work / "events.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    runs = [("snapshots only (no event log)", ""), ("with the event log", str(db))]
    redis_proc = None
    if args.redis:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from redis_server import start_redis

        redis_proc, url = start_redis(work, "always")
        runs.append(("with the event log on Redis", url))
    for name, events_db in runs:
        r = replay(raw, ws, models, start, events_db)
        share = r["violations"] / max(r["rankings"], 1)
        print(f"{name}: {r['violations']:,} of {r['rankings']:,} rankings ({share:.1%}) offered a used-up coupon "
              f"({r['over_limit']:,} over the user's limit, {r['over_budget']:,} over budget); {r['events']:,} "
              f"events replayed in {r['seconds']:.0f} s", flush=True)
    if redis_proc is not None:
        redis_proc.terminate()
        redis_proc.wait(10)
    print("command: .venv/bin/python bench/replay.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
