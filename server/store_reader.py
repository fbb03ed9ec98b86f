"""Batched reads of Feast's online store, straight from its tables.

Feast's ``get_online_features`` costs ~50 ms for one user x 100 coupons here: it
builds a protobuf entity key and parses a protobuf value per feature per entity in
Python, then assembles a response table. The ranking path needs one thing: a float
matrix (entities x features) per feature view. :class:`StoreReader` gives exactly
that, reading the rows Feast's ``materialize`` wrote, in Feast's own layout:

* entity keys are serialized as Feast's ``serialize_entity_key`` (version 3) does,
  for string join keys, from pre-encoded parts (:class:`KeyEncoder`);
* SQLite (:class:`SqliteReader`): one ``SELECT ... WHERE entity_key IN (...)`` per
  view, on the table Feast created (``<project>_<view>``, primary key
  ``(entity_key, feature_name)``); one read-only connection per thread;
* Redis (:class:`RedisReader`): one pipelined ``HMGET`` per entity key, fields
  ``mmh3("<view>:<feature>")`` as Feast writes them, through Feast's own client
  set-up (plain, cluster or sentinel);
* values: Feast's ``Value`` protobuf; a double (tag 0x29 + 8 bytes, what every
  Float64 feature holds) is unpacked directly, anything else is parsed.

Any other online store type is read through Feast's ``OnlineStore.online_read``
(:class:`FeastReader`): correct, only slower. tests/test_store_reader.py checks
every reader against ``get_online_features`` value for value.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

STRING = 2  # feast ValueType.STRING
_DOUBLE_TAG = 0x29  # Value.double_val: field 5, wire type 1 (64-bit)


class StoreReadError(RuntimeError):
    """The online store could not be read; ``busy``: it was locked (by a writer) for
    longer than the read was allowed to wait."""

    def __init__(self, message: str, busy: bool = False):
        super().__init__(message)
        self.busy = busy


# ------------------------------------------------------------------ entity keys
def _encode_string(value: str) -> bytes:
    raw = value.encode("utf8")
    return struct.pack("<II", STRING, len(raw)) + raw


class KeyEncoder:
    """Feast's v3 entity key for one view's (string) join keys.

    Join keys are sorted by name, as Feast sorts them; ``encode`` takes values in
    the order of :attr:`join_keys`. Encoded values are memoised (coupon ids and
    categories repeat on every request); the memo is bounded.
    """

    MEMO_LIMIT = 200_000

    def __init__(self, join_keys: Sequence[str], suffix: bytes = b""):
        self.join_keys = tuple(sorted(join_keys))
        self.head = struct.pack("<I", len(self.join_keys)) + b"".join(_encode_string(k) for k in self.join_keys)
        self.suffix = suffix  # Redis keys end with the project name
        self._memo: dict[str, bytes] = {}

    def part(self, value: str) -> bytes:
        enc = self._memo.get(value)
        if enc is None:
            enc = _encode_string(value)
            if len(self._memo) < self.MEMO_LIMIT:
                self._memo[value] = enc
        return enc

    def encode(self, values: dict[str, Sequence[str]], n: int) -> list[bytes]:
        """Keys of ``n`` entities; ``values[join_key]`` is a sequence of n values or
        a single str (the same for all)."""
        columns = []
        for k in self.join_keys:
            v = values[k]
            columns.append([self.part(v)] * n if isinstance(v, str) else [self.part(x) for x in v])
        head, tail = self.head, self.suffix
        if len(columns) == 1:
            return [head + a + tail for a in columns[0]]
        return [head + b"".join(parts) + tail for parts in zip(*columns)]


# ------------------------------------------------------------------ values
def decode_value(raw: bytes | None) -> float:
    """A Feast ``Value`` protobuf as a float; NaN for null/missing/non-numeric."""
    if not raw:
        return np.nan
    if raw[0] == _DOUBLE_TAG and len(raw) == 9:
        return struct.unpack_from("<d", raw, 1)[0]
    from feast.protos.feast.types.Value_pb2 import Value

    value = Value()
    value.ParseFromString(raw)
    kind = value.WhichOneof("val")
    if kind in ("double_val", "float_val", "int64_val", "int32_val", "bool_val", "unix_timestamp_val"):
        return float(getattr(value, kind))
    return np.nan


# ------------------------------------------------------------------ readers
class ViewLayout:
    """What a reader needs to know of one feature view."""

    def __init__(self, name: str, join_keys: Sequence[str], features: Sequence[str], table: str = ""):
        self.name = name
        self.join_keys = tuple(join_keys)
        self.features = list(features)
        self.column = {f: j for j, f in enumerate(self.features)}
        self.table = table or name


class StoreReader:
    """``read(view, values, n)`` -> float64 array (n x view features), NaN where the
    store has no value. ``values`` maps each join key to n values or one str."""

    kind = "?"

    def __init__(self, views: Sequence[ViewLayout], key_suffix: bytes = b""):
        self.views = {v.name: v for v in views}
        self.encoders = {v.name: KeyEncoder(v.join_keys, key_suffix) for v in views}

    def read(self, view: str, values: dict, n: int) -> np.ndarray:
        return self.read_many([(view, values, n)])[0]

    def read_many(self, requests: Sequence[tuple[str, dict, int]]) -> list[np.ndarray]:
        """Several ``read``s at once (one round trip where the store allows)."""
        out = []
        for view, values, n in requests:
            layout = self.views[view]
            arr = np.full((n, len(layout.features)), np.nan)
            if n:
                self._fill(layout, self.encoders[view].encode(values, n), arr)
            out.append(arr)
        return out

    def _fill(self, layout: ViewLayout, keys: list[bytes], out: np.ndarray) -> None:
        raise NotImplementedError

    def bound_wait(self, seconds: float) -> None:
        """Wait at most ``seconds`` for a locked store on this thread's next reads
        (the caller's deadline); a no-op where waits are bounded otherwise."""

    def close(self) -> None:
        pass


class SqliteReader(StoreReader):
    kind = "sqlite"
    MMAP_BYTES = 1 << 40  # SQLite caps it at its compile-time maximum

    def __init__(self, path: str | Path, views: Sequence[ViewLayout], timeout: float = 0.25,
                 check_seconds: float = 1.0):
        super().__init__(views)
        self.path = Path(path)
        self.timeout = timeout
        # How often a read checks that the file is still the one its connection has open:
        # a file replaced (a new materialization copied in) or deleted is noticed within this.
        self.check_seconds = check_seconds
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file the connections read
        self._generation = 0  # bumped when the file changed: each thread reopens its connection
        self._checked = float("-inf")

    def _check_file(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_seconds:
            return
        self._checked = now
        try:
            st = os.stat(self.path)
            identity = (st.st_dev, st.st_ino)
        except OSError:
            identity = None
        if identity != self._identity:
            with self._lock:
                if identity != self._identity:
                    if self._identity is not None:
                        log.warning("online store file %s was %s; reopening", self.path,
                                    "deleted" if identity is None else "replaced")
                    self._identity, self._generation = identity, self._generation + 1
        if identity is None:
            raise StoreReadError(f"{self.path}: no online store (run `couponrank materialize`)")

    def _conn(self) -> sqlite3.Connection:
        self._check_file()
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self._generation:
            with self._lock:
                self._conns.remove(conn)
            conn.close()
            conn = self._local.conn = None
        if conn is None:
            generation = self._generation
            if not self.path.is_file():
                raise StoreReadError(f"{self.path}: no online store (run `couponrank materialize`)")
            # read-only: the server never writes; materialize may write while we read
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.timeout,
                                   check_same_thread=False, cached_statements=512)
            # pages straight from the OS page cache, shared by every connection (each
            # read thread has its own), instead of copies in per-connection caches
            conn.execute(f"PRAGMA mmap_size={self.MMAP_BYTES}")
            self._local.conn = conn
            self._local.generation = generation
            self._local.busy_ms = round(self.timeout * 1000)
            with self._lock:
                self._conns.append(conn)
        return conn

    def _fill(self, layout: ViewLayout, keys: list[bytes], out: np.ndarray) -> None:
        row_of = {k: i for i, k in enumerate(keys)}
        sql = (f'SELECT entity_key, feature_name, value FROM "{layout.table}" '
               f"WHERE entity_key IN ({','.join('?' * len(row_of))})")
        column = layout.column
        try:
            rows = self._conn().execute(sql, list(row_of)).fetchall()
        except sqlite3.Error as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY") or "locked" in str(exc)
            raise StoreReadError(f"{self.path}: reading {layout.table}: {exc}", busy=busy) from exc
        for key, feature, raw in rows:
            j = column.get(feature)
            if j is not None:
                out[row_of[key], j] = decode_value(raw)

    def bound_wait(self, seconds: float) -> None:
        """SQLite waits for a writer's lock up to its busy timeout, on the RPC thread:
        set this thread's connection's timeout to what the caller's deadline leaves
        (one PRAGMA, only when it changes by a millisecond or more)."""
        ms = max(1, round(min(seconds, self.timeout) * 1000))
        conn = self._conn()
        if self._local.busy_ms != ms:
            conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._local.busy_ms = ms

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()


class RedisReader(StoreReader):
    kind = "redis"

    def __init__(self, online_store, repo_config, views: Sequence[ViewLayout]):
        from feast.infra.online_stores.helpers import _mmh3

        super().__init__(views, key_suffix=repo_config.project.encode("utf8"))
        self._store = online_store  # feast RedisOnlineStore: its client set-up and pipelined HMGET
        self._config = repo_config
        self._fields = {v.name: [_mmh3(f"{v.table}:{f}") for f in v.features] for v in views}

    def read_many(self, requests: Sequence[tuple[str, dict, int]]) -> list[np.ndarray]:
        """Every view's keys in one pipeline: one round trip per request."""
        commands, spans, out = [], [], []
        for view, values, n in requests:
            layout = self.views[view]
            out.append(np.full((n, len(layout.features)), np.nan))
            fields = self._fields[view]
            start = len(commands)
            if n:
                commands += [(k, fields) for k in self.encoders[view].encode(values, n)]
            spans.append(start)
        if not commands:
            return out
        try:
            replies = self._store._read_hash_fields(self._config, commands)
        except Exception as exc:  # redis.exceptions.* and socket errors alike
            raise StoreReadError(f"redis: {type(exc).__name__}: {exc}") from exc
        for arr, start in zip(out, spans):
            for i in range(len(arr)):
                for j, raw in enumerate(replies[start + i]):
                    if raw:
                        arr[i, j] = decode_value(raw)
        return out


class FeastReader(StoreReader):
    """Any other online store, through Feast's own ``online_read``."""

    kind = "feast"

    def __init__(self, online_store, repo_config, feature_views: dict, views: Sequence[ViewLayout]):
        super().__init__(views)
        self._store = online_store
        self._config = repo_config
        self._fvs = feature_views

    def read_many(self, requests: Sequence[tuple[str, dict, int]]) -> list[np.ndarray]:
        return [self._read_view(*r) for r in requests]

    def _read_view(self, view: str, values: dict, n: int) -> np.ndarray:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        layout = self.views[view]
        out = np.full((n, len(layout.features)), np.nan)
        cols = [[values[k]] * n if isinstance(values[k], str) else list(values[k]) for k in layout.join_keys]
        keys = [EntityKey(join_keys=list(layout.join_keys), entity_values=[Value(string_val=v) for v in row])
                for row in zip(*cols)]
        try:
            result = self._store.online_read(self._config, self._fvs[view], keys, list(layout.features))
        except Exception as exc:
            raise StoreReadError(f"{self._config.online_store.type}: reading {view}: {exc}") from exc
        for i, (_, feats) in enumerate(result):
            for name, value in (feats or {}).items():
                j = layout.column.get(name)
                if j is not None:
                    out[i, j] = decode_value(value.SerializeToString())
        return out


def open_reader(store, views: dict[str, list[str]], timeout: float = 0.25) -> StoreReader:
    """The fastest reader for ``store``'s online store, for ``views`` (view name ->
    features to read)."""
    from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name

    config = store.config
    versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
    fvs = {name: store.get_feature_view(name) for name in views}
    kind = config.online_store.type
    if kind == "sqlite":
        from feast.infra.online_stores.sqlite import SqliteOnlineStore

        layouts = [ViewLayout(n, fvs[n].join_keys, f, compute_table_id(config.project, fvs[n], versioning))
                   for n, f in views.items()]
        return SqliteReader(SqliteOnlineStore._get_db_path(config), layouts, timeout)
    online_store = store._get_provider().online_store
    if kind == "redis":
        layouts = [ViewLayout(n, fvs[n].join_keys, f, compute_versioned_name(fvs[n], versioning))
                   for n, f in views.items()]
        return RedisReader(online_store, config, layouts)
    return FeastReader(online_store, config, fvs, [ViewLayout(n, fvs[n].join_keys, f) for n, f in views.items()])
