"""The user's recent activity (the user_recent_activity view), declared once for the
batch build and for the server's pushes of fresh values (issue 11).

A row stamped at an instant t holds, per behaviour type and window, how many of the
user's events happened in ``(t - window, t]``. build-features writes a row at each
instant the user did something (point-in-time history for training); the server,
after RecordEvents accepts a user's behaviour events, computes the same counts at the
latest of them from its event log and pushes them into the online store through
Feast's push API (``FeatureStore.push`` to PUSH_SOURCE).
"""

from __future__ import annotations

import numpy as np

VIEW = "user_recent_activity"
PUSH_SOURCE = "user_recent_activity_push"
TYPES = {"view": "views", "add_to_cart": "carts", "order": "orders"}  # raw event_type -> feature stem
WINDOWS = {"1h": 3_600, "24h": 86_400}  # suffix -> seconds
FEATURES = tuple(f"recent_{stem}_{suffix}" for suffix in WINDOWS for stem in TYPES.values())


def counts(ts: np.ndarray, kind: np.ndarray, at: np.ndarray) -> dict[str, np.ndarray]:
    """For one user: ``ts`` (unix seconds, sorted) and ``kind`` (raw event types) of the
    user's behaviour events, and the instants ``at``; per feature, the count of events
    of its type in ``(at - window, at]``."""
    ts = np.asarray(ts, dtype=np.float64)
    kind = np.asarray(kind, dtype=object)
    at = np.asarray(at, dtype=np.float64)
    out = {}
    for event_type, stem in TYPES.items():
        t = ts[kind == event_type]
        hi = np.searchsorted(t, at, side="right")
        for suffix, seconds in WINDOWS.items():
            out[f"recent_{stem}_{suffix}"] = (hi - np.searchsorted(t, at - seconds, side="right")).astype(np.float64)
    return out
