"""A coupon's activity today, declared once for the batch build and for the server's
pushes of fresh values (issue 11): the coupon_today_activity view, keyed by the coupon,
and what a model reads from it at a request (the on-demand coupon_today_features).

"Today" is the UTC day, the day of the event log's live counters (``live_coupon`` on
SQLite, ``c:<coupon>`` on Redis), so the server's pushes are those counters as they
stand: no second count of the log. A row holds, for the UTC day of its instant t, the
coupon's impressions and redemptions from the day's start up to t, and t itself
(``coupon_today_at_unix``). build-features writes a row just after each instant the
coupon was shown or redeemed (:data:`VISIBLE_AFTER_US`): a training impression at t joins
the counts of the events before it, not its own, as a request at t is answered before
its impressions are recorded.

The coupon-level views of coupon_stats are served from a 60-s cache; this one is tagged
:data:`LIVE_TAG` and read per request (server/online.py), so a pushed count reaches the
next ranking. :func:`context` turns a row into what holds at the request, the same way
in training (Feast's on-demand view) and serving: the counts of a row of another day
than the request's are 0 (that day is over), those of the request's day stand.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

VIEW = "coupon_today_activity"
PUSH_SOURCE = "coupon_today_activity_push"
CONTEXT_VIEW = "coupon_today_features"
DAY = 86_400
# A view tagged so (couponrank.serving = live) is read from the online store per request
# rather than from the server's coupon cache: a coupon-keyed view whose values are pushed.
LIVE_TAG = ("couponrank.serving", "live")

TYPES = {"impression": "impressions", "redemption": "redemptions"}  # raw event_type -> feature stem
FEATURES = tuple(f"coupon_{stem}_today" for stem in TYPES.values())
AT = "coupon_today_at_unix"  # the row's instant (not a model input: absolute times drift)
ALL_FEATURES = (*FEATURES, AT)
INPUTS = (*ALL_FEATURES, "request_ts_unix")
OUTPUTS = (*(f"ctx_{f}" for f in FEATURES), "ctx_coupon_redemptions_per_impression_today")
# How long after its instant a built row becomes visible to Feast's point-in-time join
# (which takes rows stamped at or before the impression): one microsecond, the raw
# data's resolution.
VISIBLE_AFTER_US = 1


def counts(ts: np.ndarray, kind: np.ndarray, at: np.ndarray) -> dict[str, np.ndarray]:
    """The definition, for one coupon: ``ts`` (unix seconds, sorted) and ``kind`` (raw
    event types) of its events, and the instants ``at``; per feature, the events of its
    type in ``[start of at's UTC day, at]`` (build-features computes the same for every
    coupon at once; the server reads the log's day counters)."""
    ts = np.asarray(ts, dtype=np.float64)
    kind = np.asarray(kind, dtype=object)
    at = np.asarray(at, dtype=np.float64)
    start = np.floor(at / DAY) * DAY
    out = {}
    for event_type, stem in TYPES.items():
        t = ts[kind == event_type]
        out[f"coupon_{stem}_today"] = (np.searchsorted(t, at, side="right")
                                       - np.searchsorted(t, start, side="left")).astype(np.float64)
    return out


def context(values: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The on-demand view's outputs from arrays of :data:`INPUTS` (one element per
    candidate): today's counts as they stand at the request (0 when the row is of an
    earlier day, or missing) and redemptions per impression (NaN without impressions)."""
    now = np.asarray(values["request_ts_unix"], dtype=np.float64)
    at = np.asarray(values[AT], dtype=np.float64)
    today = np.floor(at / DAY) == np.floor(now / DAY)  # NaN (no row): False
    out = {f"ctx_{name}": np.where(today, np.nan_to_num(np.asarray(values[name], dtype=np.float64)), 0.0)
           for name in FEATURES}
    shown = out["ctx_coupon_impressions_today"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ctx_coupon_redemptions_per_impression_today"] = np.where(
            shown > 0, out["ctx_coupon_redemptions_today"] / shown, np.nan)
    return {name: out[name] for name in OUTPUTS}
