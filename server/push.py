"""Fresh features from recorded events: after RecordEvents accepts a user's behaviour
events, the user's recent-activity counts (features/recent.py) at the latest of them,
overall and per category of the items, are computed from the event log and written
into the online store as Feast's push does it (the views the user_recent_activity
and user_category_recent_activity push sources feed, ``FeatureStore.write_to_online_store``
each: :func:`write`), in the background: the RPC only queues the user. Users queued
again before their push coalesce into one. Likewise a coupon's impressions and
redemptions today (features/coupon_today.py), read from the log's day counters, after
its impressions and redemptions (coupon_today_activity_push).

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

from couponrank.features import coupon_today, recent

log = logging.getLogger(__name__)


def supported(store) -> bool:
    """Whether the registry has the recent-activity view and its push source (a
    registry applied before they existed has not: nothing is pushed then)."""
    return _has(store, recent.VIEW, recent.PUSH_SOURCE)


def _has(store, view: str, source: str) -> bool:
    try:
        store.get_feature_view(view)
        store.get_data_source(source)
        return True
    except Exception:  # Feast's FeatureViewNotFoundException / DataSourceObjectNotFoundException
        return False


def write(store, views: dict[str, list[str]], source: str, frame: pd.DataFrame) -> None:
    """Write ``frame`` to every feature view the push source ``source`` feeds: what
    ``FeatureStore.push(source, frame, to=PushMode.ONLINE)`` does, through the same
    ``FeatureStore.write_to_online_store`` per view, with the views resolved once
    (``views`` caches them). ``push`` itself lists every feature view and feature
    service of the registry on each call (70-150 ms here, whatever the rows: most of a
    small push, and CPU the serving threads wait for); it then also recomputes
    feature services marked ``precompute_online``, which ours are not."""
    if source not in views:
        views[source] = [fv.name for fv in store.list_feature_views()
                         if fv.stream_source is not None and fv.stream_source.name == source]
    for view in views[source]:
        store.write_to_online_store(view, frame)


def _fields(store, view: str) -> list[str]:
    """The view's features as the registry has them (one applied before the ``*_at_unix``
    features existed lacks them: the pushes then leave them out)."""
    return [f.name for f in store.get_feature_view(view).features]


def latest(records) -> tuple[dict[str, float], dict[str, float], dict[str, set]]:
    """Of newly recorded events (EventRecords): each user's latest behaviour event time,
    each coupon's latest impression or redemption time, and each user's items of those
    behaviour events (what FreshFeatures.submit takes)."""
    from couponrank.schema import BEHAVIOUR_EVENT_TYPES

    users: dict[str, float] = {}
    coupons: dict[str, float] = {}
    items: dict[str, set] = {}
    for r in records:
        if r.event_type in BEHAVIOUR_EVENT_TYPES:
            users[r.user_id] = max(r.event_ts, users.get(r.user_id, r.event_ts))
            items.setdefault(r.user_id, set()).add(r.item_id)
        elif r.event_type in coupon_today.TYPES and r.coupon_id is not None:
            coupons[r.coupon_id] = max(r.event_ts, coupons.get(r.coupon_id, r.event_ts))
    return users, coupons, items


TAIL_FILE = "recent_behaviour_tail.parquet"  # in <repo>/data, by build-features
NO_EVENTS = (np.zeros(0), np.zeros(0, dtype=object), np.zeros(0, dtype=object))


class BatchTail:
    """The batch's behaviour events of the widest window before ``end`` (unix seconds),
    per user: what the pushed counts take from before the snapshots' end."""

    def __init__(self, end: float, frame: pd.DataFrame):
        self.end = end
        frame = frame.sort_values(["user_id", "event_ts"], kind="stable")
        epoch = pd.Timestamp(0, tz="UTC")
        ts = (pd.to_datetime(frame["event_ts"], utc=True) - epoch).dt.total_seconds().to_numpy(dtype=np.float64)
        kinds = frame["event_type"].astype(str).to_numpy(dtype=object)
        items = (frame["item_id"].astype(object).to_numpy(dtype=object) if "item_id" in frame
                 else np.full(len(frame), None, dtype=object))  # a tail written before items were kept
        users = frame["user_id"].astype(str).to_numpy()
        bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True]) if len(users) else np.zeros(1, int)
        self._events = {users[a]: (ts[a:b], kinds[a:b], items[a:b]) for a, b in zip(bounds[:-1], bounds[1:])}

    def events(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's batch events before ``end``: times (sorted), types and items."""
        return self._events.get(user_id, NO_EVENTS)


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
    frame = pd.read_parquet(path)
    return BatchTail(built_until(repo).timestamp(), frame)


def load_categories(repo) -> dict[str, str]:
    """Item id -> category from ``<repo>/data/item_catalog.parquet`` (build-features);
    empty for a workspace built before it existed (nothing is pushed per category then)."""
    from pathlib import Path

    path = Path(repo) / "data" / "item_catalog.parquet"
    if not path.is_file():
        return {}
    frame = pd.read_parquet(path, columns=["item_id", "category"])
    return dict(zip(frame["item_id"].astype(str), frame["category"].astype(str)))


class FreshFeatures:
    """Queue users, push their counts every ``interval`` seconds on a thread of its own.
    Each push holds the SQLite online store's write lock while Feast writes, and the
    server's reads wait for it: pushing every half second (a user's events in between
    coalesce) keeps those waits rare and fresh values under a second old.

    A queued user's push writes their user_recent_activity row at their latest event
    and, given the items' ``categories``, a user_category_recent_activity row per
    category of their events in the widest window, each at the latest event in it (the
    rows build-features would write at those instants).

    A queued coupon's push writes its coupon_today_activity row: the log's counters of
    the UTC day of its latest impression or redemption, at that time. Those counters
    hold the log's events alone, so days before ``built_until`` (the snapshots' end, a
    midnight: the batch holds that day's earlier events) are not pushed, and a late
    event never pushes an earlier day over a later one."""

    def __init__(self, store, log_, interval: float | None = 0.5, tail: BatchTail | None = None,
                 categories: dict[str, str] | None = None, built_until: float = 0.0):
        self.store = store
        self.log = log_
        self.tail = tail  # the batch's events before the snapshots' end; None: the log alone
        self.categories = categories or {}  # item -> category; empty: no per-category pushes
        self.built_until = float(built_until)
        self.interval = interval
        self.pushed = 0  # users pushed
        self.coupons_pushed = 0
        self.failed = 0  # pushes that failed (logged)
        self._fields: tuple[list[str], list[str] | None] | None = None  # read from the registry at the first push
        self._coupon_fields: list[str] | None = None  # [] when the registry has no coupon_today_activity
        self._views: dict[str, list[str]] = {}  # push source -> the views it feeds (write())
        self._pending: dict[str, float] = {}  # user -> latest event time to compute at
        # user -> the items of their new events (their categories' rows are pushed); None: all
        self._pending_items: dict[str, set | None] = {}
        self._pending_coupons: dict[str, float] = {}  # coupon -> latest impression or redemption time
        self._coupon_at: dict[str, float] = {}  # coupon -> the time of its last pushed row
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None  # interval None: the owner calls flush() itself (couponrank ingest)
        if interval is not None:
            self._thread = threading.Thread(target=self._run, name="push-features", daemon=True)
            self._thread.start()

    def submit(self, latest: dict[str, float], coupons: dict[str, float] | None = None,
               items: dict[str, set] | None = None) -> None:
        """Queue users with the time of their latest recorded behaviour event (and the
        items of their new events: only those items' categories get a new row, as a
        category row depends on that category's events alone; None: every category of
        their last day), and coupons with the time of their latest impression or
        redemption."""
        with self._lock:
            for user, ts in latest.items():
                self._pending[user] = max(ts, self._pending.get(user, ts))
                mine = None if items is None else items.get(user, set())
                before = self._pending_items.get(user, set())
                self._pending_items[user] = None if mine is None or before is None else before | mine
            for coupon, ts in (coupons or {}).items():
                self._pending_coupons[coupon] = max(ts, self._pending_coupons.get(coupon, ts))

    def coupon_frame(self, coupons: dict[str, float]) -> pd.DataFrame | None:
        """The coupon push source's rows: each coupon's day counters at its latest
        event; None when the registry has no such view."""
        if self._coupon_fields is None:
            self._coupon_fields = (_fields(self.store, coupon_today.VIEW)
                                   if _has(self.store, coupon_today.VIEW, coupon_today.PUSH_SOURCE) else [])
        if not self._coupon_fields:
            return None
        at = {c: max(t, self._coupon_at.get(c, t)) for c, t in sorted(coupons.items()) if t >= self.built_until}
        by_day: dict[int, list[str]] = {}
        for coupon, t in at.items():
            by_day.setdefault(int(t // coupon_today.DAY), []).append(coupon)
        rows = []
        for day, ids in sorted(by_day.items()):
            shown, redeemed = self.log.coupon_day(ids, day)
            for coupon, i, r in zip(ids, shown, redeemed):
                rows.append({"coupon_id": coupon, "coupon_impressions_today": float(i),
                             "coupon_redemptions_today": float(r), coupon_today.AT: at[coupon],
                             "event_timestamp": pd.Timestamp(at[coupon], unit="s", tz="UTC")})
        return _push_frame(rows, ["coupon_id"], self._coupon_fields)

    def frames(self, users: dict[str, float], items: dict[str, set | None] | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The push sources' rows: each user's counts at their latest event, and (when
        pushed) each of their recent categories' counts at the latest event in it: the
        categories of ``items[user]`` (None, or no entry for the user: all of them)."""
        if self._fields is None:
            pushes_categories = self.categories and _has(self.store, recent.CATEGORY_VIEW, recent.CATEGORY_PUSH_SOURCE)
            # None: the registry has no such view, or no categories are known
            self._fields = (_fields(self.store, recent.VIEW),
                            _fields(self.store, recent.CATEGORY_VIEW) if pushes_categories else None)
        user_fields, category_fields = self._fields
        names = sorted(users)
        fetched = [self.events(user, users[user] - recent.WIDEST, users[user]) for user in names]
        sizes = np.array([len(f[0]) for f in fetched], dtype=np.int64)
        owner = np.repeat(np.arange(len(names)), sizes)  # each event's user, as an index into names
        ts = np.concatenate([f[0] for f in fetched]) if len(names) else np.zeros(0)
        kind = np.concatenate([f[1] for f in fetched]) if len(names) else np.zeros(0, dtype=object)
        at = np.array([users[u] for u in names], dtype=np.float64)
        counts = _counts_at(owner, ts, kind, at, "recent_")  # every user at once (events already <= at)
        user_rows = pd.DataFrame({"user_id": names, **counts, recent.AT: at, "event_timestamp": _stamps(at)})
        if category_fields is None:
            return _push_frame(user_rows, ["user_id"], user_fields), None
        event_items = np.concatenate([f[2] for f in fetched]) if len(names) else np.zeros(0, dtype=object)
        cats = np.array([self.categories.get(i) if i is not None else None for i in event_items], dtype=object)
        wanted = [None if (items or {}).get(u) is None else {self.categories.get(i) for i in items[u]} for u in names]
        known = np.array([i for i, (o, c) in enumerate(zip(owner, cats))
                          if c is not None and (wanted[o] is None or c in wanted[o])], dtype=np.int64)
        # one group per (user, category), each counted at the latest event in it
        pairs, group = np.unique(np.char.add(owner[known].astype(str), "\x1f" + cats[known].astype(str)),
                                 return_inverse=True) if len(known) else (np.zeros(0, dtype=str), np.zeros(0, int))
        last = np.full(len(pairs), -np.inf)
        np.maximum.at(last, group, ts[known])
        counts = _counts_at(group, ts[known], kind[known], last, "recent_category_")
        split = [p.split("\x1f", 1) for p in pairs]
        category_rows = pd.DataFrame({"user_id": [names[int(u)] for u, _ in split], "category": [c for _, c in split],
                                      **counts, recent.CATEGORY_AT: last, "event_timestamp": _stamps(last)})
        return (_push_frame(user_rows, ["user_id"], user_fields),
                _push_frame(category_rows, ["user_id", "category"], category_fields))

    def events(self, user_id: str, since: float, until: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's behaviour events with since < event_ts <= until: the batch tail's
        before the snapshots' end, the log's from it on (times sorted, types, items)."""
        if self.tail is None:
            return self.log.behaviour(user_id, since, until)
        end = self.tail.end
        logged = self.log.behaviour(user_id, max(since, float(np.nextafter(end, -np.inf))), until)
        batch = self.tail.events(user_id)
        keep = (batch[0] > since) & (batch[0] <= until)  # all before end: they sort before the log's
        return tuple(np.concatenate([b[keep], x]) for b, x in zip(batch, logged))

    def flush(self) -> bool:
        """Push everything queued so far; False when the push failed (logged)."""
        with self._lock:
            users, self._pending = self._pending, {}
            items, self._pending_items = self._pending_items, {}
            coupons, self._pending_coupons = self._pending_coupons, {}
        if not users and not coupons:
            return True
        try:
            if users:
                user_rows, category_rows = self.frames(users, items)
                write(self.store, self._views, recent.PUSH_SOURCE, user_rows)
                if category_rows is not None and len(category_rows):
                    write(self.store, self._views, recent.CATEGORY_PUSH_SOURCE, category_rows)
                self.pushed += len(users)
            if coupons:
                coupon_rows = self.coupon_frame(coupons)
                if coupon_rows is not None and len(coupon_rows):
                    write(self.store, self._views, coupon_today.PUSH_SOURCE, coupon_rows)
                    self._coupon_at.update(zip(coupon_rows["coupon_id"], coupon_rows[coupon_today.AT]))
                    self.coupons_pushed += len(coupon_rows)
            return True
        except Exception as exc:  # the store or the log: log it, keep serving; the next event pushes again
            self.failed += 1
            log.warning("pushing fresh features for %d user(s) and %d coupon(s) failed: %s: %s", len(users),
                        len(coupons), type(exc).__name__, exc)
            return False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()


def _counts_at(group: np.ndarray, ts: np.ndarray, kind: np.ndarray, at: np.ndarray, prefix: str) -> dict:
    """recent.counts for many groups at once: per feature, the events of group g of its
    type in ``(at[g] - window, at[g]]`` (every event given is at or before its group's
    ``at``)."""
    out = {}
    for event_type, stem in recent.TYPES.items():
        mine = kind == event_type
        for suffix, seconds in recent.WINDOWS.items():
            inside = mine & (ts > at[group] - seconds)
            out[f"{prefix}{stem}_{suffix}"] = np.bincount(group[inside], minlength=len(at)).astype(np.float64)
    return out


def _stamps(unix: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(unix, dtype=np.float64), unit="s", utc=True))


def _push_frame(rows: list[dict] | pd.DataFrame, keys: list[str], fields: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*keys, *fields, "event_timestamp"])  # only the registry's fields
    frame["created_timestamp"] = frame["event_timestamp"]
    return frame
