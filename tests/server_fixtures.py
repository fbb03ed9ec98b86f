"""Fixtures for the server tests: tiny data + features + model built once per session
(the `demo` command), the real gRPC server in-process on a free loopback port, a client."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Built:
    raw: Path
    repo: Path
    models: Path
    last_snapshot: pd.Timestamp  # the latest row stamp over every feature source


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Built:
    """Read-only for tests: a test that changes the workspace works on a copy."""
    from couponrank.demo import run_demo
    from couponrank.features.repo import last_snapshot
    from pinned import CLOCK, END_DATE

    root = tmp_path_factory.mktemp("serving")
    raw, repo, models = root / "raw", root / "features", root / "models"
    run_demo(raw, repo, models, size="tiny", progress=False, end_date=END_DATE, clock=CLOCK)

    return Built(raw, repo, models, last_snapshot(repo))


TRUSTED_TOKEN = "test-token-for-a-caller-who-sees-user-features"


@pytest.fixture(scope="session")
def callers_file(tmp_path_factory) -> Path:
    """A callers file naming one caller (TRUSTED_TOKEN) allowed to see user features."""
    from couponrank.server.callers import token_hash

    path = tmp_path_factory.mktemp("callers") / "callers.toml"
    path.write_text(f'[callers.data-science]\ntoken_sha256 = "{token_hash(TRUSTED_TOKEN)}"\nexplain = "all"\n')
    return path


@pytest.fixture(scope="module")
def server(built, callers_file):
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    # every non-zero contribution in explanations; no store cooldown (tests break the store on purpose)
    config = ServerConfig(max_reasons=0, store_cooldown=0.0, catalog_refresh_seconds=0,
                          callers_file=str(callers_file))
    running = serve(built.repo, built.models, port=0, host="127.0.0.1", config=config, clock=UNIX_CLOCK)
    yield running
    running.stop(0).wait(5)


@pytest.fixture(scope="module")
def target(server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def client(target):
    from couponrank.client import CouponRankClient

    with CouponRankClient(target, timeout=5.0) as c:
        yield c


@pytest.fixture(scope="module")
def trusted_client(target):
    """A client the server lets see user features in explanations."""
    from couponrank.client import CouponRankClient

    with CouponRankClient(target, timeout=5.0, token=TRUSTED_TOKEN) as c:
        yield c


@pytest.fixture(scope="module")
def stub(target):
    import grpc

    from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(target)
    yield pb_grpc.CouponRankingServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def catalog(built):
    from couponrank.server.catalog import load_catalog

    return load_catalog(built.repo)


@pytest.fixture(scope="module")
def fresh_ws(built, tmp_path_factory):
    """A workspace of its own (pushes write into its online store), applied and materialized."""
    import shutil

    from couponrank.features import repo

    ws = repo.init_workspace(tmp_path_factory.mktemp("fresh") / "ws")
    for source in (built.repo / "data").glob("*.parquet"):
        shutil.copy2(source, ws / "data" / source.name)
    shutil.copy2(built.repo / "data" / "build.json", ws / "data" / "build.json")
    repo.apply(ws)
    repo.materialize(ws, end=(repo.last_snapshot(ws) + pd.Timedelta(seconds=1)).to_pydatetime())
    return ws


def limit_one_coupon(catalog, when: pd.Timestamp) -> str:
    """A coupon active at ``when``, open to all, usable once per user, budget left."""
    import numpy as np

    c = catalog.columns
    rows = catalog.active(when.timestamp())
    rows = rows[(c["coupon_per_user_limit"][rows] == 1) & (c["coupon_audience"][rows] == "all")
                & ~(np.nan_to_num(c["coupon_budget_used_frac"][rows]) >= 1)]
    return str(min(catalog.ids[rows]))
