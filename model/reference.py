"""The training reference a run folder keeps for monitoring what is served (reference.json), and the
population stability index (PSI) that compares served inputs with it.

Written by `train` beside the model: for each input the model reads as a number (the static numeric
features, each panel feature's last value known at T, i.e. at the sequence's latest step, and the number of
notes available), fixed bin edges (the deciles of the training part's values; ties merged) with the
training part's share per bin and its share missing; and the training part's calibrated out-of-fold
probabilities, binned the same way and as a 20-bin histogram for plots. The service and
`sepsis-fusion monitor` bin what they serve with these edges and compare.

PSI = sum over the bins (the missing share counting as one) of (a - e) * ln(a / e), a the served share,
e the training share, each floored at 1e-4 so that an empty bin counts without dividing by zero. The usual
reading: below 0.1 stable, 0.1 to 0.25 a moderate shift (look), above 0.25 a major shift (the model sees
another population than it was trained on). With few stays served, the figure is noisy: a few hundred stays
make it readable.

Which inputs are monitored: the `top` most important by importance.csv (written by `evaluate`; a note
rank counts as the note count), else every input of the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import run_folder
from .inputs import FeatureArrays

PSI_FLOOR = 1e-4
PSI_MODERATE, PSI_MAJOR = 0.1, 0.25
DEFAULT_TOP = 10
NOTE_COUNT = "note_count"
PROBABILITY = "probability"
HISTOGRAM_EDGES = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 21))  # probability plots: 0.05 wide


def psi(expected, actual, floor: float = PSI_FLOOR) -> float:
    """Population stability index of shares `actual` against `expected` (same bins, each summing to 1)."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_reading(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "no figure"
    return "stable" if value < PSI_MODERATE else "moderate shift" if value <= PSI_MAJOR else "major shift"


def decile_edges(values) -> list[float]:
    """Inner bin edges: the deciles of the values present (NaN missing), values observed, ties merged."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if not len(v):
        return []
    return [float(x) for x in np.unique(np.quantile(v, np.linspace(0.1, 0.9, 9), method="inverted_cdf"))]


def bin_shares(values, edges) -> np.ndarray:
    """Each bin's share of the values: len(edges) + 1 bins, right-closed ((-inf, e1], (e1, e2], ...,
    (ek, inf)), then the share missing (NaN); zeros when there are no values."""
    v = np.asarray(values, dtype=float)
    missing = np.isnan(v)
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), v[~missing], side="left"),
                         minlength=len(edges) + 1)  # fmt: skip
    counts = np.append(counts, missing.sum()).astype(float)
    return counts / len(v) if len(v) else counts


def psi_of(reference_values, served_values) -> float:
    """PSI of served values against reference values, on the reference's decile bins."""
    edges = decile_edges(reference_values)
    return psi(bin_shares(reference_values, edges), bin_shares(served_values, edges))


def input_values(features: FeatureArrays) -> dict[str, np.ndarray]:
    """The inputs the reference keeps, per row: static numeric features, each panel feature's value at the
    sequence's latest step (NaN when unknown or no step served) and, with a note branch, the notes available."""
    lo = features.layout
    out = {name: features.static_numeric[:, j].astype(float) for j, name in enumerate(lo.numeric_static)}
    if lo.panel and features.sequence.shape[1]:
        latest = np.where(features.sequence_mask[:, -1:], features.sequence[:, -1, :], np.nan).astype(float)
        for j, name in enumerate(lo.panel):
            out[name if name not in out else f"{name}_latest"] = latest[:, j]
    if lo.note_views:
        out[NOTE_COUNT] = features.note_mask.sum(axis=1).astype(float)
    return out


def input_modalities(features: FeatureArrays) -> dict[str, str]:
    lo = features.layout
    names = list(input_values(features.take(slice(0, 0))))
    n_static = len(lo.numeric_static)
    return {n: "static" if i < n_static else "notes" if n == NOTE_COUNT else "sequence" for i, n in enumerate(names)}


@dataclass
class Binned:
    """One input's (or the probability's) training distribution on fixed bins."""

    name: str
    modality: str
    edges: list[float]
    shares: list[float]  # len(edges) + 1 bins, then missing

    def served_shares(self, values) -> np.ndarray:
        return bin_shares(values, self.edges)

    def psi(self, values) -> float | None:
        """PSI of these served values (None without any)."""
        v = np.asarray(values, dtype=float)
        return psi(self.shares, self.served_shares(v)) if len(v) else None

    def to_dict(self) -> dict:
        return {"modality": self.modality, "edges": self.edges, "shares": self.shares}

    @classmethod
    def of(cls, name: str, modality: str, values) -> Binned:
        edges = decile_edges(values)
        return cls(name, modality, edges, [float(x) for x in bin_shares(values, edges)])


@dataclass
class Reference:
    stays: int
    inputs: dict[str, Binned]
    probability: Binned
    histogram: list[float]  # the training probabilities' share per HISTOGRAM_EDGES bin
    histogram_edges: list[float] = field(default_factory=lambda: list(HISTOGRAM_EDGES))

    def to_dict(self) -> dict:
        return {
            "stays": self.stays,
            "bins": "deciles of the training part's values, right-closed; the last share is the share missing",
            "inputs": {name: b.to_dict() for name, b in self.inputs.items()},
            "probability": {
                **self.probability.to_dict(),
                "histogram_edges": self.histogram_edges,
                "histogram": self.histogram,
            },  # fmt: skip
        }

    @classmethod
    def from_dict(cls, d: dict) -> Reference:
        p = d["probability"]
        return cls(
            int(d["stays"]),
            {n: Binned(n, b["modality"], list(b["edges"]), list(b["shares"])) for n, b in d["inputs"].items()},
            Binned(PROBABILITY, "output", list(p["edges"]), list(p["shares"])),
            list(p["histogram"]),
            list(p["histogram_edges"]),
        )

    def psi(self, values: dict[str, np.ndarray], names) -> dict[str, float | None]:
        """PSI of each named input's served values against the reference."""
        return {n: self.inputs[n].psi(values.get(n, [])) for n in names if n in self.inputs}


def build_reference(features: FeatureArrays, probabilities) -> Reference:
    """The reference of a training part: its inputs and its calibrated out-of-fold probabilities."""
    values, modalities = input_values(features), input_modalities(features)
    p = np.asarray(probabilities, dtype=float)
    hist = np.histogram(p[~np.isnan(p)], bins=HISTOGRAM_EDGES)[0]
    return Reference(
        len(features),
        {n: Binned.of(n, modalities[n], v) for n, v in values.items()},
        Binned.of(PROBABILITY, "output", p),
        [float(x) for x in hist / max(hist.sum(), 1)],
    )


def write_reference(run_dir: str | Path, features: FeatureArrays, probabilities) -> Path:
    """reference.json of a run folder (or its work folder) from its training part."""
    return run_folder.RunFolder(run_dir).write_json(
        run_folder.REFERENCE, build_reference(features, probabilities).to_dict(), indent=1
    )


def load_reference(run_dir: str | Path) -> Reference | None:
    """A run folder's reference; None for a run trained before it was written (no reference.json)."""
    folder = run_folder.RunFolder(run_dir)
    if not folder.has(run_folder.REFERENCE):
        return None
    try:
        return Reference.from_dict(folder.read_json(run_folder.REFERENCE))
    except (KeyError, TypeError, ValueError) as exc:
        from .errors import StudyError

        raise StudyError(f"{folder.file(run_folder.REFERENCE)} lacks or misstates {exc!r}: train again") from None


def monitored_inputs(run_dir: str | Path, reference: Reference, top: int = DEFAULT_TOP) -> tuple[list[str], str]:
    """The inputs to monitor and how they were chosen: the `top` most important by importance.csv (a note
    rank counts as the note count; categorical inputs have no reference), else every input."""
    folder = run_folder.RunFolder(run_dir)
    if not folder.has(run_folder.IMPORTANCE):
        return list(reference.inputs), f"every input ({len(reference.inputs)}: no importance.csv, run `evaluate`)"
    table = pd.read_csv(folder.file(run_folder.IMPORTANCE))
    chosen: list[str] = []
    for name, modality in zip(table["input"], table["modality"]):
        name = NOTE_COUNT if modality == "notes" else str(name)
        if name in reference.inputs and name not in chosen:
            chosen.append(name)
        if len(chosen) == top:
            break
    return chosen, f"the {len(chosen)} most important by importance.csv"
