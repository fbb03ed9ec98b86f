"""The event path (issue 11): events recorded by RecordEvents, their durable log and
the live counters the eligibility rules read: SQLite on one machine
(couponrank/events/log.py), a redis-server shared by several replicas
(couponrank/events/redis_log.py). Imports nothing of ours but couponrank.schema; the
server and the CLI import it."""

from __future__ import annotations

from pathlib import Path


def log_location(spec: str | None, repo: Path | str) -> str:
    """Where the event log of ``spec`` is: a ``redis://`` / ``rediss://`` URL as given,
    else a file path (default ``<repo>/data/events.db``)."""
    return spec if spec else str(Path(repo) / "data" / "events.db")


def open_log(spec: str | None, repo: Path | str, must_exist: bool = False, read_timeout: float = 0.25):
    """The event log at ``spec`` (a path, or a redis URL): EventLog or RedisEventLog,
    which share one interface. EventLogError names the place when it cannot be opened;
    ``must_exist``: a file log must already be there (readers: export, ingest);
    ``read_timeout``: the longest the ranking path waits for Redis's live counters."""
    from couponrank.events.log import EventLog, EventLogError
    from couponrank.events.redis_log import RedisEventLog, is_redis_url

    where = log_location(spec, repo)
    if is_redis_url(where):
        return RedisEventLog(where, read_timeout=read_timeout)
    if must_exist and not Path(where).is_file():
        raise EventLogError(f"{where}: no event log there (the server writes it: couponrank serve --events-db)")
    return EventLog(Path(where))
