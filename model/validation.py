"""`sepsis-fusion validate`: a trained run scored on another data folder (another site, another period), and
its calibration refitted there.

External validation scores every outcome-known cohort stay of the new data at its prediction time with the
run's model as it is (weights, preprocessing, calibration map, threshold), and reports discrimination,
calibration (smoothed curve, slope, calibration-in-the-large), decision curves and subgroups, with bootstrap
intervals, in its own folder: the run folder is never written.

Recalibration keeps every fold model's weights and standardisation and refits only the shared calibration
map on the new stays (each member's standardised probabilities pooled, as training fits it). The map that
is evaluated must not have seen the stays it is evaluated on, so the new stays are split into patient
folds and each fold is calibrated by a map fitted on the others (cross-fitted); the map written into the
new run version is then fitted on every stay. The threshold is re-chosen the way training chose it: the
Youden point of the cross-fitted calibrated predictions. The new version records its parent.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from . import run_folder as files  # noqa: E402
from . import subgroups as by_subgroup  # noqa: E402
from .baselines import CLINICAL_SCORES  # noqa: E402
from .calibration import (  # noqa: E402
    METHODS,
    EnsembleCalibration,
    calibration_curve,
    fit_calibrator,
    smoothed_calibration,
)
from .errors import StudyError  # noqa: E402
from .evaluate import BAND_RESAMPLES, DECISION_THRESHOLDS, _templates  # noqa: E402
from .inputs import TrainingSet, outcome_name  # noqa: E402
from .metrics import auroc, bootstrap, net_benefit, test_metrics, treat_all_net_benefit  # noqa: E402
from .predictor import Predictor  # noqa: E402
from .protocol import cv_folds, fold_of, youden_threshold  # noqa: E402
from .report_html import write_html_report  # noqa: E402
from .run_folder import RunFolder, cohort_digest  # noqa: E402

ORIGINAL = "as trained"
RECALIBRATED = "recalibrated (cross-fitted)"
VALIDATION = "validation.json"
PREDICTIONS = "validation_predictions.csv"
PLOTS = {
    "calibration": "validation_calibration.png",
    "roc": "validation_roc.png",
    "decision": "validation_decision.png",
}
RECALIBRATION_FOLDS = 5
# What a run version written by recalibration copies from its parent besides what decides a score: the study
# as it was run; its parent's test predictions and evaluation belong to the parent's data and are not copied
COPIED = (files.WEIGHTS, files.PREPROCESS, files.CONFIG, files.CV, files.VERSIONS, files.BASELINES)


@dataclass
class Recalibration:
    calibration: EnsembleCalibration  # fitted on every stay of the new data
    crossfitted: np.ndarray  # each stay calibrated by a map fitted on the other folds
    threshold: float  # Youden point of the cross-fitted predictions
    folds: int


@dataclass
class Validation:
    """What `validate` found; `to_json` is validation.json."""

    run: str
    version: str
    data: str
    outcome: str
    stays: int
    events: int
    prevalence: float
    prevalence_trained: float
    resamples: int
    models: dict[str, dict]  # ORIGINAL (and RECALIBRATED): metrics with intervals
    thresholds: dict[str, float]
    clinical_scores: dict[str, dict] = field(default_factory=dict)  # AUROC of SOFA/OASIS on the same stays
    subgroups: list = field(default_factory=list)
    recalibrated_run: str | None = None
    recalibration_method: str | None = None
    plots: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "subgroups"}
        out["subgroups"] = [
            {"variable": s.variable, "level": s.level, "stays": s.stays, "events": s.events, "metrics": s.metrics}
            for s in self.subgroups
        ]
        return out


def recalibrate(
    calibration: EnsembleCalibration,
    members: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    methods: tuple[str, ...] = METHODS,
) -> Recalibration:
    """A new shared map for an ensemble's members on new stays (`members`: (members, stays) raw probabilities),
    the method with the lowest cross-fitted Brier score; the members' standardisation is kept."""
    y = np.asarray(y).astype(int)
    common = np.stack([calibration.standardise(k, p) for k, p in enumerate(members)])  # (members, stays)
    n_members = len(common)

    def fit(method: str, rows: np.ndarray):
        return fit_calibrator(method, common[:, rows].ravel(), np.tile(y[rows], n_members))

    crossfitted, brier = {}, {}
    for method in methods:
        out = np.empty(len(y))
        for k in np.unique(fold):
            mapping = fit(method, fold != k)
            out[fold == k] = np.mean([mapping(c[fold == k]) for c in common], axis=0)
        crossfitted[method], brier[method] = out, float(np.mean((out - y) ** 2))
    chosen = min(brier, key=brier.get)
    every = np.ones(len(y), dtype=bool)
    fitted = EnsembleCalibration(
        chosen, [fit(chosen, every)], list(calibration.centres), list(calibration.scales), brier
    )
    p = crossfitted[chosen]
    return Recalibration(fitted, p, youden_threshold(y, p), len(np.unique(fold)))


def check_layout(predictor: Predictor, ts: TrainingSet, data: Path) -> None:
    """Refuse data whose features are not the ones the run was trained on, naming the difference."""
    differences = predictor.layout.differences(ts.features.layout)
    trained = predictor.folder.read_json(files.DATA) if predictor.folder.has(files.DATA) else {}
    encoders = ((trained.get("encoder") or {}).get("model"), (ts.encoder or {}).get("model"))
    if ts.features.notes.shape[2] > 0 and None not in encoders and encoders[0] != encoders[1]:
        # the same layout, other vectors: the note branch would read embeddings of another encoder's space
        differences.append(f"notes embedded by {encoders[1]}, the run's by {encoders[0]} (run `embed` with it)")
    if differences:
        raise StudyError(
            f"the run {predictor.run_dir} was trained on other features than the data folder {data} serves, so it "
            "cannot be validated there: " + "; ".join(differences)
        )


def validate(
    ts: TrainingSet,
    run_dir: Path,
    out: Path,
    data: Path,
    resamples: int = 1000,
    recalibrate_to: Path | None = None,
    folds: int = RECALIBRATION_FOLDS,
    seed: int = 0,
) -> Validation:
    """Validate the run at `run_dir` on the training set `ts` of the data folder `data`; the report into
    `out`. With `recalibrate_to`, also write a recalibrated version of the run there."""
    predictor = Predictor(run_dir)
    check_layout(predictor, ts, data)
    y = ts.labels(predictor.outcome)
    if y.sum() < by_subgroup.MIN_PER_CLASS or (len(y) - y.sum()) < by_subgroup.MIN_PER_CLASS:
        raise StudyError(
            f"{data} has {int(y.sum())} {predictor.outcome} events among {len(y)} outcome-known stays: too few "
            f"to validate (at least {by_subgroup.MIN_PER_CLASS} events and non-events)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    members = predictor.ensemble.predict_members(ts.features)
    scores = {ORIGINAL: predictor.ensemble.calibrate(members)}
    thresholds = {ORIGINAL: predictor.threshold}
    recal = None
    if recalibrate_to is not None:
        groups = ts.cohort["subject_id"].to_numpy()
        fold = fold_of(cv_folds(y, groups, folds, seed), len(y))
        recal = recalibrate(predictor.ensemble.calibration, members, y, fold)
        scores[RECALIBRATED], thresholds[RECALIBRATED] = recal.crossfitted, recal.threshold

    models = {
        name: bootstrap(y, p, lambda y_, p_, t=thresholds[name]: test_metrics(y_, p_, t), resamples, label=name)
        for name, p in scores.items()
    }
    clinical = {
        name: bootstrap(y, ts.cohort[column].to_numpy(dtype=float), _auroc, resamples, label=name)["auroc"]
        for name, column in CLINICAL_SCORES.items()
        if column in ts.cohort and ts.cohort[column].notna().all()
    }
    final = RECALIBRATED if recal else ORIGINAL
    static = ts.features.static.assign(stay_id=ts.features.stay_id).set_index("stay_id")
    groups_found = by_subgroup.subgroups(static, y, scores[final], thresholds[final], resamples)
    plots = _plots(out, y, scores)
    if any(s.metrics is not None for s in groups_found):
        overall = {"auroc": auroc(y, scores[final]), "observed_expected": y.sum() / scores[final].sum()}
        plots["subgroups"] = by_subgroup.plot(groups_found, overall, out / "validation_subgroups.png").name
    trained = RunFolder(run_dir).read_json(files.DATA) if RunFolder(run_dir).has(files.DATA) else {}
    result = Validation(
        run=str(Path(run_dir).resolve()),
        version=predictor.version,
        data=str(Path(data).resolve()),
        outcome=predictor.outcome,
        stays=len(y),
        events=int(y.sum()),
        prevalence=float(y.mean()),
        prevalence_trained=float(trained.get("prevalence", float("nan"))),
        resamples=resamples,
        models=models,
        thresholds=thresholds,
        clinical_scores=clinical,
        subgroups=groups_found,
        plots=plots,
    )
    pd.DataFrame(
        {
            "stay_id": ts.features.stay_id,
            "subject_id": ts.cohort["subject_id"].to_numpy(),
            "outcome": y,
            **{f"probability {name}": p for name, p in scores.items()},
        }
    ).to_csv(out / PREDICTIONS, index=False)
    if recal is not None:
        result.recalibrated_run = str(Path(recalibrate_to).resolve())
        result.recalibration_method = recal.calibration.method
        write_recalibrated(run_dir, Path(recalibrate_to), recal, ts, data, result)
    (out / VALIDATION).write_text(json.dumps(result.to_json(), indent=2))
    report = _report(result, ts)
    (out / files.REPORT).write_text(report)
    write_html_report(report, out)
    if recal is not None:  # the new version's own report: its validation on the data it was recalibrated on
        for name in (files.REPORT, files.REPORT_HTML, *plots.values()):
            shutil.copy2(out / name, Path(recalibrate_to) / name)
    return result


def write_recalibrated(
    parent: Path, run_dir: Path, recal: Recalibration, ts: TrainingSet, data: Path, result: Validation
) -> None:
    """A new run version: the parent's weights and preprocessing, the new map and threshold, its parent named."""
    parent = Path(parent)
    if run_dir.resolve() == parent.resolve():
        raise StudyError(f"recalibration writes a new run version; {run_dir} is the run itself: choose another --to")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise StudyError(f"{run_dir} exists and is not empty: choose another --to, or remove it")
    source = RunFolder(parent)
    work = run_dir.with_name(f".{run_dir.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in COPIED:
        if source.has(name):
            shutil.copy2(source.file(name), work / name)
    target = RunFolder(work)
    meta = source.read_json(files.MODEL)
    meta.update(
        threshold=recal.threshold,
        calibration=recal.calibration.method,
        parent={"version": source.version(), "run": str(parent.resolve())},
    )
    target.write_json(files.MODEL, meta)
    target.write_json(files.CALIBRATION, recal.calibration.to_dict(), indent=1)
    trained = source.read_json(files.DATA) if source.has(files.DATA) else {}
    y = ts.labels(meta["outcome"])
    target.write_json(
        files.DATA,
        {
            **trained,
            "cohort_digest": cohort_digest(ts.cohort["stay_id"], ts.cohort["prediction_time"]),
            "recalibrated_on": {
                "data": str(Path(data).resolve()),
                "stays": len(y),
                "prevalence": float(y.mean()),
                "folds": recal.folds,
                "method": recal.calibration.method,
                "cv_brier": recal.calibration.cv_brier,
            },
            "trained_on": {k: trained.get(k) for k in ("fingerprint", "cohort_digest", "stays", "prevalence")},
        },
    )
    target.write_json(files.METRICS, {"models": {"fusion model": result.models[RECALIBRATED]}, "validation": True})
    work.rename(run_dir)


def _auroc(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"auroc": auroc(y, p)}


def _plots(out: Path, y: np.ndarray, scores: dict[str, np.ndarray]) -> dict[str, str]:
    colors = {ORIGINAL: "tab:red", RECALIBRATED: "tab:blue"}
    plots = {}
    top = float(min(1, max(0.1, *(np.quantile(p, 0.99) for p in scores.values())) * 1.1))
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    for name, p in scores.items():
        grid = np.linspace(max(np.quantile(p, 0.01), 1e-3), min(np.quantile(p, 0.99), 1 - 1e-3), 60)
        curve, low, high = smoothed_calibration(y, p, grid, BAND_RESAMPLES)
        ax.fill_between(grid, low, high, color=colors[name], alpha=0.15)
        ax.plot(grid, curve, color=colors[name], lw=2, label=f"{name}: smoothed, 95% band")
        predicted, observed, _ = calibration_curve(y, p, bins=10)
        ax.plot(predicted, observed, "o", color=colors[name], ms=4)
        hist.hist(p, bins=40, range=(0, top), color=colors[name], alpha=0.5)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(ylabel="observed rate", xlim=(0, top), ylim=(0, top), title=f"Calibration on the new data ({len(y)} stays)")
    ax.legend(fontsize=7, loc="upper left")
    hist.set(xlabel="predicted probability", ylabel="stays")
    plots["calibration"] = _save(fig, out, PLOTS["calibration"])
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr, _ = roc_curve(y, scores[ORIGINAL])
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUROC {auroc(y, scores[ORIGINAL]):.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC on the new data")
    ax.legend(loc="lower right", fontsize=8)
    plots["roc"] = _save(fig, out, PLOTS["roc"])
    t = DECISION_THRESHOLDS
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, p in scores.items():
        ax.plot(t, net_benefit(y, p, t), color=colors[name], lw=2, label=name)
    ax.plot(t, treat_all_net_benefit(y, t), "k--", lw=0.8, label="treat all")
    ax.axhline(0, color="k", lw=0.8, label="treat none")
    ax.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        xlim=(t[0], t[-1]),
        ylim=(-0.02, max(float(y.mean()) * 1.1, 0.05)),
        title="Decision curves on the new data",
    )
    ax.legend(fontsize=7)
    plots["decision"] = _save(fig, out, PLOTS["decision"])
    return plots


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return name


def _report(result: Validation, ts: TrainingSet) -> str:
    return (
        _templates()
        .get_template("validation.md.j2")
        .render(
            v=result, outcome_name=outcome_name(result.outcome, ts.cohort), ORIGINAL=ORIGINAL, RECALIBRATED=RECALIBRATED
        )
    )
