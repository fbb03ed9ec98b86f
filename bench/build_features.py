"""Benchmark `build-features` on the large synthetic set (100k users / 5k coupons /
~10M behaviour events): wall time and peak memory, against a baseline measured in
the same run: the textbook pandas way (per-user time-based rolling windows) for one
view, user_activity, compared with our array pipeline for the same view.

    .venv/bin/python bench/build_features.py [--raw data/large] [--repeats 3]

Generates the data first if the folder is missing. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of a child process."""
    t = time.perf_counter()
    proc = subprocess.run([PY, "-c", _WRAP, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return wall, float(proc.stdout.strip().splitlines()[-1])


# Runs the command in a fresh interpreter and prints that process's peak RSS.
_WRAP = """
import resource, runpy, sys
mod, *argv = sys.argv[1:]
sys.argv = [mod, *argv]
try:
    runpy.run_module(mod, run_name="__main__")
except SystemExit as e:
    if e.code not in (0, None):
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""

_BASELINE = """
import sys, pandas as pd, time
ev = pd.read_parquet(sys.argv[1] + "/behaviour_events.parquet", columns=["user_id", "event_type", "event_ts", "amount"])
ev = ev.sort_values(["user_id", "event_ts"]).set_index("event_ts")
for t in ("view", "add_to_cart", "favourite", "order"):
    ev[t] = (ev.event_type == t).astype(float)
ev["spend"] = ev.amount.fillna(0.0)
cols = ["view", "add_to_cart", "favourite", "order", "spend"]
t = time.perf_counter()
out = [ev.groupby("user_id")[cols].rolling(w, closed="left").sum() for w in ("7D", "30D")]
print(time.perf_counter() - t)
"""

# Ours for the same view, same exclusions (data already in memory, no writing).
_OURS_ONE_VIEW = """
import sys, time
from pathlib import Path
from couponrank.features import build, cleaning
data = cleaning.clean_raw(Path(sys.argv[1]))
clock = build.make_clock(data)
t = time.perf_counter()
build.user_activity(data, clock, data.users.user_id.to_numpy())
print(time.perf_counter() - t)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", default=str(ROOT / "data" / "large"))
    ap.add_argument("--size", default="large")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    raw = Path(args.raw)
    if not (raw / "behaviour_events.parquet").exists():
        print(f"generating the {args.size} data set into {raw} ...", flush=True)
        wall, rss = run(["couponrank.cli", "generate", "--size", args.size, "--out", str(raw), "--quiet"])
        print(f"generate: {wall:.1f} s, peak {rss:.2f} GiB")

    ours, base = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            ours.append(run(["couponrank.cli", "build-features", "--raw", str(raw),
                             "--repo", f"{tmp}/repo{i}", "--quiet"]))
        one_view = []
        for script, sink in ((_BASELINE, base), (_OURS_ONE_VIEW, one_view)):
            path = Path(tmp) / "view.py"
            path.write_text(script)
            for _ in range(args.repeats):
                proc = subprocess.run([PY, str(path), str(raw)], capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(proc.stderr)
                sink.append(float(proc.stdout.strip().splitlines()[-1]))
    ow = statistics.median(w for w, _ in ours)
    orss = max(r for _, r in ours)
    bw = statistics.median(base)
    print(f"build-features (all 6 views, cleaning included): median {ow:.1f} s over {args.repeats} runs, "
          f"peak RSS {orss:.2f} GiB  (goal <= 180 s, < 8 GiB)")
    vw = statistics.median(one_view)
    print(f"user_activity view alone (data in memory): ours median {vw:.1f} s, "
          f"pandas per-user time-based rolling median {bw:.1f} s; baseline / ours = {bw / vw:.1f}x")


if __name__ == "__main__":
    main()
