"""The MEDS export (`sepsis-fusion export meds`), the task as MEDS labels and an ACES config, and MEDS-Tab as a
peer baseline (docs/MEDS.md), on the synthetic build and its trained run."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
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


def test_aces_labels_equal_the_projects_for_every_cohort_stay(export):
    project = task.project_labels(export.root)
    aces = task.aces_labels(export.root)
    differences = task.label_differences(project, aces)
    assert len(project) == sum(export.subjects.values())
    assert differences.empty, differences.head(10).to_string()
    assert 0 < project["boolean_value"].mean() < 1


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
