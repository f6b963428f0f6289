"""The Python API for notebooks and scripts, importable from the package top:

    from sepsis_fusion import Project

    project = Project("data")                  # the data folder `make demo` or `sepsis-fusion pipeline` fills
    cohort = project.cohort()                  # the cohort mart: one row per stay, labels, prediction time
    frame = project.training_frame()           # + static baseline and 24-hour aggregates, as of each T
    live = project.live_stays()                # who is in the ICU now, with T and population status
    run = project.run("demo")                  # data/runs/demo
    scores = run.predict(frame)                # probability and decision per row, point-in-time

Everything is read point-in-time from the project's Feast store, as the command line reads it: a frame's
rows are (stay_id, prediction_time) pairs, and a run scores each with only what was stored by its time.
"""

from __future__ import annotations

import datetime as dt
import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sepsis_fusion.model import run_folder
from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.explain import TOP_INPUTS
from sepsis_fusion.model.inputs import FeatureArrays, TrainingSet
from sepsis_fusion.model.predictor import known_rows
from sepsis_fusion.model.run_folder import run_folders

from . import paths, utc
from .features import training
from .features.store import FeatureStoreError, open_store

if TYPE_CHECKING:
    from feast import FeatureStore

TIME = "prediction_time"


class Project:
    """A data folder: its feature files, its Feast store (applied) and its run folders."""

    def __init__(self, data: str | Path | None = None, online_store: str = "sqlite"):
        self.data = Path(data).resolve() if data is not None else paths.data_dir()
        self.online_store = online_store
        if not (self.data / "features" / "cohort.parquet").exists():
            raise FeatureStoreError(
                f"{self.data} holds no built features (features/cohort.parquet): run `make demo`, or "
                "`sepsis-fusion build` and `sepsis-fusion features apply`, for this data folder first"
            )

    def __repr__(self) -> str:
        return f"Project({str(self.data)!r})"

    @cached_property
    def store(self) -> FeatureStore:
        """The Feast FeatureStore of this data folder (feast.FeatureStore)."""
        return open_store(self.data, online=self.online_store)

    def cohort(self) -> pd.DataFrame:
        """The cohort mart: stay, subject and admission ids, intime/outtime, Sepsis-3 recognition,
        prediction_time and the labels (died_in_hospital, died_in_icu, died_within_horizon), null where
        outcome_known is false (a live extract's open stays; training_frame and training_set leave them out)."""
        return training.read_cohort(self.data)

    def live_stays(self, as_of: str | dt.datetime | None = None) -> pd.DataFrame:
        """The stays in the ICU at `as_of` (default: the time the online store is materialized to, else the
        data's present), each with its intime, prediction time T, hours in the ICU and status in the intended
        population ('in_population' is what `score` and the service score then), as `sepsis-fusion stays`."""
        from .workflow import live_stays

        when = utc.parse(as_of) if isinstance(as_of, str) else as_of
        return live_stays(when, self.data).table

    def cohort_flow(self) -> pd.DataFrame | None:
        """How many stays each cohort criterion removed, in order."""
        return training.read_cohort_flow(self.data)

    def training_frame(self, notes: bool = False) -> pd.DataFrame:
        """The cohort with its features as of each prediction time, one flat frame: the cohort's columns,
        the static baseline, each panel feature's 24-hour aggregates (`<feature>_<agg>_24h`) and, with
        `notes`, the number of notes available and the mean of their embeddings (`note_embedding_<k>`)."""
        return training.training_frame(self.data, self.store, notes=notes)

    def feature_columns(self, frame: pd.DataFrame) -> list[str]:
        """The columns of a training frame that are features (not ids, times or outcomes), in frame order."""
        from .features.layout import layout_from_service
        from .features.store import SERVICE_NAME

        static = set(layout_from_service(self.store, SERVICE_NAME).static)
        return [
            c
            for c in frame
            if c in static or c.endswith("_24h") or c == "notes_available" or c.startswith("note_embedding_")
        ]

    def training_set(self) -> TrainingSet:
        """The fusion model's training set: arrays (static, the lab and vital sequence, the notes) and the cohort."""
        return training.training_set(self.data, self.store)

    def runs(self) -> list[Path]:
        """The complete run folders under runs/, oldest first (the last is what `run()` opens)."""
        return run_folders(self.data / paths.RUNS)

    def run(self, name: str | Path | None = None) -> Run:
        """A run folder: a name under runs/ (looked for first), any other path, or (None) the newest; or a
        registered model's version in MLflow, `models:/NAME@ALIAS` or `models:/NAME/VERSION` (the store of
        $MLFLOW_TRACKING_URI, else <data>/mlflow/mlflow.db; downloaded once into <data>/registry/)."""
        if name is not None and str(name).startswith("models:/"):
            from .tracking import resolve_model_uri, store_uri

            return Run(resolve_model_uri(str(name), store_uri(self.data), self.data / "registry"), self)
        return Run(run_folder.find_run(self.data / paths.RUNS, name), self)


class Run:
    """A trained run folder bound to a project's store: predicts and explains rows of a frame."""

    def __init__(self, path: str | Path, project: Project):
        from .features.population import Population
        from .serving.scorer import Scorer
        from .workflow import data_mismatch

        self.path = Path(path)
        self.project = project
        self._scorer = Scorer(self.path, project.store, population=Population(project.data))
        mismatch = data_mismatch(self.path, project.data)
        if mismatch:
            warnings.warn(mismatch, UserWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, version={self.version!r})"

    @property
    def version(self) -> str:
        return self._scorer.version

    @property
    def threshold(self) -> float:
        return self._scorer.threshold

    @property
    def outcome(self) -> str:
        return self._scorer.outcome

    def predict(self, frame: pd.DataFrame, time_column: str = TIME) -> pd.DataFrame:
        """Each row's calibrated probability and decision at the run's threshold, from what the store held
        at the row's time (`time_column`); index aligned with `frame`. A row with no feature at its time
        gets NaN and known=False."""
        from .serving.scorer import prediction_frame

        return prediction_frame(self._scorer.at(*_rows(frame, time_column)), time_column, frame.index)

    def explain(self, frame: pd.DataFrame, top: int = TOP_INPUTS, time_column: str = TIME) -> pd.DataFrame:
        """Each row's `top` inputs of largest contribution (integrated gradients; logit units), long format:
        one line per (row, rank) with the frame's index in column `row`."""
        scores = self._scorer.at(*_rows(frame, time_column), explain=top)
        lines = [
            {"row": index, "stay_id": s.stay_id, "rank": rank, **item}
            for index, s in zip(frame.index, scores)
            for rank, item in enumerate(s.explanation or [], start=1)
        ]
        return pd.DataFrame(
            lines, columns=["row", "stay_id", "rank", "input", "modality", "contribution", "hours_before"]
        )

    def importance(self, frame: pd.DataFrame, time_column: str = TIME) -> pd.DataFrame:
        """Global importance over the frame's rows: each input's mean absolute contribution, largest first."""
        features = self.features(frame, time_column)
        return self._scorer.explain(features.take(known_rows(features))).importance()

    def features(self, frame: pd.DataFrame, time_column: str = TIME) -> FeatureArrays:
        """The model's inputs for the frame's rows, point-in-time (what predict and explain read)."""
        from .features.training import historical_features

        ids, times = _rows(frame, time_column)
        return historical_features(self.project.store, self._scorer.layout, ids, times)

    def test_predictions(self) -> pd.DataFrame:
        """The run's held-out test stays with their calibrated and uncalibrated probabilities and outcome."""
        return run_folder.RunFolder(self.path).read_csv(run_folder.PREDICTIONS)

    def metrics(self) -> dict:
        """metrics.json of `sepsis-fusion evaluate`: test metrics with intervals, paired differences, calibration."""
        folder = run_folder.RunFolder(self.path)
        if not folder.has(run_folder.METRICS):
            raise StudyError(f"{self.path} has not been evaluated: run `sepsis-fusion evaluate --run {self.path}`")
        return folder.read_json(run_folder.METRICS)


def _rows(frame: pd.DataFrame, time_column: str) -> tuple[np.ndarray, list]:
    missing = [c for c in ("stay_id", time_column) if c not in frame]
    if missing:
        raise StudyError(f"the frame has no column {', '.join(missing)}: it needs stay_id and {time_column}")
    ids = pd.to_numeric(frame["stay_id"], errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any():
        bad = frame.loc[ids.isna() | (ids % 1 != 0), "stay_id"].head(3).tolist()
        raise StudyError(f"stay_id holds values that are not stay ids: {bad}")
    try:
        times = pd.to_datetime(frame[time_column])
    except (ValueError, TypeError) as exc:
        raise StudyError(f"{time_column} does not read as times: {exc}") from None
    if times.isna().any():
        raise StudyError(f"{time_column} is empty in {int(times.isna().sum())} row(s): every row needs a time")
    return ids.to_numpy(dtype=np.int64), list(utc.naive_utc_series(times))
