"""Point-in-time training sets from coupon impressions.

Each impression is a row; its label comes from what followed it (2 = redeemed, 1 =
claimed, 0 = nothing) within ``label_window``; its features come from Feast's
``get_historical_features`` for the training config's feature service at the impression time
(so they only see snapshots stamped at or before it), plus the on-demand request
features computed from the impression's own context. Ranking groups are requests:
the coupons shown to one user at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from couponrank import schema
from couponrank.features import repo as feast_repo
from couponrank.features.services import (DEFAULT_FEATURE_SERVICE, UndeclaredJoinKey, feature_names,  # noqa: F401
                                          get_service, mapped_keys)

KEY_COLUMNS = ["impression_id", "request_id", "user_id", "coupon_id", "event_timestamp"]


class TrainingDataError(ValueError):
    """The training data cannot produce a trustworthy model; the message says why."""


def label_impressions(raw_dir: Path, label_window: timedelta | None = timedelta(hours=72)) -> pd.DataFrame:
    """One row per impression with its graded label and request context.

    Claims and redemptions count only when they happen within ``label_window`` of
    the impression they reference; ``None``: until the coupon's ``valid_to`` (a
    campaign's coupon may be redeemed any time it is valid). ``label_closes`` is the
    instant the label became final (what split.label_known checks).
    """
    raw_dir = Path(raw_dir)
    files = schema.COUPON_EVENTS.files_in(raw_dir)  # with the exported recorded events, if any
    ce = pd.read_parquet(files[0])
    if len(files) > 1:  # an event both in the batch file and recorded counts once
        ce = pd.concat([ce, *(pd.read_parquet(p) for p in files[1:])], ignore_index=True)
        ce = ce.drop_duplicates("event_id", keep="first")
    imp = ce[ce.event_type == "impression"].drop(columns=["impression_id"]).rename(
        columns={"event_id": "impression_id", "event_ts": "event_timestamp"})
    if label_window is None:
        valid_to = pd.read_parquet(raw_dir / "coupons.parquet", columns=["coupon_id", "valid_to"])
        valid_to = valid_to.drop_duplicates("coupon_id", keep="last").set_index("coupon_id")["valid_to"]
        closes = imp.coupon_id.map(valid_to)
        imp = imp.assign(label_closes=closes.where(closes > imp.event_timestamp, imp.event_timestamp))
    else:
        imp = imp.assign(label_closes=imp.event_timestamp + label_window)
    follow = ce[ce.event_type.isin(["claim", "redemption"])][["impression_id", "event_type", "event_ts"]]
    follow = follow.merge(imp[["impression_id", "event_timestamp", "label_closes"]], on="impression_id")
    in_window = (follow.event_ts >= follow.event_timestamp) & (follow.event_ts <= follow.label_closes)
    grade = follow.loc[in_window].assign(grade=lambda d: np.where(d.event_type == "redemption", 2, 1))
    best = grade.groupby("impression_id")["grade"].max()
    out = imp[KEY_COLUMNS + ["placement", "position", "cart_value", "cart_categories", "label_closes"]].copy()
    out["label"] = out.impression_id.map(best).fillna(0).astype(np.int64)
    truth = raw_dir / "impression_truth.parquet"
    if truth.exists():
        p = pd.read_parquet(truth).set_index("impression_id")["p_redeem"]
        out["p_redeem"] = out.impression_id.map(p)
    return out.sort_values(["event_timestamp", "request_id", "position"]).reset_index(drop=True)


def data_start(raw_dir: Path) -> pd.Timestamp:
    """The first event of the raw data (behaviour or coupon): feature windows reaching
    before it are truncated."""
    starts = [pd.read_parquet(Path(raw_dir) / f"{t}.parquet", columns=["event_ts"]).event_ts.min()
              for t in ("behaviour_events", "coupon_events") if (Path(raw_dir) / f"{t}.parquet").exists()]
    starts = [s for s in starts if pd.notna(s)]
    if not starts:
        raise TrainingDataError(f"{raw_dir}: no events to start the data from")
    return min(starts)


def log_end(raw_dir: Path) -> pd.Timestamp:
    """The last event of the coupon log: labels of later windows are unknown (censored)."""
    return pd.read_parquet(Path(raw_dir) / "coupon_events.parquet", columns=["event_ts"]).event_ts.max()


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # KEY_COLUMNS + context + label (+ p_redeem) + features
    features: list[str]
    service: str = DEFAULT_FEATURE_SERVICE  # the feature service the features come from


# Impressions per Feast point-in-time join. One join of every impression held ~24 KB per
# impression at its peak (19.2 GiB for 800k, issue 10); chunks bound the peak by the
# chunk, not the data set, for a few scans of the sources more (bench/training_set.py).
# The recent-activity views (ranker_v4) have a row per event: 100k impressions peaked at
# 7.84 GiB for 1.1M impressions, 25k at 5.25 GiB (docs/benchmarks.md).
CHUNK_ROWS = 25_000


def build_training_set(repo: Path, impressions: pd.DataFrame, service: str, online: str = "sqlite",
                       chunk_rows: int = CHUNK_ROWS) -> TrainingSet:
    """Join every impression with the point-in-time features of feature service
    ``service`` through Feast, ``chunk_rows`` impressions at a time (0: all at once)."""
    store = feast_repo.store(repo, online)
    names = feature_names(store, service)
    try:
        keys = mapped_keys(store, service)  # join keys filled from the coupon's attributes
    except UndeclaredJoinKey as exc:
        raise TrainingDataError(str(exc)) from None
    entity_df = impressions[["impression_id", "user_id", "coupon_id", "event_timestamp",
                             "cart_value", "cart_categories", "placement"]].copy()
    if keys:
        path = Path(repo) / "data" / "coupon_attributes.parquet"
        try:
            attrs = pd.read_parquet(path, columns=["coupon_id", *dict.fromkeys(keys.values())])
        except (KeyError, ValueError, pa.ArrowInvalid) as exc:  # a declared column the source lacks
            raise TrainingDataError(f"{path}: cannot read the columns entities are declared to come from "
                                    f"({', '.join(sorted(set(keys.values())))}): {exc}") from None
        # the latest attributes per coupon, as the server's catalogue holds them
        latest = attrs.drop_duplicates("coupon_id", keep="last").set_index("coupon_id")
        for key, column in keys.items():
            entity_df[key] = entity_df.coupon_id.map(latest[column]).fillna("__unknown__").astype(str)
    entity_df["request_ts_unix"] = (
        entity_df.event_timestamp - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    entity_df["event_timestamp"] = entity_df.event_timestamp.astype("datetime64[us, UTC]")
    feature_service = get_service(store, service)
    step = chunk_rows if chunk_rows and chunk_rows > 0 else max(len(entity_df), 1)
    parts = []
    for lo in range(0, len(entity_df), step):
        chunk = entity_df.iloc[lo:lo + step]
        hist = store.get_historical_features(entity_df=chunk, features=feature_service).to_df()
        if len(hist) != len(chunk):
            raise TrainingDataError(
                f"Feast returned {len(hist)} rows for {len(chunk)} impressions; the join lost rows")
        parts.append(hist.set_index("impression_id")[names].astype(np.float64))
        del hist
    hist = pd.concat(parts) if parts else pd.DataFrame(columns=names, dtype=np.float64)
    frame = impressions.join(hist, on="impression_id")
    frame[names] = frame[names].astype(np.float64)
    return TrainingSet(frame.reset_index(drop=True), names, service)
