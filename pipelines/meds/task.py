"""The study's task in MEDS terms: the project's labels as MEDS label files, and an ACES task config that
derives the same labels from the exported events (trigger SEPSIS3_RECOGNISED, prediction time T = trigger +
prediction_hours, label MEDS_DEATH in (T, T + horizon])."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TASK = "sepsis3_mortality"
LABELS = "labels"  # <export>/labels/<task>/<split>/<shard>.parquet, one per data shard
TASKS = "tasks"  # <export>/tasks/<task>.yaml, the ACES config


def labels_dir(root: Path) -> Path:
    return Path(root) / LABELS / TASK


def aces_config_path(root: Path) -> Path:
    return Path(root) / TASKS / f"{TASK}.yaml"


def write_labels(root: Path, splits: pd.DataFrame, stays: pd.DataFrame, outcome: str) -> Path:
    """The project's labels of the run's outcome, at each stay's T, split and sharded as the data are."""
    from meds import LabelSchema

    frame = pd.DataFrame(
        {
            "subject_id": splits["subject_id"].to_numpy(dtype="int64"),
            "prediction_time": stays.loc[splits["stay_id"], "prediction_time"].to_numpy(dtype="datetime64[us]"),
            "boolean_value": stays.loc[splits["stay_id"], outcome].to_numpy(dtype=bool),
            "split": splits["split"].to_numpy(),
            "shard": splits["shard"].to_numpy(),
        }
    )
    out = labels_dir(root)
    for (split, shard), part in frame.groupby(["split", "shard"]):
        table = pa.Table.from_pandas(
            part.drop(columns=["split", "shard"]).sort_values("subject_id"), preserve_index=False
        )
        path = out / split / f"{shard}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(LabelSchema.align(table), path)
    return out


def aces_config(prediction_hours: int, horizon_days: int) -> str:
    """The ACES task: from each SEPSIS3_RECOGNISED, predict at T = trigger + prediction_hours (index_timestamp)
    whether MEDS_DEATH follows within horizon_days of T. The cohort's other rules (alive and in the ICU at T,
    first Sepsis-3 stay, adult) hold for every stay that carries the trigger, since the export writes it only
    for cohort stays; the gap window states the first two again so that the config reads on its own."""
    return f"""# sepsis-fusion's study task (docs/COHORT.md, docs/MEDS.md), for ACES (es-aces 0.7)
description: >-
  Death within {horizon_days} days of T in adult ICU stays with Sepsis-3, T = {prediction_hours} h after
  Sepsis-3 was first known from stored rows (SEPSIS3_RECOGNISED).

predicates:
  death:
    code: MEDS_DEATH
  icu_discharge:
    code: {{regex: "^ICU_DISCHARGE//.*"}}
  recognised:
    code: SEPSIS3_RECOGNISED

trigger: recognised

windows:
  gap:
    start: trigger
    end: start + {prediction_hours}h
    start_inclusive: false
    end_inclusive: true
    has:
      death: (None, 0)
      icu_discharge: (None, 0)
  input:
    start: null
    end: gap.end
    start_inclusive: true
    end_inclusive: true
    index_timestamp: end
  target:
    start: gap.end
    end: start + {horizon_days}d
    start_inclusive: false
    end_inclusive: true
    label: death
"""


def write_aces_config(root: Path, cohort: pd.DataFrame) -> Path:
    hours = _one(cohort, "prediction_time", "recognition_time")
    days = int(cohort["mortality_horizon_days"].iloc[0]) if "mortality_horizon_days" in cohort else 28
    path = aces_config_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(aces_config(hours, days))
    return path


def _one(cohort: pd.DataFrame, later: str, earlier: str) -> int:
    """The study's prediction offset in whole hours (T - recognition_time, the same for every stay)."""
    offsets = (pd.to_datetime(cohort[later]) - pd.to_datetime(cohort[earlier])).dropna().unique()
    if len(offsets) != 1:
        raise ValueError(f"T - recognition_time is not one offset: {sorted(offsets)[:3]}")
    return int(pd.Timedelta(offsets[0]) / pd.Timedelta(hours=1))


def aces_labels(root: Path, config: Path | None = None) -> pd.DataFrame:
    """ACES' labels from the exported events (its Python API, shard by shard, as `aces-cli data=sharded`
    does): subject_id, prediction_time, boolean_value."""
    from aces import config as aces_config_module
    from aces import predicates, query
    from omegaconf import OmegaConf

    frames = []
    for shard in sorted((Path(root) / "data").glob("*/*.parquet")):
        # loaded anew for each shard: es-aces 0.7.3's query() shifts the config's windows in place, so a
        # second query with the same config puts T another prediction offset later
        task = aces_config_module.TaskExtractorConfig.load(config_path=Path(config or aces_config_path(root)))
        data = OmegaConf.create({"path": str(shard), "standard": "meds"})
        result = query.query(task, predicates.get_predicates_df(task, data))
        if len(result):
            frames.append(result.select("subject_id", "index_timestamp", "label").to_pandas())
    columns = {"index_timestamp": "prediction_time", "label": "boolean_value"}
    labels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["subject_id", *columns])
    labels = labels.rename(columns=columns)
    labels["prediction_time"] = labels["prediction_time"].astype("datetime64[us]")
    return labels.astype({"subject_id": "int64", "boolean_value": bool})


def project_labels(root: Path) -> pd.DataFrame:
    """The labels the export wrote (the project's), every split."""
    return pd.concat(
        [pq.read_table(p).to_pandas() for p in sorted(labels_dir(root).glob("*/*.parquet"))], ignore_index=True
    )[["subject_id", "prediction_time", "boolean_value"]]


def label_differences(project: pd.DataFrame, aces: pd.DataFrame) -> pd.DataFrame:
    """Subjects whose ACES label or prediction time differs from the project's, or that only one side has:
    subject_id, prediction_time and boolean_value of each side (suffixes _project, _aces)."""
    both = project.merge(aces, on="subject_id", how="outer", suffixes=("_project", "_aces"), indicator=True)
    differs = (
        (both["_merge"] != "both")
        | (both["prediction_time_project"] != both["prediction_time_aces"])
        | (both["boolean_value_project"] != both["boolean_value_aces"])
    )
    return both.loc[differs].drop(columns="_merge").reset_index(drop=True)
