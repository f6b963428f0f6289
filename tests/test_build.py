"""`dbt build` over synthetic MIMIC-IV and the open demo."""

from __future__ import annotations

import duckdb
import pytest

from sepsis_fusion.pipelines.build import BuildError, dbt_build


def count(warehouse, relation: str) -> int:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(f"SELECT count(*) FROM {relation}").fetchall()[0][0]


def test_dbt_build_on_synthetic(synthetic, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    nodes = dbt_build(synthetic, warehouse=warehouse)
    assert {"stg_patients", "stg_admissions", "stg_icustays"} <= set(nodes)
    assert count(warehouse, "stg_icustays") == 1500


def test_dbt_build_on_the_open_demo(demo_dir, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    dbt_build(demo_dir, warehouse=warehouse)
    assert count(warehouse, "stg_icustays") == 140
    assert count(warehouse, "stg_patients") == 100


def test_build_names_a_folder_that_is_not_mimic(tmp_path):
    with pytest.raises(BuildError, match=f"{tmp_path} is not a MIMIC-IV folder: it needs hosp/ and icu/"):
        dbt_build(tmp_path, warehouse=tmp_path / "w.duckdb")
