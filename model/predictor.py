"""Inference: a trained run loaded from its run folder (fold models, their preprocessing and calibration, the
threshold, the layout it reads) and what it answers: calibrated probabilities, decisions, explanations and
per-row scores with their missing inputs.

Evaluation, offline and online scoring, the HTTP service and the Python API all score through `Predictor`;
the training modules import this one (a fold model is a `Member`, the final model an `Ensemble`), never the
other way round. Where the arrays come from (a point-in-time historical retrieval or the online store) is
the feature store side's business (pipelines/serving/scorer.py), so the same inputs get the same score. A
row with no feature at all (an unknown stay, one not yet admitted, or not materialized) is not scored: its
row says so instead of carrying a score of the model's defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import run_folder
from .calibration import EnsembleCalibration
from .errors import StudyError
from .explain import Explanation, explain
from .fusion import FusionModel
from .inputs import FeatureArrays, FeatureLayout
from .preprocess import ModelInputs, Preprocessor


def tensors(inputs: ModelInputs, index=slice(None)) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(inputs.static[index]),
        torch.from_numpy(inputs.sequence[index]),
        torch.from_numpy(inputs.sequence_mask[index]),
        torch.from_numpy(inputs.notes[index]),
        torch.from_numpy(inputs.note_mask[index]),
    )


@torch.inference_mode()
def predict(model: FusionModel, inputs: ModelInputs, batch_size: int = 2048) -> np.ndarray:
    """One network's probabilities of the outcome."""
    model.eval()
    out = [
        torch.sigmoid(model(*tensors(inputs, slice(i, i + batch_size)))).numpy()
        for i in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


@dataclass
class Member:
    """One fitted fold model: its preprocessing and its network."""

    preprocessor: Preprocessor
    model: FusionModel

    def predict(self, features: FeatureArrays) -> np.ndarray:
        return predict(self.model, self.preprocessor.transform(features))


@dataclass
class Ensemble:
    """The final model: fold models whose probabilities are calibrated by one shared map, then averaged
    (why the fold models: model/ensemble.py; the map: calibration.py)."""

    members: list[Member]
    calibration: EnsembleCalibration

    def predict_members(self, features: FeatureArrays) -> np.ndarray:
        """(members, n) uncalibrated probabilities."""
        return np.stack([m.predict(features) for m in self.members])

    def predict_uncalibrated(self, features: FeatureArrays) -> np.ndarray:
        return self.predict_members(features).mean(axis=0)

    def predict(self, features: FeatureArrays) -> np.ndarray:
        return self.calibrate(self.predict_members(features))

    def calibrate(self, member_probabilities: np.ndarray) -> np.ndarray:
        return self.calibration.apply(member_probabilities)


@dataclass
class Score:
    stay_id: int
    as_of: datetime
    known: bool
    probability: float | None
    decision: bool | None
    missing: dict[str, list[str]]
    explanation: list[dict] | None = None  # the inputs that contributed most (`explain` > 0)
    # set by a scorer that knows the intended population (pipelines/serving/scorer.py): "scored" or why not
    status: str | None = None
    reason: str | None = None
    in_population: bool | None = None


class Predictor:
    """A run folder loaded for inference: its ensemble, the layout it reads, its threshold, outcome and version."""

    def __init__(self, run_dir: str | Path):
        self.folder = run_folder.RunFolder(run_dir)
        self.run_dir = self.folder.path
        meta = self.folder.check_loadable()
        try:
            self.ensemble = self._ensemble(meta)
            self.layout = FeatureLayout.from_dict(meta["layout"])
            self.threshold = float(meta["threshold"])
            self.outcome: str = meta["outcome"]
        except StudyError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise StudyError(
                f"{self.run_dir} is damaged: {run_folder.MODEL}, {run_folder.PREPROCESS} or "
                f"{run_folder.CALIBRATION} lacks or misstates {exc!r}; train it again"
            ) from None
        self.version = self.folder.version()

    def _ensemble(self, meta: dict) -> Ensemble:
        states = self.folder.read_json(run_folder.PREPROCESS).get("members", [])
        pairs = run_folder.load_members(self.folder.file(run_folder.WEIGHTS), meta["members"], states)
        calibration = EnsembleCalibration.from_dict(self.folder.read_json(run_folder.CALIBRATION))
        return Ensemble([Member(pre, model) for pre, model in pairs], calibration)

    def _check(self, features: FeatureArrays) -> None:
        differences = self.layout.differences(features.layout)
        if differences:
            raise StudyError("the model was trained on other features than these: " + "; ".join(differences))

    def predict(self, features: FeatureArrays) -> np.ndarray:
        """Calibrated probabilities: the mean of the fold models' calibrated probabilities."""
        self._check(features)
        return self.ensemble.predict(features)

    def predict_uncalibrated(self, features: FeatureArrays) -> np.ndarray:
        self._check(features)
        return self.ensemble.predict_uncalibrated(features)

    def explain(self, features: FeatureArrays, progress: Callable[[int], None] | None = None) -> Explanation:
        """Each row's contributions per input (integrated gradients of the fold models; see explain.py)."""
        self._check(features)
        return explain(self.ensemble.members, features, progress=progress)

    def score(self, features: FeatureArrays, explain: int = 0, known: np.ndarray | None = None) -> list[Score]:
        """Each row's score; with `explain` > 0, also the `explain` inputs that contributed most to it.
        `known`: the rows' known_rows(features), when the caller has it already."""
        known = known_rows(features) if known is None else known
        probabilities = np.full(len(features), np.nan)
        explanations: dict[int, list[dict]] = {}
        if known.any():
            rows = np.flatnonzero(known)
            probabilities[rows] = self.predict(features.take(rows))
            if explain > 0:
                explanation = self.explain(features.take(rows))
                explanations = {int(row): explanation.top(k, explain) for k, row in enumerate(rows)}
        missing = missing_inputs(features)
        out = []
        for i in range(len(features)):
            p = float(probabilities[i]) if known[i] else None
            out.append(
                Score(
                    int(features.stay_id[i]),
                    pd.Timestamp(features.as_of[i]).to_pydatetime(),
                    bool(known[i]),
                    p,
                    None if p is None else bool(p >= self.threshold),
                    missing[i],
                    explanations.get(i) if explain > 0 else None,
                )
            )
        return out

    def frame(self, scores: list[Score]) -> pd.DataFrame:
        """Scores as a table: one row per stay, with the threshold and the model version."""
        return pd.DataFrame(
            {
                "stay_id": [s.stay_id for s in scores],
                "as_of": [s.as_of for s in scores],
                "probability": [s.probability for s in scores],
                "decision": [s.decision for s in scores],
                "threshold": self.threshold,
                "model_version": self.version,
                "missing": [
                    "; ".join(f"{k}: {', '.join(v)}" for k, v in s.missing.items() if v)
                    if s.known
                    else (None if s.status else "no features at this time")
                    for s in scores
                ],
                **(
                    {
                        "status": [s.status for s in scores],
                        "in_population": [s.in_population for s in scores],
                        "reason": [s.reason for s in scores],
                    }
                    if any(s.status is not None for s in scores)
                    else {}
                ),
                **(
                    {"top_inputs": [_contributions(s.explanation) for s in scores]}
                    if any(s.explanation is not None for s in scores)
                    else {}
                ),
            }
        )


def _contributions(explanation: list[dict] | None) -> str | None:
    """An explanation as one cell: `lactate +0.42; age +0.18` (logit units)."""
    if explanation is None:
        return None
    return "; ".join(f"{item['input']} {item['contribution']:+.3f}" for item in explanation)


def known_rows(features: FeatureArrays) -> np.ndarray:
    """Stays with at least one feature served: a static value, a sequence step or a note."""
    static = (~np.isnan(features.static_numeric)).any(axis=1) | (features.static_categorical != None).any(axis=1)  # noqa: E711
    return static | features.sequence_mask.any(axis=1) | features.note_mask.any(axis=1)


def missing_inputs(features: FeatureArrays) -> list[dict[str, list[str]]]:
    """Per stay: the static features with no value; the panel features with no value known at the latest
    step of the sequence (every one when the sequence is not served); and, when the stay has no note
    available, that. Fewer than N notes is a stay's normal state, not a missing input."""
    lo = features.layout
    numeric_missing = np.isnan(features.static_numeric)
    categorical_missing = features.static_categorical == None  # noqa: E711 (elementwise)
    out = []
    for i in range(len(features)):
        static = [f for f, m in zip(lo.numeric_static, numeric_missing[i]) if m]
        static += [f for f, m in zip(lo.categorical, categorical_missing[i]) if m]
        out.append(
            {
                "static": static,
                "sequence": [
                    f
                    for f, value in zip(lo.panel, features.sequence[i, -1])
                    if not features.sequence_mask[i, -1] or np.isnan(value)
                ],
                "notes": [] if features.note_mask[i].any() or not lo.note_views else ["no note available"],
            }
        )
    return out
