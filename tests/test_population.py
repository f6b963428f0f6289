"""The intended population as of a time (pipelines/features/population.py): each status from facts known by
then, planted rows that would leak a later fact, and the stays listed in the ICU."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from sepsis_fusion.pipelines.features.population import Population
from sepsis_fusion.pipelines.features.store import FeatureStoreError

T0 = datetime(2180, 1, 1)


def ts(hours: float) -> pd.Timestamp:
    return pd.Timestamp(T0) + pd.Timedelta(hours=hours)


def stay(stay_id, intime=0, outtime=None, deathtime=None, age=60, first=True, recognised=None, extract=None):
    return {
        "stay_id": stay_id,
        "subject_id": stay_id,
        "intime": ts(intime),
        "outtime": None if outtime is None else ts(outtime),
        "deathtime": None if deathtime is None else ts(deathtime),
        "age": age,
        "is_adult": age >= 18,
        "is_first_sepsis3_stay": first,
        "recognition_time": None if recognised is None else ts(recognised),
        "prediction_time": None if recognised is None else ts(recognised + 24),
        "in_cohort": first and recognised is not None,
        "extract_time": extract,
    }


@pytest.fixture
def population(tmp_path) -> Population:
    rows = [
        stay(1, recognised=10),  # in the population from hour 34 while in the ICU
        stay(2, recognised=50),  # recognised later than the time asked: must not show as before_prediction_time
        stay(3, outtime=30, recognised=10),  # left the ICU before its T
        stay(4, recognised=10, first=False),  # not the patient's first Sepsis-3 stay
        stay(5, intime=100, recognised=110),  # admitted after the time asked
        stay(6, age=16, recognised=10),
        stay(7, deathtime=40, outtime=40, recognised=2),  # died at hour 40
        stay(8),  # never recognised
    ]
    (tmp_path / "features").mkdir()
    frame = pd.DataFrame(rows)
    for column in ("outtime", "deathtime", "recognition_time", "prediction_time", "extract_time"):
        frame[column] = pd.to_datetime(frame[column])
    frame.to_parquet(tmp_path / "features" / "stay_population.parquet")
    return Population(tmp_path)


def statuses(population, hours, ids=range(1, 10)):
    return {s.stay_id: (s.status, s.reason) for s in population.status(list(ids), ts(hours).to_pydatetime())}


def test_each_status_from_what_was_known_at_the_time(population):
    at = statuses(population, 36)
    assert at[1] == ("in_population", None)
    assert at[2][0] == "outside_population" and "not recognised" in at[2][1]
    assert at[3][0] == "not_in_icu" and "left the ICU" in at[3][1]
    assert at[4] == ("outside_population", "not the patient's first Sepsis-3 ICU stay")
    assert at[5][0] == "not_admitted"
    assert at[6][0] == "outside_population" and "not an adult" in at[6][1]
    assert at[7][0] == "in_population"  # dies at hour 40, after the time asked
    assert at[8][0] == "outside_population"
    assert at[9][0] == "unknown_stay" and "no such ICU stay" in at[9][1]


def test_later_facts_are_not_used(population):
    """Stay 2's recognition (hour 50) and stay 7's death (hour 40) are in the file; as of hour 20 neither
    is known yet, so stay 2 reads as not recognised, and stay 7 as still in the ICU (before its T, hour 26)."""
    at = statuses(population, 20)
    assert at[1][0] == "before_prediction_time" and "T = 2180-01-02 10:00:00" in at[1][1]
    assert at[2][0] == "outside_population"
    assert at[7][0] == "before_prediction_time"
    assert statuses(population, 41)[7][0] == "not_in_icu"
    assert statuses(population, 60)[2][0] == "before_prediction_time"
    assert statuses(population, 74)[2][0] == "in_population"


def test_in_icu_lists_the_stays_present_with_their_status(population):
    listed = population.in_icu(ts(36).to_pydatetime())
    assert set(listed.stay_id) == {1, 2, 4, 6, 7, 8}  # 3 left, 5 not admitted
    assert listed.set_index("stay_id").loc[1, "status"] == "in_population"
    assert listed.set_index("stay_id").loc[1, "hours_in_icu"] == 36.0


def test_a_rebuilt_file_is_read_again(population, tmp_path):
    assert statuses(population, 36, [9])[9][0] == "unknown_stay"
    frame = pd.read_parquet(population.path)
    extra = pd.DataFrame([stay(9, recognised=1)])
    frame = pd.concat([frame, extra.astype(frame.dtypes.to_dict())], ignore_index=True)
    frame.to_parquet(population.path)
    assert statuses(population, 36, [9])[9][0] == "in_population"


def test_a_build_without_the_file_says_what_to_run(tmp_path):
    with pytest.raises(FeatureStoreError, match="sepsis-fusion build"):
        Population(tmp_path).status([1], T0)
