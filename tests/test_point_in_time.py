"""Point-in-time rules of the static baseline and the note windows, shown by planting violating rows."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from sepsis_fusion.pipelines.build import dbt_build
from sepsis_fusion.pipelines.synth.generate import generate
from mimic_files import append_rows


def frame(warehouse: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).df()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A small synthetic MIMIC-IV built once, then planted with violating rows and built again."""
    root = tmp_path_factory.mktemp("baseline_pit")
    mimic = root / "mimic"
    generate(120, 5, mimic, density="light", progress=False)
    before = root / "before.duckdb"
    dbt_build(mimic, warehouse=before)
    base = frame(before, """
        SELECT b.*, c.hadm_id, c.subject_id, c.prediction_time, c.outtime
        FROM static_baseline b JOIN cohort c USING (stay_id)
        ORDER BY stay_id""")
    with_prior = base[base.prior_admissions > 0]
    without = base[(base.metastatic_solid_tumor == 0) & ~base.stay_id.isin(with_prior.stay_id)
                   & (base.outtime >= base.prediction_time + pd.Timedelta(hours=4))]
    assert len(with_prior) and len(without), "the synthetic cohort needs stays with and without earlier admissions"
    current = without.iloc[0]
    earlier = with_prior[with_prior.metastatic_solid_tumor == 0].iloc[0]
    earlier_hadm = frame(before, f"""
        SELECT a.hadm_id FROM stg_hosp_admissions a JOIN stg_hosp_admissions cur ON cur.hadm_id = {earlier.hadm_id}
        WHERE a.subject_id = {earlier.subject_id} AND a.dischtime <= cur.admittime LIMIT 1""").hadm_id[0]
    # Metastatic cancer coded in the CURRENT admission (known only at its discharge) must not count;
    # the same code in an EARLIER admission must.
    append_rows(mimic, "hosp/diagnoses_icd", [
        {"subject_id": current.subject_id, "hadm_id": current.hadm_id, "seq_num": 99, "icd_code": "C787", "icd_version": 10},
        {"subject_id": earlier.subject_id, "hadm_id": earlier_hadm, "seq_num": 99, "icd_code": "C787", "icd_version": 10},
    ])
    # A weight charted after T, and one charted before T but stored after it: neither may be used.
    t = pd.Timestamp(current.prediction_time)
    fmt = "%Y-%m-%d %H:%M:%S"
    append_rows(mimic, "icu/chartevents", [
        {"subject_id": current.subject_id, "hadm_id": current.hadm_id, "stay_id": current.stay_id,
         "charttime": (t + pd.Timedelta(hours=1)).strftime(fmt), "storetime": (t + pd.Timedelta(hours=1)).strftime(fmt),
         "itemid": 226512, "value": "300", "valuenum": 300, "valueuom": "kg"},
        {"subject_id": current.subject_id, "hadm_id": current.hadm_id, "stay_id": current.stay_id,
         "charttime": (t - pd.Timedelta(minutes=1)).strftime(fmt), "storetime": (t + pd.Timedelta(hours=2)).strftime(fmt),
         "itemid": 224639, "value": "299", "valuenum": 299, "valueuom": "kg"},
    ])
    # A radiology report charted 2 h before T but stored 1 h after it.
    append_rows(mimic, "note/radiology", [
        {"note_id": f"{current.subject_id}-RR-999", "subject_id": current.subject_id, "hadm_id": current.hadm_id,
         "note_type": "RR", "note_seq": 999, "charttime": (t - pd.Timedelta(hours=2)).strftime(fmt),
         "storetime": (t + pd.Timedelta(hours=1)).strftime(fmt), "text": "PLANTED: stored after the prediction time"},
    ])
    after = root / "after.duckdb"
    dbt_build(mimic, warehouse=after)  # also runs the singular test baseline_uses_no_current_admission_diagnosis
    rebuilt = frame(after, "SELECT * FROM static_baseline ORDER BY stay_id").set_index("stay_id")
    rebuilt.attrs["note_windows"] = frame(after, f"SELECT * FROM note_windows WHERE stay_id = {current.stay_id}")
    return base.set_index("stay_id"), rebuilt, current, earlier


def test_current_admission_diagnosis_is_not_a_comorbidity(planted):
    base, rebuilt, current, earlier = planted
    assert rebuilt.loc[current.stay_id, "metastatic_solid_tumor"] == 0
    assert rebuilt.loc[current.stay_id, "charlson_comorbidity_index"] == base.loc[current.stay_id, "charlson_comorbidity_index"]


def test_earlier_admission_diagnosis_is_a_comorbidity(planted):
    base, rebuilt, current, earlier = planted
    assert rebuilt.loc[earlier.stay_id, "metastatic_solid_tumor"] == 1
    assert rebuilt.loc[earlier.stay_id, "charlson_comorbidity_index"] > base.loc[earlier.stay_id, "charlson_comorbidity_index"]


def test_weight_charted_or_stored_after_prediction_time_is_not_used(planted):
    base, rebuilt, current, earlier = planted
    assert rebuilt.loc[current.stay_id, "weight_kg"] == pytest.approx(base.loc[current.stay_id, "weight_kg"])
    assert rebuilt.loc[current.stay_id, "weight_kg"] < 250


def test_note_stored_after_prediction_time_is_in_no_window_up_to_it(planted):
    base, rebuilt, current, earlier = planted
    windows = rebuilt.attrs["note_windows"]
    planted_note = windows[windows.note_id == f"{current.subject_id}-RR-999"]
    t = pd.Timestamp(current.prediction_time)
    assert (planted_note.event_timestamp > t).all()
    # once stored it is used: the first whole hour after its storetime holds it
    assert (planted_note.event_timestamp >= t + pd.Timedelta(hours=1)).all() and len(planted_note) > 0
