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
from . import subgroups as by_subgroup  # noqa: E402
from .calibration import calibration_curve, calibration_error_by_chance, smoothed_calibration  # noqa: E402
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
    holm,
    net_benefit,
    operating_point_metrics,
    paired_difference,
    paired_net_benefit,
    test_metrics,
    treat_all_net_benefit,
)
from .predictor import Predictor  # noqa: E402
from .report_html import write_html_report  # noqa: E402
from .run_folder import RunFolder  # noqa: E402

FUSION = "fusion model"
CALIBRATED = f"{FUSION}, after calibration"
# The decision curve's range of risk thresholds: from a 1-in-20 to a 1-in-2 risk of death, where an ICU team
# would change what it does (escalation, a goals-of-care talk); below 5% nearly everyone is "treated", above 50%
# only the sickest are
DECISION_RANGE = (0.05, 0.50)
DECISION_THRESHOLDS = np.round(np.arange(DECISION_RANGE[0], DECISION_RANGE[1] + 1e-9, 0.01), 2)
# The common operating points every model is compared at: stated risk thresholds and a fixed sensitivity
RISK_THRESHOLDS = (0.1, 0.2, 0.3)
AT_SENSITIVITY = 0.8
BAND_RESAMPLES = 200  # resamples for the bands of the calibration and decision curves
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
    calibration_shared: bool  # one map for every member (False: a map per member, runs of 0.2.0)
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
    setting: dict | None = None  # its hyperparameters (None: not recorded, a run of 0.2.0)
    tuned: bool = False  # chosen by its own grid search, not the final model's setting


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
class DecisionCurve:
    """Net benefit over DECISION_RANGE: the fusion model's band, its paired difference from the best baseline
    on the same inputs, and the two sentences that read it."""

    low: float
    high: float
    compared_with: str
    reading: list[str]
    curve: dict[str, list[float]]  # threshold, the fusion model's net benefit and its band, treat all

    def to_json(self) -> dict:
        return {"compared_with": self.compared_with, **self.curve}


@dataclass(frozen=True)
class Ceiling:
    """On synthetic data: the generator's own probabilities of in-hospital death, scored on the test stays."""

    stays: int
    deaths: int
    ideal: float  # AUROC of the true probabilities
    fusion: float  # AUROC of the fusion model's predictions against the same label


@dataclass(frozen=True)
class Performance:
    """The held-out test set's metrics, each with its bootstrap interval: what the metrics file holds."""

    models: dict[str, dict]  # model -> METRICS at its own threshold
    operating_points: dict[str, dict]  # model -> sensitivity/specificity/PPV at the common operating points
    paired_differences: dict[str, dict]  # baseline -> the fusion model minus it (with p and Holm-adjusted p)
    calibration: dict[str, dict]  # model (the fusion model before and after calibration) -> CALIBRATION
    labels: list[Label]
    comparisons: Comparisons | None  # None for a run trained without the experiments
    subgroups: list[by_subgroup.Subgroup]
    decision: DecisionCurve
    comparisons_in_family: int  # paired comparisons of the report, the family of Holm's adjustment

    @property
    def fusion(self) -> dict:
        return self.models[FUSION]

    @property
    def fusion_calibrated(self) -> dict:
        return self.calibration[CALIBRATED]

    def to_json(self) -> dict:
        return {
            "models": self.models,
            "operating_points": self.operating_points,
            "paired_differences": self.paired_differences,
            "calibration": self.calibration,
            "comparisons": {} if self.comparisons is None else self.comparisons.to_json(),
            "subgroups": {s.name: {"metrics": s.metrics, "stays": s.stays, "events": s.events} for s in self.subgroups},
            "outcomes": {label.outcome: label.models for label in self.labels},
            "decision_curve": self.decision.to_json(),
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
    external_baselines: dict[str, dict]  # peer baselines fitted outside the study: description, chosen params
    performance: Performance
    importance: Importance
    characteristics: list[str]  # the cohort's characteristics, a Markdown table (cohort_table.markdown)
    flow: list[str] | None  # the cohort flow in Markdown (cohort_table.flow_lines); None without it
    plots: dict[str, str]  # run_folder.PLOTS name -> file name of each plot written
    risk_thresholds: tuple[float, ...]
    at_sensitivity: float
    encoder: dict | None  # the note encoder (model, dim, layers, ...); None: without notes, or not recorded
    notes_used: bool  # the model reads note embeddings
    ceiling: Ceiling | None  # on synthetic data with its truth; None otherwise
    ablation_tuned: bool  # the ablation's variants tuned on their own grid


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


def _holm(d: dict) -> str:
    """Whether a difference called by its interval still holds after Holm's adjustment, with the adjusted p."""
    if "p_holm" not in d:
        return ""
    called = d["low"] > 0 or d["high"] < 0
    p = d["p_holm"]
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    if not called:
        return f"p {text}"
    return f"p {text}, " + ("holds after Holm" if p < 0.05 else "not after Holm")


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ci=_ci, pct=_pct, fmt=format, verdict=_verdict, holm=_holm)
    env.globals.update(
        files=files,
        PRIMARY_OUTCOME=OUTCOMES[0],
        METRICS=METRICS,
        CALIBRATION=CALIBRATION,
        LOSS_METRICS=LOSS_METRICS,
        MIN_PER_CLASS=by_subgroup.MIN_PER_CLASS,
        BAND_RESAMPLES=BAND_RESAMPLES,
    )
    return env


def evaluate(
    ts: TrainingSet,
    run_dir: Path,
    resamples: int = 1000,
    risk_thresholds: tuple[float, ...] = RISK_THRESHOLDS,
    at_sensitivity: float = AT_SENSITIVITY,
    truth: pd.Series | None = None,
) -> Path:
    """Evaluate a trained run folder on its held-out test set: the metrics, plots and cohort tables, the report
    (Markdown and HTML) and the model card. Every model is also compared at the same `risk_thresholds` and at
    the threshold that reaches `at_sensitivity`. `truth`: on synthetic data, the generator's probability of
    in-hospital death by stay_id (its `_truth/`), scored beside the model as the data's ceiling. Returns the
    Markdown report's path."""
    for t in (*risk_thresholds, at_sensitivity):
        if not 0 < t < 1:
            raise StudyError(f"evaluate: {t} is not a risk threshold or sensitivity between 0 and 1 (exclusive)")
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
    external, external_p = RunFolder(run_dir).read_external_baselines(test["stay_id"])
    scored.update({name: (external_p[name].to_numpy(), external[name]["threshold"]) for name in external})
    scores = {name: p for name, (p, _) in scored.items()}

    scored_all = {
        name: bootstrap(y, p, lambda y_, p_, t=t: test_metrics(y_, p_, t), resamples, label=name)
        for name, (p, t) in scored.items()
    }
    table = {name: {m: b[m] for m in METRICS} for name, b in scored_all.items()}
    operating = {
        name: bootstrap(
            y,
            p,
            lambda y_, p_: operating_point_metrics(y_, p_, tuple(risk_thresholds), at_sensitivity),
            resamples,
            label=f"operating points: {name}",
        )
        for name, p in scores.items()
    }
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
    comparisons = _comparisons(run_dir, y, resamples)
    family = _adjust_for_multiplicity(differences, comparisons)
    static = ts.features.static.assign(stay_id=ts.features.stay_id).set_index("stay_id").loc[test["stay_id"]]
    subgroups = by_subgroup.subgroups(static, y, scores[FUSION], threshold, resamples)
    decision, plots = _decision_curve(run_dir, y, scores, baselines | external)
    performance = Performance(
        models=table,
        operating_points=operating,
        paired_differences=differences,
        calibration=calibration,
        labels=_labels(ts, test, scores, meta["outcome"], resamples),
        comparisons=comparisons,
        subgroups=subgroups,
        decision=decision,
        comparisons_in_family=family,
    )
    if any(s.metrics is not None for s in subgroups):
        overall = {"auroc": table[FUSION]["auroc"]["value"], "observed_expected": y.sum() / scores[FUSION].sum()}
        plots["subgroups"] = by_subgroup.plot(subgroups, overall, RunFolder(run_dir).plot("subgroups")).name
    cohort_table, flow, cohort_plots = _cohort(ts, run_dir, meta["outcome"], data, test)
    plots |= cohort_plots
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
            calibration_shared=calibrator.get("scope") == "shared",
            calibration_brier=calibrator["cv_brier"],
            threshold=threshold,
            settings=(run_dir / files.CONFIG).read_text().rstrip(),
        ),
        predictors=_predictors(ts, run_dir, meta),
        baselines={name: b["params"] for name, b in baselines.items() if b["params"]},
        external_baselines={
            name: {"description": b["description"], "params": b.get("params") or {}} for name, b in external.items()
        },
        performance=performance,
        importance=importance,
        characteristics=cohort_table,
        flow=flow,
        plots=plots,
        risk_thresholds=tuple(risk_thresholds),
        at_sensitivity=at_sensitivity,
        encoder=data.get("encoder"),
        notes_used=bool(meta["members"][0].get("use_notes")) and meta["members"][0].get("note_dim", 0) > 0,
        ceiling=_ceiling(ts, test, truth),
        ablation_tuned=comparisons is not None
        and any(v.tuned for v in comparisons.ablation if v.difference is not None),
    )
    templates = _templates()
    report = run_dir / files.REPORT
    report.write_text(templates.get_template("report.md.j2").render(vars(evaluation)))
    write_html_report(report.read_text(), run_dir)  # report.html: the same report, plots embedded
    (run_dir / files.MODEL_CARD).write_text(templates.get_template("model_card.md.j2").render(vars(evaluation)))
    return report


def _adjust_for_multiplicity(differences: dict[str, dict], comparisons: Comparisons | None) -> int:
    """Holm's adjustment over every paired comparison of the report (the fusion model against each baseline,
    focal loss against BCE, the final model against each ablation variant), AUROC and AUPRC each a family:
    writes `p_holm` into each difference; returns the family's size."""
    family = {f"baseline {name}": d for name, d in differences.items()}
    if comparisons is not None:
        family["focal - bce"] = comparisons.focal_minus_bce
        family |= {f"ablation {v.modalities}": v.difference for v in comparisons.ablation if v.difference is not None}
    for metric in ("auroc", "auprc"):
        adjusted = holm({name: d[metric]["p"] for name, d in family.items()})
        for name, d in family.items():
            d[metric]["p_holm"] = adjusted[name]
    return len(family)


def _ceiling(ts: TrainingSet, test: pd.DataFrame, truth: pd.Series | None) -> Ceiling | None:
    """The generator's true probabilities of in-hospital death scored on the test stays, beside the model's."""
    if truth is None or "died_in_hospital" not in ts.cohort:
        return None
    known = test["stay_id"].isin(truth.index).to_numpy()
    if not known.all():
        return None  # a truth file of other data: no ceiling rather than a wrong one
    y = ts.cohort.set_index("stay_id").loc[test["stay_id"], "died_in_hospital"].to_numpy(dtype=np.int64)
    return Ceiling(
        stays=len(y),
        deaths=int(y.sum()),
        ideal=auroc(y, truth.loc[test["stay_id"]].to_numpy(dtype=float)),
        fusion=auroc(y, test["probability"].to_numpy()),
    )


def _decision_curve(
    run_dir: Path, y: np.ndarray, scores: dict[str, np.ndarray], baselines: dict
) -> tuple[DecisionCurve, dict[str, str]]:
    """Decision curves over DECISION_RANGE, the fusion model's with its bootstrap band, and the paired band of
    its difference from the tuned baseline with the best test AUROC; returns the reading and the plot."""
    t = DECISION_THRESHOLDS
    tuned = [name for name in baselines if baselines[name].get("params")] or [n for n in scores if n != FUSION]
    rival = max(tuned, key=lambda name: auroc(y, scores[name]))
    fusion_draws, rival_draws = paired_net_benefit(y, scores[FUSION], scores[rival], t, BAND_RESAMPLES)
    low, high = np.percentile(fusion_draws, [2.5, 97.5], axis=0)
    d_low, d_high = np.percentile(fusion_draws - rival_draws, [2.5, 97.5], axis=0)
    fusion, everyone = net_benefit(y, scores[FUSION], t), treat_all_net_benefit(y, t)
    difference = fusion - net_benefit(y, scores[rival], t)
    useful = low > np.maximum(everyone, 0)
    reading = [
        (
            f"Over risk thresholds {_pct(t[0], 0)} to {_pct(t[-1], 0)}, the fusion model's net benefit is above "
            f"both treating every stay and treating none at {_ranges(t, fusion > np.maximum(everyone, 0))}; its "
            f"95% band lies wholly above both at {_ranges(t, useful)}."
        ),
        (
            f"Against {rival} (the tuned baseline with the best test AUROC) the paired difference in net benefit "
            f"is at most {difference.max():+.3f} (at {_pct(t[int(np.argmax(difference))], 0)}; "
            f"{1000 * difference.max():+.0f} true positives per 1,000 stays at the same false-positive cost) and "
            + (
                "its 95% band contains 0 at every threshold: no difference in clinical usefulness is shown."
                if ((d_low <= 0) & (d_high >= 0)).all()
                else f"its band excludes 0 at {_ranges(t, (d_low > 0) | (d_high < 0))}."
            )
        ),
    ]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, p in scores.items():
        if name != FUSION:
            ax.plot(t, net_benefit(y, p, t), lw=1, alpha=0.8, label=name)
    ax.fill_between(t, low, high, color="tab:blue", alpha=0.2, label=f"{FUSION}, 95% band")
    ax.plot(t, fusion, color="tab:blue", lw=2, label=FUSION)
    ax.plot(t, everyone, "k--", lw=0.8, label="treat all")
    ax.axhline(0, color="k", lw=0.8, label="treat none")
    ax.set(
        xlabel="threshold probability (risk at which one would act)",
        ylabel="net benefit",
        xlim=(t[0], t[-1]),
        ylim=(min(-0.02, float(low.min())), max(float(y.mean()) * 1.1, 0.05)),
        title=f"Decision curves, held-out test set ({BAND_RESAMPLES} bootstrap resamples)",
    )
    ax.legend(fontsize=7)
    plots = {"decision_curve": _save(fig, run_dir, "decision_curve")}
    curve = {
        "threshold": t.tolist(),
        "net_benefit": fusion.tolist(),
        "low": low.tolist(),
        "high": high.tolist(),
        "treat_all": everyone.tolist(),
    }
    return DecisionCurve(float(t[0]), float(t[-1]), rival, reading, curve), plots


def _ranges(t: np.ndarray, mask: np.ndarray) -> str:
    """The thresholds where `mask` holds, as ranges ('8% to 31%, 40%'); 'no threshold' when none."""
    runs, start = [], None
    for i, on in enumerate([*mask, False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            a, b = t[start], t[i - 1]
            runs.append(_pct(a, 0) if start == i - 1 else f"{_pct(a, 0)} to {_pct(b, 0)}")
            start = None
    return ", ".join(runs) if runs else "no threshold"


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
    settings_path = run_dir / files.EXPERIMENT_SETTINGS
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
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
        recorded = settings.get(column, {})
        ablation.append(
            Variant(column, metrics, difference, recorded.get("setting"), bool(recorded.get("tuned", False)))
        )
    return Comparisons(losses=losses, focal_minus_bce=focal_minus_bce, ablation=ablation)


def _cohort(
    ts: TrainingSet, run_dir: Path, outcome: str, data: dict, test: pd.DataFrame
) -> tuple[list[str], list[str] | None, dict[str, str]]:
    """The cohort's characteristics by outcome (written as a CSV file, returned as Markdown), and its flow as
    Markdown and a diagram (None and no plot for a cohort without its flow)."""
    table = characteristics(ts, outcome, ts.cohort["stay_id"].isin(test["stay_id"]).to_numpy())
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
    return (
        markdown(table),
        flow_lines(ts.flow, prediction_hours(ts.cohort), len(ts.cohort)),
        {"cohort_flow": diagram.name},
    )


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
    plots["calibration"] = _calibration_plot(run_dir, y, scores[FUSION], uncalibrated)
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


def _calibration_plot(run_dir: Path, y: np.ndarray, calibrated: np.ndarray, uncalibrated: np.ndarray) -> str:
    """The fusion model's smoothed calibration curve (restricted cubic spline) with its bootstrap band and
    its 10 quantile bins, the curve before calibration, and the spread of the calibrated predictions."""
    top = float(min(1, max(0.1, np.quantile(calibrated, 0.99), np.quantile(uncalibrated, 0.99)) * 1.1))
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    for p, label, color, band in (
        (uncalibrated, "before calibration", "tab:gray", False),
        (calibrated, "calibrated", "tab:blue", True),
    ):
        grid = np.linspace(max(np.quantile(p, 0.01), 1e-3), min(np.quantile(p, 0.99), 1 - 1e-3), 60)
        curve, low, high = smoothed_calibration(y, p, grid, BAND_RESAMPLES if band else 0)
        if band:
            ax.fill_between(grid, low, high, color=color, alpha=0.2, label=f"{label}: 95% band")
        ax.plot(grid, curve, color=color, lw=2 if band else 1, ls="-" if band else "--", label=f"{label}: smoothed")
    predicted, observed, _ = calibration_curve(y, calibrated, bins=10)
    ax.plot(predicted, observed, "o", color="tab:blue", ms=4, label="calibrated: 10 quantile bins")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(
        ylabel="observed rate",
        xlim=(0, top),
        ylim=(0, top),
        title="Calibration, held-out test set",
    )
    ax.legend(fontsize=7, loc="upper left")
    hist.hist(calibrated, bins=40, range=(0, top), color="tab:blue", alpha=0.6)
    hist.set(xlabel="predicted probability", ylabel="stays")
    return _save(fig, run_dir, "calibration")


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
