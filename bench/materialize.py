"""Benchmark `feast materialize` into SQLite and into a real Redis: rows per second.

    .venv/bin/python bench/materialize.py [--raw data/large] [--views user_activity,...]

Builds the feature sources from the raw set (generating the large set if missing),
applies the registry, then materializes the user and coupon views (100k users, 5k
coupons on the large set) into SQLite and into a redis-server started on a free
loopback port. Baselines measured in the same run: writing the same number of rows
with the same number of float values straight into SQLite (executemany) and Redis
(pipelined HSET), so the ratio shows what Feast's materialization costs on top of
the store itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIEWS = "user_activity,user_coupon_behaviour,coupon_stats,coupon_attributes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latest_rows(ws: Path, views: list[str]) -> dict[str, int]:
    """Rows materialization writes: one per entity (its latest snapshot)."""
    out = {}
    for v in views:
        df = pd.read_parquet(ws / "data" / f"{v}.parquet")
        keys = [c for c in df.columns if c.endswith("_id") or c == "category"]
        out[v] = int(df.drop_duplicates(keys).shape[0])
    return out


def raw_sqlite(n: int, n_values: int, path: Path) -> float:
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE t (k TEXT PRIMARY KEY, {', '.join(f'v{i} REAL' for i in range(n_values))})")
    rows = [(f"key{i}", *np.random.default_rng(i).random(n_values)) for i in range(n)]
    t = time.perf_counter()
    con.executemany(f"INSERT OR REPLACE INTO t VALUES (?{', ?' * n_values})", rows)
    con.commit()
    return time.perf_counter() - t


def raw_redis(n: int, n_values: int, client) -> float:
    vals = {f"v{i}": 0.5 for i in range(n_values)}
    t = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.hset(f"key{i}", mapping=vals)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default=str(ROOT / "data" / "large"))
    ap.add_argument("--views", default=DEFAULT_VIEWS)
    args = ap.parse_args()
    views = args.views.split(",")
    raw = Path(args.raw)
    if not (raw / "behaviour_events.parquet").exists():
        subprocess.run([sys.executable, "-m", "couponrank.cli", "generate", "--size", "large", "--out", str(raw),
                        "--quiet"], check=True)
    import redis

    from couponrank.features import repo as feast_repo
    from couponrank.features.build import build_features

    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                              stdout=subprocess.DEVNULL)
    try:
        ws = feast_repo.init_workspace(tmp / "repo")
        summary = build_features(raw, ws)
        end = summary.end.to_pydatetime()
        counts = latest_rows(ws, views)
        n_rows = sum(counts.values())
        n_values = 12  # a typical view's feature count, for the raw baselines
        os.environ["COUPONRANK_REDIS"] = f"127.0.0.1:{port}"
        feast_repo.apply(ws)
        results = {}
        for online in ("sqlite", "redis"):
            fs = feast_repo.store(ws, online)
            if online == "redis":
                feast_repo.apply(ws, online="redis")
            t = time.perf_counter()
            fs.materialize(start_date=datetime(1970, 1, 1, tzinfo=timezone.utc), end_date=end, feature_views=views)
            results[online] = time.perf_counter() - t
        client = redis.Redis(host="127.0.0.1", port=port)
        base = {"sqlite": raw_sqlite(n_rows, n_values, tmp / "raw.db"), "redis": raw_redis(n_rows, n_values, client)}
    finally:
        server.terminate()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"views: {', '.join(f'{v} ({n:,})' for v, n in counts.items())}; {n_rows:,} entity rows")
    for online in ("sqlite", "redis"):
        feast_rate = n_rows / results[online]
        raw_rate = n_rows / base[online]
        print(f"{online}: feast materialize {results[online]:.1f} s = {feast_rate:,.0f} rows/s; "
              f"raw writes of {n_values} floats/row {raw_rate:,.0f} rows/s; raw / feast = {raw_rate / feast_rate:.1f}x")
    print("command: .venv/bin/python bench/materialize.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
