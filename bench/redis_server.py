"""A redis-server of a bench's own, for the Redis event log (bench/events.py,
bench/replay.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def start_redis(work: Path, appendfsync: str) -> tuple[subprocess.Popen, str]:
    """A redis-server of the bench's own on a free loopback port, with an empty AOF."""
    import shutil
    import socket

    import redis

    folder = work / "redis"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "yes", "--appendfsync", appendfsync, "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")
