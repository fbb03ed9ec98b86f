"""Server memory under malformed requests: CouponRank's own decoding against grpcio's.

    .venv/bin/python bench/malformed.py [--calls 10000] [--workdir data/bench-tiny]

Two servers, each in its own process on a loopback port, get the same calls from this
process, one at a time:

* **couponrank**: ``couponrank serve`` on the tiny demo workspace (built once into
  --workdir); it decodes requests itself (server/service.py ``generic_handler``).
* **grpcio decoder** (the baseline): a trivial CouponRankingService servicer
  registered the usual way, so grpcio deserializes the request and a malformed one
  raises inside grpcio ("Exception deserializing request!").

For each: 1,000 warm-up calls, then ``--calls`` malformed RankCoupons calls (bytes that
are no RankCouponsRequest), then as many valid GetModelInfo calls; the server's RSS
(psutil) is read before and after each batch. Prints the growth per 1,000 calls and
the status codes seen. Goal (issue 12): RSS flat over 10,000 malformed calls.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "couponrank.v1.CouponRankingService"
MALFORMED = (b"\xff\xff\xff", b"\x12\x05\xc3\x28abc", b"\x0a" + b"\x80" * 11)


def stock_server(port: int) -> None:
    """The baseline: grpcio decodes the request (run in its own process)."""
    from concurrent import futures

    import grpc

    from couponrank.v1 import coupon_ranking_service_pb2 as pb
    from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

    class Trivial(pb_grpc.CouponRankingServiceServicer):
        def RankCoupons(self, request, context):
            return pb.RankCouponsResponse(request_id=request.request_id)

        def GetModelInfo(self, request, context):
            return pb.GetModelInfoResponse(model_version="stock")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_CouponRankingServiceServicer_to_server(Trivial(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(target: str, timeout: float = 120.0) -> None:
    import grpc

    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)


def hammer(target: str, calls: int, pid: int) -> dict:
    import grpc
    import psutil

    proc = psutil.Process(pid)
    out = {}
    with grpc.insecure_channel(target) as channel:
        rank = channel.unary_unary(f"/{SERVICE}/RankCoupons")  # raw bytes, no serializer
        info = channel.unary_unary(f"/{SERVICE}/GetModelInfo")
        codes: collections.Counter = collections.Counter()

        def send(method, data, n):
            for i in range(n):
                try:
                    method(data[i % len(data)] if isinstance(data, tuple) else data, timeout=5)
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1

        send(rank, MALFORMED, 1_000)  # warm-up: thread pools, allocator arenas
        send(info, b"", 1_000)
        for name, method, data in (("malformed", rank, MALFORMED), ("valid", info, b"")):
            codes.clear()
            before = proc.memory_info().rss
            t0 = time.perf_counter()
            send(method, data, calls)
            seconds = time.perf_counter() - t0
            after = proc.memory_info().rss
            out[name] = {"kb_per_1000": (after - before) / 1024 / (calls / 1000), "codes": dict(codes),
                         "calls_per_s": calls / seconds}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench-tiny")
    ap.add_argument("--stock-server", type=int, help=argparse.SUPPRESS)  # internal: run the baseline
    args = ap.parse_args()
    if args.stock_server:
        stock_server(args.stock_server)
        return 0

    from tiny_workspace import workspace

    repo, models = workspace(args.workdir)
    results = {}
    for name in ("couponrank", "grpcio decoder"):
        port = free_port()
        cmd = ([str(ROOT / ".venv" / "bin" / "couponrank"), "serve", "--quiet", "--repo", str(repo), "--model",
                str(models), "--port", str(port), "--drain", "0"] if name == "couponrank"
               else [sys.executable, __file__, "--stock-server", str(port)])
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(f"127.0.0.1:{port}")
            results[name] = hammer(f"127.0.0.1:{port}", args.calls, server.pid)
        finally:
            server.terminate()
            _, err = server.communicate(timeout=30)
        results[name]["log_lines"] = len(err.splitlines())
    print(f"{args.calls:,} calls of each kind, one at a time over loopback; server RSS growth per 1,000 calls")
    print(f"{'server':16} {'malformed KB/1k':>16} {'valid KB/1k':>12} {'malformed codes':>30} {'log lines':>10}")
    for name, r in results.items():
        print(f"{name:16} {r['malformed']['kb_per_1000']:16.1f} {r['valid']['kb_per_1000']:12.1f} "
              f"{str(r['malformed']['codes']):>30} {r['log_lines']:10d}")
    ours, stock = results["couponrank"]["malformed"], results["grpcio decoder"]["malformed"]
    growth = stock["kb_per_1000"] * args.calls / 1000 / 1024
    print(f"over {args.calls:,} malformed calls: grpcio decoder +{growth:.1f} MB, couponrank "
          f"{ours['kb_per_1000'] * args.calls / 1000 / 1024:+.1f} MB "
          f"({'flat' if ours['kb_per_1000'] <= 2 * max(results['couponrank']['valid']['kb_per_1000'], 1) else 'GROWS'}"
          f": within the valid calls' own drift)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
