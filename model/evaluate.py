"""`sepsis-fusion evaluate`: the held-out test set of a run folder. Metrics with bootstrap intervals,
paired differences against the tuned baselines, calibration before and after, decision curves, the loss
comparison and modality ablation, subgroups, the cohort's characteristics and flow; plots (PNG), a Markdown
report (and the same report as one self-contained HTML file) and a model card.

Every model is scored on the same bootstrap resamples of the test stays, so each "A vs B" is a paired
difference with its own interval; a difference is called a win or a loss only when that interval excludes 0.

The numbers are computed here into an `Evaluation`; the Jinja2 templates in templates/ word them as the
report and the model card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402
from tqdm import tqdm  # noqa: E402

from . import run_folder as files  # noqa: E402
from .calibration import calibration_curve, calibration_error_by_chance  # noqa: E402
from .cohort_table import (  # noqa: E402
    characteristics,
    flow_diagram,
    flow_lines,
    markdown,
    population,
    prediction_hours,
    reach,
    recognition_rules,
)
from .errors import StudyError  # noqa: E402
from .inputs import OUTCOMES, TrainingSet, outcome_name  # noqa: E402
from .metrics import (  # noqa: E402
    CALIBRATION,
    METRICS,
    auprc,
    auroc,
    bootstrap,
    bootstrap_metrics,
    calibration_metrics,
    net_benefit,
    paired_difference,
    test_metrics,
    treat_all_net_benefit,
)
from .predictor import Predictor  # noqa: E402
from .report_html import write_html_report  # noqa: E402
from .run_folder import RunFolder  # noqa: E402

FUSION = "fusion model"
CALIBRATED = f"{FUSION}, after calibration"
DECISION_THRESHOLDS = np.round(np.arange(0.01, 0.81, 0.01), 2)
# The loss comparison: each loss's column of the experiment predictions and its name; the metrics its table shows
LOSSES = {"bce": "BCE (gamma 0, class-weighted)", "focal": "focal loss"}
LOSS_METRICS = ("accuracy", "specificity", "f1", "sensitivity", "auroc", "brier")
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Reach:
    """First Sepsis-3 stays and their in-hospital deaths, and how many of each reach the cohort."""

    stays: int
    deaths: int
    kept: int
    kept_deaths: int

    @property
    def kept_share(self) -> float:
        return self.kept / max(self.stays, 1)

    @property
    def kept_deaths_share(self) -> float:
        return self.kept_deaths / max(self.deaths, 1)


@dataclass(frozen=True)
class Data:
    """The cohort stays and their split, as training recorded them."""

    stays: int
    prevalence: float
    train: int
    test: int
    split: str
    fingerprint: str


@dataclass(frozen=True)
class Model:
    """The fusion model as trained: the chosen setting, its ensemble, calibration and threshold."""

    setting: dict
    cv_auroc: float
    folds: int  # fold models in the ensemble
    calibration: str  # the calibration method chosen
    calibration_brier: dict[str, float]  # each method's cross-validated Brier score
    threshold: float
    settings: str  # the run's configuration (YAML) as written, without its final newline


@dataclass(frozen=True)
class Predictors:
    """The model's inputs and how much of them is missing."""

    static: int
    sequence_steps: int
    stride_hours: float
    panel: int
    notes: int
    feature_service: str
    missing_static: float  # share of the static values missing
    missing_latest: float  # share of the latest sequence step's values missing (1.0 when no stay has that step)
    max_missing: float  # static variables missing in more of the training stays are dropped
    dropped: list[str]  # static variables dropped in at least one fold


@dataclass(frozen=True)
class Label:
    """Every model's discrimination against one label of the cohort, on the same test predictions."""

    outcome: str  # the cohort's column
    name: str
    trained_for: bool
    positive: int
    prevalence: float
    models: dict[str, dict]  # model -> bootstrapped auroc and auprc


@dataclass(frozen=True)
class Loss:
    """One side of the loss comparison, at its own threshold."""

    column: str
    name: str
    threshold: float
    metrics: dict


@dataclass(frozen=True)
class Variant:
    """One variant of the modality ablation."""

    modalities: str
    metrics: dict  # bootstrapped auroc and auprc
    difference: dict | None  # the final model minus the variant; None for the variant that is the final model


@dataclass(frozen=True)
class Comparisons:
    """The loss comparison and the modality ablation, from the run's experiment predictions."""

    losses: list[Loss]
    focal_minus_bce: dict
    ablation: list[Variant]

    def to_json(self) -> dict:
        ablation = {}
        for v in self.ablation:
            ablation[v.modalities] = {"metrics": v.metrics}
            if v.difference is not None:
                ablation[v.modalities]["final_minus_variant"] = v.difference
        return {
            "loss": {side.column: side.metrics for side in self.losses} | {"focal - bce": self.focal_minus_bce},
            "ablation": ablation,
        }


@dataclass(frozen=True)
class Subgroup:
    """The fusion model on one subgroup of the test stays; without metrics when it is too small to score."""

    name: str
    stays: int
    deaths: int
    metrics: dict | None = None  # bootstrapped, at the model's threshold
    calibration: dict | None = None  # point estimates
    observed: float | None = None  # outcome rate
    predicted: float | None = None  # mean predicted probability


@dataclass(frozen=True)
class Performance:
    """The held-out test set's metrics, each with its bootstrap interval: what the metrics file holds."""

    models: dict[str, dict]  # model -> METRICS at its own threshold
    paired_differences: dict[str, dict]  # baseline -> the fusion model minus it
    calibration: dict[str, dict]  # model (the fusion model before and after calibration) -> CALIBRATION
    labels: list[Label]
    comparisons: Comparisons | None  # None for a run trained without the experiments
    subgroups: list[Subgroup]

    @property
    def fusion(self) -> dict:
        return self.models[FUSION]

    @property
    def fusion_calibrated(self) -> dict:
        return self.calibration[CALIBRATED]

    def to_json(self) -> dict:
        return {
            "models": self.models,
            "paired_differences": self.paired_differences,
            "calibration": self.calibration,
            "comparisons": {} if self.comparisons is None else self.comparisons.to_json(),
            "subgroups": {
                s.name: {"metrics": s.metrics, "calibration": s.calibration, "stays": s.stays, "deaths": s.deaths}
                for s in self.subgroups
                if s.metrics is not None
            },
            "outcomes": {label.outcome: label.models for label in self.labels},
        }


@dataclass(frozen=True)
class Importance:
    """Global importance on the test stays (integrated gradients, explain.py)."""

    stays: int
    plotted: int  # inputs the plot shows at most
    top: list[dict]  # the ten most important inputs: input, modality, mean_abs_contribution, mean_contribution


@dataclass(frozen=True)
class Evaluation:
    """What the report and the model card say about one run folder, as plain data; the templates word it."""

    run: str  # the run folder's name
    resamples: int
    outcome: str  # the label the models were trained for
    outcome_name: str
    population: str  # the target population in one sentence (cohort_table.population)
    reach: Reach | None  # None for a cohort without its flow
    prediction_hours: float  # T - recognition
    recognition_rules: str  # how recognition counted cultures and SOFA rows; '' when not recorded
    data: Data
    model: Model
    predictors: Predictors
    baselines: dict[str, dict]  # the tuned hyperparameters of each baseline that has any
    performance: Performance
    importance: Importance
    characteristics: list[str]  # the cohort's characteristics, a Markdown table (cohort_table.markdown)
    flow: list[str] | None  # the cohort flow in Markdown (cohort_table.flow_lines); None without it
    plots: dict[str, str]  # run_folder.PLOTS name -> file name of each plot written


def _ci(m: dict, digits: int = 3) -> str:
    return f"{m['value']:.{digits}f} ({m['low']:.{digits}f} to {m['high']:.{digits}f})"


def _pct(share: float, digits: int = 1) -> str:
    return f"{share:.{digits}%}"


def _verdict(d: dict) -> str:
    if d["low"] > 0:
        return "better"
    if d["high"] < 0:
        return "worse"
    return "no difference shown"


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ci=_ci, pct=_pct, fmt=format, verdict=_verdict)
    env.globals.update(
        files=files,
        PRIMARY_OUTCOME=OUTCOMES[0],
        METRICS=METRICS,
        CALIBRATION=CALIBRATION,
        LOSS_METRICS=LOSS_METRICS,
    )
    return env


def evaluate(ts: TrainingSet, run_dir: Path, resamples: int = 1000) -> Path:
    """Evaluate a trained run folder on its held-out test set: the metrics, plots and cohort tables, the report
    (Markdown and HTML) and the model card. Returns the Markdown report's path."""
    run_dir = Path(run_dir)
    if not (run_dir / files.PREDICTIONS).exists():
        raise StudyError(f"{run_dir} has no {files.PREDICTIONS}: train with `sepsis-fusion train` first")
    meta = json.loads((run_dir / files.MODEL).read_text())
    data = json.loads((run_dir / files.DATA).read_text())
    cv = json.loads((run_dir / files.CV).read_text())
    calibrator = json.loads((run_dir / files.CALIBRATION).read_text())
    baselines = json.loads((run_dir / files.BASELINES).read_text())
    test = pd.read_csv(run_dir / files.PREDICTIONS)
    base = pd.read_csv(run_dir / files.BASELINE_PREDICTIONS).set_index("stay_id").loc[test["stay_id"]]
    y, threshold = test["outcome"].to_numpy(), meta["threshold"]
    scored = {FUSION: (test["probability"].to_numpy(), threshold)}
    scored.update({name: (base[name].to_numpy(), baselines[name]["threshold"]) for name in baselines})
    scores = {name: p for name, (p, _) in scored.items()}

    scored_all = {
        name: bootstrap(y, p, lambda y_, p_, t=t: test_metrics(y_, p_, t), resamples, label=name)
        for name, (p, t) in scored.items()
    }
    table = {name: {m: b[m] for m in METRICS} for name, b in scored_all.items()}
    differences = {
        name: paired_difference(y, scores[FUSION], p, resamples, label=f"{FUSION} - {name}")
        for name, p in scores.items()
        if name != FUSION
    }
    uncalibrated = test["probability_uncalibrated"].to_numpy()
    calibration = {
        f"{FUSION}, before calibration": bootstrap(y, uncalibrated, calibration_metrics, resamples, label="calibration")
    }
    calibration.update(
        {CALIBRATED if name == FUSION else name: {m: b[m] for m in CALIBRATION} for name, b in scored_all.items()}
    )
    for name, p in zip(calibration, [uncalibrated, *scores.values()]):
        calibration[name]["calibration_error_by_chance"] = calibration_error_by_chance(p)
    performance = Performance(
        models=table,
        paired_differences=differences,
        calibration=calibration,
        labels=_labels(ts, test, scores, meta["outcome"], resamples),
        comparisons=_comparisons(run_dir, y, resamples),
        subgroups=_subgroups(ts, test, threshold, resamples),
    )
    cohort_table, flow, plots = _cohort(ts, run_dir, meta["outcome"], data, test)
    (run_dir / files.METRICS).write_text(json.dumps(performance.to_json(), indent=2))
    plots |= _plots(run_dir, y, scores, uncalibrated, cv)
    importance, plots["importance"] = _importance(ts, run_dir, test)

    evaluation = Evaluation(
        run=run_dir.name,
        resamples=resamples,
        outcome=meta["outcome"],
        outcome_name=outcome_name(meta["outcome"], ts.cohort),
        population=population(ts.cohort),
        reach=_reach(ts),
        prediction_hours=prediction_hours(ts.cohort),
        recognition_rules=recognition_rules(ts.cohort),
        data=Data(
            stays=data["stays"],
            prevalence=data["prevalence"],
            train=data["train"],
            test=data["test"],
            split=data.get("split", "patient"),
            fingerprint=data["fingerprint"],
        ),
        model=Model(
            setting=meta["setting"],
            cv_auroc=cv["cv_auroc"],
            folds=len(meta["members"]),
            calibration=calibrator["method"],
            calibration_brier=calibrator["cv_brier"],
            threshold=threshold,
            settings=(run_dir / files.CONFIG).read_text().rstrip(),
        ),
        predictors=_predictors(ts, run_dir, meta),
        baselines={name: b["params"] for name, b in baselines.items() if b["params"]},
        performance=performance,
        importance=importance,
        characteristics=cohort_table,
        flow=flow,
        plots=plots,
    )
    templates = _templates()
    report = run_dir / files.REPORT
    report.write_text(templates.get_template("report.md.j2").render(vars(evaluation)))
    write_html_report(report.read_text(), run_dir)  # report.html: the same report, plots embedded
    (run_dir / files.MODEL_CARD).write_text(templates.get_template("model_card.md.j2").render(vars(evaluation)))
    return report


def _reach(ts: TrainingSet) -> Reach | None:
    shares = reach(ts.flow) if ts.flow is not None else None
    return Reach(*shares) if shares else None


def _ranking(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"auroc": auroc(y, p), "auprc": auprc(y, p)}


def _labels(
    ts: TrainingSet, test: pd.DataFrame, scores: dict[str, np.ndarray], primary: str, resamples: int
) -> list[Label]:
    """Discrimination of the same test predictions for every label of the cohort: the primary one the models
    were trained for, and the secondary and sensitivity labels."""
    cohort = ts.cohort.set_index("stay_id").loc[test["stay_id"]]
    labels = []
    for outcome in OUTCOMES:
        if outcome not in cohort or outcome == "died_in_icu":
            continue
        y = cohort[outcome].to_numpy(dtype=np.int64)
        if len(np.unique(y)) < 2:
            continue
        models = {
            model: bootstrap(y, p, _ranking, resamples, label=f"{outcome}: {model}") for model, p in scores.items()
        }
        labels.append(
            Label(
                outcome=outcome,
                name=outcome_name(outcome, ts.cohort),
                trained_for=outcome == primary,
                positive=int(y.sum()),
                prevalence=float(y.mean()),
                models=models,
            )
        )
    return labels


def _comparisons(run_dir: Path, y: np.ndarray, resamples: int) -> Comparisons | None:
    """The loss comparison (BCE vs focal loss) and the modality ablation, from the run's experiment
    predictions, each as a paired difference against the final model."""
    path = run_dir / files.EXPERIMENT_PREDICTIONS
    if not path.exists():
        return None
    variants = pd.read_csv(path)
    thresholds = json.loads((run_dir / files.EXPERIMENT_THRESHOLDS).read_text())
    losses = [
        Loss(
            column=column,
            name=name,
            threshold=thresholds[column],
            metrics=bootstrap_metrics(y, variants[column].to_numpy(), thresholds[column], resamples, label=name),
        )
        for column, name in LOSSES.items()
    ]
    final = variants["focal"].to_numpy()
    focal_minus_bce = paired_difference(y, final, variants["bce"].to_numpy(), resamples, label="focal - bce")
    ablation = []
    for column in variants.columns:
        if column == "stay_id" or column in LOSSES:
            continue
        p = variants[column].to_numpy()
        metrics = bootstrap(y, p, _ranking, resamples, label=column)
        # the variant with every modality is the final model (focal loss) itself: nothing to pair it with
        is_final = variants[column].equals(variants["focal"])
        difference = None if is_final else paired_difference(y, final, p, resamples, label=f"final - {column}")
        ablation.append(Variant(modalities=column, metrics=metrics, difference=difference))
    return Comparisons(losses=losses, focal_minus_bce=focal_minus_bce, ablation=ablation)


def _subgroups(ts: TrainingSet, test: pd.DataFrame, threshold: float, resamples: int) -> list[Subgroup]:
    """The fusion model by sex and age band; a subgroup under 10 stays or with one outcome only is not scored."""
    static = ts.features.static.assign(stay_id=ts.features.stay_id).set_index("stay_id").loc[test["stay_id"]]
    groups = {"female": static["female"].to_numpy() == 1, "male": static["female"].to_numpy() == 0}
    age = static["age"].to_numpy()
    for low, high in ((18, 50), (50, 65), (65, 80), (80, 200)):
        groups[f"age {low}-{high - 1}" if high < 200 else f"age {low}+"] = (age >= low) & (age < high)
    y, p = test["outcome"].to_numpy(), test["probability"].to_numpy()
    subgroups = []
    for name, mask in groups.items():
        stays, deaths = int(mask.sum()), int(y[mask].sum())
        if stays < 10 or len(np.unique(y[mask])) < 2:
            subgroups.append(Subgroup(name=name, stays=stays, deaths=deaths))
            continue
        subgroups.append(
            Subgroup(
                name=name,
                stays=stays,
                deaths=deaths,
                metrics=bootstrap_metrics(y[mask], p[mask], threshold, resamples, label=name),
                calibration=calibration_metrics(y[mask], p[mask]),
                observed=float(y[mask].mean()),
                predicted=float(p[mask].mean()),
            )
        )
    return subgroups


def _cohort(
    ts: TrainingSet, run_dir: Path, outcome: str, data: dict, test: pd.DataFrame
) -> tuple[list[str], list[str] | None, dict[str, str]]:
    """The cohort's characteristics by outcome (written as a CSV file, returned as Markdown), and its flow as
    Markdown and a diagram (None and no plot for a cohort without its flow)."""
    table = characteristics(ts, outcome)
    table.to_csv(run_dir / files.COHORT_CHARACTERISTICS, index=False)
    if ts.flow is None:
        return markdown(table), None, {}
    y_test = test["outcome"].to_numpy()
    y_all = ts.labels(outcome)
    split = {
        "training part": (data["train"], int(y_all.sum() - y_test.sum())),
        "held-out test": (data["test"], int(y_test.sum())),
    }
    diagram = flow_diagram(ts.flow, split, RunFolder(run_dir).plot("cohort_flow"))
    return markdown(table), flow_lines(ts.flow, prediction_hours(ts.cohort)), {"cohort_flow": diagram.name}


def _predictors(ts: TrainingSet, run_dir: Path, meta: dict) -> Predictors:
    """The model's inputs, their missingness and the static variables preprocessing dropped."""
    f = ts.features
    states = json.loads((run_dir / files.PREPROCESS).read_text())["members"]
    return Predictors(
        static=len(f.layout.static),
        sequence_steps=f.layout.sequence_steps,
        stride_hours=f.layout.stride_hours,
        panel=len(f.layout.panel),
        notes=len(f.layout.note_views),
        feature_service=meta["feature_service"],
        missing_static=float(np.isnan(f.static_numeric).mean()),
        missing_latest=(
            float(np.isnan(f.sequence[:, -1][f.sequence_mask[:, -1]]).mean()) if f.sequence_mask[:, -1].any() else 1.0
        ),
        max_missing=states[0]["config"]["max_missing"],
        dropped=sorted({name for s in states for name in s["dropped"]}),
    )


def _plots(
    run_dir: Path, y: np.ndarray, scores: dict[str, np.ndarray], uncalibrated: np.ndarray, cv: dict
) -> dict[str, str]:
    plots = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, held-out test set")
    ax.legend(loc="lower right", fontsize=8)
    plots["roc"] = _save(fig, run_dir, "roc")
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, p in scores.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name)
    ax.axhline(y.mean(), color="k", ls=":", lw=0.8)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, held-out test set")
    ax.legend(fontsize=8)
    plots["pr"] = _save(fig, run_dir, "pr")
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, p, style in (
        ("fusion model, before calibration", uncalibrated, "s--"),
        ("fusion model, calibrated", scores[FUSION], "o-"),
    ):
        predicted, observed, _ = calibration_curve(y, p, bins=10)
        ax.plot(predicted, observed, style, label=label)
    top = max(0.05, float(np.max([np.quantile(uncalibrated, 0.99), np.quantile(scores[FUSION], 0.99), y.mean() * 2])))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed rate",
        xlim=(0, min(1, top * 1.1)),
        ylim=(0, min(1, top * 1.1)),
        title="Calibration, held-out test set (10 quantile bins)",
    )
    ax.legend(fontsize=8)
    plots["calibration"] = _save(fig, run_dir, "calibration")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, p in scores.items():
        ax.plot(DECISION_THRESHOLDS, net_benefit(y, p, DECISION_THRESHOLDS), label=name)
    ax.plot(DECISION_THRESHOLDS, treat_all_net_benefit(y, DECISION_THRESHOLDS), "k--", lw=0.8, label="treat all")
    ax.axhline(0, color="k", lw=0.8, label="treat none")
    ax.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        ylim=(-0.05, max(y.mean() * 1.1, 0.05)),
        title="Decision curves, held-out test set",
    )
    ax.legend(fontsize=8)
    plots["decision_curve"] = _save(fig, run_dir, "decision_curve")
    # learning curves of the chosen setting's cross-validation folds: training loss and the loss and AUROC on
    # each fold's inner validation split (the one early stopping reads), per epoch
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    best = json.dumps(cv["best_setting"], sort_keys=True)
    for i, fold in enumerate(r for r in cv["folds"] if json.dumps(r["setting"], sort_keys=True) == best):
        epochs = np.arange(1, len(fold["train_loss"]) + 1)
        ax.plot(epochs, fold["train_loss"], color="tab:blue", alpha=0.6, label="training" if i == 0 else None)
        ax.plot(epochs, fold["val_loss"], color="tab:orange", alpha=0.6, label="inner validation" if i == 0 else None)
        ax2.plot(epochs, fold["val_auroc"], color="tab:green", alpha=0.6)
        ax2.plot(fold["best_epoch"], fold["val_auroc"][fold["best_epoch"] - 1], "k.")
    ax.set(xlabel="epoch", ylabel="focal loss", title="Learning curves (CV folds of the chosen setting)")
    ax.legend(fontsize=8)
    ax2.set(xlabel="epoch", ylabel="inner validation AUROC", title="Early stopping (dot: the epoch kept)")
    plots["learning_curve"] = _save(fig, run_dir, "learning_curve")
    return plots


def _importance(ts: TrainingSet, run_dir: Path, test: pd.DataFrame, plotted: int = 20) -> tuple[Importance, str]:
    """Global importance on the test stays: each input's mean absolute contribution to the logit
    (integrated gradients of the final model, explain.py), written as a table of every input and a plot of
    the first `plotted`; returns them and the plot's file name."""
    index = {s: i for i, s in enumerate(ts.features.stay_id)}
    missing = [s for s in test["stay_id"] if s not in index]
    if missing:
        raise StudyError(f"test stays {missing[:5]} of {run_dir} are not in this training set: evaluate on its data")
    features = ts.features.take(np.array([index[s] for s in test["stay_id"]], dtype=np.int64))
    trained = Predictor(run_dir)
    total = len(features) * len(trained.ensemble.members)
    with tqdm(total=total, desc="explanations", unit="stay", leave=False, mininterval=1.0) as bar:
        explanation = trained.explain(features, progress=bar.update)
    table = explanation.importance()
    table.to_csv(run_dir / files.IMPORTANCE, index=False)
    top = table.head(plotted).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.2))
    colors = {"static": "tab:blue", "sequence": "tab:orange", "notes": "tab:green"}
    ax.barh(top["input"], top["mean_abs_contribution"], color=[colors[m] for m in top["modality"]])
    for modality, color in colors.items():
        ax.barh([], [], color=color, label=modality)
    ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="mean |contribution| to the logit", title=f"What the model relied on ({len(features)} test stays)")
    plot = _save(fig, run_dir, "importance")
    return Importance(stays=len(features), plotted=plotted, top=table.head(10).to_dict("records")), plot


def _save(fig, run_dir: Path, name: str) -> str:
    """Write a figure as the run folder's plot `name`; returns its file name."""
    path = RunFolder(run_dir).plot(name)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name
