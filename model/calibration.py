"""Post-hoc calibration of predicted probabilities, fitted on out-of-fold predictions of the training part.

Two methods: Platt scaling (a logistic regression on the logit of the prediction: a slope, kept positive
so that calibration never reverses the model's ranking, and an intercept) and isotonic regression (a
monotone step function, linearly interpolated between its knots as scikit-learn's IsotonicRegression
predicts). A calibrator is a few numbers, stored as JSON in the run folder and applied by plain NumPy, so
training, evaluation, offline and online scoring all map probabilities the same way.

`calibrate_ensemble` fits one map for all the fold models of an ensemble on their pooled out-of-fold
predictions, each member's logits first standardised by their own spread (EnsembleCalibration says why);
the method is chosen by cross-fitted Brier score, and the out-of-fold predictions the threshold is chosen on
are calibrated by maps that did not see them.

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
        # a step with no event (or no survivor) in a finite sample is not a risk of exactly 0 (or 1): bounded
        # at half an event of the sample, so that a logit (calibration slope, the report's curves) stays finite
        bound = 0.5 / max(len(y), 1)
        iso = IsotonicRegression(y_min=bound, y_max=1.0 - bound, out_of_bounds="clip").fit(p, y)
        return Calibrator("isotonic", knots_x=iso.X_thresholds_.tolist(), knots_y=iso.y_thresholds_.tolist())
    raise StudyError(f"unknown calibration method {method!r}: use one of {METHODS}")


@dataclass
class EnsembleCalibration:
    """One map shared by every fold model of an ensemble, fitted on all their out-of-fold predictions.

    Fold models of a network differ in the spread of their raw probabilities (one early-stopped after a few
    epochs is nearly flat, another is not), so each member's logit is first standardised by the mean and
    standard deviation of its own out-of-fold logits: statistics of the member's predictions, fitted without
    a single outcome. The map (two Platt parameters, or an isotonic step function) is then fitted on the
    pooled standardised predictions of the whole training part, never on one fold's few hundred stays. The
    ensemble's probability is the mean of its members' calibrated probabilities.

    A run of sepsis-fusion 0.2.0 stored one map per member on raw probabilities: read as `maps` with one
    entry per member, centres 0 and scales 1, it scores as it did."""

    method: str
    maps: list[Calibrator]  # one shared by every member (or one per member, runs of 0.2.0)
    centres: list[float]  # per member: the mean of its out-of-fold logits
    scales: list[float]  # per member: their standard deviation
    cv_brier: dict[str, float] = field(default_factory=dict)  # each method's cross-fitted Brier score

    def standardise(self, member: int, p: np.ndarray) -> np.ndarray:
        """A member's probabilities on the common scale the map reads: sigmoid of the standardised logit."""
        return 1 / (1 + np.exp(-(logit(p) - self.centres[member]) / self.scales[member]))

    def member(self, member: int, p: np.ndarray) -> np.ndarray:
        """One member's calibrated probabilities."""
        return self.maps[member if len(self.maps) > 1 else 0](self.standardise(member, p))

    def apply(self, member_probabilities: np.ndarray) -> np.ndarray:
        """(members, n) raw probabilities -> (n,) calibrated ensemble probabilities."""
        if len(member_probabilities) != len(self.centres):
            raise StudyError(f"{len(member_probabilities)} member predictions for {len(self.centres)} members")
        return np.mean([self.member(k, p) for k, p in enumerate(member_probabilities)], axis=0)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "scope": "shared" if len(self.maps) == 1 else "per member",
            "cv_brier": self.cv_brier,
            "centres": self.centres,
            "scales": self.scales,
            "maps": [c.to_dict() for c in self.maps],
        }

    @classmethod
    def from_dict(cls, d: dict) -> EnsembleCalibration:
        brier = d.get("cv_brier", {})
        if "members" in d:  # sepsis-fusion 0.2.0: a map per member on its raw probabilities
            n = len(d["members"])
            return cls(d["method"], [Calibrator.from_dict(c) for c in d["members"]], [0.0] * n, [1.0] * n, brier)
        return cls(d["method"], [Calibrator.from_dict(c) for c in d["maps"]], d["centres"], d["scales"], brier)


@dataclass
class CrossFitted:
    """The calibration of an ensemble and the training part's out-of-fold predictions calibrated by maps
    that never saw them (fold k's rows by a map fitted on the other folds' rows): what the threshold is
    chosen on and what the run's out-of-fold predictions file holds."""

    calibration: EnsembleCalibration
    oof: np.ndarray


def calibrate_ensemble(
    raw: np.ndarray, y: np.ndarray, fold: np.ndarray, methods: tuple[str, ...] = METHODS
) -> CrossFitted:
    """One map for every fold model (see EnsembleCalibration), of the method with the lowest cross-fitted
    Brier score: each fold's out-of-fold rows calibrated by the map fitted on the other folds' rows. The
    chosen method is then refitted on every row; its cross-fitted predictions are returned beside it."""
    raw, y, fold = np.asarray(raw, dtype=np.float64), np.asarray(y).astype(int), np.asarray(fold)
    folds = range(int(fold.max()) + 1)
    centres, scales = [], []
    for k in folds:
        z = logit(raw[fold == k])
        centres.append(float(z.mean()))
        scales.append(float(max(z.std(), 1e-3)))  # a constant member stays constant, never divides by 0
    scaled = EnsembleCalibration("none", [Calibrator("none")], centres, scales)
    common = np.empty_like(raw)
    for k in folds:
        common[fold == k] = scaled.standardise(k, raw[fold == k])
    crossfitted, brier = {}, {}
    for method in methods:
        out = np.empty_like(raw)
        for k in folds:
            out[fold == k] = fit_calibrator(method, common[fold != k], y[fold != k])(common[fold == k])
        crossfitted[method], brier[method] = out, float(np.mean((out - y) ** 2))
    chosen = min(brier, key=brier.get)
    calibration = EnsembleCalibration(chosen, [fit_calibrator(chosen, common, y)], centres, scales, brier)
    return CrossFitted(calibration, crossfitted[chosen])


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


def smoothed_calibration(
    y: np.ndarray, p: np.ndarray, grid: np.ndarray, resamples: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observed risk as a smooth function of the predicted one, with a 95% bootstrap band: a logistic
    regression of the outcome on a natural cubic spline of logit(p) (knots at the 10th, 50th and 90th
    percentiles of logit(p): a restricted cubic spline, as Harrell's `val.prob` and the calibration-curve
    literature use), evaluated at `grid`. Returns (curve, low, high); NaN where it cannot be fitted."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=np.float64)
    z, at = logit(p), logit(grid)
    knots = np.percentile(z, [10, 50, 90])

    def fit(yy: np.ndarray, zz: np.ndarray) -> np.ndarray:
        if len(np.unique(yy)) < 2:
            return np.full(len(at), np.nan)
        model = LogisticRegression(C=1e4, max_iter=2000).fit(_spline_basis(zz, knots), yy)
        return model.predict_proba(_spline_basis(at, knots))[:, 1]

    curve = fit(y, z)
    if resamples == 0:
        return curve, np.full(len(at), np.nan), np.full(len(at), np.nan)
    rng = np.random.default_rng(seed)
    draws = np.array([fit(y[i], z[i]) for i in rng.integers(0, len(y), (resamples, len(y)))])
    low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    return curve, low, high


def _spline_basis(z: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted (natural) cubic spline basis of z with these knots: linear beyond the outer knots."""
    k = np.asarray(knots, dtype=np.float64)
    scale = (k[-1] - k[0]) ** 2 or 1.0

    def cube(x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0) ** 3

    columns = [z]
    for j in range(len(k) - 2):
        columns.append(
            (
                cube(z - k[j])
                - cube(z - k[-2]) * (k[-1] - k[j]) / (k[-1] - k[-2])
                + cube(z - k[-1]) * (k[-2] - k[j]) / (k[-1] - k[-2])
            )
            / scale
        )
    return np.column_stack(columns)
