"""MIMIC-IV v2.2 (and MIMIC-IV-Note v2.2) tables the project reads: column names, order and types.

Types follow MIT-LCP mimic-code's `buildmimic/postgres/create.sql`, written as DuckDB types so that the
same list both types a `read_csv` and checks files against the published layout.
"""

from __future__ import annotations

Column = tuple[str, str]

MIMIC_TABLES: dict[str, list[Column]] = {
    "hosp/patients": [
        ("subject_id", "INTEGER"),
        ("gender", "VARCHAR"),
        ("anchor_age", "SMALLINT"),
        ("anchor_year", "SMALLINT"),
        ("anchor_year_group", "VARCHAR"),
        ("dod", "DATE"),
    ],
    "hosp/admissions": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("admittime", "TIMESTAMP"),
        ("dischtime", "TIMESTAMP"),
        ("deathtime", "TIMESTAMP"),
        ("admission_type", "VARCHAR"),
        ("admit_provider_id", "VARCHAR"),
        ("admission_location", "VARCHAR"),
        ("discharge_location", "VARCHAR"),
        ("insurance", "VARCHAR"),
        ("language", "VARCHAR"),
        ("marital_status", "VARCHAR"),
        ("race", "VARCHAR"),
        ("edregtime", "TIMESTAMP"),
        ("edouttime", "TIMESTAMP"),
        ("hospital_expire_flag", "SMALLINT"),
    ],
    "hosp/diagnoses_icd": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("seq_num", "INTEGER"),
        ("icd_code", "VARCHAR"),
        ("icd_version", "SMALLINT"),
    ],
    "hosp/services": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("transfertime", "TIMESTAMP"),
        ("prev_service", "VARCHAR"),
        ("curr_service", "VARCHAR"),
    ],
    "hosp/d_icd_diagnoses": [("icd_code", "VARCHAR"), ("icd_version", "SMALLINT"), ("long_title", "VARCHAR")],
    "hosp/labevents": [
        ("labevent_id", "INTEGER"),
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("specimen_id", "INTEGER"),
        ("itemid", "INTEGER"),
        ("order_provider_id", "VARCHAR"),
        ("charttime", "TIMESTAMP"),
        ("storetime", "TIMESTAMP"),
        ("value", "VARCHAR"),
        ("valuenum", "DOUBLE"),
        ("valueuom", "VARCHAR"),
        ("ref_range_lower", "DOUBLE"),
        ("ref_range_upper", "DOUBLE"),
        ("flag", "VARCHAR"),
        ("priority", "VARCHAR"),
        ("comments", "VARCHAR"),
    ],
    "hosp/d_labitems": [("itemid", "INTEGER"), ("label", "VARCHAR"), ("fluid", "VARCHAR"), ("category", "VARCHAR")],
    "hosp/microbiologyevents": [
        ("microevent_id", "INTEGER"),
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("micro_specimen_id", "INTEGER"),
        ("order_provider_id", "VARCHAR"),
        ("chartdate", "TIMESTAMP"),
        ("charttime", "TIMESTAMP"),
        ("spec_itemid", "INTEGER"),
        ("spec_type_desc", "VARCHAR"),
        ("test_seq", "INTEGER"),
        ("storedate", "TIMESTAMP"),
        ("storetime", "TIMESTAMP"),
        ("test_itemid", "INTEGER"),
        ("test_name", "VARCHAR"),
        ("org_itemid", "INTEGER"),
        ("org_name", "VARCHAR"),
        ("isolate_num", "SMALLINT"),
        ("quantity", "VARCHAR"),
        ("ab_itemid", "INTEGER"),
        ("ab_name", "VARCHAR"),
        ("dilution_text", "VARCHAR"),
        ("dilution_comparison", "VARCHAR"),
        ("dilution_value", "DOUBLE"),
        ("interpretation", "VARCHAR"),
        ("comments", "VARCHAR"),
    ],
    "hosp/prescriptions": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("pharmacy_id", "INTEGER"),
        ("poe_id", "VARCHAR"),
        ("poe_seq", "INTEGER"),
        ("order_provider_id", "VARCHAR"),
        ("starttime", "TIMESTAMP"),
        ("stoptime", "TIMESTAMP"),
        ("drug_type", "VARCHAR"),
        ("drug", "VARCHAR"),
        ("formulary_drug_cd", "VARCHAR"),
        ("gsn", "VARCHAR"),
        ("ndc", "VARCHAR"),
        ("prod_strength", "VARCHAR"),
        ("form_rx", "VARCHAR"),
        ("dose_val_rx", "VARCHAR"),
        ("dose_unit_rx", "VARCHAR"),
        ("form_val_disp", "VARCHAR"),
        ("form_unit_disp", "VARCHAR"),
        ("doses_per_24_hrs", "REAL"),
        ("route", "VARCHAR"),
    ],
    "hosp/omr": [
        ("subject_id", "INTEGER"),
        ("chartdate", "DATE"),
        ("seq_num", "INTEGER"),
        ("result_name", "VARCHAR"),
        ("result_value", "VARCHAR"),
    ],
    "icu/icustays": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("stay_id", "INTEGER"),
        ("first_careunit", "VARCHAR"),
        ("last_careunit", "VARCHAR"),
        ("intime", "TIMESTAMP"),
        ("outtime", "TIMESTAMP"),
        ("los", "DOUBLE"),
    ],
    "icu/chartevents": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("stay_id", "INTEGER"),
        ("caregiver_id", "INTEGER"),
        ("charttime", "TIMESTAMP"),
        ("storetime", "TIMESTAMP"),
        ("itemid", "INTEGER"),
        ("value", "VARCHAR"),
        ("valuenum", "DOUBLE"),
        ("valueuom", "VARCHAR"),
        ("warning", "SMALLINT"),
    ],
    "icu/d_items": [
        ("itemid", "INTEGER"),
        ("label", "VARCHAR"),
        ("abbreviation", "VARCHAR"),
        ("linksto", "VARCHAR"),
        ("category", "VARCHAR"),
        ("unitname", "VARCHAR"),
        ("param_type", "VARCHAR"),
        ("lownormalvalue", "DOUBLE"),
        ("highnormalvalue", "DOUBLE"),
    ],
    "icu/inputevents": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("stay_id", "INTEGER"),
        ("caregiver_id", "INTEGER"),
        ("starttime", "TIMESTAMP"),
        ("endtime", "TIMESTAMP"),
        ("storetime", "TIMESTAMP"),
        ("itemid", "INTEGER"),
        ("amount", "DOUBLE"),
        ("amountuom", "VARCHAR"),
        ("rate", "DOUBLE"),
        ("rateuom", "VARCHAR"),
        ("orderid", "INTEGER"),
        ("linkorderid", "INTEGER"),
        ("ordercategoryname", "VARCHAR"),
        ("secondaryordercategoryname", "VARCHAR"),
        ("ordercomponenttypedescription", "VARCHAR"),
        ("ordercategorydescription", "VARCHAR"),
        ("patientweight", "DOUBLE"),
        ("totalamount", "DOUBLE"),
        ("totalamountuom", "VARCHAR"),
        ("isopenbag", "SMALLINT"),
        ("continueinnextdept", "SMALLINT"),
        ("statusdescription", "VARCHAR"),
        ("originalamount", "DOUBLE"),
        ("originalrate", "DOUBLE"),
    ],
    "icu/outputevents": [
        ("subject_id", "INTEGER"),
        ("hadm_id", "INTEGER"),
        ("stay_id", "INTEGER"),
        ("caregiver_id", "INTEGER"),
        ("charttime", "TIMESTAMP"),
        ("storetime", "TIMESTAMP"),
        ("itemid", "INTEGER"),
        ("value", "DOUBLE"),
        ("valueuom", "VARCHAR"),
    ],
}

NOTE_COLUMNS: list[Column] = [
    ("note_id", "VARCHAR"),
    ("subject_id", "INTEGER"),
    ("hadm_id", "INTEGER"),
    ("note_type", "VARCHAR"),
    ("note_seq", "INTEGER"),
    ("charttime", "TIMESTAMP"),
    ("storetime", "TIMESTAMP"),
    ("text", "VARCHAR"),
]
MIMIC_TABLES["note/radiology"] = NOTE_COLUMNS
MIMIC_TABLES["note/discharge"] = NOTE_COLUMNS


def column_names(table: str) -> list[str]:
    return [name for name, _ in MIMIC_TABLES[table]]


def duckdb_columns(table: str) -> dict[str, str]:
    """The `columns=` argument of DuckDB's read_csv for a table."""
    return dict(MIMIC_TABLES[table])


def read_csv_sql(path: str, table: str) -> str:
    """DuckDB `read_csv(...)` for a MIMIC-IV gzip CSV with its published types.

    MIMIC-IV quotes with '"' and escapes a quote by doubling it, and free-text columns (lab comments,
    note text) span lines; the sniffer must not guess these.
    """
    return f"read_csv('{path}', header=true, quote='\"', escape='\"', columns={duckdb_columns(table)!r})"
