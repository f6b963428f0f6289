"""Second pass of the generator: the timed rows of one chunk of patients.

Every function takes the chunk's stays (a dict of arrays, one row per ICU stay of whole patients), a
random generator of the chunk's own, and returns a pyarrow table laid out as the MIMIC-IV table. Hours
are since the stay's ICU admission (intime).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import physiology as P
from . import vocabulary as V
from .site import SITE_A, Site
from .tablekit import NAT, choice_text, grid, number_text, table

MINUTE = 60


@dataclass
class Chunk:
    index: int
    stays: dict[str, np.ndarray]
    site: Site = field(default=SITE_A)

    @property
    def n(self) -> int:
        return self.stays["stay_id"].size

    def at(self, pos: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """Absolute seconds, to the minute, of `hours` after the intime of stays `pos`."""
        t = self.stays["intime"][pos] + np.round(hours * 60).astype(np.int64) * MINUTE
        return t // MINUTE * MINUTE


def _ids(chunk: Chunk, pos: np.ndarray) -> dict[str, np.ndarray]:
    s = chunk.stays
    return {"subject_id": s["subject_id"][pos], "hadm_id": s["hadm_id"][pos], "stay_id": s["stay_id"][pos]}


def _id_block(chunk: Chunk, n: int, width: int = 4_000_000, start: int = 1) -> np.ndarray:
    """Row ids unique across chunks: each chunk owns a block of `width` ids."""
    if n > width:
        raise ValueError(f"chunk {chunk.index} needs {n} ids, more than its block of {width}")
    return start + chunk.index * width + np.arange(n)


# ----------------------------------------------------------------------------------------------- chartevents


@dataclass
class ChartPiece:
    pos: np.ndarray
    hours: np.ndarray
    itemid: int
    value: pa.Array
    valuenum: np.ndarray
    uom: str | None


def _numeric(pos, hours, key: str, values: np.ndarray, decimals: int) -> ChartPiece:
    item = V.CHART_ITEMS[key]
    v = np.round(values, decimals)
    return ChartPiece(pos, hours, item.itemid, number_text(v, decimals), v, item.unit or None)


def _text(pos, hours, itemid: int, text: np.ndarray, valuenum: np.ndarray | None = None) -> ChartPiece:
    vn = np.full(pos.size, np.nan) if valuenum is None else valuenum.astype(float)
    return ChartPiece(pos, hours, itemid, pa.array(text, type=pa.string()), vn, None)


def chartevents(chunk: Chunk, rng: np.random.Generator, routine_every_h: float) -> pa.Table:
    s = chunk.stays
    zero = np.zeros(chunk.n)
    los = s["los_h"]
    pieces: list[ChartPiece] = []

    def state_at(pos, hours):
        return P.state(s, pos, hours)

    # Hourly vitals.
    pos, h = grid(rng, zero, los, 1.0, keep=0.97, jitter_h=0.2)
    st = state_at(pos, h)
    pieces.append(_numeric(pos, h, "heart_rate", P.noisy(rng, 78 + 11 * st.severity, abs_=7), 0))
    pieces.append(_numeric(pos, h, "resp_rate", P.noisy(rng, 16 + 3 * st.severity, abs_=2.5), 0))
    pieces.append(_numeric(pos, h, "spo2", np.clip(P.noisy(rng, 98 - 2.2 * st.organ[:, P.RESP], abs_=1.2), 70, 100), 0))
    vent = st.ventilated
    pieces.append(_numeric(pos[vent], h[vent], "resp_rate_total", P.noisy(rng, 18 + 2 * st.severity[vent], abs_=2), 0))
    mbp = P.mean_arterial_pressure(rng, st)
    sbp = mbp + P.noisy(rng, P.constant(28, mbp), abs_=5)
    dbp = mbp - P.noisy(rng, P.constant(14, mbp), abs_=3)
    art = s["arterial_line"][pos]
    for pre, mask in (("abp", art), ("nbp", ~art)):
        pieces.append(_numeric(pos[mask], h[mask], f"{pre}_sys", sbp[mask], 0))
        pieces.append(_numeric(pos[mask], h[mask], f"{pre}_dia", dbp[mask], 0))
        mean_key = f"{pre}_mean"
        pieces.append(_numeric(pos[mask], h[mask], mean_key, mbp[mask], 0))
    # Cuff pressures every four hours beside an arterial line.
    pos4, h4 = grid(rng, zero, los, 4.0, keep=0.8, jitter_h=0.3)
    keep = s["arterial_line"][pos4]
    pos4, h4 = pos4[keep], h4[keep]
    st4 = state_at(pos4, h4)
    pieces.append(_numeric(pos4, h4, "nbp_mean", P.mean_arterial_pressure(rng, st4), 0))

    # Temperature, GCS, glucose every few hours.
    pos, h = grid(rng, zero, los, 4.0, keep=0.9, jitter_h=0.3)
    st = state_at(pos, h)
    temp_c = P.noisy(rng, 36.9 + 1.0 * st.infected_now * np.minimum(st.severity, 2) / 2, abs_=0.35)
    fahrenheit = rng.random(pos.size) < 0.85
    pieces.append(_numeric(pos[fahrenheit], h[fahrenheit], "temp_f", temp_c[fahrenheit] * 9 / 5 + 32, 1))
    pieces.append(_numeric(pos[~fahrenheit], h[~fahrenheit], "temp_c", temp_c[~fahrenheit], 1))
    eye, verbal, motor = P.gcs_components(rng, st)
    for key, comp in (("gcs_eye", eye), ("gcs_verbal", verbal), ("gcs_motor", motor)):
        lookup = np.array([V.GCS_TEXT[key].get(c) for c in range(7)], dtype=object)
        text = lookup[comp.astype(int)]
        pieces.append(_text(pos, h, V.CHART_ITEMS[key].itemid, text, np.where(comp == 0, 1, comp)))
    pos, h = grid(rng, zero, los, 6.0, keep=0.8, jitter_h=0.5)
    st = state_at(pos, h)
    pieces.append(_numeric(pos, h, "glucose_fs", P.noisy(rng, 125 + 20 * st.severity, rel=0.15), 0))

    # Respiratory support: FiO2, device with O2 flow, ventilator mode and PEEP.
    pos, h = grid(rng, zero, los, 2.0, keep=0.9, jitter_h=0.2)
    st = state_at(pos, h)
    fio2 = P.fio2_percent(st)
    on_o2 = fio2 > 21
    as_fraction = rng.random(pos.size) < 0.03  # a few charted as a fraction (0.4), as in MIMIC-IV
    fio2_charted = np.where(as_fraction, fio2 / 100, fio2)
    pieces.append(
        ChartPiece(
            pos[on_o2],
            h[on_o2],
            V.CHART_ITEMS["fio2"].itemid,
            number_text(fio2_charted[on_o2], 2),
            fio2_charted[on_o2],
            None,
        )
    )
    vent = st.ventilated
    device = np.where(vent, "Endotracheal tube", np.where(on_o2, "Nasal cannula", "None")).astype(object)
    every_other = (np.round(h) % 4) < 2
    dev_rows = every_other | vent
    pieces.append(_text(pos[dev_rows], h[dev_rows], V.CHART_ITEMS["o2_device"].itemid, device[dev_rows]))
    flow_rows = dev_rows & on_o2 & ~vent
    flow = np.clip(np.round((fio2[flow_rows] - 20) / 4), 1, 6)
    pieces.append(ChartPiece(pos[flow_rows], h[flow_rows], V.O2_FLOW[0], number_text(flow, 0), flow, "L/min"))
    pieces.append(
        _text(
            pos[vent],
            h[vent],
            V.CHART_ITEMS["vent_mode"].itemid,
            choice_text(rng, ("CMV/ASSIST/AutoFlow", "CMV/ASSIST", "CPAP/PSV"), int(vent.sum())),
        )
    )
    pieces.append(
        _numeric(pos[vent], h[vent], "peep", np.round(P.noisy(rng, 5 + 2 * st.organ[vent, P.RESP], abs_=1)), 0)
    )

    # Body size: admission weight, daily weights, height (cm or inches).
    first = rng.uniform(0, 2, chunk.n)
    idx = np.arange(chunk.n)
    pieces.append(_numeric(idx, first, "weight_admit", s["weight_kg"], 1))
    pos, h = grid(rng, zero, los, 24.0, keep=0.6)
    pieces.append(_numeric(pos, h, "weight_daily", P.noisy(rng, s["weight_kg"][pos], rel=0.02), 1))
    has_h = rng.random(chunk.n) < 0.8
    cm = rng.random(chunk.n) < 0.7
    sel = has_h & cm
    pieces.append(_numeric(idx[sel], first[sel], "height_cm", s["height_cm"][sel], 0))
    sel = has_h & ~cm
    pieces.append(_numeric(idx[sel], first[sel], "height_in", s["height_cm"][sel] / 2.54, 0))

    # Nursing documentation (density only).
    for item, options in V.ROUTINE_TEXT_ITEMS:
        pos, h = grid(rng, zero, los, routine_every_h, keep=0.9, jitter_h=0.2)
        pieces.append(_text(pos, h, item.itemid, choice_text(rng, options, pos.size)))

    pos = np.concatenate([p.pos for p in pieces])
    hours = np.concatenate([p.hours for p in pieces])
    itemid = np.concatenate([np.full(p.pos.size, p.itemid) for p in pieces])
    value = pa.concat_arrays([p.value.cast(pa.string()) for p in pieces])
    valuenum = np.concatenate([p.valuenum for p in pieces])
    uom = np.concatenate([np.full(p.pos.size, p.uom, dtype=object) for p in pieces])
    value, valuenum = _chart_outliers(rng, itemid, value, valuenum)

    charttime = chunk.at(pos, hours)
    storetime = charttime + rng.integers(0, 45, pos.size) * MINUTE
    order = np.lexsort((itemid, charttime, pos))
    order = _with_duplicates(rng, order, 0.003)
    cols = _ids(chunk, pos[order])
    caregiver = rng.integers(10_000, 99_999, pos.size)
    warning = (rng.random(pos.size) < 0.01).astype(np.int64)
    cols.update(
        caregiver_id=caregiver[order],
        charttime=charttime[order],
        storetime=storetime[order],
        itemid=itemid[order],
        value=value.take(pa.array(order)),
        valuenum=valuenum[order],
        valueuom=uom[order],
        warning=warning[order],
    )
    return table("icu/chartevents", cols, order.size)


def _chart_outliers(rng, itemid, value, valuenum):
    """Charting errors: a few numeric values entered ten times too large or as zero."""
    numeric = ~np.isnan(valuenum) & np.isin(
        itemid, [V.CHART_ITEMS[k].itemid for k in ("heart_rate", "resp_rate", "nbp_mean", "abp_mean", "temp_f", "spo2")]
    )
    bad = numeric & (rng.random(valuenum.size) < 0.0015)
    if bad.any():
        new = np.where(rng.random(valuenum.size) < 0.5, valuenum * 10, 0.0)
        valuenum = np.where(bad, new, valuenum)
        value = pc.if_else(pa.array(bad), number_text(valuenum, 1), value)
    return value, valuenum


def _with_duplicates(rng: np.random.Generator, order: np.ndarray, share: float) -> np.ndarray:
    """Row order with a share of rows stored twice, next to each other, as MIMIC-IV has."""
    return np.repeat(order, 1 + (rng.random(order.size) < share))


# ----------------------------------------------------------------------------------------------- labevents


def _lab_schedule(chunk: Chunk, rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(panel, stay positions, hours) of every blood draw of the chunk, in and out of the ICU."""
    s = chunk.stays
    n = chunk.n
    zero = np.zeros(n)
    adm, los, end = -s["pre_icu_h"], s["los_h"], s["hosp_end_h"]
    every_factor = chunk.site.lab_every_factor
    draws = []
    for panel, icu_every, ward_every in (
        ("chemistry", 3.0, 5.0),
        ("cbc", 3.0, 5.0),
        ("coagulation", 8.0, 24.0),
        ("liver", 12.0, 24.0),
        ("differential", 12.0, 24.0),
    ):
        icu_every, ward_every = icu_every * every_factor, ward_every * every_factor
        for lo, hi, every in ((zero, los, icu_every), (adm, np.minimum(zero, end), ward_every), (los, end, ward_every)):
            pos, h = grid(rng, lo, hi, every, keep=0.85, jitter_h=0.5)
            draws.append((panel, pos, h))
    # Blood gases: arterial every 4 h while ventilated, some venous gases with lactate otherwise.
    pos, h = grid(rng, adm, los, 4.0, keep=0.9, jitter_h=0.4)
    st = P.state(s, pos, h)
    arterial = st.ventilated | (rng.random(pos.size) < 0.12)
    draws.append(("blood_gas", pos[arterial], h[arterial]))
    venous = ~arterial & st.infected_now & (rng.random(pos.size) < 0.35)
    draws.append(("venous_gas", pos[venous], h[venous]))
    # Outpatient chemistry before the admission, which has no hadm_id.
    out = rng.random(n) < 0.3
    days = rng.uniform(2, 40, n)
    draws.append(("outpatient", np.flatnonzero(out), (adm - days * 24)[out]))
    return draws


def labevents(chunk: Chunk, rng: np.random.Generator) -> pa.Table:
    s = chunk.stays
    cols = {k: [] for k in ("pos", "hours", "itemid", "valuenum", "text", "specimen", "delay", "hadm")}
    specimen_counter = 0
    for panel, pos, hours in _lab_schedule(chunk, rng):
        items = {
            "venous_gas": [V.LAB_ITEMS[k] for k in ("specimen", "ph", "paco2", "lactate")],
            "outpatient": V.LAB_PANELS["chemistry"],
        }.get(panel) or V.LAB_PANELS[panel]
        if pos.size == 0:
            continue
        st = P.state(s, pos, hours)
        values = chunk.site.analyse(rng, P.lab_values(rng, st, s, [i.name for i in items]))
        specimen = specimen_counter + np.arange(pos.size)
        specimen_counter += pos.size
        # Results exist some time after the draw: minutes for gases, an hour or two for panels, and
        # now and then many hours (a re-run, a send-out).
        base_delay = {"blood_gas": 0.2, "venous_gas": 0.2, "cbc": 0.8}.get(panel, 1.5)
        delay = base_delay * rng.lognormal(0, 0.5, pos.size)
        late = rng.random(pos.size) < 0.02
        delay = np.where(late, rng.uniform(6, 30, pos.size), delay)
        for item in items:
            cols["pos"].append(pos)
            cols["hours"].append(hours)
            cols["itemid"].append(np.full(pos.size, item.itemid))
            cols["specimen"].append(specimen)
            cols["delay"].append(delay)
            cols["hadm"].append(np.full(pos.size, panel != "outpatient"))
            if item.name == "specimen":
                cols["valuenum"].append(np.full(pos.size, np.nan))
                cols["text"].append(np.full(pos.size, "VEN." if panel == "venous_gas" else "ART.", dtype=object))
            else:
                v = np.round(np.maximum(values[item.name], 0 if item.name != "baseexcess" else -40), item.decimals)
                cols["valuenum"].append(v)
                cols["text"].append(np.full(pos.size, None, dtype=object))
    pos = np.concatenate(cols["pos"])
    hours = np.concatenate(cols["hours"])
    itemid = np.concatenate(cols["itemid"])
    valuenum = np.concatenate(cols["valuenum"])
    text = np.concatenate(cols["text"])
    specimen = np.concatenate(cols["specimen"])
    delay = np.concatenate(cols["delay"])
    with_hadm = np.concatenate(cols["hadm"])

    # Values stored as text: results below the assay's range, errors and de-identified comments.
    below = ((itemid == V.LAB_ITEMS["bilirubin"].itemid) & (valuenum < 0.2)) | (
        (itemid == V.LAB_ITEMS["lactate"].itemid) & (valuenum < 0.5)
    )
    error = ~np.isnan(valuenum) & (rng.random(pos.size) < 0.003)
    hidden = ~np.isnan(valuenum) & ~error & (rng.random(pos.size) < 0.002)
    text = np.where(below, np.where(itemid == V.LAB_ITEMS["bilirubin"].itemid, "<0.2", "<0.5"), text)
    text = np.where(error, "ERROR", np.where(hidden, "___", text))
    valuenum = np.where(below | error | hidden, np.nan, valuenum)
    outlier = ~np.isnan(valuenum) & (rng.random(pos.size) < 0.001)
    valuenum = np.where(outlier, valuenum * 100, valuenum)
    value = pc.if_else(pa.array(pd.notna(text)), pa.array(text, type=pa.string()), number_text(valuenum, 3))

    charttime = chunk.at(pos, hours)
    storetime = (charttime + np.round(delay * 60).astype(np.int64) * MINUTE).astype(np.int64)
    storetime = np.where(rng.random(pos.size) < 0.01, NAT, storetime)
    low, high, uom = _lookup(itemid, "ref_low"), _lookup(itemid, "ref_high"), _lookup(itemid, "unit")
    flag = np.where((valuenum < low) | (valuenum > high), "abnormal", None).astype(object)
    priority = np.where(rng.random(pos.size) < 0.6, "STAT", "ROUTINE").astype(object)
    order = np.lexsort((itemid, charttime, pos))
    order = _with_duplicates(rng, order, 0.003)
    hadm = np.where(with_hadm[order], s["hadm_id"][pos[order]], -1)
    out = {
        "labevent_id": _id_block(chunk, order.size),
        "subject_id": s["subject_id"][pos[order]],
        "hadm_id": pa.array(hadm, mask=hadm < 0),
        "specimen_id": 1_000_000 + chunk.index * 400_000 + specimen[order],
        "itemid": itemid[order],
        "charttime": charttime[order],
        "storetime": storetime[order],
        "value": value.take(pa.array(order)),
        "valuenum": valuenum[order],
        "valueuom": uom[order],
        "ref_range_lower": low[order],
        "ref_range_upper": high[order],
        "flag": flag[order],
        "priority": priority[order],
    }
    return table("hosp/labevents", out, order.size)


def _lookup(itemid: np.ndarray, attr: str) -> np.ndarray:
    """Per-row attribute of lab items (unit, ref_low, ref_high), through a sorted itemid table."""
    items = sorted(V.LAB_ITEMS.values(), key=lambda i: i.itemid)
    keys = np.array([i.itemid for i in items])
    if attr.startswith("ref"):
        vals = np.array([np.nan if getattr(i, attr) is None else getattr(i, attr) for i in items], dtype=float)
    else:
        vals = np.array([getattr(i, attr) or None for i in items], dtype=object)
    return vals[np.searchsorted(keys, itemid)]


# ----------------------------------------------------------------------------------------------- inputevents


def inputevents(chunk: Chunk, rng: np.random.Generator) -> pa.Table:
    """Vasopressor infusions in segments of up to three hours at the rate the course needs; saline boluses."""
    s = chunk.stays
    pos, h = grid(rng, np.zeros(chunk.n), s["los_h"], 1.0)
    h = np.floor(h) + 0.0
    st = P.state(s, pos, h + 0.5)
    on = st.vasopressor > 0
    pos, h, dose = pos[on], h[on], st.vasopressor[on]
    seg_start = (h % 3 == 0) | np.r_[True, (pos[1:] != pos[:-1]) | (h[1:] != h[:-1] + 1)]
    seg = np.cumsum(seg_start) - 1
    first = np.flatnonzero(seg_start)
    length = np.bincount(seg)
    pos, h, dose = pos[first], h[first], dose[first]
    end_h = np.minimum(h + length, s["los_h"][pos])
    drug_choice = rng.choice(4, size=chunk.n, p=[0.8, 0.08, 0.07, 0.05])[pos]
    names = np.array(["norepinephrine", "dopamine", "epinephrine", "dobutamine"])[drug_choice]
    rate = np.where(names == "dopamine", dose * 100, np.where(names == "dobutamine", 5.0, dose))
    rate = np.round(P.noisy(rng, rate, rel=0.05), 3)
    itemid = np.array([V.VASOPRESSORS[n][0] for n in names])
    weight = s["weight_kg"][pos]
    minutes = (end_h - h) * 60
    amount = np.round(rate * weight * minutes / 1000, 4)
    rows = {
        "pos": [pos],
        "start": [h],
        "end": [end_h],
        "itemid": [itemid],
        "amount": [amount],
        "amountuom": ["mg"],
        "rate": [rate],
        "rateuom": ["mcg/kg/min"],
        "cat": ["01-Drips"],
        "comp": ["Main order parameter"],
        "desc": ["Continuous Med"],
    }
    # Vasopressin beside high-dose norepinephrine (not part of SOFA).
    vp = (names == "norepinephrine") & (dose > 0.2) & (rng.random(pos.size) < 0.5)
    rows["pos"].append(pos[vp])
    rows["start"].append(h[vp])
    rows["end"].append(end_h[vp])
    rows["itemid"].append(np.full(vp.sum(), V.VASOPRESSORS["vasopressin"][0]))
    rows["amount"].append(np.round(2.4 * (end_h[vp] - h[vp]), 3))
    rows["amountuom"].append("units")
    rows["rate"].append(np.full(vp.sum(), 2.4))
    rows["rateuom"].append("units/hour")
    rows["cat"].append("01-Drips")
    rows["comp"].append("Main order parameter")
    rows["desc"].append("Continuous Med")
    # Saline boluses when an infection starts.
    inf = s["infected"] & (s["infection_hour"] > 0)
    bpos = np.flatnonzero(inf)
    bstart = s["infection_hour"][bpos] + rng.uniform(0, 2, bpos.size)
    rows["pos"].append(bpos)
    rows["start"].append(bstart)
    rows["end"].append(bstart + 0.5)
    rows["itemid"].append(np.full(bpos.size, V.SALINE_BOLUS[0]))
    rows["amount"].append(np.full(bpos.size, 1000.0))
    rows["amountuom"].append("ml")
    rows["rate"].append(np.full(bpos.size, np.nan))
    rows["rateuom"].append(None)
    rows["cat"].append("02-Fluids (Crystalloids)")
    rows["comp"].append("Main order parameter")
    rows["desc"].append("Bolus")

    sizes = [a.size for a in rows["pos"]]
    rep = lambda key: np.concatenate([np.full(n, v, dtype=object) for n, v in zip(sizes, rows[key])])  # noqa: E731
    p = np.concatenate(rows["pos"])
    start = chunk.at(p, np.concatenate(rows["start"]))
    end = chunk.at(p, np.concatenate(rows["end"]))
    order = np.lexsort((start, p))
    n = order.size
    orderid = _id_block(chunk, n, width=200_000, start=100_000)
    cols = _ids(chunk, p[order])
    cols.update(
        caregiver_id=rng.integers(10_000, 99_999, n),
        starttime=start[order],
        endtime=np.maximum(end, start + 60)[order],
        storetime=(start + rng.integers(0, 30, start.size) * MINUTE)[order],
        itemid=np.concatenate(rows["itemid"])[order],
        amount=np.concatenate(rows["amount"])[order],
        amountuom=rep("amountuom")[order],
        rate=np.concatenate(rows["rate"])[order],
        rateuom=rep("rateuom")[order],
        orderid=orderid,
        linkorderid=orderid,
        ordercategoryname=rep("cat")[order],
        ordercomponenttypedescription=rep("comp")[order],
        ordercategorydescription=rep("desc")[order],
        patientweight=s["weight_kg"][p[order]],
        isopenbag=np.zeros(n, dtype=np.int64),
        continueinnextdept=np.zeros(n, dtype=np.int64),
        statusdescription=np.full(n, "FinishedRunning", dtype=object),
    )
    return table("icu/inputevents", cols, n)


# ----------------------------------------------------------------------------------------------- outputevents


def outputevents(chunk: Chunk, rng: np.random.Generator) -> pa.Table:
    """Urine output: hourly from a Foley catheter in sicker stays, voids every few hours in the others."""
    s = chunk.stays
    foley = s["arterial_line"] | s["infected"]
    every = np.where(foley, 1.0, 4.0)
    pos, h = grid(rng, np.zeros(chunk.n), s["los_h"], every, keep=0.92, jitter_h=0.1)
    st = P.state(s, pos, h)
    volume = np.round(P.urine_ml_per_hour(rng, st, s["weight_kg"][pos]) * every[pos], 0)
    itemid = np.where(foley[pos], V.URINE_FOLEY[0], V.URINE_VOID[0])
    # Bladder irrigation: the irrigant charted in (227488) and the urine-plus-irrigant out (227489).
    irr = (rng.random(pos.size) < 0.004) & foley[pos]
    pos = np.concatenate([pos, pos[irr], pos[irr]])
    h = np.concatenate([h, h[irr], h[irr]])
    volume = np.concatenate([volume, np.full(irr.sum(), 1000.0), volume[irr] + 1000])
    itemid = np.concatenate([itemid, np.full(irr.sum(), V.GU_IRRIGANT_IN[0]), np.full(irr.sum(), V.GU_IRRIGANT_OUT[0])])
    charttime = chunk.at(pos, h)
    order = np.lexsort((itemid, charttime, pos))
    cols = _ids(chunk, pos[order])
    cols.update(
        caregiver_id=rng.integers(10_000, 99_999, order.size),
        charttime=charttime[order],
        storetime=(charttime + rng.integers(0, 40, pos.size) * MINUTE)[order],
        itemid=itemid[order],
        value=volume[order],
        valueuom=np.full(order.size, "ml", dtype=object),
    )
    return table("icu/outputevents", cols, order.size)
