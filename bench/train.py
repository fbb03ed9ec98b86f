"""Benchmark and quality run for `couponrank train` on ~1M synthetic impressions.

    .venv/bin/python bench/train.py [--workdir data/bench-train] [--users 10000]

Generates a data set sized for ~1M impressions (10k users, 600 coupons, 90 days),
builds features, applies the registry, builds the point-in-time training set through
Feast (timed), then trains the LightGBM ranker (timed; goal <= 90 s on 2 cores) and
every baseline in the same run, printing NDCG@5 of each against the ranker and the
oracle. The baselines' fit times are the in-run reference for the ranker's.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd

from couponrank.features import repo as feast_repo
from couponrank.features.build import build_features
from couponrank.generate import SIZES, generate
from couponrank.training import evaluate
from couponrank.training.dataset import TrainingSet, build_training_set, feature_names, label_impressions
from couponrank.training.pipeline import train
from couponrank.training.ranker import load_config, train_ranker
from couponrank.training.split import time_split

ROOT = Path(__file__).resolve().parents[1]


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=str(ROOT / "data" / "bench-train"))
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3, help="ranker fits to time (median)")
    ap.add_argument("--config", type=Path, help="training config (default: training/ranker.yaml)")
    args = ap.parse_args()
    work = Path(args.workdir)
    raw, ws, models = work / "raw", work / "features", work / "models"
    config = SIZES["demo"].replace(n_users=args.users, n_coupons=600, n_items=15_000, days=90,
                                   target_events=int(1.6 * args.users * 100), name="bench-train")
    t = time.perf_counter()
    if not (raw / "manifest.json").exists():
        generate(raw, config)
        feast_repo.init_workspace(ws)
        build_features(raw, ws)
        feast_repo.apply(ws)
    print(f"data + features ready in {time.perf_counter() - t:.0f} s", flush=True)

    cfg = load_config(args.config) if args.config else load_config()
    service = cfg["feature_service"]
    cache = work / f"training_set.{service}.parquet"
    t = time.perf_counter()
    if cache.exists():
        ts = TrainingSet(pd.read_parquet(cache), feature_names(feast_repo.store(ws), service), service)
    else:
        ts = build_training_set(ws, label_impressions(raw), service)
        ts.frame.to_parquet(cache)
        print(f"training set through Feast get_historical_features: {len(ts.frame):,} impressions, "
              f"{len(ts.features)} features, {time.perf_counter() - t:.0f} s", flush=True)

    frame = ts.frame
    split = time_split(frame.event_timestamp, **cfg["split"])
    part = split.assign(frame.event_timestamp)
    tr, va = frame[part == "train"], frame[part == "validation"]
    fits = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ranker = train_ranker(tr, va, ts.features, cfg)
        fits.append(time.perf_counter() - t)
    fits.sort()
    print(f"ranker fit on {len(tr):,} train + {len(va):,} validation rows: median {fits[len(fits) // 2]:.1f} s "
          f"over {args.repeats} ({ranker.best_iteration} trees); process peak RSS {peak_gib():.2f} GiB "
          "(goal <= 90 s)", flush=True)

    result = train(raw, ws, models, config_path=args.config, training_set=ts, quiet=True)
    table = result.metrics
    all_ = table[table.population == "all"].set_index("model")
    cold = table[table.population == "cold_start"].set_index("model")
    served = table[table.population == "served"].set_index("model")
    print(f"\ntest period {split.test_start:%Y-%m-%d}..{split.test_end:%Y-%m-%d}; "
          f"{int(all_.loc[evaluate.RANKER, 'n_groups']):,} requests")
    print("| model | NDCG@5 (95% CI) | NDCG@5 served slates | NDCG@5 cold start | MAP | AUC | precision@3 | recall@3 "
          "| ranker NDCG@5 / this |")
    print("|---|---|---|---|---|---|---|---|---|")
    r5 = all_.loc[evaluate.RANKER, "ndcg@5"]
    for m in all_.index:
        c = cold.loc[m, "ndcg@5"] if m in cold.index else float("nan")
        print(f"| {m} | {all_.loc[m, 'ndcg@5']:.4f} ({all_.loc[m, 'ndcg@5_lo']:.4f}..{all_.loc[m, 'ndcg@5_hi']:.4f}) | "
              f"{served.loc[m, 'ndcg@5'] if m in served.index else float('nan'):.4f} | "
              f"{c:.4f} | {all_.loc[m, 'map']:.4f} | {all_.loc[m, 'auc']:.4f} | "
              f"{all_.loc[m, 'precision@3']:.4f} | {all_.loc[m, 'recall@3']:.4f} | {r5 / all_.loc[m, 'ndcg@5']:.3f} |")
    r = all_.loc[evaluate.RANKER]
    print(f"populations: precision over {int(r.n_groups):,} requests, recall/F1/MAP over "
          f"{int(r.n_groups_with_positive):,} with a redemption, NDCG over {int(r.n_groups_with_gain):,} with a "
          f"claim or redemption; cold start: {int(cold.loc[evaluate.RANKER, 'n_groups']):,} requests; served slates: "
          f"{int(served.loc[evaluate.RANKER, 'n_rows']):,} of {int(r.n_rows):,} impressions "
          f"({int(served.loc[evaluate.RANKER, 'n_groups_with_gain']):,} requests with a gain)")
    placements = table[table.population.str.startswith("placement=")]
    models_shown = [m for m in (evaluate.RANKER, "lightgbm_binary", "pit_popularity", "random", "oracle")
                    if m in set(placements.model)]
    print("\nNDCG@5 per placement (requests with a claim or redemption)")
    print("| placement | requests | " + " | ".join(models_shown) + " |")
    print("|---|---|" + "---|" * len(models_shown))
    for population, rows in placements.groupby("population", sort=False):
        rows = rows.set_index("model")
        print(f"| {population.removeprefix('placement=')} | {int(rows.loc[evaluate.RANKER, 'n_groups_with_gain']):,} | "
              + " | ".join(f"{rows.loc[m, 'ndcg@5']:.4f}" for m in models_shown) + " |")
    import json

    meta = json.loads((result.path / "metadata.json").read_text())
    print(f"objective: {meta['objective']} (validation NDCG@5 by objective: {meta['objective_candidates']}); "
          f"rows left out: {meta['rows_left_out']}")
    print(f"\nartifact: {result.path}; seconds: { {k: round(v, 1) for k, v in result.seconds.items()} }")
    print("command: .venv/bin/python bench/train.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
