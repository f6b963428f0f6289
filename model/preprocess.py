"""The study's preprocessing, fitted on training rows only and stored with the model.

Static baseline: features missing in more than `max_missing` (20%) of the training stays are dropped
(the paper drops patients with more than 20% missing instead; here no stay is dropped: docs/PAPER.md);
categoricals are one-hot encoded (categories seen in training; mode imputation), continuous variables
mean-imputed, clipped at mean +- `clip_sigma` standard deviations, then
Min-Max scaled when bounded (binary, or integer-valued with few levels: flags and scores) and z-scored
otherwise. Missing-value flags join the candidates where a kept feature is missing often enough to carry
signal. Every candidate is ranked by a weighted mix of mutual information and absolute correlation with the
outcome (each scaled to [0, 1]); going down the ranking, a candidate is kept unless its absolute Pearson
correlation with one already kept exceeds `max_correlation` (redundant), until `select_k` are kept.

Lab and vital sequence: each step becomes one vector: per panel feature its value (log1p first for a
feature whose training values are non-negative and right-skewed, skewness > `log_skew`, decided on the
training rows and stored with the model; then clipped and
z-scored with training statistics over the present steps; 0, the training mean, when none is known), a
known flag, an observed flag (charted within the step's stride) and the time since it was charted
(log1p hours, scaled by the sequence's span); then the step's age at the time served (hours / span), so
the BiLSTM sees when each step was, not only its order. Notes: each note's embedding plus its age
(log1p hours / log1p of a week). No statistic is ever computed from rows passed to `transform`.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as settings
from scipy.stats import skew
from sklearn.feature_selection import mutual_info_classif

from .inputs import FeatureArrays


@settings(config=ConfigDict(extra="forbid"))
class PreprocessConfig:
    max_missing: float = 0.2  # drop static features missing in more than this share of training stays
    clip_sigma: float = 3.0
    select_k: int = 25
    mi_weight: float = 0.5
    max_correlation: float = 0.9  # a candidate this correlated with a kept one is redundant
    missing_flag_min_rate: float = 0.05
    bounded_max_levels: int = 30
    log_skew: float = 1.0  # a non-negative sequence feature more skewed than this is log1p-transformed
    seed: int = 0


NOTE_AGE_SCALE_HOURS = 168.0  # a week: older notes all read as "old"


@dataclass
class ModelInputs:
    static: np.ndarray  # (n, selected) float32
    sequence: np.ndarray  # (n, S, 4F + 1) float32: per step value, known, observed, since; then the step's age
    sequence_mask: np.ndarray  # (n, S) bool
    notes: np.ndarray  # (n, N, D + 1) float32: each note's embedding and age (D = 0: no notes, no age)
    note_mask: np.ndarray  # (n, N) bool

    def __len__(self) -> int:
        return len(self.static)

    def subset(self, index) -> ModelInputs:
        return ModelInputs(
            self.static[index],
            self.sequence[index],
            self.sequence_mask[index],
            self.notes[index],
            self.note_mask[index],
        )


@dataclass
class Preprocessor:
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    numeric: list[str] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    lows: list[float] = field(default_factory=list)
    highs: list[float] = field(default_factory=list)
    bounded: list[bool] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # static features missing too often in training
    redundant: list[str] = field(default_factory=list)  # ranked above the cut but too correlated with a kept one
    candidates: list[str] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    sequence_log: list[bool] = field(default_factory=list)  # sequence features read as log1p(value)
    sequence_means: list[float] = field(default_factory=list)
    sequence_stds: list[float] = field(default_factory=list)

    def missing_rates(self, features: FeatureArrays) -> dict[str, float]:
        """Share of stays missing each static feature."""
        lo = features.layout
        rates = dict(zip(lo.numeric_static, np.isnan(features.static_numeric).mean(axis=0).tolist()))
        rates.update(zip(lo.categorical, (features.static_categorical == None).mean(axis=0).tolist()))  # noqa: E711
        return {f: float(rates[f]) for f in lo.static} if len(features) else {f: 0.0 for f in lo.static}

    def fit(self, features: FeatureArrays, labels: np.ndarray) -> Preprocessor:
        c, layout = self.config, features.layout
        self.numeric = list(layout.numeric_static)
        x = features.static_numeric.astype(np.float64)
        self.means = np.nan_to_num(np.nanmean(x, axis=0)).tolist()
        self.stds = np.nan_to_num(np.nanstd(x, axis=0)).tolist()
        clipped = self._clip(np.where(np.isnan(x), np.array(self.means), x))
        self.lows, self.highs = clipped.min(axis=0).tolist(), clipped.max(axis=0).tolist()
        self.bounded = [self._is_bounded(col[~np.isnan(col)]) for col in x.T]  # from observed values
        rates = self.missing_rates(features)
        self.dropped = [f for f in layout.static if rates[f] > c.max_missing]
        self.flagged = [f for f in self.numeric if c.missing_flag_min_rate <= rates[f] and f not in self.dropped]
        self.categories, self.modes = {}, {}
        for j, f in enumerate(layout.categorical):
            values = [v for v in features.static_categorical[:, j] if v is not None]
            levels, counts = np.unique(values, return_counts=True) if values else (np.array(["unknown"]), np.array([1]))
            self.categories[f] = sorted(levels.tolist())
            self.modes[f] = str(levels[np.argmax(counts)])
        matrix, names = self._candidates(features)
        self.candidates = names
        self.scores = self._relevance(matrix, labels)
        self.selected, self.redundant = self._select(matrix, names)
        w = features.sequence.reshape(-1, features.sequence.shape[2])[features.sequence_mask.reshape(-1)].astype(
            np.float64
        )
        self.sequence_log = [self._is_skewed(col[~np.isnan(col)]) for col in w.T]
        w = self._log(w)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a feature never measured in training: mean NaN
            means, stds = np.nanmean(w, axis=0), np.nanstd(w, axis=0)
        self.sequence_means = np.nan_to_num(means).tolist() if len(w) else [0.0] * w.shape[1]
        stds = np.nan_to_num(stds) if len(w) else np.ones(w.shape[1])
        self.sequence_stds = np.where(stds > 0, stds, 1.0).tolist()
        return self

    def _is_skewed(self, values: np.ndarray) -> bool:
        if len(values) < 3 or values.min() < 0 or values.std() == 0:
            return False
        return bool(skew(values) > self.config.log_skew)

    def _log(self, w: np.ndarray) -> np.ndarray:
        flags = np.array(self.sequence_log, dtype=bool)
        if not flags.any():
            return w
        out = w.copy()
        out[..., flags] = np.log1p(np.clip(w[..., flags], 0, None))
        return out

    def sequence_inputs(self, features: FeatureArrays) -> tuple[np.ndarray, np.ndarray]:
        """The step vectors (n, S, 4F + 1) and the note vectors (n, N, D + 1) of these rows."""
        mask = features.sequence_mask
        span = max(features.layout.stride_hours * features.layout.sequence_steps, 1)
        mean, std = np.array(self.sequence_means), np.array(self.sequence_stds)
        w = self._log(features.sequence.astype(np.float64))
        known = ~np.isnan(w)
        w = np.clip(w, mean - self.config.clip_sigma * std, mean + self.config.clip_sigma * std)
        z = np.nan_to_num((w - mean) / std, nan=0.0)
        since = features.sequence_hours_since.astype(np.float64)
        observed = since < features.layout.stride_hours  # NaN compares False
        since = np.nan_to_num(np.log1p(np.clip(since, 0, None)) / np.log1p(span), nan=0.0)
        age = (features.step_age.astype(np.float64) / span)[:, :, None]
        steps = np.concatenate([z, known, observed, since, age], axis=2)
        steps[~mask] = 0.0
        if features.notes.shape[2] == 0:
            notes = features.notes.astype(np.float32)
        else:
            note_age = np.log1p(np.clip(np.nan_to_num(features.note_age.astype(np.float64)), 0, None))
            notes = np.concatenate(
                [features.notes.astype(np.float64), (note_age / np.log1p(NOTE_AGE_SCALE_HOURS))[:, :, None]], axis=2
            )
            notes[~features.note_mask] = 0.0
        return steps.astype(np.float32), notes.astype(np.float32)

    def transform(self, features: FeatureArrays) -> ModelInputs:
        matrix, names = self._candidates(features)
        index = {n: i for i, n in enumerate(names)}
        static = matrix[:, [index[n] for n in self.selected]].astype(np.float32)
        steps, notes = self.sequence_inputs(features)
        return ModelInputs(static, steps, features.sequence_mask.copy(), notes, features.note_mask.copy())

    def _select(self, matrix: np.ndarray, names: list[str]) -> tuple[list[str], list[str]]:
        """Down the relevance ranking, keep a candidate unless it is redundant with one already kept."""
        ranked = sorted(names, key=lambda n: -self.scores[n])
        column = {n: i for i, n in enumerate(names)}
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.nan_to_num(np.corrcoef(matrix, rowvar=False)) if len(matrix) > 1 else np.zeros((len(names),) * 2)
        corr = np.atleast_2d(corr)
        kept, redundant = [], []
        for n in ranked:
            if len(kept) == self.config.select_k:
                break
            if any(abs(corr[column[n], column[k]]) > self.config.max_correlation for k in kept):
                redundant.append(n)
            else:
                kept.append(n)
        return kept, redundant

    def _clip(self, x: np.ndarray) -> np.ndarray:
        mean, std = np.array(self.means), np.array(self.stds)
        return np.clip(x, mean - self.config.clip_sigma * std, mean + self.config.clip_sigma * std)

    def _is_bounded(self, column: np.ndarray) -> bool:
        levels = np.unique(column)
        return (
            len(levels) == 0
            or len(levels) <= 2
            or (np.allclose(levels, np.round(levels)) and len(levels) <= self.config.bounded_max_levels)
        )

    def _candidates(self, features: FeatureArrays) -> tuple[np.ndarray, list[str]]:
        """Every candidate column, scaled: continuous, one-hot categoricals, missing flags."""
        x = features.static_numeric.astype(np.float64)
        missing = np.isnan(x)
        x = self._clip(np.where(missing, np.array(self.means), x))
        low, high = np.array(self.lows), np.array(self.highs)
        span = np.where(high > low, high - low, 1.0)
        std = np.where(np.array(self.stds) > 0, np.array(self.stds), 1.0)
        scaled = np.where(np.array(self.bounded), (x - low) / span, (x - np.array(self.means)) / std)
        kept = [j for j, f in enumerate(self.numeric) if f not in self.dropped]
        columns, names = [scaled[:, kept]], [self.numeric[j] for j in kept]
        for j, f in enumerate(features.layout.categorical):
            if f in self.dropped:
                continue
            values = [
                v if v in self.categories[f] else self.modes[f]
                for v in (self.modes[f] if v is None else v for v in features.static_categorical[:, j])
            ]
            onehot = np.array([[v == level for level in self.categories[f]] for v in values], dtype=np.float64)
            columns.append(onehot.reshape(len(values), len(self.categories[f])))
            names += [f"{f}={level}" for level in self.categories[f]]
        flag_index = [self.numeric.index(f) for f in self.flagged]
        columns.append(missing[:, flag_index].astype(np.float64))
        names += [f"{f}_missing" for f in self.flagged]
        return np.concatenate(columns, axis=1), names

    def _relevance(self, matrix: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Weighted mix of mutual information and |Pearson correlation| with the label, each scaled to [0, 1]."""
        y = np.asarray(labels, dtype=np.float64)
        mi = mutual_info_classif(matrix, y.astype(int), random_state=self.config.seed)
        centred = matrix - matrix.mean(axis=0)
        denom = np.sqrt((centred**2).sum(axis=0) * ((y - y.mean()) ** 2).sum())
        corr = np.abs(np.divide(centred.T @ (y - y.mean()), denom, out=np.zeros(matrix.shape[1]), where=denom > 0))
        scaled = [v / v.max() if v.max() > 0 else v for v in (mi, corr)]
        score = self.config.mi_weight * scaled[0] + (1 - self.config.mi_weight) * scaled[1]
        return {n: float(s) for n, s in zip(self.candidates, score)}

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> Preprocessor:
        state = dict(state)
        config = PreprocessConfig(**state.pop("config"))
        return cls(config=config, **state)
