"""A run folder as an MLflow pyfunc model: what `--track` logs as the MLflow run's `model` and registers
(pipelines/tracking.py, docs/TRACKING.md).

The model's artifacts are the whole run folder (under its own name, so its model version is the folder's).
Its input is a frame with a row per (stay, prediction time): the columns of `Project.training_frame` do,
and only `stay_id` and `prediction_time` are read (MLflow warns that it ignores the others); its output is
what `Run.predict` gives: stay_id, prediction_time, known, the calibrated probability and the decision at
the run's threshold. Like `Run.predict`, it reads each row's features point-in-time from the Feast store of
a data folder: $SEPSIS_FUSION_DATA, else ./data (pipelines/paths.py), which must hold the built features and
the applied store (`make demo`, or `sepsis-fusion build` and `sepsis-fusion features apply`).

    import mlflow
    model = mlflow.pyfunc.load_model("models:/sepsis-fusion@champion")   # MLFLOW_TRACKING_URI: the store
    scores = model.predict(project.training_frame())

This module imports MLflow: only `--track` and loading such a model import it.
"""

import logging
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from sepsis_fusion.model.run_folder import MODEL, RunFolder

TIME = "prediction_time"
RUN_FOLDER = "run_folder"  # the artifact's key: the run folder
DATA_NOTE = (
    "reads each row's features point-in-time from the Feast store of the data folder $SEPSIS_FUSION_DATA "
    "(default ./data); input: stay_id and prediction_time (the columns of Project.training_frame do, the "
    "others are ignored)"
)
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("long", "stay_id"), ColSpec("datetime", TIME)]),
    outputs=Schema(
        [
            ColSpec("long", "stay_id"),
            ColSpec("datetime", TIME),
            ColSpec("boolean", "known"),
            ColSpec("double", "probability"),  # calibrated; NaN where nothing was known at the row's time
            ColSpec("boolean", "decision", required=False),  # probability >= the run's threshold; None unscored
        ]
    ),
)


class RunFolderModel(mlflow.pyfunc.PythonModel):
    """A run folder scoring (stay_id, prediction_time) rows from the Feast store of $SEPSIS_FUSION_DATA
    (default ./data), as `Project(data).run(folder).predict(frame)` does."""

    def load_context(self, context) -> None:
        from .. import paths
        from ..features.population import Population
        from ..features.store import open_store
        from .scorer import Scorer

        data = paths.data_dir()
        self.scorer = Scorer(Path(context.artifacts[RUN_FOLDER]), open_store(data), population=Population(data))

    @property
    def version(self) -> str:
        return self.scorer.version

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Each row's calibrated probability and decision from what the store held at its prediction time."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        times = pd.to_datetime(frame[TIME])
        times = times.dt.tz_convert("UTC").dt.tz_localize(None) if times.dt.tz is not None else times
        from .scorer import prediction_frame

        scores = self.scorer.at(frame["stay_id"].to_numpy(dtype=np.int64), list(times))
        return prediction_frame(scores, TIME, frame.index)


def save_model(path: Path, run_dir: Path) -> None:
    """Write the run folder's pyfunc model to `path` (a new folder): the class, the run folder as its
    artifacts, the signature, and the model version, threshold and outcome as metadata."""
    folder = RunFolder(run_dir)
    meta = folder.read_json(MODEL)
    # MLflow warns that the model is pickled (the class, by reference to this installed module: no code of
    # its own travels) and that no input example was given (one would need a data folder to score on)
    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    pyfunc_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
            _save(path, run_dir, folder, meta)
    finally:
        pyfunc_logger.setLevel(level)


def _save(path: Path, run_dir: Path, folder: RunFolder, meta: dict) -> None:
    mlflow.pyfunc.save_model(
        str(path),
        python_model=RunFolderModel(),
        artifacts={RUN_FOLDER: str(Path(run_dir).resolve())},
        signature=SIGNATURE,
        pip_requirements=[_requirement("sepsis-fusion", "[track]"), _requirement("mlflow")],
        metadata={
            "model_version": folder.version(),
            "threshold": meta.get("threshold"),
            "outcome": meta.get("outcome"),
            "data": DATA_NOTE,
        },
    )


def _requirement(package: str, extra: str = "") -> str:
    try:
        return f"{package}{extra}=={version(package)}"
    except PackageNotFoundError:
        return f"{package}{extra}"
