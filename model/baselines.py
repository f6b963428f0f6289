"""The baselines the fusion model is compared with, each trained the way the fusion model is.

Logistic regression and gradient boosting read the fusion model's own inputs, summarised per stay (`flat`):
the static features; the latest step of the lab and vital sequence, the mean of its present steps and the
change of each value from its first present step; the latest note, the mean of the notes and their count.
They are tuned by the same cross-validation folds of the training part (logistic regression: C; gradient
boosting: depth, learning rate, iterations), with the preprocessing fitted inside each fold on the fold's
training rows; the chosen setting's fold models form an ensemble, calibrated and thresholded on their own
out-of-fold predictions, exactly as the fusion model.

The clinical scores at T are the clinical baselines: SOFA (the 24-hour SOFA score of the last hour by T) and
OASIS (over the 24 hours before T), both from values stored by T (docs/COHORT.md). Each is turned into a risk
by isotonic regression of the outcome on it over the training part, its threshold the Youden point there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from .calibration import Calibrator, EnsembleCalibration, calibrate_ensemble, fit_calibrator
from .config import StudyConfig
from .inputs import FeatureArrays
from .metrics import auroc
from .preprocess import ModelInputs, Preprocessor
from .protocol import fold_of, subset, youden_threshold

# The clinical scores at T, by the cohort column that holds each.
CLINICAL_SCORES = {"SOFA at T": "sofa_score_at_prediction", "OASIS at T": "oasis_at_prediction"}


def sequence_summary(inputs: ModelInputs) -> np.ndarray:
    """The lab and vital sequence per stay: its latest step, the mean of its present steps, and the change
    of each value from the first present step to the latest."""
    n = len(inputs)
    step_mask = inputs.sequence_mask[:, :, None].astype(np.float32)
    steps_mean = (inputs.sequence * step_mask).sum(axis=1) / np.maximum(step_mask.sum(axis=1), 1)
    first = np.argmax(inputs.sequence_mask, axis=1)  # the first present step (0 when none: all zeros then)
    values = inputs.sequence.shape[2] // 4  # the z-scored values lead each step vector
    change = inputs.sequence[:, -1, :values] - inputs.sequence[np.arange(n), first, :values]
    return np.concatenate([inputs.sequence[:, -1], steps_mean, change], axis=1)


def note_summary(inputs: ModelInputs) -> np.ndarray:
    """The note sequence per stay: the latest note (with its age), the mean of the notes, their number."""
    n = len(inputs)
    note_mask = inputs.note_mask[:, :, None].astype(np.float32)
    notes_mean = (inputs.notes * note_mask).sum(axis=1) / np.maximum(note_mask.sum(axis=1), 1)
    latest = inputs.notes[:, -1] if inputs.notes.shape[1] else np.zeros((n, 0), np.float32)
    return np.concatenate([latest, notes_mean, inputs.note_mask.sum(axis=1, keepdims=True).astype(np.float32)], axis=1)


def flat(inputs: ModelInputs) -> np.ndarray:
    """Every model input as one row per stay, for the baselines: the sequences summarised (a tabular model
    cannot learn from S x 4F step values and N note vectors of a few thousand stays)."""
    return np.concatenate([inputs.static, sequence_summary(inputs), note_summary(inputs)], axis=1)


@dataclass
class BaselineResult:
    name: str
    params: dict
    cv_auroc: dict[str, float]  # mean fold AUROC of every setting tried
    calibration: EnsembleCalibration | Calibrator  # fold models; SOFA: one map of the score
    threshold: float
    oof: np.ndarray  # calibrated out-of-fold predictions of the training part
    test: np.ndarray  # calibrated test predictions (the fold models' mean)
    test_uncalibrated: np.ndarray

    def summary(self) -> dict:
        return {
            "params": self.params,
            "cv_auroc": self.cv_auroc,
            "threshold": self.threshold,
            "calibration": self.calibration.to_dict(),
        }


def _grids(config: StudyConfig) -> dict[str, list[dict]]:
    b = config.baselines
    return {
        "logistic regression": [{"C": c} for c in b.logistic_c],
        "gradient boosting": [
            {"max_depth": d, "learning_rate": lr}
            for d, lr in itertools.product(b.boosting_depth, b.boosting_learning_rate)
        ],
    }


def _fit_predict(
    name: str, params: dict, iterations: list[int], seed: int, x: np.ndarray, y: np.ndarray, others: list[np.ndarray]
) -> dict[str, list[np.ndarray]]:
    """Probabilities on each of `others` for every setting one fit yields (gradient boosting: each number of
    iterations, read from one fit of the largest)."""
    if name == "logistic regression":
        model = LogisticRegression(C=params["C"], max_iter=3000).fit(x, y)
        return {_label(params): [model.predict_proba(o)[:, 1] for o in others]}
    model = HistGradientBoostingClassifier(
        max_iter=max(iterations), early_stopping=False, random_state=seed, **params
    ).fit(x, y)
    out = {}
    staged = [list(model.staged_predict_proba(o)) for o in others]
    for n in iterations:
        out[_label({**params, "max_iter": n})] = [s[n - 1][:, 1] for s in staged]
    return out


def _label(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def tuned_baselines(
    config: StudyConfig,
    features: FeatureArrays,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    test: FeatureArrays,
    progress: Callable[[str], None] = print,
) -> list[BaselineResult]:
    """Logistic regression and gradient boosting, tuned, calibrated and thresholded on the training part's
    folds; their test predictions."""
    fold = fold_of(folds, len(y))
    matrices = []
    for train, val in folds:  # preprocessing fitted inside each fold, as for the fusion model
        pre = Preprocessor(config.preprocess).fit(subset(features, train), y[train])
        matrices.append(
            [flat(pre.transform(subset(features, rows))) for rows in (train, val)] + [flat(pre.transform(test))]
        )
    out = []
    for name, grid in _grids(config).items():
        val_pred: dict[str, list[np.ndarray]] = {}
        test_pred: dict[str, list[np.ndarray]] = {}
        params_of: dict[str, dict] = {}
        for params in grid:
            for k, (train, _val) in enumerate(folds):
                x_tr, x_val, x_test = matrices[k]
                fitted = _fit_predict(
                    name, params, config.baselines.boosting_iterations, config.seed, x_tr, y[train], [x_val, x_test]
                )
                for label, (p_val, p_test) in fitted.items():
                    val_pred.setdefault(label, []).append(p_val)
                    test_pred.setdefault(label, []).append(p_test)
                    params_of[label] = (
                        params
                        if name == "logistic regression"
                        else {**params, "max_iter": int(label.rsplit("=", 1)[1])}
                    )
        cv = {
            label: float(np.mean([auroc(y[val], p) for (_, val), p in zip(folds, preds)]))
            for label, preds in val_pred.items()
        }
        best = max(cv, key=cv.get)
        oof_raw = np.empty(len(y))
        for (_, val), p in zip(folds, val_pred[best]):
            oof_raw[val] = p
        fitted = calibrate_ensemble(oof_raw, y, fold)
        calibration, oof = fitted.calibration, fitted.oof
        result = BaselineResult(
            name,
            params_of[best],
            cv,
            calibration,
            youden_threshold(y, oof),
            oof,
            calibration.apply(np.stack(test_pred[best])),
            np.mean(test_pred[best], axis=0),
        )
        progress(
            f"baseline {name}: {len(cv)} setting(s) x {len(folds)} folds, chosen {best} (mean CV AUROC "
            f"{cv[best]:.3f}), calibration {calibration.method}"
        )
        out.append(result)
    return out


def score_baseline(name: str, score_train: np.ndarray, y: np.ndarray, score_test: np.ndarray) -> BaselineResult:
    """A clinical score as a risk: the training part's outcome rate by score (isotonic, so monotone in the
    score); a missing score counts as 0, as SOFA and OASIS count missing components."""
    s_train, s_test = np.nan_to_num(score_train.astype(float)), np.nan_to_num(score_test.astype(float))
    to_risk = fit_calibrator("isotonic", s_train, y)
    oof = to_risk(s_train)
    return BaselineResult(name, {}, {}, to_risk, youden_threshold(y, oof), oof, to_risk(s_test), to_risk(s_test))
