"""The user's recent activity, declared once for the batch build and for the server's
pushes of fresh values (issue 11): overall (the user_recent_activity view) and per
category of the items involved (user_category_recent_activity, keyed by user and
category), and what a model reads from them at a request (the on-demand
recent_activity_features).

A row stamped at an instant t holds, per behaviour type and window, how many of the
user's events (of that category) happened in ``(t - window, t]``, and t itself
(``*_at_unix``). build-features writes a row at each instant the user did something
(in that category): point-in-time history for training; the server, after
RecordEvents accepts a user's behaviour events, computes the same counts at the latest
of them from its event log and pushes them into the online store (the push sources'
views, through Feast's ``FeatureStore.write_to_online_store``: server/push.py).

A row goes stale as the request moves away from t: :func:`context` turns it into what
holds at the request, the same way in training (Feast's on-demand view) and serving
(the server calls it on arrays): a window that closed before the request counts 0,
one still open counts the row's value (an upper bound: some of those events may have
left the window since t, none arrived, or a newer row would say so), and the hours
since t say how fresh it is.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

VIEW = "user_recent_activity"
PUSH_SOURCE = "user_recent_activity_push"
CATEGORY_VIEW = "user_category_recent_activity"
CATEGORY_PUSH_SOURCE = "user_category_recent_activity_push"
CONTEXT_VIEW = "recent_activity_features"  # the on-demand view a model reads

TYPES = {"view": "views", "add_to_cart": "carts", "order": "orders"}  # raw event_type -> feature stem
WINDOWS = {"1h": 3_600, "24h": 86_400}  # suffix -> seconds
WIDEST = max(WINDOWS.values())
FEATURES = tuple(f"recent_{stem}_{suffix}" for suffix in WINDOWS for stem in TYPES.values())
CATEGORY_FEATURES = tuple(f"recent_category_{stem}_{suffix}" for suffix in WINDOWS for stem in TYPES.values())
AT = "recent_at_unix"  # the row's instant (not a model input: absolute times drift)
CATEGORY_AT = "recent_category_at_unix"
ALL_FEATURES = (*FEATURES, AT)
ALL_CATEGORY_FEATURES = (*CATEGORY_FEATURES, CATEGORY_AT)

# The on-demand view's inputs (both views' stored features and the request's time) and outputs.
INPUTS = (*ALL_FEATURES, *ALL_CATEGORY_FEATURES, "request_ts_unix")
OUTPUTS = (*(f"ctx_{f}" for f in FEATURES), "ctx_hours_since_recent_activity",
           *(f"ctx_{f}" for f in CATEGORY_FEATURES), "ctx_hours_since_category_activity")


def counts(ts: np.ndarray, kind: np.ndarray, at: np.ndarray, prefix: str = "recent_") -> dict[str, np.ndarray]:
    """For one user (or one user's category): ``ts`` (unix seconds, sorted) and ``kind``
    (raw event types) of the events, and the instants ``at``; per feature, the count of
    events of its type in ``(at - window, at]``."""
    ts = np.asarray(ts, dtype=np.float64)
    kind = np.asarray(kind, dtype=object)
    at = np.asarray(at, dtype=np.float64)
    out = {}
    for event_type, stem in TYPES.items():
        t = ts[kind == event_type]
        hi = np.searchsorted(t, at, side="right")
        for suffix, seconds in WINDOWS.items():
            out[f"{prefix}{stem}_{suffix}"] = (hi - np.searchsorted(t, at - seconds, side="right")).astype(np.float64)
    return out


# each count's window, looked up once rather than parsed from its name per request
_WINDOW_OF = {name: seconds for names in (FEATURES, CATEGORY_FEATURES) for name in names
              for suffix, seconds in WINDOWS.items() if name.endswith("_" + suffix)}


def _at_request(values: Mapping[str, object], names, at_name: str, now: np.ndarray, out: dict, hours: str) -> None:
    at = np.asarray(values[at_name], dtype=np.float64)
    age = now - at  # NaN: no row (nothing recorded for the user or category)
    for name in names:
        seconds = _WINDOW_OF[name]
        count = np.asarray(values[name], dtype=np.float64)
        out[f"ctx_{name}"] = np.where(age < seconds, np.nan_to_num(count), 0.0)
    out[hours] = age / 3600.0


def context(values: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The on-demand view's outputs from arrays of :data:`INPUTS` (one element per
    candidate): the counts as they stand at the request and the hours since each row."""
    now = np.asarray(values["request_ts_unix"], dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    _at_request(values, FEATURES, AT, now, out, "ctx_hours_since_recent_activity")
    _at_request(values, CATEGORY_FEATURES, CATEGORY_AT, now, out, "ctx_hours_since_category_activity")
    return {name: out[name] for name in OUTPUTS}
