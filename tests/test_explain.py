"""Explanations (integrated gradients, grouped per input): a planted strong input ranks first, whichever
modality it is in; contributions add up to the logit's distance from the reference; no note text."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_model import small_fusion, synthetic_arrays

from sepsis_fusion.model.explain import explain
from sepsis_fusion.model.fusion import FusionConfig, FusionModel
from sepsis_fusion.model.predictor import Member
from sepsis_fusion.model.preprocess import PreprocessConfig, Preprocessor
from sepsis_fusion.model.train import TrainConfig, fit


def planted(n: int, seed: int, where: str):
    """synthetic_arrays' rows with the outcome redrawn from one input only; and that input's signal."""
    arrays, _ = synthetic_arrays(n, seed)
    rng = np.random.default_rng(seed + 100)
    signal = {
        "noise": np.nan_to_num(arrays.static_numeric[:, 4]),  # a static feature
        "hr": (arrays.sequence[:, -1, 0] - 90) / 10,  # a panel feature at the latest step
        "note 1 (newest)": arrays.notes[:, -1, 0],  # the newest note's embedding
    }[where]
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * signal))).astype(np.int64)
    return arrays, y, signal


def trained_member(where: str) -> tuple[Member, object]:
    train, y_train, _ = planted(1000, 1, where)
    val, y_val, _ = planted(300, 2, where)
    pre = Preprocessor(PreprocessConfig(select_k=6)).fit(train, y_train)
    tr, va = pre.transform(train), pre.transform(val)
    model, _ = fit(
        small_fusion(tr), TrainConfig(lr=3e-3, max_epochs=25, patience=5, batch_size=64), tr, y_train, va, y_val
    )
    test, _, signal = planted(200, 3, where)
    return Member(pre, model), test, signal


@pytest.mark.parametrize("where", ["noise", "hr", "note 1 (newest)"])
def test_a_planted_strong_input_ranks_first(where):
    member, test, signal = trained_member(where)
    explanation = explain([member], test)
    importance = explanation.importance()
    assert importance["input"].iloc[0] == where, importance.head()
    assert importance["mean_abs_contribution"].iloc[0] > 2 * importance["mean_abs_contribution"].iloc[1]
    # per stay: first wherever the planted input is far from the reference (a stay near the training
    # mean owes little to it, by construction)
    far = np.flatnonzero(np.abs(signal - np.median(signal)) > 1)
    assert len(far) > 30
    assert np.mean([explanation.top(i, 1)[0]["input"] == where for i in far]) > 0.9


def test_contributions_add_up_to_the_logit_minus_the_reference_and_carry_no_text():
    member, test, _ = trained_member("hr")
    explanation = explain([member], test, steps=64)
    pre, model = member.preprocessor, member.model
    from sepsis_fusion.model.explain import _reference

    x, ref = pre.transform(test), pre.transform(_reference(test))
    ref.static[:, [j for j, n in enumerate(pre.selected) if n.endswith("_missing")]] = 0.0
    ref.sequence[..., :-1] = 0.0
    ref.notes[..., :-1] = 0.0
    with torch.no_grad():
        logit = model(*(torch.from_numpy(a) for a in (x.static, x.sequence, x.sequence_mask, x.notes, x.note_mask)))
        base = model(
            *(torch.from_numpy(a) for a in (ref.static, ref.sequence, x.sequence_mask, ref.notes, x.note_mask))
        )
    np.testing.assert_allclose(explanation.values.sum(axis=1), (logit - base).numpy(), atol=0.05)
    # every input the model reads is named: the static view's features, the panel, the note ranks
    assert explanation.inputs[:6] == test.layout.static and "lac" in explanation.inputs
    items = [item for i in range(len(test)) for item in explanation.top(i, 30)]
    assert {k for item in items for k in item} <= {"input", "modality", "contribution", "hours_before"}
    notes = [item for item in items if item["modality"] == "notes"]
    assert notes and all(isinstance(item["hours_before"], float) for item in notes)
    json.dumps(items)  # plain JSON: names, numbers


def test_stays_without_notes_or_steps_and_members_without_a_modality_are_explained():
    """A batch where no stay has a note (or a step) leaves that input out of the gradient graph: its
    contributions are 0, not an error; so are those of a modality a member does not read."""
    member, test, _ = trained_member("hr")
    none = test.take(np.arange(5))
    none.note_mask = np.zeros_like(none.note_mask)
    none.notes = np.zeros_like(none.notes)
    none.note_age = np.full_like(none.note_age, np.nan)
    none.sequence_mask = np.zeros_like(none.sequence_mask)
    explanation = explain([member], none)
    notes_and_sequence = [j for j, m in enumerate(explanation.modalities) if m != "static"]
    assert np.all(explanation.values[:, notes_and_sequence] == 0)
    assert np.abs(explanation.values).sum() > 0  # the static features still explain something
    one = explain([member], test.take(np.array([0])))  # one stay, as the service explains it
    assert len(one.top(0, 5)) == 5

    pre = member.preprocessor
    static_only = FusionModel(
        FusionConfig(**{**member.model.config.to_dict(), "use_sequence": False, "use_notes": False})
    )
    both = explain([member, Member(pre, static_only)], test.take(np.arange(10)))
    alone = explain([member], test.take(np.arange(10)))
    sequence = [j for j, m in enumerate(both.modalities) if m == "sequence"]
    np.testing.assert_allclose(both.values[:, sequence], alone.values[:, sequence] / 2, rtol=1e-6, atol=1e-9)
