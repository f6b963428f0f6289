"""Who the model is for, as of a time: each stay's status in the intended population (docs/SCORING.md).

The model was trained on adults' first Sepsis-3 ICU stays at T = recognition + prediction_hours, in the
ICU at T. A stay is scored as of t only when the same holds at t: admitted by t, not out of the ICU (or dead)
by t, an adult, its patient's first Sepsis-3 ICU stay, recognised by t and at or after its T. Each fact in
stay_population.parquet (dbt) carries its time, so the status as of t uses only what was known at t: a stay
not yet recognised at t is "not recognised by t" whether or not it will be.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd

from .. import paths
from ..utc import naive_utc
from .store import FeatureStoreError

POPULATION_FILE = "stay_population.parquet"
Status = Literal[
    "in_population", "before_prediction_time", "outside_population", "not_in_icu", "not_admitted", "unknown_stay"
]
FACTS = (
    "intime",
    "outtime",
    "deathtime",
    "age",
    "is_adult",
    "is_first_sepsis3_stay",
    "recognition_time",
    "prediction_time",
)
# The statuses a stay outside the population may still be scored under with --allow-outside-population:
# a stay the data knows and that was admitted by t.
OVERRIDABLE = ("before_prediction_time", "outside_population", "not_in_icu")


@dataclass(frozen=True)
class StayStatus:
    stay_id: int
    status: Status
    reason: str | None  # why the stay is not in the population (None when it is)
    prediction_time: dt.datetime | None  # T, when Sepsis-3 was recognised by t

    @property
    def in_population(self) -> bool:
        return self.status == "in_population"


class Population:
    """stay_population.parquet of a data folder, re-read when the file changes (a rebuild under a service)."""

    def __init__(self, data: Path | None = None):
        self.path = Path(data or paths.data_dir()) / "features" / POPULATION_FILE
        self._stamp: tuple[int, int] | None = None
        self._stays = pd.DataFrame()
        self._records: dict[int, tuple] = {}

    @property
    def stays(self) -> pd.DataFrame:
        """Every ICU stay's facts, indexed by stay_id."""
        return self._load()

    def _load(self) -> pd.DataFrame:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise FeatureStoreError(
                f"{self.path} not found: run `sepsis-fusion build` (a build from before 0.3 lacks it)"
            ) from None
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            frame = duckdb.sql(f"SELECT * FROM '{self.path}' WHERE stay_id IS NOT NULL").df()
            self._stays, self._stamp = frame.set_index(frame["stay_id"].rename(None)), stamp
            # one plain record per stay: a request's statuses are dictionary lookups, not pandas indexing
            records = frame[list(FACTS)].astype(object).where(frame[list(FACTS)].notna(), None)
            self._records = dict(zip(frame["stay_id"].astype(int), records.itertuples(index=False, name="Facts")))
        return self._stays

    def status(self, stay_ids, as_of: dt.datetime) -> list[StayStatus]:
        """Each stay's status as of `as_of`, in the order given."""
        t = pd.Timestamp(naive_utc(as_of))
        self._load()  # again when the file changed
        out = []
        for stay in (int(s) for s in stay_ids):
            facts = self._records.get(stay)
            if facts is None:
                out.append(StayStatus(stay, "unknown_stay", f"stay {stay} is not in the data (no such ICU stay)", None))
                continue
            out.append(_status(stay, facts, t))
        return out

    def in_icu(self, as_of: dt.datetime) -> pd.DataFrame:
        """The stays in the ICU at `as_of`, each with its T and status: what `sepsis-fusion stays` lists."""
        t = pd.Timestamp(naive_utc(as_of))
        s = self.stays
        left = s["outtime"].le(t) | s["deathtime"].le(t)
        here = s.loc[s["intime"].le(t) & ~left].sort_values(["prediction_time", "stay_id"], na_position="last")
        here = here.reset_index(drop=True)
        statuses = self.status(here["stay_id"], t)
        return pd.DataFrame(
            {
                "stay_id": here["stay_id"].to_numpy(),
                "intime": here["intime"].to_numpy(),
                "prediction_time": [s.prediction_time for s in statuses],
                "hours_in_icu": ((t - here["intime"]) / pd.Timedelta(hours=1)).round(1).to_numpy(),
                "status": [s.status for s in statuses],
                "reason": [s.reason for s in statuses],
            }
        )

    def extract_time(self) -> dt.datetime | None:
        """The live extract's time (None for a retrospective extract such as MIMIC-IV)."""
        values = self.stays["extract_time"].dropna()
        return None if values.empty else values.iloc[0].to_pydatetime()


def _status(stay: int, row, t: pd.Timestamp) -> StayStatus:
    recognised = row.recognition_time is not None and row.recognition_time <= t
    prediction_time = row.prediction_time.to_pydatetime() if recognised else None
    if row.intime > t:
        return StayStatus(stay, "not_admitted", f"admitted to the ICU at {row.intime}, after {t}", None)
    for value, what in ((row.deathtime, "died"), (row.outtime, "left the ICU")):
        if value is not None and value <= t:
            return StayStatus(stay, "not_in_icu", f"{what} at {value}, before {t}", prediction_time)
    if not row.is_adult:
        return StayStatus(stay, "outside_population", f"age {row.age} at ICU admission: not an adult", None)
    if not recognised:
        return StayStatus(stay, "outside_population", f"Sepsis-3 not recognised from stored rows by {t}", None)
    if not row.is_first_sepsis3_stay:
        return StayStatus(stay, "outside_population", "not the patient's first Sepsis-3 ICU stay", prediction_time)
    if row.prediction_time > t:
        return StayStatus(
            stay,
            "before_prediction_time",
            f"Sepsis-3 recognised at {row.recognition_time}; scored from T = {row.prediction_time}",
            prediction_time,
        )
    return StayStatus(stay, "in_population", None, prediction_time)
