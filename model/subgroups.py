"""The fusion model on subgroups of the held-out test stays: sex, age band, race, insurance, first care unit
and admission type (the static features the model reads). A subgroup with fewer than MIN_PER_CLASS events or
non-events shows its counts and no metric: an AUROC or a sensitivity on a handful of events says nothing.
Calibration per subgroup is observed/expected (the events over the sum of predicted risks; 1 is ideal) with
its bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .metrics import auroc, bootstrap, threshold_metrics  # noqa: E402

MIN_PER_CLASS = 10
AGE_BANDS = ((18, 50), (50, 65), (65, 80), (80, 200))
# subgroup variable -> the static feature it comes from
VARIABLES = {
    "sex": "female",
    "age": "age",
    "race": "race",
    "insurance": "insurance",
    "first care unit": "first_careunit",
    "admission type": "admission_type",
}


@dataclass(frozen=True)
class Subgroup:
    variable: str
    level: str
    stays: int
    events: int
    metrics: dict | None = None  # bootstrapped auroc, sensitivity, specificity (at the model's threshold), o/e
    observed: float | None = None  # outcome rate
    predicted: float | None = None  # mean predicted risk

    @property
    def name(self) -> str:
        return f"{self.variable}: {self.level}"


def groups(static: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    """(variable, level) -> boolean mask over the rows of `static`, for every variable present."""
    out = {}
    for variable, column in VARIABLES.items():
        if column not in static:
            continue
        values = static[column]
        if variable == "sex":
            out[(variable, "female")] = values.to_numpy() == 1
            out[(variable, "male")] = values.to_numpy() == 0
        elif variable == "age":
            age = values.to_numpy(dtype=float)
            for low, high in AGE_BANDS:
                out[(variable, f"{low}-{high - 1}" if high < 200 else f"{low}+")] = (age >= low) & (age < high)
        else:
            for level in sorted(values.dropna().astype(str).unique()):
                out[(variable, level)] = (values.astype(str) == level).to_numpy()
    return out


def subgroups(static: pd.DataFrame, y: np.ndarray, p: np.ndarray, threshold: float, resamples: int) -> list[Subgroup]:
    """Each subgroup of the test stays (`static` row-aligned with y and p)."""

    def measure(y_: np.ndarray, p_: np.ndarray) -> dict[str, float]:
        m = threshold_metrics(y_, p_, threshold)
        return {
            "auroc": auroc(y_, p_),
            "sensitivity": m["sensitivity"],
            "specificity": m["specificity"],
            "observed_expected": float(y_.sum() / p_.sum()) if p_.sum() > 0 else float("nan"),
        }

    out = []
    for (variable, level), mask in groups(static).items():
        stays, events = int(mask.sum()), int(y[mask].sum())
        if events < MIN_PER_CLASS or stays - events < MIN_PER_CLASS:
            out.append(Subgroup(variable, level, stays, events))
            continue
        metrics = bootstrap(y[mask], p[mask], measure, resamples, label=f"subgroup {variable}: {level}")
        out.append(Subgroup(variable, level, stays, events, metrics, float(y[mask].mean()), float(p[mask].mean())))
    return out


def plot(subgroups_: list[Subgroup], overall: dict, path: Path) -> Path:
    """A forest plot: AUROC and observed/expected per scored subgroup with their intervals, the whole test
    set's as dotted lines."""
    scored = [s for s in subgroups_ if s.metrics is not None][::-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.32 * max(len(scored), 1) + 1.6), sharey=True)
    rows = np.arange(len(scored))
    for ax, metric, title in ((axes[0], "auroc", "AUROC"), (axes[1], "observed_expected", "observed / expected")):
        values = np.array([s.metrics[metric]["value"] for s in scored])
        low = np.array([s.metrics[metric]["low"] for s in scored])
        high = np.array([s.metrics[metric]["high"] for s in scored])
        ax.errorbar(values, rows, xerr=[values - low, high - values], fmt="o", color="tab:blue", capsize=2)
        ax.axvline(overall[metric], color="k", ls=":", lw=0.8)
        ax.set(xlabel=title)
    axes[0].set_yticks(rows, [f"{s.name} ({s.events}/{s.stays})" for s in scored], fontsize=8)
    axes[1].axvline(1.0, color="tab:red", lw=0.8)
    fig.suptitle(f"Subgroups of the test set with >= {MIN_PER_CLASS} events and non-events (events/stays)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
