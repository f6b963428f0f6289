"""The fusion model, focal loss, the preprocessing (fitted on training rows only) and the training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepsis_fusion.model.fusion import FocalLoss, FusionConfig, FusionModel
from sepsis_fusion.model.inputs import FeatureArrays, FeatureLayout
from sepsis_fusion.model.predictor import predict
from sepsis_fusion.model.preprocess import PreprocessConfig, Preprocessor
from sepsis_fusion.model.train import TrainConfig, auroc, fit

S, N, D = 6, 4, 8  # steps, note slots, note dimension
LAYOUT = FeatureLayout(
    service="test",
    static_view="static_baseline",
    static=("age", "lactate_first", "flag", "sofa", "noise", "admission_type"),
    categorical=("admission_type",),
    step_views=tuple(f"step_lag{k}" for k in range(S - 1, -1, -1)),
    panel=("hr", "lac"),
    stride_hours=2,
    note_views=tuple(f"slot_{j}" for j in range(N)),
)


def synthetic_arrays(n: int, seed: int, trend: float = 0.0) -> tuple[FeatureArrays, np.ndarray]:
    """Outcome driven by age (static), lactate at the latest step, the newest note's first value and, with
    `trend`, the direction of the heart rate's change over the steps (its mean over the steps unchanged)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(65, 15, n)
    lactate = rng.lognormal(0.7, 0.5, n)
    note_signal = rng.normal(0, 1, n)
    direction = rng.choice([-1.0, 1.0], n)
    logit = 0.06 * (age - 65) + 1.2 * (lactate - 2.2) + 1.0 * note_signal + trend * direction - 1.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    static_numeric = np.column_stack(
        [
            age,
            rng.normal(2, 1, n),
            rng.integers(0, 2, n).astype(float),
            rng.integers(0, 15, n).astype(float),
            rng.normal(0, 1, n),
        ]
    )
    static_numeric[rng.random((n, 5)) < 0.08] = np.nan
    categorical = rng.choice(["EW EMER.", "URGENT", "ELECTIVE"], size=(n, 1)).astype(object)
    ramp = np.linspace(-1, 1, S)[None, :] * direction[:, None] * 15  # rising or falling, same mean
    sequence = np.stack([90 + ramp + rng.normal(0, 3, (n, S)), rng.lognormal(0.7, 0.5, (n, S))], axis=2)
    sequence[:, -1, 1] = lactate
    hours_since = rng.uniform(0, 3, (n, S, 2))
    sequence_mask = np.ones((n, S), dtype=bool)
    sequence_mask[: n // 3, :2] = False  # short history: the first steps are padding
    sequence[~sequence_mask] = np.nan
    hours_since[~sequence_mask] = np.nan
    notes = rng.normal(0, 1, (n, N, D)).astype(np.float32)
    notes[:, -1, 0] = note_signal
    note_mask = np.ones((n, N), dtype=bool)
    note_mask[: n // 2, :2] = False
    notes[~note_mask] = 0
    note_age = np.where(note_mask, np.linspace(30, 1, N)[None, :], np.nan)
    arrays = FeatureArrays(
        LAYOUT,
        np.arange(n),
        np.zeros(n, dtype="datetime64[us]"),
        static_numeric,
        categorical,
        sequence.astype(np.float32),
        hours_since.astype(np.float32),
        np.tile((0.5 + 2.0 * np.arange(S - 1, -1, -1)).astype(np.float32), (n, 1)),
        sequence_mask,
        notes,
        note_age.astype(np.float32),
        note_mask,
    )
    return arrays, y


def test_focal_loss_with_gamma_zero_is_class_weighted_bce_and_focuses_on_hard_examples():
    logits = torch.tensor([3.0, -3.0, 0.2, -0.1])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    weights = torch.where(y == 1, 0.8, 0.2)
    assert torch.isclose(FocalLoss(0.8, 0.0)(logits, y), (weights * bce).mean())
    focal = FocalLoss(0.5, 2.0)
    easy, hard = focal(logits[:1], y[:1]), focal(logits[2:3], y[2:3])
    assert easy < 0.5 * 0.5 * bce[0] * 0.01 and hard > easy
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(1.5, 2.0)


def test_masked_steps_do_not_change_the_output_and_modalities_can_be_switched_off():
    torch.manual_seed(0)
    model = FusionModel(FusionConfig(static_dim=4, sequence_dim=3, note_dim=5)).eval()
    static, sequence, notes = torch.randn(6, 4), torch.randn(6, 3, 3), torch.randn(6, 3, 5)
    sequence_mask = torch.tensor(
        [
            [True, True, True],
            [False, True, True],
            [False, False, True],
            [False, False, False],
            [True, False, True],
            [True, True, False],
        ]
    )
    note_mask = sequence_mask.flip(0)
    out = model(static, sequence, sequence_mask, notes, note_mask)
    windows2, notes2 = sequence.clone(), notes.clone()
    windows2[~sequence_mask] = 1e6
    notes2[~note_mask] = -1e6
    assert torch.allclose(out, model(static, windows2, sequence_mask, notes2, note_mask))
    for flags in [(True, False, False), (False, True, False), (False, False, True), (True, True, False)]:
        config = FusionConfig(
            static_dim=4, sequence_dim=3, note_dim=5, use_static=flags[0], use_sequence=flags[1], use_notes=flags[2]
        )
        assert FusionModel(config)(static, sequence, sequence_mask, notes, note_mask).shape == (6,)
    with pytest.raises(ValueError, match="at least one modality"):
        FusionModel(FusionConfig(4, 3, 5, use_static=False, use_sequence=False, use_notes=False))


def test_last_steps_reads_only_the_last_steps():
    torch.manual_seed(0)
    model = FusionModel(FusionConfig(static_dim=4, sequence_dim=3, note_dim=5, last_steps=2)).eval()
    static, sequence, notes = torch.randn(4, 4), torch.randn(4, 5, 3), torch.randn(4, 3, 5)
    mask, note_mask = torch.ones(4, 5, dtype=torch.bool), torch.ones(4, 3, dtype=torch.bool)
    out = model(static, sequence, mask, notes, note_mask)
    earlier = sequence.clone()
    earlier[:, :3] = 1e3  # steps before the last two
    assert torch.allclose(out, model(static, earlier, mask, notes, note_mask))
    later = sequence.clone()
    later[:, -1] += 1.0
    assert not torch.allclose(out, model(static, later, mask, notes, note_mask))


def test_preprocessing_statistics_come_from_training_rows_only():
    train, y = synthetic_arrays(600, 1)
    other, _ = synthetic_arrays(300, 2)
    other.static_numeric[:, 0] = 1e6  # absurd ages outside training
    other.sequence[:, :, 0] = -1e6
    other.static_categorical[:, 0] = "NEVER SEEN"
    pre = Preprocessor(PreprocessConfig(select_k=6)).fit(train, y)
    state = pre.state()
    inputs = pre.transform(other)
    assert pre.state() == state  # transform fits nothing
    assert abs(pre.means[0] - np.nanmean(train.static_numeric[:, 0])) < 1e-9
    assert np.isfinite(inputs.static).all() and np.isfinite(inputs.sequence).all()
    # clipped at the training mean +- 3 sd, not at the new rows' values
    hr = (
        np.clip(-1e6, pre.sequence_means[0] - 3 * pre.sequence_stds[0], np.inf) - pre.sequence_means[0]
    ) / pre.sequence_stds[0]
    assert np.allclose(inputs.sequence[:, :, 0][other.sequence_mask], hr)
    assert (inputs.sequence[~other.sequence_mask] == 0).all() and (inputs.notes[~other.note_mask] == 0).all()
    assert "age" in pre.selected and not any(name.startswith("noise") for name in pre.selected[:3])
    assert pre.bounded[LAYOUT.numeric_static.index("flag")] and not pre.bounded[0]
    assert Preprocessor.from_state(state).transform(other).static.tobytes() == inputs.static.tobytes()


def test_static_features_missing_in_more_than_20_percent_of_training_stays_are_dropped_not_the_stays():
    arrays, y = synthetic_arrays(400, 3)
    lactate = LAYOUT.numeric_static.index("lactate_first")
    arrays.static_numeric[:, lactate] = np.where(np.arange(400) < 100, np.nan, arrays.static_numeric[:, lactate])
    pre = Preprocessor(PreprocessConfig(select_k=10)).fit(arrays, y)
    assert pre.dropped == ["lactate_first"]  # 25% + the random 8% missing
    assert not any(name.startswith("lactate_first") for name in pre.candidates)
    assert len(pre.transform(arrays)) == 400  # every stay kept


def test_selection_ranks_every_candidate_and_skips_redundant_ones():
    arrays, y = synthetic_arrays(600, 4)
    age, noise = LAYOUT.numeric_static.index("age"), LAYOUT.numeric_static.index("noise")
    # `noise` becomes a near-copy of age: as relevant, but redundant once age is kept
    arrays.static_numeric[:, noise] = arrays.static_numeric[:, age] + np.random.default_rng(0).normal(0, 0.5, 600)
    pre = Preprocessor(PreprocessConfig(select_k=4, max_correlation=0.9)).fit(arrays, y)
    assert set(pre.scores) == set(pre.candidates)  # every candidate ranked
    ranked = sorted(pre.candidates, key=lambda n: -pre.scores[n])
    first = next(n for n in ranked if n in ("age", "noise"))
    assert first in pre.selected and ({"age", "noise"} - {first}) <= set(pre.redundant)
    assert len(pre.selected) == 4 and not set(pre.selected) & set(pre.redundant)
    loose = Preprocessor(PreprocessConfig(select_k=4, max_correlation=1.0)).fit(arrays, y)
    assert not loose.redundant


def small_fusion(inputs) -> FusionConfig:
    """A fusion model sized for these small synthetic sets, reading all three modalities of `inputs`."""
    return FusionConfig(
        static_dim=inputs.static.shape[1],
        sequence_dim=inputs.sequence.shape[2],
        note_dim=inputs.notes.shape[2],
        static_hidden=(16, 8),
        sequence_hidden=8,
        note_hidden=8,
        head_hidden=8,
        dropout=0.1,
    )


def test_training_learns_the_planted_signal_reproducibly():
    train, y_train = synthetic_arrays(1200, 4)
    val, y_val = synthetic_arrays(400, 5)
    pre = Preprocessor(PreprocessConfig(select_k=6)).fit(train, y_train)
    tr, va = pre.transform(train), pre.transform(val)
    fusion = small_fusion(tr)
    config = TrainConfig(lr=3e-3, max_epochs=30, patience=5, batch_size=64)
    model, history = fit(fusion, config, tr, y_train, va, y_val)
    p = predict(model, va)
    assert history.best_auroc == pytest.approx(auroc(y_val, p))
    assert auroc(y_val, p) > 0.78
    model2, _ = fit(fusion, config, tr, y_train, va, y_val)
    assert np.array_equal(p, predict(model2, va))
    only_static = FusionConfig(**{**fusion.to_dict(), "use_sequence": False, "use_notes": False})
    static_model, _ = fit(only_static, config, tr, y_train, va, y_val)
    assert auroc(y_val, predict(static_model, va)) < auroc(y_val, p) - 0.03


def test_each_step_carries_its_value_flags_age_and_skewed_labs_are_logged():
    """A step's vector: per feature z-scored value, known, observed (charted within the stride), time since
    (log1p, scaled); then the step's age. The lognormal lactate is log-transformed, the heart rate not."""
    arrays, y = synthetic_arrays(600, 6)
    pre = Preprocessor(PreprocessConfig(select_k=6)).fit(arrays, y)
    assert pre.sequence_log == [False, True]
    inputs = pre.transform(arrays)
    f, span = 2, LAYOUT.stride_hours * S
    assert inputs.sequence.shape == (600, S, 4 * f + 1)
    i = 599  # a stay with every step present
    lac = (np.log1p(arrays.sequence[i, -1, 1]) - pre.sequence_means[1]) / pre.sequence_stds[1]
    assert inputs.sequence[i, -1, 1] == pytest.approx(np.clip(lac, -3, 3), abs=1e-5)
    assert (inputs.sequence[i, :, f : 2 * f] == 1).all()  # known
    observed = arrays.sequence_hours_since[i] < LAYOUT.stride_hours
    assert (inputs.sequence[i, :, 2 * f : 3 * f] == observed).all()
    since = np.log1p(arrays.sequence_hours_since[i]) / np.log1p(span)
    np.testing.assert_allclose(inputs.sequence[i, :, 3 * f : 4 * f], since, rtol=1e-5)
    np.testing.assert_allclose(inputs.sequence[i, :, -1], arrays.step_age[i] / span, rtol=1e-5)
    assert inputs.notes.shape == (600, N, D + 1)
    np.testing.assert_allclose(inputs.notes[i, :, -1], np.log1p(arrays.note_age[i]) / np.log1p(168), rtol=1e-5)


def test_the_sequence_bilstm_reads_the_direction_of_change_only_an_ordered_series_shows():
    """The outcome depends on whether the heart rate rises or falls over the steps (its mean is the same
    either way): the sequence-only model learns it, the same model reading the steps in shuffled order per
    stay cannot."""
    train, y_train = synthetic_arrays(1500, 7, trend=3.0)
    val, y_val = synthetic_arrays(500, 8, trend=3.0)
    pre = Preprocessor(PreprocessConfig(select_k=6)).fit(train, y_train)
    tr, va = pre.transform(train), pre.transform(val)
    only_sequence = FusionConfig(
        static_dim=tr.static.shape[1],
        sequence_dim=tr.sequence.shape[2],
        note_dim=tr.notes.shape[2],
        sequence_hidden=16,
        head_hidden=8,
        dropout=0.1,
        use_static=False,
        use_notes=False,
    )
    config = TrainConfig(lr=3e-3, max_epochs=40, patience=8, batch_size=64)
    model, _ = fit(only_sequence, config, tr, y_train, va, y_val)
    ordered = auroc(y_val, predict(model, va))

    def shuffled(inputs, seed):
        rng = np.random.default_rng(seed)
        out = inputs.subset(slice(None))
        order = np.argsort(rng.random(out.sequence.shape[:2]), axis=1)
        out.sequence = np.take_along_axis(out.sequence, order[:, :, None], axis=1)
        out.sequence_mask = np.take_along_axis(out.sequence_mask, order, axis=1)
        out.sequence[:, :, -1] = 0  # and no step times to sort them back by
        return out

    blind, _ = fit(only_sequence, config, shuffled(tr, 0), y_train, shuffled(va, 1), y_val)
    assert ordered > 0.75
    assert ordered > auroc(y_val, predict(blind, shuffled(va, 1))) + 0.1
