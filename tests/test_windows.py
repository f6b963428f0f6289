"""24-hour windows and notes to embed: the point-in-time rules, shown by planting violating rows into a
small synthetic MIMIC-IV, and the windows checked against a direct pandas computation from the raw files.

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
SELECT = "path:models/staging +windows_24h +notes_to_embed"
FMT = "%Y-%m-%d %H:%M:%S"
HOUR = pd.Timedelta(hours=1)

LATE_LACTATE = 49.5  # valid (<= 50 mmol/L) and far above anything the generator draws
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

    def query(self, sql: str) -> pd.DataFrame:
        return query(self.warehouse, sql)

    def windows(self) -> pd.DataFrame:
        return self.query(f"SELECT * FROM windows_24h WHERE stay_id = {self.stay.stay_id} ORDER BY event_timestamp")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("windows")
    mimic = root / "mimic"
    generate(40, 3, mimic, density="light", progress=False)
    stays = pd.read_csv(mimic / "icu/icustays.csv.gz", parse_dates=["intime", "outtime"])
    stay = stays[stays.los >= 2.5].sort_values("stay_id").iloc[0]
    first_end = stay.intime.floor("h") + HOUR
    ids = {"subject_id": stay.subject_id, "hadm_id": stay.hadm_id}

    # A lactate drawn 9 h 20 min after the first window end and stored 5 h later.
    charted = first_end + pd.Timedelta(hours=9, minutes=20)
    stored = charted + pd.Timedelta(hours=5)
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
            }
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
    return Built(mimic, warehouse, features, stay, first_end, charted, stored)


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


def direct_windows(built: Built) -> pd.DataFrame:
    """Windows of the planted stay for three features, straight from the raw files with pandas."""
    s = built.stay
    dates = ["charttime", "storetime"]
    labs = pd.read_csv(built.mimic / "hosp/labevents.csv.gz", parse_dates=dates)
    labs = labs[
        (labs.subject_id == s.subject_id)
        & labs.itemid.isin([50813, 50912])
        & labs.valuenum.notna()
        & (labs.charttime >= s.intime - pd.Timedelta(hours=24))
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
    values = values.drop_duplicates(["feature", "valuenum", "charttime", "available_at"])

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


def test_parquet_files_match_the_warehouse(built):
    windows, notes = built.features / "windows_24h.parquet", built.features / "notes_to_embed.parquet"
    assert windows.is_file() and notes.is_file()
    stays = pd.read_csv(built.mimic / "icu/icustays.csv.gz", parse_dates=["intime", "outtime"])
    hours = ((stays.outtime.dt.floor("h") - (stays.intime.dt.floor("h") + HOUR)) / HOUR + 1).clip(lower=0)
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


@pytest.mark.parametrize("model", ["windows_24h", "notes_to_embed"])
def test_schema_yml_states_every_parquet_column_and_type(built, model):
    if model == "windows_24h":  # generated from the seed: must be current
        generator = load_generator()
        assert generator.OUT.read_text(encoding="utf-8") == generator.render(), (
            "run python dbt_project/scripts/generate_windows_schema.py"
        )
    spec = yaml.safe_load((DBT_PROJECT / "models" / "marts" / f"{model}.yml").read_text(encoding="utf-8"))
    declared = [(c["name"], c["data_type"].upper()) for c in spec["models"][0]["columns"]]
    with duckdb.connect() as con:
        actual = [
            (r[0], r[1])
            for r in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{built.features}/{model}.parquet')").fetchall()
        ]
    assert declared == actual
