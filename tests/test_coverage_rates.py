"""Purchases of a coupon's items per day observed (features/coverage.py, issue 10): the
365-day sums over the days of purchase data inside the window, at the request."""

from __future__ import annotations

import numpy as np
import pytest

from couponrank.features import coverage

DAY = 86_400.0
START = 1_700_000_000.0  # the data's first order line (unix seconds)


def _rates(lines, spend, now):
    n = len(lines)
    return coverage.context({"ucov_lines_365d": np.asarray(lines, dtype=float),
                             "ucov_spend_365d": np.asarray(spend, dtype=float),
                             coverage.OBSERVED_FROM: np.full(n, START),
                             "request_ts_unix": np.asarray(now, dtype=float)})


def test_sums_are_divided_by_the_days_observed_in_the_window():
    out = _rates([10, 10, 10, 10], [50, 50, 50, 50],
                 [START + 10 * DAY, START + 100 * DAY, START + 365 * DAY, START + 900 * DAY])
    np.testing.assert_allclose(out["ctx_ucov_lines_per_day_365d"], [1.0, 0.1, 10 / 365, 10 / 365])
    np.testing.assert_allclose(out["ctx_ucov_spend_per_day_365d"], [5.0, 0.5, 50 / 365, 50 / 365])


def test_the_first_day_counts_as_one_day_and_a_missing_row_stays_missing():
    out = _rates([3, np.nan], [9, np.nan], [START + 0.25 * DAY, START + 0.25 * DAY])
    assert out["ctx_ucov_lines_per_day_365d"][0] == 3.0 and out["ctx_ucov_spend_per_day_365d"][0] == 9.0
    assert np.isnan(out["ctx_ucov_lines_per_day_365d"][1]) and np.isnan(out["ctx_ucov_spend_per_day_365d"][1])


def test_a_young_history_and_a_full_year_give_the_same_rate_for_the_same_habit():
    """Why the view exists: one purchase a week reads as 4 lines after 4 weeks and 52
    after a year (the sums drift with the data's age), but as 1/7 a day both times."""
    out = _rates([4, 52], [4, 52], [START + 28 * DAY, START + 364 * DAY])
    assert out["ctx_ucov_lines_per_day_365d"] == pytest.approx([1 / 7, 1 / 7])
