"""Fresh features from recorded events: after RecordEvents accepts a user's behaviour
events, the user's recent-activity counts (features/recent.py) at the latest of them
are computed from the event log and written into the online store through Feast's push
API (``FeatureStore.push`` to the user_recent_activity push source), in the background:
the RPC only queues the user. Users queued again before their push coalesce into one.

The counts join two sources at the snapshots' end, as the live counters do: the batch's
events before it (``data/recent_behaviour_tail.parquet``, the widest window's worth,
written by build-features) and the log's events from it on. So in the first day after a
build a pushed count holds the day's batch events too, and an event exported and built
since is not counted twice. A workspace built before the tail file existed counts the
log alone (logged at start).
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


TAIL_FILE = "recent_behaviour_tail.parquet"  # in <repo>/data, by build-features


class BatchTail:
    """The batch's behaviour events of the widest window before ``end`` (unix seconds),
    per user: what the pushed counts take from before the snapshots' end."""

    def __init__(self, end: float, frame: pd.DataFrame):
        self.end = end
        frame = frame.sort_values(["user_id", "event_ts"], kind="stable")
        epoch = pd.Timestamp(0, tz="UTC")
        ts = (pd.to_datetime(frame["event_ts"], utc=True) - epoch).dt.total_seconds().to_numpy(dtype=np.float64)
        kinds = frame["event_type"].astype(str).to_numpy(dtype=object)
        users = frame["user_id"].astype(str).to_numpy()
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True]) if len(users) else np.zeros(1, int)
        self._events = {users[a]: (ts[a:b], kinds[a:b]) for a, b in zip(bounds[:-1], bounds[1:])}

    def events(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The user's batch events before ``end``: times (sorted) and types."""
        return self._events.get(user_id, (np.zeros(0), np.zeros(0, dtype=object)))


def load_tail(repo) -> BatchTail | None:
    """``<repo>/data/recent_behaviour_tail.parquet`` with the snapshots' end; None for a
    workspace built before build-features wrote it (the pushes then count the log alone)."""
    from pathlib import Path

    from couponrank.features.repo import built_until

    path = Path(repo) / "data" / TAIL_FILE
    if not path.is_file():
        log.warning("%s is missing (a workspace built before it existed): pushed recent-activity counts leave out "
                    "the batch's events of the day before the build's end; run build-features again", path.name)
        return None
    frame = pd.read_parquet(path, columns=["user_id", "event_ts", "event_type"])
    return BatchTail(built_until(repo).timestamp(), frame)


class FreshFeatures:
    """Queue users, push their counts every ``interval`` seconds on a thread of its own.
    Each push holds the SQLite online store's write lock while Feast writes, and the
    server's reads wait for it: pushing every half second (a user's events in between
    coalesce) keeps those waits rare and fresh values under a second old."""

    def __init__(self, store, log_, interval: float | None = 0.5, tail: BatchTail | None = None):
        self.store = store
        self.log = log_
        self.tail = tail  # the batch's events before the snapshots' end; None: the log alone
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
            ts, kind = self.events(user, at - widest, at)
            values = recent.counts(ts, kind, np.array([at]))
            rows.append({"user_id": user, **{f: float(values[f][0]) for f in recent.FEATURES},
                         "event_timestamp": pd.Timestamp(at, unit="s", tz="UTC")})
        frame = pd.DataFrame(rows)
        frame["created_timestamp"] = frame["event_timestamp"]
        return frame

    def events(self, user_id: str, since: float, until: float) -> tuple[np.ndarray, np.ndarray]:
        """The user's behaviour events with since < event_ts <= until: the batch tail's
        before the snapshots' end, the log's from it on (times sorted, types)."""
        if self.tail is None:
            return self.log.behaviour(user_id, since, until)
        end = self.tail.end
        ts, kind = self.log.behaviour(user_id, max(since, float(np.nextafter(end, -np.inf))), until)
        bt, bk = self.tail.events(user_id)
        keep = (bt > since) & (bt <= until)  # all before end: they sort before the log's
        return np.concatenate([bt[keep], ts]), np.concatenate([bk[keep], kind])

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
