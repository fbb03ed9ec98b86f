"""Scores to redemption probabilities: Platt scaling or isotonic regression, fitted on
the validation period, whichever is better calibrated there.

The ranker's raw scores order coupons; a caller that wants "how likely is this
redemption" needs a probability. :func:`fit_calibrator` fits both maps on validation
rows split in two halves by request (seeded): each method is fitted on one half and its
expected calibration error (:func:`expected_calibration_error`) measured on the other,
both ways; the lower mean wins and is refitted on every validation row. The report
shows the test ECE and the reliability plot of the chosen map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

METHODS = ("platt", "isotonic")


def expected_calibration_error(prob: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| over ``bins`` equal-width probability bins, weighted
    by the rows in each (the usual ECE)."""
    prob, y = np.asarray(prob, np.float64), np.asarray(y, np.float64)
    if len(prob) == 0:
        return float("nan")
    which = np.minimum((prob * bins).astype(np.int64), bins - 1)
    n = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, prob, bins) - np.bincount(which, y, bins))
    return float(gap.sum() / n.sum())


@dataclass
class Calibrator:
    method: str  # one of METHODS
    a: float = 0.0  # platt: sigmoid(a * score + b)
    b: float = 0.0
    x: list[float] = field(default_factory=list)  # isotonic: the fitted step function's knots
    y: list[float] = field(default_factory=list)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, np.float64)
        if self.method == "platt":
            return 1 / (1 + np.exp(-(self.a * scores + self.b)))
        return np.interp(scores, self.x, self.y)  # clipped at both ends, as sklearn's out_of_bounds="clip"

    def to_dict(self) -> dict:
        if self.method == "platt":
            return {"method": "platt", "a": self.a, "b": self.b}
        return {"method": "isotonic", "x": self.x, "y": self.y}

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        if d.get("method", "platt") == "platt":  # artifacts before isotonic: {"a", "b"}
            return cls("platt", float(d["a"]), float(d["b"]))
        return cls("isotonic", x=list(d["x"]), y=list(d["y"]))


def _fit(method: str, scores: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "platt":
        lr = LogisticRegression(C=1e6).fit(scores.reshape(-1, 1), y)
        return Calibrator("platt", float(lr.coef_[0, 0]), float(lr.intercept_[0]))
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
    return Calibrator("isotonic", x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_])


def fit_calibrator(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, relevant_at: int,
                   seed: int = 0) -> tuple[Calibrator, dict[str, float]]:
    """The better calibrated of Platt and isotonic on the validation rows (2-fold by
    request, seeded), refitted on all of them; and each method's held-out ECE."""
    scores = np.asarray(scores, np.float64)
    y = (np.asarray(labels) >= relevant_at).astype(np.float64)
    codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1]  # request -> 0..n-1, sorted ids
    half = np.random.default_rng(seed).random(codes.max() + 1 if len(codes) else 0) < 0.5
    fold = half[codes] if len(codes) else np.zeros(0, bool)
    ece = {}
    for method in METHODS:
        errs = []
        for test_half in (fold, ~fold):
            fit_rows = ~test_half
            if len(np.unique(y[fit_rows])) < 2 or not test_half.any():
                continue
            errs.append(expected_calibration_error(_fit(method, scores[fit_rows], y[fit_rows])(scores[test_half]),
                                                   y[test_half]))
        ece[method] = float(np.mean(errs)) if errs else float("nan")
    best = min(METHODS, key=lambda m: (np.nan_to_num(ece[m], nan=np.inf), METHODS.index(m)))
    return _fit(best, scores, y), ece
