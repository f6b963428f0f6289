"""The study's protocol: a stratified 80/20 split grouped by patient; on the training part, a grid search
with 5-fold stratified, patient-grouped cross-validation (each fold's preprocessing fitted on its own
training rows); the best setting retrained on the whole training part for the mean best epoch of its
folds; the decision threshold chosen on the out-of-fold predictions (never on the test set)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from sepsis_fusion.pipelines.features.layout import FeatureArrays

from .fusion import FusionConfig, FusionModel
from .preprocess import PreprocessConfig, Preprocessor
from .train import History, TrainConfig, auroc, fit, predict

GRID_KEYS = {"lr", "weight_decay", "focal_alpha", "focal_gamma", "batch_size",           # TrainConfig
             "static_hidden", "window_hidden", "note_hidden", "head_hidden", "dropout"}  # FusionConfig


@dataclass
class ModelSettings:
    static_hidden: tuple[int, int] = (64, 32)
    window_hidden: int = 32
    note_hidden: int = 32
    head_hidden: int = 32
    dropout: float = 0.2
    modalities: tuple[str, ...] = ("static", "windows", "notes")


@dataclass
class StudyConfig:
    outcome: str = "died_in_hospital"
    test_size: float = 0.2
    folds: int = 5
    seed: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: dict[str, list] = field(default_factory=dict)
    experiments: bool = True    # Table 1 (BCE vs focal loss) and the modality ablation on the same split

    def settings(self) -> list[dict]:
        unknown = set(self.grid) - GRID_KEYS
        if unknown:
            raise ValueError(f"unknown grid keys {sorted(unknown)}: use {sorted(GRID_KEYS)}")
        keys = sorted(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))] or [{}]

    def configs(self, setting: dict, dims: tuple[int, int, int]) -> tuple[FusionConfig, TrainConfig]:
        m = {**self.model.__dict__, **{k: v for k, v in setting.items() if hasattr(self.model, k)}}
        fusion = FusionConfig(static_dim=dims[0], window_dim=dims[1], note_dim=dims[2],
                              static_hidden=tuple(m["static_hidden"]), window_hidden=m["window_hidden"],
                              note_hidden=m["note_hidden"], head_hidden=m["head_hidden"], dropout=m["dropout"],
                              use_static="static" in m["modalities"], use_windows="windows" in m["modalities"],
                              # no note embeddings at all (MIMIC-IV without MIMIC-IV-Note): no note branch
                              use_notes="notes" in m["modalities"] and dims[2] > 0)
        train = replace(self.train, **{k: v for k, v in setting.items() if hasattr(self.train, k)})
        return fusion, train


def patient_split(y: np.ndarray, groups: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test parts: stratified by outcome, no patient in both."""
    splitter = StratifiedGroupKFold(n_splits=round(1 / test_size), shuffle=True, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(y)), y, groups))
    return np.sort(train), np.sort(test)


def subset(features: FeatureArrays, index: np.ndarray) -> FeatureArrays:
    return FeatureArrays(features.layout, features.stay_id[index], features.as_of[index],
                         features.static_numeric[index], features.static_categorical[index], features.windows[index],
                         features.window_mask[index], features.notes[index], features.note_mask[index])


@dataclass
class FoldResult:
    setting: dict
    fold: int
    auroc: float
    best_epoch: int
    val_index: np.ndarray
    val_pred: np.ndarray
    history: History


def fit_fold(config: StudyConfig, setting: dict, features: FeatureArrays, y: np.ndarray, train: np.ndarray,
             val: np.ndarray, on_epoch: Callable | None = None) -> tuple[Preprocessor, FusionModel, History, np.ndarray]:
    """Preprocessing fitted on the fold's training rows (after the missing-data rule), then one model."""
    pre = Preprocessor(config.preprocess)
    tr = subset(features, train)
    keep = pre.keep_rows(tr)
    tr, y_tr = subset(tr, np.flatnonzero(keep)), y[train][keep]
    pre.fit(tr, y_tr)
    inputs_tr, inputs_val = pre.transform(tr), pre.transform(subset(features, val))
    fusion, train_config = config.configs(setting, (inputs_tr.static.shape[1], inputs_tr.windows.shape[2],
                                                    inputs_tr.notes.shape[2]))
    model, history = fit(fusion, train_config, inputs_tr, y_tr, inputs_val, y[val], on_epoch)
    return pre, model, history, predict(model, inputs_val)


def grid_search(config: StudyConfig, features: FeatureArrays, y: np.ndarray, groups: np.ndarray,
                progress: Callable[[str], None] | None = None, checkpoint: Path | None = None) -> list[FoldResult]:
    """Every setting on every fold. With `checkpoint`, each finished fold is saved there and a fold already
    saved is read back instead of trained again (the caller keys the folder to the data and config)."""
    splitter = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    folds = list(splitter.split(np.zeros(len(y)), y, groups))
    results = []
    for s, setting in enumerate(config.settings()):
        for f, (train, val) in enumerate(folds):
            saved = _fold_path(checkpoint, setting, f)
            if saved and saved.exists():
                results.append(_read_fold(saved, setting))
                continue
            with tqdm(total=config.train.max_epochs, unit="epoch", leave=False, disable=progress is None,
                      desc=f"setting {s + 1} fold {f + 1}") as bar:
                def on_epoch(epoch: int, loss: float, val_auroc: float) -> None:
                    bar.set_postfix(loss=f"{loss:.4f}", val_auroc=f"{val_auroc:.3f}")
                    bar.update(1)

                _, _, history, pred = fit_fold(config, setting, features, y, train, val, on_epoch)
            results.append(FoldResult(setting, f, auroc(y[val], pred), history.best_epoch, val, pred, history))
            if saved:
                _write_fold(saved, results[-1])
            if progress:
                progress(f"setting {s + 1}/{len(config.settings())} {setting or '(defaults)'} fold {f + 1}/"
                         f"{config.folds}: validation AUROC {results[-1].auroc:.3f} (best epoch {history.best_epoch + 1})")
    return results


def _fold_path(checkpoint: Path | None, setting: dict, fold: int) -> Path | None:
    if checkpoint is None:
        return None
    key = hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]
    return Path(checkpoint) / f"{key}-fold{fold}.json"


def _write_fold(path: Path, r: FoldResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"setting": r.setting, "fold": r.fold, "auroc": r.auroc, "best_epoch": r.best_epoch,
                               "val_index": r.val_index.tolist(), "val_pred": r.val_pred.tolist(),
                               "val_pred_dtype": str(r.val_pred.dtype), "history": asdict(r.history)}))
    os.replace(tmp, path)  # a fold file is whole or absent, even if training is killed while writing it


def _read_fold(path: Path, setting: dict) -> FoldResult:
    d = json.loads(path.read_text())
    return FoldResult(setting, d["fold"], d["auroc"], d["best_epoch"], np.asarray(d["val_index"], dtype=np.int64),
                      np.asarray(d["val_pred"], dtype=d["val_pred_dtype"]), History(**d["history"]))


def best_setting(results: list[FoldResult]) -> tuple[dict, float, int]:
    """The setting with the highest mean fold AUROC, that mean, and its mean best epoch (1-based)."""
    by_setting: dict[str, list[FoldResult]] = {}
    for r in results:
        by_setting.setdefault(repr(sorted(r.setting.items())), []).append(r)
    rows = max(by_setting.values(), key=lambda rs: np.mean([r.auroc for r in rs]))
    return rows[0].setting, float(np.mean([r.auroc for r in rows])), int(round(np.mean([r.best_epoch for r in rows]))) + 1


def out_of_fold(results: list[FoldResult], setting: dict, n: int) -> np.ndarray:
    pred = np.full(n, np.nan)
    for r in results:
        if r.setting == setting:
            pred[r.val_index] = r.val_pred
    return pred


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising sensitivity + specificity - 1 (on validation predictions)."""
    from sklearn.metrics import roc_curve

    ok = ~np.isnan(p)
    fpr, tpr, thresholds = roc_curve(y[ok], p[ok])
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))
