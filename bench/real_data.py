"""The ranker and the baselines on real data: the UCI in-vehicle coupon survey.

    .venv/bin/python bench/real_data.py [--path CSV] [--seeds 0 1 2 3 4]

Adapts the survey straight to a training set (training/real_data.py), then for each
split (by respondent = cold-start users; warm = each respondent's situations split
60/20/20) trains the LightGBM ranker and every baseline except the oracle and scores
the test part. Prints markdown: the adapter summary, one table per split and
population for the first seed, and the mean +- std over all seeds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from couponrank.training import real_data as rd

COLUMNS = ["ndcg@1", "ndcg@3", "ndcg@5", "precision@3", "recall@3", "map", "auc"]
SPLIT_TITLE = {"respondent": "split by respondent (no test respondent seen in training: cold start)",
               "warm": "warm users (each respondent's situations split 60/20/20)"}
POPULATION_TITLE = {"groups_2plus": "groups with >= 2 coupons", "all": "all groups (incl. single-coupon)"}


def markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", type=Path, default=rd.DATA_PATH)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    raw = rd.load_uci(args.path)
    frame = rd.to_training_set(raw)
    adapt_s = time.perf_counter() - t0
    sizes = rd.group_size_counts(frame)
    print(f"# Real data: UCI in-vehicle coupons\n\n{args.path}: {len(raw):,} rows, "
          f"{frame.user_id.nunique()} respondents, {frame.request_id.nunique():,} ranking groups, "
          f"{frame.coupon_id.nunique()} coupons, {(frame.label == 2).mean():.1%} accepted; "
          f"load + adapt {adapt_s:.2f}s\n")
    print("group size -> groups: " + ", ".join(f"{k}: {v}" for k, v in sizes.items()))
    print("missing answers (NaN, kept): " + ", ".join(f"{k} {v}" for k, v in rd.missing_counts(frame).items()))

    tables = []
    for split in rd.SPLITS:
        for seed in args.seeds:
            t = time.perf_counter()
            table = rd.evaluate_frame(frame, split=split, seed=seed)
            table["run_seconds"] = time.perf_counter() - t
            tables.append(table)
            if seed == args.seeds[0]:
                a = table.attrs
                print(f"\n## {SPLIT_TITLE[split]}, seed {seed}\n")
                print("parts (rows / groups / respondents): " + "; ".join(
                    f"{p} {a['rows'][p]:,} / {a['groups'][p]:,} / {a['respondents'][p]}" for p in a["rows"]))
                print(f"ranker: {a['ranker_best_iteration']} trees, validation NDCG@5 "
                      f"{a['ranker_validation_ndcg@5']:.4f}; training groups with both labels (the only ones "
                      f"lambdarank learns from): {a['train_groups_with_pairs']:,} "
                      f"({a['train_rows_in_groups_with_pairs']:,} of {a['rows']['train']:,} rows); "
                      f"run {table['run_seconds'].iat[0]:.2f}s")
                for population in ("groups_2plus", "all"):
                    sub = table[table.population == population]
                    out = sub[["model", *COLUMNS]].copy()
                    out["groups"] = sub["n_groups"].astype(int).astype(str)
                    out["fit s"] = sub["fit_seconds"].map(lambda s: f"{s:.2f}")
                    print(f"\n### {POPULATION_TITLE[population]}\n")
                    print(markdown(out))
    every = pd.concat(tables, ignore_index=True)
    if len(args.seeds) > 1:
        print(f"\n## mean +- std over seeds {args.seeds}, groups with >= 2 coupons\n")
        sub = every[every.population == "groups_2plus"]
        for split in rd.SPLITS:
            g = sub[sub.split == split].groupby("model", sort=False)
            rows = pd.DataFrame({c: [f"{m:.4f} +- {s:.4f}" for m, s in zip(g[c].mean(), g[c].std())]
                                 for c in ["ndcg@1", "ndcg@3", "map", "auc"]}, index=g["ndcg@1"].mean().index)
            # how often each model beats the ranker on NDCG@3 (paired by seed)
            wide = sub[sub.split == split].pivot(index="seed", columns="model", values="ndcg@3")
            rows["seeds beating ranker on ndcg@3"] = [
                "-" if m == rd.RANKER else f"{int((wide[m] > wide[rd.RANKER]).sum())}/{len(wide)}"
                for m in rows.index]
            print(f"### {SPLIT_TITLE[split]}\n")
            print(markdown(rows.reset_index()) + "\n")
    print(f"total {time.perf_counter() - t0:.1f}s "
          f"({every.drop_duplicates(['split', 'seed']).run_seconds.median():.2f}s median per split x seed)")
    print(f"\ncommand: {shlex.join(['.venv/bin/python', 'bench/real_data.py', *sys.argv[1:]])}")


if __name__ == "__main__":
    main()
