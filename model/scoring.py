"""Point-in-time scoring with a trained run folder: offline (Feast historical retrieval, for backtests and
audits) and online (the Feast online store, for scoring now).

Both paths build the same FeatureArrays and go through the same preprocessing and model, so a stay scored
online as of t gets the score the offline path gives as of t (tests/test_scoring.py). A stay with no
feature at all at that time (unknown, not yet admitted, or not materialized) is not scored: its row says
so instead of carrying a score of the model's defaults.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from sepsis_fusion.pipelines.features.layout import FeatureArrays, FeatureLayout
from sepsis_fusion.pipelines.features.store import SERVICE_NAME, utc_naive

from .protocol import subset
from .study import StudyError, TrainedModel, load_run

RUN_FILES = ("model.safetensors", "model.json", "preprocess.json", "calibration.json")


def model_version(run_dir: Path) -> str:
    """The run folder's name and a digest of what decides a score (weights, preprocessing, calibration, threshold)."""
    digest = hashlib.sha256()
    for name in RUN_FILES:
        digest.update((Path(run_dir) / name).read_bytes())
    return f"{Path(run_dir).resolve().name}@{digest.hexdigest()[:12]}"


def latest_run(runs: Path) -> Path:
    """The most recently written run folder under `runs`."""
    found = [p for p in Path(runs).glob("*/model.json") if not p.parent.name.startswith(".")]  # not unfinished
    if not found:
        raise StudyError(f"no run folder under {runs}: train one with `sepsis-fusion train` or pass --run")
    return max(found, key=lambda p: p.stat().st_mtime).parent


@dataclass
class Score:
    stay_id: int
    as_of: datetime
    known: bool
    probability: float | None
    decision: bool | None
    missing: dict[str, list[str]]


class Scorer:
    """A run folder bound to a Feast store whose feature service matches the features it was trained on."""

    def __init__(self, run_dir: Path, store, service: str = SERVICE_NAME):
        self.run_dir = Path(run_dir)
        self.trained: TrainedModel = load_run(self.run_dir)
        self.version = model_version(self.run_dir)
        self.store = store
        served = FeatureLayout.from_service(store, service)
        differences = self.trained.layout.differences(served)
        if differences:
            raise StudyError(f"the model in {self.run_dir} was trained on other features than the feature service "
                             f"{service!r} serves now, so it will not score them: " + "; ".join(differences))
        self.layout = served
        self._online = None

    @property
    def threshold(self) -> float:
        return float(self.trained.threshold)

    def offline(self, stay_ids, as_of: datetime) -> list[Score]:
        """Each stay as known at `as_of` (Feast get_historical_features, created-timestamp filtered)."""
        from sepsis_fusion.pipelines.features.training import historical_features

        stay_ids = np.asarray(stay_ids, dtype=np.int64)
        features = historical_features(self.store, self.layout, stay_ids, [utc_naive(as_of)] * len(stay_ids))
        return self.score(features)

    def online(self, stay_ids, as_of: datetime | None = None) -> list[Score]:
        """Each stay from the online store as of `as_of` (default: now); rows past their ttl are dropped."""
        from sepsis_fusion.pipelines.features.online import OnlineFeatures

        if self._online is None:
            self._online = OnlineFeatures(self.store, self.layout.service)
        return self.score(self._online.read(stay_ids, as_of))

    def score(self, features: FeatureArrays) -> list[Score]:
        known = known_rows(features)
        probabilities = np.full(len(features), np.nan)
        if known.any():
            rows = np.flatnonzero(known)
            probabilities[rows] = self.trained.predict(subset(features, rows))
        missing = missing_inputs(features)
        out = []
        for i in range(len(features)):
            p = float(probabilities[i]) if known[i] else None
            out.append(Score(int(features.stay_id[i]), pd.Timestamp(features.as_of[i]).to_pydatetime(), bool(known[i]),
                             p, None if p is None else bool(p >= self.threshold), missing[i]))
        return out

    def frame(self, scores: list[Score]) -> pd.DataFrame:
        """Scores as a table: one row per stay, with the threshold and the model version."""
        return pd.DataFrame({
            "stay_id": [s.stay_id for s in scores],
            "as_of": [s.as_of for s in scores],
            "probability": [s.probability for s in scores],
            "decision": [s.decision for s in scores],
            "threshold": self.threshold,
            "model_version": self.version,
            "missing": ["; ".join(f"{k}: {', '.join(v)}" for k, v in s.missing.items() if v) if s.known
                        else "no features at this time" for s in scores],
        })


def known_rows(features: FeatureArrays) -> np.ndarray:
    """Stays with at least one feature served: a static value, a window or a note."""
    static = (~np.isnan(features.static_numeric)).any(axis=1) | (features.static_categorical != None).any(axis=1)  # noqa: E711
    return static | features.window_mask.any(axis=1) | features.note_mask.any(axis=1)


def missing_inputs(features: FeatureArrays) -> list[dict[str, list[str]]]:
    """Per stay: the static features with no value, and the window and note views with no row."""
    lo = features.layout
    numeric_missing = np.isnan(features.static_numeric)
    categorical_missing = features.static_categorical == None  # noqa: E711 (elementwise)
    out = []
    for i in range(len(features)):
        static = [f for f, m in zip(lo.numeric_static, numeric_missing[i]) if m]
        static += [f for f, m in zip(lo.categorical, categorical_missing[i]) if m]
        out.append({"static": static,
                    "windows": [v for v, present in zip(lo.window_views, features.window_mask[i]) if not present],
                    "notes": [v for v, present in zip(lo.note_views, features.note_mask[i]) if not present]})
    return out
