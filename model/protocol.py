"""The study's protocol, the parts shared by every model it trains.

- A split of the cohort into a training part and a held-out test part: stratified 80/20 grouped by
  patient, or temporal (the latest anchor_year_group held out).
- Cross-validation on the training part: stratified folds grouped by patient, the same folds for every
  setting, every comparison and every baseline (`cv_folds`).
- One fusion model per fold (`fit_member`): preprocessing fitted on the fold's own training rows, early
  stopping on an inner validation split of those rows (grouped by patient), never on the fold's held-out
  rows, so a fold's out-of-fold predictions are scored on an epoch chosen without them.
- A grid search over settings by mean fold AUROC; the chosen setting's fold models are the final model
  (an ensemble, see ensemble.py), calibrated and thresholded on their own out-of-fold predictions.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from .errors import StudyError
from .fusion import FusionConfig, FusionModel
from .inputs import OUTCOMES, FeatureArrays
from .preprocess import PreprocessConfig, Preprocessor
from .train import History, TrainConfig, auroc, fit, predict

GRID_KEYS = {
    "lr",
    "weight_decay",
    "focal_alpha",
    "focal_gamma",
    "batch_size",  # TrainConfig
    "static_hidden",
    "window_hidden",
    "note_hidden",
    "head_hidden",
    "dropout",
    "window_steps",
}  # FusionConfig
SPLITS = ("patient", "temporal")


@dataclass
class ModelSettings:
    static_hidden: tuple[int, int] = (64, 32)
    window_hidden: int = 32
    note_hidden: int = 32
    head_hidden: int = 32
    dropout: float = 0.2
    window_steps: int = 0  # read only the last this many steps of the sequence; 0: all of them
    modalities: tuple[str, ...] = ("static", "windows", "notes")


@dataclass
class BaselineSettings:
    """The baselines' hyperparameter grids, tuned by the same cross-validation as the fusion model."""

    logistic_c: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    boosting_depth: list[int] = field(default_factory=lambda: [3, 6])
    boosting_learning_rate: list[float] = field(default_factory=lambda: [0.03, 0.1])
    boosting_iterations: list[int] = field(default_factory=lambda: [100, 300])


@dataclass
class StudyConfig:
    outcome: str = OUTCOMES[0]  # death within 28 days after T (docs/COHORT.md)
    split: str = "patient"  # "patient": stratified 80/20 by patient; "temporal": latest anchor_year_group held out
    test_size: float = 0.2
    folds: int = 5
    validation_size: float = 0.15  # of each fold's training rows, for early stopping only
    seed: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: dict[str, list] = field(default_factory=dict)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    experiments: bool = True  # the loss comparison (BCE vs focal) and the modality ablation, same folds

    def settings(self) -> list[dict]:
        unknown = set(self.grid) - GRID_KEYS
        if unknown:
            raise StudyError(f"unknown grid keys {sorted(unknown)}: use {sorted(GRID_KEYS)}")
        keys = sorted(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))] or [{}]

    def configs(self, setting: dict, dims: tuple[int, int, int]) -> tuple[FusionConfig, TrainConfig]:
        m = {**self.model.__dict__, **{k: v for k, v in setting.items() if hasattr(self.model, k)}}
        fusion = FusionConfig(
            static_dim=dims[0],
            window_dim=dims[1],
            note_dim=dims[2],
            static_hidden=tuple(m["static_hidden"]),
            window_hidden=m["window_hidden"],
            note_hidden=m["note_hidden"],
            head_hidden=m["head_hidden"],
            dropout=m["dropout"],
            window_steps=m["window_steps"],
            use_static="static" in m["modalities"],
            use_windows="windows" in m["modalities"],
            # no note embeddings at all (MIMIC-IV without MIMIC-IV-Note): no note branch
            use_notes="notes" in m["modalities"] and dims[2] > 0,
        )
        train = replace(self.train, **{k: v for k, v in setting.items() if hasattr(self.train, k)})
        return fusion, train


def patient_split(y: np.ndarray, groups: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test parts: stratified by outcome, no patient in both."""
    splitter = StratifiedGroupKFold(n_splits=round(1 / test_size), shuffle=True, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(y)), y, groups))
    return np.sort(train), np.sort(test)


def temporal_split(year_group: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Train on the earlier anchor_year_groups, test on the latest (MIMIC-IV shifts each patient's dates but
    keeps the real years' group, e.g. '2017 - 2019')."""
    start = year_group.map(
        lambda g: int(re.match(r"\s*(\d{4})", str(g)).group(1)) if re.match(r"\s*\d{4}", str(g)) else None
    )
    if start.isna().any():
        bad = year_group[start.isna()].iloc[0]
        raise StudyError(f"temporal split: anchor_year_group {bad!r} does not start with a year (e.g. '2017 - 2019')")
    if start.nunique() < 2:
        raise StudyError(
            f"temporal split: every cohort stay is in anchor_year_group {year_group.iloc[0]!r}; "
            "a temporal split needs at least two groups"
        )
    latest = start == start.max()
    return np.flatnonzero(~latest.to_numpy()), np.flatnonzero(latest.to_numpy())


def cv_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cross-validation folds of the training part, shared by every model of a study."""
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def fold_of(folds: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Each training row's fold (the fold in which it is held out)."""
    which = np.full(n, -1)
    for k, (_, val) in enumerate(folds):
        which[val] = k
    return which


def subset(features: FeatureArrays, index: np.ndarray) -> FeatureArrays:
    return features.take(index)


@dataclass
class Member:
    """One fitted model: its preprocessing and its network."""

    preprocessor: Preprocessor
    model: FusionModel

    def predict(self, features: FeatureArrays) -> np.ndarray:
        return predict(self.model, self.preprocessor.transform(features))


@dataclass
class FoldResult:
    setting: dict
    fold: int
    auroc: float
    best_epoch: int
    val_index: np.ndarray
    val_pred: np.ndarray
    history: History
    member: Member


def fit_member(
    config: StudyConfig,
    setting: dict,
    features: FeatureArrays,
    y: np.ndarray,
    groups: np.ndarray,
    on_epoch: Callable | None = None,
) -> tuple[Member, History]:
    """A model on these rows: an inner validation split (grouped by patient) for early stopping, the
    preprocessing fitted on the rest, the network trained on the rest."""
    inner_train, inner_val = patient_split(y, groups, config.validation_size, config.seed)
    tr, va = subset(features, inner_train), subset(features, inner_val)
    pre = Preprocessor(config.preprocess).fit(tr, y[inner_train])
    inputs_tr, inputs_va = pre.transform(tr), pre.transform(va)
    fusion, train_config = config.configs(
        setting, (inputs_tr.static.shape[1], inputs_tr.windows.shape[2], inputs_tr.notes.shape[2])
    )
    model, history = fit(fusion, train_config, inputs_tr, y[inner_train], inputs_va, y[inner_val], on_epoch)
    return Member(pre, model), history


def cross_validate(
    config: StudyConfig,
    setting: dict,
    features: FeatureArrays,
    y: np.ndarray,
    groups: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    name: str,
    progress: Callable[[str], None] | None = None,
    checkpoint: Path | None = None,
) -> list[FoldResult]:
    """One setting on every fold. With `checkpoint`, each finished fold (its predictions and its model) is
    saved there, and a fold already saved is read back instead of trained again (the caller keys the
    folder to the data and config)."""
    results = []
    for f, (train, val) in enumerate(folds):
        saved = _fold_path(checkpoint, setting, f)
        if saved and saved.exists():
            results.append(_read_fold(saved, setting))
            continue
        with tqdm(
            total=config.train.max_epochs,
            unit="epoch",
            leave=False,
            disable=progress is None,
            desc=f"{name} fold {f + 1}",
        ) as bar:

            def on_epoch(epoch: int, loss: float, val_auroc: float) -> None:
                bar.set_postfix(loss=f"{loss:.4f}", val_auroc=f"{val_auroc:.3f}")
                bar.update(1)

            member, history = fit_member(config, setting, subset(features, train), y[train], groups[train], on_epoch)
        pred = member.predict(subset(features, val))
        results.append(FoldResult(setting, f, auroc(y[val], pred), history.best_epoch, val, pred, history, member))
        if saved:
            _write_fold(saved, results[-1])
        if progress:
            progress(
                f"{name} fold {f + 1}/{len(folds)}: validation AUROC {results[-1].auroc:.3f} (early-stopped at "
                f"epoch {history.best_epoch + 1} on the fold's inner validation split)"
            )
    return results


def grid_search(
    config: StudyConfig,
    features: FeatureArrays,
    y: np.ndarray,
    groups: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    progress: Callable[[str], None] | None = None,
    checkpoint: Path | None = None,
) -> list[FoldResult]:
    """Every setting of the grid on every fold."""
    settings = config.settings()
    results = []
    for s, setting in enumerate(settings):
        results += cross_validate(
            config,
            setting,
            features,
            y,
            groups,
            folds,
            f"setting {s + 1}/{len(settings)} {setting or '(defaults)'}",
            progress,
            checkpoint,
        )
    return results


def best_setting(results: list[FoldResult]) -> tuple[dict, float]:
    """The setting with the highest mean fold AUROC, and that mean."""
    by_setting: dict[str, list[FoldResult]] = {}
    for r in results:
        by_setting.setdefault(_key(r.setting), []).append(r)
    rows = max(by_setting.values(), key=lambda rs: np.mean([r.auroc for r in rs]))
    return rows[0].setting, float(np.mean([r.auroc for r in rows]))


def of_setting(results: list[FoldResult], setting: dict) -> list[FoldResult]:
    return sorted((r for r in results if _key(r.setting) == _key(setting)), key=lambda r: r.fold)


def out_of_fold(results: list[FoldResult], n: int) -> np.ndarray:
    """Every training row's prediction by the fold model that did not see it (one setting's results)."""
    pred = np.full(n, np.nan)
    for r in results:
        pred[r.val_index] = r.val_pred
    return pred


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (on out-of-fold predictions)."""
    ok = ~np.isnan(p)
    fpr, tpr, thresholds = roc_curve(y[ok], p[ok])
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def _key(setting: dict) -> str:
    return json.dumps(setting, sort_keys=True, default=list)


def _fold_path(checkpoint: Path | None, setting: dict, fold: int) -> Path | None:
    if checkpoint is None:
        return None
    key = hashlib.sha256(_key(setting).encode()).hexdigest()[:16]
    return Path(checkpoint) / f"{key}-fold{fold}.json"


def _write_fold(path: Path, r: FoldResult) -> None:
    """The fold's weights first, then its JSON (moved into place whole): a fold is saved when its JSON exists,
    even if training is killed while writing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in r.member.model.state_dict().items()}, path.with_suffix(".safetensors"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "setting": r.setting,
                "fold": r.fold,
                "auroc": r.auroc,
                "best_epoch": r.best_epoch,
                "val_index": r.val_index.tolist(),
                "val_pred": r.val_pred.tolist(),
                "val_pred_dtype": str(r.val_pred.dtype),
                "history": asdict(r.history),
                "fusion": r.member.model.config.to_dict(),
                "preprocess": r.member.preprocessor.state(),
            },
            default=list,
        )
    )
    os.replace(tmp, path)


def _read_fold(path: Path, setting: dict) -> FoldResult:
    d = json.loads(path.read_text())
    model = FusionModel(FusionConfig.from_dict(d["fusion"]))
    model.load_state_dict(load_file(path.with_suffix(".safetensors")))
    model.eval()
    member = Member(Preprocessor.from_state(d["preprocess"]), model)
    return FoldResult(
        setting,
        d["fold"],
        d["auroc"],
        d["best_epoch"],
        np.asarray(d["val_index"], dtype=np.int64),
        np.asarray(d["val_pred"], dtype=d["val_pred_dtype"]),
        History(**d["history"]),
        member,
    )
