"""The model's input contract: what it reads (FeatureLayout), the arrays it reads it as (FeatureArrays),
and a training set (those arrays with the cohort's labels).

The model package takes these and nothing else: it knows no feature store. The feature store side
(pipelines/features/) derives a layout from Feast's feature service and fills the arrays from Feast's
offline or online answers, through `arrays_from_columns`, so every path assembles them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from .errors import InputError

# The cohort's labels, the primary first (docs/COHORT.md): death within the horizon (28 days) after T; death in
# the hospital admission; the same as the first counting a discharge to hospice as death; death in the ICU.
OUTCOMES = ("died_within_horizon", "died_in_hospital", "died_or_hospice_within_horizon", "died_in_icu")
OUTCOME_NAMES = {
    "died_within_horizon": "death within {days} days after T",
    "died_in_hospital": "in-hospital death",
    "died_or_hospice_within_horizon": "death or discharge to hospice within {days} days after T",
    "died_in_icu": "ICU death",
}


def outcome_name(outcome: str, cohort: pd.DataFrame) -> str:
    """A label in words, with the horizon the cohort was built with (its mortality_horizon_days column)."""
    days = int(cohort["mortality_horizon_days"].iloc[0]) if "mortality_horizon_days" in cohort and len(cohort) else 28
    return OUTCOME_NAMES.get(outcome, outcome.replace("_", " ")).format(days=days)


@dataclass(frozen=True)
class FeatureLayout:
    service: str
    static_view: str
    static: tuple[str, ...]  # static feature names, in the view's order
    categorical: tuple[str, ...]  # the static features of string type
    step_views: tuple[str, ...]  # the lab and vital sequence's step views, oldest step first
    panel: tuple[str, ...]  # panel features of each step: columns <feature>_value, <feature>_hours_since
    stride_hours: int  # hours between steps
    note_views: tuple[str, ...]  # the note-sequence slots, in slot order

    @property
    def numeric_static(self) -> tuple[str, ...]:
        return tuple(f for f in self.static if f not in self.categorical)

    @property
    def sequence_steps(self) -> int:
        return len(self.step_views)

    @property
    def step_columns(self) -> tuple[str, ...]:
        """The columns of a step view the model reads, in order."""
        return (
            "history_hours",
            *(f"{f}_value" for f in self.panel),
            *(f"{f}_hours_since" for f in self.panel),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureLayout:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def differences(self, other: FeatureLayout) -> list[str]:
        """What differs from another layout, in words (empty when they match)."""
        out = []
        for name in ("static", "panel"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                gone = [f for f in mine if f not in theirs]
                new = [f for f in theirs if f not in mine]
                out.append(
                    f"{name} features: {len(gone)} missing {gone[:5]}, {len(new)} extra {new[:5]}"
                    if gone or new
                    else f"{name} features in another order"
                )
        for name in ("step_views", "note_views", "static_view", "categorical", "stride_hours"):
            if getattr(self, name) != getattr(other, name):
                out.append(f"{name}: {getattr(self, name)} vs {getattr(other, name)}")
        return out


@dataclass
class FeatureArrays:
    """The model's inputs for n (stay, time) rows: the static baseline, the lab and vital sequence of S
    steps (oldest first) and the last N notes (oldest first). Missing numbers are NaN; the masks say which
    steps exist (the stay is being served and its record had begun by the step) and which note slots hold
    a note."""

    layout: FeatureLayout
    stay_id: np.ndarray  # (n,) int64
    as_of: np.ndarray  # (n,) datetime64[us]: the time the features are served for
    static_numeric: np.ndarray  # (n, len(layout.numeric_static)) float64
    static_categorical: np.ndarray  # (n, len(layout.categorical)) object: str or None
    sequence: np.ndarray  # (n, S, F) float32: each feature's value known at the step
    sequence_hours_since: np.ndarray  # (n, S, F) float32: hours from that value's charttime to the step
    step_age: np.ndarray  # (n, S) float32: hours from the step to as_of
    sequence_mask: np.ndarray  # (n, S) bool
    notes: np.ndarray  # (n, N, D) float32, zeros where no note
    note_age: np.ndarray  # (n, N) float32: hours from the note's charttime to as_of (NaN: no note)
    note_mask: np.ndarray  # (n, N) bool

    def __len__(self) -> int:
        return len(self.stay_id)

    def take(self, index) -> FeatureArrays:
        """The rows at `index` (an index array, a boolean mask or a slice)."""
        return FeatureArrays(self.layout, *(getattr(self, f.name)[index] for f in fields(self) if f.name != "layout"))

    @classmethod
    def concat(cls, parts: Sequence[FeatureArrays]) -> FeatureArrays:
        """The rows of several FeatureArrays of one layout, in order. A part without any note has embeddings
        of width 0 (the width comes from the notes served); it is widened with zeros to the others'."""
        dims = {p.notes.shape[2] for p in parts if p.notes.shape[2]}
        if len(dims) > 1:
            raise InputError(
                f"note embeddings of {sorted(dims)} values in one request: the notes were embedded by "
                "different models; re-run `sepsis-fusion embed`"
            )
        if len(parts) == 1:
            return parts[0]
        dim = dims.pop() if dims else 0
        columns = {}
        for f in fields(cls):
            if f.name == "layout":
                continue
            if f.name == "notes":
                pieces = [
                    p.notes if p.notes.shape[2] == dim else np.zeros((*p.notes.shape[:2], dim), np.float32)
                    for p in parts
                ]
            else:
                pieces = [getattr(p, f.name) for p in parts]
            columns[f.name] = np.concatenate(pieces, axis=0)
        return cls(parts[0].layout, **columns)

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
    n, s, f = len(stay_id), layout.sequence_steps, len(layout.panel)
    as_of = np.asarray(as_of, dtype="datetime64[us]")
    # NaN and +/-inf both mean "missing" from here on (dbt nulls them already; this guards other sources)
    static_numeric = _finite(np.asarray(numbers(layout.static_view, list(layout.numeric_static)), dtype=np.float64))
    static_categorical = np.empty((n, len(layout.categorical)), dtype=object)
    for j, name in enumerate(layout.categorical):
        static_categorical[:, j] = [v if isinstance(v, str) else None for v in objects(layout.static_view, name)]

    steps = (
        _finite(np.stack([numbers(view, list(layout.step_columns)) for view in layout.step_views], axis=1))
        if n
        else np.full((0, s, 1 + 2 * f), np.nan)
    )
    history = steps[:, :, 0]
    # a step exists when its row was served (history_hours is never NULL in a row) and the stay's record
    # had begun by then; none does when the latest step is not served (the stay is not in the ICU)
    sequence_mask = (history >= 0) & ~np.isnan(steps[:, -1:, 0])
    sequence = np.where(sequence_mask[:, :, None], steps[:, :, 1 : 1 + f], np.nan).astype(np.float32)
    hours_since = np.where(sequence_mask[:, :, None], steps[:, :, 1 + f :], np.nan).astype(np.float32)
    # the latest step is the last whole hour at or before as_of
    into_hour = (as_of - as_of.astype("datetime64[h]")).astype("timedelta64[us]").astype(np.float64) / 3.6e9
    step_age = (into_hour[:, None] + layout.stride_hours * np.arange(s - 1, -1, -1)[None, :]).astype(np.float32)

    notes, note_age, note_mask = _note_sequence(layout, numbers, objects, stay_id, as_of)
    return FeatureArrays(
        layout,
        np.asarray(stay_id, dtype=np.int64),
        as_of,
        static_numeric,
        static_categorical,
        sequence,
        hours_since,
        step_age,
        sequence_mask,
        notes,
        note_age,
        note_mask,
    )


def _note_sequence(layout, numbers, objects, stay_id, as_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The notes of the N slots, ordered oldest first (empty slots before them), with their ages."""
    n, slots = len(stay_id), len(layout.note_views)
    vectors = [[as_vector(v) for v in objects(view, "embedding")] for view in layout.note_views]
    dim = next((len(v) for per_view in vectors for v in per_view if v is not None), 0)
    notes = np.zeros((n, slots, dim), dtype=np.float32)
    age = np.full((n, slots), np.nan, dtype=np.float64)
    as_of_s = as_of.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    for j, per_view in enumerate(vectors):
        charted = numbers(layout.note_views[j], ["charttime_unix_s"])[:, 0]
        for i, v in enumerate(per_view):
            if v is None or np.isnan(charted[i]):
                continue
            if len(v) != dim:
                raise InputError(
                    f"note embedding of stay {stay_id[i]} has {len(v)} values, others {dim}: the "
                    "notes were embedded by different models; re-run `sepsis-fusion embed`"
                )
            notes[i, j] = v
            age[i, j] = (as_of_s[i] - charted[i]) / 3600
    # oldest first, empty slots (age NaN) at the front: sort by -age with NaN as +inf
    order = np.argsort(np.where(np.isnan(age), -np.inf, -age), axis=1, kind="stable")
    notes = np.take_along_axis(notes, order[:, :, None], axis=1)
    age = np.take_along_axis(age, order, axis=1)
    return notes, age.astype(np.float32), ~np.isnan(age)


def as_vector(value) -> np.ndarray | None:
    """A served embedding as a float32 vector; None for a missing, empty or non-finite one."""
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
    excluded: pd.DataFrame | None = None  # the cohort_excluded mart: first Sepsis-3 stays not in the cohort
    encoder: dict | None = None  # the encoder that embedded the notes (model, dim, ...); None without notes

    def labels(self, outcome: str = OUTCOMES[0]) -> np.ndarray:
        if outcome not in OUTCOMES:
            raise InputError(f"unknown outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
        return self.cohort[outcome].to_numpy(dtype=np.int64)
