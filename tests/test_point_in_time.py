"""Point-in-time rules shown by planting violating rows: the static baseline, the note sequence (raw note
to Feast), and the prediction time T (not before every criterion of the stay's Sepsis-3 pair is known)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from helpers import query
from mimic_files import append_rows, set_cell

from sepsis_fusion.pipelines.build import dbt_build
from sepsis_fusion.pipelines.embed.encoder import load_encoder
from sepsis_fusion.pipelines.embed.run import embed_feature_folder
from sepsis_fusion.pipelines.features.layout import layout_from_service
from sepsis_fusion.pipelines.features.store import SERVICE_NAME, apply, open_store
from sepsis_fusion.pipelines.features.training import historical_features
from sepsis_fusion.pipelines.synth.generate import generate


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A small synthetic MIMIC-IV built once, then planted with violating rows and built again."""
    root = tmp_path_factory.mktemp("baseline_pit")
    mimic = root / "mimic"
    generate(120, 5, mimic, density="light", progress=False)
    before = root / "before.duckdb"
    dbt_build(mimic, warehouse=before)
    base = query(
        before,
        """
        SELECT b.*, c.hadm_id, c.subject_id, c.prediction_time, c.outtime
        FROM static_baseline b JOIN cohort c USING (stay_id)
        ORDER BY stay_id""",
    )
    with_prior = base[base.prior_admissions > 0]
    without = base[
        (base.metastatic_solid_tumor == 0)
        & ~base.stay_id.isin(with_prior.stay_id)
        & (base.outtime >= base.prediction_time + pd.Timedelta(hours=4))
    ]
    assert len(with_prior) and len(without), "the synthetic cohort needs stays with and without earlier admissions"
    current = without.iloc[0]
    earlier = with_prior[with_prior.metastatic_solid_tumor == 0].iloc[0]
    earlier_hadm = query(
        before,
        f"""
        SELECT a.hadm_id FROM stg_hosp_admissions a JOIN stg_hosp_admissions cur ON cur.hadm_id = {earlier.hadm_id}
        WHERE a.subject_id = {earlier.subject_id} AND a.dischtime <= cur.admittime LIMIT 1""",
    ).hadm_id[0]
    # Metastatic cancer coded in the CURRENT admission (known only at its discharge) must not count;
    # the same code in an EARLIER admission must.
    append_rows(
        mimic,
        "hosp/diagnoses_icd",
        [
            {
                "subject_id": current.subject_id,
                "hadm_id": current.hadm_id,
                "seq_num": 99,
                "icd_code": "C787",
                "icd_version": 10,
            },
            {
                "subject_id": earlier.subject_id,
                "hadm_id": earlier_hadm,
                "seq_num": 99,
                "icd_code": "C787",
                "icd_version": 10,
            },
        ],
    )
    # A weight charted after T, and one charted before T but stored after it: neither may be used.
    t = pd.Timestamp(current.prediction_time)
    fmt = "%Y-%m-%d %H:%M:%S"
    append_rows(
        mimic,
        "icu/chartevents",
        [
            {
                "subject_id": current.subject_id,
                "hadm_id": current.hadm_id,
                "stay_id": current.stay_id,
                "charttime": (t + pd.Timedelta(hours=1)).strftime(fmt),
                "storetime": (t + pd.Timedelta(hours=1)).strftime(fmt),
                "itemid": 226512,
                "value": "300",
                "valuenum": 300,
                "valueuom": "kg",
            },
            {
                "subject_id": current.subject_id,
                "hadm_id": current.hadm_id,
                "stay_id": current.stay_id,
                "charttime": (t - pd.Timedelta(minutes=1)).strftime(fmt),
                "storetime": (t + pd.Timedelta(hours=2)).strftime(fmt),
                "itemid": 224639,
                "value": "299",
                "valuenum": 299,
                "valueuom": "kg",
            },
        ],
    )
    # A radiology report charted 2 h before T but stored 1 h after it.
    append_rows(
        mimic,
        "note/radiology",
        [
            {
                "note_id": f"{current.subject_id}-RR-999",
                "subject_id": current.subject_id,
                "hadm_id": current.hadm_id,
                "note_type": "RR",
                "note_seq": 999,
                "charttime": (t - pd.Timedelta(hours=2)).strftime(fmt),
                "storetime": (t + pd.Timedelta(hours=1)).strftime(fmt),
                "text": "PLANTED: stored after the prediction time",
            },
        ],
    )
    septic = plant_late_sepsis3(before, mimic)
    # A cohort stay that now ends an hour before its prediction time T: it must leave the cohort.
    ended = base[~base.stay_id.isin([current.stay_id, earlier.stay_id])].iloc[-1]
    stays = pd.read_csv(mimic / "icu/icustays.csv.gz")
    row = int(stays.index[stays.stay_id == ended.stay_id][0]) + 1
    set_cell(
        mimic / "icu/icustays.csv.gz",
        row,
        "outtime",
        (pd.Timestamp(ended.prediction_time) - pd.Timedelta(hours=1)).strftime(fmt),
    )
    after = root / "after.duckdb"
    dbt_build(mimic, warehouse=after)
    rebuilt = query(after, "SELECT * FROM static_baseline ORDER BY stay_id").set_index("stay_id")
    rebuilt.attrs["data"] = root  # the after build's features/ are root/features
    rebuilt.attrs["cohort"] = query(after, "SELECT * FROM int_cohort_candidates").set_index("stay_id")
    rebuilt.attrs["septic"] = septic
    rebuilt.attrs["ended"] = ended
    rebuilt.attrs["cohort_ids"] = set(query(after, "SELECT stay_id FROM cohort").stay_id)
    return base.set_index("stay_id"), rebuilt, current, earlier


FMT = "%Y-%m-%d %H:%M:%S"


def plant_late_sepsis3(warehouse: Path, mimic: Path) -> dict[str, pd.Series]:
    """Make two stays septic by planting a culture and an antibiotic: in one the antibiotic starts 30 h after
    the stay's first SOFA >= 2 hour S (culture at S + 29 h, stored at once); in the other the culture is taken at
    S + 1 h but stored only 40 h later (antibiotic at S + 2 h). Patients without any culture, antibiotic or
    Sepsis-3 of their own, adult, in the ICU and alive until S + 66 h."""
    stays = query(
        warehouse,
        """
        WITH first_sofa AS (SELECT stay_id, min(endtime) AS s FROM int_sofa_hourly WHERE sofa_24hours >= 2 GROUP BY 1)
        SELECT ie.stay_id, ie.subject_id, ie.hadm_id, f.s
        FROM stg_icu_icustays ie JOIN first_sofa f USING (stay_id) JOIN stg_hosp_admissions a USING (hadm_id)
        JOIN stg_hosp_patients p ON p.subject_id = ie.subject_id
        WHERE ie.subject_id NOT IN (SELECT subject_id FROM sepsis3)
          AND ie.subject_id NOT IN (SELECT subject_id FROM stg_hosp_microbiologyevents)
          AND ie.subject_id NOT IN (SELECT subject_id FROM int_antibiotic)
          AND p.anchor_age >= 18 AND f.s >= ie.intime
          AND least(ie.outtime, a.dischtime, coalesce(a.deathtime, a.dischtime)) > f.s + INTERVAL 66 HOUR
        ORDER BY ie.stay_id""",
    ).drop_duplicates("subject_id")
    assert len(stays) >= 2, "the synthetic data needs two stays to plant a late Sepsis-3 in"
    late_antibiotic, late_culture = stays.iloc[0], stays.iloc[1]
    hours = lambda row, h: (row.s + pd.Timedelta(hours=h)).strftime(FMT)  # noqa: E731
    cultures, antibiotics = [], []
    for k, (row, taken, stored, given) in enumerate([(late_antibiotic, 29, 29.02, 30), (late_culture, 1, 41, 2)]):
        cultures.append(
            {
                "microevent_id": 990_000 + k,
                "subject_id": row.subject_id,
                "hadm_id": row.hadm_id,
                "micro_specimen_id": 990_000 + k,
                "chartdate": hours(row, taken)[:10],
                "charttime": hours(row, taken),
                "spec_itemid": 70012,
                "spec_type_desc": "BLOOD CULTURE",
                "storedate": hours(row, stored)[:10],
                "storetime": hours(row, stored),
                "comments": "NO GROWTH.",
            }
        )
        antibiotics.append(
            {
                "subject_id": row.subject_id,
                "hadm_id": row.hadm_id,
                "pharmacy_id": 990_000 + k,
                "starttime": hours(row, given),
                "stoptime": hours(row, given + 24),
                "drug_type": "MAIN",
                "drug": "Vancomycin",
                "route": "IV",
            }
        )
    append_rows(mimic, "hosp/microbiologyevents", cultures)
    append_rows(mimic, "hosp/prescriptions", antibiotics)
    return {"late antibiotic": late_antibiotic, "late culture": late_culture}


def test_current_admission_diagnosis_is_not_a_comorbidity(planted):
    base, rebuilt, current, earlier = planted
    assert rebuilt.loc[current.stay_id, "metastatic_solid_tumor"] == 0
    assert (
        rebuilt.loc[current.stay_id, "charlson_comorbidity_index"]
        == base.loc[current.stay_id, "charlson_comorbidity_index"]
    )


def test_earlier_admission_diagnosis_is_a_comorbidity(planted):
    base, rebuilt, current, earlier = planted
    assert rebuilt.loc[earlier.stay_id, "metastatic_solid_tumor"] == 1
    assert (
        rebuilt.loc[earlier.stay_id, "charlson_comorbidity_index"]
        > base.loc[earlier.stay_id, "charlson_comorbidity_index"]
    )


def test_weight_charted_or_stored_after_prediction_time_is_not_used(planted):
    base, rebuilt, current, earlier = planted
    assert rebuilt.loc[current.stay_id, "weight_kg"] == pytest.approx(base.loc[current.stay_id, "weight_kg"])
    assert rebuilt.loc[current.stay_id, "weight_kg"] < 250


def test_note_stored_after_prediction_time_is_not_in_the_note_sequence_at_it(planted, tiny_bert):
    """The radiology report charted 2 h before T and stored 1 h after it, through dbt, the encoder and
    Feast: not among the stay's notes at T; among them from its storetime on, aged from its charttime."""
    base, rebuilt, current, earlier = planted
    data = rebuilt.attrs["data"]
    enc = load_encoder(str(tiny_bert), pooling="mean", device="cpu", max_length=64)
    embed_feature_folder(enc, data / "features", data / "embedding_cache", stride=16, progress=False)
    apply(data)
    store = open_store(data)
    layout = layout_from_service(store, SERVICE_NAME)
    note_id = f"{current.subject_id}-RR-999"
    vectors = query_parquet(data / "features" / "note_embeddings.parquet", f"note_id = '{note_id}'")
    assert len(vectors) == 1, "the planted note reached notes_to_embed"
    planted_vector = np.asarray(vectors.embedding[0], dtype=np.float32)
    t = pd.Timestamp(current.prediction_time)
    stored = t + pd.Timedelta(hours=1)
    at = historical_features(store, layout, [current.stay_id] * 3, [t, stored - pd.Timedelta(seconds=1), stored])

    def holds(i: int) -> np.ndarray:
        return np.isclose(at.notes[i], planted_vector, atol=1e-6).all(axis=1) & at.note_mask[i]

    assert not holds(0).any() and not holds(1).any()
    assert holds(2).sum() == 1 and at.note_age[2][holds(2)][0] == pytest.approx(3.0)


def query_parquet(path: Path, where: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM '{path}' WHERE {where}").df()


@pytest.mark.parametrize("case, known_after_s", [("late antibiotic", 30), ("late culture", 41)])
def test_prediction_time_waits_for_the_last_criterion_of_the_sepsis3_pair(planted, case, known_after_s):
    base, rebuilt, current, earlier = planted
    stay = rebuilt.attrs["septic"][case]
    row = rebuilt.attrs["cohort"].loc[stay.stay_id]
    s = pd.Timestamp(stay.s)
    assert row.meets_sepsis3 and row.onset_time == s  # onset stays the SOFA hour
    assert row.recognition_time == s + pd.Timedelta(hours=known_after_s)
    assert row.prediction_time == s + pd.Timedelta(hours=known_after_s + 24)
    assert row.prediction_time_at_onset == s + pd.Timedelta(hours=24)  # where T was before
    assert row.is_first_sepsis3_stay and not row.ended_before_prediction


def test_a_stay_that_ends_before_its_prediction_time_leaves_the_cohort(planted):
    base, rebuilt, _, _ = planted
    ended = rebuilt.attrs["ended"]
    assert ended.stay_id in set(base.index)  # in the cohort before the plant
    assert ended.stay_id not in rebuilt.attrs["cohort_ids"]
    candidate = rebuilt.attrs["cohort"].loc[ended.stay_id]
    assert candidate.ended_before_prediction and candidate.prediction_time == ended.prediction_time
