"""`dbt build` over synthetic MIMIC-IV and the open demo: raw ingest, staging, errors."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from helpers import assert_exit, invoke, query, scalar
from mimic_files import set_cell

from sepsis_fusion.pipelines.build import BuildError, dbt_build


def count(warehouse: Path, relation: str) -> int:
    return int(scalar(warehouse, f"SELECT count(*) FROM {relation}"))


def rows(warehouse: Path, sql: str) -> list[tuple]:
    return list(query(warehouse, sql).itertuples(index=False, name=None))


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
            shutil.copytree(
                src / sub,
                dst / sub,
                ignore=lambda d, names: [n for n in names if any(str(Path(d, n)).endswith(s) for s in skip)],
            )
    return dst


@pytest.fixture(scope="module")
def small_mimic_source(tmp_path_factory) -> Path:
    from sepsis_fusion.pipelines.synth.generate import generate

    out = tmp_path_factory.mktemp("small") / "mimic"
    generate(30, 11, out, density="light", progress=False)
    return out


@pytest.fixture()
def small_mimic(small_mimic_source, tmp_path, monkeypatch) -> Path:
    """30 synthetic stays, this test's own copy. Tests of the ingest or of one model build only the models
    they read (`select`); tests of the selected models' relationships to unselected ones are left out, as
    `dbt build --select` with DBT_INDIRECT_SELECTION=cautious does."""
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")
    return copy_mimic(small_mimic_source, tmp_path / "mimic")


STAYS = "stg_icu_icustays"  # the smallest build that runs the whole raw ingest


def test_rebuild_reloads_changed_files_only_and_is_skipped_when_nothing_changed(small_mimic, tmp_path, capfd):
    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse, select=STAYS)
    loaded = dict(rows(warehouse, "SELECT relation, loaded_at FROM raw._ingest_log"))
    capfd.readouterr()
    # Touch one file: only that table loads again.
    path = small_mimic / "hosp/omr.csv.gz"
    path.write_bytes(path.read_bytes())
    dbt_build(small_mimic, warehouse=warehouse)  # a whole build: only a complete one makes the next skippable
    out = capfd.readouterr().out
    assert "raw: hosp/labevents unchanged, kept" in out
    assert f"raw: loading {path}" in out
    again = dict(rows(warehouse, "SELECT relation, loaded_at FROM raw._ingest_log"))
    assert again["raw.hosp_labevents"] == loaded["raw.hosp_labevents"]
    assert again["raw.hosp_omr"] > loaded["raw.hosp_omr"]
    # Nothing changed since: the whole build is skipped; --force runs it anyway.
    assert dbt_build(small_mimic, warehouse=warehouse) == []
    assert "dbt build skipped" in capfd.readouterr().out
    assert "stg_icu_icustays" in dbt_build(small_mimic, warehouse=warehouse, select=STAYS, force=True)


def test_a_build_never_reads_dbts_partial_parse_of_another_project_folder(small_mimic, tmp_path, monkeypatch):
    """dbt's partial parse records the project's absolute path (e.g. each seed's file) without checking it:
    a build from another checkout of the same project, since removed, must not leave its paths to this one."""
    import sepsis_fusion.pipelines.build as build

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the partial-parse cache of this test only
    other = tmp_path / "other_checkout" / "dbt_project"
    shutil.copytree(build.paths.DBT_PROJECT_DIR, other, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setattr(build.paths, "DBT_PROJECT_DIR", other)
    dbt_build(
        small_mimic, warehouse=tmp_path / "first" / "warehouse.duckdb", select=f"{STAYS} antibiotic_name_patterns"
    )
    shutil.rmtree(other)
    monkeypatch.setattr(build.paths, "DBT_PROJECT_DIR", build.paths.PROJECT_ROOT / "dbt_project")
    warehouse = tmp_path / "second" / "warehouse.duckdb"
    # a seed, from this project
    assert "antibiotic_name_patterns" in dbt_build(
        small_mimic, warehouse=warehouse, select=f"{STAYS} antibiotic_name_patterns"
    )
    assert count(warehouse, "stg_icu_icustays") > 0


def test_bad_raw_files_are_named_and_the_last_build_is_kept(small_mimic, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    select = f"{STAYS} stg_icu_chartevents"
    dbt_build(small_mimic, warehouse=warehouse, select=select)
    icustays, patients, chartevents = (
        small_mimic / f for f in ("icu/icustays.csv.gz", "hosp/patients.csv.gz", "icu/chartevents.csv.gz")
    )
    cases = [  # what is wrong, the damage, what the error must say
        (
            "a missing table",
            icustays,
            lambda: icustays.unlink(),
            f"MIMIC-IV table icu/icustays not found: expected {icustays}",
        ),
        (
            "a value of the wrong type",
            patients,
            lambda: set_cell(patients, 3, "anchor_age", "seventy"),
            f"{patients}, line 4: column anchor_age holds 'seventy', which is not a smallint",
        ),
        (
            "a truncated gzip file (a download cut short)",
            chartevents,
            lambda: chartevents.write_bytes(chartevents.read_bytes()[: chartevents.stat().st_size // 2]),
            f"Unexpected end of GZIP stream: {chartevents}",
        ),
    ]
    for case, path, damage, message in cases:
        whole = path.read_bytes()
        damage()
        with pytest.raises(BuildError) as error:
            dbt_build(small_mimic, warehouse=warehouse, select=select)
        assert message in str(error.value), case
        assert "The models of the last build stay in" in str(error.value)
        assert count(warehouse, "stg_icu_icustays") == 30, case  # what was built is still there
        path.write_bytes(whole)
    assert "stg_icu_chartevents" in dbt_build(small_mimic, warehouse=warehouse, select=select)  # mended, it builds


def test_missing_column_names_the_file_and_the_column(small_mimic, tmp_path, capfd):
    import gzip

    path = small_mimic / "hosp/patients.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    cut = [",".join(line.split(",")[:-1]) for line in lines]  # drop the last column, dod
    path.write_bytes(gzip.compress(("\n".join(cut) + "\n").encode()))
    with pytest.raises(BuildError):
        dbt_build(small_mimic, warehouse=tmp_path / "w.duckdb", select="stg_hosp_patients")
    assert f"{path} lacks column(s) dod that the project reads" in capfd.readouterr().out


def test_missing_note_folder_turns_notes_off_with_a_warning(small_mimic, tmp_path, capfd):
    shutil.rmtree(small_mimic / "note")
    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse, select="stg_note_radiology")
    assert "note/radiology.csv.gz not found: the note modality (MIMIC-IV-Note) is turned off" in capfd.readouterr().out
    assert count(warehouse, "stg_note_radiology") == 0


def test_parquet_copies_are_accepted(small_mimic, tmp_path):
    path = small_mimic / "hosp/patients.csv.gz"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{path}')) TO '{small_mimic}/hosp/patients.parquet' (FORMAT parquet)")
    path.unlink()
    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse, select="stg_hosp_patients")
    assert count(warehouse, "stg_hosp_patients") > 0


def test_build_names_a_folder_that_is_not_mimic(tmp_path):
    with pytest.raises(BuildError, match=f"{tmp_path} is not a MIMIC-IV folder: it needs hosp/ and icu/"):
        dbt_build(tmp_path, warehouse=tmp_path / "w.duckdb")


def test_the_cli_reports_bad_input_without_a_traceback(small_mimic, tmp_path):
    (small_mimic / "hosp/admissions.csv.gz").write_bytes(b"not gzip at all")
    result = invoke(["build", "--mimic", small_mimic], data=tmp_path)
    assert_exit(result, 1)
    assert result.stderr.startswith(f"error: dbt build over {small_mimic} failed")
    assert "admissions.csv.gz" in result.stderr


def features_of(warehouse: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for path in sorted((warehouse.parent / "features").glob("*.parquet")):
        frame = pd.read_parquet(path)
        out[path.name] = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
    return out


def assert_same_features(a: dict, b: dict) -> None:
    import pandas as pd

    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def plant_odd_values(mimic: Path, stays: list[tuple], odd: bool) -> None:
    """Rows 1 and 12 hours into each stay, with NaN and infinite values (odd) or with no value. Bilirubin
    inf passes the SOFA chain's "> 0" (liver 4); creatinine NaN sorts above every number in DuckDB; mean BP
    -inf, heart rate inf and weight Infinity must reach no window or score; an OMR weight of inf dated the
    day before each admission must not be the baseline weight."""
    from mimic_files import append_rows

    def value(v: str) -> str | None:
        return v if odd else None

    at = [(s, h, i, t + dt.timedelta(hours=hours)) for s, h, i, t, _ in stays for hours in (1, 12)]
    append_rows(
        mimic,
        "hosp/labevents",
        [
            {
                "labevent_id": 900000 + 2 * k + j,
                "subject_id": s,
                "hadm_id": h,
                "itemid": item,
                "charttime": t,
                "storetime": t,
                "value": value(v),
                "valuenum": value(v),
                "valueuom": "mg/dL",
            }
            for k, (s, h, i, t) in enumerate(at)
            for j, (item, v) in enumerate(((50885, "inf"), (50912, "NaN")))
        ],
    )
    append_rows(
        mimic,
        "icu/chartevents",
        [
            {
                "subject_id": s,
                "hadm_id": h,
                "stay_id": i,
                "charttime": t,
                "storetime": t,
                "itemid": item,
                "value": value(v),
                "valuenum": value(v),
            }
            for s, h, i, t in at
            for item, v in ((220052, "-inf"), (220045, "inf"), (226512, "Infinity"))
        ],
    )
    append_rows(
        mimic,
        "hosp/omr",
        [
            {
                "subject_id": s,
                "chartdate": (admit - dt.timedelta(days=1)).date(),
                "seq_num": 9,
                "result_name": "Weight (Lbs)",
                "result_value": value("inf"),
            }
            for s, h, i, t, admit in stays
        ],
    )


def test_nan_and_infinite_raw_values_are_missing_values_not_extremes(small_mimic, tmp_path):
    """The same rows built twice, once with NaN/inf values and once with none: the features are equal."""
    stays = duckdb.sql(
        f"SELECT i.subject_id, i.hadm_id, i.stay_id, i.intime::TIMESTAMP, a.admittime::TIMESTAMP "
        f"FROM read_csv('{small_mimic}/icu/icustays.csv.gz') AS i "
        f"JOIN read_csv('{small_mimic}/hosp/admissions.csv.gz') AS a USING (hadm_id)"
    ).fetchall()
    built = {}
    for odd in (False, True):
        mimic = copy_mimic(small_mimic, tmp_path / f"mimic_{odd}")
        plant_odd_values(mimic, stays, odd)
        built[odd] = tmp_path / f"odd_{odd}" / "w.duckdb"
        dbt_build(mimic, warehouse=built[odd])
    assert count(built[True], "cohort") > 0
    assert scalar(built[True], "SELECT count(*) FROM raw.hosp_labevents WHERE NOT isfinite(valuenum)") == 2 * 2 * len(
        stays
    )
    columns = rows(
        built[True],
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema "
        "= 'main' AND data_type IN ('DOUBLE', 'FLOAT')",
    )
    odd = {
        f"{t}.{c}": n
        for t, c in columns
        if (n := scalar(built[True], f'SELECT count(*) FROM "{t}" WHERE NOT isfinite("{c}")'))
    }
    assert odd == {}  # no NaN or infinity in any staging, intermediate or mart relation
    assert_same_features(features_of(built[True]), features_of(built[False]))


def test_a_build_killed_midway_leaves_the_last_build_and_the_next_build_completes(small_mimic, tmp_path):
    import signal
    import subprocess
    import sys

    warehouse = tmp_path / "w.duckdb"
    dbt_build(small_mimic, warehouse=warehouse)
    before = features_of(warehouse)
    code = (
        "from sepsis_fusion.pipelines.build import dbt_build; "
        f"dbt_build({str(small_mimic)!r}, {str(warehouse)!r}, force=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    done = 0
    for line in proc.stdout:  # kill dbt and its parent once the models are being rebuilt
        done += " OK created " in line
        if done == 10:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert done == 10 and proc.returncode == -signal.SIGKILL
    for _ in range(100):  # dbt, killed too, lets go of the warehouse's lock as it exits
        try:
            assert count(warehouse, "stg_icu_icustays") == 30
            break
        except duckdb.IOException:
            time.sleep(0.1)
    else:
        raise AssertionError(f"{warehouse} is still locked after the kill")
    assert dbt_build(small_mimic, warehouse=warehouse)  # not skipped: the interrupted build left no stamp
    assert_same_features(features_of(warehouse), before)


def test_a_mart_whose_sql_breaks_its_contract_fails_the_build_naming_the_column(small_mimic, tmp_path, monkeypatch):
    """The marts Feast and the trainer read enforce their schema files' data_types (Feast's field types come
    from them) though dbt-duckdb writes them as Parquet: a copy of the project whose static_baseline casts a
    column to another type builds no further than that model, and the error names the model and the column."""
    import sepsis_fusion.pipelines.build as build

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the partial-parse cache of this test only
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "cautious")  # no test of an unselected model (windows_24h)
    project = tmp_path / "dbt_project"
    shutil.copytree(build.paths.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    monkeypatch.setattr(build.paths, "DBT_PROJECT_DIR", project)
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    assert "static_baseline" in dbt_build(small_mimic, warehouse=warehouse, select="+static_baseline")
    written = warehouse.parent / "features" / "static_baseline.parquet"
    before = written.read_bytes()

    sql = project / "models" / "marts" / "static_baseline.sql"
    line = "    s.sofa_score as sofa_at_onset,"
    assert line in sql.read_text()
    sql.write_text(sql.read_text().replace(line, "    cast(s.sofa_score as double) as sofa_at_onset,"))
    with pytest.raises(BuildError) as error:
        dbt_build(small_mimic, warehouse=warehouse, select="+static_baseline")
    assert "(failing nodes: static_baseline)" in str(error.value)
    assert (
        "static_baseline (models/marts/static_baseline.sql) breaks its enforced contract: column sofa_at_onset "
        "is DOUBLE in the SQL but INTEGER in the contract"
    ) in str(error.value)
    assert written.read_bytes() == before  # checked before anything was written


def test_duckdb_works_within_the_memory_limit_set_and_names_a_limit_too_small(small_mimic, tmp_path, monkeypatch):
    """The profile's memory_limit reaches DuckDB (SEPSIS_FUSION_DUCKDB_MEMORY_LIMIT): far too small, the
    build fails saying so and keeps the last build; with 1GB, 30 stays build."""
    warehouse = tmp_path / "w.duckdb"
    monkeypatch.setenv("SEPSIS_FUSION_DUCKDB_MEMORY_LIMIT", "1GB")
    dbt_build(small_mimic, warehouse=warehouse, select=STAYS)
    assert count(warehouse, "stg_icu_icustays") == 30
    monkeypatch.setenv("SEPSIS_FUSION_DUCKDB_MEMORY_LIMIT", "1MB")
    with pytest.raises(BuildError) as error:
        dbt_build(small_mimic, warehouse=warehouse, select=STAYS, force=True)
    assert "Out of Memory Error" in str(error.value) and "SEPSIS_FUSION_DUCKDB_MEMORY_LIMIT" in str(error.value)
    assert "The models of the last build stay in" in str(error.value)
    assert count(warehouse, "stg_icu_icustays") == 30


def test_the_large_marts_built_a_bucket_of_stays_at_a_time_equal_one_query(small_mimic, tmp_path, monkeypatch, capfd):
    """windows_24h and sequence_steps are built in buckets of stays on DuckDB (their memory bounded at any
    scale): 30 stays in buckets of 7 give the rows of one query. What the buckets save in memory is measured
    at scale in bench/bench_full_scale.py (docs/SCALING.md), not here: at 30 stays DuckDB's own overhead
    decides whether a tight memory_limit holds (CI ran out at 256MB in buckets of 3)."""
    one = tmp_path / "one" / "w.duckdb"
    large = "+windows_24h +sequence_steps"
    dbt_build(small_mimic, warehouse=one, select=large)
    monkeypatch.setenv("SEPSIS_FUSION_STAYS_PER_BUILD_BUCKET", "7")
    capfd.readouterr()
    bucketed = tmp_path / "bucketed" / "w.duckdb"
    dbt_build(small_mimic, warehouse=bucketed, select=large)
    out = capfd.readouterr().out
    assert "windows_24h: building 5 buckets of stays" in out and "sequence_steps: building 5 buckets" in out
    for mart, key in (("windows_24h", "stay_id, event_timestamp"), ("sequence_steps", "stay_id, event_timestamp")):
        read = "SELECT * FROM '{}' ORDER BY " + key
        want = duckdb.sql(read.format(one.parent / "features" / f"{mart}.parquet")).df()
        got = duckdb.sql(read.format(bucketed.parent / "features" / f"{mart}.parquet")).df()
        assert len(want) > 1000 and want["stay_id"].nunique() == 30
        pd.testing.assert_frame_equal(got, want)
        assert count(bucketed, mart) == len(want)  # the model's relation reads the file
