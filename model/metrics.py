"""Test-set metrics with bootstrap 95% confidence intervals (percentile method, stays resampled), paired
differences between models, and decision curves.

Every bootstrap here draws its resamples from `resample_indices(n, resamples, seed)`: with the same seed,
every model is scored on the same resamples, so a difference between two models is a paired difference
(its interval comes from the per-resample differences, not from two separate intervals).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from tqdm import tqdm

from .calibration import calibration_error, calibration_slope_intercept

# Binned calibration error is biased upwards, and more so on a resample (duplicated stays add noise to every
# bin): its percentile interval can lie wholly above the estimate. Its interval is bias-corrected: the bootstrap
# distribution shifted by its mean's excess over the estimate (never below 0).
BIAS_CORRECTED = ("calibration_error",)
METRICS = ("accuracy", "specificity", "sensitivity", "precision", "f1", "auroc", "auprc", "brier", "calibration_error")
CALIBRATION = ("brier", "calibration_error", "calibration_slope", "calibration_intercept")


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; ties count one half); NaN with one class."""
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (scikit-learn's definition: sum over thresholds of the recall gained times the
    precision there, tied scores forming one threshold); NaN without a positive."""
    y = np.asarray(y).astype(np.float64)
    if y.sum() == 0 or y.sum() == len(y):
        return float("nan")
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="mergesort")
    scores, hits = np.asarray(p, dtype=np.float64)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last stay of each distinct score
    tp = np.cumsum(hits)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """The confusion-matrix metrics of flagging p >= threshold: accuracy, specificity, sensitivity,
    precision, F1 (cheap: what a bootstrap of operating points needs)."""
    y = np.asarray(y).astype(int)
    decision = p >= threshold
    tp, fp = int((decision & (y == 1)).sum()), int((decision & (y == 0)).sum())
    tn, fn = int((~decision & (y == 0)).sum()), int((~decision & (y == 1)).sum())
    ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
    precision, sensitivity = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "accuracy": ratio(tp + tn, len(y)),
        "specificity": ratio(tn, tn + fp),
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": ratio(2 * precision * sensitivity, precision + sensitivity) if tp else 0.0,
    }


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    return {
        **threshold_metrics(y, p, threshold),
        "auroc": auroc(y, p),
        "auprc": auprc(y, p),
        "brier": float(np.mean((p - y) ** 2)),
        "calibration_error": calibration_error(y, p),
    }


def test_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """The threshold and ranking metrics with the calibration measures (one bootstrap scores them all)."""
    slope, intercept = calibration_slope_intercept(y, p)
    return {**point_metrics(y, p, threshold), "calibration_slope": slope, "calibration_intercept": intercept}


def calibration_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    slope, intercept = calibration_slope_intercept(y, p)
    return {
        "brier": float(np.mean((np.asarray(p) - np.asarray(y)) ** 2)),
        "calibration_error": calibration_error(y, p),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }


def resample_indices(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n) row indices drawn with replacement; the same for every model given the same seed."""
    return np.random.default_rng(seed).integers(0, n, (resamples, n))


def _interval(point: float, draws: list[float], bias_corrected: bool = False) -> dict[str, float]:
    values = np.asarray(draws, dtype=float)
    values = values[~np.isnan(values)]
    low, high = np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)
    if bias_corrected and len(values):
        bias = values.mean() - point
        low, high = max(low - bias, 0.0), max(high - bias, 0.0)
    return {"value": float(point), "low": float(low), "high": float(high)}


def _p_value(draws: list[float]) -> float:
    """Two-sided bootstrap p-value of a difference being 0: twice the smaller share of resamples on either
    side of 0 (at least one resample's worth, never 0)."""
    values = np.asarray(draws, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan")
    return float(min(1.0, max(2 * min((values <= 0).mean(), (values >= 0).mean()), 1 / len(values))))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate)."""
    names = sorted((n for n in p_values if not np.isnan(p_values[n])), key=lambda n: p_values[n])
    adjusted, running = {}, 0.0
    for i, name in enumerate(names):
        running = max(running, min(1.0, (len(names) - i) * p_values[name]))
        adjusted[name] = running
    return {n: adjusted.get(n, float("nan")) for n in p_values}


def bootstrap(
    y: np.ndarray, p: np.ndarray, measure, resamples: int = 1000, seed: int = 0, label: str = "bootstrap"
) -> dict[str, dict[str, float]]:
    """Each value of `measure(y, p) -> {name: value}` with its 95% bootstrap interval: {name: {value, low,
    high}}. A progress bar named `label` shows while the resamples run."""
    point, draws = _resampled(y, p, measure, resamples, seed, label)
    return {m: _interval(point[m], draws[m], m in BIAS_CORRECTED) for m in point}


def _resampled(y, p, measure, resamples: int, seed: int, label: str) -> tuple[dict, dict[str, list[float]]]:
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    point = measure(y, p)
    draws = {m: [] for m in point}
    for i in tqdm(resample_indices(len(y), resamples, seed), desc=label, unit="resample", leave=False, mininterval=1.0):
        for m, v in measure(y[i], p[i]).items():
            draws[m].append(v)
    return point, draws


def bootstrap_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, resamples: int = 1000, seed: int = 0, label: str = "bootstrap"
) -> dict[str, dict[str, float]]:
    """The threshold and ranking metrics, Brier and calibration error, each with its 95% interval."""
    return bootstrap(y, p, lambda y_, p_: point_metrics(y_, p_, threshold), resamples, seed, label)


def paired_difference(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0, label: str = "paired"
) -> dict[str, dict[str, float]]:
    """AUROC and AUPRC of model a minus model b on the same stays, with the 95% interval of the difference
    over the same resamples and its two-sided bootstrap p-value (`p`, for a multiplicity adjustment)."""

    def measure(y_: np.ndarray, ab: np.ndarray) -> dict[str, float]:
        return {"auroc": auroc(y_, ab[:, 0]) - auroc(y_, ab[:, 1]), "auprc": auprc(y_, ab[:, 0]) - auprc(y_, ab[:, 1])}

    point, draws = _resampled(y, np.column_stack([a, b]), measure, resamples, seed, label)
    return {m: _interval(point[m], draws[m]) | {"p": _p_value(draws[m])} for m in point}


def operating_point_metrics(
    y: np.ndarray, p: np.ndarray, thresholds: tuple[float, ...], sensitivity: float
) -> dict[str, float]:
    """Sensitivity, specificity and PPV at each stated risk threshold (`<metric>@<t>`), and the specificity
    and PPV at the highest threshold that still flags `sensitivity` of the positives (`<metric>@sens`)."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=float)
    out = {}
    for t in thresholds:
        m = threshold_metrics(y, p, t)
        out |= {f"sensitivity@{t:g}": m["sensitivity"], f"specificity@{t:g}": m["specificity"]}
        out[f"ppv@{t:g}"] = m["precision"]
        out[f"flagged@{t:g}"] = float((p >= t).mean())
    positives = np.sort(p[y])[::-1]
    if len(positives) and (~y).any():
        cut = positives[max(int(np.ceil(sensitivity * len(positives))) - 1, 0)]
        m = threshold_metrics(y, p, cut)
        out |= {"sensitivity@sens": m["sensitivity"], "specificity@sens": m["specificity"], "ppv@sens": m["precision"]}
        out["threshold@sens"] = float(cut)
    else:
        out |= {k: float("nan") for k in ("sensitivity@sens", "specificity@sens", "ppv@sens", "threshold@sens")}
    return out


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Decision-curve net benefit of treating the stays with p >= t, at each threshold probability t:
    true positives / n - false positives / n * t / (1 - t)."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=float)
    n = len(y)
    out = []
    for t in thresholds:
        treat = p >= t
        out.append((treat & y).sum() / n - (treat & ~y).sum() / n * t / (1 - t))
    return np.asarray(out)


def treat_all_net_benefit(y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    prevalence = float(np.mean(y))
    return prevalence - (1 - prevalence) * thresholds / (1 - thresholds)


def paired_net_benefit(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, thresholds: np.ndarray, resamples: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Net benefit of model a and of model b at each threshold on the same bootstrap resamples (those of every
    bootstrap here): two (resamples, thresholds) arrays, for a's band and the band of a - b."""
    y, a, b = np.asarray(y).astype(bool), np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    draws = [
        (net_benefit(y[i], a[i], thresholds), net_benefit(y[i], b[i], thresholds))
        for i in resample_indices(len(y), resamples, seed)
    ]
    return np.array([d[0] for d in draws]), np.array([d[1] for d in draws])
