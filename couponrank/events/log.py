"""The durable event log and the live counters, in one SQLite file (WAL mode).

Every accepted event is written with the counters it moves in one transaction, synced
before the transaction returns (``synchronous=FULL``), so an event is either recorded
and counted, or neither: a crash between a batch and its answer loses nothing, and the
client's resend of that batch is answered DUPLICATE without counting again (the
event_id is the table's key). ``recount()`` rebuilds the counters from the events, to
check that they agree.

Counters are kept per UTC day, so that a reader can count only the events the feature
snapshots do not hold yet: a snapshot built up to midnight T holds every event before
T; the live part of a count is its days from T on (:meth:`EventLog.live`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from couponrank.schema import BEHAVIOUR_EVENT_TYPES, COUPON_EVENT_TYPES

DAY = 86_400


@dataclass(frozen=True)
class EventRecord:
    """One validated event, in the raw schema's terms (docs/data.md), money in the
    catalogue's currency."""

    event_id: str
    user_id: str
    event_type: str  # one of schema.COUPON_EVENT_TYPES or schema.BEHAVIOUR_EVENT_TYPES
    event_ts: float  # unix seconds, UTC
    coupon_id: str | None = None
    item_id: str | None = None
    request_id: str | None = None  # impression
    placement: str | None = None  # impression
    position: int | None = None  # impression
    impression_id: str | None = None  # claim / redemption: the impression's event_id
    order_id: str | None = None  # redemption, order line
    amount: float | None = None  # order line amount; a redemption's order total
    discount: float | None = None  # redemption


COLUMNS = tuple(f.name for f in fields(EventRecord))


@dataclass(frozen=True)
class RankingRecord:
    """One RankCoupons answer, as served: what impressions join by request_id."""

    request_id: str
    user_id: str
    ts: float  # the request time, unix seconds
    placement: str
    cart_value: float  # catalogue currency
    cart_categories: str  # "|"-joined
    model_version: str  # "" for a fallback ranking
    degraded_reason: str  # "" when not degraded
    ranked: str  # JSON [[coupon_id, score], ...] best first
    ineligible: str  # JSON [[coupon_id, reason], ...]


RANKING_COLUMNS = tuple(f.name for f in fields(RankingRecord))

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, event_type TEXT NOT NULL, event_ts REAL NOT NULL,
    coupon_id TEXT, item_id TEXT, request_id TEXT, placement TEXT, position INTEGER, impression_id TEXT,
    order_id TEXT, amount REAL, discount REAL);
CREATE INDEX IF NOT EXISTS events_ts ON events (event_ts);
CREATE INDEX IF NOT EXISTS events_user_ts ON events (user_id, event_ts);
CREATE TABLE IF NOT EXISTS live_user_coupon (
    user_id TEXT NOT NULL, coupon_id TEXT NOT NULL, day INTEGER NOT NULL,
    impressions INTEGER NOT NULL DEFAULT 0, claims INTEGER NOT NULL DEFAULT 0,
    redemptions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, coupon_id, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rankings (
    request_id TEXT NOT NULL, user_id TEXT NOT NULL, ts REAL NOT NULL, placement TEXT NOT NULL,
    cart_value REAL NOT NULL, cart_categories TEXT NOT NULL, model_version TEXT NOT NULL,
    degraded_reason TEXT NOT NULL, ranked TEXT NOT NULL, ineligible TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rankings_request ON rankings (request_id);
CREATE TABLE IF NOT EXISTS live_coupon (
    coupon_id TEXT NOT NULL, day INTEGER NOT NULL,
    impressions INTEGER NOT NULL DEFAULT 0, redemptions INTEGER NOT NULL DEFAULT 0,
    discount REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (coupon_id, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
_INSERT = f"INSERT OR IGNORE INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_COUNT = {  # event type -> (user x coupon column, coupon column)
    "impression": ("impressions", "impressions"),
    "claim": ("claims", None),
    "redemption": ("redemptions", "redemptions"),
}


class EventLogError(RuntimeError):
    """The log cannot be opened or written; the message names the file."""


class RankingWriter:
    """Writes served rankings in the background, in batches, so that the ranking path
    never waits for the disk: ``submit`` only queues. A full queue (the disk far behind)
    drops the ranking and counts it in ``dropped`` rather than slow the answers."""

    def __init__(self, log_: "EventLog", max_queued: int = 10_000, batch: int = 500, interval: float = 0.2):
        import queue

        self.log = log_
        self.queue: queue.Queue = queue.Queue(max_queued)
        self.batch, self.interval = batch, interval
        self.dropped = 0
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ranking-log", daemon=True)
        self._thread.start()

    def submit(self, record: "RankingRecord") -> None:
        import queue

        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _drain(self) -> None:
        import queue

        records = []
        while len(records) < self.batch:
            try:
                records.append(self.queue.get_nowait())
            except queue.Empty:
                break
        if records:
            try:
                self.log.record_rankings(records)
                self.written += len(records)
            except EventLogError as exc:
                self.dropped += len(records)
                import logging

                logging.getLogger(__name__).warning("served rankings not logged: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            while not self.queue.empty():
                self._drain()

    def flush(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        while not self.queue.empty():
            self._drain()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.flush()


class EventLog:
    """Append-only events with their live counters. Thread-safe: one connection per
    thread; SQLite serialises writers (several server processes may share the file)."""

    def __init__(self, path: Path | str, busy_timeout: float = 5.0):
        self.path = Path(path)
        self.where = str(self.path)  # what messages name
        self.busy_ms = int(busy_timeout * 1000)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn().executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise EventLogError(f"{self.path}: cannot open the event log ({exc})") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # on disk before record() returns
            conn.execute(f"PRAGMA busy_timeout={self.busy_ms}")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    # ------------------------------------------------------------------ writes
    def record(self, records: Sequence[EventRecord]) -> list[bool]:
        """Write the events and move their counters, all in one transaction; per event,
        True when it is new, False when its event_id was recorded before (nothing moves)."""
        new = []
        with self._transaction(f"writing {len(records)} event(s)") as conn:
            for r in records:
                inserted = conn.execute(_INSERT, tuple(getattr(r, c) for c in COLUMNS)).rowcount == 1
                new.append(inserted)
                if inserted:
                    _count(conn, r)
        return new

    @contextlib.contextmanager
    def _transaction(self, what: str):
        """One write transaction, committed when the block ends, rolled back if it fails;
        a SQLite error becomes EventLogError naming the file and ``what``."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise EventLogError(f"{self.path}: {what} failed ({exc})") from None

    def record_rankings(self, records: Sequence[RankingRecord]) -> None:
        """Append served rankings, one transaction, not synced on its own (a crash may
        lose the last ones: they are a log of what was served, not counted state)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO rankings ({', '.join(RANKING_COLUMNS)}) VALUES "
                             f"({', '.join('?' * len(RANKING_COLUMNS))})",
                             [tuple(getattr(r, c) for c in RANKING_COLUMNS) for r in records])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise EventLogError(f"{self.path}: writing {len(records)} ranking(s) failed ({exc})") from None

    def rankings(self, request_ids: Sequence[str] | None = None) -> list[RankingRecord]:
        """The served rankings (those of ``request_ids``), in the order they were served."""
        sql = f"SELECT {', '.join(RANKING_COLUMNS)} FROM rankings"
        args: tuple = ()
        if request_ids is not None:
            sql += f" WHERE request_id IN ({','.join('?' * len(request_ids))})"
            args = tuple(request_ids)
        return [RankingRecord(*row) for row in self._conn().execute(sql + " ORDER BY rowid", args)]

    def prune(self, before: float) -> dict[str, int]:
        """Delete the events, served rankings and counters of the UTC days before that of
        ``before``, in one transaction; :func:`prune_exported` is the safe way to call
        it. Returns the rows deleted per table."""
        day = int(before // DAY)
        cutoff = float(day * DAY)
        with self._transaction("pruning") as conn:
            out = {"events": conn.execute("DELETE FROM events WHERE event_ts < ?", (cutoff,)).rowcount,
                   "rankings": conn.execute("DELETE FROM rankings WHERE ts < ?", (cutoff,)).rowcount}
            for table in ("live_user_coupon", "live_coupon"):
                out[table] = conn.execute(f"DELETE FROM {table} WHERE day < ?", (day,)).rowcount
            conn.execute("INSERT INTO meta (key, value) VALUES ('pruned_before', ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = MAX(value, excluded.value)", (cutoff,))
        return out

    def pruned_before(self) -> float:
        """The midnight before which the log was pruned (0: never)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'pruned_before'").fetchone()
        return float(row[0]) if row else 0.0

    # ------------------------------------------------------------------ reads
    def live(self, user_id: str, coupon_ids: Sequence[str], since: float) -> tuple[np.ndarray, np.ndarray]:
        """Per coupon, counted from the UTC day of ``since`` on: the user's redemptions
        of it, and the discount it gave everyone (for its budget)."""
        n = len(coupon_ids)
        redemptions, discount = np.zeros(n), np.zeros(n)
        if not n:
            return redemptions, discount
        day = int(since // DAY)
        where = {c: i for i, c in enumerate(coupon_ids)}
        marks = ",".join("?" * len(where))
        conn = self._conn()
        for coupon, total in conn.execute(
                f"SELECT coupon_id, SUM(redemptions) FROM live_user_coupon WHERE user_id = ? AND day >= ? "
                f"AND coupon_id IN ({marks}) GROUP BY coupon_id", (user_id, day, *where)):
            redemptions[where[coupon]] = total
        for coupon, total in conn.execute(
                f"SELECT coupon_id, SUM(discount) FROM live_coupon WHERE day >= ? AND coupon_id IN ({marks}) "
                "GROUP BY coupon_id", (day, *where)):
            discount[where[coupon]] = total
        return redemptions, discount

    def coupon_day(self, coupon_ids: Sequence[str], day: int) -> tuple[np.ndarray, np.ndarray]:
        """Per coupon, its impressions and redemptions recorded for UTC day ``day`` (the
        live counters: features/coupon_today.py's pushed values)."""
        n = len(coupon_ids)
        impressions, redemptions = np.zeros(n), np.zeros(n)
        where = {c: i for i, c in enumerate(coupon_ids)}
        if where:
            for coupon, shown, redeemed in self._conn().execute(
                    f"SELECT coupon_id, impressions, redemptions FROM live_coupon WHERE day = ? "
                    f"AND coupon_id IN ({','.join('?' * len(where))})", (int(day), *where)):
                impressions[where[coupon]], redemptions[where[coupon]] = shown, redeemed
        return impressions, redemptions

    def behaviour(self, user_id: str, since: float, until: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's behaviour events with since < event_ts <= until: times (sorted),
        types and items."""
        rows = self._conn().execute(
            f"SELECT event_ts, event_type, item_id FROM events WHERE user_id = ? AND event_ts > ? AND event_ts <= ? "
            f"AND event_type IN ({','.join('?' * len(BEHAVIOUR_EVENT_TYPES))}) ORDER BY event_ts",
            (user_id, since, until, *BEHAVIOUR_EVENT_TYPES)).fetchall()
        ts = np.array([r[0] for r in rows], dtype=np.float64)
        return ts, np.array([r[1] for r in rows], dtype=object), np.array([r[2] for r in rows], dtype=object)

    def follower(self, group: str = "ingest", consumer: str | None = None, claim_idle: float = 30.0) -> "CursorFollower":
        """A reader of the events in recording order (``couponrank ingest``)."""
        return CursorFollower(self)

    def offered(self, user_id: str, coupon_id: str) -> bool:
        """Whether an impression of the coupon to the user is recorded here."""
        row = self._conn().execute(
            "SELECT 1 FROM live_user_coupon WHERE user_id = ? AND coupon_id = ? AND impressions > 0 LIMIT 1",
            (user_id, coupon_id)).fetchone()
        return row is not None

    def events(self, since: float = float("-inf"), until: float = float("inf")) -> list[EventRecord]:
        """The recorded events with since <= event_ts < until, in event-time order."""
        rows = self._conn().execute(
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE event_ts >= ? AND event_ts < ? "
            "ORDER BY event_ts, event_id", (since, until)).fetchall()
        return [EventRecord(*row) for row in rows]

    def recount(self) -> bool:
        """Whether the counters equal a recount from the events (crash-safety check)."""
        conn = self._conn()
        expected = sqlite3.connect(":memory:")
        expected.executescript(SCHEMA)
        for row in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events"):
            _count(expected, EventRecord(*row))
        for table in ("live_user_coupon", "live_coupon"):
            ours = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            theirs = expected.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            if ours != theirs:
                return False
        return True

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()


class CursorFollower:
    """Follows the SQLite log by row id, from its start: a process that follows it again
    re-applies everything, which is harmless for what followers do (pushes set values).
    The same interface as the Redis log's consumer-group follower."""

    def __init__(self, log_: EventLog):
        self.log = log_
        self.cursor = self.acked = 0  # row ids: handed out up to, acknowledged up to

    def read(self, limit: int = 10_000) -> tuple[list[int], list[EventRecord]]:
        """The next events (at most ``limit``): their row ids (for ``ack``) and records."""
        rows = self.log._conn().execute(f"SELECT rowid, {', '.join(COLUMNS)} FROM events WHERE rowid > ? "
                                        "ORDER BY rowid LIMIT ?", (self.cursor, limit)).fetchall()
        if rows:
            self.cursor = rows[-1][0]
        return [r[0] for r in rows], [EventRecord(*r[1:]) for r in rows]

    def ack(self, ids) -> None:
        if ids:
            self.acked = max(self.acked, max(ids))

    def rewind(self) -> None:
        """Hand out again what was read and not acknowledged."""
        self.cursor = self.acked


def _counters_of(r: EventRecord) -> list[tuple[tuple, float]]:
    """The counters one new event moves, as ((kind, user or "", coupon, day), amount):
    ui/uc/ur the user's impressions, claims, redemptions of the coupon; ci/cr/cd the
    coupon's impressions, redemptions and discount given. The Redis log's layout; the
    recount of both logs."""
    if r.event_type in BEHAVIOUR_EVENT_TYPES or r.coupon_id is None:
        return []
    day = int(r.event_ts // DAY)
    if r.event_type == "impression":
        return [(("ui", r.user_id, r.coupon_id, day), 1.0), (("ci", "", r.coupon_id, day), 1.0)]
    if r.event_type == "claim":
        return [(("uc", r.user_id, r.coupon_id, day), 1.0)]
    return [(("ur", r.user_id, r.coupon_id, day), 1.0), (("cr", "", r.coupon_id, day), 1.0),
            (("cd", "", r.coupon_id, day), float(r.discount or 0.0))]


def _count(conn: sqlite3.Connection, r: EventRecord) -> None:
    """Move the counters of one new event."""
    if r.event_type in BEHAVIOUR_EVENT_TYPES or r.coupon_id is None:
        return  # behaviour events move no coupon counter
    assert r.event_type in COUPON_EVENT_TYPES, r.event_type
    columns = _COUNT[r.event_type]
    day = int(r.event_ts // DAY)
    pair, coupon = columns
    conn.execute(f"INSERT INTO live_user_coupon (user_id, coupon_id, day, {pair}) VALUES (?, ?, ?, 1) "
                 f"ON CONFLICT (user_id, coupon_id, day) DO UPDATE SET {pair} = {pair} + 1",
                 (r.user_id, r.coupon_id, day))
    if coupon is not None:
        discount = float(r.discount or 0.0) if r.event_type == "redemption" else 0.0
        conn.execute(f"INSERT INTO live_coupon (coupon_id, day, {coupon}, discount) VALUES (?, ?, 1, ?) "
                     f"ON CONFLICT (coupon_id, day) DO UPDATE SET {coupon} = {coupon} + 1, "
                     "discount = discount + excluded.discount", (r.coupon_id, day, discount))


# ------------------------------------------------------------------ export to raw data
def export(log: EventLog, raw_dir: Path | str, until: float = float("inf")) -> dict[str, int]:
    """Write the recorded events before ``until`` into ``raw_dir`` in the raw schema, one
    Parquet file per event table and UTC day (``live/<table>/<YYYY-MM-DD>.parquet``,
    schema.Table.files_in), so that build-features and train read them with the batch
    data. The users of those events that the raw ``users`` table does not list (new
    shoppers) go into ``live/users/<day first seen>.parquet`` (signed up when first seen,
    country unknown), or cleaning would drop their events. Each day's file is rewritten
    whole from the log (written, then renamed): an export run again, or after more events
    of a day arrived, replaces it. Returns the rows written per table."""
    import pyarrow.parquet as pq

    from couponrank import schema

    raw_dir = Path(raw_dir)
    by_table: dict[str, dict[int, list[EventRecord]]] = {"coupon_events": {}, "behaviour_events": {}}
    records = log.events(until=until)
    # an impression's cart is the one of the ranking that showed it (the served-ranking log)
    carts = {r.request_id: (r.cart_value, r.cart_categories)
             for r in log.rankings(sorted({e.request_id for e in records if e.request_id}))}
    for r in records:
        table = "coupon_events" if r.event_type in COUPON_EVENT_TYPES else "behaviour_events"
        by_table[table].setdefault(int(r.event_ts // DAY), []).append(r)
    written = {name: _write_days(raw_dir, schema.COUPON_EVENTS if name == "coupon_events" else schema.BEHAVIOUR_EVENTS,
                                 {day: [_raw_row(r, name, carts) for r in rs] for day, rs in days.items()})
               for name, days in by_table.items()}

    users_file = raw_dir / schema.USERS.file
    listed = set(pq.read_table(users_file, columns=["user_id"]).column(0).to_pylist()) if users_file.is_file() \
        else set()
    # The days the log no longer holds (pruned) keep their new-user files as they are, and
    # their users are not new again: their events are gone from the log, not from raw.
    kept_day = int(log.pruned_before() // DAY)
    for path in (raw_dir / schema.LIVE_DIR / schema.USERS.name).glob("*.parquet"):
        day = _day_of(path)
        if day is not None and day < kept_day:
            listed.update(pq.read_table(path, columns=["user_id"]).column(0).to_pylist())
    first_seen: dict[str, float] = {}
    for r in records:
        if r.user_id not in listed and r.event_ts < first_seen.get(r.user_id, float("inf")):
            first_seen[r.user_id] = r.event_ts
    new_users: dict[int, list[dict]] = {}
    for user, ts in sorted(first_seen.items()):
        new_users.setdefault(int(ts // DAY), []).append(
            {"user_id": user, "signup_ts": datetime.fromtimestamp(ts, timezone.utc), "country": None})
    # a day whose users the users table has listed since keeps no stale file; so do the
    # days outside the log (pruned) and those from ``until`` on (not exported now)
    last_day = int(until // DAY) if until != float("inf") else None
    written["users"] = _write_days(raw_dir, schema.USERS, new_users, remove_others=(kept_day, last_day))
    return written


def prune_exported(log, raw_dir: Path | str, before: float) -> tuple[dict[str, int], dict[str, int]]:
    """Export the log into ``raw_dir`` (:func:`export`: every day whole, and the new
    shoppers, consistent across days), then prune the days before that of ``before``
    from the log (``log.prune``). Call it only with a
    ``before`` no event can still arrive for (older than the RecordEvents retention) and
    that the build the server counts from has passed (server/events.py, the CLI's
    prune-events): the server's live counters count from the snapshots' end on. Returns
    the rows written per raw table and those deleted per log table."""
    written = export(log, raw_dir)
    return written, log.prune(before)


def _day_of(path: Path) -> int | None:
    """The UTC day of a ``<YYYY-MM-DD>.parquet`` file; None for another name (not an
    export's file: left alone)."""
    try:
        return int(np.datetime64(path.stem, "D").astype(np.int64))
    except ValueError:
        return None


def _write_days(raw_dir: Path, table, days: dict[int, list[dict]],
                remove_others: tuple[int, int | None] | None = None) -> int:
    """``live/<table>/<YYYY-MM-DD>.parquet`` for each UTC day's rows; ``remove_others``
    (first day, end day or None): the files of the days in that range not written now
    are removed. Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from couponrank import schema

    folder = raw_dir / schema.LIVE_DIR / table.name
    folder.mkdir(parents=True, exist_ok=True)
    names = set()
    for day, rows in sorted(days.items()):
        stamp = np.datetime64(day, "D").astype(str)
        tmp = folder / f".{stamp}.parquet.tmp"
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp)
        tmp.replace(folder / f"{stamp}.parquet")
        names.add(f"{stamp}.parquet")
    if remove_others is not None:
        first, end = remove_others
        for stale in folder.glob("*.parquet"):
            day = _day_of(stale)
            if stale.name not in names and day is not None and first <= day and (end is None or day < end):
                stale.unlink()
    return sum(len(rows) for rows in days.values())


def _raw_row(r: EventRecord, table: str, carts: dict) -> dict:
    ts = datetime.fromtimestamp(r.event_ts, timezone.utc)
    if table == "behaviour_events":
        return {"event_id": r.event_id, "user_id": r.user_id, "item_id": r.item_id, "event_type": r.event_type,
                "event_ts": ts, "order_id": r.order_id, "amount": r.amount}
    # an impression whose ranking is not in the log (another server's, or lost): no cart,
    # which cleaning fills as an empty one (counted)
    cart_value, cart_categories = carts.get(r.request_id, (None, None)) if r.event_type == "impression" else \
        (None, None)
    return {"event_id": r.event_id, "user_id": r.user_id, "coupon_id": r.coupon_id, "event_type": r.event_type,
            "event_ts": ts, "request_id": r.request_id, "placement": r.placement, "position": r.position,
            "cart_value": cart_value, "cart_categories": cart_categories,
            "impression_id": r.impression_id, "order_id": r.order_id,
            "discount_amount": r.discount if r.event_type == "redemption" else None}
