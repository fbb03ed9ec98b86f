"""Overload: goodput with many clients on tight deadlines, load shedding on and off.

    .venv/bin/python bench/shed.py [--seconds 10] [--deadline-ms 50] [--clients 8,64]

The tiny demo workspace (built once into --workdir) served by ``couponrank serve`` in
its own process, one process; ghz (installed into bench/.bin on first use)
sends RankCoupons for every active coupon of a random user at the home placement, each
call with a ``--deadline-ms`` deadline, from N concurrent clients for ``--seconds``.

Two servers in the same run:
* **shedding** (the defaults): at most 4 running + 8 queued calls, RESOURCE_EXHAUSTED
  at once beyond that, and calls whose deadline leaves less than a typical answer's
  time refused before any work (DEADLINE_EXCEEDED);
* **no shedding** (the baseline, the server's former defaults: ``--threads 8
  --max-queued -1 --no-admission``): every call queues.

Prints per server and client count: goodput (OK answers per second), the status
codes, and the median / p99 latency of refused calls (RESOURCE_EXHAUSTED and the
server's early DEADLINE_EXCEEDED, as ghz saw them). Goals (issue 12): with 64 clients
goodput >= 90% of the 8-client figure, and shed calls answered within 5 ms. Then
(``--burst``, default 5,000) a burst of calls without deadlines from 64 clients while a
probe caller (1 s deadline) calls every 20 ms: how long the burst held the server and
what the probe got meanwhile (issue 12's report: such a burst starved others for 5.6 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers, also when imported
from ghz import ghz_binary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "protos" / "couponrank" / "v1" / "coupon_ranking_service.proto"


def requests(repo: Path, n: int, when: str, seed: int = 0) -> list[dict]:
    users = pd.read_parquet(repo / "data" / "user_activity.parquet", columns=["user_id"]).user_id.astype(str)
    users = np.sort(users.unique())
    rng = np.random.default_rng(seed)
    return [{"user_id": str(u), "top_k": 5,
             "context": {"placement": "PLACEMENT_HOME", "request_time": when,
                         "cart_total": {"currency_code": "USD", "amount_minor": int(rng.integers(0, 30_000))}}}
            for u in rng.choice(users, n)]


def load(addr: str, data: list[dict], clients: int, seconds: float, deadline_ms: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        out = subprocess.run([str(ghz_binary()), "--insecure", "--proto", str(PROTO), "--import-paths",
                              str(ROOT / "protos"), "--call", "couponrank.v1.CouponRankingService.RankCoupons",
                              "-D", f.name, "-c", str(clients), "-z", f"{seconds}s",
                              "--connections", str(min(clients, 8)), "-t", f"{deadline_ms}ms", "-O", "json", addr],
                             capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if out.returncode != 0 and not out.stdout:
        raise SystemExit(f"ghz failed: {out.stderr}")
    report = json.loads(out.stdout)
    details = report.get("details") or []
    codes: dict[str, int] = {}
    shed_ms = []
    for d in details:
        status = d.get("status") or "OK"
        codes[status] = codes.get(status, 0) + 1
        if status == "ResourceExhausted" or "refused before any work" in (d.get("error") or ""):
            shed_ms.append(d["latency"] / 1e6)
    ok = codes.get("OK", 0)
    return {"goodput": ok / seconds, "codes": codes, "shed": len(shed_ms),
            "shed_p50": float(np.median(shed_ms)) if shed_ms else None,
            "shed_p99": float(np.percentile(shed_ms, 99)) if shed_ms else None}


class Probe:
    """A caller apart from the load generator: one RankCoupons every 20 ms (one
    attempt, ``deadline_ms``), its latency recorded by status code."""

    def __init__(self, addr: str, when: str, deadline_ms: int):
        import threading

        self.addr, self.when, self.timeout = addr, pd.Timestamp(when).to_pydatetime(), deadline_ms / 1000
        self.ms: dict[str, list[float]] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        from couponrank.client import CouponRankClient, CouponRankError

        with CouponRankClient(self.addr, timeout=self.timeout, max_attempts=1) as c:
            while not self._done.is_set():
                t0 = time.perf_counter()
                try:
                    c.rank_coupons("u000001", placement="home", top_k=5, request_time=self.when)
                    code = "OK"
                except CouponRankError as exc:
                    code = exc.code.name
                self.ms.setdefault(code, []).append((time.perf_counter() - t0) * 1000)
                time.sleep(0.02)

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def codes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.ms.items()}

    def p50(self, code: str | None = None) -> float | None:
        xs = [x for k, v in self.ms.items() if code in (None, k) for x in v]
        return float(np.median(xs)) if xs else None


def burst(addr: str, data: list[dict], calls: int, when: str) -> dict:
    """``calls`` RankCoupons at once from 64 clients without deadlines (ghz), while a
    probe caller (1 s deadline) measures what the others get meanwhile."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    t0 = time.perf_counter()
    try:
        with Probe(addr, when, 1_000) as probe:
            out = subprocess.run([str(ghz_binary()), "--insecure", "--proto", str(PROTO), "--import-paths",
                                  str(ROOT / "protos"), "--call", "couponrank.v1.CouponRankingService.RankCoupons",
                                  "-D", f.name, "-c", "64", "-n", str(calls), "--connections", "8", "-t", "0",
                                  "-O", "json", addr], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    seconds = time.perf_counter() - t0
    report = json.loads(out.stdout)
    xs = [x for v in probe.ms.values() for x in v]
    return {"seconds": seconds, "codes": report.get("statusCodeDistribution", {}), "probe_codes": probe.codes(),
            "probe_p50": probe.p50(), "probe_max": float(np.max(xs))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--deadline-ms", type=int, default=50)
    ap.add_argument("--clients", default="8,64")
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench-tiny")
    ap.add_argument("--server-args", default="", help="extra `couponrank serve` arguments for both servers")
    ap.add_argument("--only", choices=["shedding", "no shedding"], help="run one server only")
    ap.add_argument("--burst", type=int, default=5_000,
                    help="then a burst of this many calls without deadlines, with a probe caller (0: none)")
    args = ap.parse_args()
    from tiny_workspace import REQUEST_TIME, workspace

    repo, models = workspace(args.workdir)
    data = requests(repo, 2_000, REQUEST_TIME)
    ghz_binary()
    clients = [int(c) for c in args.clients.split(",")]
    rows, bursts = [], []
    # the baseline: the server as it was before shedding (8 threads, every call queued)
    for name, extra in (("shedding", []), ("no shedding", ["--threads", "8", "--max-queued", "-1", "--no-admission"])):
        if args.only and name != args.only:
            continue
        extra = [*args.server_args.split(), *extra]
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "couponrank"), "serve", "--quiet", "--repo", str(repo),
                                   "--model", str(models), "--port", str(port), "--drain", "0", *extra],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        addr = f"127.0.0.1:{port}"
        try:
            import grpc

            with grpc.insecure_channel(addr) as ch:
                grpc.channel_ready_future(ch).result(timeout=120)
            load(addr, data, 4, 2.0, 1_000)  # warm-up (and admission's typical answer time)
            for c in clients:
                with Probe(addr, REQUEST_TIME, args.deadline_ms) as probe:
                    r = load(addr, data, c, args.seconds, args.deadline_ms)
                r["probe"] = probe
                rows.append((name, c, r))
                time.sleep(1.0)
            if args.burst:
                bursts.append((name, burst(addr, data, args.burst, REQUEST_TIME)))
        finally:
            server.terminate()
            server.wait(30)

    print(f"\n{args.seconds:.0f} s per row, {args.deadline_ms} ms deadlines, tiny workspace, one server process")
    print("| server | clients | goodput (OK/s) | status codes | shed calls | shed p50 ms | shed p99 ms |")
    print("|---|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for name, c, r in rows:
        print(f"| {name} | {c} | {r['goodput']:.0f} | {r['codes']} | {r['shed']} | {fmt(r['shed_p50'])} | "
              f"{fmt(r['shed_p99'])} |")
    print("\nThe probe caller meanwhile (a call every 20 ms, same deadline, not part of the load):")
    print("| server | clients | probe codes | p50 ms, OK | p50 ms, RESOURCE_EXHAUSTED |")
    print("|---|---|---|---|---|")
    for name, c, r in rows:
        p = r["probe"]
        print(f"| {name} | {c} | {p.codes()} | {fmt(p.p50('OK'))} | {fmt(p.p50('RESOURCE_EXHAUSTED'))} |")
    if bursts:
        print(f"\nA burst of {args.burst} calls without deadlines from 64 clients, and a probe caller (1 s "
              "deadline, a call every 20 ms) meanwhile")
        print("| server | burst took s | burst status codes | probe codes | probe p50 ms | probe max ms |")
        print("|---|---|---|---|---|---|")
        for name, b in bursts:
            print(f"| {name} | {b['seconds']:.1f} | {b['codes']} | {b['probe_codes']} | {b['probe_p50']:.1f} | "
                  f"{b['probe_max']:.0f} |")
    for name in ("shedding", "no shedding"):
        mine = {c: r for n, c, r in rows if n == name}
        if not mine:
            continue
        lo, hi = min(mine), max(mine)
        print(f"{name}: goodput with {hi} clients = {mine[hi]['goodput'] / max(mine[lo]['goodput'], 1e-9):.0%} "
              f"of {lo} clients'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
