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
    onset alone. Each threshold is its Youden point on its own training-part predictions."""
    trained = load_run(run_dir)
    index = {s: i for i, s in enumerate(ts.features.stay_id)}
    train, test = np.array([index[s] for s in train_ids]), np.array([index[s] for s in test_ids])
    y = ts.labels(outcome)
    x_train = flat(trained.preprocessor.transform(subset(ts.features, train)))
    x_test = flat(trained.preprocessor.transform(subset(ts.features, test)))
    out = {}
    for name, model in (("logistic regression", LogisticRegression(max_iter=2000, C=0.1)),
                        ("gradient boosting", HistGradientBoostingClassifier(random_state=seed))):
        model.fit(x_train, y[train])
        out[name] = (model.predict_proba(x_test)[:, 1], _youden(y[train], model.predict_proba(x_train)[:, 1]))
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
    table = {name: bootstrap_metrics(y, p, t, resamples) for name, (p, t) in scored.items()}
    (run_dir / "metrics.json").write_text(json.dumps(table, indent=2))
    plots = _plots(run_dir, y, scores, cv)
    lines = [f"# Evaluation of {run_dir.name}", "",
             f"Outcome: {meta['outcome']}; {data['stays']} cohort stays ({data['prevalence']:.1%} positive), "
             f"{data['train']} for training and cross-validation, {data['test']} held out (grouped by patient). "
             f"Best setting {meta['setting'] or '(defaults)'}, mean CV AUROC {cv['cv_auroc']:.3f}; decision "
             f"threshold {threshold:.3f}, chosen on out-of-fold predictions of the training part (Youden).", "",
             "Baselines use the same preprocessed inputs and split; each threshold is its Youden point on its own "
             "training-part predictions.", "",
             "| model | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, metrics in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"
                                                 for m in metrics.values()) + " |")
    lines += ["", "95% bootstrap intervals over test stays, " + f"{resamples} resamples.", ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


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
    history = cv["final_training"]
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    ax.plot(epochs, history["train_loss"], label="training loss (focal)")
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curve, final training")
    ax2 = ax.twinx()
    ax2.plot(epochs, history["train_auroc"], color="tab:orange", label="training AUROC")
    ax2.set_ylabel("AUROC")
    fig.legend(loc="upper right", fontsize=8)
    paths.append(_save(fig, run_dir / "learning_curve.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
