"""The MEDS export (`sepsis-fusion export meds`), the task as MEDS labels and an ACES config, and MEDS-Tab as a
peer baseline (docs/MEDS.md), on the synthetic build and its trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("meds", reason="the meds extra (pip install 'sepsis-fusion[meds]')")

import meds  # noqa: E402

from sepsis_fusion.model.run_folder import OOF_PREDICTIONS, PREDICTIONS, RunFolder  # noqa: E402
from sepsis_fusion.pipelines.meds import task  # noqa: E402
from sepsis_fusion.pipelines.meds.export import MedsError, export_meds  # noqa: E402


@pytest.fixture(scope="module")
def export(trained_run, feature_data, synthetic_warehouse, tmp_path_factory):
    out = tmp_path_factory.mktemp("meds") / "meds"
    return export_meds(trained_run, out, feature_data, synthetic_warehouse, subjects_per_shard=150)


def _events(root: Path) -> pd.DataFrame:
    return pd.concat(
        [pq.read_table(p).to_pandas().assign(split=p.parent.name) for p in sorted((root / "data").glob("*/*.parquet"))],
        ignore_index=True,
    )


def test_the_export_is_a_valid_meds_dataset_split_as_the_run_was(export, trained_run):
    shards = sorted((export.root / "data").glob("*/*.parquet"))
    assert {p.parent.name for p in shards} == {"train", "tuning", "held_out"}
    assert len(shards) == export.shards > 3  # 150 subjects a shard
    for path in shards:
        table = pq.read_table(path)
        meds.DataSchema.validate(table)  # raises when it is not
        frame = table.select(["subject_id", "time"]).to_pandas()
        assert frame.equals(frame.sort_values(["subject_id", "time"], na_position="first", kind="stable"))
    meds.CodeMetadataSchema.validate(pq.read_table(export.root / meds.code_metadata_filepath))
    meds.DatasetMetadataSchema.validate(json.loads((export.root / meds.dataset_metadata_filepath).read_text()))
    splits = pq.read_table(export.root / meds.subject_splits_filepath)
    meds.SubjectSplitSchema.validate(splits)
    for path in sorted(export.labels.glob("*/*.parquet")):
        meds.LabelSchema.validate(pq.read_table(path))

    run = RunFolder(trained_run)
    test, oof = run.read_csv(PREDICTIONS), run.read_csv(OOF_PREDICTIONS)
    by_split = splits.to_pandas().groupby("split")["subject_id"].apply(set)
    assert by_split["held_out"] == set(test["subject_id"])
    assert by_split["tuning"] == set(oof.loc[oof["fold"] == 0, "subject_id"])
    assert by_split["train"] == set(oof.loc[oof["fold"] != 0, "subject_id"])
    events = _events(export.root)
    assert len(events) == export.events
    assert events.groupby("subject_id")["split"].nunique().max() == 1  # a subject's events in one split
    assert set(events["subject_id"]) == set(splits.column("subject_id").to_pylist())
    assert set(events["code"]) == set(
        pq.read_table(export.root / meds.code_metadata_filepath).column("code").to_pylist()
    )
    kinds = set(events["code"].str.split("//").str[0])
    assert {"LAB", "CHART", "DIAGNOSIS", "MEDICATION", "HOSPITAL_ADMISSION", "ICU_ADMISSION"} <= kinds
    assert {meds.birth_code, meds.death_code, "GENDER", "SEPSIS3_RECOGNISED", "NOTE"} <= kinds
    assert events.loc[events["code"].str.startswith("LAB//"), "numeric_value"].notna().mean() > 0.9


def test_each_event_is_exported_at_the_time_it_existed_in_the_record(export, synthetic_warehouse):
    """Labs and vitals at their storetime (a result stored hours after it was drawn is not known before),
    diagnoses at their admission's discharge (coded after it): no event is placed before the row existed."""
    events = _events(export.root)
    con = duckdb.connect(str(synthetic_warehouse), read_only=True)
    try:
        labs = con.sql(
            "select subject_id, itemid, charttime, storetime, valuenum from main.stg_hosp_labevents "
            "where storetime > charttime + interval 1 hour and valuenum is not null"
        ).df()
        discharges = con.sql("select subject_id, hadm_id, dischtime from main.stg_hosp_admissions").df()
    finally:
        con.close()
    exported = events.loc[events["code"].str.startswith("LAB//")].rename(columns={"numeric_value": "value"})
    exported["itemid"] = exported["code"].str.split("//").str[1].astype(int)
    late = labs.loc[labs["subject_id"].isin(exported["subject_id"])].assign(
        value=lambda f: f["valuenum"].astype("float32")
    )
    assert len(late) > 100  # the generator stores many results hours after they were drawn
    on = ["subject_id", "itemid", "value"]
    at_storetime = late.merge(exported, left_on=[*on, "storetime"], right_on=[*on, "time"])
    at_charttime = late.merge(exported, left_on=[*on, "charttime"], right_on=[*on, "time"])
    assert len(at_storetime.drop_duplicates([*on, "storetime"])) == len(late.drop_duplicates([*on, "storetime"]))
    assert len(at_charttime) < 0.01 * len(late)  # placed at its draw, every late result would be here

    diagnoses = events.loc[events["code"].str.startswith("DIAGNOSIS//")]
    assert len(diagnoses) > 0
    assert set(diagnoses["time"]) <= set(discharges["dischtime"])
    recognised = events.loc[events["code"] == "SEPSIS3_RECOGNISED", ["subject_id", "time"]]
    labels = task.project_labels(export.root)[["subject_id", "prediction_time"]]
    known = diagnoses.merge(labels, on="subject_id").merge(recognised, on="subject_id", suffixes=("", "_rec"))
    # diagnoses known at T are those of admissions discharged before it (the cohort stay's own: never)
    before_t = known.loc[known["time"] <= known["prediction_time"]]
    assert (before_t["time"] < before_t["time_rec"]).all()
    assert len(known) > len(before_t)  # the cohort admission's own diagnoses come after T
    deaths = events.loc[events["code"] == meds.death_code].set_index("subject_id")["time"]
    discharges_ = events.loc[events["code"].str.startswith("HOSPITAL_DISCHARGE//")].groupby("subject_id")["time"].max()
    both = discharges_.index.intersection(deaths.index)
    assert len(both) > 0 and (deaths.loc[both] >= discharges_.loc[both]).all()  # a death never before a discharge
    at_t = labels.set_index("subject_id")["prediction_time"]
    died = deaths.index.intersection(at_t.index)
    assert len(died) > 0 and (deaths.loc[died] > at_t.loc[died]).all()  # no death at or before T, as the cohort


def test_aces_labels_equal_the_projects_for_every_cohort_stay(export):
    project = task.project_labels(export.root)
    aces = task.aces_labels(export.root)
    differences = task.label_differences(project, aces)
    assert len(project) == sum(export.subjects.values())
    assert differences.empty, differences.head(10).to_string()
    assert 0 < project["boolean_value"].mean() < 1


def test_aces_cli_as_docs_meds_md_shows_it_gives_the_projects_labels(export, tmp_path):
    import subprocess
    import sys

    project = task.project_labels(export.root)
    for shard in sorted((export.root / "data").glob("*/0.parquet")):
        name = f"{shard.parent.name}/0"
        out = tmp_path / f"{name}.parquet"
        subprocess.run(
            [
                str(Path(sys.executable).with_name("aces-cli")),
                "data=sharded",
                "data.standard=meds",
                f"data.root={export.root / 'data'}",
                f"data.shard={name}",
                f"cohort_dir={export.aces_config.parent}",
                f"cohort_name={task.TASK}",
                f"output_filepath={out}",
            ],
            check=True,
            capture_output=True,
            cwd=tmp_path,
        )
        aces = pq.read_table(out).to_pandas()[["subject_id", "prediction_time", "boolean_value"]]
        shard_subjects = set(pq.read_table(shard, columns=["subject_id"]).column(0).to_pylist())
        expected = project.loc[project["subject_id"].isin(shard_subjects)]
        assert len(aces) == len(expected) > 0
        assert task.label_differences(expected, aces).empty


def test_the_aces_config_names_the_studys_offset_and_horizon(export):
    text = export.aces_config.read_text()
    assert "end: start + 24h" in text and "end: start + 28d" in text and "trigger: recognised" in text


def test_an_export_refuses_a_run_of_other_data_and_keeps_the_last_export(
    export, trained_run, feature_data, synthetic_warehouse, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    oof = pd.read_csv(run / OOF_PREDICTIONS)
    oof.loc[0, "stay_id"] = 999_999_999
    oof.to_csv(run / OOF_PREDICTIONS, index=False)
    before = sorted(p.relative_to(export.root) for p in export.root.rglob("*"))
    with pytest.raises(MedsError, match="999999999"):
        export_meds(run, export.root, feature_data, synthetic_warehouse)
    assert sorted(p.relative_to(export.root) for p in export.root.rglob("*")) == before


def test_an_export_names_a_warehouse_built_before_the_meds_models(trained_run, feature_data, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    with pytest.raises(MedsError, match="sepsis-fusion build"):
        export_meds(trained_run, tmp_path / "meds", feature_data, warehouse)
    assert not (tmp_path / "meds").exists()


# MEDS-Tab: the three mended functions against MEDS-Tab's own, then the whole baseline on the export.


def _stock_and_mended():
    import importlib

    from MEDS_tabular_automl import generate_summarized_reps as reps
    from MEDS_tabular_automl import generate_ts_features as ts

    from sepsis_fusion.pipelines.meds import medstab_patches

    importlib.reload(reps), importlib.reload(ts)  # MEDS-Tab's own functions, whatever a test applied before
    stock = {"values": ts.get_long_value_df, "agg": reps.compute_agg, "matrix": reps.aggregate_matrix}
    return stock, medstab_patches


def _events_frame():
    import polars as pl

    return pl.DataFrame(
        {
            "subject_id": [1, 1, 1, 1, 2],
            "time": pd.to_datetime(
                ["2100-01-01 00:00", "2100-01-01 00:00", "2100-01-01 06:00", "2100-01-02 00:00", "2100-01-01 00:00"]
            ),
            "code": [
                "LAB//50813//mmol/L",
                "CHART//220045//bpm",
                "LAB//50813//mmol/L",
                "CHART//220045//bpm",
                "LAB//50813//mmol/L",
            ],
            "numeric_value": [2.5, 90.0, 4.0, 110.0, 1.2],
        }
    ).lazy()


def test_medstab_0_2_0_drops_every_value_feature_and_the_mended_function_keeps_them():
    stock, mended = _stock_and_mended()
    names = ["LAB//50813//mmol/L/value", "CHART//220045//bpm/value"]
    data, _ = stock["values"](_events_frame(), names)
    assert len(data) == 0  # the defect, as released
    data, (rows, cols) = mended.get_long_value_df(_events_frame(), names)
    assert sorted(data.tolist()) == [1.2, 2.5, 4.0, 90.0, 110.0]
    assert cols.tolist() == [0, 1, 0, 1, 0] and rows.tolist() == [0, 1, 2, 3, 4]


def test_medstab_0_2_0_loses_the_last_row_of_each_time_and_the_mended_one_counts_every_row():
    import polars as pl
    from scipy.sparse import csr_array

    stock, mended = _stock_and_mended()
    index = pl.DataFrame(
        {
            "subject_id": [1, 1, 1, 2],
            "time": pd.to_datetime(
                format="ISO8601", arg=["2100-01-01", "2100-01-01", "2100-01-02 00:00", "2100-01-01 00:00"]
            ),
        }
    ).lazy()
    counts = csr_array(np.array([[1, 0], [0, 1], [1, 0], [1, 0]]))
    as_released = stock["agg"](index, counts, "full", "code/count", 2).toarray()
    assert as_released.tolist() == [[1, 0], [1, 0], [0, 0]]  # subject 1's second row and subject 2 lost
    assert mended.compute_agg(index, counts, "full", "code/count", 2).toarray().tolist() == [[1, 1], [2, 1], [1, 0]]


@pytest.mark.parametrize("agg", ["value/sum", "value/sum_sqd", "value/count", "value/min", "value/max"])
def test_the_vectorised_aggregation_equals_medstabs_loop(agg):
    import polars as pl
    from scipy.sparse import csr_array
    from scipy.sparse import random as sparse_random

    stock, mended = _stock_and_mended()
    mended.apply()  # MEDS-Tab's aggregate_matrix with the mended min and max
    rng = np.random.default_rng(0)
    matrix = csr_array(sparse_random(400, 9, density=0.3, random_state=1))
    matrix.data = rng.normal(loc=3, size=matrix.data.size).astype(np.float32)
    ends = np.sort(rng.integers(0, 401, 300))
    starts = np.maximum(0, ends - rng.integers(0, 60, 300))
    ours = mended.aggregate_ranges(starts, ends, matrix, agg, 9).toarray()
    theirs = stock["matrix"](pl.DataFrame({"min_index": starts, "max_index": ends}), matrix, agg, 9).toarray()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    if agg == "value/min":
        assert (ours[ours != 0] > -10).all() and (ours > 0).sum() > 100  # minima of the values, not 0


@pytest.fixture(scope="module")
def medstab(export, tmp_path_factory):
    from sepsis_fusion.pipelines.meds.medstab import run_medstab

    out = tmp_path_factory.mktemp("medstab") / "out"
    return run_medstab(export.root, out, trials=3, lookbacks=("7d", "full"), say=lambda line: None)


def test_medstab_runs_on_the_export_with_value_features(medstab, export):
    from MEDS_tabular_automl.utils import load_matrix

    cache = medstab.out / task.TASK / "task_cache" / "held_out"
    minima = sorted(cache.glob("*/7d/value/min.npz"))
    assert minima, f"no 7d value/min matrix under {cache}"
    matrix = load_matrix(minima[0])
    assert matrix.nnz > 0 and (matrix.data > 0).mean() > 0.9  # lab minima, not the implicit zeros
    held_out = set(
        pq.read_table(export.root / meds.subject_splits_filepath).to_pandas().query("split == 'held_out'")["subject_id"]
    )
    assert set(medstab.predictions["subject_id"]) == held_out
    assert medstab.predictions["probability"].between(0, 1).all() and medstab.predictions["probability"].nunique() > 10
    assert 0 < medstab.threshold < 1


def test_only_the_rows_cache_task_reads_are_tabulated_and_they_equal_medstabs(medstab, export, monkeypatch):
    """The time series is tabulated at the rows the labels read (each label's last event time by T, found as
    MEDS-Tab's cache-task finds it), equal there to the tabulation of every row; the other rows stay empty."""
    import polars as pl
    from MEDS_tabular_automl.describe_codes import get_feature_columns
    from MEDS_tabular_automl.generate_ts_features import get_flat_ts_rep
    from MEDS_tabular_automl.utils import get_events_df, get_unique_time_events_df

    from sepsis_fusion.pipelines.meds import medstab_patches

    medstab_patches.apply()
    features = get_feature_columns(medstab.out / "metadata" / "codes.parquet")
    shard = sorted((export.root / "data" / "held_out").glob("*.parquet"))[0]
    frame = pl.scan_parquet(shard)
    index_df, matrix = get_flat_ts_rep("value/max", features, frame)
    monkeypatch.delenv(medstab_patches.LABELS_VARIABLE, raising=False)
    every = medstab_patches.compute_agg(index_df, matrix, "7d", "value/max", len(features)).toarray()
    monkeypatch.setenv(medstab_patches.LABELS_VARIABLE, str(task.labels_dir(export.root)))
    read = medstab_patches.compute_agg(index_df, matrix, "7d", "value/max", len(features)).toarray()

    labels = pl.read_parquet(task.labels_dir(export.root) / "held_out" / shard.name).lazy()
    times = get_unique_time_events_df(get_events_df(frame, features)).with_row_index("event_id")
    event_ids = (
        labels.join_asof(
            times.select("subject_id", "time", "event_id"), by="subject_id", left_on="prediction_time", right_on="time"
        )
        .collect()["event_id"]
        .drop_nulls()
        .to_numpy()
    )
    assert len(event_ids) > 50 and read.shape == every.shape
    np.testing.assert_array_equal(read[event_ids], every[event_ids])
    assert np.abs(read[event_ids]).sum() > 0
    others = np.setdiff1d(np.arange(len(read)), event_ids)
    assert not read[others].any() and every[others].any()


def test_medstab_joins_the_report_and_meds_evaluation_agrees(medstab, trained_run, synthetic_training_set, tmp_path):
    from sepsis_fusion.model.evaluate import evaluate
    from sepsis_fusion.pipelines.meds.export import subject_splits
    from sepsis_fusion.pipelines.meds.medstab import NAME, summary

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    stays = subject_splits(run).set_index("subject_id")["stay_id"]
    probabilities = pd.Series(
        medstab.predictions["probability"].to_numpy(), index=stays.loc[medstab.predictions["subject_id"]].to_numpy()
    )
    RunFolder(run).write_external_baseline(NAME, probabilities, summary(medstab, 3))
    report = evaluate(synthetic_training_set, run, resamples=50).read_text()
    assert NAME in report and "Peer baselines" in report
    metrics = json.loads((run / "metrics.json").read_text())
    assert NAME in metrics["paired_differences"]
    ours = metrics["models"][NAME]["auroc"]["value"]
    theirs = medstab.meds_evaluation["samples_equally_weighted"]["roc_auc_score"]
    assert abs(ours - theirs) < 1e-9


def test_a_peer_baseline_missing_a_held_out_stay_is_refused(trained_run, tmp_path):
    from sepsis_fusion.model.errors import StudyError

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    test = RunFolder(run).read_csv(PREDICTIONS)["stay_id"]
    with pytest.raises(StudyError, match="no prediction for 1 held-out stay"):
        RunFolder(run).write_external_baseline("x", pd.Series(0.5, index=test.iloc[1:]), {"threshold": 0.5})
    assert not (run / "external_baselines.json").exists()
