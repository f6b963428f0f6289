"""MEDS-Tab's XGBoost as a peer baseline on a MEDS export (docs/MEDS.md): MEDS-Tab's own steps through its
command line (describe -> tabularize static and time series over several lookbacks -> cache the task ->
XGBoost tuned by its optuna sweep on the tuning split), its held-out predictions scored by meds-evaluation
and returned by stay for the run's report (`sepsis-fusion baseline meds-tab`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sepsis_fusion.model.errors import SepsisFusionError

from . import task
from .medstab_patches import LABELS_VARIABLE

NAME = "MEDS-Tab XGBoost"
LOOKBACKS = ("1d", "7d", "30d", "full")
AGGREGATIONS = (
    "static/present",
    "code/count",
    "value/count",
    "value/sum",
    "value/min",
    "value/max",
)
MIN_CODE_COUNT = 10  # codes seen fewer times are not features (fixed: MEDS-Tab's sweep would sample it up to 1e6)
TRIALS = 20
PATCHES = "sepsis_fusion.pipelines.meds.medstab_patches"


class MedsTabError(SepsisFusionError):
    """A MEDS-Tab step failed."""


@dataclass
class MedsTab:
    out: Path
    predictions: pd.DataFrame  # subject_id, prediction_time, boolean_value, probability (held_out)
    tuning: pd.DataFrame  # the same of the tuning split (the threshold is chosen on it)
    threshold: float
    params: dict  # the best trial's XGBoost settings
    meds_evaluation: dict  # meds-evaluation's results.json of the held-out predictions
    seconds: dict[str, float] = field(default_factory=dict)  # per step


def run_medstab(
    export: Path,
    out: Path,
    trials: int = TRIALS,
    seed: int = 0,
    lookbacks: tuple[str, ...] = LOOKBACKS,
    say=print,
) -> MedsTab:
    """Run MEDS-Tab on the MEDS dataset at `export` into `out` (a fresh folder each time: MEDS-Tab skips work it
    finds done) and read its best trial's predictions."""
    export, out = Path(export).resolve(), Path(out).resolve()
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    common = [
        f"input_dir={export / 'data'}",
        f"output_dir={out}",
        f"tabularization.min_code_inclusion_count={MIN_CODE_COUNT}",
        f"tabularization.window_sizes=[{','.join(lookbacks)}]",
        f"tabularization.aggs=[{','.join(AGGREGATIONS)}]",
    ]
    labels = task.labels_dir(export)
    steps = [
        ("describe", [f"input_dir={export / 'data'}", f"output_dir={out}"]),
        ("tabularize-static", common),
        ("tabularize-time-series", common),
        ("cache-task", [*common, f"task_name={task.TASK}", f"input_label_dir={labels}"]),
        (
            "model",
            [
                "--multirun",
                *common,
                f"task_name={task.TASK}",
                f"output_model_dir={out / 'model'}",
                f"hydra.sweeper.n_trials={trials}",
                "hydra.sweeper.n_jobs=1",
                "hydra.launcher.n_jobs=1",
                f"hydra.sweeper.sampler.seed={seed}",
                # MEDS-Tab's own space, but for the learning rate and the minimum child weight: down to eta 0.001
                # and up to weight 100, whole sweeps of a few trials gave a constant predictor (AUROC 0.5) on
                # cohorts of a few hundred training stays
                "+model_launcher.model.eta=tag(log, interval(0.01, 0.3))",
                "+model_launcher.model.min_child_weight=tag(log, interval(0.01, 5))",
                "delete_below_top_k=1",
            ],
        ),
    ]
    seconds = {}
    for step, args in steps:
        # the time series only at the rows the labels read (medstab_patches.rows_read_by_labels)
        seconds[step] = _run_step(step, args, out, say, labels if step == "tabularize-time-series" else None)
    best = _best_trial(out / "model")
    held_out = _predictions(best / "held_out_predictions.parquet")
    tuning = _predictions(best / "tuning_predictions.parquet")
    started = time.perf_counter()
    evaluation = _meds_evaluation(best / "held_out_predictions.parquet", out / "meds_evaluation")
    seconds["meds-evaluation"] = time.perf_counter() - started
    return MedsTab(
        out=out,
        predictions=held_out,
        tuning=tuning,
        threshold=_youden(tuning["boolean_value"].to_numpy(), tuning["probability"].to_numpy()),
        params=_params(best),
        meds_evaluation=evaluation,
        seconds=seconds,
    )


def summary(result: MedsTab, trials: int) -> dict:
    """What the run folder keeps of the baseline (run_folder.EXTERNAL_BASELINES)."""
    from importlib import metadata

    evaluation = result.meds_evaluation.get("samples_equally_weighted", {})
    return {
        "threshold": result.threshold,
        "params": result.params,
        "description": (
            f"MEDS-Tab {metadata.version('meds-tab')} on the run's MEDS export (`sepsis-fusion export meds`): static "
            f"codes, code counts and value count/sum/min/max over {', '.join(LOOKBACKS)} lookbacks ending at the "
            f"last event by T; XGBoost trained on the train split, tuned by MEDS-Tab's own optuna sweep ({trials} "
            "trials) on the tuning split (the run's cross-validation fold 0); threshold: Youden on the tuning "
            "split; three tabularization defects of MEDS-Tab 0.2.0 mended at run time (docs/MEDS.md)"
        ),
        "source": str(result.out),
        "meds_evaluation": {
            k: evaluation.get(k) for k in ("roc_auc_score", "average_precision_score", "calibration_error")
        },
        "seconds": {k: round(v, 1) for k, v in result.seconds.items()},
    }


def _run_step(step: str, args: list[str], out: Path, say, labels: Path | None = None) -> float:
    log = out / f"{step}.log"
    say(f"MEDS-Tab {step} ...")
    env = {**os.environ, "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", str(os.cpu_count() or 1))}
    if labels is not None:
        env[LABELS_VARIABLE] = str(labels)
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", PATCHES, step, *args], stdout=handle, stderr=subprocess.STDOUT, env=env
        )
    took = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise MedsTabError(f"MEDS-Tab {step} failed (exit {done.returncode}); its log: {log}\n{tail}")
    say(f"MEDS-Tab {step}: {took:,.1f} s")
    return took


def _best_trial(model_dir: Path) -> Path:
    found = sorted(model_dir.glob("*/best_trial"))
    if not found or not (found[-1] / "held_out_predictions.parquet").exists():
        raise MedsTabError(f"MEDS-Tab wrote no best trial with held-out predictions under {model_dir}")
    return found[-1]


def _predictions(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(
        path, columns=["subject_id", "prediction_time", "boolean_value", "predicted_boolean_probability"]
    )
    frame = frame.rename(columns={"predicted_boolean_probability": "probability"})
    frame["prediction_time"] = frame["prediction_time"].astype("datetime64[us]")
    return frame.astype({"subject_id": "int64", "boolean_value": bool})


def _params(best: Path) -> dict:
    from omegaconf import OmegaConf

    config = OmegaConf.load(best / "config.log")
    model = OmegaConf.to_container(config.model_launcher.model, resolve=False)
    training = OmegaConf.to_container(config.model_launcher.training_params, resolve=False)
    keep = ("eta", "lambda", "alpha", "subsample", "min_child_weight", "max_depth")
    params = {k: model[k] for k in keep if k in model}
    params.update({k: training[k] for k in ("num_boost_round", "early_stopping_rounds") if k in training})
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in params.items()}


def _meds_evaluation(predictions: Path, out: Path) -> dict:
    """meds-evaluation's own command on the held-out predictions; its results.json."""
    command = [str(Path(sys.executable).with_name("meds-evaluation-cli"))]
    done = subprocess.run(
        [*command, f"predictions_path={predictions}", f"output_dir={out}"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise MedsTabError(f"meds-evaluation failed on {predictions}:\n{done.stderr[-2000:]}")
    return json.loads((out / "results.json").read_text())


def _youden(y: np.ndarray, p: np.ndarray) -> float:
    from sepsis_fusion.model.protocol import youden_threshold

    return float(youden_threshold(y, p))
