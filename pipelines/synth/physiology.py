"""The latent course of a stay and the lab and vital values it produces at any hour.

A stay's overall severity over time (hours since ICU admission) comes from a baseline illness, an
infection that peaks about half a day after it starts and then recovers at the stay's own rate (or
worsens, when that rate is negative), a slow wobble, and a rise in the last day before death. Each organ
shows its own share of that severity plus any chronic disease; labs and vitals are smooth functions of
the organ severities with measurement noise. SOFA's thresholds therefore fire where a clinician would
expect them to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cohort import sigmoid

RESP, COAG, LIVER, CV, CNS, RENAL = range(6)
WOBBLE_PERIODS = np.array([7.0, 19.0, 41.0])


@dataclass
class State:
    """Latent state at a set of (stay, hour) points; arrays are aligned with the points."""

    stay: np.ndarray
    hour: np.ndarray
    severity: np.ndarray
    organ: np.ndarray  # (points, 6)
    ventilated: np.ndarray
    vasopressor: np.ndarray  # norepinephrine-equivalent dose, mcg/kg/min (0 when none)
    infected_now: np.ndarray


def severity(stays: dict[str, np.ndarray], idx: np.ndarray, hour: np.ndarray) -> np.ndarray:
    infected = stays["infected"][idx]
    base = stays["baseline_illness"][idx] * (0.6 + 0.4 * np.exp(-np.maximum(hour, 0) / 48))
    since = hour - np.nan_to_num(stays["infection_hour"][idx], nan=0.0)
    rate = stays["recovery"][idx]
    decay = np.exp(np.clip(-rate * np.maximum(since - 12, 0), -50, 1.2))
    infection = np.where(infected, stays["peak"][idx] * sigmoid((since + 4) / 3) * decay, 0.0)
    phase = stays["wobble_phase"][idx]
    wobble = 0.12 * np.sin(2 * np.pi * hour[:, None] / WOBBLE_PERIODS[None, :] + phase).sum(axis=1)
    to_death = hour - (stays["death_h"][idx] - 24)
    dying = np.where(np.isfinite(to_death) & (to_death > 0), 2.0 * np.minimum(np.nan_to_num(to_death), 24) / 24, 0.0)
    return np.clip(base + infection + wobble + dying, 0.0, 5.0)


def state(stays: dict[str, np.ndarray], idx: np.ndarray, hour: np.ndarray) -> State:
    sev = severity(stays, idx, hour)
    organ = sev[:, None] * stays["organ_weight"][idx] + stays["organ_chronic"][idx]
    ventilated = organ[:, RESP] > 1.45
    vaso = np.where(organ[:, CV] > 1.7, 0.05 + 0.12 * np.maximum(organ[:, CV] - 1.7, 0) ** 1.3, 0.0)
    since = hour - np.nan_to_num(stays["infection_hour"][idx], nan=1e9)
    return State(
        stay=idx,
        hour=hour,
        severity=sev,
        organ=organ,
        ventilated=ventilated,
        vasopressor=vaso,
        infected_now=stays["infected"][idx] & (since > -6),
    )


def constant(value: float, like: np.ndarray) -> np.ndarray:
    return np.full(like.shape, float(value))


def noisy(rng: np.random.Generator, x: np.ndarray, rel: float = 0.0, abs_: float = 0.0) -> np.ndarray:
    return x * (1 + rel * rng.standard_normal(x.size)) + abs_ * rng.standard_normal(x.size)


def lab_values(
    rng: np.random.Generator, st: State, stays: dict[str, np.ndarray], names: list[str]
) -> dict[str, np.ndarray]:
    """Values of the named lab items at the state's points (hosp.labevents units)."""
    o = st.organ
    sev = st.severity
    female = stays["female"][st.stay]
    ckd = stays["organ_chronic"][st.stay][:, RENAL] > 0
    out: dict[str, np.ndarray] = {}
    lactate = noisy(rng, 1.0 * np.exp(0.42 * sev), rel=0.12)
    bicarb = noisy(rng, 25.5 - 2.0 * (lactate - 1.0) - 0.9 * o[:, RENAL], abs_=1.2)
    sodium = noisy(rng, 139 + 0.8 * o[:, RENAL], abs_=2.5)
    chloride = noisy(rng, 104 + 0.5 * o[:, RENAL], abs_=2.5)
    creat0 = np.where(female, 0.75, 0.95) * np.where(ckd, 2.2, 1.0)
    hgb = noisy(rng, np.where(female, 11.2, 12.3) - 0.45 * sev, abs_=0.6)
    inr = noisy(rng, 1.05 * np.exp(0.22 * o[:, COAG]), rel=0.05)
    wbc = noisy(rng, 8.0 * np.exp(0.35 * sev * st.infected_now + 0.05 * sev), rel=0.12)
    neut = np.clip(noisy(rng, 64 + 9 * sev * st.infected_now, abs_=5), 30, 96)
    values = {
        "lactate": lambda: lactate,
        "bicarbonate": lambda: bicarb,
        "sodium": lambda: sodium,
        "chloride": lambda: chloride,
        "aniongap": lambda: sodium - chloride - bicarb,
        "creatinine": lambda: noisy(rng, creat0 * np.exp(0.6 * o[:, RENAL]), rel=0.06),
        "bun": lambda: noisy(rng, 15 * np.where(ckd, 2.0, 1.0) * np.exp(0.55 * o[:, RENAL]), rel=0.08),
        "potassium": lambda: noisy(rng, 4.0 + 0.25 * o[:, RENAL], abs_=0.35),
        "glucose": lambda: noisy(rng, 118 + 22 * sev, rel=0.15),
        "magnesium": lambda: noisy(rng, constant(2.0, sev), abs_=0.2),
        "calcium": lambda: noisy(rng, 8.7 - 0.25 * sev, abs_=0.35),
        "phosphate": lambda: noisy(rng, 3.4 + 0.45 * o[:, RENAL], abs_=0.5),
        "wbc": lambda: wbc,
        "platelets": lambda: noisy(rng, 235 * np.exp(-0.6 * o[:, COAG]), rel=0.08),
        "hemoglobin": lambda: hgb,
        "hematocrit": lambda: noisy(rng, 3.0 * hgb, abs_=0.8),
        "rbc": lambda: noisy(rng, hgb / 3.05, abs_=0.08),
        "mcv": lambda: noisy(rng, constant(90, sev), abs_=3),
        "mch": lambda: noisy(rng, constant(30, sev), abs_=1),
        "mchc": lambda: noisy(rng, constant(33, sev), abs_=0.8),
        "rdw": lambda: noisy(rng, 14 + 0.35 * sev, abs_=0.6),
        "inr": lambda: inr,
        "pt": lambda: noisy(rng, 11.6 * inr, rel=0.02),
        "ptt": lambda: noisy(rng, 30 * np.exp(0.18 * o[:, COAG]), rel=0.07),
        "alt": lambda: noisy(rng, 24 * np.exp(0.65 * o[:, LIVER]), rel=0.15),
        "ast": lambda: noisy(rng, 30 * np.exp(0.75 * o[:, LIVER]), rel=0.15),
        "bilirubin": lambda: 0.55 * np.exp(0.75 * o[:, LIVER] + 0.45 * rng.standard_normal(sev.size)),
        "alp": lambda: noisy(rng, 85 * np.exp(0.2 * o[:, LIVER]), rel=0.15),
        "albumin": lambda: noisy(rng, 3.7 - 0.32 * sev, abs_=0.25),
        "ldh": lambda: noisy(rng, 210 * np.exp(0.3 * sev), rel=0.15),
        "neutrophils": lambda: neut,
        "lymphocytes": lambda: np.clip(100 - neut - 9, 1, 60),
        "monocytes": lambda: np.clip(noisy(rng, constant(6, sev), abs_=1.5), 0.5, 20),
        "eosinophils": lambda: np.clip(noisy(rng, constant(1.5, sev), abs_=0.8), 0, 10),
        "basophils": lambda: np.clip(noisy(rng, constant(0.4, sev), abs_=0.2), 0, 3),
        "ph": lambda: noisy(rng, 7.41 - 0.035 * (lactate - 1.0) - 0.02 * o[:, RENAL], abs_=0.025),
        "paco2": lambda: noisy(rng, 39 + 2.5 * o[:, RESP] * st.ventilated, abs_=4),
        "baseexcess": lambda: bicarb - 24.5,
        "totalco2": lambda: bicarb + 1.2,
    }
    fio2 = fio2_percent(st)
    values["fio2_bg"] = lambda: fio2
    values["pao2"] = lambda: pf_ratio(rng, st) * fio2 / 100
    for name in names:
        if name != "specimen":
            out[name] = values[name]()
    return out


def pf_ratio(rng: np.random.Generator, st: State) -> np.ndarray:
    return np.clip(noisy(rng, 440 * np.exp(-0.62 * st.organ[:, RESP]), rel=0.1), 40, 600)


def fio2_percent(st: State) -> np.ndarray:
    resp = st.organ[:, RESP]
    vent = np.clip(40 + 22 * (resp - 1.45), 30, 100)
    supplemental = np.where(resp > 0.7, 28 + 8 * (resp - 0.7), 21)
    return np.round(np.where(st.ventilated, vent, supplemental) / 5) * 5


def mean_arterial_pressure(rng: np.random.Generator, st: State) -> np.ndarray:
    untreated = 87 - 10 * st.organ[:, CV]
    supported = np.where(st.vasopressor > 0, np.maximum(untreated, 63 + 6 * rng.random(untreated.size)), untreated)
    return noisy(rng, supported, abs_=5)


def gcs_components(rng: np.random.Generator, st: State) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    total = np.clip(
        np.round(15 - 2.3 * np.maximum(st.organ[:, CNS] - 0.3, 0) + 0.6 * rng.standard_normal(st.hour.size)), 3, 15
    )
    eye = np.clip(np.round(total * 4 / 15), 1, 4)
    motor = np.clip(np.round(total * 6 / 15), 1, 6)
    verbal = np.clip(total - eye - motor, 1, 5)
    verbal = np.where(st.ventilated, 0, verbal)  # "No Response-ETT"
    return eye, verbal, motor


def urine_ml_per_hour(rng: np.random.Generator, st: State, weight: np.ndarray) -> np.ndarray:
    return np.clip(noisy(rng, 1.0 * weight * np.exp(-0.95 * st.organ[:, RENAL]), rel=0.3), 0, 800)
