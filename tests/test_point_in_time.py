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
    late_labs = plant_late_sofa_labs(before, mimic, septic["late culture"])
    outcomes = plant_outcomes(base, mimic, exclude={current.stay_id, earlier.stay_id})
    # A cohort stay that now ends an hour before its prediction time T: it must leave the cohort.
    ended = base[~base.stay_id.isin([current.stay_id, earlier.stay_id, *outcomes.values()])].iloc[-1]
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
    rebuilt.attrs["late_labs"] = late_labs
    rebuilt.attrs["outcomes"] = outcomes
    rebuilt.attrs["stored_sofa"] = query(after, "SELECT * FROM int_sofa_hourly_stored")
    rebuilt.attrs["retrospective_sofa"] = query(after, "SELECT * FROM int_sofa_hourly")
    rebuilt.attrs["cohort_table"] = query(after, "SELECT * FROM cohort").set_index("stay_id")
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


def plant_late_sofa_labs(warehouse: Path, mimic: Path, late_culture: pd.Series) -> dict:
    """Late-stored SOFA labs. Two adult patients without any culture, antibiotic or Sepsis-3 whose SOFA stays
    below 2 get a culture drawn at an hour h after their first SOFA hour and an antibiotic an hour later,
    and a creatinine of 6.0 mg/dL (renal 4) drawn at h: in one stored at h + 30 h, in the other at h + 10 h.
    The stay with the late culture gets a platelet count of 15 (coagulation 4) drawn 25.5 h after its SOFA
    hour S, before its T whatever T is (at least S + 26 h, at most S + 49 h), and stored at S + 60 h."""
    quiet = query(
        warehouse,
        """
        WITH low AS (SELECT stay_id, min(endtime) AS first_hour, max(sofa_24hours) AS worst
                     FROM int_sofa_hourly GROUP BY 1)
        SELECT ie.stay_id, ie.subject_id, ie.hadm_id, l.first_hour
        FROM stg_icu_icustays ie JOIN low l USING (stay_id) JOIN stg_hosp_patients p ON p.subject_id = ie.subject_id
        WHERE l.worst < 2 AND p.anchor_age >= 18
          AND ie.subject_id NOT IN (SELECT subject_id FROM sepsis3)
          AND ie.subject_id NOT IN (SELECT subject_id FROM stg_hosp_microbiologyevents)
          AND ie.subject_id NOT IN (SELECT subject_id FROM int_antibiotic)
        ORDER BY ie.stay_id""",
    ).drop_duplicates("subject_id")
    assert len(quiet) >= 2, "the synthetic data needs two stays whose SOFA stays below 2"
    planted = {}
    labs, cultures, antibiotics = [], [], []
    for k, (case, stored_after) in enumerate([("stored after 30 h", 30), ("stored after 10 h", 10)]):
        row = quiet.iloc[k]
        h = pd.Timestamp(row.first_hour) + pd.Timedelta(hours=2)
        planted[case] = {"stay_id": row.stay_id, "h": h}
        at = lambda hours, h=h: (h + pd.Timedelta(hours=hours)).strftime(FMT)  # noqa: E731
        labs.append(_lab(980_000 + k, row, 50912, 6.0, at(0), at(stored_after)))
        cultures.append(_culture(980_000 + k, row, at(0), at(0.5)))
        antibiotics.append(_antibiotic(980_000 + k, row, at(1)))
    s = pd.Timestamp(late_culture.s)
    planted["platelets stored after T"] = {"stay_id": late_culture.stay_id, "s": s}
    labs.append(
        _lab(
            980_010,
            late_culture,
            51265,
            15,
            (s + pd.Timedelta(hours=25.5)).strftime(FMT),
            (s + pd.Timedelta(hours=60)).strftime(FMT),
        )
    )
    append_rows(mimic, "hosp/labevents", labs)
    append_rows(mimic, "hosp/microbiologyevents", cultures)
    append_rows(mimic, "hosp/prescriptions", antibiotics)
    return planted


def _lab(k: int, row: pd.Series, itemid: int, value: float, charttime: str, storetime: str) -> dict:
    return {
        "labevent_id": 90_000_000 + k,
        "subject_id": row.subject_id,
        "hadm_id": row.hadm_id,
        "specimen_id": 90_000_000 + k,
        "itemid": itemid,
        "charttime": charttime,
        "storetime": storetime,
        "value": str(value),
        "valuenum": value,
    }


def _culture(k: int, row: pd.Series, taken: str, stored: str) -> dict:
    return {
        "microevent_id": k,
        "subject_id": row.subject_id,
        "hadm_id": row.hadm_id,
        "micro_specimen_id": k,
        "chartdate": taken[:10],
        "charttime": taken,
        "spec_itemid": 70012,
        "spec_type_desc": "BLOOD CULTURE",
        "storedate": stored[:10],
        "storetime": stored,
        "comments": "NO GROWTH.",
    }


def _antibiotic(k: int, row: pd.Series, given: str) -> dict:
    stop = (pd.Timestamp(given) + pd.Timedelta(hours=24)).strftime(FMT)
    return {
        "subject_id": row.subject_id,
        "hadm_id": row.hadm_id,
        "pharmacy_id": k,
        "starttime": given,
        "stoptime": stop,
        "drug_type": "MAIN",
        "drug": "Vancomycin",
        "route": "IV",
    }


def plant_outcomes(base: pd.DataFrame, mimic: Path, exclude: set[int]) -> dict[str, int]:
    """Outcome timing on three cohort stays that survived their admission, had no recorded death and were
    discharged within 20 days of T: a death 40 days after T, a death after discharge 20 days after T, and a
    discharge to hospice (no death recorded)."""
    patients = pd.read_csv(mimic / "hosp/patients.csv.gz")
    admissions = pd.read_csv(mimic / "hosp/admissions.csv.gz", parse_dates=["dischtime"])
    stays = base.merge(admissions[["hadm_id", "dischtime", "hospital_expire_flag"]], on="hadm_id")
    stays = stays.merge(patients[["subject_id", "dod"]], on="subject_id")
    survivors = stays[
        (stays.hospital_expire_flag == 0)
        & stays.dod.isna()
        & (stays.dischtime < stays.prediction_time + pd.Timedelta(days=20))
        & ~stays.stay_id.isin(exclude)
    ]
    assert len(survivors) >= 3, "the synthetic cohort needs three survivors discharged within 20 days of T"
    planted = {}
    for case, row in zip(
        ("death after 28 days", "death after discharge within 28 days", "hospice"), survivors.itertuples()
    ):
        planted[case] = row.stay_id
        t = pd.Timestamp(row.prediction_time)
        if case == "hospice":
            line = int(admissions.index[admissions.hadm_id == row.hadm_id][0]) + 1
            set_cell(mimic / "hosp/admissions.csv.gz", line, "discharge_location", "HOSPICE")
        else:
            days = 40 if case == "death after 28 days" else 20
            line = int(patients.index[patients.subject_id == row.subject_id][0]) + 1
            set_cell(mimic / "hosp/patients.csv.gz", line, "dod", (t + pd.Timedelta(days=days)).strftime("%Y-%m-%d"))
    return planted


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


def first_stored_sofa_hour(rebuilt: pd.DataFrame, stay_id: int, start, end) -> pd.Timestamp:
    """The first hour in [start, end] whose stored-only SOFA reaches 2, read from the rebuilt warehouse."""
    sofa = rebuilt.attrs["stored_sofa"]
    hours = sofa[(sofa.stay_id == stay_id) & (sofa.endtime >= start) & (sofa.endtime <= end) & (sofa.sofa_24hours >= 2)]
    return pd.Timestamp(hours.endtime.min())


@pytest.mark.parametrize("case, antibiotic_h, culture_h", [("late antibiotic", 30, 29), ("late culture", 2, 1)])
def test_prediction_time_waits_for_the_last_criterion_of_the_sepsis3_pair(planted, case, antibiotic_h, culture_h):
    """The pair is complete when its antibiotic has started, its culture has been DRAWN (culture_known_at's
    default, charttime: the late culture's result, stored 40 h after the draw, does not delay it) and an hour in
    its window has a stored-only SOFA >= 2."""
    base, rebuilt, current, earlier = planted
    stay = rebuilt.attrs["septic"][case]
    row = rebuilt.attrs["cohort"].loc[stay.stay_id]
    s = pd.Timestamp(stay.s)
    suspicion = s + pd.Timedelta(hours=culture_h)
    sofa_hour = first_stored_sofa_hour(
        rebuilt, stay.stay_id, suspicion - pd.Timedelta(hours=48), suspicion + pd.Timedelta(hours=24)
    )
    assert row.meets_sepsis3 and row.onset_time == s  # onset stays mimic-code's SOFA hour
    assert row.recognition_time == max(sofa_hour, s + pd.Timedelta(hours=antibiotic_h))
    assert row.recognised_sofa_time == sofa_hour
    assert row.prediction_time == row.recognition_time + pd.Timedelta(hours=24)
    if case == "late culture":
        assert row.recognition_time < s + pd.Timedelta(hours=41)  # not the culture's storetime
    else:
        assert row.recognition_time == s + pd.Timedelta(hours=30)
    assert row.is_first_sepsis3_stay and row.is_recognised and not row.ended_before_prediction


def test_a_lab_counts_for_recognition_only_from_when_it_was_stored(planted):
    """A creatinine of 6.0 drawn at h is the only SOFA >= 2 of its stay: both stays meet Sepsis-3 by mimic-code's
    retrospective SOFA. Stored at h + 10 h, Sepsis-3 is recognised at h + 10 h; stored at h + 30 h, past its
    24-hour window, never (the stay leaves the cohort at 'recognised from stored rows')."""
    base, rebuilt, current, earlier = planted
    cases, candidates = rebuilt.attrs["late_labs"], rebuilt.attrs["cohort"]
    soon, late = cases["stored after 10 h"], cases["stored after 30 h"]
    retrospective = rebuilt.attrs["retrospective_sofa"]
    for case in (soon, late):
        row = candidates.loc[case["stay_id"]]
        assert row.meets_sepsis3 and row.onset_time == case["h"]
        at_h = retrospective[(retrospective.stay_id == case["stay_id"]) & (retrospective.endtime == case["h"])]
        assert at_h.renal_24hours.item() == 4
    assert candidates.loc[soon["stay_id"]].recognition_time == soon["h"] + pd.Timedelta(hours=10)
    assert candidates.loc[soon["stay_id"]].recognised_sofa_time == soon["h"] + pd.Timedelta(hours=10)
    assert not candidates.loc[late["stay_id"]].is_recognised and pd.isna(
        candidates.loc[late["stay_id"]].recognition_time
    )
    assert late["stay_id"] not in rebuilt.attrs["cohort_ids"]


def test_sofa_at_prediction_time_leaves_out_a_lab_stored_after_it(planted):
    """A platelet count of 15 (coagulation 4) drawn in the 24 h before T and stored after T: mimic-code's
    retrospective SOFA of T's hour counts it; the cohort's SOFA at T (stored-only) does not."""
    base, rebuilt, current, earlier = planted
    stay_id = rebuilt.attrs["late_labs"]["platelets stored after T"]["stay_id"]
    cohort = rebuilt.attrs["cohort_table"]
    t = pd.Timestamp(cohort.loc[stay_id, "prediction_time"])
    hour = t.floor("h")
    drawn = rebuilt.attrs["late_labs"]["platelets stored after T"]["s"] + pd.Timedelta(hours=25.5)
    assert hour - pd.Timedelta(hours=24) < drawn <= hour < drawn + pd.Timedelta(hours=34.5)
    stored, retrospective = rebuilt.attrs["stored_sofa"], rebuilt.attrs["retrospective_sofa"]
    at_t = stored[(stored.stay_id == stay_id) & (stored.endtime == hour)].iloc[0]
    assert (
        retrospective[(retrospective.stay_id == stay_id) & (retrospective.endtime == hour)].coagulation_24hours.item()
        == 4
    )
    assert at_t.coagulation_24hours < 4
    assert cohort.loc[stay_id, "sofa_score_at_prediction"] == at_t.sofa_24hours


def test_outcomes_count_from_the_prediction_time(planted):
    """Planted in the raw files: a death 40 days after T is not a death within 28 days; a death after discharge
    20 days after T is, though not in hospital; a discharge to hospice counts only in the sensitivity label."""
    base, rebuilt, current, earlier = planted
    cohort, cases = rebuilt.attrs["cohort_table"], rebuilt.attrs["outcomes"]
    labels = ["died_within_horizon", "died_in_hospital", "died_or_hospice_within_horizon"]
    got = {case: tuple(bool(cohort.loc[stay_id, label]) for label in labels) for case, stay_id in cases.items()}
    assert got == {
        "death after 28 days": (False, False, False),
        "death after discharge within 28 days": (True, False, True),
        "hospice": (False, False, True),
    }


def test_a_stay_that_ends_before_its_prediction_time_leaves_the_cohort(planted):
    base, rebuilt, _, _ = planted
    ended = rebuilt.attrs["ended"]
    assert ended.stay_id in set(base.index)  # in the cohort before the plant
    assert ended.stay_id not in rebuilt.attrs["cohort_ids"]
    candidate = rebuilt.attrs["cohort"].loc[ended.stay_id]
    assert candidate.ended_before_prediction and candidate.prediction_time == ended.prediction_time
