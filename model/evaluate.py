"""`sepsis-fusion evaluate`: the held-out test set of a run folder, with bootstrap confidence intervals,
baselines on the same features and split, plots (PNG) and a Markdown report."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict  # noqa: E402

from sepsis_fusion.pipelines.features.training import TrainingSet  # noqa: E402

from .metrics import METRICS, bootstrap_metrics  # noqa: E402
from .preprocess import ModelInputs  # noqa: E402
from .protocol import subset  # noqa: E402
from .study import StudyError, load_run  # noqa: E402


def flat(inputs: ModelInputs) -> np.ndarray:
    """Every model input as one row per stay, for the baselines."""
    n = len(inputs)
    return np.concatenate([inputs.static, inputs.windows.reshape(n, -1), inputs.window_mask.astype(np.float32),
                           inputs.notes.reshape(n, -1), inputs.note_mask.astype(np.float32)], axis=1)


def baselines(ts: TrainingSet, run_dir: Path, train_ids: np.ndarray, test_ids: np.ndarray,
              outcome: str, seed: int) -> dict[str, tuple[np.ndarray, float]]:
    """Test-set probabilities and thresholds of logistic regression and gradient boosting on the model's
    preprocessed inputs (preprocessing fitted on the training part, as stored in the run), and of SOFA at
    onset alone. Each threshold is its Youden point on out-of-fold predictions of the training part
    (SOFA's on its training-part rates)."""
    trained = load_run(run_dir)
    index = {s: i for i, s in enumerate(ts.features.stay_id)}
    train, test = np.array([index[s] for s in train_ids]), np.array([index[s] for s in test_ids])
    y = ts.labels(outcome)
    x_train = flat(trained.preprocessor.transform(subset(ts.features, train)))
    x_test = flat(trained.preprocessor.transform(subset(ts.features, test)))
    out = {}
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    groups = ts.cohort["subject_id"].to_numpy()[train]
    for name, model in (("logistic regression", LogisticRegression(max_iter=2000, C=0.1)),
                        ("gradient boosting", HistGradientBoostingClassifier(random_state=seed))):
        # threshold from out-of-fold predictions on the training part, as for the fusion model
        oof = cross_val_predict(model, x_train, y[train], groups=groups, cv=folds, method="predict_proba")[:, 1]
        model.fit(x_train, y[train])
        out[name] = (model.predict_proba(x_test)[:, 1], _youden(y[train], oof))
    sofa = ts.cohort["sofa_score_at_onset"].to_numpy(dtype=float)
    # SOFA as a probability: its observed mortality in the training part (a monotone recalibration)
    rates = pd.Series(y[train]).groupby(sofa[train]).mean()
    to_rate = lambda s: np.interp(s, rates.index.to_numpy(), rates.to_numpy())  # noqa: E731
    out["SOFA at onset"] = (to_rate(sofa[test]), _youden(y[train], to_rate(sofa[train])))
    return out


def evaluate(ts: TrainingSet, run_dir: Path, resamples: int = 1000) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "predictions.csv").exists():
        raise StudyError(f"{run_dir} has no predictions.csv: train with `sepsis-fusion train` first")
    meta = json.loads((run_dir / "model.json").read_text())
    data = json.loads((run_dir / "data.json").read_text())
    cv = json.loads((run_dir / "cv.json").read_text())
    test = pd.read_csv(run_dir / "predictions.csv")
    train = pd.read_csv(run_dir / "oof_predictions.csv")
    y, threshold = test["outcome"].to_numpy(), meta["threshold"]
    scored = {"fusion model": (test["probability"].to_numpy(), threshold)}
    scored.update(baselines(ts, run_dir, train["stay_id"].to_numpy(), test["stay_id"].to_numpy(),
                            meta["outcome"], seed=0))
    scores = {name: p for name, (p, _) in scored.items()}
    table = {name: bootstrap_metrics(y, p, t, resamples, label=name) for name, (p, t) in scored.items()}
    (run_dir / "metrics.json").write_text(json.dumps(table, indent=2))
    plots = _plots(run_dir, y, scores, cv)
    lines = [f"# Evaluation of {run_dir.name}", "",
             f"Outcome: {meta['outcome']}; {data['stays']} cohort stays ({data['prevalence']:.1%} positive), "
             f"{data['train']} for training and cross-validation, {data['test']} held out (grouped by patient). "
             f"Best setting {meta['setting'] or '(defaults)'}, mean CV AUROC {cv['cv_auroc']:.3f}; decision "
             f"threshold {threshold:.3f}, chosen on out-of-fold predictions of the training part (Youden).", "",
             "Baselines use the same preprocessed inputs and split; each threshold is its Youden point on "
             "out-of-fold predictions of the training part.", "",
             "| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, metrics in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"
                                                 for m in metrics.values()) + " |")
    lines += ["", "95% bootstrap intervals over test stays, " + f"{resamples} resamples.", ""]
    lines += _comparisons(run_dir, y, threshold, resamples)
    lines += _subgroups(ts, test, threshold, resamples)
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    _model_card(ts, run_dir, meta, data, cv, table["fusion model"])
    return report


def _row(name: str, metrics: dict, names: tuple[str, ...]) -> str:
    return f"| {name} | " + " | ".join(f"{metrics[m]['value']:.3f} ({metrics[m]['low']:.3f}-{metrics[m]['high']:.3f})"
                                      for m in names) + " |"


def _comparisons(run_dir: Path, y: np.ndarray, threshold: float, resamples: int) -> list[str]:
    """Table 1 (BCE vs focal loss) and the modality ablation, from the run's experiment predictions."""
    path = run_dir / "experiment_predictions.csv"
    if not path.exists():
        return []
    variants = pd.read_csv(path)
    thresholds_path = run_dir / "experiment_thresholds.json"
    thresholds = json.loads(thresholds_path.read_text()) if thresholds_path.exists() else {}
    names = ("accuracy", "specificity", "f1", "sensitivity", "auroc")
    lines = ["## Table 1: class-weighted BCE against focal loss (same split, setting and epochs)", "",
             "| loss | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for column, label in (("bce", "BCE (gamma 0, class-weighted)"), ("focal", "focal loss")):
        cut = thresholds.get(column, threshold)
        lines.append(_row(f"{label}, threshold {cut:.3f}", bootstrap_metrics(y, variants[column].to_numpy(), cut,
                                                                            resamples, label=label), names))
    lines += ["", "Each at its own threshold (Youden on out-of-fold predictions of the training part).", "",
              "## Modality ablation", "",
              "| modalities | auroc | auprc |", "|---|---:|---:|"]
    for column in variants.columns:
        if column not in ("stay_id", "bce", "focal"):
            m = bootstrap_metrics(y, variants[column].to_numpy(), threshold, resamples, label=column)
            lines.append(_row(column, m, ("auroc", "auprc")))
    return lines + [""]


def _subgroups(ts: TrainingSet, test: pd.DataFrame, threshold: float, resamples: int) -> list[str]:
    static = ts.features.static.assign(stay_id=ts.features.stay_id).set_index("stay_id").loc[test["stay_id"]]
    groups = {"female": static["female"].to_numpy() == 1, "male": static["female"].to_numpy() == 0}
    age = static["age"].to_numpy()
    for low, high in ((18, 50), (50, 65), (65, 80), (80, 200)):
        groups[f"age {low}-{high - 1}" if high < 200 else f"age {low}+"] = (age >= low) & (age < high)
    lines = ["## Subgroups (fusion model)", "", "| subgroup | stays | deaths | auroc | sensitivity | specificity |",
             "|---|---:|---:|---:|---:|---:|"]
    y, p = test["outcome"].to_numpy(), test["probability"].to_numpy()
    for name, mask in groups.items():
        if mask.sum() < 10 or len(np.unique(y[mask])) < 2:
            lines.append(f"| {name} | {mask.sum()} | {y[mask].sum()} | too few | | |")
            continue
        m = bootstrap_metrics(y[mask], p[mask], threshold, resamples, label=name)
        lines.append(f"| {name} | {mask.sum()} | {y[mask].sum()} | " + " | ".join(
            f"{m[k]['value']:.3f} ({m[k]['low']:.3f}-{m[k]['high']:.3f})" for k in ("auroc", "sensitivity", "specificity"))
            + " |")
    return lines + [""]


def _model_card(ts: TrainingSet, run_dir: Path, meta: dict, data: dict, cv: dict, metrics: dict) -> Path:
    """A model card along the TRIPOD+AI items: what the model predicts, from what, how it was built and
    tuned, how well it did (with intervals), and where it must not be used."""
    f = ts.features
    missing_static = float(np.isnan(f.static_numeric).mean())
    missing_latest = float(np.isnan(f.windows[:, -1][f.window_mask[:, -1]]).mean()) if f.window_mask[:, -1].any() else 1.0
    ci = lambda m: f"{metrics[m]['value']:.3f} (95% CI {metrics[m]['low']:.3f}-{metrics[m]['high']:.3f})"  # noqa: E731
    config = (run_dir / "config.yaml").read_text()
    lines = [
        f"# Model card: {run_dir.name}", "",
        "## Task and horizon",
        f"Predicts {meta['outcome'].replace('_', ' ')} for adult ICU stays meeting Sepsis-3 (mimic-code definition, "
        "first such stay per patient), at the prediction time T = Sepsis-3 onset + 24 h, from what was known at T "
        "(Feast point-in-time retrieval; labs from their storetime, notes from theirs, no discharge summaries, "
        "comorbidities from earlier admissions only). Stays that ended before T are excluded.", "",
        "## Data and cohort flow",
        f"{data['stays']} cohort stays ({data['prevalence']:.1%} positive); {data['train']} for training and "
        f"tuning, {data['test']} held out, split by patient and stratified by outcome. Data fingerprint "
        f"`{data['fingerprint'][:16]}`. The cohort flow (stays excluded at each step) is the dbt model "
        "`cohort_flow` of the warehouse this run was trained from.", "",
        "## Predictors",
        f"Static baseline ({len(f.layout.static)} variables, the {len(json.loads((run_dir / 'preprocess.json').read_text())['selected'])} "
        f"most relevant kept), the last {f.layout.sequence_windows} daily 24-hour windows of "
        f"{len(f.layout.windows) // 6} labs and vitals (min, max, mean, std, count, last), and note embeddings "
        f"per window (Feast feature service `{meta['feature_service']}`).", "",
        "## Missing data",
        f"Static variables missing: {missing_static:.1%} of values; latest window: {missing_latest:.1%} of "
        f"statistics (a lab not measured in 24 h). Training stays with more than "
        f"{json.loads((run_dir / 'preprocess.json').read_text())['config']['max_missing']:.0%} of static variables "
        f"missing were dropped ({cv.get('dropped_for_missing', 0)} stays); the rest mean/mode-imputed with "
        "missing-value flags; windows that did not exist yet are masked.", "",
        "## Model and tuning",
        f"Static MLP + window BiLSTM + note BiLSTM, early fusion, focal loss. Grid search with "
        f"{len(cv['folds']) // max(1, len({json.dumps(r['setting'], sort_keys=True) for r in cv['folds']}))}-fold "
        f"patient-grouped cross-validation; chosen setting {meta['setting'] or '(defaults)'} (mean CV AUROC "
        f"{cv['cv_auroc']:.3f}), retrained on the whole training part for {cv['epochs']} epochs. Decision "
        f"threshold {meta['threshold']:.3f} (Youden, out-of-fold).", "", "Settings:", "", "```yaml", config.rstrip(),
        "```", "",
        "## Performance on the held-out test set",
        f"AUROC {ci('auroc')}; AUPRC {ci('auprc')}; sensitivity {ci('sensitivity')}; specificity "
        f"{ci('specificity')}; Brier {ci('brier')}; calibration error {ci('calibration_error')}. Baselines, "
        "the BCE comparison, the modality ablation and subgroups by sex and age band: report.md.", "",
        "## Intended use and limits",
        "Research use: studying prognosis in sepsis and the value of each data modality, and as a template for "
        "point-in-time-correct feature pipelines. Not a medical device; not validated prospectively or outside "
        "the hospital the data come from (MIMIC-IV: one US academic centre, 2008-2019); not for decisions about "
        "individual patients. Trained on synthetic data it describes the generator, not patients. Performance "
        "in small subgroups is uncertain (see the intervals); recalibrate before use in another population.", "",
    ]
    card = run_dir / "model_card.md"
    card.write_text("\n".join(lines))
    return card


def _youden(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, thresholds = roc_curve(y, p)
    return float(min(thresholds[int(np.argmax(tpr - fpr))], 1.0))


def _plots(run_dir: Path, y: np.ndarray, scores: dict[str, np.ndarray], cv: dict) -> list[Path]:
    paths = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, held-out test set")
    ax.legend(loc="lower right", fontsize=8)
    paths.append(_save(fig, run_dir / "roc.png"))
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name)
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, held-out test set")
    ax.legend(fontsize=8)
    paths.append(_save(fig, run_dir / "pr.png"))
    fig, ax = plt.subplots(figsize=(5, 5))
    observed, predicted = calibration_curve(y, scores["fusion model"], n_bins=10, strategy="quantile")
    ax.plot(predicted, observed, "o-", label="fusion model")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed rate", title="Calibration (deciles)")
    paths.append(_save(fig, run_dir / "calibration.png"))
    # learning curves of the chosen setting's cross-validation folds: training and validation loss, and
    # validation AUROC, per epoch (the folds stop at different epochs)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, fold in enumerate(r for r in cv["folds"] if r["setting"] == cv["best_setting"]):
        epochs = np.arange(1, len(fold["train_loss"]) + 1)
        ax.plot(epochs, fold["train_loss"], color="tab:blue", alpha=0.6, label="training" if i == 0 else None)
        ax.plot(epochs, fold["val_loss"], color="tab:orange", alpha=0.6, label="validation" if i == 0 else None)
        ax2.plot(epochs, fold["val_auroc"], color="tab:green", alpha=0.6)
        ax2.plot(fold["best_epoch"], fold["val_auroc"][fold["best_epoch"] - 1], "k.")
    ax.set(xlabel="epoch", ylabel="focal loss", title="Learning curves (CV folds of the chosen setting)")
    ax.legend(fontsize=8)
    ax2.set(xlabel="epoch", ylabel="validation AUROC", title="Validation AUROC (dot: best epoch)")
    paths.append(_save(fig, run_dir / "learning_curve.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
