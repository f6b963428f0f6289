"""The study protocol end to end on the synthetic training set: split, CV grid search, final model, run
folder, reload, evaluation report, and a refusal to score other features."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from sepsis_fusion.model.evaluate import evaluate
from sepsis_fusion.model.study import StudyError, load_config, load_run, run_study


@pytest.fixture(scope="module")
def ts(synthetic_training_set):
    return synthetic_training_set


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


def test_run_folder_holds_everything_to_reload_and_rescore(ts, run_dir):
    for name in ("model.safetensors", "model.json", "preprocess.json", "config.yaml", "cv.json", "predictions.csv",
                 "data.json", "versions.json"):
        assert (run_dir / name).exists(), name
    cv = json.loads((run_dir / "cv.json").read_text())
    assert len(cv["folds"]) == 2 * 3 and cv["best_setting"]["dropout"] in (0.1, 0.3)
    test = pd.read_csv(run_dir / "predictions.csv")
    train = pd.read_csv(run_dir / "oof_predictions.csv")
    subjects = ts.cohort.set_index("stay_id")["subject_id"]
    assert not set(subjects[test["stay_id"]]) & set(subjects[train["stay_id"]])   # grouped by patient
    assert 0.15 < len(test) / len(ts.cohort) < 0.25
    trained = load_run(run_dir)
    index = {s: i for i, s in enumerate(ts.features.stay_id)}
    from sepsis_fusion.model.protocol import subset
    again = trained.predict(subset(ts.features, np.array([index[s] for s in test["stay_id"]])))
    np.testing.assert_allclose(again, test["probability"], rtol=1e-5)


def test_evaluation_report_with_intervals_baselines_and_plots(ts, run_dir):
    report = evaluate(ts, run_dir, resamples=50)
    text = report.read_text()
    for name in ("fusion model", "logistic regression", "gradient boosting", "SOFA at onset", "auroc"):
        assert name in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    auroc = metrics["fusion model"]["auroc"]
    assert auroc["low"] <= auroc["value"] <= auroc["high"] and auroc["value"] > 0.5
    assert "Intended use and limits" in (run_dir / "model_card.md").read_text()
    for png in ("roc.png", "pr.png", "calibration.png", "learning_curve.png"):
        assert (run_dir / png).stat().st_size > 5000


def test_a_model_refuses_features_it_was_not_trained_on(ts, run_dir):
    trained = load_run(run_dir)
    other = dataclasses.replace(ts.features.layout, windows=ts.features.layout.windows[:-1] + ("surprise_max",))
    features = dataclasses.replace(ts.features, layout=other)
    with pytest.raises(StudyError, match="surprise_max"):
        trained.predict(features)


def test_too_few_stays_or_one_class_is_a_clear_error(ts, tmp_path):
    one_class = dataclasses.replace(ts, cohort=ts.cohort.assign(died_in_hospital=0))
    with pytest.raises(StudyError, match="too few to train"):
        run_study(one_class, load_config(None), tmp_path / "run")
    with pytest.raises(StudyError, match="unknown config keys"):
        load_config(None, ["learning_rate=0.1"])
