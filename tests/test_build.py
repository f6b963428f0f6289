"""`dbt build` over synthetic MIMIC-IV and the open demo: raw ingest, staging, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from sepsis_fusion.pipelines.build import BuildError, dbt_build


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()


def count(warehouse: Path, relation: str) -> int:
    return query(warehouse, f"SELECT count(*) FROM {relation}")[0][0]


def test_dbt_build_on_synthetic(synthetic_warehouse):
    assert count(synthetic_warehouse, "stg_icu_icustays") == 1500
    assert count(synthetic_warehouse, "stg_note_radiology") > 1500


def test_dbt_build_on_the_open_demo(demo_warehouse):
    assert count(demo_warehouse, "stg_icu_icustays") == 140
    assert count(demo_warehouse, "stg_hosp_patients") == 100
    assert count(demo_warehouse, "stg_note_radiology") == 0  # the demo has no notes: that part is off


def copy_mimic(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    for sub in ("hosp", "icu", "note"):
        if (src / sub).is_dir():
            shutil.copytree(src / sub, dst / sub, ignore=lambda d, names: [n for n in names if any(
                str(Path(d, n)).endswith(s) for s in skip)])
    return dst


@pytest.fixture()
def small_mimic(tmp_path) -> Path:
    from sepsis_fusion.pipelines.synth.generate import generate

    out = tmp_path / "mimic"
    generate(30, 11, out, density="light", progress=False)
    return out


def test_rebuild_skips_unchanged_raw_files_and_reloads_changed_ones(small_mimic, tmp_path, capfd):
    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse)
    loaded = dict(query(warehouse, "SELECT relation, loaded_at FROM raw._ingest_log"))
    capfd.readouterr()
    # Touch one file: only that table loads again.
    path = small_mimic / "hosp/omr.csv.gz"
    path.write_bytes(path.read_bytes())
    dbt_build(small_mimic, warehouse=warehouse)
    out = capfd.readouterr().out
    assert "raw: hosp/labevents unchanged, kept" in out
    assert f"raw: loading {path}" in out
    again = dict(query(warehouse, "SELECT relation, loaded_at FROM raw._ingest_log"))
    assert again["raw.hosp_labevents"] == loaded["raw.hosp_labevents"]
    assert again["raw.hosp_omr"] > loaded["raw.hosp_omr"]


def test_missing_required_table_names_the_file_and_keeps_the_warehouse(small_mimic, tmp_path, capfd):
    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse)
    (small_mimic / "icu/icustays.csv.gz").unlink()
    with pytest.raises(BuildError):
        dbt_build(small_mimic, warehouse=warehouse)
    out = capfd.readouterr().out
    assert f"MIMIC-IV table icu/icustays not found: expected {small_mimic}/icu/icustays.csv.gz" in out
    assert count(warehouse, "stg_icu_icustays") == 30  # what was built is still there


def test_missing_column_names_the_file_and_the_column(small_mimic, tmp_path, capfd):
    import gzip

    path = small_mimic / "hosp/patients.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    cut = [",".join(line.split(",")[:-1]) for line in lines]  # drop the last column, dod
    path.write_bytes(gzip.compress(("\n".join(cut) + "\n").encode()))
    with pytest.raises(BuildError):
        dbt_build(small_mimic, warehouse=tmp_path / "w.duckdb")
    assert f"{path} lacks column(s) dod that the project reads" in capfd.readouterr().out


def test_missing_note_folder_turns_notes_off_with_a_warning(small_mimic, tmp_path, capfd):
    shutil.rmtree(small_mimic / "note")
    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse)
    assert "note/radiology.csv.gz not found: the note modality (MIMIC-IV-Note) is turned off" in capfd.readouterr().out
    assert count(warehouse, "stg_note_radiology") == 0


def test_parquet_copies_are_accepted(small_mimic, tmp_path):
    path = small_mimic / "hosp/patients.csv.gz"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{path}')) TO '{small_mimic}/hosp/patients.parquet' (FORMAT parquet)")
    path.unlink()
    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse)
    assert count(warehouse, "stg_hosp_patients") > 0


def test_build_names_a_folder_that_is_not_mimic(tmp_path):
    with pytest.raises(BuildError, match=f"{tmp_path} is not a MIMIC-IV folder: it needs hosp/ and icu/"):
        dbt_build(tmp_path, warehouse=tmp_path / "w.duckdb")


def test_unchanged_inputs_skip_the_build_and_force_runs_it(small_mimic, tmp_path, capfd):
    warehouse = tmp_path / "w.duckdb"
    assert dbt_build(small_mimic, warehouse=warehouse)
    capfd.readouterr()
    assert dbt_build(small_mimic, warehouse=warehouse) == []
    assert "dbt build skipped" in capfd.readouterr().out
    assert "stg_icu_icustays" in dbt_build(small_mimic, warehouse=warehouse, force=True)
