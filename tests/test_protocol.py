"""The study's protocol parts: calibration, paired comparisons, decision curves, early stopping that never
reads a fold's held-out rows, the temporal split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from test_model import synthetic_arrays

from sepsis_fusion.model.calibration import (
    EnsembleCalibration,
    calibrate_ensemble,
    calibration_curve,
    calibration_error,
    calibration_error_by_chance,
    calibration_slope_intercept,
    fit_calibrator,
    logit,
    quantile_bins,
    smoothed_calibration,
)
from sepsis_fusion.model.config import StudyConfig
from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.evaluate import evaluate
from sepsis_fusion.model.metrics import (
    auprc,
    auroc,
    bootstrap,
    holm,
    net_benefit,
    operating_point_metrics,
    paired_difference,
    treat_all_net_benefit,
)
from sepsis_fusion.model.protocol import cross_validate, cv_folds, temporal_split
from sepsis_fusion.model.subgroups import subgroups
from sepsis_fusion.model.train import TrainConfig


def outcomes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True risks and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    risk = 1 / (1 + np.exp(-rng.normal(-1.0, 1.2, n)))
    return risk, (rng.random(n) < risk).astype(int)


def test_calibration_measures_of_a_calibrated_and_a_miscalibrated_model():
    risk, y = outcomes(40_000)
    slope, intercept = calibration_slope_intercept(y, risk)
    assert slope == pytest.approx(1, abs=0.05) and intercept == pytest.approx(0, abs=0.05)
    assert calibration_error(y, risk) < 0.01
    squeezed = 1 / (1 + np.exp(-0.4 * logit(risk)))  # too close to 0.5, as focal loss leaves them
    slope, intercept = calibration_slope_intercept(y, squeezed)
    assert slope == pytest.approx(2.5, rel=0.1) and calibration_error(y, squeezed) > 0.1


def test_quantile_bins_are_equal_sized_and_the_error_is_their_weighted_gap():
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.05, 0.95])
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 0, 1])
    assert np.bincount(quantile_bins(p, 5)).tolist() == [2] * 5
    predicted, observed, share = calibration_curve(y, p, bins=5)
    assert predicted.tolist() == pytest.approx([0.075, 0.25, 0.5, 0.75, 0.925])
    assert observed.tolist() == [0.0, 0.5, 0.5, 0.5, 1.0]
    assert calibration_error(y, p, bins=5) == pytest.approx(np.mean([0.075, 0.25, 0.0, 0.25, 0.075]))


def test_platt_and_isotonic_maps_fitted_on_predictions_restore_calibration():
    risk, y = outcomes(20_000, 1)
    squeezed = 1 / (1 + np.exp(-(0.4 * logit(risk) + 0.3)))
    platt = fit_calibrator("platt", squeezed, y)
    assert platt.slope == pytest.approx(2.5, rel=0.1)
    fresh_risk, fresh_y = outcomes(20_000, 2)
    fresh = 1 / (1 + np.exp(-(0.4 * logit(fresh_risk) + 0.3)))
    slope, intercept = calibration_slope_intercept(fresh_y, platt(fresh))
    assert slope == pytest.approx(1, abs=0.08) and abs(intercept) < 0.08
    isotonic = fit_calibrator("isotonic", squeezed, y)
    bound = 0.5 / len(y)  # never a risk of exactly 0 or 1: half an event of the sample
    reference = IsotonicRegression(y_min=bound, y_max=1 - bound, out_of_bounds="clip").fit(squeezed, y)
    np.testing.assert_allclose(isotonic(fresh), reference.predict(fresh), atol=1e-12)
    assert isotonic(fresh).min() == bound and reference.predict(fresh).min() == bound
    assert calibration_error(fresh_y, isotonic(fresh)) < 0.02
    with pytest.raises(ValueError, match="unknown calibration method 'beta'"):
        fit_calibrator("beta", squeezed, y)


def test_the_calibration_method_is_chosen_by_cross_fitted_brier():
    risk, y = outcomes(6_000, 3)
    fold = np.arange(6_000) % 3
    # outcomes that jump at one score, a step no sigmoid of the logit can follow: isotonic must win
    score = np.random.default_rng(7).random(6_000)
    jump = (np.random.default_rng(8).random(6_000) < np.where(score < 0.5, 0.05, 0.6)).astype(int)
    chosen = calibrate_ensemble(score, jump, fold).calibration
    assert chosen.method == "isotonic" and chosen.cv_brier["isotonic"] < chosen.cv_brier["platt"]
    assert len(chosen.maps) == 1 and chosen.maps[0].method == "isotonic"  # one map for every member
    # a logistic distortion: Platt fits it with two numbers (isotonic may tie; it must not be far better)
    squeezed = 1 / (1 + np.exp(-0.4 * logit(risk)))
    chosen = calibrate_ensemble(squeezed, y, fold).calibration
    assert chosen.cv_brier["platt"] <= chosen.cv_brier["isotonic"] + 1e-3
    assert chosen.method == min(chosen.cv_brier, key=chosen.cv_brier.get)


def test_one_shared_map_calibrates_members_of_different_spread():
    """Two fold models that rank alike but spread their probabilities differently (one nearly flat, as an
    early-stopped network is): standardised by their own out-of-fold spread (no outcome used), one map
    fitted on all their rows calibrates each of them and their average."""
    risk, y = outcomes(20_000, 10)
    fold = np.arange(20_000) % 2
    spread = np.where(fold == 0, 0.15, 1.2)
    raw = 1 / (1 + np.exp(-spread * logit(risk)))
    calibration = calibrate_ensemble(raw, y, fold, methods=("platt",)).calibration
    assert len(calibration.maps) == 1
    assert calibration.scales[0] / calibration.scales[1] == pytest.approx(0.15 / 1.2, rel=0.05)
    fresh_risk, fresh_y = outcomes(20_000, 11)
    members = np.stack([1 / (1 + np.exp(-s * logit(fresh_risk))) for s in (0.15, 1.2)])
    for k in (0, 1):
        slope, intercept = calibration_slope_intercept(fresh_y, calibration.member(k, members[k]))
        assert slope == pytest.approx(1, abs=0.08) and abs(intercept) < 0.08
    slope, intercept = calibration_slope_intercept(fresh_y, calibration.apply(members))
    assert slope == pytest.approx(1, abs=0.08) and abs(intercept) < 0.08
    # one map on the members' raw pooled predictions, without the standardisation, leaves them far off
    pooled = fit_calibrator("platt", raw, y)
    slope, _ = calibration_slope_intercept(fresh_y, np.mean([pooled(m) for m in members], axis=0))
    assert abs(slope - 1) > 0.3
    again = type(calibration).from_dict(calibration.to_dict())
    np.testing.assert_array_equal(again.apply(members), calibration.apply(members))


def test_the_threshold_rows_are_calibrated_by_maps_that_never_saw_them():
    """Cross-fitting: fold 0's calibrated out-of-fold predictions come from a map fitted on fold 1 and 2's
    rows. Planting other outcomes in fold 0 leaves them unchanged; planting them in fold 1 moves them."""
    risk, y = outcomes(3_000, 12)
    fold = np.arange(3_000) % 3
    raw = 1 / (1 + np.exp(-0.5 * logit(risk)))
    before = calibrate_ensemble(raw, y, fold, methods=("platt",)).oof
    planted = y.copy()
    planted[fold == 0] = 1
    after = calibrate_ensemble(raw, planted, fold, methods=("platt",)).oof
    np.testing.assert_array_equal(after[fold == 0], before[fold == 0])
    planted = y.copy()
    planted[fold == 1] = 1
    moved = calibrate_ensemble(raw, planted, fold, methods=("platt",)).oof
    assert np.abs(moved[fold == 0] - before[fold == 0]).max() > 0.01


def test_a_run_of_the_previous_release_keeps_its_per_member_maps():
    """calibration.json of sepsis-fusion 0.2.0 held one map per member on raw probabilities."""
    old = {
        "method": "platt",
        "cv_brier": {"platt": 0.1},
        "members": [
            {"method": "platt", "slope": 2.0, "intercept": 0.5, "knots_x": [], "knots_y": [], "cv_brier": {}},
            {"method": "platt", "slope": 1.0, "intercept": 0.0, "knots_x": [], "knots_y": [], "cv_brier": {}},
        ],
    }
    calibration = EnsembleCalibration.from_dict(old)
    p = np.array([[0.2, 0.6], [0.3, 0.7]])
    expected = np.mean([1 / (1 + np.exp(-(2.0 * logit(p[0]) + 0.5))), p[1]], axis=0)
    np.testing.assert_allclose(calibration.apply(p), expected)


def test_ranking_metrics_equal_scikit_learns_with_ties():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) * 0.5 + 0.3 * y, 1)  # many ties
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert np.isnan(auroc(np.zeros(5), p[:5])) and np.isnan(auprc(np.zeros(5), p[:5]))


def test_paired_differences_use_the_same_resamples():
    risk, y = outcomes(600, 5)
    rng = np.random.default_rng(6)
    a = risk + rng.normal(0, 0.05, 600)
    b = risk + rng.normal(0, 0.05, 600)
    same = paired_difference(y, a, a, resamples=200)
    assert same["auroc"] == {"value": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    d = paired_difference(y, a, b, resamples=200)
    separate = {
        name: bootstrap(y, p, lambda y_, p_: {"auroc": auroc(y_, p_)}, 200)["auroc"] for name, p in (("a", a), ("b", b))
    }
    assert d["auroc"]["value"] == pytest.approx(separate["a"]["value"] - separate["b"]["value"])
    # two correlated models: the paired interval is far narrower than either model's own
    assert d["auroc"]["high"] - d["auroc"]["low"] < 0.5 * (separate["a"]["high"] - separate["a"]["low"])


def test_net_benefit_by_hand():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.6, 0.1, 0.2])
    # at t = 0.5: treated 0.9 (TP) and 0.6 (FP): 1/5 - 1/5 * 1
    assert net_benefit(y, p, np.array([0.5]))[0] == pytest.approx(0.0)
    # at t = 0.25: treated 0.9, 0.3 (TP) and 0.6 (FP): 2/5 - 1/5 * 1/3
    assert net_benefit(y, p, np.array([0.25]))[0] == pytest.approx(0.4 - 0.2 / 3)
    assert treat_all_net_benefit(y, np.array([0.25]))[0] == pytest.approx(0.4 - 0.6 / 3)


def test_early_stopping_never_reads_the_folds_held_out_rows():
    """Flipping the outcomes of fold 0's held-out stays changes nothing fold 0's model predicts for them: its
    epoch was chosen on an inner split of its own training rows."""
    features, y = synthetic_arrays(480, 8)
    groups = np.arange(480)
    config = StudyConfig(folds=3, validation_size=0.2, train=TrainConfig(max_epochs=8, patience=2, batch_size=64))
    folds = cv_folds(y, groups, 3, 0)
    first = cross_validate(config, {}, features, y, groups, folds, "fold check")
    flipped = y.copy()
    flipped[folds[0][1]] = 1 - flipped[folds[0][1]]
    again = cross_validate(config, {}, features, flipped, groups, folds, "fold check")
    np.testing.assert_array_equal(first[0].val_pred, again[0].val_pred)
    assert first[0].history.val_auroc == again[0].history.val_auroc
    assert not np.array_equal(first[1].val_pred, again[1].val_pred)  # fold 1 trained on those stays


def test_temporal_split_holds_out_the_latest_anchor_year_group():
    groups = pd.Series(["2008 - 2010", "2017 - 2019", "2014 - 2016", "2017 - 2019", "2011 - 2013"])
    train, test = temporal_split(groups)
    assert train.tolist() == [0, 2, 4] and test.tolist() == [1, 3]
    with pytest.raises(ValueError, match="anchor_year_group 'unknown' does not start with a year"):
        temporal_split(pd.Series(["2008 - 2010", "unknown"]))
    with pytest.raises(ValueError, match="needs at least two groups"):
        temporal_split(pd.Series(["2008 - 2010"] * 3))


def test_platt_never_reverses_a_ranking():
    risk, y = outcomes(2_000, 9)
    backwards = 1 - risk  # a model whose scores run the wrong way
    platt = fit_calibrator("platt", backwards, y)
    assert platt.slope > 0
    calibrated = platt(backwards)
    assert auroc(y, calibrated) == pytest.approx(auroc(y, backwards))
    assert np.mean(calibrated) == pytest.approx(y.mean(), abs=0.01)  # near-flat at the base rate


def test_calibration_error_by_chance_is_what_a_calibrated_model_shows():
    risk, _ = outcomes(600, 12)
    floor = calibration_error_by_chance(risk)
    drawn = [
        calibration_error((np.random.default_rng(100 + i).random(600) < risk).astype(int), risk) for i in range(50)
    ]
    assert floor == pytest.approx(np.mean(drawn), rel=0.15) and 0.02 < floor < 0.06
    assert calibration_error_by_chance(risk[:60]) > 2 * floor  # ten times fewer stays, far more noise


def test_holm_adjusts_a_family_of_p_values_step_down():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    assert adjusted["a"] == pytest.approx(0.03)  # 3 x 0.01
    assert adjusted["c"] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted["b"] == pytest.approx(0.06)  # max(1 x 0.04, the step before): monotone
    assert np.isnan(adjusted["d"])


def test_paired_differences_carry_a_bootstrap_p_value():
    risk, y = outcomes(800, 21)
    noise = np.random.default_rng(22).random(800)
    d = paired_difference(y, risk, noise, resamples=200)
    assert d["auroc"]["low"] > 0 and d["auroc"]["p"] == pytest.approx(1 / 200)  # never 0: one resample's worth
    same = paired_difference(y, risk, risk + 1e-9 * noise, resamples=200)
    assert same["auroc"]["p"] > 0.5


def test_operating_points_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.35, 0.15, 0.5, 0.25, 0.15, 0.05, 0.05, 0.02])
    m = operating_point_metrics(y, p, (0.2, 0.3), sensitivity=0.75)
    assert m["sensitivity@0.3"] == 0.75 and m["specificity@0.3"] == pytest.approx(5 / 6)
    assert m["ppv@0.3"] == pytest.approx(3 / 4) and m["flagged@0.3"] == pytest.approx(0.4)
    assert m["sensitivity@0.2"] == 0.75 and m["specificity@0.2"] == pytest.approx(4 / 6)
    # the highest threshold flagging 3 of the 4 deaths is the third death's score, 0.35
    assert m["threshold@sens"] == 0.35 and m["specificity@sens"] == pytest.approx(5 / 6)


def test_the_calibration_errors_interval_contains_its_estimate():
    """Binned calibration error is biased upwards on resamples: on a small, well-calibrated test set its
    percentile interval lies above the estimate; the bias-corrected one contains it."""
    risk, y = outcomes(150, 23)
    m = bootstrap(y, risk, lambda y_, p_: {"calibration_error": calibration_error(y_, p_)}, resamples=300)
    ce = m["calibration_error"]
    assert ce["low"] <= ce["value"] <= ce["high"]


def test_a_subgroup_below_ten_events_or_non_events_shows_no_metric():
    rng = np.random.default_rng(24)
    n = 400
    static = pd.DataFrame(
        {
            "female": rng.integers(0, 2, n),
            "age": rng.uniform(20, 90, n),
            "race": np.where(np.arange(n) < 30, "SMALL", "LARGE"),
            "insurance": "Other",
        }
    )
    risk = 1 / (1 + np.exp(-rng.normal(-1, 1, n)))
    y = (rng.random(n) < risk).astype(int)
    y[:30] = 0
    y[:9] = 1  # the SMALL race group: 9 deaths
    groups = {s.name: s for s in subgroups(static, y, risk, 0.3, resamples=50)}
    assert groups["race: SMALL"].events == 9 and groups["race: SMALL"].metrics is None
    large = groups["race: LARGE"]
    assert large.metrics is not None
    oe = large.metrics["observed_expected"]
    assert oe["low"] <= oe["value"] <= oe["high"]
    assert oe["value"] == pytest.approx(y[30:].sum() / risk[30:].sum())
    assert {"sex: female", "sex: male", "insurance: Other"} <= set(groups)


def test_the_smoothed_calibration_curve_follows_a_known_distortion():
    risk, y = outcomes(5_000, 25)
    squeezed = 1 / (1 + np.exp(-0.5 * logit(risk)))
    grid = np.array([0.2, 0.3, 0.4])
    curve, low, high = smoothed_calibration(y, squeezed, grid, resamples=50)
    truth = 1 / (1 + np.exp(-2 * logit(grid)))  # squeezed p at grid -> true risk sigmoid(2 logit p)
    assert np.all(low <= curve) and np.all(curve <= high)
    np.testing.assert_allclose(curve, truth, atol=0.04)


def test_evaluate_refuses_an_operating_point_outside_0_to_1(tmp_path):
    with pytest.raises(StudyError, match="evaluate: 20 is not a risk threshold"):
        evaluate(None, tmp_path, risk_thresholds=(0.1, 20))
    with pytest.raises(StudyError, match="evaluate: 1.0 is not a risk threshold or sensitivity"):
        evaluate(None, tmp_path, at_sensitivity=1.0)


def test_the_command_lines_operating_points_are_evaluates_defaults():
    from sepsis_fusion.model import evaluate as evaluation
    from sepsis_fusion.pipelines import workflow

    assert workflow.RISK_THRESHOLDS == evaluation.RISK_THRESHOLDS
    assert workflow.AT_SENSITIVITY == evaluation.AT_SENSITIVITY
