"""The study's protocol, the parts shared by every model it trains.

- A split of the cohort into a training part and a held-out test part: stratified 80/20 grouped by
  patient, or temporal (the latest anchor_year_group held out).
- Cross-validation on the training part: stratified folds grouped by patient, the same folds for every
  setting, every comparison and every baseline (`cv_folds`).
- One fusion model per fold (`fit_member`): preprocessing fitted on the fold's own training rows, early
  stopping on an inner validation split of those rows (grouped by patient, with a floor on its stays and
  events), never on the fold's held-out rows, so a fold's out-of-fold predictions are scored on an epoch
  chosen without them.
- A grid search over settings by mean fold AUROC; the chosen setting's fold models are the final model
  (an ensemble, see ensemble.py), calibrated by one map on their pooled out-of-fold predictions and
  thresholded on out-of-fold predictions its map did not see (calibration.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from .config import StudyConfig
from .errors import StudyError
from .inputs import FeatureArrays
from .predictor import Member
from .preprocess import Preprocessor
from .run_folder import load_members, save_members, write_atomically
from .train import History, auroc, fit


def patient_split(y: np.ndarray, groups: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test parts: stratified by outcome, no patient in both; the test part
    is one of floor(1 / test_size) stratified groups of patients, so at least `test_size` of them (1/6 for
    0.15)."""
    splitter = StratifiedGroupKFold(n_splits=max(2, int(1 / test_size + 1e-9)), shuffle=True, random_state=seed)
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


def validation_share(config: StudyConfig, y: np.ndarray) -> float:
    """The inner validation split's share of a fold's training rows: `validation_size`, raised until the
    split holds `min_validation_stays` stays and `min_validation_events` events (an AUROC on a few dozen
    stays stops training at a chance epoch), at most one half."""
    need = max(
        config.validation_size,
        config.min_validation_stays / max(len(y), 1),
        config.min_validation_events / max(int(np.sum(y)), 1),
    )
    return float(min(need, 0.5))


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
    inner_train, inner_val = patient_split(y, groups, validation_share(config, y), config.seed)
    tr, va = subset(features, inner_train), subset(features, inner_val)
    pre = Preprocessor(config.preprocess).fit(tr, y[inner_train])
    inputs_tr, inputs_va = pre.transform(tr), pre.transform(va)
    fusion, train_config = config.configs(
        setting, (inputs_tr.static.shape[1], inputs_tr.sequence.shape[2], inputs_tr.notes.shape[2])
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
    overrides: dict | None = None,
    name: str = "",
) -> list[FoldResult]:
    """Every setting of the grid on every fold; with `overrides` (a comparison's), each setting with them,
    its progress lines prefixed by `name`."""
    settings = config.settings()
    results = []
    for s, setting in enumerate(settings):
        label = f"setting {s + 1}/{len(settings)} {setting or '(defaults)'}"
        results += cross_validate(
            config,
            {**setting, **(overrides or {})},
            features,
            y,
            groups,
            folds,
            f"{name}, {label}" if name else label,
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
    (fusion,), (preprocess,) = save_members(path.with_suffix(".safetensors"), [r.member])
    write_atomically(
        path,
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
                "fusion": fusion,
                "preprocess": preprocess,
            },
            default=list,
        ),
    )


def _read_fold(path: Path, setting: dict) -> FoldResult:
    d = json.loads(path.read_text())
    ((preprocessor, model),) = load_members(path.with_suffix(".safetensors"), [d["fusion"]], [d["preprocess"]])
    return FoldResult(
        setting,
        d["fold"],
        d["auroc"],
        d["best_epoch"],
        np.asarray(d["val_index"], dtype=np.int64),
        np.asarray(d["val_pred"], dtype=d["val_pred_dtype"]),
        History(**d["history"]),
        Member(preprocessor, model),
    )
