"""Post-hoc calibration of predicted probabilities, fitted on out-of-fold predictions of the training part.

Two methods: Platt scaling (a logistic regression on the logit of the prediction: a slope, kept positive
so that calibration never reverses the model's ranking, and an intercept) and isotonic regression (a
monotone step function, linearly interpolated between its knots as scikit-learn's IsotonicRegression
predicts). A calibrator is a few numbers, stored as JSON in the run folder and applied by plain NumPy, so
training, evaluation, offline and online scoring all map probabilities the same way.

`calibrate_folds` calibrates each cross-validation fold model on its own held-out rows (the rows it never
saw), as scikit-learn's CalibratedClassifierCV does: fold models of a network differ in the spread of their
raw probabilities (one early-stopped after an epoch is nearly flat, another is not), so one map fitted on
the pooled out-of-fold predictions leaves each of them miscalibrated and their average too moderate. The
method is chosen once, by cross-validated Brier score within each fold's rows.

The measures of calibration (calibration error over quantile bins, calibration slope and intercept) are
here too, so that the report and its plot use the same bins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from .errors import StudyError

EPS = 1e-6
METHODS = ("platt", "isotonic")
MIN_PLATT_SLOPE = 1e-3  # calibration may flatten a model's ranking but never reverse it


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A fitted map from a model's probability to a calibrated one."""

    method: str  # "platt", "isotonic" or "none"
    slope: float = 1.0  # platt: sigmoid(slope * logit(p) + intercept)
    intercept: float = 0.0
    knots_x: list[float] = field(default_factory=list)  # isotonic: interpolation knots
    knots_y: list[float] = field(default_factory=list)
    cv_brier: dict[str, float] = field(default_factory=dict)  # how each method scored when it was chosen

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "platt":
            return 1 / (1 + np.exp(-(self.slope * logit(p) + self.intercept)))
        if self.method == "isotonic":
            return np.interp(p, self.knots_x, self.knots_y)  # clipped at the end knots, as out_of_bounds="clip"
        if self.method == "none":
            return p
        raise StudyError(f"unknown calibration method {self.method!r}: use one of {METHODS} or 'none'")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        return cls(**d)


def fit_calibrator(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y).astype(int)
    if method not in METHODS:
        raise StudyError(f"unknown calibration method {method!r}: use one of {METHODS}")
    if len(np.unique(y)) < 2:  # one outcome class only (a small part): the observed rate, order kept
        rate = float(np.clip(y.mean() if len(y) else 0.5, EPS, 1 - EPS))
        return Calibrator(
            "platt",
            slope=MIN_PLATT_SLOPE,
            intercept=float(np.log(rate / (1 - rate)) - MIN_PLATT_SLOPE * logit(p).mean()),
        )
    if method == "platt":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p)[:, None], y)
        slope, intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if slope < MIN_PLATT_SLOPE:
            # a model with no signal can fit a negative slope, which would reverse its ranking: keep the order
            # (a near-flat map at the base rate) and refit the intercept for it
            slope = MIN_PLATT_SLOPE
            intercept, _ = _logistic(y.astype(np.float64), slope * logit(p), with_slope=False)
        return Calibrator("platt", slope=slope, intercept=intercept)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return Calibrator("isotonic", knots_x=iso.X_thresholds_.tolist(), knots_y=iso.y_thresholds_.tolist())
    raise StudyError(f"unknown calibration method {method!r}: use one of {METHODS}")


@dataclass
class FoldCalibration:
    """One calibrator per fold model, of one method; the ensemble's probability is the mean of its members'
    calibrated probabilities."""

    method: str
    members: list[Calibrator]
    cv_brier: dict[str, float] = field(default_factory=dict)  # how each method scored when it was chosen

    def apply(self, member_probabilities: np.ndarray) -> np.ndarray:
        """(members, n) raw probabilities -> (n,) calibrated ensemble probabilities."""
        if len(member_probabilities) != len(self.members):
            raise StudyError(f"{len(member_probabilities)} member predictions for {len(self.members)} calibrators")
        return np.mean([c(p) for c, p in zip(self.members, member_probabilities)], axis=0)

    def out_of_fold(self, raw: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """Each training row's out-of-fold prediction, calibrated by the map of the fold model that made it."""
        out = np.empty(len(raw))
        for k, calibrator in enumerate(self.members):
            out[fold == k] = calibrator(raw[fold == k])
        return out

    def to_dict(self) -> dict:
        return {"method": self.method, "cv_brier": self.cv_brier, "members": [c.to_dict() for c in self.members]}

    @classmethod
    def from_dict(cls, d: dict) -> FoldCalibration:
        return cls(d["method"], [Calibrator.from_dict(c) for c in d["members"]], d.get("cv_brier", {}))


def calibrate_folds(
    raw: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    methods: tuple[str, ...] = METHODS,
    inner_folds: int = 5,
    seed: int = 0,
) -> FoldCalibration:
    """A calibrator per fold model, fitted on the out-of-fold predictions that model made (fold k's rows).
    The method is the one with the lowest Brier score when, within each fold's rows, every part is calibrated
    by a map fitted on the others (`inner_folds` parts); then refitted on all of that fold's rows."""
    raw, y, fold = np.asarray(raw, dtype=np.float64), np.asarray(y).astype(int), np.asarray(fold)
    folds = range(int(fold.max()) + 1)
    parts = np.empty(len(raw), dtype=np.int64)
    for k in folds:
        rows = np.flatnonzero(fold == k)
        parts[rows] = np.random.default_rng(seed + k).permutation(len(rows)) % inner_folds
    brier = {}
    for method in methods:
        calibrated = np.empty_like(raw)
        for k in folds:
            for part in range(inner_folds):
                fit_rows, out = (fold == k) & (parts != part), (fold == k) & (parts == part)
                if out.any():
                    calibrated[out] = fit_calibrator(method, raw[fit_rows], y[fit_rows])(raw[out])
        brier[method] = float(np.mean((calibrated - y) ** 2))
    chosen = min(brier, key=brier.get)
    return FoldCalibration(chosen, [fit_calibrator(chosen, raw[fold == k], y[fold == k]) for k in folds], brier)


def quantile_bins(p: np.ndarray, bins: int = 10) -> np.ndarray:
    """Each prediction's bin: `bins` groups of (nearly) equal size by predicted probability."""
    order = np.argsort(p, kind="stable")
    which = np.empty(len(p), dtype=np.int64)
    which[order] = np.arange(len(p)) * bins // max(len(p), 1)
    return which


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per quantile bin: the mean prediction, the observed rate and the bin's share of stays."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = quantile_bins(p, bins)
    present = np.unique(which)
    predicted = np.array([p[which == b].mean() for b in present])
    observed = np.array([y[which == b].mean() for b in present])
    share = np.array([(which == b).mean() for b in present])
    return predicted, observed, share


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over quantile bins: the stay-weighted mean |observed rate - mean prediction|."""
    if len(y) == 0:
        return float("nan")
    predicted, observed, share = calibration_curve(y, p, bins)
    return float(np.sum(share * np.abs(observed - predicted)))


def calibration_error_by_chance(p: np.ndarray, bins: int = 10, draws: int = 200, seed: int = 0) -> float:
    """The calibration error a perfectly calibrated model would show on these stays by chance alone: the
    mean error over outcomes drawn from the probabilities themselves. Binned calibration error is never 0
    on a finite test set; a model near this figure is as calibrated as the test set can tell."""
    p = np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed)
    return float(np.mean([calibration_error((rng.random(len(p)) < p).astype(float), p, bins) for _ in range(draws)]))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration slope (the coefficient of logit(p) in a logistic regression of the outcome on it; 1 is
    ideal, below 1 means too extreme predictions) and calibration intercept (calibration-in-the-large: the
    intercept with logit(p) as an offset; 0 is ideal, above 0 means risks under-estimated on average)."""
    y = np.asarray(y, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    z = logit(p)
    _, slope = _logistic(y, z, with_slope=True)
    intercept, _ = _logistic(y, z, with_slope=False)
    return slope, intercept


def _logistic(y: np.ndarray, z: np.ndarray, with_slope: bool) -> tuple[float, float]:
    """Maximum likelihood of logit P(y) = a + b z by Newton's method; b fixed at 1 (z an offset) unless
    `with_slope`. Fast enough to run inside a bootstrap. NaN when it does not converge (a resample whose
    outcomes the predictions separate perfectly has no finite slope)."""
    a, b = 0.0, 1.0
    for _ in range(100):
        q = 1 / (1 + np.exp(-np.clip(a + b * z, -35, 35)))
        w = q * (1 - q) + 1e-12
        r = y - q
        if with_slope:
            h = np.array([[w.sum(), (w * z).sum()], [(w * z).sum(), (w * z * z).sum()]])
            try:
                step = np.linalg.solve(h, np.array([r.sum(), (r * z).sum()]))
            except np.linalg.LinAlgError:
                return float("nan"), float("nan")
            a, b = a + step[0], b + step[1]
        else:
            step = np.array([r.sum() / w.sum(), 0.0])
            a += step[0]
        if np.abs(step).max() < 1e-9:
            return float(a), float(b)
    return float("nan"), float("nan")
