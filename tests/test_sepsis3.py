"""The dbt Sepsis-3 chain against MIT-LCP mimic-code (open demo) and the generator's truth (synthetic)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

FIXTURE = Path(__file__).parent / "fixtures" / "mimic_code_sepsis3_demo.csv"
TIMES = ["antibiotic_time", "culture_time", "suspected_infection_time", "sofa_time"]


def table(warehouse: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).df()


def test_sepsis3_equals_mimic_code_row_for_row_on_the_demo(demo_warehouse):
    reference = pd.read_csv(FIXTURE, parse_dates=TIMES).sort_values("stay_id").reset_index(drop=True)
    ours = table(demo_warehouse, "SELECT * FROM sepsis3 ORDER BY stay_id")
    assert list(ours.columns) == list(reference.columns)
    assert len(ours) == len(reference) == 62
    for column in reference.columns:
        assert (ours[column].astype(str) == reference[column].astype(str)).all(), column


def test_sepsis3_on_synthetic_agrees_with_the_generators_reading(synthetic_warehouse, synthetic):
    truth = pd.read_csv(synthetic / "_truth/stays.csv")
    septic = set(table(synthetic_warehouse, "SELECT stay_id FROM sepsis3").stay_id)
    truth["dbt"] = truth.stay_id.isin(septic)
    share = truth.dbt.mean()
    assert 0.30 <= share <= 0.50, share
    assert (truth.dbt == truth.sepsis3_expected).mean() > 0.97
