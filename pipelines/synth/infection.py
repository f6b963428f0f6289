"""Antibiotic orders (hosp.prescriptions) and cultures (hosp.microbiologyevents) of one chunk."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import vocabulary as V
from .events import Chunk, _id_block
from .tablekit import NAT, table

DAY_S = 86400
# Hours from the draw until a specimen's results are stored (one report time per specimen): a tenth are
# quick (gram stains, rapid antigen and PCR tests), the rest a lognormal with a long tail (final
# identification and susceptibilities). Pooled, as in MIMIC-IV's demo per specimen: 10% within 5 h,
# 25% within 24 h, median ~52 h, upper quartile ~105 h, ~13% after a week; capped at 60 days.
CULTURE_FAST_SHARE, CULTURE_FAST_HOURS = 0.095, (0.5, 5.0)
CULTURE_MEDIAN_HOURS, CULTURE_SIGMA, CULTURE_MAX_HOURS = 58.6, 1.0, 60 * 24.0


def infection_events(chunk: Chunk, rng: np.random.Generator) -> tuple[dict, dict]:
    """Planned antibiotic orders and culture specimens, in hours since intime, per chunk stay position.

    Infected stays get cultures and empiric antibiotics around the infection (culture first in most,
    antibiotic first in some); an infection that began before the ICU gets a further antibiotic order in
    the ICU. Other stays get prophylactic cefazolin or a screening swab now and then, and some an
    antibiotic eye ointment, which mimic-code's route rules exclude.
    """
    s = chunk.stays
    n = chunk.n
    abx = {"pos": [], "hour": [], "drug": [], "days": []}
    cul = {"pos": [], "hour": [], "specimen": [], "positive": []}
    inf = np.flatnonzero(s["infected"])
    t_inf = s["infection_hour"][inf]
    culture_first = rng.random(inf.size) < 0.7
    t_abx = np.where(culture_first, t_inf + rng.uniform(0.3, 3, inf.size), t_inf)
    t_cul = np.where(culture_first, t_inf - rng.uniform(0, 1.5, inf.size), t_inf + rng.uniform(0.5, 10, inf.size))
    positive = rng.random(inf.size) < 0.4
    for k in range(2):  # two empiric drugs
        drug = rng.integers(0, len(V.ANTIBIOTICS_SEPSIS), inf.size) if k else np.zeros(inf.size, dtype=int)
        drug = np.where(k == 1, np.maximum(drug, 1), drug)
        abx["pos"].append(inf)
        abx["hour"].append(t_abx + 0.2 * k)
        abx["drug"].append(drug)
        abx["days"].append(rng.uniform(2, 8, inf.size))
    before_icu = t_abx < 0
    later = inf[before_icu]
    abx["pos"].append(later)
    abx["hour"].append(rng.uniform(1, 8, later.size))
    abx["drug"].append(np.full(later.size, 2))
    abx["days"].append(rng.uniform(3, 7, later.size))
    for k in range(2):  # two blood culture bottles, often a urine or sputum culture too
        cul["pos"].append(inf)
        cul["hour"].append(t_cul + 0.05 * k)
        cul["specimen"].append(np.zeros(inf.size, dtype=int))
        cul["positive"].append(positive)
    extra = rng.random(inf.size) < 0.5
    cul["pos"].append(inf[extra])
    cul["hour"].append(t_cul[extra] + 0.3)
    cul["specimen"].append(rng.integers(1, 3, extra.sum()))
    cul["positive"].append(positive[extra] & (rng.random(extra.sum()) < 0.5))

    others = np.flatnonzero(~s["infected"])
    prophylaxis = rng.random(others.size) < 0.15
    p = others[prophylaxis]
    abx["pos"].append(p)
    abx["hour"].append(rng.uniform(0, np.minimum(s["los_h"][p], 6)))
    abx["drug"].append(np.full(p.size, -1))
    abx["days"].append(np.full(p.size, 1.0))
    screen = ~prophylaxis & (rng.random(others.size) < 0.25)
    q = others[screen]
    cul["pos"].append(q)
    cul["hour"].append(rng.uniform(0, 3, q.size))
    cul["specimen"].append(np.full(q.size, -1))
    cul["positive"].append(np.zeros(q.size, dtype=bool))
    eye = np.flatnonzero(rng.random(n) < 0.08)
    abx["pos"].append(eye)
    abx["hour"].append(rng.uniform(0, np.minimum(s["los_h"][eye], 24)))
    abx["drug"].append(np.full(eye.size, -2))
    abx["days"].append(np.full(eye.size, 3.0))
    return ({k: np.concatenate(v) for k, v in abx.items()}, {k: np.concatenate(v) for k, v in cul.items()})


def _drug(code: int) -> tuple[str, str, str, str, str]:
    if code == -1:
        return V.ANTIBIOTIC_PROPHYLAXIS
    if code == -2:
        return V.ANTIBIOTICS_EXCLUDED_ROUTE[0]
    return V.ANTIBIOTICS_SEPSIS[code]


def prescriptions(chunk: Chunk, rng: np.random.Generator, abx: dict) -> pa.Table:
    s = chunk.stays
    pos = abx["pos"]
    start_h = abx["hour"]
    stop_h = start_h + abx["days"] * 24
    drugs = [_drug(int(c)) for c in abx["drug"]]
    # Other medications through the admission.
    k = 8
    opos = np.repeat(np.arange(chunk.n), k)
    ostart = rng.uniform(-s["pre_icu_h"][opos], np.maximum(s["hosp_end_h"][opos] - 1, 0))
    ostop = ostart + rng.uniform(12, 96, opos.size)
    other = rng.integers(0, len(V.OTHER_DRUGS), opos.size)
    drugs += [V.OTHER_DRUGS[i] for i in other]
    pos = np.concatenate([pos, opos])
    start = chunk.at(pos, np.concatenate([start_h, ostart]))
    stop = np.minimum(chunk.at(pos, np.concatenate([stop_h, ostop])), s["dischtime"][pos])
    order = np.lexsort((start, pos))
    n = order.size
    arr = np.array(drugs, dtype=object)[order]
    cols = {
        "subject_id": s["subject_id"][pos[order]],
        "hadm_id": s["hadm_id"][pos[order]],
        "pharmacy_id": _id_block(chunk, n, width=100_000, start=10_000_000),
        "starttime": start[order],
        "stoptime": np.maximum(stop, start)[order],
        "drug_type": np.full(n, "MAIN", dtype=object),
        "drug": arr[:, 0],
        "route": arr[:, 1],
        "dose_val_rx": arr[:, 2],
        "dose_unit_rx": arr[:, 3],
        "formulary_drug_cd": arr[:, 4],
        "doses_per_24_hrs": np.where(rng.random(n) < 0.5, 2.0, 1.0),
    }
    return table("hosp/prescriptions", cols, n)


def microbiologyevents(chunk: Chunk, rng: np.random.Generator, cul: dict) -> tuple[pa.Table, dict]:
    """One row per negative specimen; organism and susceptibility rows for positive ones."""
    s = chunk.stays
    n_spec = cul["pos"].size
    spec_id = _id_block(chunk, n_spec, width=50_000, start=1_000_000)
    charttime = chunk.at(cul["pos"], cul["hour"])
    date_only = rng.random(n_spec) < 0.05
    rows = {"spec": [], "org": [], "ab": []}
    for i in range(n_spec):
        if cul["positive"][i]:
            org = int(rng.integers(0, len(V.ORGANISMS)))
            for ab in rng.choice(len(V.SUSCEPTIBILITY_TESTS), size=3, replace=False):
                rows["spec"].append(i)
                rows["org"].append(org)
                rows["ab"].append(int(ab))
        else:
            rows["spec"].append(i)
            rows["org"].append(-1)
            rows["ab"].append(-1)
    spec = np.array(rows["spec"], dtype=np.int64)
    org = np.array(rows["org"])
    ab = np.array(rows["ab"])
    pos = cul["pos"][spec]
    kind = cul["specimen"][spec]
    specimen = [V.SCREENING_SPECIMEN if k < 0 else V.CULTURE_SPECIMENS[k] for k in kind]
    ct = charttime[spec]
    chartdate = ct // DAY_S * DAY_S
    store = ct + _storage_delay_s(rng, n_spec)[spec]  # one report time per specimen
    n = spec.size
    cols = {
        "microevent_id": _id_block(chunk, n, width=50_000, start=1),
        "subject_id": s["subject_id"][pos],
        "hadm_id": s["hadm_id"][pos],
        "micro_specimen_id": spec_id[spec],
        "chartdate": chartdate,
        "charttime": np.where(date_only[spec], NAT, ct),
        "spec_itemid": np.array([x[0] for x in specimen]),
        "spec_type_desc": np.array([x[1] for x in specimen], dtype=object),
        "test_seq": np.ones(n, dtype=np.int64),
        "storedate": store // DAY_S * DAY_S,
        "storetime": store,
        "test_itemid": np.array([x[2] for x in specimen]),
        "test_name": np.array([x[3] for x in specimen], dtype=object),
        "org_itemid": pa.array(np.array([V.ORGANISMS[o][0] if o >= 0 else 0 for o in org]), mask=org < 0),
        "org_name": np.array([V.ORGANISMS[o][1] if o >= 0 else None for o in org], dtype=object),
        "isolate_num": pa.array(np.ones(n, dtype=np.int64), mask=org < 0),
        "ab_itemid": pa.array(np.array([V.SUSCEPTIBILITY_TESTS[a][0] if a >= 0 else 0 for a in ab]), mask=ab < 0),
        "ab_name": np.array([V.SUSCEPTIBILITY_TESTS[a][1] if a >= 0 else None for a in ab], dtype=object),
        "interpretation": np.array(
            [("S" if rng.random() < 0.8 else "R") if a >= 0 else None for a in ab], dtype=object
        ),
        "comments": np.array([None if o >= 0 else "NO GROWTH." for o in org], dtype=object),
    }
    culture_times = {"pos": cul["pos"], "time": charttime, "date_only": date_only}
    return table("hosp/microbiologyevents", cols, n), culture_times


def _storage_delay_s(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds (whole minutes, as MIMIC-IV stores them) from the draw to the stored result, per specimen."""
    fast = rng.random(n) < CULTURE_FAST_SHARE
    hours = np.where(
        fast,
        rng.uniform(*CULTURE_FAST_HOURS, n),
        np.minimum(rng.lognormal(np.log(CULTURE_MEDIAN_HOURS), CULTURE_SIGMA, n), CULTURE_MAX_HOURS),
    )
    return np.round(hours * 60).astype(np.int64) * 60


def suspected_infection(chunk: Chunk, abx: dict, cultures: dict) -> np.ndarray:
    """Per chunk stay, the earliest suspected-infection time (seconds; NAT if none) by mimic-code's rule.

    An antibiotic counts if it starts within the ICU stay and is not given by an excluded route; it is
    paired with the patient's earliest culture taken up to 72 h before it (the culture's time is then
    the suspicion time), else with one taken up to 24 h after it (the antibiotic's time). A culture with
    a date only is matched on dates (3 days before, 1 day after) and counts from midnight.
    """
    s = chunk.stays
    valid = abx["drug"] != -2
    a_pos = abx["pos"][valid]
    a_time = chunk.at(a_pos, abx["hour"][valid])
    in_stay = (a_time >= s["intime"][a_pos]) & (a_time < s["outtime"][a_pos])
    a_pos, a_time = a_pos[in_stay], a_time[in_stay]
    by_subject: dict[int, list[tuple[int, bool]]] = {}
    for p, t, date_only in zip(cultures["pos"], cultures["time"], cultures["date_only"]):
        by_subject.setdefault(int(s["subject_id"][p]), []).append((int(t), bool(date_only)))
    best = np.full(chunk.n, NAT, dtype=np.int64)
    hour = 3600
    for p, ta in zip(a_pos.tolist(), a_time.tolist()):
        a_day = ta // DAY_S
        before, after = [], []
        for tc, date_only in by_subject.get(int(s["subject_id"][p]), []):
            day = tc // DAY_S
            if date_only:
                if day <= a_day <= day + 3:
                    before.append((day, 1, day * DAY_S))
                if day - 1 <= a_day <= day:
                    after.append((day, 1, day * DAY_S))
            else:
                if tc < ta <= tc + 72 * hour:
                    before.append((day, 0, tc))
                if tc - 24 * hour <= ta < tc:
                    after.append((day, 0, tc))
        # earliest culture: by date, then charted time (date-only ones last)
        if before:
            t = min(before, key=lambda x: (x[0], x[1], x[2]))[2]
        elif after:
            t = ta
        else:
            continue
        if best[p] == NAT or t < best[p]:
            best[p] = t
    return best
