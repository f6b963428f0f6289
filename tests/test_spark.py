"""Apache Spark as the engine (docs/SPARK.md): the same dbt models build the same marts as DuckDB, Feast's
Spark offline store gives the same training set, and the session traps are refused with a clear error.

Spark runs in local mode in this process's machine (Java 17 and pyspark); the tests skip only when one of
them is missing, and say which.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from helpers import REPORT_SENTENCES, run_cli

from sepsis_fusion.pipelines.build import BuildError, check_spark, dbt_build, dbt_executable
from sepsis_fusion.pipelines.embed.encoder import load_encoder
from sepsis_fusion.pipelines.embed.run import embed_feature_folder
from sepsis_fusion.pipelines.features.store import apply, materialize, open_store, store_yaml
from sepsis_fusion.pipelines.features.training import training_set
from sepsis_fusion.pipelines.paths import DBT_PROJECT_DIR
from sepsis_fusion.pipelines.synth.generate import generate

# Every mart written as Parquet, with its key; notes_to_embed is empty where MIMIC-IV-Note is absent.
MARTS = {
    "sepsis3": ["stay_id"],
    "cohort": ["stay_id"],
    "cohort_flow": ["step"],
    "static_baseline": ["stay_id"],
    "sequence_steps": ["stay_id", "event_timestamp"],
    "windows_24h": ["stay_id", "event_timestamp"],
    "notes_to_embed": ["note_id"],
}


@pytest.fixture(scope="module", autouse=True)
def spark_available() -> None:
    try:
        check_spark()  # what `build --engine spark` checks first: pyspark, dbt-spark, Java
    except BuildError as missing:
        pytest.skip(f"the Spark tests cannot run here: {missing}")


@pytest.fixture(scope="module")
def demo_with_notes(demo_dir, tmp_path_factory) -> Path:
    """The open demo's hosp/ and icu/ with radiology reports added (MIMIC-IV-Note is not open): one every 8 hours
    of each ICU stay's first four days, stored 90 minutes after charting, so every modality runs on real rows."""
    out = tmp_path_factory.mktemp("demo_with_notes")
    for sub in ("hosp", "icu"):
        shutil.copytree(demo_dir / sub, out / sub)
    (out / "note").mkdir()
    texts = "[" + ", ".join(f"'{t}'" for t in REPORT_SENTENCES) + "]"
    notes = f"""
        SELECT s.stay_id || '-RR-' || k AS note_id, s.subject_id, s.hadm_id, 'RR' AS note_type, k AS note_seq,
               s.intime + k * INTERVAL 8 HOUR AS charttime,
               s.intime + k * INTERVAL 8 HOUR + INTERVAL 90 MINUTE AS storetime,
               {texts}[1 + (s.stay_id + k) % {len(REPORT_SENTENCES)}] AS text
        FROM read_csv('{demo_dir}/icu/icustays.csv.gz') s, range(1, 13) t(k)"""
    for name, where in (("radiology", ""), ("discharge", " WHERE false")):
        duckdb.sql(f"COPY (SELECT * FROM ({notes}){where} ORDER BY note_id) TO '{out}/note/{name}.csv.gz'")
    return out


@pytest.fixture(scope="module")
def demo_on_both(demo_with_notes, tmp_path_factory) -> tuple[Path, Path]:
    """The demo with notes built by DuckDB, and on Spark by the CLI (`sepsis-fusion build --engine spark`: a full
    dbt build, tests too): (DuckDB data folder, Spark data folder)."""
    duck = tmp_path_factory.mktemp("duck_demo")
    dbt_build(demo_with_notes, warehouse=duck / "warehouse.duckdb")
    spark = tmp_path_factory.mktemp("spark_demo")
    result = run_cli(["build", "--engine", "spark", "--mimic", demo_with_notes], spark)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "nodes passed" in result.stdout + result.stderr
    return duck, spark


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory) -> Path:
    """60 synthetic stays with notes: small enough for the Spark builds of one model in local mode."""
    out = tmp_path_factory.mktemp("spark_synthetic_mimic")
    generate(60, 5, out, density="light", progress=False)
    return out


def read_mart(data: Path, name: str) -> pa.Table:
    """A mart's rows with a key (dbt-duckdb writes one all-NULL row into an empty model), in key order."""
    keys = MARTS[name]
    path = data / "features" / f"{name}.parquet"
    order = ", ".join(keys)
    return duckdb.sql(f"SELECT * FROM '{path}' WHERE {keys[0]} IS NOT NULL ORDER BY {order}").arrow().read_all()


def assert_same_marts(duck: Path, spark: Path) -> dict[str, int]:
    """Every mart: same columns and types, keys exactly equal, numbers to 1e-9 relative (to the value, or to
    the column's largest value near 0), the rest exact; no mart empty. Returns the row counts."""
    counts = {}
    for name, keys in MARTS.items():
        a, b = read_mart(duck, name), read_mart(spark, name)
        assert a.schema.names == b.schema.names, name
        for field in a.schema:
            assert b.schema.field(field.name).type == field.type, f"{name}.{field.name}"
        assert a.num_rows == b.num_rows, f"{name}: {a.num_rows} rows on DuckDB, {b.num_rows} on Spark"
        assert a.num_rows > 0, f"{name} is empty on both engines"
        for column in a.schema.names:
            x, y = a.column(column), b.column(column)
            where = f"{name}.{column}"
            assert x.is_null().to_pylist() == y.is_null().to_pylist(), where
            if column in keys or not (pa.types.is_floating(x.type) or pa.types.is_decimal(x.type)):
                assert x.to_pylist() == y.to_pylist(), where
            else:
                xs = np.asarray(x.to_pylist(), dtype=float)
                ys = np.asarray(y.to_pylist(), dtype=float)
                # relative to the value, or to the column's largest value where a result cancels to about 0
                # (the standard deviation of equal values: 0.0 on DuckDB, 5e-15 on Spark at 10,000 stays)
                scale = np.nanmax(np.abs(xs), initial=0.0)
                np.testing.assert_allclose(ys, xs, rtol=1e-9, atol=1e-9 * scale, equal_nan=True, err_msg=where)
        counts[name] = a.num_rows
    return counts


def test_the_open_demo_with_notes_builds_on_spark_to_the_same_marts_as_duckdb(demo_on_both):
    duck, spark = demo_on_both
    counts = assert_same_marts(duck, spark)
    assert counts["sepsis3"] > 0 and counts["cohort"] > 0 and counts["notes_to_embed"] > 0
    # Spark writes each mart as a folder of part files, timestamps without a zone as DuckDB does
    assert (spark / "features" / "cohort.parquet" / "_SUCCESS").exists()


def test_feast_spark_offline_store_gives_the_duckdb_training_set_and_materializes_the_same(demo_on_both, tiny_bert):
    duck, spark = demo_on_both
    encoder = load_encoder(str(tiny_bert), pooling="mean", device="cpu", max_length=64)
    for data in (duck, spark):
        embed_feature_folder(encoder, data / "features", data / "embedding_cache", stride=16, progress=False)
    apply(duck)
    apply(spark, offline="spark")
    assert "type: spark" in store_yaml("sqlite", spark).read_text()
    a = training_set(duck, open_store(duck))
    b = training_set(spark, open_store(spark))
    assert len(a.cohort) == len(b.cohort) > 0
    assert a.cohort["stay_id"].tolist() == b.cohort["stay_id"].tolist()
    for field, x in vars(a.features).items():
        y = getattr(b.features, field)
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            assert x.shape == y.shape, field
            assert np.isfinite(x).any(), f"{field}: no value at all"
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=field)
        elif isinstance(x, np.ndarray):
            np.testing.assert_array_equal(y, x, err_msg=field)
    # Materialization from the Spark store fills the online store as DuckDB's does (three views: one Spark
    # query each; the other views are the same query on other files or keys). It starts at the first row,
    # so that every cohort stay is compared: by default a full run starts each view its ttl before the
    # end, and in data spread over decades few stays' rows are that recent.
    views = ["static_baseline", "sequence_steps_lag1", "note_slot_00"]
    online = {}
    for data in (duck, spark):
        store = open_store(data)
        materialize(store, data, start=datetime(1900, 1, 1), views=views)
        refs = [f"{view}:{f.name}" for view in views for f in store.get_feature_view(view).features]
        rows = [{"stay_id": int(s)} for s in a.cohort["stay_id"]]
        online[data] = store.get_online_features(features=refs, entity_rows=rows).to_dict()
    assert online[duck].keys() == online[spark].keys()
    assert any(v is not None for v in online[spark]["age"]), "nothing was materialized"
    for name, values in online[duck].items():
        other = online[spark][name]
        if name == "embedding":
            assert [v is None for v in values] == [v is None for v in other]
            for u, v in zip(values, other):
                if u is not None:
                    np.testing.assert_allclose(v, u, rtol=1e-6, err_msg=name)
        elif values and isinstance(next((v for v in values if v is not None), None), float):
            np.testing.assert_allclose(
                np.array(other, dtype=float), np.array(values, dtype=float), rtol=1e-9, equal_nan=True, err_msg=name
            )
        else:
            assert other == values, name


def test_a_bad_raw_value_is_named_on_spark_though_its_casts_do_not_fail(small_synthetic, tmp_path):
    """dbt-spark turns ANSI mode off, so a cast that fails gives NULL; the ingest names the value anyway."""
    bad = tmp_path / "mimic"
    shutil.copytree(small_synthetic, bad)
    path = bad / "hosp" / "admissions.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("hadm_id")] = "twelve"
    lines[1] = ",".join(row)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(BuildError, match=r"admissions\.csv\.gz: column hadm_id has the value 'twelve'"):
        dbt_build(bad, warehouse=tmp_path / "data" / "warehouse.duckdb", engine="spark", select="int_hour_offsets")


def test_a_timestamp_ntz_session_is_refused_before_anything_is_built(small_synthetic, tmp_path):
    """spark.sql.timestampType=TIMESTAMP_NTZ once built an empty cohort with every test passing."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (DBT_PROJECT_DIR / "profiles.yml").read_text()
    marker = "        spark.sql.session.timeZone: UTC\n"
    assert marker in text
    (profiles / "profiles.yml").write_text(
        text.replace(marker, marker + "        spark.sql.timestampType: TIMESTAMP_NTZ\n")
    )
    spark_dir = tmp_path / "spark"
    result = subprocess.run(
        [dbt_executable(), "run", "--target", "spark", "--select", "int_hour_offsets"]
        + ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(profiles)]
        + ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        env={
            **os.environ,
            "SEPSIS_FUSION_MIMIC_DIR": str(small_synthetic),
            "SEPSIS_FUSION_SPARK_DIR": str(spark_dir),
            "SEPSIS_FUSION_FEATURES": str(tmp_path / "features"),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "spark.sql.timestampType is TIMESTAMP_NTZ; this project needs TIMESTAMP_LTZ" in result.stdout
    assert not (spark_dir / "warehouse" / "raw.db").exists()  # refused before the raw ingest
    assert not (tmp_path / "derby.log").exists() and not (tmp_path / "metastore_db").exists()


@pytest.fixture(scope="module")
def small_spark_build(small_synthetic, tmp_path_factory):
    """notes_to_embed and its upstream built on Spark by a copy of the dbt project, from 60 synthetic stays
    whose hosp/admissions is Parquet (DuckDB's copy: timestamps without a zone). Yields (MIMIC folder, project
    copy, warehouse path)."""
    import sepsis_fusion.pipelines.build as build

    where = tmp_path_factory.mktemp("spark_small")
    mimic = where / "mimic"
    shutil.copytree(small_synthetic, mimic)
    csv = mimic / "hosp" / "admissions.csv.gz"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{mimic}/hosp/admissions.parquet' (FORMAT parquet)")
    csv.unlink()
    project = where / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    warehouse = where / "data" / "warehouse.duckdb"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(where / "cache"))  # the partial-parse cache of this project copy only
        patch.setenv("DBT_INDIRECT_SELECTION", "cautious")
        patch.setattr(build.paths, "DBT_PROJECT_DIR", project)
        assert "notes_to_embed" in dbt_build(mimic, warehouse=warehouse, engine="spark", select="+notes_to_embed")
        yield mimic, project, warehouse


def test_raw_parquet_is_loaded_by_spark_with_its_timestamps(small_spark_build, small_synthetic):
    """A MIMIC-IV table as Parquet loads as the CSV does."""
    _, _, warehouse = small_spark_build
    loaded = warehouse.parent / "spark" / "warehouse" / "raw.db" / "hosp_admissions"
    # Spark's raw tables store UTC instants; as UTC wall-clock times they must be the CSV's
    columns = "subject_id, hadm_id, " + ", ".join(
        f"CAST({c} AS TIMESTAMP)" for c in ("admittime", "dischtime", "deathtime")
    )
    query = "SELECT {} FROM {} ORDER BY hadm_id"
    with duckdb.connect() as con:
        con.sql("SET TimeZone = 'UTC'")
        got = con.sql(query.format(columns, f"'{loaded}/*.parquet'")).fetchall()
        want = con.sql(query.format(columns, f"read_csv('{small_synthetic}/hosp/admissions.csv.gz')")).fetchall()
    assert len(got) == len(want) > 0
    assert got == want


def test_a_mart_whose_sql_breaks_its_contract_fails_the_spark_build_naming_the_column(small_spark_build):
    """The project's external materialization on Spark enforces the contracts as dbt-duckdb's does: with its
    hadm_id cast to int, notes_to_embed (built by the fixture) fails naming the model and the column and
    leaves the written folder alone."""
    import re

    mimic, project, warehouse = small_spark_build
    written = warehouse.parent / "features" / "notes_to_embed.parquet"
    before = {p.name: p.read_bytes() for p in written.glob("part-*")}
    assert before and read_mart(warehouse.parent, "notes_to_embed").num_rows > 0

    sql = project / "models" / "marts" / "notes_to_embed.sql"
    line = "cast(n.hadm_id as {{ dbt.type_bigint() }}) as hadm_id"
    assert line in sql.read_text()
    sql.write_text(sql.read_text().replace(line, "cast(n.hadm_id as {{ dbt.type_int() }}) as hadm_id"))
    with pytest.raises(BuildError) as error:  # only the broken model: its upstream is built
        dbt_build(mimic, warehouse=warehouse, engine="spark", select="notes_to_embed")
    assert "(failing nodes: notes_to_embed)" in str(error.value)
    assert re.search(
        r"notes_to_embed \(models/marts/notes_to_embed\.sql\) breaks its enforced contract: column hadm_id is int "
        r"in the SQL but bigint in the contract",
        str(error.value),
        re.IGNORECASE,
    ), str(error.value)
    assert {p.name: p.read_bytes() for p in written.glob("part-*")} == before
