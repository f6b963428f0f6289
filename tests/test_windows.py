"""24-hour windows, the steps of the lab and vital sequence and the notes to embed: the point-in-time
rules, shown by planting violating rows into a small synthetic MIMIC-IV, and the windows and steps checked
against a direct pandas computation from the raw files.

One dbt build (of the staging models and the window and note marts) serves the whole module.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import query
from mimic_files import append_rows

from sepsis_fusion.pipelines.build import dbt_build
from sepsis_fusion.pipelines.synth.generate import generate

DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
# The models this module checks and everything they read; tests run only where all their models ran.
SELECT = "path:models/staging +windows_24h +sequence_steps +notes_to_embed"
STEPS, STRIDE = 16, 3  # dbt vars sequence_steps, sequence_stride_hours
FMT = "%Y-%m-%d %H:%M:%S"
HOUR = pd.Timedelta(hours=1)

LATE_LACTATE = 49.5  # valid (<= 50 mmol/L) and far above anything the generator draws
LATE_PAO2 = 777.0  # valid (<= 800 mm Hg), far above the generator's; blood gases are drawn a few times a stay
HR_ERRORS = (0.0, 900.0)


def ts(t: pd.Timestamp) -> str:
    return t.strftime(FMT)


@dataclass
class Built:
    mimic: Path
    warehouse: Path
    features: Path
    stay: pd.Series
    first_end: pd.Timestamp
    lactate_charted: pd.Timestamp
    lactate_stored: pd.Timestamp
    pao2_charted: pd.Timestamp
    pao2_stored: pd.Timestamp

    def query(self, sql: str) -> pd.DataFrame:
        return query(self.warehouse, sql)

    def windows(self) -> pd.DataFrame:
        return self.query(f"SELECT * FROM windows_24h WHERE stay_id = {self.stay.stay_id} ORDER BY event_timestamp")

    def steps(self) -> pd.DataFrame:
        return self.query(f"SELECT * FROM sequence_steps WHERE stay_id = {self.stay.stay_id} ORDER BY event_timestamp")

    def history_start(self) -> pd.Timestamp:
        admissions = pd.read_csv(self.mimic / "hosp/admissions.csv.gz", parse_dates=["admittime"])
        admitted = admissions.set_index("hadm_id").loc[self.stay.hadm_id, "admittime"]
        return min(admitted, self.stay.intime - pd.Timedelta(hours=24))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("windows")
    mimic = root / "mimic"
    generate(40, 3, mimic, density="light", progress=False)
    stays = pd.read_csv(mimic / "icu/icustays.csv.gz", parse_dates=["intime", "outtime"])
    stay = stays[stays.los >= 2.5].sort_values("stay_id").iloc[0]
    first_end = stay.intime.floor("h") + HOUR
    ids = {"subject_id": stay.subject_id, "hadm_id": stay.hadm_id}

    # A lactate drawn 9 h 20 min after the first window end and stored 5 h later; a PaO2 likewise, after
    # the stay's last generated one (so that no later draw overtakes it in the sequence).
    charted = first_end + pd.Timedelta(hours=9, minutes=20)
    stored = charted + pd.Timedelta(hours=5)
    labs = pd.read_csv(mimic / "hosp/labevents.csv.gz", parse_dates=["charttime"])
    gases = labs[(labs.subject_id == stay.subject_id) & (labs.itemid == 50821) & (labs.charttime <= stay.outtime)]
    pao2_charted = max(charted, gases.charttime.max() + pd.Timedelta(minutes=20)) if len(gases) else charted
    pao2_stored = pao2_charted + pd.Timedelta(hours=5)
    assert pao2_stored < stay.outtime - 2 * HOUR, "the planted PaO2 must be stored before the stay ends"
    append_rows(
        mimic,
        "hosp/labevents",
        [
            {
                **ids,
                "labevent_id": 990_000_001,
                "specimen_id": 990_000_001,
                "itemid": 50813,
                "charttime": ts(charted),
                "storetime": ts(stored),
                "value": str(LATE_LACTATE),
                "valuenum": LATE_LACTATE,
                "valueuom": "mmol/L",
            },
            {
                **ids,
                "labevent_id": 990_000_002,
                "specimen_id": 990_000_002,
                "itemid": 50821,
                "charttime": ts(pao2_charted),
                "storetime": ts(pao2_stored),
                "value": str(LATE_PAO2),
                "valuenum": LATE_PAO2,
                "valueuom": "mm Hg",
            },
        ],
    )
    # Heart rate charting errors (0 and 900 bpm) and a text value, five hours in.
    hr = {**ids, "stay_id": stay.stay_id, "itemid": 220045, "valueuom": "bpm", "warning": 0}
    append_rows(
        mimic,
        "icu/chartevents",
        [
            {
                **hr,
                "charttime": ts(first_end + pd.Timedelta(hours=5, minutes=m)),
                "storetime": ts(first_end + pd.Timedelta(hours=5, minutes=m + 5)),
                "value": v,
                "valuenum": vn,
            }
            for m, v, vn in ((10, "0", 0.0), (40, "900", 900.0), (50, "ERROR", None))
        ],
    )
    # A discharge summary charted inside the stay, one filed among radiology reports, and a radiology
    # report whose storetime precedes its charttime.
    text = 'Discharge diagnosis: "sepsis", deceased.\nDischarge condition: ___'
    append_rows(
        mimic,
        "note/discharge",
        [
            {
                **ids,
                "note_id": "PLANT-DS-1",
                "note_type": "DS",
                "note_seq": 99,
                "charttime": ts(first_end + 3 * HOUR),
                "storetime": ts(first_end + 4 * HOUR),
                "text": text,
            }
        ],
    )
    append_rows(
        mimic,
        "note/radiology",
        [
            {
                **ids,
                "note_id": "PLANT-DS-2",
                "note_type": "DS",
                "note_seq": 98,
                "charttime": ts(first_end + 3 * HOUR),
                "storetime": ts(first_end + 4 * HOUR),
                "text": text,
            },
            {
                **ids,
                "note_id": "PLANT-RR-AFTER",
                "note_type": "RR",
                "note_seq": 96,
                "charttime": ts(stay.outtime + 2 * HOUR),
                "storetime": ts(stay.outtime + 3 * HOUR),
                "text": "CHEST (PORTABLE AP), after the ICU stay.",
            },
            {
                **ids,
                "note_id": "PLANT-RR-1",
                "note_type": "RR",
                "note_seq": 97,
                "charttime": ts(first_end + 2 * HOUR),
                "storetime": ts(first_end + HOUR),
                "text": "CHEST (PA AND LAT), clear.",
            },
        ],
    )

    warehouse = root / "warehouse.duckdb"
    features = root / "features"  # where dbt_build puts the Parquet files; the build creates the folder
    assert not features.exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEPSIS_FUSION_FEATURES", str(features))
        mp.setenv("DBT_INDIRECT_SELECTION", "cautious")
        dbt_build(mimic, warehouse=warehouse, select=SELECT)
    return Built(mimic, warehouse, features, stay, first_end, charted, stored, pao2_charted, pao2_stored)


def test_a_lab_counts_from_its_storetime_not_its_draw(built):
    w = built.windows().set_index("event_timestamp")
    hours = lambda a, b: [built.first_end + h * HOUR for h in range(a, b + 1)]  # noqa: E731
    # Drawn 9:20 after the first end, stored at 14:20: not in the windows ending 10 .. 14 h after it ...
    pending = w.loc[hours(10, 14)]
    assert (pending.lactate_max.fillna(0) < LATE_LACTATE).all(), pending.lactate_max
    # ... in every window ending 15 h .. 33 h after it (charttime 9:20 > end - 24 h) ...
    stored = w.loc[hours(15, 33)]
    assert (stored.lactate_max == LATE_LACTATE).all()
    # ... and in none after that.
    assert (w.loc[hours(34, 40)].lactate_max.fillna(0) < LATE_LACTATE).all()
    m = built.query(f"""SELECT available_at FROM int_panel_measurements
                        WHERE stay_id = {built.stay.stay_id} AND feature = 'lactate' AND value = {LATE_LACTATE}""")
    assert list(m.available_at) == [built.lactate_stored]


def test_heart_rate_charting_errors_never_reach_a_window(built):
    sid = built.stay.stay_id
    raw = built.query(f"SELECT valuenum FROM stg_icu_chartevents WHERE stay_id = {sid} AND itemid = 220045")
    assert set(HR_ERRORS) <= set(raw.valuenum.dropna())  # planted and ingested
    kept = built.query(f"SELECT value FROM int_panel_measurements WHERE stay_id = {sid} AND feature = 'heart_rate'")
    assert not set(HR_ERRORS) & set(kept.value)
    bad = built.query("""SELECT count(*) AS n FROM windows_24h
                         WHERE heart_rate_min <= 0 OR heart_rate_max >= 300 OR heart_rate_last NOT BETWEEN 1 AND 299""")
    assert bad.n[0] == 0


def test_discharge_summaries_are_never_notes_to_embed(built):
    notes = built.query("SELECT * FROM notes_to_embed")
    assert len(notes) > 0
    assert not {"PLANT-DS-1", "PLANT-DS-2"} & set(notes.note_id)
    assert not set(notes.note_type) & {"DS", "DA"}
    discharge = built.query("SELECT note_id FROM stg_note_discharge")
    assert "PLANT-DS-1" in set(discharge.note_id) and not set(discharge.note_id) & set(notes.note_id)
    # A report stored "before" it was charted counts from its charttime.
    planted = notes[notes.note_id == "PLANT-RR-1"].iloc[0]
    assert planted.stay_id == built.stay.stay_id and planted.available_at == planted.charttime
    assert (notes.available_at >= notes.charttime).all()


def test_a_report_charted_after_the_stay_is_not_one_of_its_notes(built):
    """Same admission, charted 2 h after the ICU stay's outtime: not a note of the stay."""
    assert "PLANT-RR-AFTER" in set(built.query("SELECT note_id FROM stg_note_radiology").note_id)
    assert "PLANT-RR-AFTER" not in set(built.query("SELECT note_id FROM notes_to_embed").note_id)


def raw_values(built: Built) -> pd.DataFrame:
    """Lactate, creatinine and heart rate of the planted stay, straight from the raw files with pandas."""
    s = built.stay
    dates = ["charttime", "storetime"]
    labs = pd.read_csv(built.mimic / "hosp/labevents.csv.gz", parse_dates=dates)
    labs = labs[
        (labs.subject_id == s.subject_id)
        & labs.itemid.isin([50813, 50912])
        & labs.valuenum.notna()
        & (labs.charttime >= built.history_start())
        & (labs.charttime <= s.outtime)
    ]
    labs = labs.assign(feature=labs.itemid.map({50813: "lactate", 50912: "creatinine"}))
    charts = pd.read_csv(built.mimic / "icu/chartevents.csv.gz", parse_dates=dates)
    charts = charts[(charts.stay_id == s.stay_id) & (charts.itemid == 220045) & charts.valuenum.notna()]
    charts = charts.assign(feature="heart_rate")
    values = pd.concat([labs, charts])[["feature", "valuenum", "charttime", "storetime"]]
    v, f = values.valuenum, values.feature
    valid = (v > 0) & (
        ((f == "lactate") & (v <= 50))
        | ((f == "creatinine") & (v <= 30))  # seeds/panel_features.csv
        | ((f == "heart_rate") & (v < 300))
    )
    values = values[valid]
    values = values.assign(available_at=values[["charttime", "storetime"]].max(axis=1))
    return values.drop_duplicates(["feature", "valuenum", "charttime", "available_at"])


def direct_windows(built: Built) -> pd.DataFrame:
    """Windows of the planted stay for three features, from raw_values."""
    s, values = built.stay, raw_values(built)
    rows = []
    end = built.first_end
    while end <= s.outtime.floor("h"):
        row = {"event_timestamp": end}
        for feature, v in values.groupby("feature"):
            inside = v[(v.charttime > end - pd.Timedelta(hours=24)) & (v.charttime <= end) & (v.available_at <= end)]
            inside = inside.sort_values(["charttime", "available_at", "valuenum"])
            x = inside.valuenum
            row.update(
                {
                    f"{feature}_count": len(x),
                    f"{feature}_min": x.min(),
                    f"{feature}_max": x.max(),
                    f"{feature}_mean": x.mean(),
                    f"{feature}_std": x.std(),
                    f"{feature}_last": x.iloc[-1] if len(x) else np.nan,
                }
            )
        rows.append(row)
        end += HOUR
    return pd.DataFrame(rows)


def test_windows_equal_a_direct_computation_from_the_raw_files(built):
    expected = direct_windows(built)
    got = built.windows()
    assert list(got.event_timestamp) == list(expected.event_timestamp)
    assert expected.lactate_count.max() > 0 and expected.heart_rate_count.max() > 0
    for column in expected.columns.drop("event_timestamp"):
        want, have = expected[column].to_numpy(dtype=float), got[column].to_numpy(dtype=float)
        np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)


def direct_steps(built: Built) -> pd.DataFrame:
    """The sequence steps of the planted stay for three features, from raw_values: at each whole hour t,
    of the values available by t, the latest charted, and the hours since it was charted."""
    values, start = raw_values(built), built.history_start()
    rows = []
    t = built.first_end - pd.Timedelta(hours=STRIDE * (STEPS - 1))
    while t <= built.stay.outtime.floor("h"):
        if t < start:  # no row before the stay's record began
            t += HOUR
            continue
        row = {"event_timestamp": t, "history_hours": (t - start) / HOUR}
        for feature, v in values.groupby("feature"):
            known = v[v.available_at <= t].sort_values(["charttime", "available_at", "valuenum"])
            last = known.iloc[-1] if len(known) else None
            row[f"{feature}_value"] = np.nan if last is None else last.valuenum
            row[f"{feature}_hours_since"] = np.nan if last is None else (t - last.charttime) / HOUR
        rows.append(row)
        t += HOUR
    return pd.DataFrame(rows)


def test_sequence_steps_equal_a_direct_computation_from_the_raw_files(built):
    expected = direct_steps(built)
    got = built.steps()
    assert list(got.event_timestamp) == list(expected.event_timestamp)
    assert expected.lactate_value.notna().any() and expected.heart_rate_value.notna().any()
    for column in expected.columns.drop("event_timestamp"):
        want, have = expected[column].to_numpy(dtype=float), got[column].to_numpy(dtype=float)
        np.testing.assert_allclose(have, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=column)


def test_a_lab_enters_the_sequence_at_the_first_step_after_its_storetime(built):
    """The planted PaO2 (stored 5 h after its draw) is in no step before its storetime, although drawn
    before them; from the first whole hour after it on it is the known value until a later-drawn one is
    stored, its age counted from the draw."""
    steps = built.steps().set_index("event_timestamp")
    raw = pd.read_csv(built.mimic / "hosp/labevents.csv.gz", parse_dates=["charttime", "storetime"])
    raw = raw[(raw.subject_id == built.stay.subject_id) & (raw.itemid == 50821) & raw.valuenum.notna()]
    later = raw[raw.charttime > built.pao2_charted]
    later_known = later[["charttime", "storetime"]].max(axis=1)  # when each later-drawn one became known
    for t, row in steps.iterrows():
        expected = t >= built.pao2_stored and not (later_known <= t).any()
        assert (row.pao2_value == LATE_PAO2) == expected, t
        if expected:
            assert row.pao2_hours_since == pytest.approx((t - built.pao2_charted) / HOUR)
    assert (steps.pao2_value == LATE_PAO2).any(), "the plant is never the known value: plant it elsewhere"
    drawn_not_stored = steps.loc[built.pao2_charted.ceil("h") : built.pao2_stored - pd.Timedelta(seconds=1)]
    assert len(drawn_not_stored) >= 4 and not (drawn_not_stored.pao2_value == LATE_PAO2).any()


def test_steps_begin_at_the_stays_history(built):
    """Step rows run from S - 1 strides before the first window end, but none before the stay's
    history_start (hospital admission, or intime - 24 h): such steps are padding, served as nothing."""
    steps = built.steps()
    first_step = built.first_end - pd.Timedelta(hours=STRIDE * (STEPS - 1))
    assert steps.event_timestamp.iloc[0] == max(first_step, built.history_start().ceil("h"))
    assert (steps.event_timestamp >= built.history_start()).all() and (steps.history_hours >= 0).all()
    assert (steps.event_timestamp.diff().dropna() == HOUR).all()


def test_parquet_files_match_the_warehouse(built):
    windows, notes = built.features / "windows_24h.parquet", built.features / "notes_to_embed.parquet"
    assert windows.is_file() and notes.is_file()
    stays = pd.read_csv(built.mimic / "icu/icustays.csv.gz", parse_dates=["intime", "outtime"])
    # a stay still open at the data's present runs to the extract's time: the latest time the files hold
    admissions = pd.read_csv(built.mimic / "hosp/admissions.csv.gz", parse_dates=["admittime", "dischtime"])
    charted = pd.read_csv(built.mimic / "icu/chartevents.csv.gz", usecols=["charttime"], parse_dates=["charttime"])
    extract = max(stays[["intime", "outtime"]].max().max(), admissions[["admittime", "dischtime"]].max().max())
    extract = max(extract, charted.charttime.max())
    assert stays.outtime.isna().any()  # the live ward
    ends = stays.outtime.fillna(extract)
    hours = ((ends.dt.floor("h") - (stays.intime.dt.floor("h") + HOUR)) / HOUR + 1).clip(lower=0)
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        n = lambda sql: con.sql(sql).fetchall()[0][0]  # noqa: E731
        in_file = n(f"SELECT count(*) FROM read_parquet('{windows}')")
        assert in_file == n("SELECT count(*) FROM windows_24h") == n("SELECT count(*) FROM int_window_ends")
        assert in_file == int(hours.sum())
        assert n(f"SELECT count(*) FROM read_parquet('{windows}')  WHERE stay_id IS NULL") == 0
        assert n(f"SELECT count(*) FROM read_parquet('{notes}')") == n("SELECT count(*) FROM notes_to_embed") > 0


def load_generator():
    path = DBT_PROJECT / "scripts" / "generate_windows_schema.py"
    spec = importlib.util.spec_from_file_location("generate_windows_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", ["windows_24h", "sequence_steps", "notes_to_embed"])
def test_schema_yml_states_every_parquet_column_and_type(built, model):
    generator = load_generator()
    generated = {
        "windows_24h": (generator.OUT, generator.render),
        "sequence_steps": (generator.SEQUENCE_OUT, generator.render_sequence),
    }
    if model in generated:  # generated from the seed and the vars: must be current
        path, render = generated[model]
        assert path.read_text(encoding="utf-8") == render(), "run python dbt_project/scripts/generate_windows_schema.py"
    spec = yaml.safe_load((DBT_PROJECT / "models" / "marts" / f"{model}.yml").read_text(encoding="utf-8"))
    declared = [(c["name"], c["data_type"].upper()) for c in spec["models"][0]["columns"]]
    with duckdb.connect() as con:
        actual = [
            (r[0], r[1])
            for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{built.features}/{model}.parquet')").fetchall()
        ]
    assert declared == actual
