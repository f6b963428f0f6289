"""`sepsis-fusion evaluate`: the held-out test set of a run folder. Metrics with bootstrap intervals,
paired differences against the tuned baselines, calibration before and after, decision curves, the loss
comparison and modality ablation, subgroups, the cohort's characteristics and flow; plots (PNG), a Markdown
report (and the same report as one self-contained HTML file) and a model card.

Every model is scored on the same bootstrap resamples of the test stays, so each "A vs B" is a paired
difference with its own interval; a difference is called a win or a loss only when that interval excludes 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402
from tqdm import tqdm  # noqa: E402

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
from .inputs import OUTCOMES, TrainingSet, outcome_name  # noqa: E402
from .metrics import (
    CALIBRATION,
    METRICS,
    auprc,
    auroc,
    bootstrap,
    bootstrap_metrics,  # noqa: E402
    calibration_metrics,
    net_benefit,
    paired_difference,
    test_metrics,
    treat_all_net_benefit,
)
from .report_html import write_html_report  # noqa: E402
from .study import StudyError, load_run  # noqa: E402

FUSION = "fusion model"
DECISION_THRESHOLDS = np.round(np.arange(0.01, 0.81, 0.01), 2)


def _ci(m: dict, digits: int = 3) -> str:
    return f"{m['value']:.{digits}f} ({m['low']:.{digits}f} to {m['high']:.{digits}f})"


def _verdict(d: dict) -> str:
    if d["low"] > 0:
        return "better"
    if d["high"] < 0:
        return "worse"
    return "no difference shown"


def evaluate(ts: TrainingSet, run_dir: Path, resamples: int = 1000) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "predictions.csv").exists():
        raise StudyError(f"{run_dir} has no predictions.csv: train with `sepsis-fusion train` first")
    meta = json.loads((run_dir / "model.json").read_text())
    data = json.loads((run_dir / "data.json").read_text())
    cv = json.loads((run_dir / "cv.json").read_text())
    calibrator = json.loads((run_dir / "calibration.json").read_text())
    baselines = json.loads((run_dir / "baselines.json").read_text())
    test = pd.read_csv(run_dir / "predictions.csv")
    base = pd.read_csv(run_dir / "baseline_predictions.csv").set_index("stay_id").loc[test["stay_id"]]
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
        {
            f"{FUSION}, after calibration" if name == FUSION else name: {m: b[m] for m in CALIBRATION}
            for name, b in scored_all.items()
        }
    )
    for name, p in zip(calibration, [uncalibrated, *scores.values()]):
        calibration[name]["calibration_error_by_chance"] = calibration_error_by_chance(p)
    outcome_lines, by_outcome = _outcomes(ts, test, scores, meta["outcome"], resamples)
    comparisons, comparison_lines = _comparisons(run_dir, y, resamples)
    subgroup_lines, subgroups = _subgroups(ts, test, threshold, resamples)
    cohort_lines = _cohort(ts, run_dir, meta["outcome"], data, test)
    (run_dir / "metrics.json").write_text(
        json.dumps(
            {
                "models": table,
                "paired_differences": differences,
                "calibration": calibration,
                "comparisons": comparisons,
                "subgroups": subgroups,
                "outcomes": by_outcome,
            },
            indent=2,
        )
    )
    plots = _plots(run_dir, y, scores, test["probability_uncalibrated"].to_numpy(), cv)
    importance_lines, importance_plot = _importance(ts, run_dir, test)
    plots.append(importance_plot)

    primary = outcome_name(meta["outcome"], ts.cohort)
    lines = [
        f"# Evaluation of {run_dir.name}",
        "",
        population(ts.cohort) + _reach_sentence(ts),
        "",
        f"Outcome: {primary} (`{meta['outcome']}`"
        + (", the primary label" if meta["outcome"] == OUTCOMES[0] else f"; the primary label is {OUTCOMES[0]}")
        + f"); {data['stays']} cohort stays ({data['prevalence']:.1%} positive), "
        f"{data['train']} for training and cross-validation, {data['test']} held out "
        f"({data.get('split', 'patient')} split). Best setting {meta['setting'] or '(defaults)'}, mean CV AUROC "
        f"{cv['cv_auroc']:.3f}. The model is the ensemble of that setting's {len(meta['members'])} fold models, "
        f"each calibrated on its own out-of-fold predictions ({calibrator['method']}, chosen by cross-validated "
        "Brier: "
        + ", ".join(f"{m} {b:.4f}" for m, b in calibrator["cv_brier"].items())
        + f"), their calibrated probabilities averaged; decision threshold {threshold:.3f}, the Youden point of the "
        "calibrated out-of-fold predictions.",
        "",
        "Baselines: logistic regression and gradient boosting on the fusion model's inputs, tuned by the same "
        "cross-validation folds ("
        + "; ".join(f"{n}: {b['params']}" for n, b in baselines.items() if b["params"])
        + "), preprocessing fitted inside each fold, calibrated and thresholded the same way; the clinical scores "
        "at T, SOFA (the 24-hour SOFA of the last hour by T) and OASIS (over the 24 hours before T), both from "
        "values stored by T, each as a risk by isotonic regression on the training part.",
        "",
        "## Performance on the held-out test set",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for name, metrics in table.items():
        lines.append(f"| {name} | " + " | ".join(_ci(metrics[m]) for m in METRICS) + " |")
    lines += [
        "",
        f"Each at its own threshold; 95% bootstrap intervals over test stays, {resamples} resamples, the "
        "same resamples for every model.",
        "",
        "## Paired differences: fusion model minus each baseline",
        "",
        "| baseline | AUROC difference | AUPRC difference | AUROC verdict |",
        "|---|---:|---:|---|",
    ]
    for name, d in differences.items():
        lines.append(f"| {name} | {_ci(d['auroc'])} | {_ci(d['auprc'])} | {_verdict(d['auroc'])} |")
    lines += [
        "",
        "A difference is called better or worse only when its paired 95% interval excludes 0.",
        "",
        "## Calibration",
        "",
        "| model | " + " | ".join(CALIBRATION) + " | calibration error by chance |",
        "|---|" + "---:|" * (len(CALIBRATION) + 1),
    ]
    for name, metrics in calibration.items():
        lines.append(
            f"| {name} | "
            + " | ".join(_ci(metrics[m]) for m in CALIBRATION)
            + f" | {metrics['calibration_error_by_chance']:.3f} |"
        )
    lines += [
        "",
        "Calibration error: the stay-weighted mean |observed rate - mean prediction| over 10 quantile bins "
        "(the bins of calibration.png). Slope: 1 is ideal, below 1 means too extreme predictions. Intercept "
        "(calibration-in-the-large): 0 is ideal, above 0 means risks under-estimated on average. Calibration error by "
        "chance: what a perfectly calibrated model with these probabilities would show on this many stays "
        "(outcomes drawn from its own probabilities, 200 draws); a model near it is as calibrated as the test "
        "set can tell. On a small test set "
        "the calibration error's bootstrap interval can lie above its value: binned calibration error grows with "
        "the noise that resampling adds to each bin, so read the interval as an upper range. A slope with no "
        "finite estimate on a resample (perfect separation) is left out of its interval.",
        "",
    ]
    lines += outcome_lines + comparison_lines + subgroup_lines + importance_lines + cohort_lines
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    write_html_report(report.read_text(), run_dir)  # report.html: the same report, plots embedded
    _model_card(ts, run_dir, meta, data, cv, calibrator, table[FUSION], calibration[f"{FUSION}, after calibration"])
    return report


def _reach_sentence(ts: TrainingSet) -> str:
    shares = reach(ts.flow) if ts.flow is not None else None
    if not shares:
        return ""
    stays, died, kept, kept_died = shares
    return (
        f" {kept / max(stays, 1):.0%} of the first Sepsis-3 stays ({kept} of {stays}) and "
        f"{kept_died / max(died, 1):.0%} of their in-hospital deaths ({kept_died} of {died}) reach the cohort "
        "(cohort flow below)."
    )


def _outcomes(
    ts: TrainingSet, test: pd.DataFrame, scores: dict[str, np.ndarray], primary: str, resamples: int
) -> tuple[list[str], dict]:
    """Discrimination of the same test predictions for every label of the cohort: the primary one the models
    were trained for, and the secondary and sensitivity labels."""
    cohort = ts.cohort.set_index("stay_id").loc[test["stay_id"]]
    ranking = lambda y_, p_: {"auroc": auroc(y_, p_), "auprc": auprc(y_, p_)}  # noqa: E731
    lines = [
        "## Every label",
        "",
        f"The models were trained for {outcome_name(primary, ts.cohort)}; below, the same held-out predictions "
        "scored against each label of the cohort (docs/COHORT.md): the primary label first, in-hospital death "
        "(secondary), and the primary label counting a discharge to hospice as death (sensitivity). 95% "
        f"bootstrap intervals, {resamples} resamples, the same for every model and label.",
        "",
        "| label | positive in test | model | auroc | auprc |",
        "|---|---:|---|---:|---:|",
    ]
    out: dict = {}
    for outcome in OUTCOMES:
        if outcome not in cohort or outcome == "died_in_icu":
            continue
        y = cohort[outcome].to_numpy(dtype=np.int64)
        if len(np.unique(y)) < 2:
            continue
        name = outcome_name(outcome, ts.cohort) + (" (trained for)" if outcome == primary else "")
        out[outcome] = {}
        for i, (model, p) in enumerate(scores.items()):
            m = bootstrap(y, p, ranking, resamples, label=f"{outcome}: {model}")
            out[outcome][model] = m
            head = f"{name} | {y.sum()} ({y.mean():.1%})" if i == 0 else " | "
            lines.append(f"| {head} | {model} | {_ci(m['auroc'])} | {_ci(m['auprc'])} |")
    return lines + [""], out


def _comparisons(run_dir: Path, y: np.ndarray, resamples: int) -> tuple[dict, list[str]]:
    """The loss comparison (BCE vs focal loss) and the modality ablation, from the run's experiment
    predictions, each as a paired difference against the final model."""
    path = run_dir / "experiment_predictions.csv"
    if not path.exists():
        return {}, []
    variants = pd.read_csv(path)
    thresholds = json.loads((run_dir / "experiment_thresholds.json").read_text())
    names = ("accuracy", "specificity", "f1", "sensitivity", "auroc", "brier")
    out: dict = {"loss": {}, "ablation": {}}
    lines = [
        "## Loss comparison: class-weighted BCE against focal loss",
        "",
        "Both trained the same way (the chosen setting on the same folds, a calibrated ensemble of the fold "
        "models), each at its own threshold (Youden on its calibrated out-of-fold predictions).",
        "",
        "| loss | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for column, label in (("bce", "BCE (gamma 0, class-weighted)"), ("focal", "focal loss")):
        m = bootstrap_metrics(y, variants[column].to_numpy(), thresholds[column], resamples, label=label)
        out["loss"][column] = m
        lines.append(f"| {label}, threshold {thresholds[column]:.3f} | " + " | ".join(_ci(m[k]) for k in names) + " |")
    d = paired_difference(y, variants["focal"].to_numpy(), variants["bce"].to_numpy(), resamples, label="focal - bce")
    out["loss"]["focal - bce"] = d
    lines += [
        "",
        f"Focal minus BCE: AUROC {_ci(d['auroc'])}, AUPRC {_ci(d['auprc'])} ({_verdict(d['auroc'])}).",
        "",
        "## Modality ablation",
        "",
        "Each variant trained like the final model with only these modalities; the difference is the final "
        "model (every modality) minus the variant, paired.",
        "",
        "| modalities | auroc | auprc | final model minus variant, AUROC | AUPRC | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    full = [
        c for c in variants.columns if c not in ("stay_id", "bce", "focal") and variants[c].equals(variants["focal"])
    ]
    for column in variants.columns:
        if column in ("stay_id", "bce", "focal"):
            continue
        m = bootstrap(
            y,
            variants[column].to_numpy(),
            lambda y_, p_: {"auroc": auroc(y_, p_), "auprc": auprc(y_, p_)},
            resamples,
            label=column,
        )
        row = {"metrics": m}
        if column in full:
            lines.append(f"| {column} (the final model) | {_ci(m['auroc'])} | {_ci(m['auprc'])} | | | |")
        else:
            d = paired_difference(
                y, variants["focal"].to_numpy(), variants[column].to_numpy(), resamples, label=f"final - {column}"
            )
            row["final_minus_variant"] = d
            lines.append(
                f"| {column} | {_ci(m['auroc'])} | {_ci(m['auprc'])} | {_ci(d['auroc'])} | {_ci(d['auprc'])} "
                f"| {'final ' + _verdict(d['auroc'])} |"
            )
        out["ablation"][column] = row
    return out, lines + [""]


def _subgroups(ts: TrainingSet, test: pd.DataFrame, threshold: float, resamples: int) -> tuple[list[str], dict]:
    static = ts.features.static.assign(stay_id=ts.features.stay_id).set_index("stay_id").loc[test["stay_id"]]
    groups = {"female": static["female"].to_numpy() == 1, "male": static["female"].to_numpy() == 0}
    age = static["age"].to_numpy()
    for low, high in ((18, 50), (50, 65), (65, 80), (80, 200)):
        groups[f"age {low}-{high - 1}" if high < 200 else f"age {low}+"] = (age >= low) & (age < high)
    lines = [
        "## Subgroups (fusion model)",
        "",
        "| subgroup | stays | deaths | auroc | sensitivity | specificity | observed rate | mean predicted "
        "| calibration error | slope | intercept |",
        "|---|" + "---:|" * 10,
    ]
    y, p = test["outcome"].to_numpy(), test["probability"].to_numpy()
    out = {}
    for name, mask in groups.items():
        if mask.sum() < 10 or len(np.unique(y[mask])) < 2:
            lines.append(f"| {name} | {mask.sum()} | {y[mask].sum()} | too few | | | | | | | |")
            continue
        m = bootstrap_metrics(y[mask], p[mask], threshold, resamples, label=name)
        c = calibration_metrics(y[mask], p[mask])
        out[name] = {"metrics": m, "calibration": c, "stays": int(mask.sum()), "deaths": int(y[mask].sum())}
        lines.append(
            f"| {name} | {mask.sum()} | {y[mask].sum()} | "
            + " | ".join(_ci(m[k]) for k in ("auroc", "sensitivity", "specificity"))
            + f" | {y[mask].mean():.3f} | {p[mask].mean():.3f} | {c['calibration_error']:.3f} | "
            f"{c['calibration_slope']:.2f} | {c['calibration_intercept']:.2f} |"
        )
    return lines + ["", "Calibration per subgroup: point estimates (small subgroups vary a lot).", ""], out


def _cohort(ts: TrainingSet, run_dir: Path, outcome: str, data: dict, test: pd.DataFrame) -> list[str]:
    """The cohort's characteristics by outcome, and its flow as numbers and a diagram."""
    table = characteristics(ts, outcome)
    table.to_csv(run_dir / "cohort_characteristics.csv", index=False)
    lines = [
        f"## Cohort characteristics (by {outcome_name(outcome, ts.cohort)})",
        "",
        "Features and clinical scores as known at the prediction time T; the retrospective SOFA at onset, the hours "
        "from onset and the outcomes describe the stays. Median [IQR] with Mann-Whitney U, n (%) with chi-squared "
        "(Fisher's exact test for 2 x 2 tables with an expected count under 5); the outcomes are described, not "
        "tested. The last column: the first Sepsis-3 stays that ended before T (cohort flow), where known.",
        "",
    ]
    lines += markdown(table) + [""]
    if ts.flow is not None:
        y_test = test["outcome"].to_numpy()
        y_all = ts.labels(outcome)
        split = {
            "training part": (data["train"], int(y_all.sum() - y_test.sum())),
            "held-out test": (data["test"], int(y_test.sum())),
        }
        flow_diagram(ts.flow, split, run_dir / "cohort_flow.png")
        lines += (
            ["## Cohort flow", ""]
            + flow_lines(ts.flow, prediction_hours(ts.cohort))
            + ["", "![cohort_flow](cohort_flow.png)", ""]
        )
    return lines


def _model_card(
    ts: TrainingSet, run_dir: Path, meta: dict, data: dict, cv: dict, calibrator: dict, metrics: dict, calibration: dict
) -> Path:
    """A model card along the TRIPOD+AI items: what the model predicts, from what, how it was built and
    tuned, how well it did (with intervals), and where it must not be used."""
    f = ts.features
    missing_static = float(np.isnan(f.static_numeric).mean())
    missing_latest = (
        float(np.isnan(f.windows[:, -1][f.window_mask[:, -1]]).mean()) if f.window_mask[:, -1].any() else 1.0
    )
    states = json.loads((run_dir / "preprocess.json").read_text())["members"]
    dropped = sorted({name for s in states for name in s["dropped"]})
    config = (run_dir / "config.yaml").read_text()
    lines = [
        f"# Model card: {run_dir.name}",
        "",
        "## Task and horizon",
        f"Predicts {outcome_name(meta['outcome'], ts.cohort)} (`{meta['outcome']}`) for adult ICU stays meeting "
        f"Sepsis-3 (mimic-code definition, first such stay per patient), at the prediction time T = recognition + "
        f"{prediction_hours(ts.cohort):g} h, where recognition is the first time one of the stay's Sepsis-3 pairs "
        "was complete from the record: its antibiotic started, its culture known and a 24-hour SOFA >= 2 in its "
        f"window ({recognition_rules(ts.cohort) or 'the rules of the build'}); from what was known at T (Feast "
        "point-in-time retrieval; labs from their storetime, notes from theirs, no discharge summaries, "
        "comorbidities from earlier admissions only). Stays that ended before T are excluded. "
        + population(ts.cohort)
        + _reach_sentence(ts)
        + " Secondary and sensitivity labels (in-hospital death; death or hospice discharge within the horizon) "
        "are scored in report.md.",
        "",
        "## Data and cohort flow",
        f"{data['stays']} cohort stays ({data['prevalence']:.1%} positive); {data['train']} for training and "
        f"tuning, {data['test']} held out ({data.get('split', 'patient')} split, grouped by patient). Data "
        f"fingerprint `{data['fingerprint'][:16]}`. Cohort flow and characteristics: report.md.",
        "",
        "## Predictors",
        f"Static baseline ({len(f.layout.static)} variables, the most relevant non-redundant ones kept), a "
        f"sequence of {f.layout.sequence_steps} steps {f.layout.stride_hours} h apart up to T of "
        f"{len(f.layout.windows)} labs and vitals (per step the value known then, whether it was observed in the "
        "step, the hours since it was charted, the step's time), and the last "
        f"{len(f.layout.note_views)} notes, each embedded, with its age (Feast feature service "
        f"`{meta['feature_service']}`).",
        "",
        "## Missing data",
        f"Static variables missing: {missing_static:.1%} of values; latest step: {missing_latest:.1%} of "
        "values (a lab never measured since the hospital admission). Static variables missing in more than "
        f"{states[0]['config']['max_missing']:.0%} of training stays are dropped (in at least one fold: "
        f"{', '.join(dropped) or 'none'}); the rest mean/mode-imputed with missing-value flags; sequence steps before "
        "the hospital admission are masked.",
        "",
        "## Model, tuning and calibration",
        f"Static MLP + window BiLSTM + note BiLSTM, early fusion, focal loss. Grid search by "
        f"{len(meta['members'])}-fold patient-grouped cross-validation of the training part, each fold model "
        f"early-stopped on an inner validation split of its own training rows; chosen setting "
        f"{meta['setting'] or '(defaults)'} (mean CV AUROC {cv['cv_auroc']:.3f}). The final model is the ensemble of "
        f"that setting's fold models, each calibrated by {calibrator['method']} regression fitted on its own "
        f"out-of-fold predictions (chosen over the alternative by cross-validated Brier score), their calibrated "
        f"probabilities averaged; decision threshold "
        f"{meta['threshold']:.3f} (Youden, calibrated out-of-fold predictions).",
        "",
        "Settings:",
        "",
        "```yaml",
        config.rstrip(),
        "```",
        "",
        "## Performance on the held-out test set",
        f"AUROC {_ci(metrics['auroc'])}; AUPRC {_ci(metrics['auprc'])}; sensitivity {_ci(metrics['sensitivity'])}; "
        f"specificity {_ci(metrics['specificity'])}; Brier {_ci(calibration['brier'])}; calibration error "
        f"{_ci(calibration['calibration_error'])}; calibration slope {_ci(calibration['calibration_slope'], 2)}, "
        f"intercept {_ci(calibration['calibration_intercept'], 2)}. Paired differences against the baselines, the "
        "loss comparison, the modality ablation, decision curves and subgroups: report.md.",
        "",
        "## Intended use and limits",
        "Research use: studying prognosis in sepsis and the value of each data modality, and as a template for "
        "point-in-time-correct feature pipelines. Not a medical device; not validated prospectively or outside "
        "the hospital the data come from (MIMIC-IV: one US academic centre, 2008-2019); not for decisions about "
        "individual patients. Trained on synthetic data it describes the generator, not patients. Performance "
        "in small subgroups is uncertain (see the intervals); recalibrate before use in another population.",
        "",
    ]
    card = run_dir / "model_card.md"
    card.write_text("\n".join(lines))
    return card


def _plots(
    run_dir: Path, y: np.ndarray, scores: dict[str, np.ndarray], uncalibrated: np.ndarray, cv: dict
) -> list[Path]:
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
    paths.append(_save(fig, run_dir / "calibration.png"))
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
    paths.append(_save(fig, run_dir / "decision_curve.png"))
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
    paths.append(_save(fig, run_dir / "learning_curve.png"))
    return paths


def _importance(ts: TrainingSet, run_dir: Path, test: pd.DataFrame, shown: int = 20) -> tuple[list[str], Path]:
    """Global importance on the test stays: each input's mean absolute contribution to the logit
    (integrated gradients of the final model, explain.py), as importance.csv, a plot and a table."""
    index = {s: i for i, s in enumerate(ts.features.stay_id)}
    missing = [s for s in test["stay_id"] if s not in index]
    if missing:
        raise StudyError(f"test stays {missing[:5]} of {run_dir} are not in this training set: evaluate on its data")
    features = ts.features.take(np.array([index[s] for s in test["stay_id"]], dtype=np.int64))
    trained = load_run(run_dir)
    total = len(features) * len(trained.ensemble.members)
    with tqdm(total=total, desc="explanations", unit="stay", leave=False, mininterval=1.0) as bar:
        explanation = trained.explain(features, progress=bar.update)
    table = explanation.importance()
    table.to_csv(run_dir / "importance.csv", index=False)
    top = table.head(shown).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.2))
    colors = {"static": "tab:blue", "windows": "tab:orange", "notes": "tab:green"}
    ax.barh(top["input"], top["mean_abs_contribution"], color=[colors[m] for m in top["modality"]])
    for modality, color in colors.items():
        ax.barh([], [], color=color, label=modality)
    ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="mean |contribution| to the logit", title=f"What the model relied on ({len(features)} test stays)")
    plot = _save(fig, run_dir / "importance.png")
    lines = [
        "## What the model relied on",
        "",
        f"Integrated gradients of the final model on the {len(features)} test stays, grouped per static feature, "
        "per panel feature (its values, flags and times since charted over every step) and per note by recency, "
        "against a reference stay with the same record timing, training-mean values and empty note embeddings "
        "(model/explain.py). Mean absolute contribution to the logit, largest first (importance.csv has every "
        "input; importance.png the first 20). Importance is what the model used, not a cause.",
        "",
        "| input | modality | mean abs contribution | mean contribution |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| {r.input} | {r.modality} | {r.mean_abs_contribution:.3f} | {r.mean_contribution:+.3f} |"
        for r in table.head(10).itertuples()
    ]
    return lines + [""], plot


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
