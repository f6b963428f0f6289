"""`sepsis-fusion train`: the study's protocol on a Feast training set, written to a run folder.

A run is written into a hidden work folder beside the run folder and moved into place only when complete
(run_folder.py), so an interrupted run never leaves a half-written run folder nor harms the one already
there; started again with the same data and config, it resumes, keeping every cross-validation fold that had
finished.

The final model is the calibrated ensemble of the chosen setting's cross-validation fold models (see
ensemble.py for why). What the run folder holds: run_folder.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import run_folder
from .baselines import CLINICAL_SCORES, score_baseline, tuned_baselines
from .config import StudyConfig
from .ensemble import CalibratedCV, calibrated_cv
from .errors import StudyError, TooFewStays
from .inputs import OUTCOMES, FeatureArrays, FeatureLayout, TrainingSet
from .predictor import Ensemble
from .protocol import (
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
from .reference import write_reference
from .run_folder import RunFolder, cohort_digest, save_members
from .train import auroc

MIN_PER_CLASS = 10


def fingerprint(ts: TrainingSet) -> str:
    h = hashlib.sha256()
    f = ts.features
    for part in (
        f.stay_id,
        f.static_numeric,
        f.sequence,
        f.sequence_hours_since,
        f.sequence_mask,
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
    folder = RunFolder(run_dir)
    if not folder.trained:
        return False
    return folder.read_json(run_folder.DATA).get("fingerprint") == fingerprint(ts) and folder.read_config() == _plain(
        config
    )


def _plain(config: StudyConfig) -> dict:
    """The config as config.yaml holds it (lists, not tuples)."""
    return json.loads(json.dumps(config.to_dict()))


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


def models_to_train(config: StudyConfig, y: np.ndarray, has_notes: bool) -> str:
    """The grid's size and the experiments', in words: how many fusion models the run trains."""
    grid = len(config.settings()) * config.folds
    text = f"{len(config.settings())} setting(s) x {config.folds} folds = {grid} fusion models for the grid"
    if not config.experiments:
        return text + " (experiments: false)"
    variants = comparison_variants(config, y, has_notes)[1]
    if config.ablation_grid and len(config.settings()) > 1:
        ablations = sum("modalities" in v for v in variants.values())
        more = (len(variants) - ablations + ablations * len(config.settings())) * config.folds
        return text + (f", {len(variants)} comparisons ({ablations} ablation variants tuned on the grid) = {more} more")
    return text + f", {len(variants)} comparisons x {config.folds} folds = {len(variants) * config.folds} more"


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
    raise AssertionError(config.split)  # the config's type admits these two only


def run_study(
    ts: TrainingSet, config: StudyConfig, run_dir: Path, progress: Callable[[str], None] = print
) -> StudyResult:
    y = ts.labels(config.outcome)
    check_trainable(y, config)
    run_dir = Path(run_dir)
    data_fingerprint = fingerprint(ts)
    work = run_folder.start_work(run_dir, {"fingerprint": data_fingerprint, "config": _plain(config)}, progress)
    out = RunFolder(work)
    groups = ts.cohort["subject_id"].to_numpy()
    train_idx, test_idx = split(ts, config, y, groups)
    progress(
        f"{len(y)} stays ({y.mean():.1%} {config.outcome}): {len(train_idx)} train, {len(test_idx)} test "
        f"({config.split} split); " + models_to_train(config, y, has_notes=ts.features.notes.shape[2] > 0)
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
    checkpoint = run_folder.checkpoint_folder(work)
    results = grid_search(config, features_train, y_train, groups_train, folds, progress, checkpoint)
    setting, cv_auroc = best_setting(results)
    final = calibrated_cv(of_setting(results, setting), y_train, fold)
    members_test = final.ensemble.predict_members(features_test)
    p_test, p_test_raw = final.ensemble.calibrate(members_test), members_test.mean(axis=0)
    test_auroc = auroc(y_test, p_test)
    progress(
        f"best setting {setting or '(defaults)'}: mean CV AUROC {cv_auroc:.3f}; final model: the ensemble of "
        f"its {len(folds)} fold models, one calibration map, {final.ensemble.calibration.method} (cross-fitted Brier "
        + ", ".join(f"{m} {b:.4f}" for m, b in final.ensemble.calibration.cv_brier.items())
        + f"), threshold {final.threshold:.3f} (Youden on cross-fitted calibrated out-of-fold predictions)"
    )
    save_run(work, final.ensemble, ts.features.layout, config, final.threshold, setting)
    write_reference(work, features_train, final.oof)  # what monitoring compares served stays with
    out.write_json(
        run_folder.CV,
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
    )
    out.write_csv(
        run_folder.PREDICTIONS,
        pd.DataFrame(
            {
                "stay_id": ts.features.stay_id[test_idx],
                "subject_id": groups[test_idx],
                "outcome": y_test,
                "probability": p_test,
                "probability_uncalibrated": p_test_raw,
            }
        ),
    )
    out.write_csv(
        run_folder.OOF_PREDICTIONS,
        pd.DataFrame(
            {
                "stay_id": ts.features.stay_id[train_idx],
                "subject_id": groups_train,
                "outcome": y_train,
                "fold": fold,
                "oof_probability": final.oof,
                "oof_probability_uncalibrated": final.oof_uncalibrated,
            }
        ),
    )
    baselines = tuned_baselines(config, features_train, y_train, folds, features_test, progress)
    for name, column in CLINICAL_SCORES.items():
        if column in ts.cohort:  # a cohort built before OASIS was added has SOFA only
            score = ts.cohort[column].to_numpy(dtype=float)
            baselines.append(score_baseline(name, score[train_idx], y_train, score[test_idx]))
    out.write_csv(
        run_folder.BASELINE_PREDICTIONS,
        pd.DataFrame({"stay_id": ts.features.stay_id[test_idx], **{b.name: b.test for b in baselines}}),
    )
    out.write_json(run_folder.BASELINES, {b.name: b.summary() for b in baselines})
    if config.experiments:
        variants, thresholds, variant_settings = experiments(
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
        out.write_csv(run_folder.EXPERIMENT_PREDICTIONS, variants)
        out.write_json(run_folder.EXPERIMENT_THRESHOLDS, thresholds)
        out.write_json(run_folder.EXPERIMENT_SETTINGS, variant_settings)
    out.write_json(
        run_folder.DATA,
        {
            "fingerprint": data_fingerprint,
            "cohort_digest": cohort_digest(ts.cohort["stay_id"], ts.cohort["prediction_time"]),
            "stays": len(y),
            "train": len(train_idx),
            "test": len(test_idx),
            "split": config.split,
            "outcome": config.outcome,
            "prevalence": float(y.mean()),
            "prevalence_train": float(y_train.mean()),
            "prevalence_test": float(y_test.mean()),
            "encoder": ts.encoder if ts.features.notes.shape[2] > 0 else None,  # None: no notes, or not recorded
        },
    )
    run_folder.publish(work, run_dir)
    progress(f"test AUROC {test_auroc:.3f} ({len(test_idx)} stays); run folder {run_dir}")
    return StudyResult(run_dir, setting, cv_auroc, final.threshold, final.ensemble.calibration.method, test_auroc)


ABLATIONS = (
    ("static",),
    ("sequence",),
    ("notes",),
    ("static", "sequence"),
    ("static", "notes"),
    ("sequence", "notes"),
    ("static", "sequence", "notes"),
)


def comparison_variants(config: StudyConfig, y: np.ndarray, has_notes: bool) -> tuple[str, dict[str, dict]]:
    """The final model's modalities ('static+sequence+notes') and each comparison's overrides of its setting:
    class-weighted BCE, then every modality subset but the final model's own (none with notes when there are none)."""
    full = "+".join(m for m in config.configs({}, (1, 1, int(has_notes)))[0].modalities)
    variants = {"bce": {"focal_gamma": 0.0, "focal_alpha": float(1 - y.mean())}}
    variants.update(
        {"+".join(m): {"modalities": m} for m in ABLATIONS if (has_notes or "notes" not in m) and "+".join(m) != full}
    )
    return full, variants


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
) -> tuple[pd.DataFrame, dict, dict]:
    """Test-set probabilities, thresholds and settings of the study's comparisons, each trained exactly like
    the final model (on the same folds, a calibrated ensemble of the fold models): the loss comparison
    (class-weighted BCE, i.e. gamma = 0 with alpha = the negative share, against focal loss) and the modality
    ablation (each modality, each pair; the final model is the one with all of them). A variant uses the final
    model's setting, or, with `ablation_grid`, the best setting of its own grid search."""
    fold = fold_of(folds, len(y))
    full, variants = comparison_variants(config, y, has_notes=features.notes.shape[2] > 0)
    out, thresholds = {"focal": p_test, full: p_test}, {"focal": final.threshold, full: final.threshold}
    settings = {"focal": {"setting": setting, "tuned": True}, full: {"setting": setting, "tuned": True}}
    for name, overrides in variants.items():
        tuned = config.ablation_grid and "modalities" in overrides and len(config.settings()) > 1
        if tuned:
            results = grid_search(
                config, features, y, groups, folds, progress, checkpoint, overrides, f"comparison {name}"
            )
            chosen, cv = best_setting(results)
            results = of_setting(results, chosen)
        else:
            results = cross_validate(
                config, {**setting, **overrides}, features, y, groups, folds, f"comparison {name}", progress, checkpoint
            )
            chosen, cv = {**setting, **overrides}, float(np.mean([r.auroc for r in results]))
        variant = calibrated_cv(results, y, fold)
        out[name], thresholds[name] = variant.ensemble.predict(test), variant.threshold
        settings[name] = {"setting": chosen, "tuned": tuned, "cv_auroc": cv}
    return pd.DataFrame(out), thresholds, settings


def save_run(
    work: Path, ensemble: Ensemble, layout: FeatureLayout, config: StudyConfig, threshold: float, setting: dict
) -> None:
    """What decides a score, and the study as configured, into the run's work folder."""
    folder = RunFolder(work)
    folder.path.mkdir(parents=True, exist_ok=True)
    fusion_configs, states = save_members(folder.file(run_folder.WEIGHTS), ensemble.members)
    folder.write_json(
        run_folder.MODEL,
        {
            "format": run_folder.FORMAT,
            "members": fusion_configs,
            "layout": layout.to_dict(),
            "feature_service": layout.service,
            "threshold": threshold,
            "setting": setting,
            "outcome": config.outcome,
            "calibration": ensemble.calibration.method,
        },
    )
    folder.write_json(run_folder.PREPROCESS, {"members": states}, indent=1)
    folder.write_json(run_folder.CALIBRATION, ensemble.calibration.to_dict(), indent=1)
    folder.write_config(config.to_dict())
    folder.write_versions()
