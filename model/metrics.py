"""Test-set metrics with bootstrap 95% confidence intervals (percentile method, stays resampled)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

METRICS = ("accuracy", "specificity", "sensitivity", "precision", "f1", "auroc", "auprc", "brier",
           "calibration_error")


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the mean |observed rate - mean prediction| over equal-width bins,
    weighted by the bins' share of stays."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(y[which == b].mean() - p[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    y = np.asarray(y).astype(int)
    decision = p >= threshold
    tp, fp = int((decision & (y == 1)).sum()), int((decision & (y == 0)).sum())
    tn, fn = int((~decision & (y == 0)).sum()), int((~decision & (y == 1)).sum())
    ratio = lambda a, b: a / b if b else float("nan")  # noqa: E731
    precision, sensitivity = ratio(tp, tp + fp), ratio(tp, tp + fn)
    both_classes = len(np.unique(y)) == 2
    return {
        "accuracy": ratio(tp + tn, len(y)),
        "specificity": ratio(tn, tn + fp),
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": ratio(2 * precision * sensitivity, precision + sensitivity) if tp else 0.0,
        "auroc": float(roc_auc_score(y, p)) if both_classes else float("nan"),
        "auprc": float(average_precision_score(y, p)) if both_classes else float("nan"),
        "brier": float(np.mean((p - y) ** 2)),
        "calibration_error": calibration_error(y, p),
    }


def bootstrap_metrics(y: np.ndarray, p: np.ndarray, threshold: float, resamples: int = 1000,
                      seed: int = 0, label: str = "bootstrap") -> dict[str, dict[str, float]]:
    """Each metric with its 95% bootstrap interval: {name: {value, low, high}}. A progress bar named
    `label` shows while the resamples run (about a second per 100 on a few thousand stays)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    point = point_metrics(y, p, threshold)
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in tqdm(range(resamples), desc=label, unit="resample", leave=False, mininterval=1.0):
        i = rng.integers(0, len(y), len(y))
        for m, v in point_metrics(y[i], p[i], threshold).items():
            draws[m].append(v)
    out = {}
    for m in METRICS:
        values = np.array(draws[m], dtype=float)
        values = values[~np.isnan(values)]
        low, high = (np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan))
        out[m] = {"value": point[m], "low": float(low), "high": float(high)}
    return out
