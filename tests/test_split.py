"""The time split: fractions or date cutoffs, and labels known in time
(no training label from past the cut, no negative made by the log's end)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from couponrank.training.split import label_known, time_split

HOURLY = pd.Series(pd.date_range("2026-06-01", "2026-06-30 23:00", freq="h", tz="UTC"))
WINDOW = timedelta(hours=72)


def test_date_cutoffs_cut_where_told():
    s = time_split(HOURLY, validation_start="2026-06-20", test_start="2026-06-25")
    assert (s.train_start, s.validation_start, s.test_start, s.test_end) == (
        pd.Timestamp("2026-06-01", tz="UTC"), pd.Timestamp("2026-06-20", tz="UTC"),
        pd.Timestamp("2026-06-25", tz="UTC"), pd.Timestamp("2026-07-01", tz="UTC"))
    part = s.assign(HOURLY)
    assert (part == "train").sum() == 19 * 24 and (part == "validation").sum() == 5 * 24


@pytest.mark.parametrize("kwargs, message", [
    ({"validation_start": "2026-06-20"}, "give both validation_start and test_start"),
    ({"validation_start": "2026-06-25", "test_start": "2026-06-20"}, "validation_start 2026-06-25 < test_start"),
    ({"validation_start": "2026-06-20", "test_start": "2026-07-05"}, "< last day 2026-06-30"),
    ({"validation_start": "June", "test_start": "2026-06-25"}, "split.validation_start: not a date"),
    ({"validation_start": "2026-06-20T06:00", "test_start": "2026-06-25"}, "not midnight UTC"),
    ({}, "give validation_fraction and test_fraction"),
    ({"validation_start": "2026-06-20", "test_start": "2026-06-25", "test_fraction": 0.2}, "not both"),
])
def test_bad_cutoffs_are_refused_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        time_split(HOURLY, **kwargs)


def test_labels_known_in_time():
    s = time_split(HOURLY, validation_start="2026-06-20", test_start="2026-06-25")
    end = HOURLY.max()
    keep, counts = label_known(HOURLY, s, WINDOW, end)
    closes = HOURLY + WINDOW
    part = s.assign(HOURLY)
    # what is kept: every window closed by its period's end and by the log's end
    train = part == "train"
    assert (closes[keep & train] <= s.validation_start).all()
    assert (closes[keep & (part == "validation")] <= s.test_start).all()
    assert (closes[keep] <= end).all()
    # what is left out, counted by why: 71 hours before each cut, and the last 72 hours of the log
    assert counts == {"crosses_cut": 71 + 71, "censored": 72}
    assert (~keep).sum() == sum(counts.values())
    # an impression whose window closes exactly at the cut is kept
    at_cut = HOURLY == s.validation_start - WINDOW
    assert keep[at_cut.to_numpy()].all()


def test_nothing_left_out_when_windows_close_in_time():
    s = time_split(HOURLY, 0.15, 0.2)
    keep, counts = label_known(HOURLY, s, timedelta(0), HOURLY.max())
    assert keep.all() and counts == {"crosses_cut": 0, "censored": 0}
    assert isinstance(keep, np.ndarray)
