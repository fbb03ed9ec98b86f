"""Memory and time of the point-in-time training-set join (issue 10: one Feast join of
800k impressions peaked at 19.2 GiB).

    .venv/bin/python bench/training_set.py [--workdir data/bench-train] [--impressions 200000]

Uses bench/train.py's synthetic workspace (10k users, 600 coupons, 90 days, ~1M
impressions; generated on first use). Each variant runs in a child process of its own,
so that its peak RSS is its own:
* the first ``--impressions`` impressions joined at once (chunk_rows=0, the former
  way) and in chunks of 100k (the default), the same rows: time, peak RSS, ratio;
* every impression in chunks of 100k: time and peak RSS; with ``--all-at-once`` also
  every impression joined at once (8.5 GiB peak on the ~1M here: over the 8 GiB budget).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(ws: Path, raw: Path, n: int, chunk: int) -> None:
    from couponrank.training.dataset import build_training_set, label_impressions
    from couponrank.training.ranker import load_config

    impressions = label_impressions(raw)
    if n:
        impressions = impressions.iloc[:n]
    t = time.perf_counter()
    ts = build_training_set(ws, impressions, load_config()["feature_service"], chunk_rows=chunk)
    print(json.dumps({"rows": len(ts.frame), "seconds": time.perf_counter() - t,
                      "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def run(ws: Path, raw: Path, n: int, chunk: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(ws), str(raw), str(n), str(chunk)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default=str(ROOT / "data" / "bench-train"))
    ap.add_argument("--impressions", type=int, default=200_000)
    ap.add_argument("--all-at-once", action="store_true", help="also join every impression at once (~8.5 GiB)")
    args = ap.parse_args()
    work = Path(args.workdir)
    raw, ws = work / "raw", work / "features"
    if not (raw / "manifest.json").exists():
        from couponrank.features import repo as feast_repo
        from couponrank.features.build import build_features
        from couponrank.generate import SIZES, generate

        config = SIZES["demo"].replace(n_users=10_000, n_coupons=600, n_items=15_000, days=90,
                                       target_events=1_600_000, name="bench-train")
        generate(raw, config)
        feast_repo.init_workspace(ws)
        build_features(raw, ws)
        feast_repo.apply(ws)
    rows = []
    for label, n, chunk in ((f"first {args.impressions:,}, at once", args.impressions, 0),
                            (f"first {args.impressions:,}, chunks of 100k", args.impressions, 100_000),
                            ("all, chunks of 100k", 0, 100_000),
                            *((("all, at once", 0, 0),) if args.all_at_once else ())):
        r = run(ws, raw, n, chunk)
        rows.append((label, r))
        print(f"{label}: {r['rows']:,} rows, {r['seconds']:.1f} s, peak {r['peak_gib']:.2f} GiB", flush=True)
    print("\n| join | rows | seconds | peak RSS GiB |\n|---|---|---|---|")
    for label, r in rows:
        print(f"| {label} | {r['rows']:,} | {r['seconds']:.1f} | {r['peak_gib']:.2f} |")
    a, b = rows[0][1], rows[1][1]
    print(f"chunks vs at once on the same rows: peak {b['peak_gib'] / a['peak_gib']:.2f}x, "
          f"time {b['seconds'] / a['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
