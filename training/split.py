"""Time-based train / validation / test split: whole days, never random across time.

Periods are cut either by fractions of the days the impressions span, at given dates
(``validation_start``, ``test_start``: the way a model is trained at one date and used
after it), or by whole campaigns in order of their start (``validation_campaigns``,
``test_campaigns``: a campaign is never split across parts). An impression's label is what follows it within the label window, so a
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


PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class TimeSplit:
    train_start: pd.Timestamp
    validation_start: pd.Timestamp  # first instant of the validation period
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # exclusive
    # Split by campaign: each campaign's part, (campaign_id, part) pairs; empty: by time.
    # validation_start / test_start are then the first start of a validation / test campaign.
    campaigns: tuple[tuple[str, str], ...] = ()

    def assign(self, ts: pd.Series, campaign=None) -> np.ndarray:
        """'train' / 'validation' / 'test' for each row: by its timestamp, or by its
        campaign (``campaign``: each row's campaign id) when the split is by campaign."""
        if self.campaigns:
            if campaign is None:
                raise ValueError("a split by campaign needs each row's campaign")
            part = pd.Series(np.asarray(campaign, dtype=object)).map(dict(self.campaigns))
            if part.isna().any():
                raise ValueError(f"{int(part.isna().sum())} row(s) of a campaign the split does not know")
            return part.to_numpy(dtype=object).astype(str)
        return np.select(
            [ts < self.validation_start, ts < self.test_start],
            ["train", "validation"], default="test",
        )

    def to_dict(self) -> dict:
        d = {k: getattr(self, k).isoformat() for k in ("train_start", "validation_start", "test_start", "test_end")}
        if self.campaigns:
            d["campaigns"] = {p: [c for c, q in self.campaigns if q == p] for p in PARTS}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TimeSplit":
        campaigns = tuple((c, p) for p, ids in (d.get("campaigns") or {}).items() for c in ids)
        return cls(**{k: pd.Timestamp(v) for k, v in d.items() if k != "campaigns"}, campaigns=campaigns)


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


def campaign_split(ts: pd.Series, campaign: pd.Series, validation_campaigns: int,
                   test_campaigns: int) -> TimeSplit:
    """Whole campaigns in each part, by their start (first impression; ties by id): the
    ``test_campaigns`` latest in test, the ``validation_campaigns`` before them in
    validation, the rest in train. A campaign never straddles a cut; label_known still
    leaves out the rows whose labels close after their part's end (the first start of
    the next part)."""
    for name, n in (("validation_campaigns", validation_campaigns), ("test_campaigns", test_campaigns)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"split.{name}: expected a whole number >= 1, got {n!r}")
    if campaign is None or pd.Series(campaign).isna().any():
        raise ValueError("split by campaign: every impression's coupon needs a campaign_id (coupons.campaign_id)")
    starts = (pd.DataFrame({"campaign": np.asarray(campaign, dtype=object).astype(str), "ts": ts.to_numpy()})
              .groupby("campaign")["ts"].min().reset_index().sort_values(["ts", "campaign"], kind="stable"))
    n = len(starts)
    if n < validation_campaigns + test_campaigns + 1:
        raise ValueError(f"split by campaign: {n} campaign(s) are too few for {test_campaigns} test and "
                         f"{validation_campaigns} validation campaign(s) and at least one to train on")
    part = np.array(["train"] * (n - validation_campaigns - test_campaigns) + ["validation"] * validation_campaigns
                    + ["test"] * test_campaigns)
    first = ts.min().floor("D")
    last = ts.max().floor("D") + pd.Timedelta(days=1)
    v_start = pd.Timestamp(starts.ts[part == "validation"].min())
    t_start = pd.Timestamp(starts.ts[part == "test"].min())
    return TimeSplit(first, v_start, t_start, last, tuple(zip(starts.campaign, part)))


def make_split(ts: pd.Series, split_config: dict, campaign=None) -> TimeSplit:
    """The split the config's ``split`` section asks for: by campaign
    (validation_campaigns, test_campaigns), at dates or by fractions of days."""
    config = dict(split_config)
    by_campaign = {k: config.pop(k) for k in ("validation_campaigns", "test_campaigns") if k in config}
    if by_campaign:
        if config:
            raise ValueError(f"split: validation_campaigns and test_campaigns go alone, not with "
                             f"{', '.join(sorted(config))}")
        if len(by_campaign) != 2:
            raise ValueError("split: give both validation_campaigns and test_campaigns")
        return campaign_split(ts, campaign, **by_campaign)
    return time_split(ts, **config)


def label_known(ts: pd.Series, split: TimeSplit, closes: pd.Series | timedelta,
                data_end: pd.Timestamp, campaign=None) -> tuple[np.ndarray, dict[str, int]]:
    """Which impressions (at ``ts``) have a label that was known by the end of their own
    period and before the data ended; and how many were left out, by why:
    ``crosses_cut`` (the window runs into the next period) and ``censored`` (it runs
    past ``data_end``, the last event of the log). ``closes``: when each label became
    final (dataset's ``label_closes``), or one label window for all."""
    if not isinstance(closes, pd.Series):
        closes = ts + pd.Timedelta(closes)
    part = split.assign(ts, campaign)
    period_end = np.select([part == "train", part == "validation"],
                           [split.validation_start, split.test_start], default=split.test_end)
    period_end = pd.Series(pd.to_datetime(period_end, utc=True), index=ts.index)
    crosses = (part != "test") & (closes > period_end).to_numpy()
    censored = ~crosses & (closes > data_end).to_numpy()
    keep = ~(crosses | censored)
    return keep, {"crosses_cut": int(crosses.sum()), "censored": int(censored.sum())}
