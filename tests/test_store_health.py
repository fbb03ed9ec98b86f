"""An online store that holds no features (emptied or never materialized) is noticed:
answers degrade and health reads NOT_SERVING until features are back
(server/store_watch.py). Real SQLite and a real redis-server; the probe is run by
hand (``store_watch.check()``) instead of waiting for its period."""

from __future__ import annotations

import shutil
import sqlite3

import grpc
import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc

from couponrank.features import repo as feature_repo
from couponrank.server.main import serve
from couponrank.server.service import SERVICE_NAME, ServerConfig
from couponrank.server.store_watch import store_is_empty
from couponrank.client import CouponRankClient
from pinned import UNIX_CLOCK

pytest_plugins = ["server_fixtures"]

HOUR = pd.Timedelta(hours=1)
NEVER = 3600.0  # the periodic probe never fires within a test: the tests call check()


def _health(port: int) -> dict[str, str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {name or "(server)": health_pb2.HealthCheckResponse.ServingStatus.Name(
            stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status)
            for name in ("", SERVICE_NAME)}


SERVING = {"(server)": "SERVING", SERVICE_NAME: "SERVING"}
NOT_SERVING = {"(server)": "NOT_SERVING", SERVICE_NAME: "NOT_SERVING"}


def _ask(built) -> dict:
    return dict(placement="home", cart_total_minor=10_000_000,
                request_time=(built.last_snapshot + 10 * HOUR).to_pydatetime())


def _empty_sqlite(path) -> None:
    with sqlite3.connect(path) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            db.execute(f'DELETE FROM "{table}"')


def test_an_emptied_redis_degrades_and_turns_health_not_serving(built, tmp_path, redis_server, monkeypatch):
    import redis

    monkeypatch.setenv("COUPONRANK_REDIS", redis_server)
    ws = tmp_path / "features"
    shutil.copytree(built.repo, ws)
    end = built.last_snapshot.to_pydatetime() + pd.Timedelta(days=1)
    feature_repo.apply(ws, online="redis")
    feature_repo.materialize(ws, end=end, online="redis")
    config = ServerConfig(store_check_seconds=NEVER, store_cooldown=0.0)
    running = serve(ws, built.models, port=0, online="redis", config=config, clock=UNIX_CLOCK)
    host, port = redis_server.split(":")
    try:
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=5.0) as c:
            assert _health(running.port) == SERVING
            full = c.rank_coupons("u000001", **_ask(built))
            assert not full.degraded and full.ranked

            redis.Redis(host=host, port=int(port)).flushall()  # a restart without its data
            running.store_watch.check()
            assert _health(running.port) == NOT_SERVING
            empty = c.rank_coupons("u000001", **_ask(built))
            assert empty.degraded and empty.degraded_reason == "FEATURE_STORE_UNAVAILABLE"
            assert "holds no features" in empty.degraded_detail and empty.ranked  # the popularity fallback

            feature_repo.materialize(ws, end=end, online="redis")
            running.store_watch.check()
            assert _health(running.port) == SERVING
            back = c.rank_coupons("u000001", **_ask(built))
            assert not back.degraded and [r.coupon_id for r in back.ranked] == [r.coupon_id for r in full.ranked]
    finally:
        running.stop(0).wait(5)


def test_a_server_started_on_an_empty_store_is_not_serving_until_it_is_filled(built, tmp_path):
    ws = tmp_path / "features"
    shutil.copytree(built.repo, ws)
    store = ws / "data" / "online_store.db"
    filled = tmp_path / "filled.db"
    shutil.copy2(store, filled)
    _empty_sqlite(store)  # the tables Feast created, no rows: applied, never materialized
    config = ServerConfig(store_check_seconds=NEVER, store_cooldown=0.0)
    running = serve(ws, built.models, port=0, config=config, clock=UNIX_CLOCK)
    running.ranker.online.reader.check_seconds = 0.0  # notice the replaced file at the next read
    try:
        assert _health(running.port) == NOT_SERVING
        with CouponRankClient(f"127.0.0.1:{running.port}", timeout=5.0) as c:
            first = c.rank_coupons("u000001", **_ask(built))
            assert first.degraded and "materialize" in first.degraded_detail
            shutil.copy2(filled, tmp_path / "next.db")
            (tmp_path / "next.db").replace(store)  # a materialized store moved into place
            running.store_watch.check()
            assert _health(running.port) == SERVING
            assert not c.rank_coupons("u000001", **_ask(built)).degraded
    finally:
        running.stop(0).wait(5)


def test_the_probe_tells_empty_from_unknown(built, tmp_path):
    """A store that cannot be read is not called empty (the read path degrades on its
    own, and health stays, so replicas sharing a dead store do not all leave at once)."""
    ws = tmp_path / "features"
    shutil.copytree(built.repo, ws)
    running = serve(ws, built.models, port=0, config=ServerConfig(store_check_seconds=NEVER), clock=UNIX_CLOCK)
    reader = running.ranker.online.reader
    reader.check_seconds = 0.0
    try:
        assert store_is_empty(running.ranker) is False
        (ws / "data" / "online_store.db").unlink()
        assert store_is_empty(running.ranker) is None
        running.store_watch.check()
        assert _health(running.port) == SERVING
    finally:
        running.stop(0).wait(5)
