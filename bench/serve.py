"""RankCoupons latency and throughput over gRPC, against the naive path, in one run.

    .venv/bin/python bench/serve.py [--workdir data/bench-serve] [--requests 2000]

Set-up, once (cached in --workdir; delete it to start over): synthetic data with
enough coupons that 500 are valid at once (10k users, 4,000 coupons, 60 days),
features built, registry applied, every view materialized into SQLite by Feast, a
point-in-time training set, and a ranker trained with early stopping off so that it
has exactly 300 trees over the features of the shipped config's feature service; then the trees are
compiled (timed: the cost the compiled-model cache saves at each start).

Then, in the same run:

1. **served**: ``couponrank serve`` (SQLite online store) in its own process; this
   process sends requests one at a time over loopback gRPC and times each, client
   side: 200 candidates (``top_k`` 10), 500 candidates, 200 candidates with
   explanations. Users are drawn at random from those with features, candidates at
   random from the coupons valid at the request time, placement and cart at random.
   With ``--ingest-rate N``, the 200-candidate requests again while another process
   records N view events/s into the same server (RecordEvents, batches of 100; the
   server writes its event log and pushes the users' recent activity): issue 11's
   "p99 with ingestion as without", and the ratios.
2. **naive**, the baseline, in this process: Feast ``get_online_features`` with the
   model's feature service for the user x the same candidates (the on-demand
   features computed by Feast from the request data), then ``Booster.predict``. Its
   scores are checked against the server's for the same request.
3. **throughput**: ghz (the gRPC load tool; installed into bench/.bin by
   ``go install`` on first use) with several concurrent clients on the same request
   mix, 200 candidates each.

Prints medians and percentiles, ratios and the goals (issue 4): p50 <= 3 ms and
p99 <= 8 ms at 200 candidates, >= 15x the naive path, p50 <= 6 ms at 500 candidates,
>= 1,500 requests/s at p99 <= 25 ms.
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
PLACEMENTS = ("home", "cart", "checkout")


# ------------------------------------------------------------------ set-up
def prepare(work: Path, config_path: Path | None = None) -> tuple[Path, Path, Path]:
    """raw, feature repo, models (a folder per training config): generated, built, materialized and trained once."""
    import yaml

    from couponrank.features import repo as feast_repo
    from couponrank.features.build import build_features
    from couponrank.generate import SIZES, generate
    from couponrank.training.dataset import TrainingSet, build_training_set, feature_names, label_impressions
    from couponrank.training.pipeline import train
    from couponrank.training.ranker import CONFIG_PATH, load_config

    config_path = config_path or CONFIG_PATH
    service = load_config(config_path)["feature_service"]
    raw, ws = work / "raw", work / "features"
    models = work / ("models" if config_path == CONFIG_PATH else f"models-{service}")
    if not (raw / "manifest.json").exists():
        t = time.perf_counter()
        generate(raw, SIZES["demo"].replace(n_users=10_000, n_coupons=4_000, n_items=15_000, days=60,
                                            target_events=1_200_000, name="bench-serve"))
        feast_repo.init_workspace(ws)
        build_features(raw, ws)
        feast_repo.apply(ws)
        print(f"set-up: data generated and features built in {time.perf_counter() - t:.0f} s", flush=True)
    marker = ws / "data" / "materialized.json"
    if not marker.exists():
        end = feast_repo.last_snapshot(ws) + pd.Timedelta(seconds=1)
        t = time.perf_counter()
        feast_repo.materialize(ws, end=end.to_pydatetime())
        marker.write_text(json.dumps({"end": end.isoformat(), "seconds": time.perf_counter() - t}))
        print(f"set-up: feast materialize (SQLite) in {time.perf_counter() - t:.0f} s", flush=True)
    if not (models / "LATEST").exists():
        cache = work / f"training_set.{service}.parquet"
        if cache.exists():
            ts = TrainingSet(pd.read_parquet(cache), feature_names(feast_repo.store(ws), service), service)
        else:
            ts = build_training_set(ws, label_impressions(raw), service)
            ts.frame.to_parquet(cache)
        config = yaml.safe_load(config_path.read_text())
        config.update(num_boost_round=300, early_stopping_rounds=0)  # exactly 300 trees
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ranker.yaml"
            path.write_text(yaml.safe_dump(config))
            t = time.perf_counter()
            result = train(raw, ws, models, path, training_set=ts, quiet=True)
        print(f"set-up: trained {result.version} in {time.perf_counter() - t:.0f} s", flush=True)
    return raw, ws, models


def compile_seconds(models: Path) -> tuple[float, int, int]:
    """Seconds to compile the trees (cache removed first), trees, features."""
    import lightgbm as lgb

    from couponrank.server.scorer import cache_dirs, compile_artifact
    from couponrank.training.artifact import load_artifact

    art = load_artifact(models)
    for d in cache_dirs(art):
        for f in d.glob("*.o"):
            if f.name.startswith(art.metadata["checksums"]["model.txt"][:16]):
                f.unlink()
    t = time.perf_counter()
    compile_artifact(art)
    booster = lgb.Booster(model_file=str(art.model_file))
    return time.perf_counter() - t, booster.num_trees(), booster.num_feature()


# ------------------------------------------------------------------ requests
def request_mix(raw: Path, ws: Path, when: pd.Timestamp, n: int, candidates: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    users = pd.read_parquet(ws / "data" / "user_activity.parquet", columns=["user_id"]).user_id.astype(str).unique()
    coupons = pd.read_parquet(raw / "coupons.parquet")
    t = when.to_pydatetime()
    valid = coupons[(coupons.valid_from <= t) & (t < coupons.valid_to)].coupon_id.astype(str).to_numpy()
    if len(valid) < candidates:
        raise SystemExit(f"only {len(valid)} coupons valid at {when}; need {candidates}")
    out = []
    for _ in range(n):
        out.append({
            "user_id": str(rng.choice(users)),
            "candidate_coupon_ids": [str(c) for c in rng.choice(valid, size=candidates, replace=False)],
            "placement": str(rng.choice(PLACEMENTS)),
            "cart_total_minor": int(rng.integers(0, 40_000)),
        })
    return out


def to_proto(r: dict, when: pd.Timestamp, top_k: int = 10, explain: bool = False):
    from google.protobuf.timestamp_pb2 import Timestamp

    from couponrank.v1 import coupon_ranking_service_pb2 as pb

    ts = Timestamp()
    ts.FromDatetime(when.to_pydatetime())
    return pb.RankCouponsRequest(
        user_id=r["user_id"], candidate_coupon_ids=r["candidate_coupon_ids"], top_k=top_k, explain=explain,
        context=pb.RequestContext(placement=pb.Placement.Value(f"PLACEMENT_{r['placement'].upper()}"),
                                  cart_total=pb.Money(amount_minor=r["cart_total_minor"], currency_code="USD"),
                                  request_time=ts))


def to_json(r: dict, when: pd.Timestamp, top_k: int = 10) -> dict:
    return {"user_id": r["user_id"], "candidate_coupon_ids": r["candidate_coupon_ids"], "top_k": top_k,
            "context": {"placement": f"PLACEMENT_{r['placement'].upper()}",
                        "cart_total": {"amount_minor": str(r["cart_total_minor"]), "currency_code": "USD"},
                        "request_time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}}


# ------------------------------------------------------------------ the two paths
def start_server(ws: Path, models: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).parent / "couponrank"
    proc = subprocess.Popen([str(exe), "serve", "--repo", str(ws), "--model", str(models), "--port", "0",
                             "--host", "127.0.0.1", "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("serving model"):
            return proc, line.split(" on ", 1)[1].split(" ", 1)[0]
    raise SystemExit(f"server did not start (exit {proc.wait()})")


def served_latency(stub, requests: list, warmup: int = 50) -> np.ndarray:
    for req in requests[:warmup]:
        stub.RankCoupons(req, timeout=5)
    out = []
    for req in requests:
        t = time.perf_counter()
        stub.RankCoupons(req, timeout=5)
        out.append(time.perf_counter() - t)
    return np.array(out) * 1e3


class NaivePath:
    """Feast get_online_features + Booster.predict: what a first version would do."""

    def __init__(self, ws: Path, models: Path):
        import lightgbm as lgb

        from couponrank.features import repo as feast_repo
        from couponrank.training.artifact import load_artifact

        self.store = feast_repo.store(ws)
        art = load_artifact(models)
        # the service the model was trained on (artifacts without one: ranker_v1)
        self.service = self.store.get_feature_service(art.metadata.get("feature_service", "ranker_v1"))
        self.booster = lgb.Booster(model_file=str(art.model_file))
        self.features = list(art.features)
        attrs = pd.read_parquet(ws / "data" / "coupon_attributes.parquet", columns=["coupon_id", "coupon_target_category"])
        self.category = dict(zip(attrs.coupon_id.astype(str), attrs.coupon_target_category.astype(str)))

    def scores(self, r: dict, when: pd.Timestamp) -> tuple[list[str], np.ndarray]:
        ids = r["candidate_coupon_ids"]
        n = len(ids)
        rows = {"user_id": [r["user_id"]] * n, "coupon_id": ids, "category": [self.category[c] for c in ids],
                "cart_value": [r["cart_total_minor"] / 100] * n, "cart_categories": [""] * n,
                "placement": [r["placement"]] * n, "request_ts_unix": [when.timestamp()] * n}
        got = self.store.get_online_features(features=self.service, entity_rows=rows).to_dict()
        X = np.column_stack([np.array(got[f], dtype=np.float64) for f in self.features])
        return ids, self.booster.predict(X, raw_score=True, num_threads=1)

    def latency(self, requests: list[dict], when: pd.Timestamp) -> np.ndarray:
        self.scores(requests[0], when)
        out = []
        for r in requests:
            t = time.perf_counter()
            self.scores(r, when)
            out.append(time.perf_counter() - t)
        return np.array(out) * 1e3


def throughput(addr: str, data: list[dict], concurrency: int, total: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    try:
        # the call is resolved from the proto file: ghz's reflection client cannot resolve a
        # method symbol from grpcio-reflection's v1alpha service
        out = subprocess.run([str(ghz_binary()), "--insecure", "--proto",
                              str(ROOT / "protos" / "couponrank" / "v1" / "coupon_ranking_service.proto"),
                              "--import-paths", str(ROOT / "protos"), "--call",
                              "couponrank.v1.CouponRankingService.RankCoupons", "-D", f.name,
                              "-c", str(concurrency), "-n", str(total), "--connections", str(min(concurrency, 4)),
                              "-t", "5s", "-O", "json", addr], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"ghz failed: {out.stderr or out.stdout}")
        out = out.stdout
    finally:
        os.unlink(f.name)
    report = json.loads(out)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in report.get("latencyDistribution") or []}
    return {"rps": report["rps"], "p50": lat.get(50), "p99": lat.get(99),
            "codes": report.get("statusCodeDistribution", {})}


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=str(ROOT / "data" / "bench-serve"))
    ap.add_argument("--requests", type=int, default=2000, help="timed served requests per case")
    ap.add_argument("--naive-requests", type=int, default=60, help="timed naive-path requests")
    ap.add_argument("--concurrency", default="4,8,16", help="ghz concurrent clients, comma-separated")
    ap.add_argument("--load-requests", type=int, default=10_000, help="requests per ghz run")
    ap.add_argument("--server-args", default="", help="extra `couponrank serve` arguments")
    ap.add_argument("--config", type=Path, help="training config of the served model (default: training/ranker.yaml); "
                                                "its model is trained into WORKDIR/models-<feature service>")
    ap.add_argument("--ingest-rate", type=float, default=0.0, metavar="EVENTS_PER_S",
                    help="also time the 200-candidate requests while another process records view events at this "
                         "rate over RecordEvents (batches of 100; bench/events.py's client); 0: not")
    args = ap.parse_args()
    import grpc

    from couponrank.features import repo as feast_repo
    from couponrank.v1 import coupon_ranking_service_pb2_grpc as pb_grpc

    work = Path(args.workdir)
    raw, ws, models = prepare(work, args.config)
    when = feast_repo.last_snapshot(ws) + pd.Timedelta(hours=1)
    seconds, trees, features = compile_seconds(models)
    print(f"model: {trees} trees, {features} features; lleaves compile {seconds:.1f} s (cached with the artifact)")

    mix200 = request_mix(raw, ws, when, args.requests, 200, seed=1)
    mix500 = request_mix(raw, ws, when, args.requests, 500, seed=2)
    proc, addr = start_server(ws, models, args.server_args.split())

    def row(name: str, candidates: int, lat: np.ndarray, goal: str) -> None:
        print(f"| {name} | {candidates} | {pct(lat, 50):.2f} | {pct(lat, 90):.2f} | {pct(lat, 99):.2f} | {goal} |",
              flush=True)

    try:
        channel = grpc.insecure_channel(addr)
        stub = pb_grpc.CouponRankingServiceStub(channel)
        print(f"\nrequest time {when}; {args.requests} timed requests per served case\n")
        print("| path | candidates | p50 ms | p90 ms | p99 ms | goal |")
        print("|---|---|---|---|---|---|")
        lat200 = served_latency(stub, [to_proto(r, when) for r in mix200])
        row("served (gRPC, SQLite, compiled trees)", 200, lat200, "p50 <= 3, p99 <= 8")
        if args.ingest_rate > 0:  # the same requests while another client records events
            import multiprocessing as mp

            from couponrank.clock import unix_now

            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from events import _stream  # bench/events.py's streaming client

            items = sorted(pd.read_parquet(ws / "data" / "item_catalog.parquet", columns=["item_id"]).item_id.astype(str))
            stop, sent = mp.Event(), mp.Value("q", 0)
            streamer = mp.Process(target=_stream, args=(addr, unix_now() - 60, stop, items, args.ingest_rate, sent))
            streamer.start()
            time.sleep(2.0)  # under way before the timing starts
            t, before = time.perf_counter(), sent.value
            lat_ingest = served_latency(stub, [to_proto(r, when) for r in mix200])
            rate = (sent.value - before) / (time.perf_counter() - t)
            stop.set()
            streamer.join(30)
            row(f"served while another client records {rate:,.0f} events/s (views, batches of 100)", 200, lat_ingest,
                "p99 as without")
            print(f"(with / without ingestion: p50 x{pct(lat_ingest, 50) / pct(lat200, 50):.2f}, "
                  f"p99 x{pct(lat_ingest, 99) / pct(lat200, 99):.2f})", flush=True)
        lat500 = served_latency(stub, [to_proto(r, when) for r in mix500])
        row("served", 500, lat500, "p50 <= 6")
        lat_explain = served_latency(stub, [to_proto(r, when, explain=True) for r in mix200[: args.requests // 4]])
        row("served, explain=true", 200, lat_explain, "-")

        naive = NaivePath(ws, models)
        lat_naive = naive.latency(mix200[: args.naive_requests], when)
        row(f"naive (Feast get_online_features + Booster.predict, in-process; {args.naive_requests} requests)",
            200, lat_naive, "-")
        print(f"\nnaive p50 / served p50 = {pct(lat_naive, 50) / pct(lat200, 50):.1f}x (goal >= 15x)")
        # the same scores on both paths (the request asks for every candidate back)
        check = mix200[0]
        resp = stub.RankCoupons(to_proto(check, when, top_k=500), timeout=5)
        served = {c.coupon_id: c.score for c in resp.ranked_coupons}
        ids, naive_scores = naive.scores(check, when)
        diff = max(abs(served[i] - s) for i, s in zip(ids, naive_scores) if i in served)
        print(f"check request: {len(served)} of 200 candidates eligible and scored; "
              f"max |served - naive| score {diff:.2e}")

        print("\n| concurrent clients (ghz) | requests/s | p50 ms | p99 ms | status codes |")
        print("|---|---|---|---|---|")
        data = [to_json(r, when) for r in mix200[:500]]
        for c in [int(x) for x in args.concurrency.split(",") if x]:
            r = throughput(addr, data, c, args.load_requests)
            print(f"| {c} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['codes']} |", flush=True)
        print("(goal: >= 1,500 requests/s at p99 <= 25 ms)")
        channel.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\ncommand: .venv/bin/python bench/serve.py {' '.join(sys.argv[1:])}".rstrip())


if __name__ == "__main__":
    main()
