"""A run folder: every file `sepsis-fusion train` and `evaluate` write there, how each is written and read,
the hidden work folder a run is written into and the step that publishes it, the one serialization of a
fold model (shared by the run's weights and the cross-validation checkpoints), and the model version.

Every other module asks this one for a run folder's files; none spells a file name itself.

Files (FORMAT 2):
- what decides a score (the model version digests these, in this order): model.safetensors (every fold
  model's weights), model.json (their fusion configs, the feature layout, the Feast feature service, the
  threshold, the format), preprocess.json (each fold model's fitted preprocessing), calibration.json (the
  calibration map and how it was chosen);
- the study as run: config.yaml, cv.json (every setting and fold), data.json (a fingerprint of the training
  data and the split), versions.json (package versions);
- predictions: predictions.csv (held-out test stays, calibrated and not), oof_predictions.csv (the training
  part's out-of-fold predictions), baseline_predictions.csv and baselines.json (the tuned baselines),
  experiment_predictions.csv and experiment_thresholds.json (loss comparison and modality ablation);
- what monitoring compares served stays with: reference.json (the training part's inputs on fixed decile
  bins and its calibrated out-of-fold probabilities; model/reference.py; a run without it still serves);
- what `evaluate` adds: metrics.json, report.md, report.html, model_card.md, cohort_characteristics.csv,
  importance.csv and the plots (*.png).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .errors import StudyError

# The run folder's format: 2 names the hourly lab and vital sequence "sequence" (model.json's layout and
# fusion configs); 1 called it "windows". A folder of an older format is refused, naming the release that reads it.
FORMAT = 2
READ_BY = {1: "sepsis-fusion 0.1.0"}

WEIGHTS = "model.safetensors"
MODEL = "model.json"
PREPROCESS = "preprocess.json"
CALIBRATION = "calibration.json"
CONFIG = "config.yaml"
CV = "cv.json"
DATA = "data.json"
VERSIONS = "versions.json"
PREDICTIONS = "predictions.csv"
OOF_PREDICTIONS = "oof_predictions.csv"
BASELINE_PREDICTIONS = "baseline_predictions.csv"
BASELINES = "baselines.json"
EXPERIMENT_PREDICTIONS = "experiment_predictions.csv"
EXPERIMENT_THRESHOLDS = "experiment_thresholds.json"
EXPERIMENT_SETTINGS = "experiment_settings.json"
METRICS = "metrics.json"
REPORT = "report.md"
REPORT_HTML = "report.html"
MODEL_CARD = "model_card.md"
COHORT_CHARACTERISTICS = "cohort_characteristics.csv"
IMPORTANCE = "importance.csv"
REFERENCE = "reference.json"
# Peer baselines fitted outside the study on the same split (`sepsis-fusion baseline meds-tab`): their held-out
# probabilities by stay, and for each its threshold, chosen settings and description; evaluate adds them
EXTERNAL_PREDICTIONS = "external_baseline_predictions.csv"
EXTERNAL_BASELINES = "external_baselines.json"
PLOTS = {
    "roc": "roc.png",
    "pr": "pr.png",
    "calibration": "calibration.png",
    "decision_curve": "decision_curve.png",
    "learning_curve": "learning_curve.png",
    "importance": "importance.png",
    "cohort_flow": "cohort_flow.png",
    "subgroups": "subgroups.png",
}

# What decides a score; the model version digests them in this order
SCORE_FILES = (WEIGHTS, MODEL, PREPROCESS, CALIBRATION)
# What an MLflow run keeps of a run folder (besides its plots): the reports and what they were made from
ARTIFACTS = (
    REPORT,
    REPORT_HTML,
    MODEL_CARD,
    METRICS,
    CV,
    CONFIG,
    DATA,
    VERSIONS,
    MODEL,
    CALIBRATION,
    BASELINES,
    EXTERNAL_BASELINES,
    COHORT_CHARACTERISTICS,
    IMPORTANCE,
)
# The package versions versions.json records
PACKAGES = (
    "torch",
    "feast",
    "duckdb",
    "dbt-core",
    "dbt-duckdb",
    "transformers",
    "scikit-learn",
    "numpy",
    "pandas",
    "sepsis-fusion",
)


class RunFolder:
    """One run folder's files, read and written by name."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, *names: str) -> bool:
        return all((self.path / name).exists() for name in names)

    @property
    def trained(self) -> bool:
        """A complete run folder (train finished): what scores and what the study was are all there."""
        return self.has(*SCORE_FILES, DATA, CONFIG)

    @property
    def evaluated(self) -> bool:
        return self.has(REPORT)

    def read_json(self, name: str) -> dict:
        """A JSON object of the folder; unreadable JSON is refused as damage, naming the file."""
        path = self.path / name
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StudyError(f"{path} is not valid JSON ({exc}): the run folder is damaged") from None
        if not isinstance(value, dict):
            raise StudyError(f"{path} does not hold a JSON object: the run folder is damaged")
        return value

    def write_json(self, name: str, value: Any, indent: int | None = 2) -> Path:
        path = self.path / name
        path.write_text(json.dumps(value, indent=indent, default=list))
        return path

    def read_csv(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.path / name)

    def write_csv(self, name: str, frame: pd.DataFrame) -> Path:
        path = self.path / name
        frame.to_csv(path, index=False)
        return path

    def write_external_baseline(self, name: str, probabilities: pd.Series, summary: dict) -> None:
        """Add (or replace) a peer baseline: `probabilities` by stay_id for every held-out stay, `summary` with
        at least its `threshold`, `params` and `description`."""
        test = self.read_csv(PREDICTIONS)["stay_id"]
        missing = sorted(set(test) - set(probabilities.index))
        if missing:
            raise StudyError(
                f"{name}: no prediction for {len(missing)} held-out stay(s) of {self.path} (e.g. {missing[:5]})"
            )
        predictions = (
            self.read_csv(EXTERNAL_PREDICTIONS) if self.has(EXTERNAL_PREDICTIONS) else pd.DataFrame({"stay_id": test})
        )
        predictions = predictions.set_index("stay_id").reindex(test)
        predictions[name] = probabilities.reindex(test).to_numpy()
        summaries = self.read_json(EXTERNAL_BASELINES) if self.has(EXTERNAL_BASELINES) else {}
        summaries[name] = summary
        self.write_csv(EXTERNAL_PREDICTIONS, predictions.reset_index())
        self.write_json(EXTERNAL_BASELINES, summaries)

    def read_external_baselines(self, stay_ids) -> tuple[dict, pd.DataFrame]:
        """The peer baselines' summaries and their probabilities for `stay_ids` (none: {} and an empty frame)."""
        if not self.has(EXTERNAL_BASELINES):
            return {}, pd.DataFrame(index=pd.Index(stay_ids, name="stay_id"))
        summaries = self.read_json(EXTERNAL_BASELINES)
        predictions = self.read_csv(EXTERNAL_PREDICTIONS).set_index("stay_id")
        missing = sorted(set(stay_ids) - set(predictions.index))
        if missing:
            raise StudyError(
                f"{self.path / EXTERNAL_PREDICTIONS} has no prediction for {len(missing)} test stay(s) "
                f"(e.g. {missing[:5]}): rerun the baseline that wrote it"
            )
        return summaries, predictions.loc[list(stay_ids), list(summaries)]

    def read_config(self) -> dict:
        return yaml.safe_load((self.path / CONFIG).read_text(encoding="utf-8"))

    def write_config(self, config: dict) -> None:
        (self.path / CONFIG).write_text(yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False))

    def write_versions(self) -> None:
        self.write_json(VERSIONS, {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}})

    def read_text(self, name: str) -> str:
        return (self.path / name).read_text(encoding="utf-8")

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        path.write_text(text, encoding="utf-8")
        return path

    def plot(self, name: str) -> Path:
        return self.path / PLOTS[name]

    def version(self) -> str:
        """The folder's name and a digest of what decides a score (weights, preprocessing, calibration, threshold)."""
        digest = hashlib.sha256()
        for name in SCORE_FILES:
            digest.update((self.path / name).read_bytes())
        return f"{self.path.resolve().name}@{digest.hexdigest()[:12]}"

    def artifacts(self) -> list[Path]:
        """The files an experiment tracker keeps: the reports and what they were made from, and the plots."""
        return [self.path / n for n in ARTIFACTS if (self.path / n).is_file()] + sorted(self.path.glob("*.png"))

    def check_loadable(self) -> dict:
        """model.json of a folder a model can be loaded from; an unfinished, incomplete, old or damaged one is
        refused with the reason."""
        if not self.path.is_dir():
            raise StudyError(f"{self.path} is not a folder: pass a run folder from `sepsis-fusion train`")
        if not self.has(MODEL):
            raise StudyError(f"{self.path} is not a run folder (no {MODEL}): train one with `sepsis-fusion train`")
        if self.path.name.startswith(".") and self.path.name.endswith(".partial"):
            raise StudyError(
                f"{self.path} is an unfinished run (training stopped before it was complete): resume the training"
            )
        missing = [name for name in SCORE_FILES if not self.has(name)]
        if missing:
            raise StudyError(f"{self.path} is incomplete: {', '.join(missing)} missing; train it again")
        meta = self.read_json(MODEL)
        if "members" not in meta:
            raise StudyError(f"{self.path} was written by an earlier version (one model, uncalibrated): train it again")
        written = meta.get("format", 1)
        if written != FORMAT:
            reader = READ_BY.get(written, "a later sepsis-fusion")
            raise StudyError(
                f"{self.path} is a run folder of format {written} (this is sepsis-fusion "
                f"{_version('sepsis-fusion') or 'from source'}, format {FORMAT}): {reader} reads it; "
                "or train it again"
            )
        return meta


def cohort_digest(stay_ids, prediction_times) -> str:
    """A digest of the stays a run was trained on and their prediction times: what `score` and `serve`
    compare with the data they read (computing the training set's own fingerprint would need the whole
    point-in-time retrieval). Another site, or another extract of the same one, has another digest."""
    frame = pd.DataFrame(
        {"stay_id": pd.Series(stay_ids).to_numpy(dtype="int64"), "t": pd.Series(prediction_times).to_numpy()}
    )
    frame = frame.sort_values("stay_id")
    h = hashlib.sha256(frame["stay_id"].to_numpy(dtype="int64").tobytes())
    h.update(frame["t"].to_numpy(dtype="datetime64[us]").astype("int64").tobytes())
    return h.hexdigest()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_folders(runs: Path) -> list[Path]:
    """The complete run folders under `runs`, oldest written first (unfinished ones are hidden: .<name>.partial)."""
    found = [p for p in Path(runs).glob(f"*/{MODEL}") if not p.parent.name.startswith(".")]
    return [p.parent for p in sorted(found, key=lambda p: p.stat().st_mtime)]


def latest_run(runs: Path) -> Path:
    """The most recently written run folder under `runs`."""
    found = run_folders(runs)
    if not found:
        raise StudyError(f"no run folder under {runs}: train one with `sepsis-fusion train` or pass --run")
    return found[-1]


def find_run(runs: Path, name: str | Path | None = None) -> Path:
    """A run folder by name under `runs` (looked for first), by any other path, or (None) the newest; a name
    that is neither is refused with the runs that exist."""
    if name is None:
        return latest_run(runs)
    under_runs = Path(runs) / name
    if RunFolder(under_runs).has(MODEL):
        return under_runs
    if Path(name).is_dir():
        return Path(name)
    names = [p.name for p in run_folders(runs)]
    listed = ", ".join(names) if names else "none: train one with `sepsis-fusion train`"
    raise StudyError(f"no run {str(name)!r}: not a run under {runs} nor a folder. Runs under {runs}: {listed}")


# --- the work folder a run is written into, and publishing it ------------------------------------------------


def partial_folder(run_dir: Path) -> Path:
    """Where a run is written until it is complete (hidden: `latest_run` never picks it)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.partial"


def checkpoint_folder(work: Path) -> Path:
    """Where a run's finished cross-validation folds are kept until it is published."""
    return Path(work) / "folds"


def finished_folds(work: Path) -> int:
    return len(list(checkpoint_folder(work).glob("*.json")))


def start_work(run_dir: Path, key: dict, progress: Callable[[str], None]) -> Path:
    """The hidden folder a run is written into: the one an interrupted run left, when it was started with
    this `key` (data fingerprint and config; its finished folds are kept), else a new one."""
    work = partial_folder(run_dir)
    try:
        same = json.loads((work / "started.json").read_text()) == key
    except (OSError, ValueError):
        same = False
    if same:
        progress(
            f"resuming the interrupted run in {work}: {finished_folds(work)} cross-validation fold(s) already done"
        )
        return work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "started.json").write_text(json.dumps(key))
    return work


def publish(work: Path, run_dir: Path) -> None:
    """Move a complete run into place, replacing an earlier run folder of that name only now."""
    run_dir = Path(run_dir)
    shutil.rmtree(checkpoint_folder(work), ignore_errors=True)
    (work / "started.json").unlink()
    old = run_dir.parent / f".{run_dir.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if run_dir.exists():
        run_dir.rename(old)
    work.rename(run_dir)
    shutil.rmtree(old, ignore_errors=True)


# --- fold models: one serialization for the run's weights and the cross-validation checkpoints ---------------


def save_members(weights: Path, members: Sequence) -> tuple[list[dict], list[dict]]:
    """Write fold models' weights to one safetensors file (keys `member<k>.<parameter>`) and return what
    rebuilds them beside it: their fusion configs and their fitted preprocessing."""
    from safetensors.torch import save_file

    save_file(
        {
            f"member{k}.{name}": v.contiguous()
            for k, m in enumerate(members)
            for name, v in m.model.state_dict().items()
        },
        weights,
    )
    return [m.model.config.to_dict() for m in members], [m.preprocessor.state() for m in members]


def load_members(weights: Path, fusion_configs: list[dict], states: list[dict]) -> list[tuple]:
    """(Preprocessor, FusionModel) pairs from `save_members`' file and records; a file that does not match
    them is refused as damage, naming it."""
    from safetensors.torch import load_file

    from .fusion import FusionConfig, FusionModel
    from .preprocess import Preprocessor

    try:
        tensors = load_file(weights)
    except Exception as exc:  # safetensors raises its own error types for a truncated or foreign file
        raise StudyError(f"{weights} cannot be read ({exc}): the run folder is damaged") from None
    if len(states) != len(fusion_configs):
        raise StudyError(
            f"{weights.parent}: {len(fusion_configs)} fold models but {len(states)} fitted preprocessings: "
            "the run folder is damaged"
        )
    members = []
    for k, (fusion, state) in enumerate(zip(fusion_configs, states)):
        model = FusionModel(FusionConfig.from_dict(fusion))
        prefix = f"member{k}."
        try:
            model.load_state_dict({name[len(prefix) :]: v for name, v in tensors.items() if name.startswith(prefix)})
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[:2]
            raise StudyError(
                f"{weights} does not hold fold model {k} as described beside it ({' '.join(first)}): "
                "the run folder is damaged"
            ) from None
        model.eval()
        members.append((Preprocessor.from_state(state), model))
    return members


def write_atomically(path: Path, text: str) -> None:
    """Write a file whole or not at all (moved into place when written)."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
