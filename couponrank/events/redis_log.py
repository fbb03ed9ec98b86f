"""The event log and its live counters on a redis-server: the several-replica backend.

Servers that share one Redis (the online store's, say) share one log: an event recorded
through any replica is deduplicated, counted and seen by every other one.

Each RecordEvents batch is one Lua script, which Redis runs atomically: per event, the
event_id is added to a set (the idempotency key); only when it is new is the event
appended to a stream (XADD) and are its counters moved (HINCRBY / HINCRBYFLOAT). An
event is therefore recorded and counted, or neither, and a resend is a DUPLICATE that
moves nothing, on one replica or another. The counters are moved in the same script
as the append, not by a consumer of the stream, so that they are never behind the log:
the next ranking after an answered RecordEvents sees them.

The stream is the log other processes follow. ``couponrank ingest`` reads it through a
consumer group (XREADGROUP), pushes fresh features, and acknowledges (XACK) only after
the push: an ingest killed mid-batch leaves its entries pending, and the next ingest
(or another one of the group, after ``claim_idle`` seconds) takes them over. Pushes
set values rather than add them, so an entry applied twice changes nothing.

Durability is Redis's own: with ``appendonly yes`` and ``appendfsync always`` the
script's writes are on disk before Redis answers, hence before RecordEvents answers
(the server warns at start when the Redis it uses is configured otherwise).

Keys all start with ``{couponrank}:`` (a hash tag: they share one Redis Cluster slot,
as a multi-key script needs), or another prefix given to the log:

============================  ====================================================
``events``                    stream: one entry per recorded event (field ``e``: the
                              record as JSON)
``event_ids``                 set: every recorded event_id
``rankings``                  stream: the served rankings (field ``r``: JSON)
``ur:<user>``                 hash ``<coupon>|<day>`` -> the user's redemptions
``uc:<user>``                 hash ``<coupon>|<day>`` -> the user's claims
``ui:<user>``                 hash ``<coupon>|<day>`` -> impressions shown to the user
``uo:<user>``                 set: coupons ever offered to the user
``c:<coupon>``                hash ``i|<day>``, ``r|<day>``, ``d|<day>`` -> the coupon's
                              impressions, redemptions and discount given (budget)
``pruned_before``             the midnight before which the log was pruned
``ub:<user>``                 sorted set: the user's behaviour events of the last
                              BEHAVIOUR_HORIZON seconds by time, each
                              ``<type>#<len(item)>|<item><event_id>`` (logs written
                              before items were kept: ``<type>|<event_id>``)
============================  ====================================================

Days are UTC days since the epoch, as in the SQLite log (couponrank/events/log.py),
whose interface this class shares.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from couponrank.events.log import DAY, EventLogError, EventRecord, RankingRecord, _counters_of

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "{couponrank}:"
BEHAVIOUR_HORIZON = 2 * DAY  # kept per user for the recent-activity counts (widest window: a day)

# ARGV: per event, 8 values: event_id, user_id, event_type, coupon_id (a behaviour event's
# item_id; "" for none), day,
# discount, event_ts, the record as JSON. Returns 1 (new) or 0 (duplicate) per event.
_RECORD = """
local p = KEYS[1]
local horizon = tonumber(ARGV[1])
local out = {}
local n = (#ARGV - 1) / 8
for i = 0, n - 1 do
  local b = 1 + i * 8
  local eid, user, kind, coupon, day = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  if redis.call('SADD', p .. 'event_ids', eid) == 1 then
    redis.call('XADD', p .. 'events', '*', 'e', ARGV[b + 8])
    if kind == 'impression' then
      redis.call('HINCRBY', p .. 'ui:' .. user, coupon .. '|' .. day, 1)
      redis.call('SADD', p .. 'uo:' .. user, coupon)
      redis.call('HINCRBY', p .. 'c:' .. coupon, 'i|' .. day, 1)
    elseif kind == 'claim' then
      redis.call('HINCRBY', p .. 'uc:' .. user, coupon .. '|' .. day, 1)
    elseif kind == 'redemption' then
      redis.call('HINCRBY', p .. 'ur:' .. user, coupon .. '|' .. day, 1)
      redis.call('HINCRBY', p .. 'c:' .. coupon, 'r|' .. day, 1)
      redis.call('HINCRBYFLOAT', p .. 'c:' .. coupon, 'd|' .. day, ARGV[b + 6])
    else
      local ts = tonumber(ARGV[b + 7])
      redis.call('ZADD', p .. 'ub:' .. user, ts, kind .. '#' .. #coupon .. '|' .. coupon .. eid)
      redis.call('ZREMRANGEBYSCORE', p .. 'ub:' .. user, '-inf', '(' .. (ts - horizon))
    end
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end
return out
"""

# KEYS[1] prefix; ARGV: user, first day, coupon ids... Returns {redemptions..., discounts...}
# as strings (a Lua number returned to Redis is truncated to an integer).
_LIVE = """
local p, user, first = KEYS[1], ARGV[1], tonumber(ARGV[2])
local used, discount = {}, {}
local index = {}
for i = 3, #ARGV do
  index[ARGV[i]] = i - 2
  used[i - 2] = 0
  discount[i - 2] = 0
end
local mine = redis.call('HGETALL', p .. 'ur:' .. user)
for j = 1, #mine, 2 do
  local coupon, day = string.match(mine[j], '^(.*)|(%d+)$')
  local k = index[coupon]
  if k and tonumber(day) >= first then used[k] = used[k] + tonumber(mine[j + 1]) end
end
for i = 3, #ARGV do
  local fields = redis.call('HGETALL', p .. 'c:' .. ARGV[i])
  for j = 1, #fields, 2 do
    local kind, day = string.match(fields[j], '^(%a)|(%d+)$')
    if kind == 'd' and tonumber(day) >= first then
      discount[i - 2] = discount[i - 2] + tonumber(fields[j + 1])
    end
  end
end
local out = {}
for k = 1, #used do out[k] = tostring(used[k]) end
for k = 1, #discount do out[#used + k] = string.format('%.17g', discount[k]) end
return out
"""


def _behaviour_member(member: bytes) -> tuple[str, str | None]:
    """(type, item) of a ``ub:`` member; lengths count bytes, as Lua's # does."""
    head, sep, rest = member.partition(b"#")
    if not sep or b"|" in head:  # written before items were kept: <type>|<event_id>
        return member.split(b"|", 1)[0].decode(), None
    size, _, rest = rest.partition(b"|")
    return head.decode(), rest[:int(size)].decode() or None


def _record_json(r: EventRecord) -> str:
    return json.dumps({c: v for c, v in asdict(r).items() if v is not None}, separators=(",", ":"))


def _record_of(text: bytes | str) -> EventRecord:
    return EventRecord(**json.loads(text))


class RedisEventLog:
    """The event log on a redis-server (``url``: ``redis://host:port/db``, ``rediss://``
    for TLS). Thread-safe: redis-py's client pools its connections."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, read_timeout: float = 0.25):
        import redis

        self.url = url
        self.prefix = prefix
        self.where = _without_password(url)  # what messages name: never a password
        try:
            self.redis = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
            # the ranking path's reads (live) wait at most read_timeout: a hung Redis must
            # not hold a RankCoupons answer (it falls back to the snapshots, logged)
            self.reader = redis.Redis.from_url(url, socket_timeout=read_timeout, socket_connect_timeout=read_timeout)
            self.redis.ping()
            self._record = self.redis.register_script(_RECORD)
            self._live = self.reader.register_script(_LIVE)
        except (redis.RedisError, ValueError) as exc:
            raise EventLogError(f"{self.where}: cannot open the event log ({type(exc).__name__}: {exc})") from None

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _call(self, what: str, fn, *args, **kwargs):
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise EventLogError(f"{self.where}: {what} failed ({type(exc).__name__}: {exc})") from None

    def durability_warning(self) -> str | None:
        """Why an answered event might not survive a Redis crash, or None (unknown
        when the server refuses CONFIG, as managed Redis services do)."""
        import redis

        try:
            config = self.redis.config_get("append*")
        except redis.RedisError:
            return None
        if config.get(b"appendonly", config.get("appendonly")) not in (b"yes", "yes"):
            return "appendonly is off: events recorded since Redis last saved are lost if it crashes"
        if config.get(b"appendfsync", config.get("appendfsync")) not in (b"always", "always"):
            return "appendfsync is not 'always': up to a second of answered events may be lost if Redis crashes"
        return None

    # ------------------------------------------------------------------ writes
    def record(self, records: Sequence[EventRecord]) -> list[bool]:
        """Record the events and move their counters atomically; per event, True when
        it is new, False when its event_id was recorded before (nothing moves)."""
        if not records:
            return []
        args: list = [BEHAVIOUR_HORIZON]
        for r in records:
            args += [r.event_id, r.user_id, r.event_type, r.coupon_id or r.item_id or "", int(r.event_ts // DAY),
                     repr(float(r.discount or 0.0)), repr(float(r.event_ts)), _record_json(r)]
        new = self._call(f"writing {len(records)} event(s)", self._record, keys=[self.prefix], args=args)
        return [bool(x) for x in new]

    def record_rankings(self, records: Sequence[RankingRecord]) -> None:
        """Append served rankings to their stream (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for r in records:
            pipe.xadd(self._key("rankings"), {"r": json.dumps(asdict(r), separators=(",", ":"))})
        self._call(f"writing {len(records)} ranking(s)", pipe.execute)

    def rankings(self, request_ids: Sequence[str] | None = None) -> list[RankingRecord]:
        wanted = None if request_ids is None else set(request_ids)
        out = []
        for _, fields in self._stream("rankings", "reading the served rankings"):
            r = RankingRecord(**json.loads(fields[b"r"]))
            if wanted is None or r.request_id in wanted:
                out.append(r)
        return out

    def _stream(self, name: str, what: str, page: int = 10_000):
        """Every entry of a stream, oldest first, read a page at a time."""
        start = "-"
        while True:
            entries = self._call(what, self.redis.xrange, self._key(name), min=start, count=page)
            yield from entries
            if len(entries) < page:
                return
            start = "(" + entries[-1][0].decode()

    # ------------------------------------------------------------------ reads
    def live(self, user_id: str, coupon_ids: Sequence[str], since: float) -> tuple[np.ndarray, np.ndarray]:
        """Per coupon, counted from the UTC day of ``since`` on: the user's redemptions
        of it, and the discount it gave everyone (for its budget). One round trip."""
        n = len(coupon_ids)
        if not n:
            return np.zeros(0), np.zeros(0)
        out = self._call("reading live counters", self._live, keys=[self.prefix],
                         args=[user_id, int(since // DAY), *coupon_ids])
        values = np.array([float(v) for v in out])
        return values[:n], values[n:]

    def coupon_day(self, coupon_ids: Sequence[str], day: int) -> tuple[np.ndarray, np.ndarray]:
        """Per coupon, its impressions and redemptions recorded for UTC day ``day`` (one
        round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for coupon in coupon_ids:
            pipe.hmget(self._key("c:" + coupon), f"i|{int(day)}", f"r|{int(day)}")
        rows = self._call("reading coupon counters", pipe.execute) if len(coupon_ids) else []
        values = np.array([[float(v or 0) for v in row] for row in rows]).reshape(len(coupon_ids), 2)
        return values[:, 0].copy(), values[:, 1].copy()

    def offered(self, user_id: str, coupon_id: str) -> bool:
        return bool(self._call("reading impressions", self.redis.sismember, self._key("uo:" + user_id), coupon_id))

    def behaviour(self, user_id: str, since: float, until: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The user's behaviour events with since < event_ts <= until (kept for
        BEHAVIOUR_HORIZON before the user's latest one): times (sorted), types and items
        (None where the log did not keep it)."""
        rows = self._call("reading behaviour", self.redis.zrangebyscore, self._key("ub:" + user_id),
                          f"({since!r}", repr(float(until)), withscores=True)
        ts = np.array([score for _, score in rows], dtype=np.float64)
        kinds, items = zip(*(_behaviour_member(member) for member, _ in rows)) if rows else ((), ())
        return ts, np.array(kinds, dtype=object), np.array(items, dtype=object)

    def events(self, since: float = float("-inf"), until: float = float("inf")) -> list[EventRecord]:
        """The recorded events with since <= event_ts < until, in event-time order."""
        records = [r for r in (_record_of(fields[b"e"]) for _, fields in self._stream("events", "reading events"))
                   if since <= r.event_ts < until]
        return sorted(records, key=lambda r: (r.event_ts, r.event_id))

    def counters(self) -> dict[tuple, float]:
        """Every live counter: (kind, user or "", coupon, day) -> value."""
        out: dict[tuple, float] = {}
        for key in self._call("listing counters", lambda: list(self.redis.scan_iter(match=_glob_escape(self.prefix) + "*",
                                                                                       count=1000))):
            name = key.decode()[len(self.prefix):]
            kind, _, owner = name.partition(":")
            if kind in ("ur", "uc", "ui"):
                for field, value in self._call("reading counters", self.redis.hgetall, key).items():
                    coupon, day = field.decode().rsplit("|", 1)
                    out[(kind, owner, coupon, int(day))] = float(value)
            elif kind == "c":
                for field, value in self._call("reading counters", self.redis.hgetall, key).items():
                    what, day = field.decode().split("|", 1)
                    out[("c" + what, "", owner, int(day))] = float(value)
        return out

    def recount(self) -> bool:
        """Whether the counters equal a recount from the events (crash-safety check)."""
        expected: dict[tuple, float] = {}
        for r in self.events():
            for key, value in _counters_of(r):
                expected[key] = expected.get(key, 0.0) + value
        ours = self.counters()
        return ours.keys() == expected.keys() and all(abs(ours[k] - expected[k]) <= 1e-6 * max(1.0, abs(expected[k]))
                                                      for k in ours)

    def prune(self, before: float) -> dict[str, int]:
        """Delete the events (stream entries and their ids), served rankings and
        counters of the UTC days before that of ``before``. Not atomic as the SQLite
        log's is, but safe to run again: an interrupted prune is finished by the next.
        couponrank/events/log.py prune_exported is the safe way to call it."""
        day = int(before // DAY)
        cutoff = float(day * DAY)
        out = {"events": 0, "rankings": 0, "counters": 0}
        for stream, field, when in (("events", b"e", "event_ts"), ("rankings", b"r", "ts")):
            old = [(entry_id, record) for entry_id, fields in self._stream(stream, f"reading {stream}")
                   if (record := json.loads(fields[field]))[when] < cutoff]
            for i in range(0, len(old), 1_000):
                page = old[i:i + 1_000]
                pipe = self.redis.pipeline(transaction=True)
                pipe.xdel(self._key(stream), *(entry_id for entry_id, _ in page))
                if stream == "events":  # the ids go with their entries: nothing dedupes against them now
                    pipe.srem(self._key("event_ids"), *(record["event_id"] for _, record in page))
                self._call(f"pruning {stream}", pipe.execute)
            out[stream] = len(old)
        for key in self._call("listing counters", lambda: list(self.redis.scan_iter(
                match=_glob_escape(self.prefix) + "*", count=1000))):
            kind = key.decode()[len(self.prefix):].partition(":")[0]
            if kind not in ("ur", "uc", "ui", "c"):
                continue
            fields = [f for f in self._call("reading counters", self.redis.hkeys, key)
                      if int(f.decode().rsplit("|", 1)[1]) < day]
            if fields:
                self._call("pruning counters", self.redis.hdel, key, *fields)
                out["counters"] += len(fields)
        if cutoff > self.pruned_before():
            self._call("pruning", self.redis.set, self._key("pruned_before"), repr(cutoff))
        return out

    def pruned_before(self) -> float:
        """The midnight before which the log was pruned (0: never)."""
        value = self._call("reading the prune mark", self.redis.get, self._key("pruned_before"))
        return float(value) if value else 0.0

    # ------------------------------------------------------------------ followers
    def follower(self, group: str = "ingest", consumer: str | None = None, claim_idle: float = 30.0) -> "StreamFollower":
        return StreamFollower(self, group, consumer or f"{socket.gethostname()}-{os.getpid()}", claim_idle)

    def close(self) -> None:
        self.redis.close()
        self.reader.close()


class StreamFollower:
    """A consumer of the events stream in a consumer group: ``read`` hands out entries
    (first this consumer's own unacknowledged ones, then those another consumer left
    pending for ``claim_idle`` seconds, then new ones), ``ack`` acknowledges them once
    their effect is applied. Entries of a consumer that dies are taken over: at least
    once."""

    def __init__(self, log_: RedisEventLog, group: str, consumer: str, claim_idle: float):
        import redis

        self.log, self.group, self.consumer = log_, group, consumer
        self.claim_idle_ms = int(claim_idle * 1000)
        self._own_from: str | None = "0"  # first hand out again what this name left unacknowledged, from here
        try:
            log_.redis.xgroup_create(log_._key("events"), group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: join it
                raise EventLogError(f"{log_.where}: cannot create consumer group {group!r} ({exc})") from None

    def read(self, limit: int = 10_000) -> tuple[list[bytes], list[EventRecord]]:
        """The next entries: their stream ids (for ``ack``) and records."""
        key = self.log._key("events")
        entries: list = []
        if self._own_from is not None:
            got = self.log._call("reading the stream", self.log.redis.xreadgroup, self.group, self.consumer,
                                 {key: self._own_from}, count=limit)
            entries = got[0][1] if got else []
            self._own_from = entries[-1][0].decode() if entries else None
        if not entries and self.claim_idle_ms >= 0:
            claimed = self.log._call("claiming pending entries", self.log.redis.xautoclaim, key, self.group,
                                     self.consumer, self.claim_idle_ms, start_id="0-0", count=limit)
            entries = [(i, f) for i, f in claimed[1] if f]  # entries trimmed since: nothing to apply
        if not entries:
            got = self.log._call("reading the stream", self.log.redis.xreadgroup, self.group, self.consumer,
                                 {key: ">"}, count=limit)
            entries = got[0][1] if got else []
        # an own pending entry pruned since (prune-events) comes back without fields:
        # acknowledged with the rest, nothing to apply
        return [i for i, _ in entries], [_record_of(f[b"e"]) for _, f in entries if f]

    def ack(self, ids: Sequence[bytes]) -> None:
        if ids:
            self.log._call("acknowledging", self.log.redis.xack, self.log._key("events"), self.group, *ids)

    def rewind(self) -> None:
        """Hand out again what this consumer read and did not acknowledge."""
        self._own_from = "0"

    def pending(self) -> int:
        """Entries handed out to this group and not yet acknowledged."""
        info = self.log._call("reading the group", self.log.redis.xpending, self.log._key("events"), self.group)
        return int(info["pending"])


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "redis"
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _glob_escape(text: str) -> str:
    """``text`` matched literally by SCAN's glob pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def is_redis_url(spec: str) -> bool:
    return spec.startswith(("redis://", "rediss://", "unix://"))

