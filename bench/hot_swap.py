"""Hot model swaps under load: failed requests across N swaps (issue 12's goal: 0
failed requests across 20 swaps).

    .venv/bin/python bench/hot_swap.py [--swaps 20] [--clients 4]

The tiny demo workspace (built once into --workdir) with a models folder of two
versions (the trained model and a copy under another version name), served by
``couponrank serve`` in its own process with ``--model-refresh 0``. N client threads
(Python client, one attempt, 2 s deadline) call RankCoupons without a pause; the
bench alternates ``couponrank promote`` between the two versions and sends SIGHUP, then
waits until GetModelInfo names the new version. Every swap validates the artifact in a
child process, checks the compiled trees and smoke-scores them, in the server, while
it answers. Prints calls, failures by status, swap time (SIGHUP -> GetModelInfo shows
it) median and max, and the latency of calls made during swaps vs outside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ helpers
ROOT = Path(__file__).resolve().parents[1]


def models_folder(models: Path, out: Path) -> tuple[str, str]:
    from couponrank.training.artifact import load_artifact

    art = load_artifact(models)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(art.path, out / art.version)
    other = f"{art.version}-b"
    shutil.copytree(art.path, out / other)
    meta = json.loads((out / other / "metadata.json").read_text())
    meta["version"] = other
    (out / other / "metadata.json").write_text(json.dumps(meta))
    (out / "LATEST").write_text(art.version + "\n")
    (out / "HISTORY").write_text(art.version + "\n")
    return art.version, other


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--swaps", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=ROOT / "data" / "bench-tiny")
    args = ap.parse_args()
    from tiny_workspace import NOW, workspace

    from couponrank.client import CouponRankClient, CouponRankError

    repo, models = workspace(args.workdir)
    folder = args.workdir / "swap-models"
    first, second = models_folder(models, folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(ROOT / ".venv" / "bin" / "couponrank")
    server = subprocess.Popen([exe, "serve", "--quiet", "--repo", str(repo), "--model", str(folder),
                               "--port", str(port), "--model-refresh", "0", "--drain", "0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    addr = f"127.0.0.1:{port}"
    stop = threading.Event()
    swapping = threading.Event()
    lock = threading.Lock()
    calls, failures, lat_swap, lat_calm = 0, {}, [], []

    def load():
        nonlocal calls
        with CouponRankClient(addr, timeout=2.0, max_attempts=1) as c:
            while not stop.is_set():
                during = swapping.is_set()
                t0 = time.perf_counter()
                try:
                    c.rank_coupons("u000001", placement="home", top_k=5, request_time=NOW)
                    code = None
                except CouponRankError as exc:
                    code = exc.code.name
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    calls += 1
                    if code:
                        failures[code] = failures.get(code, 0) + 1
                    (lat_swap if during or swapping.is_set() else lat_calm).append(ms)

    swap_s = []
    try:
        with CouponRankClient(addr, timeout=5.0) as probe:
            if not probe.wait_for_ready(120):
                raise SystemExit("server did not start")
            threads = [threading.Thread(target=load) for _ in range(args.clients)]
            for t in threads:
                t.start()
            time.sleep(2.0)  # calm calls first
            for i in range(args.swaps):
                version = second if i % 2 == 0 else first
                subprocess.run([exe, "promote", version, "--models", str(folder)], check=True,
                               stdout=subprocess.DEVNULL)
                swapping.set()
                t0 = time.perf_counter()
                server.send_signal(signal.SIGHUP)
                while probe.model_info().model_version != version:
                    time.sleep(0.02)
                swap_s.append(time.perf_counter() - t0)
                swapping.clear()
                time.sleep(0.5)
            stop.set()
            for t in threads:
                t.join()
    finally:
        stop.set()
        server.terminate()
        server.wait(30)

    p = lambda xs, q: float(np.percentile(xs, q)) if xs else float("nan")  # noqa: E731
    print(f"\n{args.swaps} swaps, {args.clients} clients, {calls} calls, failed: {sum(failures.values())} {failures}")
    print(f"swap time (SIGHUP -> GetModelInfo shows it): median {np.median(swap_s):.2f} s, max {max(swap_s):.2f} s")
    print("| calls | n | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for name, xs in (("outside swaps", lat_calm), ("during swaps", lat_swap)):
        print(f"| {name} | {len(xs)} | {p(xs, 50):.2f} | {p(xs, 99):.2f} |")
    if lat_calm and lat_swap:
        print(f"p50 during / outside swaps: {p(lat_swap, 50) / p(lat_calm, 50):.2f}x")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
