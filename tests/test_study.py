"""The study protocol end to end on the synthetic training set: split, CV grid search, final model, run
folder, reload, evaluation report, and a refusal to score other features."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest

from sepsis_fusion.model.config import load_config
from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.evaluate import evaluate
from sepsis_fusion.model.inputs import OUTCOMES
from sepsis_fusion.model.metrics import auroc, bootstrap
from sepsis_fusion.model.predictor import Predictor
from sepsis_fusion.model.study import run_study
from sepsis_fusion.model.subgroups import MIN_PER_CLASS
from sepsis_fusion.pipelines.synth.truth import read_truth

INTERVAL = re.compile(r"(-?\d+\.\d+) \((-?\d+\.\d+) to (-?\d+\.\d+)\)")


@pytest.fixture(scope="module")
def ts(synthetic_training_set):
    return synthetic_training_set


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


@pytest.fixture(scope="module")
def report(ts, run_dir, synthetic):
    """The run evaluated once, with the generator's truth (the synthetic data's ceiling)."""
    return evaluate(ts, run_dir, resamples=50, truth=read_truth(synthetic))


def test_run_folder_holds_everything_to_reload_and_rescore(ts, run_dir):
    for name in (
        "model.safetensors",
        "model.json",
        "preprocess.json",
        "calibration.json",
        "config.yaml",
        "cv.json",
        "predictions.csv",
        "oof_predictions.csv",
        "baseline_predictions.csv",
        "baselines.json",
        "data.json",
        "versions.json",
    ):
        assert (run_dir / name).exists(), name
    cv = json.loads((run_dir / "cv.json").read_text())
    assert len(cv["folds"]) == 2 * 3 and cv["best_setting"]["dropout"] in (0.1, 0.3)
    test = pd.read_csv(run_dir / "predictions.csv")
    train = pd.read_csv(run_dir / "oof_predictions.csv")
    subjects = ts.cohort.set_index("stay_id")["subject_id"]
    assert not set(subjects[test["stay_id"]]) & set(subjects[train["stay_id"]])  # grouped by patient
    assert 0.15 < len(test) / len(ts.cohort) < 0.25
    trained = Predictor(run_dir)
    index = {s: i for i, s in enumerate(ts.features.stay_id)}
    from sepsis_fusion.model.protocol import subset

    again = trained.predict(subset(ts.features, np.array([index[s] for s in test["stay_id"]])))
    np.testing.assert_allclose(again, test["probability"], rtol=1e-5)
    # the final model is the calibrated ensemble of the chosen setting's fold models
    assert len(trained.ensemble.members) == 3
    raw = trained.predict_uncalibrated(subset(ts.features, np.array([index[s] for s in test["stay_id"]])))
    np.testing.assert_allclose(raw, test["probability_uncalibrated"], rtol=1e-5)
    calibration = json.loads((run_dir / "calibration.json").read_text())
    assert calibration["method"] in ("platt", "isotonic") and set(calibration["cv_brier"]) == {"platt", "isotonic"}
    oof = pd.read_csv(run_dir / "oof_predictions.csv")
    assert oof["oof_probability"].notna().all() and sorted(oof["fold"].unique()) == [0, 1, 2]
    # baselines tuned by the same folds: every setting of their grids scored
    baselines = json.loads((run_dir / "baselines.json").read_text())
    assert len(baselines["logistic regression"]["cv_auroc"]) == 3
    assert len(baselines["gradient boosting"]["cv_auroc"]) == 2 * 2 * 2


def test_evaluation_report_with_intervals_baselines_and_plots(ts, run_dir, report):
    text = report.read_text()
    for name in (
        "fusion model",
        "logistic regression",
        "gradient boosting",
        "SOFA at T",
        "auroc",
        "## Paired differences",
        "fusion model, before calibration",
        "fusion model, after calibration",
        "calibration_slope",
        "## Loss comparison",
        "## Cohort characteristics",
        "## Cohort flow",
        "recognition",
        "OASIS at T",
        "## Every label",
        "in-hospital death",
        "death or discharge to hospice within 28 days after T",
        "Target population: adults at their first ICU stay meeting Sepsis-3",
        "a culture counted from when it was drawn",
        "of the first Sepsis-3 stays",
        "reach the cohort",
        "left the ICU alive before T",
    ):
        assert name in text, name
    assert text.index("Target population") < text.index("## Performance")  # the report's first paragraph
    flow = ts.flow.set_index("step")
    first, last = flow.loc[4], flow.iloc[-1]
    assert (
        f"{last['stays'] / first['stays']:.0%} of the first Sepsis-3 stays ({last['stays']} of {first['stays']}) and "
        f"{last['in_hospital_deaths'] / first['in_hospital_deaths']:.0%} of their in-hospital deaths"
    ) in text
    assert "Table 1 (" not in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    auroc = metrics["models"]["fusion model"]["auroc"]
    assert auroc["low"] <= auroc["value"] <= auroc["high"] and auroc["value"] > 0.5
    for baseline in ("logistic regression", "gradient boosting", "SOFA at T", "OASIS at T"):
        d = metrics["paired_differences"][baseline]["auroc"]
        assert d["low"] <= d["value"] <= d["high"]
        assert d["value"] == pytest.approx(auroc["value"] - metrics["models"][baseline]["auroc"]["value"])
    assert {"brier", "calibration_error", "calibration_slope", "calibration_intercept"} <= set(
        metrics["calibration"]["fusion model, after calibration"]
    )
    table = pd.read_csv(run_dir / "cohort_characteristics.csv")
    assert {"variable", "overall", "survivors", "non-survivors", "p"} <= set(table.columns)
    assert table["variable"].str.startswith("age").any() and table["variable"].str.startswith("SOFA at T").any()
    assert table["variable"].str.startswith("OASIS at T").any() and table["variable"].str.startswith("race").any()
    excluded = table.set_index("variable")["excluded: ended before T"]
    assert excluded["stays"] == str(int(last["removed"]))
    outcome_rows = table[
        table["variable"].str.startswith(("death within", "death or", "in-hospital death", "ICU death"))
    ]
    assert len(outcome_rows) == 4 and outcome_rows["p"].isna().all()  # labels are described, not tested
    card = (run_dir / "model_card.md").read_text()
    assert "Intended use and limits" in card and "culture_known_at: charttime" in card and "Target population" in card
    assert set(metrics["outcomes"]) == {"died_within_horizon", "died_in_hospital", "died_or_hospice_within_horizon"}
    for png in (
        "roc.png",
        "pr.png",
        "calibration.png",
        "decision_curve.png",
        "cohort_flow.png",
        "learning_curve.png",
        "importance.png",
    ):
        assert (run_dir / png).stat().st_size > 5000
    # global importance: every input of the layout, on the test stays, in the report
    importance = pd.read_csv(run_dir / "importance.csv")
    layout = ts.features.layout
    assert len(importance) == len(layout.static) + len(layout.panel) + len(layout.note_views)
    assert (
        importance["mean_abs_contribution"].is_monotonic_decreasing and importance["mean_abs_contribution"].iloc[0] > 0
    )
    assert "## What the model relied on" in text and f"| {importance['input'].iloc[0]} |" in text


def intervals(node, path=""):
    """Every {value, low, high} in a metrics.json tree, with its path."""
    if isinstance(node, dict):
        if {"value", "low", "high"} <= set(node):
            yield path, node
        for key, child in node.items():
            yield from intervals(child, f"{path}/{key}")


def test_the_report_a_reviewer_asks_for(ts, run_dir, report):
    """Every interval contains its estimate (metrics.json and the Markdown); no subgroup with too few events
    shows a metric; every model at the same operating points; Table 1 by training/test part with physiology
    at T and no outcome p-value; a decision curve with a band; the model card's headline; the data's ceiling."""
    text, card = report.read_text(), (run_dir / "model_card.md").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    checked = 0
    for path, m in intervals(metrics):
        if not np.isnan([m["value"], m["low"], m["high"]]).any():
            assert m["low"] - 1e-9 <= m["value"] <= m["high"] + 1e-9, (path, m)
            checked += 1
    assert checked > 200
    for document in (text, card):
        for value, low, high in INTERVAL.findall(document):
            assert float(low) <= float(value) <= float(high), (value, low, high)
    # the calibration error: estimate, chance level, and a (bias-corrected) interval around the estimate
    fused = metrics["calibration"]["fusion model, after calibration"]
    ce = fused["calibration_error"]
    assert ce["low"] <= ce["value"] <= ce["high"]
    assert 0 < fused["calibration_error_by_chance"] < 1
    # subgroups: sex, age, race, insurance, first care unit, admission type; "too few" below the floor
    rows = [line.split(" | ") for line in text.split("## Subgroups")[1].split("\n\n")[1].splitlines()[2:]]
    assert {row[0].lstrip("| ").split(":")[0] for row in rows} == {
        "sex",
        "age",
        "race",
        "insurance",
        "first care unit",
        "admission type",
    }
    for row in rows:
        stays, deaths = int(row[1]), int(row[2])
        too_few = deaths < MIN_PER_CLASS or stays - deaths < MIN_PER_CLASS
        assert (row[3] == "too few") == too_few, row
    assert any(row[3] == "too few" for row in rows) and any(row[3] != "too few" for row in rows)
    scored = [s for s in metrics["subgroups"].values() if s["metrics"] is not None]
    assert all(s["events"] >= MIN_PER_CLASS for s in scored)
    assert all("observed_expected" in s["metrics"] for s in scored)
    # every model at the same risk thresholds and at 80% sensitivity
    for point in ("| risk >= 10% | fusion model |", "| risk >= 30% |", "| sensitivity 80% | fusion model (risk >= "):
        assert point in text, point
    for model, points in metrics["operating_points"].items():
        assert {"sensitivity@0.2", "specificity@0.2", "ppv@0.2", "specificity@sens"} <= set(points), model
        assert points["sensitivity@sens"]["value"] >= 0.8
    # verdicts on AUROC and AUPRC, Holm-adjusted over every paired comparison
    assert "| baseline | AUROC difference | AUROC verdict | AUPRC difference | AUPRC verdict |" in text
    assert "Holm" in text and all("p_holm" in d["auprc"] for d in metrics["paired_differences"].values())
    # Table 1: training/test/excluded columns, physiology at T, no note / no lab rows, no outcome p-value
    table = pd.read_csv(run_dir / "cohort_characteristics.csv").set_index("variable")
    assert {"training part", "test part", "excluded: ended before T"} <= set(table.columns)
    assert table.loc["stays", "test part"] == str(len(pd.read_csv(run_dir / "predictions.csv")))
    for row in ("lactate, mmol/L, latest known at T", "mean arterial pressure", "creatinine", "no note known by T"):
        assert table.index.str.startswith(row).any(), row
    assert table.index.str.startswith("race:").any() and table.index.str.startswith("insurance:").any()
    assert table[table.index.str.contains("death")]["p"].isna().all()
    # the decision curve: a band over the stated range, and its reading
    curve = metrics["decision_curve"]
    assert curve["threshold"][0] == 0.05 and curve["threshold"][-1] == 0.5
    assert all(lo <= nb <= hi for lo, nb, hi in zip(curve["low"], curve["net_benefit"], curve["high"]))
    assert any(hi - lo > 0.01 for lo, hi in zip(curve["low"], curve["high"]))
    assert "## Decision curves\n\nOver risk thresholds 5% to 50%, the fusion model's net benefit" in text
    # the model card: headline table, ablation, encoder, fingerprint, ceiling
    assert "| **fusion model** |" in card and "| logistic regression |" in card and "| OASIS at T |" in card
    assert "Modality ablation" in card and "Note encoder: `" in card and str(ts.encoder["dim"]) in card
    assert f"forward pass in {ts.encoder['precision']}" in card
    assert json.loads((run_dir / "data.json").read_text())["fingerprint"] in card
    assert "the generator's true probabilities of in-hospital death reach AUROC" in card
    assert "The data's own ceiling" in text


def test_a_model_refuses_features_it_was_not_trained_on(ts, run_dir):
    trained = Predictor(run_dir)
    other = dataclasses.replace(ts.features.layout, panel=ts.features.layout.panel[:-1] + ("surprise_max",))
    features = dataclasses.replace(ts.features, layout=other)
    with pytest.raises(StudyError, match="surprise_max"):
        trained.predict(features)


def test_too_few_stays_or_one_class_is_a_clear_error(ts, tmp_path):
    one_class = dataclasses.replace(ts, cohort=ts.cohort.assign(died_within_horizon=False))
    with pytest.raises(StudyError, match="too few to train"):
        run_study(one_class, load_config(None), tmp_path / "run")
    empty = dataclasses.replace(ts, cohort=ts.cohort.iloc[:0])
    with pytest.raises(StudyError, match="the cohort is empty: no ICU stay in this data meets the cohort's criteria"):
        run_study(empty, load_config(None), tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()


class Interrupt(Exception):
    pass


def test_an_interrupted_run_keeps_the_old_run_folder_and_resumes_its_finished_folds(ts, run_dir, tmp_path):
    import shutil

    # another study than the one already in the folder (another seed, fewer epochs, no comparisons)
    config = load_config(
        None,
        [
            "seed=1",
            "folds=3",
            "grid={dropout: [0.1, 0.3]}",
            "train.max_epochs=5",
            "train.patience=3",
            "experiments=false",
        ],
    )
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    weights = (out / "model.safetensors").read_bytes()

    def stop_after_two_folds(line: str) -> None:
        if "fold 2/3" in line:
            raise Interrupt  # as Ctrl-C would, after the second fold was saved

    with pytest.raises(Interrupt):
        run_study(ts, config, out, progress=stop_after_two_folds)
    assert (out / "model.safetensors").read_bytes() == weights  # the earlier run folder is untouched
    assert len(list((tmp_path / ".run.partial" / "folds").glob("*.json"))) == 2

    lines = []
    resumed = run_study(ts, config, out, progress=lines.append)
    assert any("2 cross-validation fold(s) already done" in line for line in lines)
    assert sum(" fold " in line and "validation AUROC" in line for line in lines) == 2 * 3 - 2  # trained now
    assert not (tmp_path / ".run.partial").exists() and not (tmp_path / ".run.old").exists()
    assert (out / "model.safetensors").read_bytes() != weights

    whole = run_study(ts, config, tmp_path / "uninterrupted", progress=lambda line: None)
    # the same model: setting and calibration exactly, numbers to float precision (CPU training is seeded)
    assert (resumed.setting, resumed.calibration) == (whole.setting, whole.calibration)
    assert resumed.threshold == pytest.approx(whole.threshold, rel=1e-6)
    assert resumed.test_auroc == pytest.approx(whole.test_auroc, rel=1e-6)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "predictions.csv"), pd.read_csv(tmp_path / "uninterrupted" / "predictions.csv"), rtol=1e-6
    )


def test_no_notes_at_all_trains_without_the_note_branch(ts, tmp_path):
    n, k = ts.features.note_mask.shape
    no_notes = dataclasses.replace(
        ts,
        features=dataclasses.replace(
            ts.features, notes=np.zeros((n, k, 0), np.float32), note_mask=np.zeros((n, k), bool)
        ),
    )
    lines = []
    # with the ablation variants each tuned on the grid (ablation_grid), as a reviewer may ask
    overrides = ["folds=2", "train.max_epochs=2", "ablation_grid=true", "grid={dropout: [0.1, 0.3]}"]
    run_study(no_notes, load_config(None, overrides), tmp_path / "run", progress=lines.append)
    assert any("trained without its note branch" in line for line in lines)
    assert any("2 ablation variants tuned on the grid" in line for line in lines)
    settings = json.loads((tmp_path / "run" / "experiment_settings.json").read_text())
    assert settings["static"]["tuned"] and settings["static"]["setting"]["dropout"] in (0.1, 0.3)
    assert settings["static"]["setting"]["modalities"] == ["static"] and not settings["bce"]["tuned"]
    trained = Predictor(tmp_path / "run")
    assert all(m.model.config.modalities == ("static", "sequence") for m in trained.ensemble.members)
    assert np.isfinite(trained.predict(no_notes.features)).all()
    ablation = pd.read_csv(tmp_path / "run" / "experiment_predictions.csv").columns
    assert "static+sequence" in ablation and not [c for c in ablation if "notes" in c]


def test_leakage_smoke_outcomes_shuffled_across_patients_give_chance_for_every_model(ts, tmp_path):
    """The whole protocol with the outcome shuffled across patients: nothing can predict it, so a test AUROC
    whose interval excludes 0.5 would mean the protocol leaks (labels into features, test rows into training,
    early stopping or calibration). This test set is small (about 40 stays), so one shuffle's AUROC swings by
    +-0.2 by chance alone; five shuffles are run and, per model, the mean of their AUROCs must have an
    interval (from each run's bootstrap) that contains 0.5: 98.75% per model, so that the four models
    together falsely alarm in 5% of data sets (three shuffles at 95% each did, once: gradient boosting
    0.68, 0.70, 0.52 on one data set, 0.49 +- 0.12 over ten further shuffles of it). A leaking protocol
    memorises: AUROC near 1."""
    config = load_config(None, ["folds=3", "train.max_epochs=6", "train.patience=3", "experiments=false"])
    aurocs: dict[str, list[dict]] = {}
    for seed in range(5):
        shuffled = np.random.default_rng(seed).permutation(ts.cohort[OUTCOMES[0]].to_numpy())
        noise = dataclasses.replace(ts, cohort=ts.cohort.assign(**{OUTCOMES[0]: shuffled}))
        run_study(noise, config, tmp_path / f"run{seed}", progress=lambda line: None)
        test = pd.read_csv(tmp_path / f"run{seed}" / "predictions.csv")
        scores = pd.read_csv(tmp_path / f"run{seed}" / "baseline_predictions.csv").assign(
            **{"fusion model": test["probability"].to_numpy()}
        )
        assert (scores["stay_id"] == test["stay_id"]).all()
        for name in ("fusion model", "logistic regression", "gradient boosting", "SOFA at T"):
            m = bootstrap(test["outcome"], scores[name], lambda y_, p_: {"auroc": auroc(y_, p_)}, 300, seed)["auroc"]
            aurocs.setdefault(name, []).append(m)
    for name, runs in aurocs.items():
        mean = np.mean([m["value"] for m in runs])
        se = np.sqrt(np.sum([((m["high"] - m["low"]) / 3.92) ** 2 for m in runs])) / len(runs)
        z = 2.50  # two-sided 98.75%: Bonferroni over the four models
        assert mean - z * se < 0.5 < mean + z * se, (name, [round(m["value"], 3) for m in runs])


def test_temporal_split_tests_on_the_latest_anchor_year_group(ts, tmp_path):
    config = load_config(None, ["split=temporal", "folds=2", "train.max_epochs=2", "experiments=false"])
    run_study(ts, config, tmp_path / "run", progress=lambda line: None)
    test = pd.read_csv(tmp_path / "run" / "predictions.csv")
    groups = ts.cohort.set_index("stay_id")["anchor_year_group"]
    latest = max(groups.unique())
    assert set(groups[test["stay_id"]]) == {latest} and (groups == latest).sum() == len(test)
    assert json.loads((tmp_path / "run" / "data.json").read_text())["split"] == "temporal"
