"""Scores to probabilities: ECE by hand, Platt or isotonic chosen on held-out
validation rows, the stored map round-trips (training/calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest

from couponrank.training.calibration import Calibrator, expected_calibration_error, fit_calibrator


def test_ece_by_hand():
    # bin [0.1, 0.2): predicted 0.1 x2, observed 1 of 2 -> |0.2 - 1| = 0.8 over 2 rows
    # bin [0.9, 1.0]: predicted 0.9 x2, observed 2 of 2 -> |1.8 - 2| = 0.2
    assert expected_calibration_error([0.1, 0.1, 0.9, 0.9], [0, 1, 1, 1]) == pytest.approx((0.8 + 0.2) / 4)
    assert expected_calibration_error([0.25, 0.75], [0, 1], bins=2) == pytest.approx(0.25)


def _data(shape: str, n: int = 20_000, seed: int = 1):
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(2 * score - 1))) if shape == "sigmoid" else np.where(score < 0.8, 0.03, 0.7)
    label = np.where(rng.random(n) < p, 2, 0)
    return score, label, np.arange(n) // 4


def test_a_step_shaped_truth_is_calibrated_by_isotonic():
    cal, ece = fit_calibrator(*_data("step"), relevant_at=2)
    assert cal.method == "isotonic" and ece["isotonic"] < ece["platt"]
    score, label, _ = _data("step", seed=2)  # fresh rows
    assert expected_calibration_error(cal(score), label >= 2) < 0.02


def test_a_sigmoid_truth_is_calibrated_by_platt_on_few_rows():
    cal, ece = fit_calibrator(*_data("sigmoid", n=600), relevant_at=2)
    assert cal.method == "platt" and ece["platt"] < ece["isotonic"]
    assert cal.a == pytest.approx(2, rel=0.3)


@pytest.mark.parametrize("stored", [{"method": "platt", "a": 1.5, "b": -0.5}, {"a": 1.5, "b": -0.5},
                                    {"method": "isotonic", "x": [-1.0, 0.0, 1.0], "y": [0.1, 0.2, 0.9]}])
def test_the_stored_map_round_trips(stored):
    cal = Calibrator.from_dict(stored)
    again = Calibrator.from_dict(cal.to_dict())
    scores = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(cal(scores), again(scores))
    assert ((cal(scores) >= 0) & (cal(scores) <= 1)).all()
    assert np.all(np.diff(cal(scores)) >= 0)  # monotone
