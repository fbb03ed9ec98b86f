"""No code reads the wall clock except couponrank/clock.py, so that a test can pin or
move "now" for all of it, and the date-sensitive tests pass with the clock moved ahead."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from couponrank import clock

pytestmark = pytest.mark.clock  # date-sensitive: run again with the clock moved ahead

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("couponrank", "features", "training", "server", "scripts", "clients/python", "bench")
WALL_CLOCK = re.compile(r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|Timestamp\.now\(|\btime\.time\(|"
                        r"=\s*time\.time\b|\btime\.time_ns\(|np\.datetime64\(\s*['\"]now")


def test_only_couponrank_clock_reads_the_wall_clock():
    readers = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "couponrank" / "clock.py" or "/v1/" in path.as_posix() or folder == "bench":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if WALL_CLOCK.search(line.split("#")[0]):
                    readers.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not readers, "read the time through couponrank.clock instead:\n" + "\n".join(readers)


def test_the_guard_sees_a_wall_clock_reading():
    for line in ("t = datetime.now(UTC)", "now = time.time()", "pd.Timestamp.now(tz='UTC')", "clock=time.time)"):
        assert WALL_CLOCK.search(line), line
    assert not WALL_CLOCK.search("t0 = time.perf_counter()") and not WALL_CLOCK.search("time.monotonic()")


def test_a_fixed_clock_needs_a_timezone():
    with pytest.raises(ValueError, match="timezone"):
        clock.fixed(datetime(2026, 7, 1))
    assert clock.utc_today(clock.fixed(datetime(2026, 7, 1, 23, 30, tzinfo=UTC))).isoformat() == "2026-07-01"


@pytest.mark.skipif(not os.environ.get("COUPONRANK_TEST_CLOCK_AHEAD_DAYS"),
                    reason="the clock is moved only in scripts/test.sh's second pass")
def test_the_clock_is_moved_ahead_in_the_second_pass():
    days = int(os.environ["COUPONRANK_TEST_CLOCK_AHEAD_DAYS"])
    assert clock.utc_now() - datetime.now(UTC) > timedelta(days=days - 1)
