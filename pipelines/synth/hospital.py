"""Tables with one row per patient, admission, ICU stay or code: drawn from the plan in one go."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import vocabulary as V
from .cohort import DAY, Plan
from .tablekit import NAT, choice_text, table


def _service_weights(rows: list[dict[str, float]]) -> np.ndarray:
    return np.array([[row.get(code, 0.0) for code in V.SERVICES] for row in rows])


SURGICAL_WEIGHTS = _service_weights(V.SERVICE_WEIGHTS_SURGICAL)
MEDICAL_WEIGHTS = _service_weights(V.SERVICE_WEIGHTS_MEDICAL)
SURGICAL_INDEX = np.array([V.SERVICES.index(code) for code in V.SURGICAL_SERVICES])


def patients(plan: Plan) -> pa.Table:
    p = plan.patients
    n = p["subject_id"].size
    cols = {
        "subject_id": p["subject_id"],
        "gender": p["gender"].astype(object),
        "anchor_age": p["anchor_age"],
        "anchor_year": p["anchor_year"],
        "anchor_year_group": np.array(V.ANCHOR_YEAR_GROUPS, dtype=object)[p["anchor_year_group"]],
        "dod": p["dod"],  # in hospital, or after the last discharge (cohort._after_discharge)
    }
    return table("hosp/patients", cols, n)


def admissions(plan: Plan, rng: np.random.Generator) -> pa.Table:
    s, pr = plan.stays, plan.prior_admissions
    n_s, n_p = s["hadm_id"].size, pr["hadm_id"].size
    n = n_s + n_p
    admit = np.concatenate([s["admittime"], pr["admittime"]])
    disch = np.concatenate([s["dischtime"], pr["dischtime"]])
    died = np.concatenate([s["died"], np.zeros(n_p, bool)])
    hospice = np.concatenate([s["hospice"], np.zeros(n_p, bool)])
    alive_to = [x for x in V.DISCHARGE_LOCATIONS_ALIVE if x != V.HOSPICE]
    adm_type = np.concatenate(
        [
            np.array(V.ADMISSION_TYPES_ICU, dtype=object)[s["admission_type"]],
            choice_text(rng, ("EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT"), n_p),
        ]
    )
    emergency = np.isin(adm_type, ["EW EMER.", "DIRECT EMER."])
    ed_in = np.where(emergency, admit - rng.integers(1, 8, n) * 3600, NAT)
    order = np.lexsort((admit, np.concatenate([s["subject_id"], pr["subject_id"]])))
    cols = {
        "subject_id": np.concatenate([s["subject_id"], pr["subject_id"]]),
        "hadm_id": np.concatenate([s["hadm_id"], pr["hadm_id"]]),
        "admittime": admit,
        "dischtime": disch,
        "deathtime": np.where(died, disch, NAT),
        "admission_type": adm_type,
        "admit_provider_id": np.array([f"P{x:05X}" for x in rng.integers(0, 16**5, n)], dtype=object),
        "admission_location": np.where(emergency, "EMERGENCY ROOM", choice_text(rng, V.ADMISSION_LOCATIONS[1:], n)),
        "discharge_location": np.select([died, hospice], ["DIED", V.HOSPICE], choice_text(rng, alive_to, n)),
        "insurance": choice_text(rng, V.INSURANCES, n),
        "language": choice_text(rng, V.LANGUAGES, n),
        "marital_status": np.where(rng.random(n) < 0.05, None, choice_text(rng, V.MARITAL[:-1], n)),
        "race": choice_text(rng, V.RACES, n),
        "edregtime": ed_in,
        "edouttime": np.where(emergency, admit + rng.integers(0, 60, n) * 60, NAT),
        "hospital_expire_flag": died.astype(np.int64),
    }
    cols = {k: (v[order] if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
    return table("hosp/admissions", cols, n)


def services(plan: Plan, admissions: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The clinical service an admission is under, from its admittime, and any later change of service.

    Elective and same-day surgical admissions are mostly under a surgical service, emergencies mostly
    under a medical one; which one follows the ICU unit (CVICU: CSURG or CMED, Neuro SICU: NSURG or
    NMED, ...). About one admission in seven changes service once or twice during the admission.
    """
    s = plan.stays
    hadm = admissions["hadm_id"].to_numpy()
    subject = admissions["subject_id"].to_numpy()
    admit = admissions["admittime"].cast("int64").to_numpy()
    disch = admissions["dischtime"].cast("int64").to_numpy()
    adm_type = admissions["admission_type"].to_numpy(zero_copy_only=False)
    n = hadm.size
    # Which weights: the ICU stay's unit, or the last row (no ICU stay) for earlier admissions.
    by_hadm = dict(zip(s["hadm_id"].tolist(), s["careunit"].tolist()))
    unit = np.array([by_hadm.get(h, len(V.CAREUNITS)) for h in hadm.tolist()])
    p_surgical = np.array([V.SURGICAL_SHARE_BY_ADMISSION_TYPE[a] for a in adm_type])
    surgical = rng.random(n) < p_surgical
    first = _pick(rng, np.where(surgical[:, None], SURGICAL_WEIGHTS[unit], MEDICAL_WEIGHTS[unit]))
    # Later changes of service: to the other kind of service more often than not, never to the same one.
    changes = rng.choice([0, 1, 2], size=n, p=[0.86, 0.11, 0.03])
    rows = np.repeat(np.arange(n), changes + 1)
    k = np.arange(rows.size) - np.repeat(np.cumsum(changes + 1) - (changes + 1), changes + 1)
    service = np.full(rows.size, -1)
    service[k == 0] = first
    frac = np.where(k == 0, 0.0, rng.uniform(0.05, 0.95, rows.size))
    for step in (1, 2):
        at = np.flatnonzero(k == step)
        prev = service[at - 1]
        was_surgical = np.isin(prev, SURGICAL_INDEX)
        to_surgical = np.where(rng.random(at.size) < 0.6, ~was_surgical, was_surgical)
        generic = np.full(at.size, len(V.CAREUNITS))
        weights = np.where(to_surgical[:, None], SURGICAL_WEIGHTS[generic], MEDICAL_WEIGHTS[generic])
        weights[np.arange(at.size), prev] = 0.0
        service[at] = _pick(rng, weights)
        # Later changes come later in the admission.
        frac[at] = np.maximum(frac[at], frac[at - 1] + 0.01)
    length = disch[rows] - admit[rows]
    when = admit[rows] + (np.minimum(frac, 0.99) * length).astype(np.int64)
    names = np.array(V.SERVICES, dtype=object)
    prev_service = np.where(k == 0, None, names[np.roll(service, 1)])
    order = np.lexsort((when, subject[rows]))
    cols = {
        "subject_id": subject[rows][order],
        "hadm_id": hadm[rows][order],
        "transfertime": when[order],
        "prev_service": prev_service[order],
        "curr_service": names[service][order],
    }
    return table("hosp/services", cols, rows.size)


def _pick(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One index per row of `weights` (rows need not sum to one)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cum[:, -1]
    return np.minimum((cum <= u[:, None]).sum(axis=1), weights.shape[1] - 1)


def icustays(plan: Plan) -> pa.Table:
    s = plan.stays
    unit = np.array(V.CAREUNITS, dtype=object)[s["careunit"]]
    cols = {
        "subject_id": s["subject_id"],
        "hadm_id": s["hadm_id"],
        "stay_id": s["stay_id"],
        "first_careunit": unit,
        "last_careunit": unit,
        "intime": s["intime"],
        "outtime": s["outtime"],
        "los": (s["outtime"] - s["intime"]) / DAY,
    }
    return table("icu/icustays", cols, s["stay_id"].size)


def diagnoses(plan: Plan, rng: np.random.Generator) -> tuple[pa.Table, set[str]]:
    """Codes per admission: comorbidities everywhere, sepsis and death codes in the admission they happen."""
    p, s, pr = plan.patients, plan.stays, plan.prior_admissions
    charlson = [(c, t) for c, t, _ in V.CHARLSON_CODES]
    rows_subj, rows_hadm, rows_code = [], [], []

    def add(subject, hadm, codes):
        rows_subj.extend([subject] * len(codes))
        rows_hadm.extend([hadm] * len(codes))
        rows_code.extend(codes)

    for i in range(pr["hadm_id"].size):
        pat = pr["patient"][i]
        codes = [charlson[j][0] for j in np.flatnonzero(p["comorb"][pat])]
        codes += [V.OTHER_DIAGNOSES[j][0] for j in rng.choice(6, size=int(rng.integers(1, 4)), replace=False)]
        add(pr["subject_id"][i], pr["hadm_id"][i], codes)
    for i in range(s["hadm_id"].size):
        pat = s["patient"][i]
        codes = []
        if s["infected"][i]:
            codes += [
                V.SEPSIS_DIAGNOSES[0][0],
                V.SEPSIS_DIAGNOSES[2 if s["peak"][i] > 2 else 1][0],
                V.SEPSIS_DIAGNOSES[3 + int(rng.integers(0, 2))][0],
            ]
        if s["died"][i]:
            codes += [c for c, _ in V.DEATH_DIAGNOSES if rng.random() < 0.6]
        codes += [charlson[j][0] for j in np.flatnonzero(p["comorb"][pat])]
        codes += [
            V.OTHER_DIAGNOSES[j][0]
            for j in rng.choice(len(V.OTHER_DIAGNOSES), size=int(rng.integers(2, 6)), replace=False)
        ]
        add(s["subject_id"][i], s["hadm_id"][i], codes)
    subj, hadm = np.array(rows_subj), np.array(rows_hadm)
    starts = np.r_[0, np.flatnonzero(hadm[1:] != hadm[:-1]) + 1]
    seq = np.arange(hadm.size) - np.repeat(starts, np.diff(np.r_[starts, hadm.size])) + 1
    cols = {
        "subject_id": subj,
        "hadm_id": hadm,
        "seq_num": seq,
        "icd_code": np.array(rows_code, dtype=object),
        "icd_version": np.full(hadm.size, 10),
    }
    return table("hosp/diagnoses_icd", cols, hadm.size), set(rows_code)


def d_icd_diagnoses(codes: set[str]) -> pa.Table:
    titles = {c: t for c, t, _ in V.CHARLSON_CODES}
    for group in (V.OTHER_DIAGNOSES, V.SEPSIS_DIAGNOSES, V.DEATH_DIAGNOSES):
        titles.update(dict(group))
    used = sorted(codes)
    cols = {
        "icd_code": np.array(used, dtype=object),
        "icd_version": np.full(len(used), 10),
        "long_title": np.array([titles[c] for c in used], dtype=object),
    }
    return table("hosp/d_icd_diagnoses", cols, len(used))


def omr(plan: Plan, rng: np.random.Generator) -> pa.Table:
    """Outpatient measurements before the first stay: height in inches, weight in pounds, BMI, blood pressure."""
    p, s = plan.patients, plan.stays
    first = np.full(p["subject_id"].size, s["patient"].size)
    np.minimum.at(first, s["patient"], np.arange(s["patient"].size))
    visits = rng.poisson(1.5, p["subject_id"].size)
    pat = np.repeat(np.arange(visits.size), visits)
    stay = first[pat]
    date = (s["admittime"][stay] - rng.uniform(10, 700, pat.size) * DAY) // DAY * DAY
    weight_lb = s["weight_kg"][stay] * 2.2046 * rng.normal(1, 0.03, pat.size)
    height_in = s["height_cm"][stay] / 2.54
    bmi = s["weight_kg"][stay] / (s["height_cm"][stay] / 100) ** 2
    sbp, dbp = rng.normal(128, 15, pat.size), rng.normal(76, 9, pat.size)
    names = ["Weight (Lbs)", "Height (Inches)", "BMI (kg/m2)", "Blood Pressure"]
    values = [
        np.char.mod("%.1f", weight_lb),
        np.char.mod("%.0f", height_in),
        np.char.mod("%.1f", bmi),
        np.char.add(np.char.add(np.char.mod("%.0f", sbp), "/"), np.char.mod("%.0f", dbp)),
    ]
    subj = np.tile(p["subject_id"][pat], 4)
    cols = {
        "subject_id": subj,
        "chartdate": np.tile(date, 4),
        "seq_num": np.ones(subj.size, dtype=np.int64),
        "result_name": np.repeat(np.array(names, dtype=object), pat.size),
        "result_value": np.concatenate(values).astype(object),
    }
    order = np.lexsort((cols["chartdate"], subj))
    cols = {k: v[order] for k, v in cols.items()}
    return table("hosp/omr", cols, subj.size)


def d_labitems() -> pa.Table:
    items = sorted(V.LAB_ITEMS.values(), key=lambda i: i.itemid)
    cols = {
        "itemid": np.array([i.itemid for i in items]),
        "label": np.array([i.label for i in items], dtype=object),
        "fluid": np.array([i.fluid for i in items], dtype=object),
        "category": np.array([i.category for i in items], dtype=object),
    }
    return table("hosp/d_labitems", cols, len(items))


def d_items() -> pa.Table:
    rows = [
        (c.itemid, c.label, c.abbreviation, c.linksto, c.category, c.unit or None, c.param_type)
        for c in V.CHART_ITEMS.values()
    ]
    rows += [
        (c.itemid, c.label, c.abbreviation, c.linksto, c.category, None, c.param_type) for c, _ in V.ROUTINE_TEXT_ITEMS
    ]
    rows.append((V.O2_FLOW[0], V.O2_FLOW[1], V.O2_FLOW[2], "chartevents", V.O2_FLOW[3], V.O2_FLOW[4], "Numeric"))
    for itemid, label, unit in V.VASOPRESSORS.values():
        rows.append((itemid, label, label, "inputevents", "Medications", unit.split("/")[0], "Solution"))
    rows.append(
        (V.SALINE_BOLUS[0], V.SALINE_BOLUS[1], V.SALINE_BOLUS[1], "inputevents", "Fluids/Intake", "mL", "Solution")
    )
    for itemid, label in (V.URINE_FOLEY, V.URINE_VOID, V.GU_IRRIGANT_IN, V.GU_IRRIGANT_OUT):
        rows.append((itemid, label, label, "outputevents", "Output", "mL", "Numeric"))
    rows.sort()
    cols = {
        name: np.array([r[i] for r in rows], dtype=object if i else np.int64)
        for i, name in enumerate(("itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type"))
    }
    return table("icu/d_items", cols, len(rows))
