"""The hospital a synthetic MIMIC-IV comes from: site "a" (the default) and a second site "b" to validate on.

A site is a handful of numbers the generator reads where it draws: the case mix (age, sex, comorbidity,
admission types), the in-hospital death log-odds at the same physiology, the lab analysers (bias and
spread of a few labs) and how often labs are drawn, and the note habits (how many films are reported,
and in what words). Everything else, the tables, columns, itemids, units and vocabularies, is MIMIC-IV's
at every site, so the same dbt project builds them into the same features.

Site a is the generator as it was before sites existed: its values are the ones the code used, and it
takes no extra random draw, so a seed gives the same files byte for byte with or without `--site a`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import vocabulary as V


@dataclass(frozen=True)
class Analyser:
    """How a site's analyser reports a lab: `scale * value + offset`, times (1 + `cv` * noise).

    The bias (scale, offset) moves every result; `cv` widens the spread with noise of its own. The
    noise-free reading (`expected`) is what the truth's SOFA uses."""

    scale: float = 1.0
    offset: float = 0.0
    cv: float = 0.0

    def expected(self, value: np.ndarray) -> np.ndarray:
        return self.scale * value + self.offset

    def report(self, rng: np.random.Generator, value: np.ndarray) -> np.ndarray:
        return self.expected(value) * (1 + self.cv * rng.standard_normal(value.size))


@dataclass(frozen=True)
class Site:
    name: str
    description: str
    # Case mix: age at the first stay ~ normal(mean, sd), clipped to 18-91; share of women; each
    # Charlson code's base rate times `comorbidity_scale`; admission types (V.ADMISSION_TYPES_ICU order).
    age_mean: float = 64.0
    age_sd: float = 16.0
    female_share: float = 0.44
    comorbidity_scale: float = 1.0
    admission_type_weights: tuple[float, ...] = tuple(V.ADMISSION_TYPES_WEIGHTS)
    # Added to the in-hospital death log-odds of every stay (the same physiology dies more often).
    death_logit_shift: float = 0.0
    # Lab analysers by lab name (physiology.lab_values); labs not named are reported as drawn.
    analysers: dict[str, Analyser] = field(default_factory=dict)
    # The routine lab panels are drawn every `lab_every_factor` times the usual interval.
    lab_every_factor: float = 1.0
    # Radiology: share of the grid's admission films and daily films that get a report.
    first_film_keep: float = 0.85
    daily_film_keep: float = 0.45
    # Report wording: "full" (MIMIC-IV's long sentences) or "brief" (short, abbreviated lines).
    note_style: str = "full"

    def analyse(self, rng: np.random.Generator, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Lab values as this site's analysers report them (no draw for a lab without an analyser)."""
        return {k: (self.analysers[k].report(rng, v) if k in self.analysers else v) for k, v in values.items()}

    def expected_lab(self, name: str, value: np.ndarray) -> np.ndarray:
        analyser = self.analysers.get(name)
        return value if analyser is None else analyser.expected(value)


SITE_A = Site(name="a", description="the default hospital: the generator as documented in docs/SYNTHETIC.md")

SITE_B = Site(
    name="b",
    description=(
        "a second hospital: older, more emergency and medical admissions, more women and comorbidity; "
        "higher in-hospital death at the same physiology; another lactate, creatinine and sodium analyser; "
        "fewer lab draws; fewer and briefer radiology reports and discharge summaries"
    ),
    age_mean=71.0,
    age_sd=13.0,
    female_share=0.52,
    comorbidity_scale=1.3,
    #                        EW EMER., URGENT, ELECTIVE, DIRECT EMER., SURGICAL SAME DAY, OBSERVATION
    admission_type_weights=(0.66, 0.14, 0.04, 0.10, 0.03, 0.03),
    death_logit_shift=0.6,
    analysers={
        "lactate": Analyser(scale=1.2, offset=0.1, cv=0.12),  # whole-blood analyser, reads high
        "creatinine": Analyser(scale=1.1, offset=0.15, cv=0.08),  # Jaffe method, reads high
        "sodium": Analyser(offset=-2.0, cv=0.01),  # direct ISE
    },
    lab_every_factor=1.6,
    first_film_keep=0.7,
    daily_film_keep=0.3,
    note_style="brief",
)

SITES = {site.name: site for site in (SITE_A, SITE_B)}
DEFAULT_SITE = SITE_A.name


def get_site(name: str) -> Site:
    """The site called `name`; KeyError for an unknown one (generate.py turns it into a usage error)."""
    return SITES[name]
