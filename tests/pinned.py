"""The dates every test runs on, whatever the wall clock says.

The generator's data ends on a date (default: today); tests pin it, and give servers
and demos a fixed clock, so that no test depends on the day it runs (scripts/test.sh
runs the date-sensitive tests again with the clock moved years ahead).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from couponrank.clock import fixed, unix_seconds
from couponrank.generate import SIZES

END_DATE = date(2026, 7, 1)  # the tiny data set covers 2026-06-01 .. 2026-07-01 (00:00 UTC)
NOW = datetime(2026, 7, 1, 10, tzinfo=UTC)  # "now" for servers and demos in tests: 10 h after the data ends
CLOCK = fixed(NOW)
UNIX_CLOCK = unix_seconds(CLOCK)  # the server's request-time clock
TINY = SIZES["tiny"].replace(end_date=END_DATE)
