"""The `couponrank` command: one entry point, one subcommand per pipeline step."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path

DEFAULT_RAW = Path("data/raw")
DEFAULT_REPO = Path("features")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _utc(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"not an ISO-8601 time: {text!r}") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"{option}: not a date (YYYY-MM-DD): {text!r}") from exc


# ------------------------------------------------------------------ data + features
def cmd_generate(args) -> None:
    from dataclasses import replace

    from couponrank.generate import SIZES, generate

    config = SIZES[args.size]
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    if not 0.0 <= args.dirty_fraction < 0.5:
        raise CliError(f"--dirty-fraction must be in [0, 0.5), got {args.dirty_fraction}")
    config = replace(config, dirty_fraction=args.dirty_fraction, end_date=_date(args.end_date, "--end-date"))
    summary = generate(Path(args.out), config, progress=not args.quiet)
    m = summary.manifest
    print(f"wrote synthetic '{args.size}' data (seed {config.seed}, {m['start'][:10]} .. {m['end'][:10]}) "
          f"to {args.out} in {summary.seconds:.1f}s")
    for table, rows in summary.row_counts.items():
        print(f"  {table}: {rows:,} rows")


def cmd_import(args) -> None:
    import time

    from couponrank.importers import SourceError, get_adapter
    from couponrank.importers.writer import RawWriteError, write_raw

    t0 = time.perf_counter()
    try:
        adapter = get_adapter(args.adapter)
        if not args.quiet:
            print(f"[import {adapter.name}] reading the source", file=sys.stderr, flush=True)
        frames = adapter.load(Path(args.source) if args.source else None)
        if not args.quiet:
            print(f"[import {adapter.name}] {time.perf_counter() - t0:.1f}s mapping", file=sys.stderr, flush=True)
        imported = adapter.convert(frames, households=args.households, seed=args.seed)
        manifest = write_raw(Path(args.out), imported)
    except (SourceError, RawWriteError) as exc:
        raise CliError(f"{exc} (nothing written)") from exc
    print("\n".join(imported.report.lines()))
    print(f"imported {adapter.name} ({manifest['start'][:10]} .. {manifest['end'][:10]}) to {args.out} "
          f"in {time.perf_counter() - t0:.1f}s")
    for table, rows in manifest["row_counts"].items():
        print(f"  {table}: {rows:,} rows")


def cmd_build_features(args) -> None:
    import shutil

    from couponrank.features import repo
    from couponrank.features.build import build_features
    from couponrank.features.cleaning import RawDataError
    from couponrank.features.custom import BuilderError
    from couponrank.features.membership import MembershipConfigError

    folder = Path(args.repo)
    # lay out a new folder as a Feast repository; never overwrite a workspace's own
    # definitions.py (a feature engineer's views) with the project's
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name in repo.REPO_FILES:
        if not (folder / name).exists():
            shutil.copy2(repo.REPO_DIR / name, folder / name)
    try:
        summary = build_features(Path(args.raw), folder, progress=not args.quiet)
    except (RawDataError, MembershipConfigError) as exc:
        raise CliError(str(exc)) from exc
    except BuilderError as exc:
        raise CliError(f"{exc} (build-features stopped; every file already in {folder / 'data'} is kept as it "
                       "is)") from exc
    print("\n".join(summary.report.lines()))
    print(f"snapshots {summary.start:%Y-%m-%d} .. {summary.end:%Y-%m-%d}; "
          f"wrote offline sources to {folder / 'data'} in {summary.seconds['total']:.1f}s")
    for name, rows in summary.rows.items():
        print(f"  {name}: {rows:,} rows" + (" (builders.py)" if name in summary.custom else ""))
    for stale in summary.stale:
        print(stale.line(), file=sys.stderr)


def cmd_apply(args) -> None:
    from couponrank.features import repo
    from couponrank.features.custom import OfflineSourceError

    try:
        repo.apply(Path(args.repo), online=args.online)
    except (repo.CopiedRegistryError, OfflineSourceError) as exc:
        raise CliError(str(exc)) from exc


def cmd_materialize(args) -> None:
    from couponrank.features import repo

    end = _utc(args.end) if args.end else None
    repo.materialize(Path(args.repo), end=end, online=args.online)
    print(f"materialized {args.repo} into the {args.online} online store")


def cmd_promote(args) -> None:
    from couponrank.training.artifact import ArtifactError, promote

    try:
        art = promote(Path(args.models), args.version)
    except ArtifactError as exc:
        raise CliError(str(exc)) from exc
    print(f"{args.models}/LATEST -> {art.version}; a server on {args.models} swaps it in at its next check "
          "(or now, on SIGHUP)")


def cmd_rollback(args) -> None:
    from couponrank.training.artifact import ArtifactError, rollback

    try:
        version = rollback(Path(args.models))
    except ArtifactError as exc:
        raise CliError(str(exc)) from exc
    print(f"{args.models}/LATEST -> {version} (rolled back)")


def cmd_features(args) -> None:
    from couponrank.features import repo

    fs = repo.store(Path(args.repo), online=args.online)
    row = {"user_id": args.user, "coupon_id": args.coupon}
    names = [f"{v.name}:{f.name}" for v in fs.list_feature_views()
             if set(v.entities) <= {"user", "coupon"} for f in v.features]
    result = fs.get_online_features(features=names, entity_rows=[row]).to_dict()
    print(json.dumps({k: v[0] for k, v in result.items()}, indent=2, default=str))


# ------------------------------------------------------------------ training
DEFAULT_MODELS = Path("artifacts/models")


def cmd_train(args) -> None:
    from couponrank.training.artifact import ArtifactError
    from couponrank.training.dataset import TrainingDataError
    from couponrank.training.pipeline import train

    try:
        result = train(Path(args.raw), Path(args.repo), Path(args.models),
                       Path(args.config) if args.config else None, quiet=args.quiet)
    except (TrainingDataError, ArtifactError, ValueError) as exc:
        raise CliError(f"{exc} (no model artifact written)") from exc
    _print_table(result.metrics)
    print(f"model artifact {result.version} -> {result.path} (report: {result.path / 'report.html'})")
    _compile(result.path)


def _compile(artifact_path: Path) -> None:
    """Compile the trees for serving now, so that a server starting on this artifact
    finds them cached (server/scorer.py); a failure only costs the server the time."""
    from couponrank.server.scorer import compile_artifact
    from couponrank.training.artifact import load_artifact

    try:
        print(f"compiled scorer cached -> {compile_artifact(load_artifact(artifact_path))}")
    except Exception as exc:  # lleaves/LLVM missing or failing: serving falls back or compiles itself
        print(f"warning: could not compile the model for serving ({type(exc).__name__}: {exc})", file=sys.stderr)


def cmd_evaluate(args) -> None:
    from couponrank.training.artifact import ArtifactError
    from couponrank.training.dataset import TrainingDataError
    from couponrank.training.pipeline import evaluate_model

    try:
        table = evaluate_model(Path(args.model), Path(args.raw), Path(args.repo),
                               Path(args.out) if args.out else None, quiet=args.quiet)
    except (TrainingDataError, ArtifactError) as exc:
        raise CliError(str(exc)) from exc
    _print_table(table)


def _print_table(table) -> None:
    cols = ["model", "population", "ndcg@1", "ndcg@3", "ndcg@5", "precision@3", "recall@3", "f1@3", "map", "auc"]
    print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda v: f"{v:.4f}"))


# ------------------------------------------------------------------ serving
def cmd_serve(args) -> None:
    import logging

    from couponrank.server.callers import CallersConfigError
    from couponrank.server.catalog import CatalogError
    from couponrank.server.main import TlsConfigError, run
    from couponrank.server.model import ModelMismatchError
    from couponrank.server.service import ServerConfig, parse_currencies
    from couponrank.server.telemetry import configure_logging
    from couponrank.training.artifact import ArtifactError

    configure_logging(logging.WARNING if args.quiet else logging.INFO, args.log_format)
    if args.workers < 1 or args.threads < 1:
        raise CliError("--workers and --threads must be at least 1")
    if args.max_reasons < 0:
        raise CliError(f"--max-reasons must not be negative (0: every non-zero contribution), got {args.max_reasons}")
    try:
        accepted, catalog_currency, rates = parse_currencies(args.currencies)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    config = ServerConfig(max_candidates=args.max_candidates, store_timeout=args.store_timeout, max_workers=args.threads,
                          catalog_refresh_seconds=args.catalog_refresh, grace_seconds=args.grace,
                          drain_seconds=args.drain, reflection=args.reflection,
                          max_queued=None if args.max_queued < 0 else args.max_queued, admission=args.admission,
                          tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                          metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                          model_refresh_seconds=args.model_refresh, store_check_seconds=args.store_check,
                          callers_file=args.callers, otlp_endpoint=args.otlp_endpoint, log_format=args.log_format,
                          coupon_features_seconds=args.coupon_refresh, scorer=args.scorer,
                          currencies=accepted, catalog_currency=catalog_currency, currency_rates=rates,
                          max_reasons=args.max_reasons, events_db=args.events_db, push_features=args.push)
    try:
        run(Path(args.repo), Path(args.model), port=args.port, online=args.online, config=config, host=args.host,
            workers=args.workers,
            on_start=lambda port, version: print(
                f"serving model {version} on {args.host}:{port} ({args.online} online store"
                + (", mutual TLS" if args.tls_client_ca else ", TLS" if args.tls_cert else ", plaintext")
                + (f", {args.workers} processes" if args.workers > 1 else "") + "); SIGTERM to stop", flush=True))
    except (ModelMismatchError, ArtifactError, CatalogError, TlsConfigError, CallersConfigError, OSError,
            RuntimeError) as exc:
        raise CliError(f"{exc} (server not started)") from exc


def cmd_export_events(args) -> None:
    from couponrank.events import open_log
    from couponrank.events.log import EventLogError, export

    try:
        written = export(open_log(args.events_db, args.repo, must_exist=True), Path(args.raw))
    except (EventLogError, OSError) as exc:
        raise CliError(str(exc)) from exc
    for table, rows in written.items():
        what = "new users first seen in the events" if table == "users" else "recorded events"
        print(f"{table}: {rows:,} {what} -> {Path(args.raw) / 'live' / table}")


def cmd_prune_events(args) -> None:
    from couponrank.clock import unix_now
    from couponrank.events import open_log
    from couponrank.events.log import DAY, EventLogError, prune_exported
    from couponrank.features.repo import built_until
    from couponrank.server.events import RETENTION_SECONDS

    try:
        end = built_until(args.repo).timestamp()
    except (OSError, ValueError, KeyError):
        raise CliError(f"{Path(args.repo) / 'data' / 'build.json'}: cannot tell when the built snapshots end (no "
                       "such file, or an unreadable one, and no snapshot beside it); run build-features") from None
    # the latest cut that loses nothing: events before it can no longer be recorded (older
    # than the retention) and the server no longer counts them live (the snapshots hold them)
    latest = min(end, unix_now() - RETENTION_SECONDS) // DAY * DAY
    before = latest
    if args.before:
        try:
            before = _midnight(args.before)
        except ValueError:
            raise CliError(f"--before: {args.before!r} is not a date (YYYY-MM-DD)") from None
        if before > latest:
            raise CliError(f"--before: {args.before} is later than {_iso_day(latest)}, the latest day the log can "
                           f"be pruned to (the built snapshots end {_iso_day(end)}; events of the last "
                           f"{RETENTION_SECONDS // DAY:.0f} days may still be recorded); nothing was pruned")
    try:
        log = open_log(args.events_db, args.repo, must_exist=True)
        written, deleted = prune_exported(log, Path(args.raw), before)
    except (EventLogError, OSError) as exc:
        raise CliError(str(exc)) from exc
    for table, rows in written.items():
        print(f"{table}: {rows:,} rows exported -> {Path(args.raw) / 'live' / table}")
    print(f"pruned the log before {_iso_day(before)}: " + ", ".join(f"{n:,} {what}" for what, n in deleted.items()))


def _midnight(text: str) -> float:
    """A YYYY-MM-DD day's midnight (UTC) in unix seconds; ValueError otherwise."""
    from datetime import date, datetime, timezone

    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


def _iso_day(unix: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(unix, timezone.utc).date().isoformat()


def cmd_ingest(args) -> None:
    import signal
    import threading

    from couponrank.events import open_log
    from couponrank.events.log import EventLogError
    from couponrank.features import repo
    from couponrank.server import push

    try:
        store = repo.store(Path(args.repo), args.online)
        log = open_log(args.events_db, args.repo, must_exist=True)
        follower = log.follower(args.group, args.consumer, claim_idle=args.claim_idle)
    except (EventLogError, OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if not push.supported(store):
        raise CliError(f"{args.repo}: the feature registry has no {push.recent.VIEW} view and push source; apply a "
                       "repository that defines them (couponrank apply)")
    # pushed here, before each acknowledgement
    fresh = push.FreshFeatures(store, log, interval=None, tail=push.load_tail(args.repo),
                               categories=push.load_categories(args.repo),
                               built_until=repo.built_until(args.repo).timestamp())
    stop = threading.Event()
    if not args.once:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print(f"ingest: pushing fresh features from {log.where} every {args.interval:g} s; SIGTERM to stop", flush=True)
    try:
        applied = _follow(follower, fresh, stop, args.interval, args.once)
    except EventLogError as exc:  # the log went away: what was not acknowledged is handed out again later
        raise CliError(str(exc)) from exc
    print(f"ingest: {applied:,} events applied, {fresh.pushed:,} user pushes, {fresh.coupons_pushed:,} coupon pushes, "
          f"{fresh.failed} failed")
    if fresh.failed:
        raise CliError("some pushes failed; the log above says why")


def _follow(follower, fresh, stop, interval: float, once: bool) -> int:
    """Read, push, acknowledge, until stopped (``once``: until the log is read); the
    events applied."""
    from couponrank.server import push

    applied = 0
    while True:
        ids, records = follower.read()
        fresh.submit(*push.latest(records))
        if not fresh.flush():  # the store failed (logged): the entries stay unacknowledged
            if once or stop.wait(interval):
                return applied
            follower.rewind()  # hand them out again
            continue
        follower.ack(ids)  # only once applied: a process killed before this leaves them to the next
        applied += len(ids)
        if not ids and (once or stop.wait(interval)):
            return applied
        if stop.is_set():
            return applied


def cmd_rank(args) -> None:
    from couponrank.client import CouponRankClient, CouponRankError, money, tls_credentials

    try:
        credentials = (tls_credentials(args.tls_ca, args.tls_cert, args.tls_key)
                       if args.tls_ca or args.tls_cert or args.tls_key else None)
    except (OSError, ValueError) as exc:
        raise CliError(f"TLS: {exc}") from exc
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise CliError(f"{args.token_file}: cannot read the token ({exc.strerror})") from exc
        if not token or any(c.isspace() for c in token):
            raise CliError(f"{args.token_file}: expected one bearer token on one line")
    try:
        minor = money(args.cart_total, args.currency.upper()).amount_minor
    except ValueError as exc:
        raise CliError(f"--cart-total/--currency: {exc}") from exc
    split = (lambda text: [v for v in (text or "").split(",") if v])
    if args.membership_segments and args.membership_tier is None:
        raise CliError("--membership-segments needs --membership-tier ('' for a user who is not a member)")
    with CouponRankClient(args.addr, timeout=args.timeout, credentials=credentials, token=token) as client:
        try:
            result = client.rank_coupons(
                args.user, candidate_ids=split(args.candidates), placement=args.placement,
                cart_total_minor=minor, currency=args.currency, cart_categories=split(args.cart_categories),
                cart_brands=split(args.cart_brands), cart_merchant_ids=split(args.cart_merchants),
                top_k=args.top_k, explain=args.explain, request_time=_utc(args.time) if args.time else None,
                membership_tier=args.membership_tier, membership_segment_ids=split(args.membership_segments))
        except CouponRankError as exc:
            raise CliError(str(exc)) from exc
    print_ranking(args.user, result)


def cmd_token(args) -> None:
    from couponrank.server.callers import new_token, token_hash

    token = new_token()
    print(f"token: {token}")
    print(f'callers file entry: token_sha256 = "{token_hash(token)}"')


def print_ranking(user: str, result, limit: int | None = None) -> None:
    """Human-readable RankCoupons answer (used by `rank` and the demo)."""
    flags = [f"model {result.model_version or '-'}"]
    if result.cold_start:
        flags.append("cold start")
    if result.degraded:
        flags.append(f"DEGRADED {result.degraded_reason}: {result.degraded_detail}")
    print(f"request {result.request_id} for {user}: " + "; ".join(flags))
    print(f"{len(result.ranked)} ranked:" + (f" {result.note}" if result.note else ""))
    for c in result.ranked[:limit]:
        print(f"  {c.rank:>3}. {c.coupon_id}  score {c.score:+.4f}")
        for r in c.reasons[: 3 if limit else None]:
            print(f"         {r.contribution:+.4f}  {r.feature} = {r.value:g}")
    print(f"{len(result.ineligible)} not eligible:")
    for c in sorted(result.ineligible, key=lambda c: c.coupon_id)[:limit]:
        print(f"  {c.coupon_id}  {c.reason}: {c.detail}")


# ------------------------------------------------------------------ the main job
def cmd_demo(args) -> None:
    from couponrank.demo import run_demo

    run_demo(raw=Path(args.raw), repo=Path(args.repo), models=Path(args.models), size=args.size,
             progress=not args.quiet, end_date=_date(args.end_date, "--end-date"))


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="couponrank", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        return sp

    sp = add("generate", cmd_generate, "Write a seeded synthetic raw data set (Parquet).")
    sp.add_argument("--size", choices=["tiny", "demo", "large"], default="demo",
                    help="tiny: tests; demo: the README's demo; large: 100k users / 5k coupons / ~10M events")
    sp.add_argument("--seed", type=int, default=None, help="random seed (default: the size's own)")
    sp.add_argument("--out", default=str(DEFAULT_RAW), help="output folder (default: %(default)s)")
    sp.add_argument("--end-date", metavar="YYYY-MM-DD",
                    help="the data's period ends at 00:00 UTC of this day (default: today, UTC, so that "
                         "coupons are valid now); the same seed and end date give byte-identical files")
    sp.add_argument("--dirty-fraction", type=float, default=0.0,
                    help="fraction of deliberately malformed rows to inject (tests the cleaning step)")

    from couponrank.importers import adapter_names

    sp = add("import", cmd_import, "Import a real data set's campaign log into the raw schema through an adapter "
             "(docs/import.md): users, items, coupons, purchases as order events, targeting as impressions, "
             "redemptions; what cannot be mapped is dropped and counted in the printed report and manifest.json.")
    sp.add_argument("--adapter", required=True, choices=adapter_names(), help="the source's adapter")
    sp.add_argument("--source", metavar="DIR",
                    help="a folder with the source's tables as <table>.parquet (default: the adapter's own, "
                         "e.g. an installed package)")
    sp.add_argument("--out", default=str(DEFAULT_RAW),
                    help="raw data folder, replaced as a whole once everything is written (default: %(default)s)")
    sp.add_argument("--households", type=int, metavar="N",
                    help="import a seeded sample of N households (users) with all their rows (default: all)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the --households sample (default: %(default)s)")

    sp = add("build-features", cmd_build_features,
             "Clean raw events and write point-in-time feature snapshots as the Feast offline sources: the "
             "built-in views', then one per builder in REPO/builders.py (docs/adding-a-feature.md). Warns about "
             "each Parquet file in REPO/data that neither wrote (stale). A failing builder stops it (exit 2), "
             "keeping what REPO/data holds.")
    sp.add_argument("--raw", default=str(DEFAULT_RAW), help="raw data folder (default: %(default)s)")
    sp.add_argument("--repo", default=str(DEFAULT_REPO),
                    help="Feast repository; sources go to REPO/data; a new folder gets the project's "
                         "definitions, an existing one keeps its own (default: %(default)s)")

    for name, func, help_ in (
        ("apply", cmd_apply, "Register the feature repository (what `feast apply` does), after checking its "
                             "Parquet offline sources: a timestamp column in nanoseconds or without a zone is "
                             "refused (exit 2) naming file and column."),
        ("materialize", cmd_materialize, "Load the latest feature values into the online store."),
    ):
        sp = add(name, func, help_)
        sp.add_argument("--repo", default=str(DEFAULT_REPO), help="Feast repository (default: %(default)s)")
        sp.add_argument("--online", choices=["sqlite", "redis"], default="sqlite",
                        help="online store; redis reads its address from $COUPONRANK_REDIS")
        if name == "materialize":
            sp.add_argument("--end", help="materialize rows up to this UTC time (default: now)")

    sp = add("train", cmd_train, "Build the point-in-time training set, train the LightGBM ranker and the "
             "baselines, write the report and a versioned model artifact (with the trees compiled for serving).")
    sp.add_argument("--raw", default=str(DEFAULT_RAW), help="raw data folder, for labels (default: %(default)s)")
    sp.add_argument("--repo", default=str(DEFAULT_REPO), help="Feast repository (default: %(default)s)")
    sp.add_argument("--models", default=str(DEFAULT_MODELS), help="artifact folder (default: %(default)s)")
    sp.add_argument("--config", help="training config (default: training/ranker.yaml)")

    sp = add("evaluate", cmd_evaluate, "Re-score a saved model and the baselines on its test period; "
             "rewrite the report.")
    sp.add_argument("--model", default=str(DEFAULT_MODELS),
                    help="a model version folder, or the models folder (its LATEST) (default: %(default)s)")
    sp.add_argument("--raw", default=str(DEFAULT_RAW))
    sp.add_argument("--repo", default=str(DEFAULT_REPO))
    sp.add_argument("--out", help="report folder (default: the model's folder)")

    sp = add("demo", cmd_demo, "The main job end to end on embedded defaults: generate synthetic data, "
             "build features, apply the registry, materialize SQLite, look up online features, train the ranker, serve it and rank for three users.")
    sp.add_argument("--size", choices=["tiny", "demo", "large"], default="demo")
    sp.add_argument("--end-date", metavar="YYYY-MM-DD",
                    help="the generated data ends at 00:00 UTC of this day (default: today, UTC); the demo "
                         "still ranks at the server's clock, so with a past day every coupon has expired")
    sp.add_argument("--raw", default=str(DEFAULT_RAW), help="raw data folder (default: %(default)s)")
    sp.add_argument("--repo", default=str(DEFAULT_REPO), help="Feast repository (default: %(default)s)")
    sp.add_argument("--models", default=str(DEFAULT_MODELS), help="artifact folder (default: %(default)s)")

    sp = add("serve", cmd_serve, "Serve RankCoupons over gRPC (with health checks and reflection) until SIGTERM.")
    sp.add_argument("--repo", default=str(DEFAULT_REPO), help="Feast repository (default: %(default)s)")
    sp.add_argument("--model", default=str(DEFAULT_MODELS),
                    help="a model version folder, or the models folder (its LATEST) (default: %(default)s)")
    sp.add_argument("--port", type=int, default=50051, help="port (default: %(default)s; 0: any free one)")
    sp.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default: %(default)s, loopback only; '[::]' or 0.0.0.0 for "
                         "every interface)")
    sp.add_argument("--online", choices=["sqlite", "redis"], default="sqlite",
                    help="online store; redis reads its address from $COUPONRANK_REDIS")
    sp.add_argument("--max-candidates", type=int, default=500, help="candidates per request (default: %(default)s)")
    sp.add_argument("--max-reasons", type=int, default=10, metavar="N",
                    help="reasons per coupon in an explained answer when the request's max_reasons is 0 "
                         "(unset); a request may ask for 1 to 50 itself (default: %(default)s; 0: every non-zero "
                         "contribution)")
    sp.add_argument("--no-push", dest="push", action="store_false",
                    help="do not push fresh recent-activity features from this process: a `couponrank ingest` "
                         "process does it (default: push, every 500 ms)")
    sp.add_argument("--events-db", metavar="PATH|URL",
                    help="the durable log of RecordEvents and its live counters, which the per-user limits and "
                         "budgets also read: a SQLite file (one machine), or a redis://host:port/db URL (rediss:// "
                         "for TLS) that several servers share (default: REPO/data/events.db; '' turns RecordEvents "
                         "off)")
    sp.add_argument("--workers", type=int, default=1,
                    help="server processes sharing the port (SO_REUSEPORT), to use more than one core "
                         "(default: %(default)s)")
    sp.add_argument("--threads", type=int, default=4,
                    help="calls running at once per process (default: %(default)s; Python runs one thread at a "
                         "time, so more threads add contention, not speed: bench/shed.py)")
    sp.add_argument("--max-queued", type=int, default=8,
                    help="calls waiting for a thread, per process; more get RESOURCE_EXHAUSTED at once "
                         "(default: %(default)s; -1: no bound)")
    sp.add_argument("--no-admission", dest="admission", action="store_false",
                    help="do not refuse calls whose deadline leaves less than a typical answer's time")
    sp.add_argument("--store-timeout", type=float, default=0.25,
                    help="seconds to wait for the online store before the fallback ranking (default: %(default)s)")
    sp.add_argument("--store-check", type=float, default=5.0,
                    help="seconds between probes of the online store for being empty (emptied Redis, never "
                         "materialized): answers degrade and health reads NOT_SERVING while it is "
                         "(default: %(default)s; 0: off)")
    sp.add_argument("--catalog-refresh", type=float, default=300.0,
                    help="seconds between checks for a new coupon catalogue (default: %(default)s)")
    sp.add_argument("--coupon-refresh", type=float, default=60.0,
                    help="seconds between re-reads of the coupon-level online features cached in memory: "
                         "their freshness bound (default: %(default)s)")
    sp.add_argument("--scorer", choices=["auto", "lleaves", "booster"], default="auto",
                    help="auto: the trees compiled by lleaves (cached with the artifact), LightGBM's Booster "
                         "if compiling fails; lleaves: compiled or refuse to start; booster: LightGBM "
                         "(default: %(default)s)")
    sp.add_argument("--grace", type=float, default=5.0,
                    help="seconds in-flight calls get to finish on SIGTERM (default: %(default)s)")
    sp.add_argument("--drain", type=float, default=2.0,
                    help="on SIGTERM, seconds health reads NOT_SERVING while calls are still answered, before "
                         "new calls are refused (default: %(default)s)")
    sp.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain (with --tls-key)")
    sp.add_argument("--tls-key", metavar="PEM", help="the TLS certificate's private key")
    sp.add_argument("--tls-client-ca", metavar="PEM",
                    help="mutual TLS: accept only clients with a certificate signed by this CA")
    sp.add_argument("--model-refresh", type=float, default=10.0,
                    help="serving a models folder: seconds between checks of its LATEST for a new version to "
                         "swap in (default: %(default)s; 0: only on SIGHUP)")
    sp.add_argument("--metrics-port", type=int,
                    help="Prometheus /metrics on this port, on --metrics-host (default: off; with --workers N, "
                         "worker i uses PORT + i)")
    sp.add_argument("--metrics-host", default="127.0.0.1", help="address of /metrics (default: %(default)s)")
    sp.add_argument("--log-format", choices=["text", "json"], default="text",
                    help="text lines, or one JSON object per line with the trace id when tracing "
                         "(default: %(default)s)")
    sp.add_argument("--otlp-endpoint", metavar="URL",
                    help="OpenTelemetry tracing: export a span per RPC, with stage spans, over OTLP/gRPC to this "
                         "collector, e.g. http://127.0.0.1:4317 (https:// for TLS) (default: off)")
    sp.add_argument("--callers", metavar="TOML",
                    help="who may call and see what: mTLS certificate names and bearer-token hashes with their "
                         "right to see user features in explanations (docs/privacy.md; default: everyone "
                         "anonymous, explanations name coupon and request features only)")
    sp.add_argument("--reflection", action=argparse.BooleanOptionalAction, default=True,
                    help="gRPC server reflection, for grpcurl and ghz (default: on)")
    sp.add_argument("--currencies", default="USD",
                    help="accepted cart currencies, comma-separated: first the catalogue's (the currency of the "
                         "data the model learnt from), then others with their rate to it, e.g. "
                         "USD,EUR=1.08,JPY=0.0066 (default: %(default)s)")

    sp = add("export-events", cmd_export_events,
             "Write the events the server recorded (RecordEvents) into the raw folder, one Parquet file per event "
             "table and day (RAW/live/<table>/<day>.parquet, the raw schema), so that build-features and train read "
             "them with the batch data; the events' users that RAW/users.parquet does not list go into "
             "RAW/live/users/<day first seen>.parquet. Run it before build-features: the live counters start where "
             "the built snapshots end. Days already exported are rewritten whole.")
    sp.add_argument("--repo", default=str(DEFAULT_REPO), help="Feast repository (default: %(default)s)")
    sp.add_argument("--raw", default=str(DEFAULT_RAW), help="raw data folder (default: %(default)s)")
    sp.add_argument("--events-db", metavar="PATH|URL",
                    help="the event log: a SQLite file or a redis:// URL (default: REPO/data/events.db)")

    sp = add("prune-events", cmd_prune_events,
             "Keep the event log from growing without end: export the log into the raw folder (as export-events "
             "does), then delete the events, served rankings and live counters of the days before --before from "
             "the log. The latest day allowed (the default) is the earlier of the built snapshots' end and "
             "the RecordEvents retention (30 days): the server no longer counts older events live, and no event "
             "that old can be recorded again, so nothing is lost or counted twice. A redemption's check that its "
             "coupon was offered then reads the impression from the built features (after the next build).")
    sp.add_argument("--repo", default=str(DEFAULT_REPO), help="Feast repository (default: %(default)s)")
    sp.add_argument("--raw", default=str(DEFAULT_RAW), help="raw data folder (default: %(default)s)")
    sp.add_argument("--events-db", metavar="PATH|URL",
                    help="the event log: a SQLite file or a redis:// URL (default: REPO/data/events.db)")
    sp.add_argument("--before", metavar="YYYY-MM-DD", help="prune the days before this one (default: the latest allowed)")

    sp = add("ingest", cmd_ingest,
             "Follow the server's event log and push fresh features into the online store (Feast's push API): "
             "each user's recent activity, each coupon's counts today; as its own process: start the servers "
             "with --no-push. On Redis it reads the "
             "events stream in a consumer group and acknowledges entries only after their push, so several ingest "
             "processes share the work and one that dies leaves nothing unapplied. SIGTERM stops it.")
    sp.add_argument("--repo", default=str(DEFAULT_REPO), help="Feast repository (default: %(default)s)")
    sp.add_argument("--online", choices=["sqlite", "redis"], default="sqlite")
    sp.add_argument("--events-db", metavar="PATH|URL",
                    help="the event log: a SQLite file or a redis:// URL (default: REPO/data/events.db)")
    sp.add_argument("--group", default="ingest",
                    help="Redis consumer group: processes of one group share the events (default: %(default)s)")
    sp.add_argument("--consumer", help="this process's name in the group; a restarted process of the same name "
                                       "first takes back what it left unacknowledged (default: host-pid)")
    sp.add_argument("--claim-idle", type=float, default=30.0, metavar="SECONDS",
                    help="take over entries another consumer of the group left unacknowledged this long "
                         "(default: %(default)s)")
    sp.add_argument("--interval", type=float, default=0.5, help="seconds between pushes (default: %(default)s)")
    sp.add_argument("--once", action="store_true", help="push what the log holds now, then stop")

    sp = add("rank", cmd_rank, "Ask a running server to rank coupons for one user; print the ranking, "
             "the reasons and the coupons dropped.")
    sp.add_argument("--addr", default="localhost:50051", help="server address (default: %(default)s)")
    sp.add_argument("--user", required=True)
    sp.add_argument("--placement", default="cart", choices=RANK_PLACEMENTS)
    sp.add_argument("--cart-total", default="0", help="cart total in major units, e.g. 49.90 (default: 0)")
    sp.add_argument("--currency", default="USD")
    sp.add_argument("--cart-categories", help="comma-separated categories in the cart")
    sp.add_argument("--cart-brands", help="comma-separated brands in the cart")
    sp.add_argument("--cart-merchants", help="comma-separated merchant ids in the cart")
    sp.add_argument("--candidates", help="comma-separated coupon ids (default: every active coupon)")
    sp.add_argument("--top-k", type=int, default=0, help="coupons to return (default: the server's)")
    sp.add_argument("--membership-tier", metavar="TIER",
                    help="the user's membership tier as the caller knows it ('' for a non-member), sent in place "
                         "of the one the server has stored (default: send none)")
    sp.add_argument("--membership-segments", metavar="IDS",
                    help="comma-separated audience segments of the user; needs --membership-tier")
    sp.add_argument("--time", help="request time, ISO-8601 UTC (default: the server's now)")
    sp.add_argument("--explain", action="store_true", help="show each coupon's top feature contributions")
    sp.add_argument("--timeout", type=float, default=2.0, help="seconds per attempt (default: %(default)s)")
    sp.add_argument("--tls-ca", metavar="PEM", help="TLS: trust this CA (with neither --tls-* option: plaintext)")
    sp.add_argument("--tls-cert", metavar="PEM", help="mutual TLS: this client's certificate (with --tls-key)")
    sp.add_argument("--tls-key", metavar="PEM", help="mutual TLS: this client's key")
    sp.add_argument("--token-file", metavar="FILE",
                    help="a file holding this caller's bearer token (see `couponrank token` and serve --callers)")

    add("token", cmd_token, "Make a new bearer token for a caller: prints the token (give it to the caller, "
        "e.g. in a file for rank --token-file) and the line for the server's --callers file.")

    sp = add("promote", cmd_promote, "Serve a model version next: verify it and point the models folder's "
             "LATEST at it (running servers swap it in without a restart).")
    sp.add_argument("version", help="a version folder's name under --models")
    sp.add_argument("--models", default=str(DEFAULT_MODELS), help="models folder (default: %(default)s)")
    sp = add("rollback", cmd_rollback, "Point LATEST back at the version served before the current one.")
    sp.add_argument("--models", default=str(DEFAULT_MODELS), help="models folder (default: %(default)s)")

    sp = add("features", cmd_features, "Print the online features of one user and coupon.")
    sp.add_argument("--repo", default=str(DEFAULT_REPO))
    sp.add_argument("--online", choices=["sqlite", "redis"], default="sqlite")
    sp.add_argument("--user", required=True)
    sp.add_argument("--coupon", required=True)
    return p


# couponrank.schema.PLACEMENTS (tests/test_membership.py keeps them equal); not imported
# here, so that `couponrank --help` does not load pyarrow.
RANK_PLACEMENTS = ["home", "product_page", "cart", "checkout", "order_confirmation", "campaign", "member_centre"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CliError as exc:
        print(f"couponrank {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
