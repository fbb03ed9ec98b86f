"""Fresh features from recorded events: after RecordEvents accepts a user's behaviour
events, the user's recent-activity counts (features/recent.py) at the latest of them
are computed from the event log and written into the online store through Feast's push
API (``FeatureStore.push`` to the user_recent_activity push source), in the background:
the RPC only queues the user. Users queued again before their push coalesce into one.

The counts come from the event log alone, so in the first day after a build the
window's events from before the snapshots' end (in the batch data, not in the log) are
not in them; the next build-features writes their full history.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pandas as pd

from couponrank.features import recent

log = logging.getLogger(__name__)


def supported(store) -> bool:
    """Whether the registry has the recent-activity view and its push source (a
    registry applied before they existed has not: nothing is pushed then)."""
    try:
        store.get_feature_view(recent.VIEW)
        store.get_data_source(recent.PUSH_SOURCE)
        return True
    except Exception:  # Feast's FeatureViewNotFoundException / DataSourceObjectNotFoundException
        return False


class FreshFeatures:
    """Queue users, push their counts every ``interval`` seconds on a thread of its own.
    Each push holds the SQLite online store's write lock while Feast writes, and the
    server's reads wait for it: pushing every half second (a user's events in between
    coalesce) keeps those waits rare and fresh values under a second old."""

    def __init__(self, store, log_, interval: float | None = 0.5):
        self.store = store
        self.log = log_
        self.interval = interval
        self.pushed = 0  # users pushed
        self.failed = 0  # pushes that failed (logged)
        self._pending: dict[str, float] = {}  # user -> latest event time to compute at
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None  # interval None: the owner calls flush() itself (couponrank ingest)
        if interval is not None:
            self._thread = threading.Thread(target=self._run, name="push-features", daemon=True)
            self._thread.start()

    def submit(self, latest: dict[str, float]) -> None:
        """Queue users with the time of their latest recorded behaviour event."""
        with self._lock:
            for user, ts in latest.items():
                self._pending[user] = max(ts, self._pending.get(user, ts))

    def frame(self, users: dict[str, float]) -> pd.DataFrame:
        """The push source's rows: each user's counts at their latest event."""
        widest = max(recent.WINDOWS.values())
        rows = []
        for user, at in sorted(users.items()):
            ts, kind = self.log.behaviour(user, at - widest, at)
            values = recent.counts(ts, kind, np.array([at]))
            rows.append({"user_id": user, **{f: float(values[f][0]) for f in recent.FEATURES},
                         "event_timestamp": pd.Timestamp(at, unit="s", tz="UTC")})
        frame = pd.DataFrame(rows)
        frame["created_timestamp"] = frame["event_timestamp"]
        return frame

    def flush(self) -> bool:
        """Push everything queued so far; False when the push failed (logged)."""
        with self._lock:
            users, self._pending = self._pending, {}
        if not users:
            return True
        try:
            from feast.data_source import PushMode

            self.store.push(recent.PUSH_SOURCE, self.frame(users), to=PushMode.ONLINE)
            self.pushed += len(users)
            return True
        except Exception as exc:  # the store or the log: log it, keep serving; the next event pushes again
            self.failed += 1
            log.warning("pushing recent activity for %d user(s) failed: %s: %s", len(users), type(exc).__name__, exc)
            return False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
