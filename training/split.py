"""Time-based train / validation / test split: whole days, never random across time."""

from __future__ import annotations

from dataclasses import dataclass

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


def time_split(ts: pd.Series, validation_fraction: float, test_fraction: float) -> TimeSplit:
    """Cut the days spanned by ``ts`` into consecutive train, validation, test periods."""
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise ValueError("split fractions must be in (0, 1) and sum to less than 1, got "
                         f"validation_fraction={validation_fraction}, test_fraction={test_fraction}")
    first, last = ts.min().floor("D"), ts.max().floor("D") + pd.Timedelta(days=1)
    n_days = (last - first).days
    n_test = max(1, round(n_days * test_fraction))
    n_valid = max(1, round(n_days * validation_fraction))
    if n_days - n_test - n_valid < 1:
        raise ValueError(f"{n_days} day(s) of impressions are too few for a train/validation/test split")
    test_start = last - pd.Timedelta(days=n_test)
    return TimeSplit(first, test_start - pd.Timedelta(days=n_valid), test_start, last)
