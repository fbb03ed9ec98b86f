"""Shared fixtures: hand-made and generated raw data, built Feast workspaces, Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

import handmade  # tests/ is on sys.path (rootdir conftest)

CLOCK_AHEAD = "COUPONRANK_TEST_CLOCK_AHEAD_DAYS"


def pytest_configure(config):
    """With COUPONRANK_TEST_CLOCK_AHEAD_DAYS=N (scripts/test.sh's second pass), move
    CouponRank's clock (couponrank.clock, the only reader of the wall clock) N days
    ahead: the date-sensitive tests (marker `clock`) must pass on any day. gRPC's and
    the OS's clocks stay as they are, so deadlines keep working."""
    days = os.environ.get(CLOCK_AHEAD)
    if days:
        from datetime import timedelta

        from couponrank import clock

        real = clock._wall_clock
        clock._wall_clock = lambda: real() + timedelta(days=int(days))


def pytest_report_header(config):
    if os.environ.get(CLOCK_AHEAD):
        from couponrank.clock import utc_now

        return f"couponrank clock moved {os.environ[CLOCK_AHEAD]} days ahead: it reads {utc_now():%Y-%m-%d %H:%M}Z"


@pytest.fixture(scope="session")
def handmade_raw(tmp_path_factory) -> Path:
    return handmade.write(tmp_path_factory.mktemp("handmade") / "raw")


@pytest.fixture(scope="session")
def handmade_repo(tmp_path_factory, handmade_raw) -> Path:
    """A Feast workspace built from the hand-made data, applied and materialized (SQLite)."""
    from datetime import datetime, timezone

    from couponrank.features import repo
    from couponrank.features.build import build_features

    ws = repo.init_workspace(tmp_path_factory.mktemp("handmade_repo"))
    build_features(handmade_raw, ws)
    repo.apply(ws)
    repo.materialize(ws, end=datetime(2026, 8, 1, tzinfo=timezone.utc))
    return ws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port; yields "host:port"."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run scripts/setup.sh (installs Debian's redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def generated_raw(tmp_path_factory) -> Path:
    """The generator's tiny data set (seeded)."""
    from couponrank.generate import generate
    from pinned import TINY

    out = tmp_path_factory.mktemp("tiny") / "raw"
    generate(out, TINY)
    return out


@pytest.fixture(scope="session")
def generated_features(tmp_path_factory, generated_raw):
    """Offline sources built from the tiny generated data: (raw dir, workspace)."""
    from couponrank.features import repo
    from couponrank.features.build import build_features

    ws = repo.init_workspace(tmp_path_factory.mktemp("tiny_repo"))
    build_features(generated_raw, ws)
    return generated_raw, ws
