"""The user's purchases of a coupon's items per day observed, at the request (issue 10):
what a model reads of user_coupon_coverage besides its window sums.

A window sum grows with the history behind it. Where the data starts less than 365 days
before a request (a retailer's first year, a panel such as Complete Journey's), the
365-day sums of early requests cover a few weeks and those of late ones a year, so a
model trained on early rows meets larger values than it ever saw once it serves (issue
10: 61% of the training period's redemptions had a covered purchase, 82% of the test
period's). Lines and spend per day observed do not drift so: the 365-day sums divided by
the days of purchase data inside that window, as they stand at the request.

The days observed need the data's first purchase, which build-features writes on every
user_coupon_coverage row (:data:`OBSERVED_FROM`; an absolute time, so not a model input
itself: features/definitions.py ABSOLUTE_TIMES). :func:`context` is the on-demand view
coverage_rate_features, the same function in training (Feast) and serving (the server's
ProjectView).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CONTEXT_VIEW = "coverage_rate_features"
DAY = 86_400
WINDOW_DAYS = 365
# The first order line of the data the view was built from (unix seconds), on every row.
OBSERVED_FROM = "ucov_observed_from_unix"
SUMS = {"ucov_lines_365d": "ctx_ucov_lines_per_day_365d", "ucov_spend_365d": "ctx_ucov_spend_per_day_365d"}
VIEW_INPUTS = (*SUMS, OBSERVED_FROM)  # read from user_coupon_coverage
INPUTS = (*VIEW_INPUTS, "request_ts_unix")
OUTPUTS = tuple(SUMS.values())


def days_observed(observed_from: np.ndarray, now: np.ndarray) -> np.ndarray:
    """Days of purchase data inside the 365-day window ending at ``now``: at least 1 (a
    request on the data's first day), at most 365."""
    start = np.maximum(np.asarray(observed_from, dtype=np.float64), now - WINDOW_DAYS * DAY)
    return np.clip((now - start) / DAY, 1.0, float(WINDOW_DAYS))


def context(values: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The on-demand view's outputs from arrays of :data:`INPUTS` (one element per
    candidate): each 365-day sum over the days observed. NaN where the pair has no row
    (never bought a covered item), as the sums themselves are."""
    now = np.asarray(values["request_ts_unix"], dtype=np.float64)
    days = days_observed(values[OBSERVED_FROM], now)
    return {out: np.asarray(values[name], dtype=np.float64) / days for name, out in SUMS.items()}
