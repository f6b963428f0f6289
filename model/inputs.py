"""The model's input contract: what it reads (FeatureLayout), the arrays it reads it as (FeatureArrays),
and a training set (those arrays with the cohort's labels).

The model package takes these and nothing else: it knows no feature store. The feature store side
(pipelines/features/) derives a layout from Feast's feature service and fills the arrays from Feast's
offline or online answers, through `arrays_from_columns`, so every path assembles them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .errors import InputError

OUTCOMES = ("died_in_hospital", "died_in_icu", "died_within_horizon")


@dataclass(frozen=True)
class FeatureLayout:
    service: str
    static_view: str
    static: tuple[str, ...]  # static feature names, in the view's order
    categorical: tuple[str, ...]  # the static features of string type
    window_views: tuple[str, ...]  # oldest window first; the last is the latest
    windows: tuple[str, ...]  # feature names of each window
    note_views: tuple[str, ...]  # oldest first, aligned with window_views

    @property
    def numeric_static(self) -> tuple[str, ...]:
        return tuple(f for f in self.static if f not in self.categorical)

    @property
    def sequence_windows(self) -> int:
        return len(self.window_views)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureLayout:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def differences(self, other: FeatureLayout) -> list[str]:
        """What differs from another layout, in words (empty when they match)."""
        out = []
        for name in ("static", "windows"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                gone = [f for f in mine if f not in theirs]
                new = [f for f in theirs if f not in mine]
                out.append(
                    f"{name} features: {len(gone)} missing {gone[:5]}, {len(new)} extra {new[:5]}"
                    if gone or new
                    else f"{name} features in another order"
                )
        for name in ("window_views", "note_views", "static_view", "categorical"):
            if getattr(self, name) != getattr(other, name):
                out.append(f"{name}: {getattr(self, name)} vs {getattr(other, name)}")
        return out


@dataclass
class FeatureArrays:
    """The model's inputs for n (stay, time) rows. Missing numbers are NaN; the masks say which windows
    and notes exist (a window exists when the stay had begun by its end)."""

    layout: FeatureLayout
    stay_id: np.ndarray  # (n,) int64
    as_of: np.ndarray  # (n,) datetime64[us]: the time the features are served for
    static_numeric: np.ndarray  # (n, len(layout.numeric_static)) float64
    static_categorical: np.ndarray  # (n, len(layout.categorical)) object: str or None
    windows: np.ndarray  # (n, K, F) float32, oldest window first
    window_mask: np.ndarray  # (n, K) bool
    notes: np.ndarray  # (n, K, D) float32, zeros where no note
    note_mask: np.ndarray  # (n, K) bool

    def __len__(self) -> int:
        return len(self.stay_id)

    @property
    def static(self) -> pd.DataFrame:
        """The static features as a frame, in the view's column order (categoricals as strings)."""
        frame = pd.DataFrame(self.static_numeric, columns=list(self.layout.numeric_static))
        categorical = pd.DataFrame(self.static_categorical, columns=list(self.layout.categorical), dtype=object)
        return pd.concat([frame, categorical], axis=1)[list(self.layout.static)]


def arrays_from_columns(
    layout: FeatureLayout,
    numbers: Callable[[str, list[str]], np.ndarray],
    objects: Callable[[str, str], Sequence],
    stay_id: np.ndarray,
    as_of: np.ndarray,
) -> FeatureArrays:
    """Assemble FeatureArrays from a view's columns: `numbers(view, features)` gives an (n, len(features))
    float array with NaN where missing, `objects(view, feature)` a column of strings or vectors."""
    n, k = len(stay_id), layout.sequence_windows
    # NaN and +/-inf both mean "missing" from here on (dbt nulls them already; this guards other sources)
    static_numeric = _finite(np.asarray(numbers(layout.static_view, list(layout.numeric_static)), dtype=np.float64))
    static_categorical = np.empty((n, len(layout.categorical)), dtype=object)
    for j, f in enumerate(layout.categorical):
        static_categorical[:, j] = [v if isinstance(v, str) else None for v in objects(layout.static_view, f)]
    windows = (
        _finite(
            np.stack([numbers(view, list(layout.windows)) for view in layout.window_views], axis=1).astype(np.float32)
        )
        if n
        else np.zeros((0, k, len(layout.windows)), np.float32)
    )
    # _count is never NULL in a served row (0 when the feature is missing): its presence marks the row
    counts = [i for i, f in enumerate(layout.windows) if f.endswith("_count")] or list(range(len(layout.windows)))
    window_mask = ~np.isnan(windows[:, :, counts]).all(axis=2)
    vectors = [[_vector(v) for v in objects(view, "embedding")] for view in layout.note_views]
    dim = next((len(v) for per_view in vectors for v in per_view if v is not None), 0)
    notes = np.zeros((n, k, dim), dtype=np.float32)
    note_mask = np.zeros((n, k), dtype=bool)
    for j, per_view in enumerate(vectors):
        has_note = numbers(layout.note_views[j], ["has_note"])[:, 0]
        for i, v in enumerate(per_view):
            if v is None or has_note[i] != 1:
                continue
            if len(v) != dim:
                raise InputError(
                    f"note embedding of stay {stay_id[i]} has {len(v)} values, others {dim}: the "
                    "note windows were embedded by different models; re-run `sepsis-fusion embed`"
                )
            notes[i, j] = v
            note_mask[i, j] = True
    return FeatureArrays(
        layout,
        np.asarray(stay_id, dtype=np.int64),
        np.asarray(as_of, dtype="datetime64[us]"),
        static_numeric,
        static_categorical,
        windows,
        window_mask,
        notes,
        note_mask,
    )


def _vector(value) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    v = np.asarray(value, dtype=np.float32)
    return v if v.size and np.isfinite(v).all() else None


def _finite(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), x, np.nan).astype(x.dtype)


@dataclass
class TrainingSet:
    features: FeatureArrays
    cohort: pd.DataFrame  # the cohort mart, row-aligned with features (stay_id, subject_id, labels, ...)
    flow: pd.DataFrame | None = None  # the cohort_flow mart: stays removed by each cohort criterion

    def labels(self, outcome: str = "died_in_hospital") -> np.ndarray:
        if outcome not in OUTCOMES:
            raise InputError(f"unknown outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
        return self.cohort[outcome].to_numpy(dtype=np.int64)
