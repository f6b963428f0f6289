"""Scoring FeatureArrays with a trained run folder: probability, decision, model version, missing inputs.

Where the arrays come from (a point-in-time historical retrieval or the online store) is the feature
store side's business (pipelines/serving/scorer.py); every path goes through `Predictor.score`, so the
same inputs get the same score. A row with no feature at all (an unknown stay, one not yet admitted, or
not materialized) is not scored: its row says so instead of carrying a score of the model's defaults.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StudyError
from .inputs import FeatureArrays, FeatureLayout
from .protocol import subset
from .study import RUN_FILES, TrainedModel, load_run


def model_version(run_dir: Path) -> str:
    """The run folder's name and a digest of what decides a score (weights, preprocessing, calibration, threshold)."""
    digest = hashlib.sha256()
    for name in RUN_FILES:
        digest.update((Path(run_dir) / name).read_bytes())
    return f"{Path(run_dir).resolve().name}@{digest.hexdigest()[:12]}"


def run_folders(runs: Path) -> list[Path]:
    """The complete run folders under `runs`, oldest written first."""
    found = [p for p in Path(runs).glob("*/model.json") if not p.parent.name.startswith(".")]  # not unfinished
    return [p.parent for p in sorted(found, key=lambda p: p.stat().st_mtime)]


def latest_run(runs: Path) -> Path:
    """The most recently written run folder under `runs`."""
    found = run_folders(runs)
    if not found:
        raise StudyError(f"no run folder under {runs}: train one with `sepsis-fusion train` or pass --run")
    return found[-1]


@dataclass
class Score:
    stay_id: int
    as_of: datetime
    known: bool
    probability: float | None
    decision: bool | None
    missing: dict[str, list[str]]
    explanation: list[dict] | None = None  # the inputs that contributed most (`explain` > 0)


class Predictor:
    """A run folder loaded for scoring: its model, threshold and version."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.trained: TrainedModel = load_run(self.run_dir)
        self.version = model_version(self.run_dir)

    @property
    def layout(self) -> FeatureLayout:
        return self.trained.layout

    @property
    def threshold(self) -> float:
        return float(self.trained.threshold)

    def score(self, features: FeatureArrays, explain: int = 0) -> list[Score]:
        """Each row's score; with `explain` > 0, also the `explain` inputs that contributed most to it."""
        known = known_rows(features)
        probabilities = np.full(len(features), np.nan)
        explanations: dict[int, list[dict]] = {}
        if known.any():
            rows = np.flatnonzero(known)
            probabilities[rows] = self.trained.predict(subset(features, rows))
            if explain > 0:
                explanation = self.trained.explain(subset(features, rows))
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
                    else "no features at this time"
                    for s in scores
                ],
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
    return static | features.window_mask.any(axis=1) | features.note_mask.any(axis=1)


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
                "windows": [
                    f
                    for f, value in zip(lo.windows, features.windows[i, -1])
                    if not features.window_mask[i, -1] or np.isnan(value)
                ],
                "notes": [] if features.note_mask[i].any() or not lo.note_views else ["no note available"],
            }
        )
    return out
