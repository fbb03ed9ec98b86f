"""Time-based train / validation / test split: whole days, never random across time.

Periods are cut either by fractions of the days the impressions span or at given
dates (``validation_start``, ``test_start``: the way a model is trained at one date and
used after it). An impression's label is what follows it within the label window, so a
label is only known once its window has closed: :func:`label_known` keeps, in each
period, only the impressions whose window closes before the next period starts (no
training label peeks past the cut) and before the data ends (no impression counted
as a negative because the log stopped: censoring).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    train_start: pd.Timestamp
    validation_start: pd.Timestamp  # first instant of the validation period
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # exclusive

    def assign(self, ts: pd.Series) -> np.ndarray:
        """'train' / 'validation' / 'test' for each timestamp."""
        return np.select(
            [ts < self.validation_start, ts < self.test_start],
            ["train", "validation"], default="test",
        )

    def to_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> "TimeSplit":
        return cls(**{k: pd.Timestamp(v) for k, v in d.items()})


def _day(value, what: str) -> pd.Timestamp:
    """A cut at midnight UTC, from YAML's date or an ISO-8601 string."""
    try:
        day = pd.Timestamp(value if isinstance(value, (date, datetime)) else datetime.fromisoformat(str(value)))
    except (ValueError, TypeError):
        raise ValueError(f"split.{what}: not a date: {value!r} (expected YYYY-MM-DD)") from None
    day = day.tz_localize("UTC") if day.tzinfo is None else day.tz_convert("UTC")
    if day != day.floor("D"):
        raise ValueError(f"split.{what}: {value!r} is not midnight UTC; give a date, YYYY-MM-DD")
    return day


def time_split(ts: pd.Series, validation_fraction: float | None = None, test_fraction: float | None = None,
               validation_start=None, test_start=None) -> TimeSplit:
    """Cut the days spanned by ``ts`` into consecutive train, validation, test periods:
    at the dates given (``validation_start``, ``test_start``, both or neither), else by
    the fractions of days."""
    first, last = ts.min().floor("D"), ts.max().floor("D") + pd.Timedelta(days=1)
    if (validation_start is None) != (test_start is None):
        raise ValueError("split: give both validation_start and test_start, or neither")
    if validation_start is not None:
        if validation_fraction is not None or test_fraction is not None:
            raise ValueError("split: give validation_start and test_start, or the fractions, not both")
        v, t = _day(validation_start, "validation_start"), _day(test_start, "test_start")
        if not first < v < t < last:
            raise ValueError(f"split: need first impression day {first:%Y-%m-%d} < validation_start {v:%Y-%m-%d} "
                             f"< test_start {t:%Y-%m-%d} < last day {last - pd.Timedelta(days=1):%Y-%m-%d}")
        return TimeSplit(first, v, t, last)
    if validation_fraction is None or test_fraction is None:
        raise ValueError("split: give validation_fraction and test_fraction, or validation_start and test_start")
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise ValueError("split fractions must be in (0, 1) and sum to less than 1, got "
                         f"validation_fraction={validation_fraction}, test_fraction={test_fraction}")
    n_days = (last - first).days
    n_test = max(1, round(n_days * test_fraction))
    n_valid = max(1, round(n_days * validation_fraction))
    if n_days - n_test - n_valid < 1:
        raise ValueError(f"{n_days} day(s) of impressions are too few for a train/validation/test split")
    test_start = last - pd.Timedelta(days=n_test)
    return TimeSplit(first, test_start - pd.Timedelta(days=n_valid), test_start, last)


def label_known(ts: pd.Series, split: TimeSplit, closes: pd.Series | timedelta,
                data_end: pd.Timestamp) -> tuple[np.ndarray, dict[str, int]]:
    """Which impressions (at ``ts``) have a label that was known by the end of their own
    period and before the data ended; and how many were left out, by why:
    ``crosses_cut`` (the window runs into the next period) and ``censored`` (it runs
    past ``data_end``, the last event of the log). ``closes``: when each label became
    final (dataset's ``label_closes``), or one label window for all."""
    if not isinstance(closes, pd.Series):
        closes = ts + pd.Timedelta(closes)
    part = split.assign(ts)
    period_end = np.select([part == "train", part == "validation"],
                           [split.validation_start, split.test_start], default=split.test_end)
    period_end = pd.Series(pd.to_datetime(period_end, utc=True), index=ts.index)
    crosses = (part != "test") & (closes > period_end).to_numpy()
    censored = ~crosses & (closes > data_end).to_numpy()
    keep = ~(crosses | censored)
    return keep, {"crosses_cut": int(crosses.sum()), "censored": int(censored.sum())}
