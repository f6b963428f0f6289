"""`sepsis-fusion train`: the study's protocol on a Feast training set, written to a run folder.

A run is written into a hidden work folder beside the run folder (.<name>.partial) and moved into place
only when complete, so an interrupted run never leaves a half-written run folder nor harms the one already
there; started again with the same data and config, it resumes, keeping every cross-validation fold that had
finished.

Run folder: model.safetensors (weights), model.json (fusion config, feature layout, Feast feature service,
threshold), preprocess.json (the fitted preprocessing state), config.yaml (the study settings as run),
cv.json (every setting and fold), predictions.csv (held-out test stays), data.json (a fingerprint of the
training data and the split), versions.json (package versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml
from safetensors.torch import load_file, save_file

from sepsis_fusion.pipelines.features.layout import FeatureArrays, FeatureLayout
from sepsis_fusion.pipelines.features.training import TrainingSet

from .fusion import FusionConfig, FusionModel
from .preprocess import PreprocessConfig, Preprocessor
from .protocol import (ModelSettings, StudyConfig, best_setting, grid_search, out_of_fold,
                       patient_split, subset, youden_threshold)
from .train import History, TrainConfig, auroc, fit, predict

MIN_PER_CLASS = 10


class StudyError(ValueError):
    """The data cannot support the study as configured; the message says why."""


class TooFewStays(StudyError):
    """The cohort is empty, or has too few stays of one outcome class, to train and test a model."""


def load_config(path: Path | None, overrides: list[str] = ()) -> StudyConfig:
    """A StudyConfig from YAML plus `section.key=value` overrides (values parsed as YAML)."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
    raw = raw or {}
    for item in overrides:
        if "=" not in item:
            raise StudyError(f"override {item!r}: use section.key=value, e.g. train.lr=0.001")
        key, value = item.split("=", 1)
        *sections, leaf = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    if set(raw) - known:
        raise StudyError(f"unknown config keys {sorted(set(raw) - known)}: use {sorted(known)}")
    try:
        model = raw.get("model", {})
        if "modalities" in model:
            model = {**model, "modalities": tuple(model["modalities"])}
        if "static_hidden" in model:
            model = {**model, "static_hidden": tuple(model["static_hidden"])}
        return StudyConfig(**{k: v for k, v in raw.items() if k not in ("preprocess", "model", "train")},
                           preprocess=PreprocessConfig(**raw.get("preprocess", {})),
                           model=ModelSettings(**model), train=TrainConfig(**raw.get("train", {})))
    except TypeError as exc:
        raise StudyError(f"config: {exc}") from None


def fingerprint(ts: TrainingSet) -> str:
    h = hashlib.sha256()
    f = ts.features
    for part in (f.stay_id, f.static_numeric, f.windows, f.window_mask, f.notes, f.note_mask,
                 ts.cohort[["died_in_hospital", "died_in_icu", "died_within_horizon"]].to_numpy()):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(json.dumps(f.static_categorical.tolist()).encode())
    return h.hexdigest()


def is_current(run_dir: Path, ts: TrainingSet, config: StudyConfig) -> bool:
    """Whether a complete run folder was trained with this config on exactly this training set."""
    run_dir = Path(run_dir)
    if not all((run_dir / name).exists() for name in ("model.safetensors", "data.json", "config.yaml")):
        return False
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    return (json.loads((run_dir / "data.json").read_text()).get("fingerprint") == fingerprint(ts)
            and written == json.loads(json.dumps(dataclasses.asdict(config))))


def check_trainable(y: np.ndarray, config: StudyConfig) -> None:
    counts = np.bincount(y, minlength=2)
    need = MIN_PER_CLASS * config.folds
    if len(y) == 0:
        raise TooFewStays("the cohort is empty: no ICU stay in this data meets the cohort's criteria (the "
                          "warehouse's cohort_flow table shows how many stays each criterion removed)")
    if counts.min() < need:
        raise TooFewStays(f"{len(y)} cohort stays with {counts[1]} positive and {counts[0]} negative "
                          f"({config.outcome}): too few to train ({need} of each class needed for "
                          f"{config.folds}-fold cross-validation plus a test set)")


@dataclass
class StudyResult:
    run_dir: Path
    setting: dict
    cv_auroc: float
    epochs: int
    threshold: float
    test_auroc: float


def run_study(ts: TrainingSet, config: StudyConfig, run_dir: Path,
              progress: Callable[[str], None] = print) -> StudyResult:
    y = ts.labels(config.outcome)
    check_trainable(y, config)
    run_dir = Path(run_dir)
    data_fingerprint = fingerprint(ts)
    work = _work_folder(run_dir, data_fingerprint, config, progress)
    groups = ts.cohort["subject_id"].to_numpy()
    train_idx, test_idx = patient_split(y, groups, config.test_size, config.seed)
    progress(f"{len(y)} stays ({y.mean():.1%} {config.outcome}): {len(train_idx)} train, {len(test_idx)} test, "
             f"{len(config.settings())} setting(s) x {config.folds} folds")
    if ts.features.notes.shape[2] == 0:
        progress("no note embeddings in the training set (no notes in the data): the model is trained without "
                 "its note branch, on static features and windows")
    features_train = subset(ts.features, train_idx)
    results = grid_search(config, features_train, y[train_idx], groups[train_idx], progress, work / "folds")
    setting, cv_auroc, epochs = best_setting(results)
    oof = out_of_fold(results, setting, len(train_idx))
    threshold = youden_threshold(y[train_idx], oof)
    progress(f"best setting {setting or '(defaults)'}: mean CV AUROC {cv_auroc:.3f}; retraining on the whole "
             f"training part for {epochs} epochs; threshold {threshold:.3f} (Youden, out-of-fold)")
    pre, model, history, keep = train_final(features_train, y[train_idx], config, setting, epochs)
    p_test = predict(model, pre.transform(subset(ts.features, test_idx)))
    test_auroc = auroc(y[test_idx], p_test)
    save_run(work, model, pre, ts.features.layout, config, threshold, setting)
    (work / "cv.json").write_text(json.dumps(
        {"best_setting": setting, "cv_auroc": cv_auroc, "epochs": epochs,
         "folds": [{"setting": r.setting, "fold": r.fold, "auroc": r.auroc, "best_epoch": r.best_epoch + 1,
                    "train_loss": r.history.train_loss, "val_loss": r.history.val_loss,
                    "val_auroc": r.history.val_auroc} for r in results],
         "final_training": {"train_loss": history.train_loss, "train_auroc": history.val_auroc},
         "dropped_for_missing": int((~keep).sum())}, indent=2))
    pd.DataFrame({"stay_id": ts.features.stay_id[test_idx], "subject_id": groups[test_idx],
                  "outcome": y[test_idx], "probability": p_test}).to_csv(work / "predictions.csv", index=False)
    pd.DataFrame({"stay_id": ts.features.stay_id[train_idx], "outcome": y[train_idx],
                  "oof_probability": oof}).to_csv(work / "oof_predictions.csv", index=False)
    if config.experiments:
        variants = experiments(ts, config, setting, epochs, train_idx, test_idx, progress)
        variants.insert(0, "stay_id", ts.features.stay_id[test_idx])
        variants.to_csv(work / "experiment_predictions.csv", index=False)
        thresholds = {"focal": threshold, "bce": bce_threshold(ts, config, setting, train_idx, work / "folds")}
        (work / "experiment_thresholds.json").write_text(json.dumps(thresholds, indent=2))
    (work / "data.json").write_text(json.dumps(
        {"fingerprint": data_fingerprint, "stays": len(y), "train": len(train_idx), "test": len(test_idx),
         "outcome": config.outcome, "prevalence": float(y.mean())}, indent=2))
    _publish(work, run_dir)
    progress(f"test AUROC {test_auroc:.3f} ({len(test_idx)} stays); run folder {run_dir}")
    return StudyResult(run_dir, setting, cv_auroc, epochs, threshold, test_auroc)


def partial_folder(run_dir: Path) -> Path:
    """Where a run is written until it is complete (hidden: `latest_run` never picks it)."""
    return run_dir.parent / f".{run_dir.name}.partial"


def _work_folder(run_dir: Path, data_fingerprint: str, config: StudyConfig, progress: Callable[[str], None]) -> Path:
    """The hidden folder a run is written into: the one an interrupted run left, when it was started with
    this data and config (its finished folds are kept), else a new one."""
    work = partial_folder(run_dir)
    key = {"fingerprint": data_fingerprint, "config": json.loads(json.dumps(dataclasses.asdict(config)))}
    try:
        same = json.loads((work / "started.json").read_text()) == key
    except (OSError, ValueError):
        same = False
    if same:
        done = len(list((work / "folds").glob("*.json")))
        progress(f"resuming the interrupted run in {work}: {done} cross-validation fold(s) already done")
        return work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "started.json").write_text(json.dumps(key))
    return work


def _publish(work: Path, run_dir: Path) -> None:
    """Move a complete run into place, replacing an earlier run folder of that name only now."""
    shutil.rmtree(work / "folds", ignore_errors=True)
    (work / "started.json").unlink()
    old = run_dir.parent / f".{run_dir.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if run_dir.exists():
        run_dir.rename(old)
    work.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)


def train_final(features: FeatureArrays, y: np.ndarray, config: StudyConfig, setting: dict, epochs: int,
                **overrides) -> tuple[Preprocessor, FusionModel, History, np.ndarray]:
    """The chosen setting trained on the whole training part (after the missing-data rule) for `epochs`
    epochs. `overrides` replace model or training settings (modalities, focal_alpha, focal_gamma, ...)."""
    pre = Preprocessor(config.preprocess)
    keep = pre.keep_rows(features)
    train = subset(features, np.flatnonzero(keep))
    pre.fit(train, y[keep])
    inputs = pre.transform(train)
    fusion, train_config = config.configs({**setting, **overrides}, (inputs.static.shape[1], inputs.windows.shape[2],
                                                                      inputs.notes.shape[2]))
    train_config = dataclasses.replace(train_config, max_epochs=epochs)
    model, history = fit(fusion, train_config, inputs, y[keep], inputs, y[keep], early_stopping=False)
    return pre, model, history, keep


ABLATIONS = (("static",), ("windows",), ("notes",), ("static", "windows"), ("static", "notes"),
             ("windows", "notes"), ("static", "windows", "notes"))


def experiments(ts: TrainingSet, config: StudyConfig, setting: dict, epochs: int, train_idx: np.ndarray,
                test_idx: np.ndarray, progress: Callable[[str], None]) -> pd.DataFrame:
    """Test-set probabilities of the study's comparisons, each trained like the final model on the same
    split: Table 1 (class-weighted BCE, i.e. gamma = 0 with alpha = the negative share, against focal loss)
    and the modality ablation (each modality, each pair, all three)."""
    y = ts.labels(config.outcome)
    features_train, features_test = subset(ts.features, train_idx), subset(ts.features, test_idx)
    variants = {"bce": {"focal_gamma": 0.0, "focal_alpha": float(1 - y[train_idx].mean())}, "focal": {}}
    has_notes = ts.features.notes.shape[2] > 0
    variants.update({"+".join(m): {"modalities": m} for m in ABLATIONS if has_notes or "notes" not in m})
    out = {}
    for name, overrides in variants.items():
        pre, model, _, _ = train_final(features_train, y[train_idx], config, setting, epochs, **overrides)
        out[name] = predict(model, pre.transform(features_test))
        progress(f"comparison {name}: test AUROC {auroc(y[test_idx], out[name]):.3f}")
    return pd.DataFrame(out)


def bce_threshold(ts: TrainingSet, config: StudyConfig, setting: dict, train_idx: np.ndarray,
                  checkpoint: Path | None = None) -> float:
    """Table 1's BCE model gets its own threshold the way the final model does: Youden on out-of-fold
    predictions of the same cross-validation folds."""
    y = ts.labels(config.outcome)[train_idx]
    bce = {**setting, "focal_gamma": 0.0, "focal_alpha": float(1 - y.mean())}
    cv = dataclasses.replace(config, grid={k: [v] for k, v in bce.items()})
    results = grid_search(cv, subset(ts.features, train_idx), y, ts.cohort["subject_id"].to_numpy()[train_idx],
                          checkpoint=checkpoint)
    return youden_threshold(y, out_of_fold(results, results[0].setting, len(train_idx)))


def save_run(run_dir: Path, model: FusionModel, pre: Preprocessor, layout: FeatureLayout, config: StudyConfig,
             threshold: float, setting: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run_dir / "model.safetensors")
    (run_dir / "model.json").write_text(json.dumps(
        {"fusion": model.config.to_dict(), "layout": layout.to_dict(), "feature_service": layout.service,
         "threshold": threshold, "setting": setting, "outcome": config.outcome}, indent=2))
    (run_dir / "preprocess.json").write_text(json.dumps(pre.state(), indent=1))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(dataclasses.asdict(config))),
                                                        sort_keys=False))
    packages = ["torch", "feast", "duckdb", "dbt-core", "dbt-duckdb", "transformers", "scikit-learn", "numpy",
                "pandas", "sepsis-fusion"]
    (run_dir / "versions.json").write_text(json.dumps(
        {"python": platform.python_version(), **{p: _version(p) for p in packages}}, indent=2))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class TrainedModel:
    model: FusionModel
    preprocessor: Preprocessor
    layout: FeatureLayout
    threshold: float
    outcome: str

    def predict(self, features: FeatureArrays) -> np.ndarray:
        differences = self.layout.differences(features.layout)
        if differences:
            raise StudyError("the model was trained on other features than these: " + "; ".join(differences))
        return predict(self.model, self.preprocessor.transform(features))


def load_run(run_dir: Path) -> TrainedModel:
    run_dir = Path(run_dir)
    if not (run_dir / "model.json").exists():
        raise StudyError(f"{run_dir} is not a run folder (no model.json): train one with `sepsis-fusion train`")
    meta = json.loads((run_dir / "model.json").read_text())
    model = FusionModel(FusionConfig.from_dict(meta["fusion"]))
    model.load_state_dict(load_file(run_dir / "model.safetensors"))
    model.eval()
    pre = Preprocessor.from_state(json.loads((run_dir / "preprocess.json").read_text()))
    return TrainedModel(model, pre, FeatureLayout.from_dict(meta["layout"]), meta["threshold"], meta["outcome"])
