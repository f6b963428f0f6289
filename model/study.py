"""`sepsis-fusion train`: the study's protocol on a Feast training set, written to a run folder.

A run is written into a hidden work folder beside the run folder (.<name>.partial) and moved into place
only when complete, so an interrupted run never leaves a half-written run folder nor harms the one already
there; started again with the same data and config, it resumes, keeping every cross-validation fold that had
finished.

The final model is the calibrated ensemble of the chosen setting's cross-validation fold models (see
ensemble.py for why). Run folder: model.safetensors (every fold model's weights), model.json (their fusion
configs, the feature layout, the Feast feature service, the threshold), preprocess.json (each fold model's
fitted preprocessing), calibration.json (the calibration map and how it was chosen), config.yaml (the study
settings as run), cv.json (every setting and fold), predictions.csv (held-out test stays, calibrated and
not), oof_predictions.csv (the training part's out-of-fold predictions), baseline_predictions.csv and
baselines.json (the tuned baselines), experiment_predictions.csv and experiment_thresholds.json (loss
comparison and modality ablation), data.json (a fingerprint of the training data and the split),
versions.json (package versions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from safetensors.torch import load_file, save_file

from .baselines import CLINICAL_SCORES, score_baseline, tuned_baselines
from .calibration import FoldCalibration
from .ensemble import CalibratedCV, Ensemble, calibrated_cv
from .errors import StudyError, TooFewStays
from .explain import Explanation, explain
from .fusion import FusionConfig, FusionModel
from .inputs import OUTCOMES, FeatureArrays, FeatureLayout, TrainingSet
from .preprocess import PreprocessConfig, Preprocessor
from .protocol import (
    SPLITS,
    BaselineSettings,
    Member,
    ModelSettings,
    StudyConfig,
    best_setting,
    cross_validate,
    cv_folds,
    fold_of,
    grid_search,
    of_setting,
    patient_split,
    subset,
    temporal_split,
)
from .train import TrainConfig, auroc

MIN_PER_CLASS = 10


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
        sections = ("preprocess", "model", "train", "baselines")
        config = StudyConfig(
            **{k: v for k, v in raw.items() if k not in sections},
            preprocess=PreprocessConfig(**raw.get("preprocess", {})),
            model=ModelSettings(**model),
            train=TrainConfig(**raw.get("train", {})),
            baselines=BaselineSettings(**raw.get("baselines", {})),
        )
    except TypeError as exc:
        raise StudyError(f"config: {exc}") from None
    if config.split not in SPLITS:
        raise StudyError(f"config: split {config.split!r}: use one of {', '.join(SPLITS)}")
    return config


def fingerprint(ts: TrainingSet) -> str:
    h = hashlib.sha256()
    f = ts.features
    for part in (
        f.stay_id,
        f.static_numeric,
        f.windows,
        f.window_hours_since,
        f.window_mask,
        f.notes,
        f.note_age,
        f.note_mask,
        ts.cohort[[o for o in OUTCOMES if o in ts.cohort]].to_numpy(),
    ):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(json.dumps(f.static_categorical.tolist()).encode())
    return h.hexdigest()


def is_current(run_dir: Path, ts: TrainingSet, config: StudyConfig) -> bool:
    """Whether a complete run folder was trained with this config on exactly this training set."""
    run_dir = Path(run_dir)
    if not all((run_dir / name).exists() for name in ("model.safetensors", "data.json", "config.yaml")):
        return False
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    return json.loads((run_dir / "data.json").read_text()).get("fingerprint") == fingerprint(
        ts
    ) and written == json.loads(json.dumps(dataclasses.asdict(config)))


def check_trainable(y: np.ndarray, config: StudyConfig) -> None:
    counts = np.bincount(y, minlength=2)
    need = MIN_PER_CLASS * config.folds
    if len(y) == 0:
        raise TooFewStays(
            "the cohort is empty: no ICU stay in this data meets the cohort's criteria (the "
            "warehouse's cohort_flow table shows how many stays each criterion removed)"
        )
    if counts.min() < need:
        raise TooFewStays(
            f"{len(y)} cohort stays with {counts[1]} positive and {counts[0]} negative "
            f"({config.outcome}): too few to train ({need} of each class needed for "
            f"{config.folds}-fold cross-validation plus a test set)"
        )


@dataclass
class StudyResult:
    run_dir: Path
    setting: dict
    cv_auroc: float
    threshold: float
    calibration: str
    test_auroc: float


def split(ts: TrainingSet, config: StudyConfig, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training and test parts, as `config.split` says."""
    if config.split == "patient":
        return patient_split(y, groups, config.test_size, config.seed)
    if config.split == "temporal":
        if "anchor_year_group" not in ts.cohort:
            raise StudyError(
                "split: temporal needs the cohort's anchor_year_group column: rebuild with `sepsis-fusion build`"
            )
        try:
            train, test = temporal_split(ts.cohort["anchor_year_group"])
        except ValueError as exc:
            raise StudyError(str(exc)) from None
        for part, rows in (("training", train), ("test", test)):
            if len(np.unique(y[rows])) < 2:
                raise TooFewStays(f"temporal split: the {part} part ({len(rows)} stays) has one outcome class only")
        return train, test
    raise StudyError(f"split {config.split!r}: use one of {', '.join(SPLITS)}")


def run_study(
    ts: TrainingSet, config: StudyConfig, run_dir: Path, progress: Callable[[str], None] = print
) -> StudyResult:
    y = ts.labels(config.outcome)
    check_trainable(y, config)
    run_dir = Path(run_dir)
    data_fingerprint = fingerprint(ts)
    work = _work_folder(run_dir, data_fingerprint, config, progress)
    groups = ts.cohort["subject_id"].to_numpy()
    train_idx, test_idx = split(ts, config, y, groups)
    progress(
        f"{len(y)} stays ({y.mean():.1%} {config.outcome}): {len(train_idx)} train, {len(test_idx)} test "
        f"({config.split} split), {len(config.settings())} setting(s) x {config.folds} folds"
    )
    if ts.features.notes.shape[2] == 0:
        progress(
            "no note embeddings in the training set (no notes in the data): the model is trained without "
            "its note branch, on static features and the lab and vital sequence"
        )
    features_train, features_test = subset(ts.features, train_idx), subset(ts.features, test_idx)
    y_train, groups_train, y_test = y[train_idx], groups[train_idx], y[test_idx]
    folds = cv_folds(y_train, groups_train, config.folds, config.seed)
    fold = fold_of(folds, len(train_idx))
    checkpoint = work / "folds"
    results = grid_search(config, features_train, y_train, groups_train, folds, progress, checkpoint)
    setting, cv_auroc = best_setting(results)
    final = calibrated_cv(of_setting(results, setting), y_train, fold)
    members_test = final.ensemble.predict_members(features_test)
    p_test, p_test_raw = final.ensemble.calibrate(members_test), members_test.mean(axis=0)
    test_auroc = auroc(y_test, p_test)
    progress(
        f"best setting {setting or '(defaults)'}: mean CV AUROC {cv_auroc:.3f}; final model: the ensemble of "
        f"its {len(folds)} fold models, calibration {final.ensemble.calibration.method} (cross-validated Brier "
        + ", ".join(f"{m} {b:.4f}" for m, b in final.ensemble.calibration.cv_brier.items())
        + f"), threshold {final.threshold:.3f} (Youden on calibrated out-of-fold predictions)"
    )
    save_run(work, final.ensemble, ts.features.layout, config, final.threshold, setting)
    (work / "cv.json").write_text(
        json.dumps(
            {
                "best_setting": setting,
                "cv_auroc": cv_auroc,
                "folds": [
                    {
                        "setting": r.setting,
                        "fold": r.fold,
                        "auroc": r.auroc,
                        "best_epoch": r.best_epoch + 1,
                        "train_loss": r.history.train_loss,
                        "val_loss": r.history.val_loss,
                        "val_auroc": r.history.val_auroc,
                    }
                    for r in results
                ],
            },
            indent=2,
            default=list,
        )
    )
    pd.DataFrame(
        {
            "stay_id": ts.features.stay_id[test_idx],
            "subject_id": groups[test_idx],
            "outcome": y_test,
            "probability": p_test,
            "probability_uncalibrated": p_test_raw,
        }
    ).to_csv(work / "predictions.csv", index=False)
    pd.DataFrame(
        {
            "stay_id": ts.features.stay_id[train_idx],
            "subject_id": groups_train,
            "outcome": y_train,
            "fold": fold,
            "oof_probability": final.oof,
            "oof_probability_uncalibrated": final.oof_uncalibrated,
        }
    ).to_csv(work / "oof_predictions.csv", index=False)
    baselines = tuned_baselines(config, features_train, y_train, folds, features_test, progress)
    for name, column in CLINICAL_SCORES.items():
        if column in ts.cohort:  # a cohort built before OASIS was added has SOFA only
            score = ts.cohort[column].to_numpy(dtype=float)
            baselines.append(score_baseline(name, score[train_idx], y_train, score[test_idx]))
    pd.DataFrame({"stay_id": ts.features.stay_id[test_idx], **{b.name: b.test for b in baselines}}).to_csv(
        work / "baseline_predictions.csv", index=False
    )
    (work / "baselines.json").write_text(json.dumps({b.name: b.summary() for b in baselines}, indent=2))
    if config.experiments:
        variants, thresholds = experiments(
            config,
            features_train,
            y_train,
            groups_train,
            folds,
            features_test,
            setting,
            final,
            p_test,
            checkpoint,
            progress,
        )
        variants.insert(0, "stay_id", ts.features.stay_id[test_idx])
        variants.to_csv(work / "experiment_predictions.csv", index=False)
        (work / "experiment_thresholds.json").write_text(json.dumps(thresholds, indent=2))
    (work / "data.json").write_text(
        json.dumps(
            {
                "fingerprint": data_fingerprint,
                "stays": len(y),
                "train": len(train_idx),
                "test": len(test_idx),
                "split": config.split,
                "outcome": config.outcome,
                "prevalence": float(y.mean()),
                "prevalence_train": float(y_train.mean()),
                "prevalence_test": float(y_test.mean()),
            },
            indent=2,
        )
    )
    _publish(work, run_dir)
    progress(f"test AUROC {test_auroc:.3f} ({len(test_idx)} stays); run folder {run_dir}")
    return StudyResult(run_dir, setting, cv_auroc, final.threshold, final.ensemble.calibration.method, test_auroc)


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


ABLATIONS = (
    ("static",),
    ("windows",),
    ("notes",),
    ("static", "windows"),
    ("static", "notes"),
    ("windows", "notes"),
    ("static", "windows", "notes"),
)


def experiments(
    config: StudyConfig,
    features: FeatureArrays,
    y: np.ndarray,
    groups: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    test: FeatureArrays,
    setting: dict,
    final: CalibratedCV,
    p_test: np.ndarray,
    checkpoint: Path,
    progress: Callable[[str], None],
) -> tuple[pd.DataFrame, dict]:
    """Test-set probabilities and thresholds of the study's comparisons, each trained exactly like the final
    model (the chosen setting on the same folds, a calibrated ensemble of the fold models): the loss
    comparison (class-weighted BCE, i.e. gamma = 0 with alpha = the negative share, against focal loss) and
    the modality ablation (each modality, each pair; the final model is the one with all of them)."""
    fold = fold_of(folds, len(y))
    has_notes = features.notes.shape[2] > 0
    full = "+".join(m for m in config.configs(setting, (1, 1, int(has_notes)))[0].modalities)
    variants = {"bce": {"focal_gamma": 0.0, "focal_alpha": float(1 - y.mean())}}
    variants.update(
        {"+".join(m): {"modalities": m} for m in ABLATIONS if (has_notes or "notes" not in m) and "+".join(m) != full}
    )
    out, thresholds = {"focal": p_test, full: p_test}, {"focal": final.threshold, full: final.threshold}
    for name, overrides in variants.items():
        results = cross_validate(
            config, {**setting, **overrides}, features, y, groups, folds, f"comparison {name}", progress, checkpoint
        )
        variant = calibrated_cv(results, y, fold)
        out[name], thresholds[name] = variant.ensemble.predict(test), variant.threshold
    return pd.DataFrame(out), thresholds


def save_run(
    run_dir: Path, ensemble: Ensemble, layout: FeatureLayout, config: StudyConfig, threshold: float, setting: dict
) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            f"member{k}.{name}": v.contiguous()
            for k, m in enumerate(ensemble.members)
            for name, v in m.model.state_dict().items()
        },
        run_dir / "model.safetensors",
    )
    (run_dir / "model.json").write_text(
        json.dumps(
            {
                "members": [m.model.config.to_dict() for m in ensemble.members],
                "layout": layout.to_dict(),
                "feature_service": layout.service,
                "threshold": threshold,
                "setting": setting,
                "outcome": config.outcome,
                "calibration": ensemble.calibration.method,
            },
            indent=2,
            default=list,
        )
    )
    (run_dir / "preprocess.json").write_text(
        json.dumps({"members": [m.preprocessor.state() for m in ensemble.members]}, indent=1)
    )
    (run_dir / "calibration.json").write_text(json.dumps(ensemble.calibration.to_dict(), indent=1))
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(json.loads(json.dumps(dataclasses.asdict(config))), sort_keys=False)
    )
    packages = [
        "torch",
        "feast",
        "duckdb",
        "dbt-core",
        "dbt-duckdb",
        "transformers",
        "scikit-learn",
        "numpy",
        "pandas",
        "sepsis-fusion",
    ]
    (run_dir / "versions.json").write_text(
        json.dumps({"python": platform.python_version(), **{p: _version(p) for p in packages}}, indent=2)
    )


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@dataclass
class TrainedModel:
    ensemble: Ensemble
    layout: FeatureLayout
    threshold: float
    outcome: str

    def _check(self, features: FeatureArrays) -> None:
        differences = self.layout.differences(features.layout)
        if differences:
            raise StudyError("the model was trained on other features than these: " + "; ".join(differences))

    def predict(self, features: FeatureArrays) -> np.ndarray:
        """Calibrated probabilities: the mean of the fold models' calibrated probabilities."""
        self._check(features)
        return self.ensemble.predict(features)

    def predict_uncalibrated(self, features: FeatureArrays) -> np.ndarray:
        self._check(features)
        return self.ensemble.predict_uncalibrated(features)

    def explain(self, features: FeatureArrays, progress: Callable[[int], None] | None = None) -> Explanation:
        """Each row's contributions per input (integrated gradients of the fold models; see explain.py)."""
        self._check(features)
        return explain(self.ensemble.members, features, progress=progress)


# What decides a score; model_version (scoring.py) digests them in this order
RUN_FILES = ("model.safetensors", "model.json", "preprocess.json", "calibration.json")


def load_run(run_dir: Path) -> TrainedModel:
    """A run folder's model; a folder that is unfinished, incomplete or damaged is refused with the reason."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StudyError(f"{run_dir} is not a folder: pass a run folder from `sepsis-fusion train`")
    if not (run_dir / "model.json").exists():
        raise StudyError(f"{run_dir} is not a run folder (no model.json): train one with `sepsis-fusion train`")
    if run_dir.name.startswith(".") and run_dir.name.endswith(".partial"):
        raise StudyError(
            f"{run_dir} is an unfinished run (training stopped before it was complete): resume the training"
        )
    missing = [name for name in RUN_FILES if not (run_dir / name).exists()]
    if missing:
        raise StudyError(f"{run_dir} is incomplete: {', '.join(missing)} missing; train it again")
    meta = _run_json(run_dir / "model.json")
    if "members" not in meta:
        raise StudyError(f"{run_dir} was written by an earlier version (one model, uncalibrated): train it again")
    try:
        weights = load_file(run_dir / "model.safetensors")
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise StudyError(f"{run_dir / 'model.safetensors'} cannot be read ({exc}): the run folder is damaged") from None
    states = _run_json(run_dir / "preprocess.json").get("members", [])
    if len(states) != len(meta["members"]):
        raise StudyError(
            f"{run_dir}: model.json has {len(meta['members'])} fold models but preprocess.json {len(states)}: "
            "the run folder is damaged"
        )
    try:
        return _assemble(run_dir, meta, weights, states)
    except StudyError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise StudyError(
            f"{run_dir} is damaged: model.json, preprocess.json or calibration.json lacks or misstates "
            f"{exc!r}; train it again"
        ) from None


def _assemble(run_dir: Path, meta: dict, weights: dict, states: list) -> TrainedModel:
    members = []
    for k, (fusion, state) in enumerate(zip(meta["members"], states)):
        model = FusionModel(FusionConfig.from_dict(fusion))
        prefix = f"member{k}."
        try:
            model.load_state_dict({name[len(prefix) :]: v for name, v in weights.items() if name.startswith(prefix)})
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[:2]
            raise StudyError(
                f"{run_dir / 'model.safetensors'} does not hold fold model {k} as model.json describes it "
                f"({' '.join(first)}): the run folder is damaged"
            ) from None
        model.eval()
        members.append(Member(Preprocessor.from_state(state), model))
    calibration = FoldCalibration.from_dict(_run_json(run_dir / "calibration.json"))
    return TrainedModel(
        Ensemble(members, calibration), FeatureLayout.from_dict(meta["layout"]), meta["threshold"], meta["outcome"]
    )


def _run_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path} is not valid JSON ({exc}): the run folder is damaged") from None
    if not isinstance(value, dict):
        raise StudyError(f"{path} does not hold a JSON object: the run folder is damaged")
    return value
