"""The synthetic MIMIC-IV generator: layout, determinism, planted properties, bad arguments."""

from __future__ import annotations

import gzip
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from helpers import assert_exit, invoke
from sklearn.metrics import roc_auc_score

from sepsis_fusion.pipelines.synth.generate import SynthError, generate
from sepsis_fusion.pipelines.synth.schema import MIMIC_TABLES, NOTE_COLUMNS, column_names, read_csv_sql
from sepsis_fusion.pipelines.synth.writer import TableWriter

CLINICAL_TABLES = [t for t in MIMIC_TABLES if not t.startswith("note/")]


def header(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return f.readline().rstrip("\n").split(",")


def read(path: Path, table: str) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM {read_csv_sql(str(path), table)}").df()


@pytest.mark.parametrize("table", CLINICAL_TABLES)
def test_headers_and_types_match_the_demo(table, synthetic, demo_dir):
    assert header(synthetic / f"{table}.csv.gz") == header(demo_dir / f"{table}.csv.gz") == column_names(table)
    # Both files parse under MIMIC-IV v2.2's column types: a value of the wrong type would fail the cast.
    for root in (synthetic, demo_dir):
        n = duckdb.sql(f"SELECT count(*) FROM {read_csv_sql(f'{root / table}.csv.gz', table)}").fetchall()[0][0]
        assert n > 0


@pytest.mark.parametrize("table", ["note/radiology", "note/discharge"])
def test_note_tables_have_mimic_iv_note_columns(table, synthetic):
    assert header(synthetic / f"{table}.csv.gz") == [c for c, _ in NOTE_COLUMNS]
    notes = read(synthetic / f"{table}.csv.gz", table)
    prefix = "RR" if table.endswith("radiology") else "DS"
    assert (notes.note_id == notes.subject_id.astype(str) + f"-{prefix}-" + notes.note_seq.astype(str)).all()
    assert (notes.storetime > notes.charttime).all()


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(60, 3, a, density="light", progress=False)
    generate(60, 3, b, density="light", progress=False)
    generate(60, 4, c, density="light", progress=False)
    assert digest(a) == digest(b)
    assert len(digest(a)) == len(MIMIC_TABLES) + 3  # every table; _truth/: stays.csv, README.md, arguments.json
    assert digest(a)["icu/chartevents.csv.gz"] != digest(c)["icu/chartevents.csv.gz"]


def test_exact_stay_count_and_several_stays_per_patient(synthetic):
    stays = read(synthetic / "icu/icustays.csv.gz", "icu/icustays")
    assert len(stays) == 1500 and stays.stay_id.is_unique
    assert (stays.groupby("subject_id").size() > 1).sum() > 50
    adm = read(synthetic / "hosp/admissions.csv.gz", "hosp/admissions")
    assert adm.hadm_id.is_unique and set(stays.hadm_id) <= set(adm.hadm_id)
    assert len(adm) > len(stays)  # earlier admissions without an ICU stay carry the comorbidity history
    ended = stays.dropna(subset=["outtime"])  # the live ward's stays are still open (test below)
    assert (ended.outtime > ended.intime).all()
    merged = ended.merge(adm, on=["subject_id", "hadm_id"])
    assert (merged.intime >= merged.admittime).all() and (merged.outtime <= merged.dischtime).all()


@pytest.fixture(scope="module")
def truth(synthetic) -> pd.DataFrame:
    return pd.read_csv(synthetic / "_truth/stays.csv")


def test_planted_sepsis_share_mortality_and_ideal_auroc(truth):
    assert 0.30 <= truth.sepsis3_expected.mean() <= 0.50
    septic = truth[truth.sepsis3_expected]
    assert 0.15 <= septic.died_in_hospital.mean() <= 0.30
    ideal = roc_auc_score(septic.died_in_hospital, septic.p_death_in_hospital)
    assert 0.80 <= ideal <= 0.92
    for part in ("logit_static", "logit_course", "logit_note"):
        assert roc_auc_score(septic.died_in_hospital, septic[part]) > 0.55, part


def test_each_modality_carries_its_own_signal_in_the_files(synthetic, truth):
    septic = truth[truth.sepsis3_expected].copy()
    con = duckdb.connect()
    con.register("septic", septic)
    # Static: age at the stay, from patients and admissions.
    age = con.sql(f"""
        SELECT s.stay_id, p.anchor_age + year(i.intime) - p.anchor_year AS age
        FROM septic s JOIN read_csv('{synthetic}/icu/icustays.csv.gz') i USING (stay_id)
        JOIN read_csv('{synthetic}/hosp/patients.csv.gz') p ON p.subject_id = i.subject_id""").df()
    df = septic.merge(age, on="stay_id")
    assert roc_auc_score(df.died_in_hospital, df.age) > 0.58
    # Course: the highest lactate in the day after the suspected infection (as stored by then).
    lactate = con.sql(f"""
        SELECT s.stay_id, max(l.valuenum) AS lactate
        FROM septic s JOIN read_csv('{synthetic}/hosp/labevents.csv.gz') l ON l.hadm_id = s.hadm_id
        WHERE l.itemid = 50813 AND l.valuenum IS NOT NULL
          AND l.charttime BETWEEN s.suspected_infection_time_expected::TIMESTAMP
                              AND s.suspected_infection_time_expected::TIMESTAMP + INTERVAL 24 HOUR
        GROUP BY 1""").df()
    df = septic.merge(lactate, on="stay_id")
    assert len(df) > 0.5 * len(septic)
    assert roc_auc_score(df.died_in_hospital, df.lactate) > 0.65
    # Notes: radiology text that names metastatic disease; no lab or code carries this finding.
    meta = con.sql(f"""
        SELECT s.stay_id, bool_or(r.text ILIKE '%metasta%') AS metastatic
        FROM septic s LEFT JOIN read_csv('{synthetic}/note/radiology.csv.gz') r ON r.hadm_id = s.hadm_id
        GROUP BY 1""").df()
    df = septic.merge(meta, on="stay_id")
    rate = df.groupby(df.metastatic.fillna(False)).died_in_hospital.mean()
    assert rate[True] > 1.8 * rate[False]
    assert (df.metastatic.fillna(False) == df.note_finding).mean() > 0.8


def test_discharge_summary_states_how_the_stay_ended(synthetic, truth):
    ds = read(synthetic / "note/discharge.csv.gz", "note/discharge")
    df = ds.merge(truth, on="hadm_id")
    expired = df.text.str.contains("Discharge Disposition:\nExpired", regex=False)
    assert (expired == df.died_in_hospital).all()


def test_real_data_mess_is_present(synthetic):
    labs = read(synthetic / "hosp/labevents.csv.gz", "hosp/labevents")
    assert {"<0.2", "ERROR", "___"} <= set(labs.value.dropna())
    assert labs.valuenum.isna().mean() > 0.001
    assert (labs.storetime > labs.charttime + pd.Timedelta(hours=6)).sum() > 100  # stored hours after the draw
    assert labs.storetime.isna().any() and labs.hadm_id.isna().any()
    key = ["subject_id", "itemid", "charttime", "valuenum"]
    assert labs.duplicated(key).sum() > 10
    chart = read(synthetic / "icu/chartevents.csv.gz", "icu/chartevents")
    assert chart.duplicated().sum() > 10
    hr = chart[chart.itemid == 220045].valuenum
    assert hr.max() > 300 or (hr == 0).any()  # charting errors
    assert {223761, 223762} <= set(chart.itemid)  # temperature in °F and °C
    fio2 = chart[chart.itemid == 223835].valuenum
    assert (fio2 <= 1).any() and (fio2 > 1).any()  # FiO2 as a fraction and as a percentage
    omr = read(synthetic / "hosp/omr.csv.gz", "hosp/omr")
    assert {"Weight (Lbs)", "Height (Inches)"} <= set(omr.result_name)


def test_culture_results_are_stored_hours_to_weeks_after_the_draw(synthetic):
    """MIMIC-IV per specimen: 10% of results within 5 h, 25% within 24 h, median ~52 h, a long tail."""
    micro = read(synthetic / "hosp/microbiologyevents.csv.gz", "hosp/microbiologyevents")
    # one report time per specimen (none yet for a pending culture of the live ward)
    assert (micro.groupby("micro_specimen_id").storetime.nunique() <= 1).all()
    spec = micro.dropna(subset=["charttime", "storetime"]).groupby("micro_specimen_id").first()
    hours = (spec.storetime - spec.charttime).dt.total_seconds() / 3600
    assert len(hours) > 500 and (hours > 0).all()
    assert 0.07 <= (hours <= 5).mean() <= 0.13
    assert 0.21 <= (hours <= 24).mean() <= 0.31
    assert 40 <= hours.median() <= 65
    assert 90 <= hours.quantile(0.75) <= 150
    assert 0.05 <= (hours > 7 * 24).mean() <= 0.25


@pytest.fixture(scope="module")
def outcomes(synthetic, truth) -> pd.DataFrame:
    """One row per ICU stay: truth, its admission, whether it is the patient's last, days from discharge to dod.
    Patients of the live ward are left out: their files stop at the present, the truth goes on."""
    adm = read(synthetic / "hosp/admissions.csv.gz", "hosp/admissions")
    live = truth.loc[truth.in_icu_at_present, "subject_id"]
    df = truth[~truth.subject_id.isin(live)].merge(adm, on=["subject_id", "hadm_id"], suffixes=("_truth", ""))
    df["dod"] = pd.to_datetime(df.dod)
    df["last"] = df.groupby("subject_id").admittime.transform("max") == df.admittime
    df["days"] = (df.dod - df.dischtime.dt.normalize()).dt.days
    return df


def test_hospice_discharges_are_survivors_who_mostly_die_within_weeks(synthetic, outcomes):
    adm = read(synthetic / "hosp/admissions.csv.gz", "hosp/admissions")
    assert (adm.discharge_location == "HOSPICE").sum() == outcomes.discharged_to_hospice.sum()
    assert ((outcomes.discharge_location == "HOSPICE") == outcomes.discharged_to_hospice).all()
    hospice = outcomes[outcomes.discharged_to_hospice]
    assert len(hospice) >= 10
    assert not hospice.died_in_hospital.any() and (hospice.hospital_expire_flag == 0).all()
    assert hospice["last"].all()
    survivors = outcomes[~outcomes.died_in_hospital]
    assert 0.01 <= survivors.discharged_to_hospice.mean() <= 0.06
    high = survivors.p_death_in_hospital >= survivors.p_death_in_hospital.quantile(0.75)
    assert survivors[high].discharged_to_hospice.mean() > 3 * survivors[~high].discharged_to_hospice.mean()
    assert (hospice.days <= 30).mean() >= 0.7
    assert (hospice.days.dropna() >= 0).all()


def test_post_discharge_deaths_rise_with_risk_and_never_precede_a_later_admission(synthetic, outcomes):
    died = outcomes[outcomes.died_in_hospital]
    assert (died.dod == died.dischtime.dt.normalize()).all()  # in-hospital deaths: dod is the discharge date
    others = outcomes[~outcomes.died_in_hospital & ~outcomes.discharged_to_hospice & outcomes["last"]]
    assert others.days.dropna().between(0, 366).all()
    assert 0.06 <= others.days.notna().mean() <= 0.25
    high = others.p_death_in_hospital >= others.p_death_in_hospital.quantile(0.75)
    low = others.p_death_in_hospital <= others.p_death_in_hospital.median()
    assert others[high].days.notna().mean() > 1.8 * others[low].days.notna().mean()
    assert 0.1 <= (others.days.dropna() <= 28).mean() <= 0.45  # some within 28 days of discharge
    # Only a patient's last admission is followed by a death: no admission (with or without an ICU stay) after it.
    adm = read(synthetic / "hosp/admissions.csv.gz", "hosp/admissions")
    patients = read(synthetic / "hosp/patients.csv.gz", "hosp/patients")
    both = adm.merge(patients[["subject_id", "dod"]], on="subject_id")
    assert not (both.dod.notna() & (both.admittime.dt.normalize() > pd.to_datetime(both.dod))).any()
    assert not outcomes[~outcomes["last"]].died_in_hospital.any()


def test_services_start_at_admission_and_follow_the_admission_type(synthetic):
    services = read(synthetic / "hosp/services.csv.gz", "hosp/services")
    adm = read(synthetic / "hosp/admissions.csv.gz", "hosp/admissions")
    stays = read(synthetic / "icu/icustays.csv.gz", "icu/icustays")
    df = services.merge(adm[["hadm_id", "admittime", "dischtime", "admission_type"]], on="hadm_id")
    assert len(df) == len(services) and set(services.hadm_id) == set(adm.hadm_id)
    first = df[df.prev_service.isna()]
    assert first.hadm_id.is_unique and len(first) == len(adm)
    assert (first.transfertime == first.admittime).all()
    assert set(stays.hadm_id) <= set(first.hadm_id)
    assert df.transfertime.between(df.admittime, df.dischtime.fillna(df.transfertime.max())).all()
    df = df.sort_values(["hadm_id", "transfertime"])
    later = df.hadm_id.duplicated()
    assert later.mean() > 0.05
    assert (df.prev_service[later].to_numpy() == df.curr_service.shift()[later].to_numpy()).all()
    assert (df.prev_service[later] != df.curr_service[later]).all()
    surgical = first.curr_service.str.contains("SURG") | (first.curr_service == "ORTHO")
    assert surgical[first.admission_type == "ELECTIVE"].mean() > 0.7
    assert surgical[first.admission_type == "EW EMER."].mean() < 0.35


def test_services_use_the_demo_codes(synthetic, demo_dir):
    synth = read(synthetic / "hosp/services.csv.gz", "hosp/services")
    demo = read(demo_dir / "hosp/services.csv.gz", "hosp/services")
    assert set(synth.curr_service) <= set(demo.curr_service)
    assert set(synth.prev_service.dropna()) <= set(demo.curr_service)


def test_sepsis_items_use_mimic_iv_itemids(synthetic):
    chart = set(read(synthetic / "icu/chartevents.csv.gz", "icu/chartevents").itemid)
    assert {220045, 220052, 220181, 220739, 223900, 223901, 223835, 223849, 226732, 220210, 220277} <= chart
    labs = set(read(synthetic / "hosp/labevents.csv.gz", "hosp/labevents").itemid)
    assert {51265, 50885, 50912, 50821, 50816, 52033, 50813} <= labs
    inputs = set(read(synthetic / "icu/inputevents.csv.gz", "icu/inputevents").itemid)
    assert 221906 in inputs
    outputs = set(read(synthetic / "icu/outputevents.csv.gz", "icu/outputevents").itemid)
    assert {226559, 227488} <= outputs


def test_cli_rejects_zero_stays(tmp_path):
    result = invoke(["synth", "--stays", "0", "--out", tmp_path / "x"])
    assert_exit(result, 1)
    assert "--stays must be at least 1 (got 0)" in result.stderr
    assert not (tmp_path / "x").exists()


def test_cli_rejects_unwritable_out(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("")
    result = invoke(["synth", "--stays", "5", "--out", afile / "sub"])
    assert_exit(result, 1)
    assert "is a file, not a folder" in result.stderr
    result = invoke(["synth", "--stays", "5", "--out", "/proc/sepsis-fusion-synth"])
    assert_exit(result, 1)
    assert "is not writable" in result.stderr


def test_generate_raises_clear_error(tmp_path):
    with pytest.raises(SynthError, match="--density"):
        generate(5, 0, tmp_path, density="dense", progress=False)


def test_a_table_writer_holds_at_most_one_chunk_behind_the_generator(tmp_path):
    """Generation runs ahead of compression at full scale; a writer must make it wait (one chunk in flight
    per table) instead of queueing every chunk in memory (15 GiB at 94,000 stays before this)."""
    chunk = pa.table(
        {
            "subject_id": [1],
            "gender": ["F"],
            "anchor_age": [60],
            "anchor_year": [2150],
            "anchor_year_group": ["2011 - 2013"],
            "dod": [None],
        }
    )
    busy = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(busy.wait)  # the compression thread is occupied
        writer = TableWriter(tmp_path, "hosp/patients", 1, pool)
        writer.write(chunk)  # queued behind the busy worker
        second = threading.Thread(target=writer.write, args=(chunk,))
        second.start()
        second.join(timeout=0.5)
        assert second.is_alive()  # waits for the first chunk to be written
        busy.set()
        second.join(timeout=30)
        assert not second.is_alive()
        writer.close()
    with gzip.open(tmp_path / "hosp" / "patients.csv.gz", "rt") as f:
        assert len(f.read().splitlines()) == 3 and writer.rows == 2


def test_the_data_end_at_a_present_with_a_live_ward(synthetic):
    """Every table is cut at now: the live ward's stays are open, nothing is charted or stored after now,
    open admissions have no discharge, death or diagnosis codes yet, and no death after now is known."""
    import json

    now = pd.Timestamp(json.loads((synthetic / "_truth/arguments.json").read_text())["now"])
    truth = pd.read_csv(synthetic / "_truth/stays.csv")
    stays = read(synthetic / "icu/icustays.csv.gz", "icu/icustays")
    live = set(truth.loc[truth.in_icu_at_present, "stay_id"])
    assert 40 <= len(live) <= 120  # about 5% of 1,500 stays' patients
    open_ = stays[stays.outtime.isna()]
    assert set(open_.stay_id) == live and (open_.intime <= now).all()
    assert (stays.outtime.dropna() <= now).all()
    adm = read(synthetic / "hosp/admissions.csv.gz", "hosp/admissions")
    open_adm = adm[adm.hadm_id.isin(open_.hadm_id)]
    assert open_adm.dischtime.isna().all() and open_adm.deathtime.isna().all()
    assert (open_adm.hospital_expire_flag == 0).all() and open_adm.discharge_location.isna().all()
    assert (adm[["admittime", "dischtime", "deathtime"]].max() <= now).all()
    diagnoses = read(synthetic / "hosp/diagnoses_icd.csv.gz", "hosp/diagnoses_icd")
    assert not diagnoses.hadm_id.isin(open_adm.hadm_id).any()  # coded after discharge
    assert (pd.to_datetime(read(synthetic / "hosp/patients.csv.gz", "hosp/patients").dod.dropna()) < now).all()
    # the truth keeps the course after now: some of the live ward die after it
    assert truth.loc[truth.in_icu_at_present, "died_in_hospital"].any()
    for table, columns in (
        ("icu/chartevents", ("charttime", "storetime")),
        ("hosp/labevents", ("charttime", "storetime")),
        ("icu/inputevents", ("starttime", "endtime", "storetime")),
        ("note/radiology", ("charttime", "storetime")),
    ):
        source = read_csv_sql(str(synthetic / table) + ".csv.gz", table)
        (latest,) = duckdb.sql(f"SELECT {', '.join(f'max({c})' for c in columns)} FROM {source}").fetchall()
        assert all(t <= now for t in latest if t is not None), table
    micro = read(synthetic / "hosp/microbiologyevents.csv.gz", "hosp/microbiologyevents")
    pending = micro[micro.storedate.isna() & micro.storetime.isna()]
    assert len(pending) > 0 and pending.org_name.isna().all() and (pending.chartdate <= now).all()


def test_no_live_ward_gives_a_retrospective_extract(tmp_path):
    generate(60, 3, tmp_path, density="light", progress=False, live_share=0)
    stays = read(tmp_path / "icu/icustays.csv.gz", "icu/icustays")
    assert stays.outtime.notna().all()
    assert "now" not in (tmp_path / "_truth/arguments.json").read_text()


# ----------------------------------------------------------------------------------------- a second site


def test_site_a_is_the_generator_without_the_option_byte_for_byte(tmp_path):
    generate(60, 3, tmp_path / "default", density="light", progress=False)
    generate(60, 3, tmp_path / "a", density="light", progress=False, site="a")
    generate(60, 3, tmp_path / "b", density="light", progress=False, site="b")
    assert digest(tmp_path / "default") == digest(tmp_path / "a")
    assert "site" not in (tmp_path / "a/_truth/arguments.json").read_text()  # as written before sites existed
    b = digest(tmp_path / "b")
    assert b.keys() == digest(tmp_path / "a").keys()
    assert b["hosp/labevents.csv.gz"] != digest(tmp_path / "a")["hosp/labevents.csv.gz"]


def test_an_unknown_site_is_refused(tmp_path):
    with pytest.raises(SynthError, match="--site must be one of"):
        generate(5, 0, tmp_path, density="light", progress=False, site="c")
    result = invoke(["synth", "--stays", "5", "--site", "c", "--out", tmp_path / "x"])
    assert_exit(result, 2)


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    """The same seed at site a and site b (`sepsis-fusion synth --site b`), 600 stays each."""
    root = tmp_path_factory.mktemp("sites")
    assert_exit(
        invoke(["synth", "--stays", 600, "--seed", 11, "--density", "light", "--site", "b", "--out", root / "b"]), 0
    )
    generate(600, 11, root / "a", density="light", progress=False)
    return {"a": root / "a", "b": root / "b"}


def test_site_b_is_recorded_with_its_arguments_and_truth(sites):
    import json

    arguments = json.loads((sites["b"] / "_truth/arguments.json").read_text())
    assert arguments["site"] == "b" and arguments["stays"] == 600
    assert "## Site b" in (sites["b"] / "_truth/README.md").read_text()
    assert "## Site" not in (sites["a"] / "_truth/README.md").read_text()


def test_site_b_has_the_same_tables_columns_and_vocabulary(sites):
    files = {name: sorted(p.relative_to(sites[name]) for p in sites[name].rglob("*.csv.gz")) for name in sites}
    assert files["a"] == files["b"] and len(files["a"]) == len(MIMIC_TABLES)
    for table in MIMIC_TABLES:
        assert header(sites["b"] / f"{table}.csv.gz") == header(sites["a"] / f"{table}.csv.gz"), table
    for table in ("hosp/d_labitems", "icu/d_items"):  # same itemids, labels and units
        assert (sites["a"] / f"{table}.csv.gz").read_bytes() == (sites["b"] / f"{table}.csv.gz").read_bytes()

    def distinct(name: str, table: str, column: str) -> set:
        source = read_csv_sql(str(sites[name] / table) + ".csv.gz", table)
        return {row[0] for row in duckdb.sql(f"SELECT DISTINCT {column} FROM {source}").fetchall()}

    for table, column in (
        ("hosp/labevents", "itemid"),
        ("hosp/labevents", "valueuom"),
        ("icu/chartevents", "itemid"),
        ("icu/inputevents", "itemid"),
        ("icu/outputevents", "itemid"),
        ("icu/icustays", "first_careunit"),
        ("hosp/admissions", "admission_type"),
        ("hosp/services", "curr_service"),
    ):
        assert distinct("b", table, column) == distinct("a", table, column), (table, column)


@pytest.fixture(scope="module")
def site_frames(sites) -> dict[str, dict[str, pd.DataFrame]]:
    frames = {}
    for name, root in sites.items():
        stays = read(root / "icu/icustays.csv.gz", "icu/icustays")
        admissions = read(root / "hosp/admissions.csv.gz", "hosp/admissions")
        frames[name] = {
            "truth": pd.read_csv(root / "_truth/stays.csv"),
            "icu_admissions": admissions[admissions.hadm_id.isin(stays.hadm_id)],
            "patients": read(root / "hosp/patients.csv.gz", "hosp/patients"),
        }
    return frames


def test_site_b_dies_more_often_at_the_same_physiology(site_frames):
    """Higher mortality in the truth and in the admissions' hospital_expire_flag; the truth's probability
    carries the site's shift of the log-odds beside the three parts, and without it site b's deaths
    outnumber what site a's formula expects by a third or more."""
    import numpy as np

    from sepsis_fusion.pipelines.synth.cohort import DEATH_INTERCEPT
    from sepsis_fusion.pipelines.synth.site import SITE_B

    a, b = site_frames["a"], site_frames["b"]
    assert b["truth"].p_death_in_hospital.mean() > 1.3 * a["truth"].p_death_in_hospital.mean()
    assert b["truth"].died_in_hospital.mean() > 1.3 * a["truth"].died_in_hospital.mean()
    assert b["icu_admissions"].hospital_expire_flag.mean() > 1.3 * a["icu_admissions"].hospital_expire_flag.mean()
    for name, shift in (("a", 0.0), ("b", SITE_B.death_logit_shift)):
        t = site_frames[name]["truth"]
        logit = np.log(t.p_death_in_hospital / (1 - t.p_death_in_hospital))
        rest = logit - t.logit_static - t.logit_course - t.logit_note
        assert np.allclose(rest, DEATH_INTERCEPT + shift, atol=1e-6), name
    known = {name: f["truth"][~f["truth"].in_icu_at_present] for name, f in site_frames.items()}
    logit_b = np.log(known["b"].p_death_in_hospital / (1 - known["b"].p_death_in_hospital))
    expected_at_a = 1 / (1 + np.exp(-(logit_b - SITE_B.death_logit_shift)))
    observed_to_expected = known["b"].died_in_hospital.sum() / expected_at_a.sum()
    at_a = known["a"].died_in_hospital.sum() / known["a"].p_death_in_hospital.sum()
    assert observed_to_expected > 1.25 and observed_to_expected > at_a + 0.2


def test_site_b_is_an_older_emergency_case_mix(site_frames):
    a, b = site_frames["a"], site_frames["b"]
    assert b["patients"].anchor_age.mean() > a["patients"].anchor_age.mean() + 4
    assert (b["patients"].gender == "F").mean() > (a["patients"].gender == "F").mean()
    emergency = ["EW EMER.", "DIRECT EMER."]
    assert (
        b["icu_admissions"].admission_type.isin(emergency).mean()
        > a["icu_admissions"].admission_type.isin(emergency).mean() + 0.08
    )


def test_site_b_labs_read_differently_and_less_often(sites):
    lactate, creatinine, sodium, potassium, hemoglobin = 50813, 50912, 50983, 50971, 51222

    def labs(name: str) -> pd.DataFrame:
        """Mean (without the hundredfold entry errors) and count of rows per lab item."""
        source = read_csv_sql(str(sites[name] / "hosp/labevents") + ".csv.gz", "hosp/labevents")
        rows = duckdb.sql(
            f"SELECT itemid, valuenum FROM {source} "
            f"WHERE itemid IN ({lactate}, {creatinine}, {sodium}, {potassium}, {hemoglobin})"
        ).df()
        typical = rows.valuenum < 10 * rows.groupby("itemid").valuenum.transform("median")
        return rows[typical].groupby("itemid").valuenum.agg(["mean", "size"])

    a, b = labs("a"), labs("b")
    assert b.at[lactate, "mean"] > 1.2 * a.at[lactate, "mean"]
    assert b.at[creatinine, "mean"] > 1.15 * a.at[creatinine, "mean"]
    assert b.at[sodium, "mean"] < a.at[sodium, "mean"] - 1.5
    for unshifted in (potassium, hemoglobin):  # the other analysers agree
        assert b.at[unshifted, "mean"] == pytest.approx(a.at[unshifted, "mean"], rel=0.03)
    assert b.at[creatinine, "size"] < 0.8 * a.at[creatinine, "size"]  # chemistry drawn less often


def test_site_b_writes_fewer_and_briefer_notes_that_still_state_the_finding(sites, site_frames):
    for table in ("note/radiology", "note/discharge"):
        notes = {name: read(sites[name] / f"{table}.csv.gz", table) for name in sites}
        assert notes["b"].text.str.len().mean() < 0.5 * notes["a"].text.str.len().mean(), table
        if table == "note/radiology":
            assert len(notes["b"]) < 0.9 * len(notes["a"])
            truth = site_frames["b"]["truth"]
            finding = set(truth.loc[truth.note_finding, "hadm_id"])
            stated = set(notes["b"].loc[notes["b"].text.str.contains("mets|carcinomatosis"), "hadm_id"])
            assert stated <= finding and len(stated) > 0.6 * len(finding)
