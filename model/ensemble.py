"""The final model: the ensemble of a setting's cross-validation fold models, calibrated by one map fitted on
their pooled out-of-fold predictions (calibration.py), thresholded on out-of-fold predictions calibrated by
maps that never saw them (cross-fitted).

Why the fold models and not one model retrained on the whole training part: the calibration maps and the
decision threshold are fitted on out-of-fold predictions, which only the fold models make honestly (each
training stay scored by the model that did not see it). A retrained model would be another model, with
another spread of probabilities (early stopping at another epoch), than the ones the maps and the threshold
were fitted for. The ensemble's probability is the mean of its members' calibrated probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calibration import calibrate_ensemble
from .predictor import Ensemble
from .protocol import FoldResult, out_of_fold, youden_threshold


@dataclass
class CalibratedCV:
    """What a setting's cross-validation gives: the ensemble, and the out-of-fold predictions before and
    after (cross-fitted) calibration with the threshold chosen on the calibrated ones."""

    ensemble: Ensemble
    oof_uncalibrated: np.ndarray
    oof: np.ndarray
    threshold: float


def calibrated_cv(results: list[FoldResult], y: np.ndarray, fold: np.ndarray) -> CalibratedCV:
    """The fold models under one calibration map (Platt or isotonic, chosen by cross-fitted Brier), and the
    Youden threshold on the cross-fitted calibrated out-of-fold predictions."""
    results = sorted(results, key=lambda r: r.fold)
    raw = out_of_fold(results, len(y))
    fitted = calibrate_ensemble(raw, y, fold)
    ensemble = Ensemble([r.member for r in results], fitted.calibration)
    return CalibratedCV(ensemble, raw, fitted.oof, youden_threshold(y, fitted.oof))
