"""`sepsis-fusion synth`: a synthetic MIMIC-IV (hosp/, icu/, note/) with known truth.

Two passes: `cohort.plan` draws every patient, admission and stay with its latent course and outcome;
then chunks of whole patients get their timed rows (charts, labs, drugs, cultures, notes), written as
gzip CSV in MIMIC-IV v2.2's layout. The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sepsis_fusion.model.errors import SepsisFusionError

from . import events, hospital, infection, notes, truth
from .cohort import DEATH_INTERCEPT
from .cohort import plan as make_plan
from .events import Chunk
from .present import LIVE_SHARE, Present
from .site import DEFAULT_SITE, SITES, Site
from .writer import TableWriter

# Bump when a change alters the files a seed gives, so that reused folders are regenerated.
GENERATOR_VERSION = 6
CHUNK_STAYS = 200
# Nursing documentation every ~1.6 h per routine item gives MIMIC-IV's ~3,000 chart rows per stay.
ROUTINE_EVERY_H = {"full": 0.55, "light": 12.0}
CHUNKED_TABLES = [
    "icu/chartevents",
    "hosp/labevents",
    "icu/inputevents",
    "icu/outputevents",
    "hosp/prescriptions",
    "hosp/microbiologyevents",
    "note/radiology",
    "note/discharge",
]


class SynthError(SepsisFusionError, ValueError):
    """Bad arguments to the generator; the message says which and why."""


@dataclass
class SynthResult:
    out: Path
    stays: int
    rows: dict[str, int]


def check_arguments(stays: int, out: Path) -> None:
    if stays < 1:
        raise SynthError(f"--stays must be at least 1 (got {stays})")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SynthError(f"--out {out}: {probe} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        test = out / ".write-test"
        test.write_bytes(b"")
        test.unlink()
    except OSError as exc:
        raise SynthError(f"--out {out} is not writable: {exc.strerror or exc}") from exc


def generate(
    stays: int,
    seed: int,
    out: Path,
    density: str = "full",
    level: int = 3,
    progress: bool = True,
    live_share: float = LIVE_SHARE,
    site: str = DEFAULT_SITE,
) -> SynthResult:
    """Write a synthetic MIMIC-IV with `stays` ICU stays to `out` (hosp/, icu/, note/, _truth/). With
    `live_share` > 0 the data end at a present with that share of the patients in the ICU (present.py);
    0 gives a retrospective extract like MIMIC-IV's, every stay ended. `site` names the hospital (site.py):
    "a", the default, or "b", another case mix, death rate, lab analysers and note habits in the same
    tables."""
    out = Path(out)
    check_arguments(stays, out)
    if density not in ROUTINE_EVERY_H:
        raise SynthError(f"--density must be one of {sorted(ROUTINE_EVERY_H)} (got {density!r})")
    if not 0 <= live_share < 0.5:
        raise SynthError(f"--live-share must be at least 0 and below 0.5 (got {live_share})")
    if site not in SITES:
        raise SynthError(f"--site must be one of {sorted(SITES)} (got {site!r})")
    hospital_site = SITES[site]
    plan = make_plan(stays, seed, live_share, hospital_site)
    present = None
    if plan.now is not None:
        open_ = plan.stays["dischtime"] > plan.now
        present = Present(plan.now, frozenset(int(h) for h in plan.stays["hadm_id"][open_]))
    rows: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Small tables in one go.
        rng = np.random.default_rng([seed, 1])
        diag, codes = hospital.diagnoses(plan, rng)
        admissions = hospital.admissions(plan, rng)
        for name, tbl in (
            ("hosp/patients", hospital.patients(plan)),
            ("hosp/admissions", admissions),
            ("hosp/diagnoses_icd", diag),
            ("hosp/d_icd_diagnoses", hospital.d_icd_diagnoses(codes)),
            ("hosp/omr", hospital.omr(plan, rng)),
            ("hosp/services", hospital.services(plan, admissions, rng)),
            ("hosp/d_labitems", hospital.d_labitems()),
            ("icu/icustays", hospital.icustays(plan)),
            ("icu/d_items", hospital.d_items()),
        ):
            w = TableWriter(out, name, level, pool, present)
            w.write(tbl)
            w.close()
            rows[name] = w.rows

        writers = {name: TableWriter(out, name, level, pool, present) for name in CHUNKED_TABLES}
        truth_parts = []
        bounds = _chunk_bounds(plan.stays["patient"], CHUNK_STAYS)
        try:
            with _progress(progress) as bar:
                task = bar.add_task("synthetic MIMIC-IV", total=stays)
                for index, (lo, hi) in enumerate(bounds):
                    chunk = Chunk(index, {k: v[lo:hi] for k, v in plan.stays.items()}, hospital_site)
                    truth_parts.append(_write_chunk(chunk, seed, density, writers))
                    bar.update(task, advance=hi - lo)
            for w in writers.values():
                w.close()
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        rows.update({name: w.rows for name, w in writers.items()})
    truth_dir = out / "_truth"
    truth_dir.mkdir(exist_ok=True)
    pacsv.write_csv(pa.concat_tables(truth_parts), truth_dir / "stays.csv")
    _write_truth_readme(truth_dir / "README.md", hospital_site)
    # Written last: its presence says the folder is complete for these arguments.
    arguments = _arguments(stays, seed, density, live_share, site)
    if plan.now is not None:
        arguments["now"] = _iso(plan.now)
    (truth_dir / "arguments.json").write_text(json.dumps(arguments) + "\n")
    return SynthResult(out=out, stays=stays, rows=rows)


def _arguments(stays: int, seed: int, density: str, live_share: float, site: str = DEFAULT_SITE) -> dict:
    arguments = {"stays": stays, "seed": seed, "density": density, "live_share": live_share}
    if site != DEFAULT_SITE:  # site a's folders stay as they were before sites existed, byte for byte
        arguments["site"] = site
    return arguments | {"generator": GENERATOR_VERSION}


def _write_truth_readme(path: Path, site: Site) -> None:
    """TRUTH.md as it is; a site other than a appends what differs there (so site a's copy is unchanged)."""
    text = Path(__file__).with_name("TRUTH.md").read_bytes()
    if site.name != DEFAULT_SITE:
        text += (
            f"\n## Site {site.name}\n\nThese files come from site {site.name} (`site` in `arguments.json`; "
            f"pipelines/synth/site.py): {site.description}. `p_death_in_hospital` includes the site's shift of "
            f"the death log-odds, {site.death_logit_shift:+g}, which is in none of the three parts: "
            f"p = sigmoid({DEATH_INTERCEPT:g} {site.death_logit_shift:+g} + logit_static + logit_course + "
            "logit_note). `sofa_near_suspicion_expected` reads creatinine as the site's analyser reports it "
            "(without its noise).\n"
        ).encode()
    path.write_bytes(text)


def _iso(seconds: int) -> str:
    return np.datetime64(seconds, "s").astype(str)


def matches(
    out: Path, stays: int, seed: int, density: str, live_share: float = LIVE_SHARE, site: str = DEFAULT_SITE
) -> bool:
    """Whether `out` already holds a complete data set generated with these arguments."""
    stamp = Path(out) / "_truth" / "arguments.json"
    try:
        recorded = json.loads(stamp.read_text())
        recorded.pop("now", None)
        return recorded == _arguments(stays, seed, density, live_share, site)
    except (OSError, ValueError):
        return False


def _write_chunk(chunk: Chunk, seed: int, density: str, writers: dict[str, TableWriter]) -> pa.Table:
    def rng(k: int) -> np.random.Generator:
        return np.random.default_rng([seed, 2, chunk.index, k])

    writers["icu/chartevents"].write(events.chartevents(chunk, rng(0), ROUTINE_EVERY_H[density]))
    writers["hosp/labevents"].write(events.labevents(chunk, rng(1)))
    writers["icu/inputevents"].write(events.inputevents(chunk, rng(2)))
    writers["icu/outputevents"].write(events.outputevents(chunk, rng(3)))
    abx, cul = infection.infection_events(chunk, rng(4))
    writers["hosp/prescriptions"].write(infection.prescriptions(chunk, rng(5), abx))
    micro, cultures = infection.microbiologyevents(chunk, rng(6), cul)
    writers["hosp/microbiologyevents"].write(micro)
    writers["note/radiology"].write(notes.radiology(chunk, rng(7), {}))
    writers["note/discharge"].write(notes.discharge(chunk, rng(8), {}))
    return truth.stay_truth(chunk, infection.suspected_infection(chunk, abx, cultures))


def _chunk_bounds(patient: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[lo, hi) row ranges of about `size` stays that never split a patient."""
    bounds, lo = [], 0
    n = patient.size
    while lo < n:
        hi = min(lo + size, n)
        while hi < n and patient[hi] == patient[hi - 1]:
            hi += 1
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("stays"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )
