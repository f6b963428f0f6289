"""The final model: the ensemble of a setting's cross-validation fold models, calibrated and thresholded on
their own out-of-fold predictions.

Why the fold models and not one model retrained on the whole training part: the calibration map and the
decision threshold are fitted on out-of-fold predictions, which only the fold models make honestly (each
training stay scored by the model that did not see it). A retrained model would be another model, with
another spread of probabilities, than the one the map and the threshold were fitted for. The ensemble's
probability is the mean of its members' calibrated probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sepsis_fusion.pipelines.features.layout import FeatureArrays

from .calibration import Calibrator, choose_calibrator
from .protocol import FoldResult, Member, out_of_fold, youden_threshold


@dataclass
class Ensemble:
    members: list[Member]
    calibrator: Calibrator

    def predict_members(self, features: FeatureArrays) -> np.ndarray:
        """(members, n) uncalibrated probabilities."""
        return np.stack([m.predict(features) for m in self.members])

    def predict_uncalibrated(self, features: FeatureArrays) -> np.ndarray:
        return self.predict_members(features).mean(axis=0)

    def predict(self, features: FeatureArrays) -> np.ndarray:
        return self.calibrate(self.predict_members(features))

    def calibrate(self, member_probabilities: np.ndarray) -> np.ndarray:
        return np.mean([self.calibrator(p) for p in member_probabilities], axis=0)


@dataclass
class CalibratedCV:
    """What a setting's cross-validation gives: the ensemble, and the out-of-fold predictions before and
    after calibration with the threshold chosen on the calibrated ones."""
    ensemble: Ensemble
    oof_uncalibrated: np.ndarray
    oof: np.ndarray
    threshold: float


def calibrated_cv(results: list[FoldResult], y: np.ndarray, fold: np.ndarray) -> CalibratedCV:
    """Calibration (Platt or isotonic, chosen by cross-validation over the same folds) fitted on the
    out-of-fold predictions, and the Youden threshold on the calibrated out-of-fold predictions."""
    raw = out_of_fold(results, len(y))
    calibrator = choose_calibrator(raw, y, fold)
    oof = calibrator(raw)
    return CalibratedCV(Ensemble([r.member for r in results], calibrator), raw, oof, youden_threshold(y, oof))
