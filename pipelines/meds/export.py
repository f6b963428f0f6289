"""The cohort's patients as a MEDS dataset (Medical Event Data Standard 0.4), split as a run was.

dbt's `meds_events` and `meds_codes` views (dbt_project/models/marts/meds/) hold the events; this module adds the
subject split of a trained run (train and tuning = its training part, tuning being its cross-validation
fold 0; held_out = its test part), streams each split's events into sorted Parquet shards, and writes the
metadata, the task's labels and its ACES config (task.py). Every table is checked against the `meds`
package's schemas before it is written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sepsis_fusion.model.errors import SepsisFusionError
from sepsis_fusion.model.run_folder import MODEL, OOF_PREDICTIONS, PREDICTIONS, RunFolder

from .. import paths
from . import task

SPLITS = ("train", "tuning", "held_out")
SUBJECTS_PER_SHARD = 10_000
TUNING_FOLD = 0  # the run's cross-validation fold that becomes MEDS' tuning split


class MedsError(SepsisFusionError):
    """The MEDS export or baseline cannot run as asked."""


def require_meds():
    """The `meds` package, or an error saying how to install the extra."""
    try:
        import meds
    except ImportError:
        raise MedsError("the MEDS export needs the meds extra: pip install 'sepsis-fusion[meds]'") from None
    return meds


@dataclass(frozen=True)
class MedsExport:
    root: Path
    subjects: dict[str, int]  # split -> subjects
    events: int
    codes: int
    shards: int
    bytes: int
    seconds: float
    labels: Path  # the task's labels (MEDS label schema), one file per data shard
    aces_config: Path


def subject_splits(run: Path) -> pd.DataFrame:
    """subject_id, stay_id, split: the run's training part as train (tuning: its CV fold 0), its test part as
    held_out. One stay per subject: the cohort keeps each patient's first Sepsis-3 stay."""
    folder = RunFolder(run)
    if not folder.has(PREDICTIONS, OOF_PREDICTIONS):
        raise MedsError(f"{run} has no {PREDICTIONS} and {OOF_PREDICTIONS}: train it first (sepsis-fusion train)")
    test = folder.read_csv(PREDICTIONS)[["stay_id", "subject_id"]].assign(split="held_out")
    train = folder.read_csv(OOF_PREDICTIONS)[["stay_id", "subject_id", "fold"]]
    train["split"] = ["tuning" if f == TUNING_FOLD else "train" for f in train["fold"]]
    splits = pd.concat([train.drop(columns="fold"), test], ignore_index=True)
    if splits["subject_id"].duplicated().any():
        raise MedsError(f"{run}: a subject has two stays in the run's data; MEDS splits subjects, not stays")
    return splits.astype({"stay_id": "int64", "subject_id": "int64"})


def export_meds(
    run: Path,
    out: Path,
    data: Path | None = None,
    warehouse: Path | None = None,
    subjects_per_shard: int = SUBJECTS_PER_SHARD,
    progress=None,
) -> MedsExport:
    """Write the MEDS dataset of `data`'s cohort (default: the data folder; events from `warehouse`, default
    the data folder's) at `out`, split as `run` was.
    The run must have been trained on these data (its stays and prediction times); a half-written export
    never replaces a complete one (it is written beside `out` and moved into place)."""
    meds = require_meds()
    from sepsis_fusion.pipelines.features.training import read_cohort

    started = time.perf_counter()
    data = Path(data or paths.data_dir())
    warehouse = Path(warehouse or data / paths.warehouse_path().name)
    if not warehouse.exists():
        raise MedsError(f"{warehouse} not found: run `sepsis-fusion build` first")
    splits = subject_splits(run)
    cohort = read_cohort(data, outcome_known=True).set_index("stay_id")
    missing = sorted(set(splits["stay_id"]) - set(cohort.index))
    if missing:
        raise MedsError(
            f"{len(missing)} stay(s) of the run {Path(run).name} are not in the cohort of {data} (e.g. {missing[:5]}): "
            "export the data the run was trained on"
        )
    outcome = RunFolder(run).read_json(MODEL)["outcome"]
    stays = cohort.loc[splits["stay_id"]]
    if (stays["subject_id"].to_numpy() != splits["subject_id"].to_numpy()).any():
        raise MedsError(f"the run {Path(run).name}'s stays belong to other subjects in {data}: rebuild or retrain")

    out = Path(out).resolve()
    work = out.with_name(f".{out.name}.partial")
    if work.exists():
        _remove(work)
    (work / "metadata").mkdir(parents=True)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        _require_views(con, warehouse)
        splits = _shard(splits, subjects_per_shard)
        con.register("subject_split", splits)
        events = shards = 0
        for (split, shard), _ in (bar := _progress(splits, progress)):
            path = work / "data" / split / f"{shard}.parquet"
            events += _write_shard(con, meds.DataSchema, split, shard, path)
            shards += 1
        codes = con.sql("select code, description, parent_codes from main.meds_codes order by code").to_arrow_table()
        codes = meds.CodeMetadataSchema.align(codes)
        pq.write_table(codes, work / meds.code_metadata_filepath)
        subject_split = pa.Table.from_pandas(splits[["subject_id", "split"]], preserve_index=False)
        pq.write_table(meds.SubjectSplitSchema.align(subject_split), work / meds.subject_splits_filepath)
    finally:
        con.close()
        if progress is not None and hasattr(bar, "close"):
            bar.close()
    labels = task.write_labels(work, splits, stays, outcome)
    aces = task.write_aces_config(work, cohort)
    dataset = _dataset_metadata(meds, run, data, outcome, cohort)
    meds.DatasetMetadataSchema.validate(dataset)
    (work / meds.dataset_metadata_filepath).write_text(json.dumps(dataset, indent=2))
    if out.exists():
        _remove(out)
    work.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return MedsExport(
        root=out,
        subjects={s: int((splits["split"] == s).sum()) for s in SPLITS},
        events=events,
        codes=codes.num_rows,
        shards=shards,
        bytes=size,
        seconds=time.perf_counter() - started,
        labels=out / labels.relative_to(work),
        aces_config=out / aces.relative_to(work),
    )


def _shard(splits: pd.DataFrame, subjects_per_shard: int) -> pd.DataFrame:
    """Number each split's subjects into shards of `subjects_per_shard`, in subject order."""
    splits = splits.sort_values(["split", "subject_id"]).reset_index(drop=True)
    splits["shard"] = splits.groupby("split").cumcount() // max(1, subjects_per_shard)
    return splits


def _progress(splits: pd.DataFrame, progress):
    groups = list(splits.groupby(["split", "shard"], sort=True))
    if progress is None:
        return groups
    return progress(groups, desc="MEDS shards", unit="shard")


def _require_views(con: duckdb.DuckDBPyConnection, warehouse: Path) -> None:
    views = {r[0] for r in con.sql("select view_name from duckdb_views() where schema_name = 'main'").fetchall()}
    missing = [v for v in ("meds_events", "meds_codes") if v not in views]
    if missing:
        raise MedsError(
            f"{warehouse} has no {', '.join(missing)}: it was built before the MEDS models; "
            "rebuild it with `sepsis-fusion build`"
        )


def _write_shard(con: duckdb.DuckDBPyConnection, schema, split: str, shard: int, path: Path) -> int:
    """Stream one shard's events, sorted by subject and time (static codes first), into `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    reader = con.sql(
        """
        select e.subject_id, cast(e.time as timestamp) as time, e.code,
               cast(e.numeric_value as float) as numeric_value, e.text_value
        from main.meds_events as e
        inner join subject_split as s on s.subject_id = e.subject_id
        where s.split = ? and s.shard = ?
        order by e.subject_id, e.time nulls first, e.code
        """,
        params=[split, int(shard)],
    ).to_arrow_reader(250_000)
    rows = 0
    with pq.ParquetWriter(path, schema.schema()) as writer:
        for batch in reader:
            table = schema.align(pa.Table.from_batches([batch]))
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _dataset_metadata(meds, run: Path, data: Path, outcome: str, cohort: pd.DataFrame) -> dict:
    from importlib import metadata

    from sepsis_fusion.model.run_folder import DATA, cohort_digest

    folder = RunFolder(run)
    trained = folder.read_json(DATA)
    return {
        "dataset_name": f"sepsis-fusion cohort ({data.name})",
        "dataset_version": cohort_digest(cohort.index, cohort["prediction_time"])[:12],
        "etl_name": "sepsis-fusion export meds",
        "etl_version": metadata.version("sepsis-fusion"),
        "meds_version": getattr(meds, "__version__", "0.4"),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "license": "PhysioNet Credentialed Health Data License 1.5.0 for MIMIC-IV; none for synthetic data",
        "description_uri": "docs/MEDS.md of sepsis-fusion",
        "split_from_run": folder.path.name,
        "split_from_run_fingerprint": trained.get("fingerprint"),
        "task_outcome": outcome,
    }


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
