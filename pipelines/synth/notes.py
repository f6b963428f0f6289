"""MIMIC-IV-Note style text: radiology reports that follow the course, one discharge summary per admission.

A radiology report states what the images show at its time: the lungs follow the respiratory severity,
an endotracheal tube while ventilated, and, for stays with the note-only finding, metastatic disease,
which no lab or code shows. The discharge summary says how the stay ended, as real ones do; it is
written after discharge and must never be a feature.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import physiology as P
from .events import MINUTE, Chunk
from .tablekit import grid, table

CXR_FINDINGS = {
    0: (
        "The lungs are clear without focal consolidation.",
        "No pleural effusion or pneumothorax.",
        "Cardiomediastinal silhouette is within normal limits.",
    ),
    1: (
        "Patchy bibasilar opacities likely reflect atelectasis, though early infection is not excluded.",
        "Small bilateral pleural effusions.",
        "Mild pulmonary vascular congestion.",
    ),
    2: (
        "New multifocal airspace opacities concerning for pneumonia.",
        "Worsening consolidation in the right lower lobe.",
        "Moderate bilateral pleural effusions.",
    ),
    3: (
        "Diffuse bilateral airspace opacities, worse than prior, compatible with ARDS.",
        "Extensive bilateral consolidation with air bronchograms.",
        "Severe pulmonary edema pattern.",
    ),
}
METASTATIC = (
    "Multiple new pulmonary nodules, the largest 2.1 cm, highly suspicious for metastatic disease.",
    "Innumerable hypodense hepatic lesions compatible with metastases.",
    "Diffuse lytic osseous lesions concerning for widespread metastatic disease.",
    "Extensive peritoneal carcinomatosis with omental caking.",
)
BENIGN_EXTRA = (
    "No acute osseous abnormality.",
    "Degenerative changes of the thoracic spine.",
    "Stable appearance of the upper abdomen.",
    "Surgical clips in the right upper quadrant.",
)
COMPARISON = ("Comparison: ___.", "Comparison: Radiograph from ___.", "Comparison: None.")
# A second site's radiologists (site.py, note_style "brief"): the same findings in short, abbreviated lines.
CXR_FINDINGS_BRIEF = {
    0: ("Lungs clear.", "No effusion or PTX.", "Heart size nl."),
    1: ("Bibasilar atelectasis vs early PNA.", "Small b/l effusions.", "Mild vasc congestion."),
    2: ("New multifocal opacities, c/w PNA.", "RLL consolidation, worse.", "Mod b/l effusions."),
    3: ("Diffuse b/l opacities, c/w ARDS.", "Extensive b/l consolidation.", "Severe pulm edema."),
}
METASTATIC_BRIEF = (
    "Multiple new pulm nodules up to 2.1 cm, c/f mets.",
    "Numerous hepatic lesions c/w mets.",
    "Diffuse lytic bone lesions c/f mets.",
    "Peritoneal carcinomatosis, omental caking.",
)
BENIGN_EXTRA_BRIEF = ("No acute osseous abn.", "DJD T-spine.", "Stable upper abd.", "RUQ surgical clips.")


def _lung_grade(resp: float) -> int:
    return 0 if resp < 0.6 else 1 if resp < 1.2 else 2 if resp < 2.0 else 3


def radiology(chunk: Chunk, rng: np.random.Generator, note_seq: dict[int, int]) -> pa.Table:
    s = chunk.stays
    zero = np.zeros(chunk.n)
    # A chest film soon after admission, then daily films in sicker stays; a CT in some stays, more
    # often where the (hidden) finding is there to be seen.
    site = chunk.site
    pos_a, h_a = grid(rng, zero, np.minimum(s["los_h"], 4.0), 4.0, keep=site.first_film_keep)
    pos_b, h_b = grid(rng, zero + 8, s["los_h"], 24.0, keep=site.daily_film_keep, jitter_h=3)
    ct = rng.random(chunk.n) < np.where(s["note_finding"], 0.85, 0.3)
    ct_pos = np.flatnonzero(ct)
    ct_h = rng.uniform(0.5, np.clip(np.nan_to_num(s["infection_hour"][ct_pos], nan=12.0) + 20, 2, 40))
    ct_h = np.minimum(ct_h, np.maximum(s["los_h"][ct_pos] - 0.5, 0.1))
    pos = np.concatenate([pos_a, pos_b, ct_pos])
    hours = np.concatenate([h_a, h_b, ct_h])
    is_ct = np.concatenate([np.zeros(pos_a.size + pos_b.size, bool), np.ones(ct_pos.size, bool)])
    order = np.lexsort((hours, pos))
    pos, hours, is_ct = pos[order], hours[order], is_ct[order]
    st = P.state(s, pos, hours)
    write = RADIOLOGY_STYLES[site.note_style]
    texts = []
    for i in range(pos.size):
        texts.append(
            write(
                rng, bool(is_ct[i]), float(st.organ[i, P.RESP]), bool(st.ventilated[i]), bool(s["note_finding"][pos[i]])
            )
        )
    charttime = chunk.at(pos, hours)
    delay_min = np.where(
        rng.random(pos.size) < 0.05, rng.integers(24 * 60, 72 * 60, pos.size), rng.integers(20, 8 * 60, pos.size)
    )
    subj = s["subject_id"][pos]
    seq = _next_seq(note_seq, subj)
    cols = {
        "note_id": np.array([f"{a}-RR-{b}" for a, b in zip(subj, seq)], dtype=object),
        "subject_id": subj,
        "hadm_id": s["hadm_id"][pos],
        "note_type": np.full(pos.size, "RR", dtype=object),
        "note_seq": seq,
        "charttime": charttime,
        "storetime": charttime + delay_min * MINUTE,
        "text": np.array(texts, dtype=object),
    }
    return table("note/radiology", cols, pos.size)


def _radiology_text(rng: np.random.Generator, is_ct: bool, resp: float, vent: bool, finding: bool) -> str:
    grade = _lung_grade(resp + 0.3 * rng.standard_normal())
    lines = CXR_FINDINGS[max(grade, 0)]
    picked = [lines[j] for j in sorted(rng.choice(3, size=2, replace=False))]
    if vent:
        picked.insert(0, "Endotracheal tube terminates approximately 4 cm above the carina.")
    extra = []
    if finding:
        extra.append(METASTATIC[int(rng.integers(0, len(METASTATIC)))])
    elif rng.random() < 0.5:
        extra.append(BENIGN_EXTRA[int(rng.integers(0, len(BENIGN_EXTRA)))])
    exam = "CT CHEST, ABDOMEN AND PELVIS WITH CONTRAST" if is_ct else "CHEST (PORTABLE AP)"
    indication = (
        "___ year old with hypotension and fever, evaluate for source of infection."
        if grade >= 2
        else "___ year old with shortness of breath, evaluate for interval change."
    )
    impression = picked[0] if not extra else f"{picked[0]} {extra[0]}"
    findings = " ".join(picked + extra) if is_ct or extra else " ".join(picked)
    return (
        f"EXAMINATION:  {exam}\n\nINDICATION:  {indication}\n\nTECHNIQUE:  "
        f"{'Multidetector CT with IV contrast.' if is_ct else 'Portable AP chest radiograph.'}\n\n"
        f"{COMPARISON[int(rng.integers(0, 3))]}\n\nFINDINGS: \n\n{findings}\n\nIMPRESSION: \n\n{impression}\n"
    )


def discharge(chunk: Chunk, rng: np.random.Generator, note_seq: dict[int, int]) -> pa.Table:
    s = chunk.stays
    pos = np.arange(chunk.n)
    subj = s["subject_id"]
    seq = _next_seq(note_seq, subj)
    write = DISCHARGE_STYLES[chunk.site.note_style]
    texts = [
        write(
            rng,
            bool(s["died"][i]),
            bool(s["infected"][i]),
            bool(s["female"][i]),
            bool(s["note_finding"][i]),
            bool(s["hospice"][i]),
        )
        for i in pos
    ]
    day = s["dischtime"] // 86400 * 86400
    cols = {
        "note_id": np.array([f"{a}-DS-{b}" for a, b in zip(subj, seq)], dtype=object),
        "subject_id": subj,
        "hadm_id": s["hadm_id"],
        "note_type": np.full(pos.size, "DS", dtype=object),
        "note_seq": seq,
        "charttime": day,
        "storetime": s["dischtime"] + rng.integers(2 * 60, 48 * 60, pos.size) * MINUTE,
        "text": np.array(texts, dtype=object),
    }
    return table("note/discharge", cols, pos.size)


def _discharge_text(
    rng: np.random.Generator, died: bool, infected: bool, female: bool, finding: bool, hospice: bool = False
) -> str:
    sex = "F" if female else "M"
    course = (
        "admitted to the ICU with sepsis and treated with broad-spectrum antibiotics and fluids"
        if infected
        else "admitted to the ICU for close monitoring"
    )
    if finding:
        course += "; imaging showed metastatic disease, a new diagnosis"
    if died:
        ending = (
            "Despite maximal support the patient's condition deteriorated. After discussion with the "
            "family the patient was made comfort measures only and expired on ___."
        )
        dispo, condition, dx = "Expired", "Expired", "Septic shock" if infected else "Multiorgan failure"
    else:
        ending = "The patient improved, was transferred to the floor and was discharged in stable condition."
        dispo = ("Home", "Home With Service", "Extended Care")[int(rng.integers(0, 3))]
        condition = "Mental Status: Clear and coherent. Activity Status: Ambulatory - requires assistance."
        dx = "Sepsis" if infected else "Acute respiratory failure"
        if hospice:  # the admission's discharge_location is HOSPICE
            ending = (
                "Given the poor prognosis, goals of care were discussed with the patient and family and the "
                "patient was transitioned to comfort-focused care and discharged to hospice."
            )
            dispo = "Hospice"
    return (
        f"Name:  ___                    Unit No:   ___\n\nAdmission Date:  ___              "
        f"Discharge Date:   ___\n\nDate of Birth:  ___             Sex:   {sex}\n\nService: MEDICINE\n\n"
        f"Chief Complaint:\nfever, hypotension\n\nBrief Hospital Course:\n___ was {course}. {ending}\n\n"
        f"Discharge Disposition:\n{dispo}\n\nDischarge Diagnosis:\n{dx}\n\nDischarge Condition:\n{condition}\n"
    )


def _radiology_text_brief(rng: np.random.Generator, is_ct: bool, resp: float, vent: bool, finding: bool) -> str:
    grade = _lung_grade(resp + 0.3 * rng.standard_normal())
    lines = CXR_FINDINGS_BRIEF[max(grade, 0)]
    picked = [lines[j] for j in sorted(rng.choice(3, size=2, replace=False))]
    if vent:
        picked.insert(0, "ETT 4 cm above carina.")
    if finding:
        picked.append(METASTATIC_BRIEF[int(rng.integers(0, len(METASTATIC_BRIEF)))])
    elif rng.random() < 0.3:
        picked.append(BENIGN_EXTRA_BRIEF[int(rng.integers(0, len(BENIGN_EXTRA_BRIEF)))])
    exam = "CT C/A/P W/ CONTRAST" if is_ct else "CXR PORT"
    indication = "Fever, hypotn, ?source." if grade >= 2 else "SOB, ?interval change."
    return f"{exam}\nHx: {indication}\nIMP: {' '.join(picked)}\n"


def _discharge_text_brief(
    rng: np.random.Generator, died: bool, infected: bool, female: bool, finding: bool, hospice: bool = False
) -> str:
    course = "ICU for sepsis, tx w/ broad-spectrum abx + IVF" if infected else "ICU for monitoring"
    if finding:
        course += "; imaging: new metastatic dz"
    if died:
        ending = "Deteriorated despite max support; CMO after family mtg, expired ___."
        dispo, dx = "Expired", "Septic shock" if infected else "MOF"
    else:
        ending = "Improved, to floor, d/c'd stable."
        dispo = ("Home", "Home w/ services", "ECF")[int(rng.integers(0, 3))]
        dx = "Sepsis" if infected else "Acute resp failure"
        if hospice:  # the admission's discharge_location is HOSPICE
            ending = "Poor prognosis; GOC w/ pt and family, comfort care, d/c to hospice."
            dispo = "Hospice"
    sex = "F" if female else "M"
    return f"Sex: {sex}  Svc: MED\nCC: fever, hypotn\nHC: {course}. {ending}\nDispo: {dispo}\nDx: {dx}\n"


# Report wording by a site's note_style (site.py).
RADIOLOGY_STYLES = {"full": _radiology_text, "brief": _radiology_text_brief}
DISCHARGE_STYLES = {"full": _discharge_text, "brief": _discharge_text_brief}


def _next_seq(note_seq: dict[int, int], subjects: np.ndarray) -> np.ndarray:
    out = np.empty(subjects.size, dtype=np.int64)
    for i, sub in enumerate(subjects.tolist()):
        note_seq[sub] = note_seq.get(sub, 0) + 1
        out[i] = note_seq[sub]
    return out
