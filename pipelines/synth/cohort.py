"""First pass of the generator: patients, admissions, ICU stays, their latent course and outcome.

Everything here is one number per patient, admission or stay, drawn for the whole data set in one go,
so that a patient's later stays exist only if the patient survived the earlier ones and `--stays N`
gives exactly N stays. The second pass (events.py) draws the hourly detail per chunk of stays.

Times are seconds since the epoch (MIMIC-IV's shifted years, 2110-2210); durations are hours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import vocabulary as V
from .site import SITE_A, Site
from .tablekit import NAT

HOUR = 3600
DAY = 86400
# Logit weights of in-hospital death. Each group is signal that one modality carries and the others lack:
# static baseline (age, comorbidity burden, admission type), the course of labs and vitals (peak severity
# and whether it recovers), and a finding that only the radiology report text states.
DEATH_INTERCEPT = -2.9
DEATH_WEIGHTS = {
    "age": 0.45,
    "charlson": 0.2,
    "emergency": 0.3,
    "severity": 1.35,
    "recovery": -30.0,
    "note_finding": 2.0,
}
NOTE_FINDING_RATE = 0.18
INFECTION_RATE = 0.42
# After the patient's last discharge alive (MIMIC-IV's dod comes from state death records up to a year
# after the last discharge): a discharge to hospice, whose chance rises steeply with the stay's p_death,
# ends in death within days to weeks for most; every other survivor dies within the year with a chance
# that rises with p_death, front-loaded (about a fifth of those deaths within 28 days).
HOSPICE_BASE, HOSPICE_SLOPE, HOSPICE_POWER = 0.008, 0.6, 1.5
HOSPICE_DEATH_RATE = 0.9
HOSPICE_DEATH_MEDIAN_DAYS, HOSPICE_DEATH_SIGMA = 9.0, 0.9
DEATH_1Y_BASE, DEATH_1Y_SLOPE = 0.07, 0.7
DEATH_1Y_MEAN_DAYS = 120.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Plan:
    """The whole data set, one array per attribute."""

    patients: dict[str, np.ndarray]
    stays: dict[str, np.ndarray]  # one row per ICU stay (= one admission with an ICU stay)
    prior_admissions: dict[str, np.ndarray]  # earlier admissions without an ICU stay
    now: int | None = None  # the data's present (seconds), with the live ward in the ICU; None: all in the past


def plan(n_stays: int, seed: int, live_share: float = 0.0, site: Site = SITE_A) -> Plan:
    rng = np.random.default_rng([seed, 0])
    n_pat = n_stays  # an upper bound: every patient has at least one stay
    planned = rng.choice([1, 2, 3], size=n_pat, p=[0.82, 0.14, 0.04])

    gender = np.where(rng.random(n_pat) < site.female_share, "F", "M")
    age_first = np.clip(np.round(rng.normal(site.age_mean, site.age_sd, n_pat)), 18, 91).astype(np.int64)
    anchor_year = rng.integers(2110, 2200, n_pat)
    # Comorbidities: each Charlson code with an age-dependent chance; known to the outcome model
    # whether or not an earlier admission recorded it.
    age_factor = np.clip((age_first - 18) / 50, 0.2, 1.6)
    n_codes = len(V.CHARLSON_CODES)
    base_rate = (
        np.array([0.06, 0.1, 0.05, 0.04, 0.03, 0.1, 0.02, 0.02, 0.03, 0.16, 0.06, 0.01, 0.07, 0.03, 0.01, 0.025, 0.005])
        * site.comorbidity_scale
    )
    comorb = rng.random((n_pat, n_codes)) < np.clip(base_rate[None, :] * age_factor[:, None], 0, 0.5)
    weights = np.array([w for _, _, w in V.CHARLSON_CODES])
    charlson = (comorb * weights[None, :]).sum(axis=1)
    n_prior = rng.poisson(1.3, n_pat)

    # Stays: draw every planned stay, then keep a patient's stays up to the first death.
    pat_of = np.repeat(np.arange(n_pat), planned)
    k_of = np.arange(pat_of.size) - np.repeat(np.cumsum(planned) - planned, planned)
    n = pat_of.size
    s = _draw_stay_latents(rng, n, age_first[pat_of], charlson[pat_of], comorb[pat_of], site)
    s["patient"] = pat_of
    s["stay_number"] = k_of
    died_before = np.zeros(n, dtype=bool)
    # A patient's stays are consecutive rows: a death in row i removes that patient's later rows.
    death_rank = np.where(s["died"], k_of, 99)
    first_death = np.full(n_pat, 99)
    np.minimum.at(first_death, pat_of, death_rank)
    died_before = k_of > first_death[pat_of]
    keep = ~died_before
    keep &= np.cumsum(keep) <= n_stays
    s = {k: v[keep] for k, v in s.items()}
    if s["patient"].size < n_stays:  # cannot happen: n_pat >= n_stays and every patient has a stay
        raise RuntimeError("stay plan came out short")

    used = np.unique(s["patient"])
    remap = np.full(n_pat, -1)
    remap[used] = np.arange(used.size)
    s["patient"] = remap[s["patient"]]
    patients = {
        "gender": gender[used],
        "age_first": age_first[used],
        "anchor_year": anchor_year[used],
        "comorb": comorb[used],
        "charlson": charlson[used],
        "n_prior": n_prior[used],
    }
    s["female"] = patients["gender"][s["patient"]] == "F"
    s["wobble_phase"] = rng.uniform(0, 2 * np.pi, (s["patient"].size, 3))
    s["live"] = np.zeros(s["patient"].size, dtype=bool)
    _place_in_time(rng, patients, s)
    now = _place_live_ward(np.random.default_rng([seed, 0, 2]), patients, s, live_share) if live_share > 0 else None
    prior = _prior_admissions(rng, patients, s)
    _assign_ids(rng, patients, s, prior)
    _after_discharge(np.random.default_rng([seed, 0, 1]), patients, s)
    return Plan(patients=patients, stays=s, prior_admissions=prior, now=now)


def _draw_stay_latents(
    rng: np.random.Generator, n: int, age: np.ndarray, charlson: np.ndarray, comorb: np.ndarray, site: Site = SITE_A
) -> dict[str, np.ndarray]:
    s: dict[str, np.ndarray] = {}
    s["age"] = age
    s["admission_type"] = rng.choice(len(V.ADMISSION_TYPES_ICU), size=n, p=site.admission_type_weights)
    emergency = np.isin(s["admission_type"], [0, 3])
    s["infected"] = rng.random(n) < INFECTION_RATE
    s["baseline_illness"] = rng.gamma(2.0, 0.25, n)
    s["peak"] = np.where(s["infected"], rng.gamma(4.0, 0.3, n), 0.0)
    s["recovery"] = rng.normal(0.035, 0.022, n)  # per hour; below zero the course worsens
    s["infection_hour"] = np.where(s["infected"], rng.uniform(-12, 36, n), np.nan)
    s["note_finding"] = rng.random(n) < NOTE_FINDING_RATE
    # Organ involvement: how much of the overall severity each organ shows (respiration, coagulation,
    # liver, cardiovascular, cns, renal), and chronic organ disease from comorbidities.
    s["organ_weight"] = rng.lognormal(-0.35, 0.6, (n, 6))
    codes = [c for c, _, _ in V.CHARLSON_CODES]
    chronic = np.zeros((n, 6))
    chronic[:, 0] = 0.6 * comorb[:, codes.index("J449")]
    chronic[:, 2] = 1.2 * (comorb[:, codes.index("K7030")] | comorb[:, codes.index("K7211")])
    chronic[:, 5] = 1.1 * (comorb[:, codes.index("N184")] | comorb[:, codes.index("E1122")])
    chronic[:, 1] = 0.5 * comorb[:, codes.index("K7030")]
    s["organ_chronic"] = chronic
    s["weight_kg"] = np.clip(rng.normal(80, 18, n), 40, 200).round(1)
    s["height_cm"] = np.clip(rng.normal(170, 10, n), 140, 205).round(0)
    s["arterial_line"] = rng.random(n) < np.where(s["infected"], 0.65, 0.4)
    s["careunit"] = rng.integers(0, len(V.CAREUNITS), n)

    # The course's severity one day after infection; it is what labs and vitals show around onset.
    # The site's shift moves every stay's log-odds alike (site a: 0).
    effective = s["baseline_illness"] * 0.8 + s["peak"]
    logit = (
        DEATH_INTERCEPT
        + site.death_logit_shift
        + DEATH_WEIGHTS["age"] * (s["age"] - 65) / 15
        + DEATH_WEIGHTS["charlson"] * charlson
        + DEATH_WEIGHTS["emergency"] * emergency
        + DEATH_WEIGHTS["severity"] * (effective - 1.3)
        + DEATH_WEIGHTS["recovery"] * (s["recovery"] - 0.035) * np.where(s["infected"], 1.0, 0.3)
        + DEATH_WEIGHTS["note_finding"] * s["note_finding"]
    )
    s["p_death"] = sigmoid(logit)
    s["logit_static"] = (
        DEATH_WEIGHTS["age"] * (s["age"] - 65) / 15
        + DEATH_WEIGHTS["charlson"] * charlson
        + DEATH_WEIGHTS["emergency"] * emergency
    )
    s["logit_course"] = DEATH_WEIGHTS["severity"] * (effective - 1.3) + DEATH_WEIGHTS["recovery"] * (
        s["recovery"] - 0.035
    ) * np.where(s["infected"], 1.0, 0.3)
    s["logit_note"] = DEATH_WEIGHTS["note_finding"] * s["note_finding"].astype(float)
    s["died"] = rng.random(n) < s["p_death"]
    return s


def _place_in_time(rng: np.random.Generator, patients: dict, s: dict) -> None:
    n = s["patient"].size
    inf_h = np.nan_to_num(s["infection_hour"], nan=0.0)
    start_of_course = np.maximum(inf_h, 0.0)
    # ICU length of stay (hours) for survivors; deaths happen at least two days after infection, so
    # that they fall after the prediction time (onset + 24 h).
    los_alive = np.where(
        s["infected"], start_of_course + 20 + rng.lognormal(np.log(40), 0.7, n), 6 + rng.lognormal(np.log(36), 0.8, n)
    )
    death_h = np.where(s["infected"], start_of_course + 50 + rng.exponential(60, n), 30 + rng.exponential(80, n))
    in_icu_death = rng.random(n) < 0.7
    los = np.where(
        s["died"], np.where(in_icu_death, death_h, np.maximum(death_h - rng.uniform(24, 120, n), 10)), los_alive
    )
    s["los_h"] = los
    s["death_h"] = np.where(s["died"], death_h, np.nan)

    pre_h = np.select(
        [s["admission_type"] == 0, rng.random(n) < 0.5],
        [rng.uniform(2, 10, n), rng.uniform(0.5, 3, n)],
        6 + rng.exponential(40, n),
    )
    post_h = 12 + rng.exponential(80, n)
    hosp_end_h = np.where(s["died"], death_h, los + post_h)
    s["pre_icu_h"] = pre_h
    s["hosp_end_h"] = hosp_end_h

    # Calendar: a patient's first stay within three years of the anchor year, later ones months apart.
    year_start = (patients["anchor_year"] - 1970) * 365.2425 * DAY
    first = year_start + rng.uniform(0, 3 * 365, patients["anchor_year"].size) * DAY
    intime = np.zeros(n)
    prev_end = np.zeros(n)
    for k in range(int(s["stay_number"].max()) + 1):
        rows = np.flatnonzero(s["stay_number"] == k)
        if k == 0:
            intime[rows] = first[s["patient"][rows]] + s["pre_icu_h"][rows] * HOUR
        else:
            gap = rng.uniform(20, 500, rows.size) * DAY
            intime[rows] = prev_end[rows - 1] + gap + s["pre_icu_h"][rows] * HOUR
        prev_end[rows] = intime[rows] + s["hosp_end_h"][rows] * HOUR
    s["intime"] = (intime // 60 * 60).astype(np.int64) + rng.integers(0, 59, n)
    s["admittime"] = ((s["intime"] - s["pre_icu_h"] * HOUR) // 60 * 60).astype(np.int64)
    s["outtime"] = (s["intime"] + s["los_h"] * HOUR).astype(np.int64)
    s["dischtime"] = ((s["intime"] + s["hosp_end_h"] * HOUR) // 60 * 60).astype(np.int64)
    s["deathtime"] = np.where(s["died"], s["dischtime"], -1)
    # In MIMIC-IV an ICU death leaves the ICU at the time of death, not after it.
    s["outtime"] = np.minimum(s["outtime"], s["dischtime"])
    s["los_h"] = (s["outtime"] - s["intime"]) / HOUR
    first_intime = np.full(patients["anchor_year"].size, np.iinfo(np.int64).max)
    np.minimum.at(first_intime, s["patient"], s["intime"])
    patients["first_intime"] = first_intime


def _place_live_ward(rng: np.random.Generator, patients: dict, s: dict, share: float) -> int:
    """Choose the present ("now") and the live ward: about `share` of the patients, each moved in time
    (every stay and the anchor year together) so that now falls inside the ICU stay of their last admission,
    at a uniform point of it. Every other patient's stays, and a year of follow-up after them, lie before
    now. Returns now (seconds, on the hour)."""
    n_pat = patients["anchor_year"].size
    live = np.flatnonzero(rng.random(n_pat) < share)
    last = np.full(n_pat, -1)
    np.maximum.at(last, s["patient"], np.arange(s["patient"].size))
    is_live = np.isin(s["patient"], live)
    # a year after the last discharge: dod (state death records) is known up to then
    now = int((s["dischtime"][~is_live].max() + 366 * DAY) // HOUR * HOUR + HOUR)
    rows = last[live]
    at = s["intime"][rows] + rng.uniform(0.02, 0.98, rows.size) * (s["outtime"][rows] - s["intime"][rows])
    offset = ((now - at) // 60 * 60).astype(np.int64)
    shift = np.zeros(n_pat, dtype=np.int64)
    shift[live] = offset
    for key in ("intime", "admittime", "outtime", "dischtime"):
        s[key] = s[key] + shift[s["patient"]]
    s["deathtime"] = np.where(s["deathtime"] >= 0, s["deathtime"] + shift[s["patient"]], -1)
    patients["first_intime"] = patients["first_intime"] + shift
    patients["anchor_year"] = patients["anchor_year"] + np.round(shift / (365.2425 * DAY)).astype(np.int64)
    s["live"] = np.zeros(s["patient"].size, dtype=bool)
    s["live"][rows] = True
    return now


def _prior_admissions(rng: np.random.Generator, patients: dict, s: dict) -> dict[str, np.ndarray]:
    """Earlier admissions without an ICU stay: they carry the comorbidity codes a baseline may read."""
    n_prior = patients["n_prior"]
    pat = np.repeat(np.arange(n_prior.size), n_prior)
    days_before = rng.uniform(20, 1500, pat.size)
    admit = patients["first_intime"][pat] - (days_before * DAY).astype(np.int64)
    admit = admit // 60 * 60
    length = (rng.uniform(1, 8, pat.size) * DAY).astype(np.int64) // 60 * 60
    return {"patient": pat, "admittime": admit, "dischtime": admit + length}


def _assign_ids(rng: np.random.Generator, patients: dict, s: dict, prior: dict) -> None:
    n_pat = patients["anchor_year"].size
    patients["subject_id"] = 10_000_000 + np.sort(rng.choice(9_000_000, n_pat, replace=False))
    n_hadm = s["patient"].size + prior["patient"].size
    hadm = 20_000_000 + rng.choice(9_999_999, n_hadm, replace=False)
    s["hadm_id"] = hadm[: s["patient"].size]
    prior["hadm_id"] = hadm[s["patient"].size :]
    s["stay_id"] = 30_000_000 + rng.choice(9_999_999, s["patient"].size, replace=False)
    s["subject_id"] = patients["subject_id"][s["patient"]]
    prior["subject_id"] = patients["subject_id"][prior["patient"]]
    # Age is fixed at the anchor year: anchor_age = age at the first stay minus the years since anchor.
    years_since = (patients["first_intime"] / (365.2425 * DAY) + 1970).astype(int) - patients["anchor_year"]
    patients["anchor_age"] = np.clip(patients["age_first"] - years_since, 18, 91)
    patients["anchor_year_group"] = rng.integers(0, len(V.ANCHOR_YEAR_GROUPS), n_pat)


def _after_discharge(rng: np.random.Generator, patients: dict, s: dict) -> None:
    """Hospice discharges and death dates (dod: midnight of the day in seconds, NAT for none).

    Only a patient's last stay can end in a hospice discharge or a death after discharge, so a dod never
    precedes a later admission; earlier (non-ICU) admissions all lie before the first stay.
    """
    n_pat, n = patients["anchor_year"].size, s["patient"].size
    last = np.full(n_pat, -1)
    np.maximum.at(last, s["patient"], np.arange(n))
    is_last = np.zeros(n, dtype=bool)
    is_last[last] = True
    alive = is_last & ~s["died"]
    p = s["p_death"]
    hospice = alive & (rng.random(n) < HOSPICE_BASE + HOSPICE_SLOPE * p**HOSPICE_POWER)
    hospice_dies = hospice & (rng.random(n) < HOSPICE_DEATH_RATE)
    hospice_days = rng.lognormal(np.log(HOSPICE_DEATH_MEDIAN_DAYS), HOSPICE_DEATH_SIGMA, n)
    # Hospice patients who outlive the usual weeks fall back on the general (risk-driven) chance below.
    later = alive & ~hospice_dies & (rng.random(n) < np.minimum(DEATH_1Y_BASE + DEATH_1Y_SLOPE * p, 0.8))
    u = rng.random(n)
    # Exponential with mean DEATH_1Y_MEAN_DAYS truncated to [1, 365] days, by inversion.
    span = 1 - np.exp(-364 / DEATH_1Y_MEAN_DAYS)
    later_days = 1 - DEATH_1Y_MEAN_DAYS * np.log(1 - u * span)
    days = np.select([hospice_dies, later], [np.clip(hospice_days, 0.1, 365), later_days], np.nan)
    death_at = np.where(s["died"], s["dischtime"], s["dischtime"] + np.nan_to_num(days) * DAY)
    dod = np.where(s["died"] | hospice_dies | later, death_at.astype(np.int64) // DAY * DAY, NAT)
    s["hospice"] = hospice
    patients["dod"] = dod[last]
    s["dod"] = patients["dod"][s["patient"]]
