"""External validation and recalibration (`sepsis-fusion validate`): on made-up members, then a run trained on
one synthetic hospital validated on another."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sepsis_fusion import Project
from sepsis_fusion.model.calibration import Calibrator, EnsembleCalibration, calibration_slope_intercept, logit
from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.inputs import TrainingSet
from sepsis_fusion.model.predictor import Predictor
from sepsis_fusion.model.protocol import cv_folds, fold_of
from sepsis_fusion.model.run_folder import WEIGHTS, RunFolder
from sepsis_fusion.model.validation import ORIGINAL, RECALIBRATED, VALIDATION, recalibrate, validate


def _members(n: int = 4000, shift: float = 1.0, seed: int = 0):
    """Three members whose calibrated ensemble is right at the training site; at the new site the true
    log-odds are `shift` higher (a higher base mortality): calibration-in-the-large off by `shift`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.5, 1.2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(z + shift)))).astype(int)
    members = np.stack([1 / (1 + np.exp(-(z * s + c))) for s, c in ((1.0, 0.0), (0.5, -0.3), (1.5, 0.4))])
    centres = [float(logit(m).mean()) for m in members]
    scales = [float(logit(m).std()) for m in members]
    # the map that makes each member's standardised logit the true one at the training site
    a, b = float(np.mean(z)), float(np.std(z))
    calibration = EnsembleCalibration("platt", [Calibrator("platt", slope=b, intercept=a)], centres, scales)
    groups = np.arange(n)
    return calibration, members, y, fold_of(cv_folds(y, groups, 5, 0), n)


def test_the_map_as_trained_is_off_by_the_sites_shift_and_recalibration_fixes_it():
    calibration, members, y, fold = _members(shift=1.0)
    _, before = calibration_slope_intercept(y, calibration.apply(members))
    assert 0.8 < before < 1.2
    recal = recalibrate(calibration, members, y, fold)
    slope, after = calibration_slope_intercept(y, recal.crossfitted)
    assert abs(after) < 0.1 and 0.85 < slope < 1.15
    # the standardisation of each member is kept: only the shared map changes
    assert recal.calibration.centres == calibration.centres and recal.calibration.scales == calibration.scales
    assert 0 < recal.threshold < 1


def test_recalibration_is_cross_fitted():
    """A stay's cross-fitted probability comes from a map that never saw its fold's outcomes."""
    calibration, members, y, fold = _members(n=2000)
    for method in ("platt", "isotonic"):
        first = recalibrate(calibration, members, y, fold, methods=(method,)).crossfitted
        planted = y.copy()
        planted[fold == 0] = 1 - planted[fold == 0]
        again = recalibrate(calibration, members, planted, fold, methods=(method,)).crossfitted
        np.testing.assert_allclose(again[fold == 0], first[fold == 0], atol=1e-12)  # its own outcomes: unseen
        assert not np.allclose(again[fold == 1], first[fold == 1])  # fold 0's outcomes fit fold 1's map


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_validate_on_another_site_finds_the_miscalibration_and_recalibration_fixes_it(
    trained_run, second_site, second_site_training_set, tmp_path
):
    before = _digest(trained_run)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    recalibrated = tmp_path / "run-recalibrated"
    result = validate(
        second_site_training_set, run, tmp_path / "validation", second_site, resamples=200, recalibrate_to=recalibrated
    )
    original, fixed = result.models[ORIGINAL], result.models[RECALIBRATED]
    for name, m in result.models.items():  # the figures docs/DEPLOYMENT.md quotes (pytest -s shows them)
        print(name, {k: {p: round(v, 3) for p, v in m[k].items()} for k in ("auroc", "calibration_intercept")})
    # the second site's mortality is higher at the same physiology: risks under-estimated there
    assert original["calibration_intercept"]["low"] > 0, original["calibration_intercept"]
    assert abs(fixed["calibration_intercept"]["value"]) < 0.15, fixed["calibration_intercept"]
    assert fixed["calibration_intercept"]["low"] < 0 < fixed["calibration_intercept"]["high"]
    # recalibration is monotone per member: the ranking barely moves
    assert abs(fixed["auroc"]["value"] - original["auroc"]["value"]) < 0.03
    # the report and its plots; the run itself untouched
    report = (tmp_path / "validation" / "report.md").read_text()
    assert "miscalibrated here" in report and "cross-fitted" in report
    for plot in result.plots.values():
        assert (tmp_path / "validation" / plot).stat().st_size > 1000
    assert (tmp_path / "validation" / "report.html").exists()
    assert json.loads((tmp_path / "validation" / VALIDATION).read_text())["stays"] == result.stays
    assert _digest(run) == before
    # the new version: the parent's weights, a new map and threshold, its parent recorded; it loads and scores
    new = RunFolder(recalibrated)
    assert new.file(WEIGHTS).read_bytes() == (run / WEIGHTS).read_bytes()
    meta = new.read_json("model.json")
    assert meta["parent"]["version"] == RunFolder(run).version()
    assert new.version() != RunFolder(run).version() and new.trained
    assert meta["threshold"] == result.thresholds[RECALIBRATED]
    p = Predictor(recalibrated).predict(second_site_training_set.features)
    y = second_site_training_set.labels()
    _, intercept = calibration_slope_intercept(y, p)
    assert abs(intercept) < 0.1  # fitted on every stay: in-sample, closer still


def test_a_run_whose_features_differ_is_refused_naming_the_difference(trained_run, second_site_training_set, tmp_path):
    features = second_site_training_set.features
    layout = replace(features.layout, static=features.layout.static[:-1])
    other = TrainingSet(replace(features, layout=layout), second_site_training_set.cohort)
    with pytest.raises(StudyError, match=features.layout.static[-1]):
        validate(other, trained_run, tmp_path / "validation", tmp_path, resamples=10)
    assert not (tmp_path / "validation" / "report.md").exists()
    # the same layout, notes embedded by another encoder: refused too
    other = replace(second_site_training_set, encoder={**second_site_training_set.encoder, "model": "another/encoder"})
    with pytest.raises(StudyError, match="notes embedded by another/encoder"):
        validate(other, trained_run, tmp_path / "validation", tmp_path, resamples=10)


def test_scoring_other_data_warns_and_names_validate(trained_run, feature_data, second_site):
    from sepsis_fusion.pipelines.workflow import data_mismatch

    assert data_mismatch(trained_run, feature_data) is None
    warning = data_mismatch(trained_run, second_site)
    assert warning and "sepsis-fusion validate --run" in warning and str(second_site) in warning
    with pytest.warns(UserWarning, match="sepsis-fusion validate --run"):
        Project(second_site).run(trained_run)
