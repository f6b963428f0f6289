"""The final model: the ensemble of a setting's cross-validation fold models, each calibrated on its own
out-of-fold predictions, thresholded on the calibrated out-of-fold predictions.

Why the fold models and not one model retrained on the whole training part: the calibration maps and the
decision threshold are fitted on out-of-fold predictions, which only the fold models make honestly (each
training stay scored by the model that did not see it). A retrained model would be another model, with
another spread of probabilities (early stopping at another epoch), than the ones the maps and the threshold
were fitted for. The ensemble's probability is the mean of its members' calibrated probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calibration import calibrate_folds
from .predictor import Ensemble
from .protocol import FoldResult, out_of_fold, youden_threshold


@dataclass
class CalibratedCV:
    """What a setting's cross-validation gives: the ensemble, and the out-of-fold predictions before and
    after calibration with the threshold chosen on the calibrated ones."""

    ensemble: Ensemble
    oof_uncalibrated: np.ndarray
    oof: np.ndarray
    threshold: float


def calibrated_cv(results: list[FoldResult], y: np.ndarray, fold: np.ndarray) -> CalibratedCV:
    """Each fold model calibrated on its out-of-fold predictions (Platt or isotonic, chosen by cross-validated
    Brier), and the Youden threshold on the calibrated out-of-fold predictions."""
    results = sorted(results, key=lambda r: r.fold)
    raw = out_of_fold(results, len(y))
    calibration = calibrate_folds(raw, y, fold)
    oof = calibration.out_of_fold(raw, fold)
    return CalibratedCV(Ensemble([r.member for r in results], calibration), raw, oof, youden_threshold(y, oof))
