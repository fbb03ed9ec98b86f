"""The main job, end to end on the embedded defaults (README's first command)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd

from couponrank.clock import Clock, unix_seconds, utc_now


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_demo(raw: Path, repo: Path, models: Path, size: str = "demo", progress: bool = True,
             end_date: date | None = None, clock: Clock = utc_now) -> dict:
    """``end_date``: the generated data's end (default: today by ``clock``); the server
    started at step 7 takes its "now" from ``clock`` too, and the requests set no
    request time, as a checkout service's would not."""
    from couponrank.features import repo as feast_repo
    from couponrank.features.build import build_features
    from couponrank.generate import SIZES, generate

    config = SIZES[size].replace(end_date=end_date).resolved(clock)
    _step(f"1. generate synthetic '{size}' data, {config.start:%Y-%m-%d} .. {config.end:%Y-%m-%d} -> {raw}")
    summary = generate(raw, config, progress=progress)
    for table, rows in summary.row_counts.items():
        print(f"  {table}: {rows:,} rows")

    _step(f"2. build features -> {repo / 'data'}")
    feast_repo.init_workspace(repo)
    built = build_features(raw, repo, progress=progress)
    print("\n".join("  " + line for line in built.report.lines()))

    _step("3. feast apply (SQLite online store)")
    feast_repo.apply(repo)

    _step(f"4. feast materialize up to {built.end:%Y-%m-%d}")
    feast_repo.materialize(repo, end=built.end.to_pydatetime())

    _step("5. online features for a known user and coupon")
    ce = pd.read_parquet(raw / "coupon_events.parquet", columns=["user_id", "coupon_id", "event_type"])
    known = ce[ce.event_type == "redemption"].iloc[-1]
    fs = feast_repo.store(repo)
    rows = [{"user_id": known.user_id, "coupon_id": known.coupon_id}]
    online = fs.get_online_features(
        features=["user_activity:user_orders_30d", "user_coupon_behaviour:user_redemptions_30d",
                  "user_coupon_usage:ucp_redemptions_total", "coupon_stats:coupon_redemption_rate_30d"],
        entity_rows=rows,
    ).to_dict()
    print(json.dumps({k: v[0] for k, v in online.items()}, indent=2, default=str))

    _step(f"6. train the ranker and baselines -> {models}")
    from couponrank.cli import _print_table
    from couponrank.training.pipeline import train

    result = train(raw, repo, models, quiet=not progress)
    _print_table(result.metrics)
    print(f"model artifact {result.version} -> {result.path}")

    _step("7. serve RankCoupons on a loopback port and ask it for three users and a member at the member centre; "
          "record a redemption (RecordEvents) and ask again; record views and see the user's fresh features "
          "and ranking move")
    # the data is new, so is the event log: a previous run's recorded events would count
    for suffix in ("", "-wal", "-shm"):
        (repo / "data" / f"events.db{suffix}").unlink(missing_ok=True)
    answers, activity = _serve_and_ask(repo, models, clock, known.user_id, raw)
    return {"online": online, "built": built, "model": result, "answers": answers, "recent_activity": activity}


def _record_and_rank_again(client, user: str, first, clock: Clock, repo: Path):
    """The loop (issue 11): the user redeems the best coupon of their first ranking that
    allows one redemption per user, the shop reports it with RecordEvents, and the next
    ranking drops it (PER_USER_LIMIT_REACHED)."""
    from couponrank.cli import print_ranking
    from couponrank.client import impression, redemption
    from couponrank.server.catalog import load_catalog

    cat = load_catalog(repo)
    limit = dict(zip(cat.ids, cat.columns["coupon_per_user_limit"]))
    top = next((c.coupon_id for c in first.ranked if limit.get(c.coupon_id) == 1), first.ranked[0].coupon_id)
    now = clock()
    results = client.record_events([
        impression("demo-impression-1", user, now, top, position=1, placement="home", request_id=first.request_id),
        redemption("demo-redemption-1", user, now, top, discount_minor=500, impression_event_id="demo-impression-1"),
    ])
    print(f"\n-- {user} redeems {top}; RecordEvents: {', '.join(r.status for r in results)}; ranking again at home")
    answer = client.rank_coupons(user, placement="home", cart_total_minor=0, currency="USD", top_k=5, explain=True)
    print_ranking(user, answer, limit=5)
    return answer


def _record_views(client, server, user: str, clock: Clock, repo: Path) -> dict:
    """The other half of the loop: the user views three items of one category and puts
    one in the cart; RecordEvents takes them, the server pushes the user's
    recent-activity counts into the online store (Feast's push API), and the next
    ranking reads them. The category is that of the lowest-ranked category coupon of
    the user's home ranking. Returns the counts before and after, and that coupon's
    rank and score before and after."""
    from couponrank.client import behaviour
    from couponrank.features import recent
    from couponrank.features import repo as feast_repo
    from couponrank.server.catalog import load_catalog

    def home():
        return client.rank_coupons(user, placement="home", cart_total_minor=0, currency="USD", top_k=100)

    cat = load_catalog(repo)
    target = dict(zip(cat.ids, cat.columns["coupon_target_category"]))
    items = pd.read_parquet(repo / "data" / "item_catalog.parquet").sort_values("item_id", kind="stable")
    first = home()
    coupon = next((c for c in reversed(first.ranked) if (items.category == target.get(c.coupon_id)).any()), None)
    category = target[coupon.coupon_id] if coupon else items.category.iloc[0]
    chosen = list(items.item_id[items.category == category][:3])
    store = feast_repo.store(repo)
    rows = {recent.VIEW: {"user_id": user}, recent.CATEGORY_VIEW: {"user_id": user, "category": category}}

    def counts() -> dict[str, float]:
        out = {}
        for view, names in ((recent.VIEW, recent.FEATURES), (recent.CATEGORY_VIEW, recent.CATEGORY_FEATURES)):
            row = store.get_online_features(features=[f"{view}:{f}" for f in names], entity_rows=[rows[view]]).to_dict()
            out.update({f: float(row[f][0] or 0) for f in names})
        return out

    before = counts()
    now = clock()
    events = [behaviour(f"demo-view-{i}", user, now, "view", item) for i, item in enumerate(chosen)]
    events.append(behaviour("demo-cart-1", user, now, "add_to_cart", chosen[0]))
    results = client.record_events(events)
    server.ranker.fresh.flush()  # what the server does every half second in the background, at once
    after = counts()
    print(f"\n-- {user} views 3 items of {category} and puts one in the cart; RecordEvents: "
          f"{', '.join(r.status for r in results)}; their recent activity in the online store, before -> after:")
    for f in (*recent.FEATURES, *recent.CATEGORY_FEATURES):
        print(f"  {f:<30} {before[f]:>4.0f} -> {after[f]:.0f}" + (f"  ({category})" if "category" in f else ""))
    moved = None
    if coupon is not None:
        again = {c.coupon_id: c for c in home().ranked}.get(coupon.coupon_id)
        moved = (coupon.rank, coupon.score, again.rank if again else None, again.score if again else None)
        print(f"  {coupon.coupon_id} (a {category} coupon) at home, rank {moved[0]} score {moved[1]:+.4f} -> "
              + (f"rank {moved[2]} score {moved[3]:+.4f}" if again else "not ranked")
              + f", with {first.model_version} (feature service "
              f"{server.ranker.model.feature_service}): the model reads these counts")
    return {"counts": {f: (before[f], after[f]) for f in before}, "category": category,
            "coupon": coupon.coupon_id if coupon else None, "moved": moved}


def _top_member(raw: Path) -> str:
    """A user whose latest membership row holds the highest tier (the first by id)."""
    m = pd.read_parquet(raw / "memberships.parquet").sort_values(["user_id", "valid_from"], kind="stable")
    latest = m.drop_duplicates("user_id", keep="last")
    tiers = [t for t in ("platinum", "gold", "silver") if (latest.tier == t).any()]
    return str(min(latest.user_id[latest.tier == tiers[0]]))


def _serve_and_ask(repo: Path, models: Path, clock: Clock, known_user: str, raw: Path) -> list:
    from couponrank.cli import print_ranking
    from couponrank.client import CouponRankClient
    from couponrank.server.main import serve

    users = pd.read_parquet(raw / "users.parquet", columns=["user_id"]).user_id
    asks = [  # (user, placement, cart total in cents, cart categories)
        (known_user, "home", 0, []),
        (users.iloc[1], "cart", 6_000, ["cat00"]),
        (users.iloc[2], "checkout", 12_000, ["cat01", "cat03"]),
        (_top_member(raw), "member_centre", 20_000, []),
    ]
    server = serve(repo, models, port=0, host="127.0.0.1", clock=unix_seconds(clock))
    answers = []
    print(f"the server's clock reads {clock():%Y-%m-%dT%H:%M:%SZ}; the requests set no request time")
    try:
        with CouponRankClient(f"127.0.0.1:{server.port}", timeout=5.0) as client:
            for user, placement, cents, cats in asks:
                print(f"\n-- {user} at {placement}, cart {cents / 100:.2f} USD {cats or ''}")
                answer = client.rank_coupons(user, placement=placement, cart_total_minor=cents, currency="USD",
                                             cart_categories=cats, top_k=5, explain=True)
                print_ranking(user, answer, limit=5)
                answers.append(answer)
            answers.append(_record_and_rank_again(client, known_user, answers[0], clock, repo))
            activity = _record_views(client, server, known_user, clock, repo)
    finally:
        server.stop(grace=1.0).wait(5)
    return answers, activity
