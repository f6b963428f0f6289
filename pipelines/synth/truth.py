"""What the generator knows and the MIMIC folders do not: written to DIR/_truth/ for benchmarks and tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from . import physiology as P
from .events import Chunk
from .tablekit import NAT, seconds


def sofa_24h_max_near(chunk: Chunk, suspected: np.ndarray) -> np.ndarray:
    """Expected worst 24-hour SOFA in [suspected - 48 h, suspected + 24 h], from the latent course.

    The hourly components use SOFA's thresholds on the noise-free values, so this is what mimic-code
    should find where the stay is densely measured; sparse charting can move single stays either way.
    """
    s = chunk.stays
    out = np.full(chunk.n, -1.0)
    has = suspected != NAT
    for i in np.flatnonzero(has):
        hours = np.arange(-24.0, np.ceil(s["los_h"][i]) + 1)
        st = P.state(s, np.full(hours.size, i), hours)
        o = st.organ
        pf = 440 * np.exp(-0.62 * o[:, P.RESP])
        resp = np.select([(pf < 100) & st.ventilated, (pf < 200) & st.ventilated, pf < 300, pf < 400], [4, 3, 2, 1], 0)
        plt = 235 * np.exp(-0.6 * o[:, P.COAG])
        coag = np.select([plt < 20, plt < 50, plt < 100, plt < 150], [4, 3, 2, 1], 0)
        bili = 0.55 * np.exp(0.75 * o[:, P.LIVER])
        liver = np.select([bili >= 12, bili >= 6, bili >= 2, bili >= 1.2], [4, 3, 2, 1], 0)
        vaso = st.vasopressor
        mbp = np.where(vaso > 0, 66.0, 87 - 10 * o[:, P.CV])
        cv = np.select([vaso > 0.1, vaso > 0, mbp < 70], [4, 3, 1], 0)
        gcs = np.clip(np.round(15 - 2.3 * np.maximum(o[:, P.CNS] - 0.3, 0)), 3, 15)
        cns = np.where(st.ventilated, 0, np.select([gcs < 6, gcs < 10, gcs < 13, gcs < 15], [4, 3, 2, 1], 0))
        creat0 = (0.75 if s["female"][i] else 0.95) * (2.2 if s["organ_chronic"][i, P.RENAL] > 0 else 1.0)
        cr = chunk.site.expected_lab("creatinine", creat0 * np.exp(0.6 * o[:, P.RENAL]))  # as its analyser reads
        urine24 = 24 * s["weight_kg"][i] * np.exp(-0.95 * o[:, P.RENAL])
        renal = np.maximum(
            np.select([cr >= 5, cr >= 3.5, cr >= 2, cr >= 1.2], [4, 3, 2, 1], 0),
            np.select([urine24 < 200, urine24 < 500], [4, 3], 0),
        )
        comps = np.stack([resp, coag, liver, cv, cns, renal], axis=1).astype(float)
        worst = np.stack([comps[max(0, k - 23) : k + 1].max(axis=0) for k in range(hours.size)])
        total = worst.sum(axis=1)
        t = s["intime"][i] + hours * 3600
        near = (t >= suspected[i] - 48 * 3600) & (t <= suspected[i] + 24 * 3600) & (hours >= 0)
        out[i] = total[near].max() if near.any() else 0.0
    return out


def read_truth(mimic_dir: Path) -> pd.Series | None:
    """The generator's probability of in-hospital death by stay_id, from a synthetic MIMIC-IV folder's
    _truth/stays.csv; None for a folder without it (real MIMIC-IV)."""
    path = Path(mimic_dir) / "_truth" / "stays.csv"
    if not path.exists():
        return None
    truth = pd.read_csv(path, usecols=["stay_id", "p_death_in_hospital"])
    return truth.set_index("stay_id")["p_death_in_hospital"]


def stay_truth(chunk: Chunk, suspected: np.ndarray) -> pa.Table:
    s = chunk.stays
    sofa = sofa_24h_max_near(chunk, suspected)
    return pa.table(
        {
            "subject_id": s["subject_id"],
            "hadm_id": s["hadm_id"],
            "stay_id": s["stay_id"],
            "infected": s["infected"],
            "infection_time": seconds(
                np.where(s["infected"], s["intime"] + np.nan_to_num(s["infection_hour"]) * 3600, np.nan)
            ),
            "suspected_infection_time_expected": seconds(suspected),
            "sofa_near_suspicion_expected": sofa,
            "sepsis3_expected": (suspected != NAT) & (sofa >= 2),
            "note_finding": s["note_finding"],
            "logit_static": s["logit_static"],
            "logit_course": s["logit_course"],
            "logit_note": s["logit_note"],
            "p_death_in_hospital": s["p_death"],
            "died_in_hospital": s["died"],
            "deathtime": seconds(np.where(s["died"], s["dischtime"], NAT)),
            "discharged_to_hospice": s["hospice"],
            "in_icu_at_present": s["live"],
            "dod": seconds(s["dod"]).cast(pa.date32()),
        }
    )
