"""Why a stay got its score: integrated gradients (captum) of the fusion model, grouped into the inputs a
clinician recognises: each static feature, each panel feature of the lab and vital sequence (its values,
flags and times since charted over every step), and each note by recency.

What is explained is the mean of the fold models' logits before calibration (each fold model's calibration
map is monotone, so what raises a member's logit raises its calibrated probability; the ensemble's score,
the mean of those probabilities, moves the same way). Each fold model is explained on its own
preprocessed inputs, against a reference stay: the same record timing (the same steps and note slots
present, the same step and note ages), every static feature at the training mean (mode for categories, no
missing flag), every panel value at its training mean and not charted, every note's embedding zero. A
contribution is in logit units; a stay's contributions sum to its logit minus the reference's (the
completeness of integrated gradients, up to the integral's approximation).

Explanations hold feature names, note ranks and ages, and numbers: never note text (the model never sees it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .inputs import FeatureArrays

if TYPE_CHECKING:  # torch is imported where it is used: the command line imports this module for TOP_INPUTS
    from .predictor import Member
    from .preprocess import Preprocessor

TOP_INPUTS = 5  # inputs named per explained score (`score --explain`, POST /score?explain=true)


@dataclass
class Explanation:
    """Contributions (n stays, inputs) to the logit, with each input's modality and, per stay, how long
    before the time served each ranked note was charted."""

    stay_id: np.ndarray
    inputs: tuple[str, ...]
    modalities: tuple[str, ...]
    values: np.ndarray  # (n, inputs) float64, logit units
    note_hours_before: np.ndarray  # (n, N): hours from the note of each rank (newest first) to as_of

    def __len__(self) -> int:
        return len(self.stay_id)

    def top(self, i: int, k: int = 5) -> list[dict]:
        """Stay i's k inputs of largest absolute contribution (those contributing nothing left out)."""
        order = np.argsort(-np.abs(self.values[i]), kind="stable")
        out = []
        for j in order[:k]:
            if self.values[i, j] == 0:
                break
            item = {"input": self.inputs[j], "modality": self.modalities[j], "contribution": float(self.values[i, j])}
            if self.modalities[j] == "notes":
                hours = self.note_hours_before[i, j - self.modalities.index("notes")]  # inputs: newest note first
                item["hours_before"] = None if np.isnan(hours) else round(float(hours), 2)
            out.append(item)
        return out

    def importance(self) -> pd.DataFrame:
        """Global importance: each input's mean absolute contribution over the stays, largest first."""
        frame = pd.DataFrame(
            {
                "input": self.inputs,
                "modality": self.modalities,
                "mean_abs_contribution": np.abs(self.values).mean(axis=0) if len(self) else 0.0,
                "mean_contribution": self.values.mean(axis=0) if len(self) else 0.0,
            }
        )
        return frame.sort_values("mean_abs_contribution", ascending=False, kind="stable").reset_index(drop=True)


def explain(
    members: list[Member],
    features: FeatureArrays,
    steps: int = 32,
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
) -> Explanation:
    """Integrated gradients of each member on these rows, grouped, averaged over the members.
    `progress(k)` is called after each batch of k stays of each member."""
    import torch
    from captum.attr import IntegratedGradients

    lo = features.layout
    inputs = (*lo.static, *lo.panel, *(note_input(r) for r in range(1, len(lo.note_views) + 1)))
    modalities = ("static",) * len(lo.static) + ("sequence",) * len(lo.panel) + ("notes",) * len(lo.note_views)
    total = np.zeros((len(features), len(inputs)))
    reference_stays = _reference(features)
    for member in members:
        pre, model = member.preprocessor, member.model
        model.eval()
        x, reference = pre.transform(features), pre.transform(reference_stays)
        reference.static[:, [j for j, name in enumerate(pre.selected) if name.endswith("_missing")]] = 0.0
        for start in range(0, len(features), batch):
            rows = slice(start, start + batch)
            parts = _used_parts(model, x, rows)
            if parts:  # else the member reads nothing of these rows: every contribution is 0
                ig = IntegratedGradients(_forward(model, parts))
                given = tuple(torch.from_numpy(getattr(x, p)[rows]) for p in parts)
                base = tuple(torch.from_numpy(_baseline(p, x, reference, rows)) for p in parts)
                masks = (torch.from_numpy(x.sequence_mask[rows]), torch.from_numpy(x.note_mask[rows]))
                attributions = ig.attribute(given, baselines=base, additional_forward_args=masks, n_steps=steps)
                grouped = dict(zip(parts, (a.detach().numpy().astype(np.float64) for a in attributions)))
                total[rows] += _group(grouped, pre, lo)
            if progress:
                progress(len(x.sequence_mask[rows]))
    values = total / max(len(members), 1)
    # notes are stored oldest first with empty slots in front: rank 1 (newest) is the last slot
    hours = features.note_age[:, ::-1].astype(np.float64)
    return Explanation(np.asarray(features.stay_id), inputs, modalities, values, hours)


def _reference(features: FeatureArrays) -> FeatureArrays:
    """These rows with every static value missing (imputed by the preprocessing: training mean and mode)."""
    ref = features.take(slice(None))
    ref.static_numeric = np.full_like(features.static_numeric, np.nan)
    ref.static_categorical = np.full_like(features.static_categorical, None)
    return ref


def _used_parts(model, x, rows: slice) -> tuple[str, ...]:
    """The inputs this member reads for these rows: a modality it has, with values, and, for a sequence,
    at least one present step among those it reads (integrated gradients need every input in the graph)."""
    c = model.config
    steps = c.last_steps or x.sequence_mask.shape[1]
    present = {
        "static": True,
        "sequence": bool(x.sequence_mask[rows, -steps:].any()),
        "notes": bool(x.note_mask[rows].any()),
    }
    on = {"static": c.use_static, "sequence": c.use_sequence, "notes": c.use_notes}
    return tuple(p for p in ("static", "sequence", "notes") if on[p] and present[p] and getattr(x, p).shape[-1] > 0)


def _forward(model, parts: tuple[str, ...]):
    import torch

    def forward(*args):
        given, (sequence_mask, note_mask) = dict(zip(parts, args[: len(parts)])), args[len(parts) :]
        n = sequence_mask.shape[0]
        static = given.get("static", torch.zeros(n, model.config.static_dim))
        sequence = given.get("sequence", torch.zeros(n, sequence_mask.shape[1], model.config.sequence_dim))
        notes = given.get("notes", torch.zeros(n, note_mask.shape[1], model.config.note_dim))
        return model(static, sequence, sequence_mask, notes, note_mask)

    return forward


def _baseline(part: str, x, reference, rows: slice) -> np.ndarray:
    if part == "static":
        return reference.static[rows]
    values = np.zeros_like(getattr(x, part)[rows])
    values[..., -1] = getattr(x, part)[rows][..., -1]  # the step's or note's age: the record's timing is kept
    return values


def _group(parts: dict[str, np.ndarray], pre: Preprocessor, lo) -> np.ndarray:
    """Attributions per model input summed into the explanation's inputs: a static feature's one-hot
    levels and missing flag into the feature; a panel feature's value, known, observed and since channels
    over every step into the feature; a note's embedding into its recency rank."""
    n = len(next(iter(parts.values())))
    static = np.zeros((n, len(lo.static)))
    if "static" in parts:
        index = {name: j for j, name in enumerate(lo.static)}
        for k, name in enumerate(pre.selected):
            static[:, index[_static_feature(name, pre)]] += parts["static"][:, k]
    f = len(lo.panel)
    sequence = np.zeros((n, f))
    if "sequence" in parts:
        per_channel = parts["sequence"].sum(axis=1)  # over the steps: (n, 4F + 1), the last the step's age
        sequence = sum(per_channel[:, c * f : (c + 1) * f] for c in range(4))
    notes = np.zeros((n, len(lo.note_views)))
    if "notes" in parts:
        notes = parts["notes"][:, ::-1, :-1].sum(axis=2)  # newest first; the age channel is the reference's
    return np.concatenate([static, sequence, notes], axis=1)


def _static_feature(candidate: str, pre: Preprocessor) -> str:
    if candidate.endswith("_missing") and candidate[: -len("_missing")] in pre.flagged:
        return candidate[: -len("_missing")]
    if "=" in candidate and candidate.split("=", 1)[0] in pre.categories:
        return candidate.split("=", 1)[0]
    return candidate


def note_input(rank: int) -> str:
    """The name of the note of this recency rank in an explanation: `note 1 (newest)`, `note 2`, ..."""
    return "note 1 (newest)" if rank == 1 else f"note {rank}"
