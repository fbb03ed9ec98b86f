"""The one place CouponRank reads the wall clock.

Code that needs "now" or "today" takes a ``clock`` argument defaulting to
:func:`utc_now`, so that tests inject a fixed instant instead of depending on the day
they run on (``scripts/test.sh`` also runs the date-sensitive tests with this clock
moved ten years ahead; tests/test_clock.py checks that nothing else reads the wall
clock).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

Clock = Callable[[], datetime]  # returns an aware datetime (UTC)


def _wall_clock() -> datetime:
    # The only reading of the wall clock. tests/conftest.py moves it years ahead when
    # COUPONRANK_TEST_CLOCK_AHEAD_DAYS is set (scripts/test.sh's second pass).
    return datetime.now(UTC)


def utc_now() -> datetime:
    """Now (UTC): the default clock of everything that needs one."""
    return _wall_clock()


def unix_now() -> float:
    """Now as unix seconds: the server's default request-time clock."""
    return _wall_clock().timestamp()


def utc_today(clock: Clock = utc_now) -> date:
    """Today's date in UTC by ``clock``."""
    return clock().astimezone(UTC).date()


def fixed(instant: datetime) -> Clock:
    """A clock that always reads ``instant`` (aware; for tests and pinned demos)."""
    if instant.tzinfo is None:
        raise ValueError("a fixed clock needs a timezone-aware instant")
    return lambda: instant


def unix_seconds(clock: Clock) -> Callable[[], float]:
    """The same clock as unix seconds (the server's request-time clock)."""
    return lambda: clock().timestamp()
