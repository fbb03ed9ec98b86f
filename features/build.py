"""The batch feature pipeline: clean raw events, compute point-in-time snapshots,
write them as the Feast offline sources under ``<repo>/data/``.

Each output is one Parquet file per feature view in ``definitions.py`` with the
view's entity keys, ``event_timestamp`` (the snapshot's midnight), ``created_timestamp``
and exactly the view's feature columns (a test holds the two together).

A workspace's own sources come from the builders in its ``builders.py``
(features/custom.py), run after the built-in views and written the same way; a Parquet
file under ``data/`` that neither wrote is reported as stale (not rebuilt).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from couponrank.features import custom
from couponrank.features import coupon_today, coverage, membership, recent
from couponrank.features.cleaning import CleanData, CleaningReport, clean_raw
from couponrank.features.request_features import ALL_CATEGORIES
from couponrank.features.snapshots import Window, change_days, snapshot_windows

DAY = pd.Timedelta(days=1)
TS_DTYPE = "datetime64[us, UTC]"
BUILD_FILE = "build.json"  # <repo>/data/build.json: the period the snapshots cover
# Pseudo-impressions pulling a rate towards the global rate (empirical Bayes smoothing).
RATE_PRIOR_STRENGTH = 20.0
NEUTRAL_RATE = 0.05

# The built-in views' sources, in the order build_features writes them.
BUILT_IN = ("user_activity", "user_coupon_behaviour", "user_category_affinity", "user_coupon_usage",
            "user_coupon_coverage", "coupon_stats", "coupon_attributes", "user_membership", "user_recent_activity",
            "user_category_recent_activity", "recent_behaviour_tail", "item_catalog", "coupon_today_activity")


@dataclass
class StaleSource:
    """A Parquet file under data/ that this build did not write (no built-in view or
    builder makes it): written ``age_seconds`` before this build's sources."""

    path: Path
    age_seconds: float

    def line(self) -> str:
        return (f"warning: {self.path} was not rebuilt (stale: written {_age(self.age_seconds)} before this "
                f"build); no built-in view or builders.py builder writes it: add a builder "
                f"(docs/adding-a-feature.md) or delete the file")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {rest // 60} min"
    return f"{rest // 60} min {rest % 60} s" if rest >= 60 else f"{rest} s"


@dataclass
class BuildSummary:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    report: CleaningReport | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    custom: list[str] = field(default_factory=list)  # sources written by builders.py, in order
    stale: list[StaleSource] = field(default_factory=list)


@dataclass
class _Clock:
    """Maps timestamps to day indexes; snapshot k is stamped origin + k days."""

    origin: pd.Timestamp
    n_days: int

    def day(self, ts: pd.Series) -> np.ndarray:
        return ((ts - self.origin) // DAY).to_numpy(dtype=np.int64)

    def stamp(self, snapshot: np.ndarray) -> pd.DatetimeIndex:
        return self.origin + pd.to_timedelta(snapshot, unit="D")


def _unix(ts: pd.Series) -> np.ndarray:
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


def _index_of(values: pd.Series, universe: np.ndarray) -> np.ndarray:
    """Position of each value in ``universe`` (-1 if absent); fast for categoricals."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return pd.Index(universe).get_indexer(values.cat.categories)[values.cat.codes.to_numpy()]
    return pd.Index(universe).get_indexer(values)


def _pairs(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of distinct (a, b) pairs, and the a and b value of each pair."""
    ca, ua = pd.factorize(a)
    cb, ub = pd.factorize(b)
    codes, uniq = pd.factorize(ca.astype(np.int64) * len(ub) + cb)
    return codes, np.asarray(ua)[uniq // len(ub)], np.asarray(ub)[uniq % len(ub)]


class _RowsOf:
    """Lazily gathers rows of ``table`` for keys lo:hi (per-chunk, never all pairs at once)."""

    def __init__(self, table: np.ndarray, row_of_key: np.ndarray):
        self.table, self.row_of_key = table, row_of_key

    def __getitem__(self, keys: slice) -> np.ndarray:
        return self.table[self.row_of_key[keys]]


def _smoothed_rate(hits, trials, prior):
    return (hits + RATE_PRIOR_STRENGTH * prior) / (trials + RATE_PRIOR_STRENGTH)


def _ratio(num, den):
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _global_prior(clock: _Clock, day: np.ndarray, hit: np.ndarray, trial: np.ndarray) -> np.ndarray:
    """Global hit rate from days < k, per snapshot k (index k-1); PIT-safe prior."""
    hits = np.concatenate([[0.0], np.cumsum(np.bincount(day, weights=hit, minlength=clock.n_days))])
    trials = np.concatenate([[0.0], np.cumsum(np.bincount(day, weights=trial, minlength=clock.n_days))])
    rate = np.divide(hits, trials, out=np.full_like(hits, np.nan), where=trials > 0)
    # before any impression there is nothing to learn from: a neutral constant
    rate = np.where(np.isnan(rate), NEUTRAL_RATE, rate)
    return rate[1:]


def _categorical(values: np.ndarray, rows: np.ndarray) -> pd.Categorical:
    codes, uniques = pd.factorize(values)
    return pd.Categorical.from_codes(codes[rows], categories=pd.Index(uniques, dtype=object))


def _frame(clock: _Clock, snaps: dict, keys: dict[str, np.ndarray], features: dict) -> pd.DataFrame:
    ts = clock.stamp(snaps["snapshot"])
    # Keys as categoricals: millions of rows share a few thousand ids, and Parquet
    # stores them dictionary-encoded (small files, fast writes and reads).
    df = pd.DataFrame({name: _categorical(values, snaps["key"]) for name, values in keys.items()})
    df["event_timestamp"] = ts
    df["created_timestamp"] = ts
    for name, values in features.items():
        df[name] = np.asarray(values, dtype=np.float64)
    return df


def user_activity(data: CleanData, clock: _Clock, user_ids: np.ndarray) -> pd.DataFrame:
    ev = data.behaviour_events
    key = _index_of(ev["user_id"], user_ids)
    et = ev["event_type"].to_numpy()
    is_order = et == "order"
    lines = ev.groupby("order_id", observed=True)["order_id"].transform("size").to_numpy(dtype=float)
    measures = {
        "views": (et == "view").astype(float),
        "carts": (et == "add_to_cart").astype(float),
        "favourites": (et == "favourite").astype(float),
        # 1/lines per order line so that a sum counts distinct orders
        "orders": np.where(is_order, 1.0 / np.where(is_order, lines, 1.0), 0.0),
        "spend": np.where(is_order, ev["amount"].fillna(0).to_numpy(), 0.0),
    }
    windows = {f"user_{m}_{w}d": Window(m, w) for w in (7, 30) for m in measures}
    t = _unix(ev["event_ts"])
    snaps = snapshot_windows(
        key, clock.day(ev["event_ts"]), measures, windows, len(user_ids), clock.n_days,
        last_time={"user_last_event_unix": (np.ones(len(ev), bool), t),
                   "user_last_order_unix": (is_order, t)},
    )
    snaps["user_orders_7d"] = np.round(snaps["user_orders_7d"], 6)
    snaps["user_orders_30d"] = np.round(snaps["user_orders_30d"], 6)
    feats = {n: snaps[n] for n in windows}
    feats["user_avg_order_value_30d"] = _ratio(snaps["user_spend_30d"], snaps["user_orders_30d"])
    feats["user_last_event_unix"] = snaps["user_last_event_unix"]
    feats["user_last_order_unix"] = snaps["user_last_order_unix"]
    return _frame(clock, snaps, {"user_id": user_ids}, feats)


def _coupon_measures(ce: pd.DataFrame) -> dict[str, np.ndarray]:
    et = ce["event_type"].to_numpy()
    red = et == "redemption"
    return {
        "impressions": (et == "impression").astype(float),
        "claims": (et == "claim").astype(float),
        "redemptions": red.astype(float),
        "discount": np.where(red, ce["discount_amount"].fillna(0).to_numpy(), 0.0),
    }


def user_coupon_behaviour(data: CleanData, clock: _Clock, user_ids: np.ndarray) -> pd.DataFrame:
    ce = data.coupon_events
    key = _index_of(ce["user_id"], user_ids)
    day = clock.day(ce["event_ts"])
    m = _coupon_measures(ce)
    windows = {
        "imp7": Window("impressions", 7), "imp30": Window("impressions", 30),
        "claim30": Window("claims", 30), "red30": Window("redemptions", 30),
        "redtotal": Window("redemptions", None), "disc30": Window("discount", 30),
    }
    snaps = snapshot_windows(
        key, day, m, windows, len(user_ids), clock.n_days,
        last_time={"last_red": (m["redemptions"] > 0, _unix(ce["event_ts"]))},
    )
    prior_red = _global_prior(clock, day, m["redemptions"], m["impressions"])[snaps["snapshot"] - 1]
    prior_claim = _global_prior(clock, day, m["claims"], m["impressions"])[snaps["snapshot"] - 1]
    feats = {
        "user_impressions_7d": snaps["imp7"],
        "user_impressions_30d": snaps["imp30"],
        "user_claims_30d": snaps["claim30"],
        "user_redemptions_30d": snaps["red30"],
        "user_claim_rate_30d": _smoothed_rate(snaps["claim30"], snaps["imp30"], prior_claim),
        "user_redemption_rate_30d": _smoothed_rate(snaps["red30"], snaps["imp30"], prior_red),
        "user_avg_discount_redeemed_30d": _ratio(snaps["disc30"], snaps["red30"]),
        "user_redemptions_total": snaps["redtotal"],
        "user_last_redemption_unix": snaps["last_red"],
    }
    return _frame(clock, snaps, {"user_id": user_ids}, feats)


def user_category_affinity(data: CleanData, clock: _Clock, user_ids: np.ndarray) -> pd.DataFrame:
    ev = data.behaviour_events
    cat = ev["item_id"].map(data.items.set_index("item_id")["category"])
    pair_codes, pair_users, pair_cats = _pairs(ev["user_id"], cat)
    et = ev["event_type"].to_numpy()
    day = clock.day(ev["event_ts"])
    measures = {
        "views": (et == "view").astype(float),
        "carts": (et == "add_to_cart").astype(float),
        "orders": (et == "order").astype(float),
        "all": np.ones(len(ev)),
    }
    windows = {f"{m}30": Window(m, 30) for m in measures}
    # The share's denominator is the user's 30-day total over all categories: a
    # pair needs a row whenever that total changes too, not only its own counts.
    user_key = _index_of(ev["user_id"], user_ids)
    pair_user = pd.Index(user_ids).get_indexer(pair_users)
    user_changes = change_days(user_key, day, len(user_ids), clock.n_days, {30})
    snaps = snapshot_windows(pair_codes, day, measures, windows, len(pair_users), clock.n_days,
                             also_emit=_RowsOf(user_changes, pair_user))
    per_day = np.bincount(user_key * clock.n_days + day, minlength=len(user_ids) * clock.n_days)
    cum = np.zeros((len(user_ids), clock.n_days + 1))
    np.cumsum(per_day.reshape(len(user_ids), clock.n_days), axis=1, out=cum[:, 1:])
    u = pair_user[snaps["key"]]
    k = snaps["snapshot"]
    user_total = cum[u, k] - cum[u, np.maximum(k - 30, 0)]
    feats = {
        "ucat_views_30d": snaps["views30"],
        "ucat_carts_30d": snaps["carts30"],
        "ucat_orders_30d": snaps["orders30"],
        "ucat_share_30d": _ratio(snaps["all30"], user_total),
    }
    return _frame(clock, snaps, {"user_id": pair_users, "category": pair_cats}, feats)


def user_coupon_usage(data: CleanData, clock: _Clock) -> pd.DataFrame:
    ce = data.coupon_events
    pair_codes, pair_users, pair_coupons = _pairs(ce["user_id"], ce["coupon_id"])
    m = _coupon_measures(ce)
    windows = {
        "ucp_impressions_7d": Window("impressions", 7),
        "ucp_impressions_total": Window("impressions", None),
        "ucp_claims_total": Window("claims", None),
        "ucp_redemptions_total": Window("redemptions", None),
    }
    snaps = snapshot_windows(pair_codes, clock.day(ce["event_ts"]), m, windows, len(pair_users), clock.n_days)
    keys = {"user_id": pair_users, "coupon_id": pair_coupons}
    return _frame(clock, snaps, keys, {n: snaps[n] for n in windows})


COVERAGE_FEATURES = ("ucov_lines_30d", "ucov_lines_90d", "ucov_lines_365d", "ucov_spend_90d", "ucov_spend_365d",
                     coverage.OBSERVED_FROM)


def user_coupon_coverage(data: CleanData, clock: _Clock) -> pd.DataFrame:
    """The user's purchases of the items a coupon covers (coupon_items): order lines and
    spend over 30 / 90 / 365 days, per user x coupon, whether or not the coupon was ever
    shown, and the data's first order line (features/coverage.py: purchases per day
    observed). No rows without coupon_items (the synthetic data has none)."""
    keys = {"user_id": np.empty(0, dtype=object), "coupon_id": np.empty(0, dtype=object)}
    if data.coupon_items is None or data.coupon_items.empty:
        empty = {n: np.empty(0) for n in ("key", "snapshot", *COVERAGE_FEATURES)}
        empty["key"] = empty["snapshot"] = np.empty(0, dtype=np.int64)
        df = _frame(clock, empty, keys, {n: empty[n] for n in COVERAGE_FEATURES})
        return df.astype({k: pd.StringDtype() for k in keys})  # typed keys: Feast joins on strings
    be = data.behaviour_events
    orders = be.loc[be["event_type"] == "order", ["user_id", "item_id", "event_ts", "amount"]]
    orders = orders.astype({"item_id": str})
    covered = orders.merge(data.coupon_items[["coupon_id", "item_id"]].astype(str), on="item_id")
    pair_codes, pair_users, pair_coupons = _pairs(covered["user_id"], covered["coupon_id"])
    measures = {"lines": np.ones(len(covered)), "spend": covered["amount"].to_numpy(np.float64)}
    windows = {"ucov_lines_30d": Window("lines", 30), "ucov_lines_90d": Window("lines", 90),
               "ucov_lines_365d": Window("lines", 365), "ucov_spend_90d": Window("spend", 90),
               "ucov_spend_365d": Window("spend", 365)}
    snaps = snapshot_windows(pair_codes, clock.day(covered["event_ts"]), measures, windows, len(pair_users),
                             clock.n_days)
    # every order line, covered or not: the days before the first covered purchase were observed too
    observed_from = np.full(len(snaps["key"]), _unix(orders["event_ts"]).min() if len(orders) else np.nan)
    return _frame(clock, snaps, {"user_id": pair_users, "coupon_id": pair_coupons},
                  {**{n: snaps[n] for n in windows}, coverage.OBSERVED_FROM: observed_from})


def coupon_stats(data: CleanData, clock: _Clock, coupon_ids: np.ndarray) -> pd.DataFrame:
    ce = data.coupon_events
    key = _index_of(ce["coupon_id"], coupon_ids)
    day = clock.day(ce["event_ts"])
    m = _coupon_measures(ce)
    windows = {
        "imp7": Window("impressions", 7), "red7": Window("redemptions", 7),
        "imp30": Window("impressions", 30), "claim30": Window("claims", 30),
        "red30": Window("redemptions", 30), "disc_total": Window("discount", None),
    }
    snaps = snapshot_windows(key, day, m, windows, len(coupon_ids), clock.n_days)
    prior = _global_prior(clock, day, m["redemptions"], m["impressions"])[snaps["snapshot"] - 1]
    rate7 = _smoothed_rate(snaps["red7"], snaps["imp7"], prior)
    rate30 = _smoothed_rate(snaps["red30"], snaps["imp30"], prior)
    budget = data.coupons.set_index("coupon_id")["budget"].reindex(coupon_ids).to_numpy()[snaps["key"]]
    feats = {
        "coupon_impressions_7d": snaps["imp7"],
        "coupon_redemptions_7d": snaps["red7"],
        "coupon_redemption_rate_7d": rate7,
        "coupon_impressions_30d": snaps["imp30"],
        "coupon_claims_30d": snaps["claim30"],
        "coupon_redemptions_30d": snaps["red30"],
        "coupon_redemption_rate_30d": rate30,
        "coupon_trend_7d_vs_30d": rate7 / rate30,
        "coupon_budget_used_frac": np.where(np.isfinite(budget) & (budget > 0),
                                            snaps["disc_total"] / np.where(budget > 0, budget, 1), 0.0),
    }
    return _frame(clock, snaps, {"coupon_id": coupon_ids}, feats)


def target_categories(coupons: pd.DataFrame, items: pd.DataFrame) -> pd.Series:
    """The category a coupon is about: its scope's category, or __all__."""
    brand_cat = items.groupby("brand")["category"].agg(lambda s: s.mode().iat[0])
    merchant_cat = items.groupby("merchant_id")["category"].agg(lambda s: s.mode().iat[0])
    scope, value = coupons["scope"], coupons["scope_value"]
    target = pd.Series(ALL_CATEGORIES, index=coupons.index, dtype=object)
    target[scope == "category"] = value[scope == "category"]
    target[scope == "brand"] = value[scope == "brand"].map(brand_cat)
    target[scope == "merchant"] = value[scope == "merchant"].map(merchant_cat)
    return target.fillna(ALL_CATEGORIES)


def coupon_attributes(data: CleanData) -> pd.DataFrame:
    c = data.coupons
    # Known from the moment the coupon exists; we stamp it with valid_from.
    ts = c["valid_from"]
    return pd.DataFrame({
        "coupon_id": c["coupon_id"],
        "event_timestamp": ts,
        "created_timestamp": ts,
        "coupon_type": c["coupon_type"],
        "coupon_value": c["value"].astype(float),
        "coupon_min_spend": c["min_spend"].astype(float),
        "coupon_scope": c["scope"],
        "coupon_scope_value": c["scope_value"].fillna(""),
        "coupon_target_category": target_categories(c, data.items),
        "coupon_valid_from_unix": _unix(c["valid_from"]),
        "coupon_valid_to_unix": _unix(c["valid_to"]),
        "coupon_per_user_limit": c["per_user_limit"].astype(float),
        "coupon_budget": c["budget"].astype(float),
        "coupon_campaign_id": c["campaign_id"],
        **audience_columns(c["audience"], data.membership),
    })


def audience_columns(audience: pd.Series, config: membership.Membership) -> dict[str, np.ndarray]:
    """The coupon_attributes columns of the coupons' (cleaned, canonical) audiences."""
    parsed = {text: membership.parse_audience(text, config) for text in pd.unique(audience.astype(object))}
    a = [parsed[text] for text in audience.astype(object)]
    return {
        "coupon_audience": np.array([x.text for x in a], dtype=object),
        "coupon_audience_min_tier": np.array([x.min_tier for x in a], dtype=np.float64),
        "coupon_audience_segment_mask": np.array([x.segment_mask for x in a], dtype=np.float64),
        "coupon_audience_segment_count": np.array([x.segment_count for x in a], dtype=np.float64),
    }


def _recent_rows(code: np.ndarray, unix: np.ndarray, kind: np.ndarray, prefix: str) -> tuple[np.ndarray, dict]:
    """features/recent.py's counts at each distinct (key, instant) of the events, keys
    given as integer codes: per behaviour type, the key's events in (t - window, t].
    The same counts as recent.counts (the server's pushes), for every key at once: each
    key's times are shifted into a band of their own, wider than the data and the
    widest window, so that one searchsorted per type and window counts within each key
    only. Returns each row's first event (index into the events) and the counts."""
    rel = unix - unix.min()
    band = float(np.ceil(rel.max() + recent.WIDEST + 1))
    shifted = code * band + rel  # exact for whole seconds (below 2**53)
    at, first = np.unique(shifted, return_index=True)  # each distinct (key, instant), sorted
    feats = {}
    for event_type, stem in recent.TYPES.items():
        t = np.sort(shifted[kind == event_type])
        hi = np.searchsorted(t, at, side="right")
        for suffix, seconds in recent.WINDOWS.items():
            feats[f"{prefix}{stem}_{suffix}"] = (hi - np.searchsorted(t, at - seconds, side="right")).astype(np.float64)
    return first, feats


def _recent_frame(keys: dict[str, pd.Series], stamp: pd.Series, feats: dict, names, at_name: str) -> pd.DataFrame:
    stamp = stamp.reset_index(drop=True)
    return pd.DataFrame({
        **{k: pd.array(v, dtype=pd.StringDtype()) for k, v in keys.items()},  # typed keys: Feast joins on strings
        "event_timestamp": stamp,
        "created_timestamp": stamp,
        **{f: feats[f] for f in names},
        at_name: _unix(stamp).astype(np.float64),
    })


def _empty_recent(keys, names, at_name: str) -> pd.DataFrame:
    return pd.DataFrame({**{k: pd.Series([], dtype=pd.StringDtype()) for k in keys},
                         "event_timestamp": pd.Series([], dtype=TS_DTYPE),
                         "created_timestamp": pd.Series([], dtype=TS_DTYPE),
                         **{f: pd.Series([], dtype=np.float64) for f in (*names, at_name)}})


def user_recent_activity(data: CleanData) -> pd.DataFrame:
    """features/recent.py's counts at each instant a user did something: per behaviour
    type, the user's events in (t - window, t], and t."""
    be = data.behaviour_events
    if be.empty:
        return _empty_recent(["user_id"], recent.FEATURES, recent.AT)
    users, code = np.unique(be["user_id"].astype(str).to_numpy(), return_inverse=True)
    first, feats = _recent_rows(code, _unix(be["event_ts"]), be["event_type"].astype(str).to_numpy(), "recent_")
    return _recent_frame({"user_id": users[code[first]]}, be["event_ts"].iloc[first], feats, recent.FEATURES,
                         recent.AT)


def user_category_recent_activity(data: CleanData) -> pd.DataFrame:
    """The same per category of the event's item: at each instant a user did something
    in a category, per behaviour type, their events in that category in (t - window, t],
    and t. Events of an item without a category are left out."""
    be = data.behaviour_events
    categories = data.items["category"].astype(str).to_numpy()
    item_row = (pd.Index(data.items["item_id"].astype(str)).get_indexer(be["item_id"].astype(str))
                if not be.empty else np.zeros(0, dtype=np.int64))  # -1: an item the items table lacks
    keep = np.asarray(item_row) >= 0
    if not keep.any():
        return _empty_recent(["user_id", "category"], recent.CATEGORY_FEATURES, recent.CATEGORY_AT)
    be, item_row = be.loc[keep], np.asarray(item_row)[keep]
    users, user_code = np.unique(be["user_id"].astype(str).to_numpy(), return_inverse=True)
    cats, cat_code = np.unique(categories[item_row], return_inverse=True)
    code = user_code.astype(np.int64) * len(cats) + cat_code  # one code per (user, category)
    first, feats = _recent_rows(code, _unix(be["event_ts"]), be["event_type"].astype(str).to_numpy(),
                                "recent_category_")
    return _recent_frame({"user_id": users[user_code[first]], "category": cats[cat_code[first]]},
                         be["event_ts"].iloc[first], feats, recent.CATEGORY_FEATURES, recent.CATEGORY_AT)


def recent_behaviour_tail(data: CleanData, end: pd.Timestamp) -> pd.DataFrame:
    """The behaviour events of the widest recent-activity window before ``end`` (user,
    time, type, item), for the server: its pushes count them with the events recorded since
    ``end``, so that in the first day after a build the pushed counts hold the batch's
    events too (server/push.py). Not a feature view's source."""
    be = data.behaviour_events
    since = end - pd.Timedelta(seconds=max(recent.WINDOWS.values()))
    keep = be["event_type"].astype(str).isin(list(recent.TYPES)) & (be["event_ts"] >= since) & (be["event_ts"] < end)
    tail = be.loc[keep, ["user_id", "event_ts", "event_type", "item_id"]]
    return pd.DataFrame({"user_id": tail["user_id"].astype(str).to_numpy(), "event_ts": tail["event_ts"].to_numpy(),
                         "event_type": tail["event_type"].astype(str).to_numpy(),
                         "item_id": tail["item_id"].astype(str).to_numpy()})


def coupon_today_activity(data: CleanData) -> pd.DataFrame:
    """features/coupon_today.py's counts after each instant a coupon was shown or
    redeemed: per type, the coupon's events of that UTC day up to and including the
    instant, and the instant; each row stamped VISIBLE_AFTER_US later, so that an
    impression at that instant joins the counts before it."""
    ce = data.coupon_events
    ce = ce.loc[ce["event_type"].astype(str).isin(list(coupon_today.TYPES))] if not ce.empty else ce
    if ce.empty:
        return _empty_recent(["coupon_id"], coupon_today.FEATURES, coupon_today.AT)
    coupons, code = np.unique(ce["coupon_id"].astype(str).to_numpy(), return_inverse=True)
    unix = _unix(ce["event_ts"])
    order = np.lexsort((unix, code))
    code, unix, kind = code[order], unix[order], ce["event_type"].astype(str).to_numpy()[order]
    stamp = ce["event_ts"].iloc[order].reset_index(drop=True)
    day = np.floor(unix / coupon_today.DAY)
    n = len(code)
    new_group = np.r_[True, (code[1:] != code[:-1]) | (day[1:] != day[:-1])]  # a (coupon, day) starts
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    last = np.r_[(code[1:] != code[:-1]) | (unix[1:] != unix[:-1]), True]  # the last event of a (coupon, instant)
    feats = {}
    for event_type, stem in coupon_today.TYPES.items():
        cum = np.cumsum(kind == event_type)
        before = np.where(group_start > 0, cum[group_start - 1], 0)  # the events of earlier groups
        feats[f"coupon_{stem}_today"] = (cum - before)[last].astype(np.float64)
    at = stamp[last].reset_index(drop=True)
    visible = at + pd.Timedelta(microseconds=coupon_today.VISIBLE_AFTER_US)
    return pd.DataFrame({
        "coupon_id": pd.array(coupons[code[last]], dtype=pd.StringDtype()),
        "event_timestamp": visible,
        "created_timestamp": visible,
        **{f: feats[f] for f in coupon_today.FEATURES},
        coupon_today.AT: unix[last],
    })


def item_catalog(data: CleanData) -> pd.DataFrame:
    """The items (id, category, brand, merchant), for the server: RecordEvents rejects
    behaviour events of items it does not list. Not a feature view's source."""
    items = data.items
    return pd.DataFrame({c: items[c].astype(str) for c in ("item_id", "category", "brand", "merchant_id")})


def user_membership(data: CleanData) -> pd.DataFrame:
    """Each user's membership from each change on (raw memberships, stamped at its
    valid_from): tier rank in membership.yaml (0: not a member), segments as a bit mask
    and a count. No rows without a memberships table: every user is then a non-member."""
    m = data.memberships
    if m is None:
        m = pd.DataFrame({"user_id": pd.Series([], dtype=object), "valid_from": pd.Series([], dtype="datetime64[us, UTC]"),
                          "tier": pd.Series([], dtype=object), "segments": pd.Series([], dtype=object)})
    segments = [membership.split(x) for x in m["segments"].astype(object)]
    return pd.DataFrame({
        "user_id": m["user_id"].astype(pd.StringDtype()),  # typed keys: Feast joins on strings
        "event_timestamp": m["valid_from"],
        "created_timestamp": m["valid_from"],
        "membership_tier_rank": np.array([data.membership.rank(t) for t in m["tier"]], dtype=np.float64),
        "membership_segment_mask": np.array([data.membership.mask(s) for s in segments], dtype=np.float64),
        "membership_segment_count": np.array([len(s) for s in segments], dtype=np.float64),
    })


def _arrow(df: pd.DataFrame) -> pa.Table:
    """Arrow table with microsecond UTC timestamps (DuckDB cannot cast nanosecond tz ones)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = [pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
              for f in table.schema]
    return table.cast(pa.schema(fields))


def make_clock(data: CleanData) -> _Clock:
    ts = pd.concat([data.behaviour_events["event_ts"], data.coupon_events["event_ts"]])
    if ts.empty:
        raise ValueError("no events left after cleaning: nothing to build features from")
    origin = ts.min().floor("D")
    return _Clock(origin, int((ts.max() - origin) // DAY) + 1)


def _write(out_dir: Path, name: str, df: pd.DataFrame) -> None:
    tmp = out_dir / f".{name}.parquet.tmp"
    # write then rename: a failed run never leaves a half-written source behind
    try:
        pq.write_table(_arrow(df), tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out_dir / f"{name}.parquet")


def _stale(out_dir: Path, written: set[str]) -> list[StaleSource]:
    """The Parquet files under ``out_dir`` not written in this run, with their age
    relative to the newest one written (file times on both sides: no clock read)."""
    ours = [(out_dir / f"{name}.parquet").stat().st_mtime for name in written]
    built_at = max(ours) if ours else 0.0
    return [StaleSource(path, built_at - path.stat().st_mtime)
            for path in sorted(out_dir.glob("*.parquet"))
            if not path.name.startswith(".") and path.stem not in written]


def build_features(raw_dir: Path, repo_dir: Path, progress: bool = False) -> BuildSummary:
    """Clean ``raw_dir`` and write every offline source into ``repo_dir/data``: the
    built-in views', then those of the builders in ``repo_dir/builders.py``
    (features/custom.py; BuilderError names a builder that fails). ``summary.stale``
    lists the Parquet files there that neither wrote."""
    from tqdm import tqdm

    summary = BuildSummary()
    t0 = time.perf_counter()
    builders = custom.load_builders(repo_dir)  # first: a broken builders.py costs no build
    clash = [b.name for b in builders if b.name in BUILT_IN]
    if clash:
        raise custom.BuilderError(f"{Path(repo_dir) / custom.BUILDERS_FILE}: builder '{clash[0]}' would overwrite "
                                  f"the built-in view's source data/{clash[0]}.parquet: give it another name; "
                                  f"nothing was built")
    data = clean_raw(raw_dir, membership.load(repo_dir))
    summary.report = data.report
    summary.seconds["clean"] = time.perf_counter() - t0
    clock = make_clock(data)
    summary.start, summary.end = clock.origin, clock.stamp(np.array([clock.n_days]))[0]
    user_ids = data.users["user_id"].to_numpy()
    coupon_ids = data.coupons["coupon_id"].to_numpy()
    jobs = {
        "user_activity": lambda: user_activity(data, clock, user_ids),
        "user_coupon_behaviour": lambda: user_coupon_behaviour(data, clock, user_ids),
        "user_category_affinity": lambda: user_category_affinity(data, clock, user_ids),
        "user_coupon_usage": lambda: user_coupon_usage(data, clock),
        "user_coupon_coverage": lambda: user_coupon_coverage(data, clock),
        "coupon_stats": lambda: coupon_stats(data, clock, coupon_ids),
        "coupon_attributes": lambda: coupon_attributes(data),
        "user_membership": lambda: user_membership(data),
        "user_recent_activity": lambda: user_recent_activity(data),
        "user_category_recent_activity": lambda: user_category_recent_activity(data),
        "recent_behaviour_tail": lambda: recent_behaviour_tail(data, summary.end),
        "item_catalog": lambda: item_catalog(data),
        "coupon_today_activity": lambda: coupon_today_activity(data),
    }
    assert tuple(jobs) == BUILT_IN
    out_dir = Path(repo_dir) / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(jobs) + len(builders), desc="build-features", disable=not progress, unit="view") as bar:
        for name, job in jobs.items():
            t = time.perf_counter()
            df = job()
            _write(out_dir, name, df)
            summary.rows[name] = len(df)
            summary.seconds[name] = time.perf_counter() - t
            bar.update()
        data.report.save(out_dir / "cleaning_report.json")
        # what the snapshots hold: every event before `end` (the server counts live events from it)
        (out_dir / BUILD_FILE).write_text(json.dumps({"start": summary.start.isoformat(),
                                                      "end": summary.end.isoformat()}) + "\n")
        for builder in builders:
            t = time.perf_counter()
            # checked before anything is written: a failing builder leaves its old file as it was
            df = custom.run_builder(builder, data)
            try:
                _write(out_dir, builder.name, df)
            except Exception as exc:
                raise custom.BuilderError(f"{builder.where}: its frame cannot be written as Parquet "
                                          f"({type(exc).__name__}: {exc})") from exc
            summary.rows[builder.name] = len(df)
            summary.seconds[builder.name] = time.perf_counter() - t
            summary.custom.append(builder.name)
            bar.update()
    summary.stale = _stale(out_dir, set(summary.rows))
    summary.seconds["total"] = time.perf_counter() - t0
    return summary
