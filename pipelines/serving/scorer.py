"""Point-in-time scoring of a run folder on the Feast store: offline (historical retrieval, for backtests
and audits) and online (the online store, for scoring now).

Both paths build the same FeatureArrays and go through the same Predictor, so a stay scored online as of
t gets the score the offline path gives as of t (tests/test_scoring.py). Both score only the intended
population as of t (features/population.py): any other stay gets its status and the reason instead of a
probability, unless `allow_outside` (then it is scored and flagged, in_population false); a stay none of
whose static inputs is served is refused either way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.inputs import FeatureArrays
from sepsis_fusion.model.predictor import Predictor, Score

from ..features.layout import layout_from_service
from ..features.population import OVERRIDABLE, Population, StayStatus
from ..features.store import SERVICE_NAME, store_data_dir
from ..utc import naive_utc

# what a scored or refused stay's `status` is (the service's schema reads it from here)
ScoreStatus = Literal[
    "scored",
    "before_prediction_time",
    "outside_population",
    "not_in_icu",
    "not_admitted",
    "unknown_stay",
    "no_static_inputs",
]


class Scorer(Predictor):
    """A run folder bound to a Feast store whose feature service serves the features it was trained on."""

    def __init__(self, run_dir: Path, store, service: str = SERVICE_NAME, population: Population | None = None):
        super().__init__(run_dir)
        self.store = store
        self.service = service
        self.population = population or Population(store_data_dir(store))
        served = layout_from_service(store, service)
        differences = self.layout.differences(served)
        if differences:
            raise StudyError(
                f"the model in {self.run_dir} was trained on other features than the feature service "
                f"{service!r} serves now, so it will not score them: " + "; ".join(differences)
            )
        self._online = None

    def offline(self, stay_ids, as_of: datetime, explain: int = 0, allow_outside: bool = False) -> list[Score]:
        """Each stay as known at `as_of` (Feast get_historical_features, created-timestamp filtered); with
        `explain` > 0, the inputs that contributed most to each score."""
        as_of = naive_utc(as_of)

        def features(ids):
            return self.at_features(ids, [as_of] * len(ids))

        return self._score_population(stay_ids, as_of, features, explain, allow_outside)

    def at(self, stay_ids, times, explain: int = 0) -> list[Score]:
        """Each (stay, time) row as known at its own time (one point-in-time retrieval for all rows), whatever
        its population status (backtests at chosen times)."""
        return self.score(self.at_features(stay_ids, times), explain)

    def at_features(self, stay_ids, times) -> FeatureArrays:
        from ..features.training import historical_features

        return historical_features(self.store, self.layout, np.asarray(stay_ids, dtype=np.int64), times)

    def online(
        self,
        stay_ids,
        as_of: datetime | None = None,
        explain: int = 0,
        allow_outside: bool = False,
        observe: Callable[[FeatureArrays], None] | None = None,
    ) -> list[Score]:
        """Each stay from the online store as of `as_of` (default: now); rows past their ttl are dropped.
        `observe` is given the features read (the service's monitoring records the inputs it served)."""
        from .. import utc

        as_of = naive_utc(as_of) if as_of is not None else utc.now()

        def read(ids):
            features = self.online_features(ids, as_of)
            if observe is not None:
                observe(features)
            return features

        return self._score_population(stay_ids, as_of, read, explain, allow_outside)

    def online_features(self, stay_ids, as_of: datetime | None = None) -> FeatureArrays:
        """The online store's features of each stay as of `as_of` (default: now), as the model reads them."""
        from ..features.online import OnlineFeatures

        if self._online is None:
            self._online = OnlineFeatures(self.store, self.service)
        return self._online.read(stay_ids, as_of)

    def _score_population(self, stay_ids, as_of: datetime, read, explain: int, allow_outside: bool) -> list[Score]:
        """Statuses first (no read for a stay that will not be scored), then the features of the rest, then
        the model on those with a static input served."""
        ids = [int(s) for s in stay_ids]
        statuses = self.population.status(ids, as_of)
        wanted = [
            i for i, st in enumerate(statuses) if st.in_population or (allow_outside and st.status in OVERRIDABLE)
        ]
        scores: dict[int, Score] = {}
        if wanted:
            features = read([ids[i] for i in wanted])
            has_static = ~np.isnan(features.static_numeric).all(axis=1) | (
                features.static_categorical != None  # noqa: E711 (elementwise)
            ).any(axis=1)
            n_static = len(self.layout.static)
            for j, (k, score) in enumerate(zip(wanted, self.score(features, explain, has_static))):
                scores[k] = _with_status(score, statuses[k], bool(has_static[j]), n_static)
        return [scores.get(i) or _not_scored(statuses[i], as_of) for i in range(len(ids))]


def _with_status(score: Score, status: StayStatus, has_static: bool, n_static: int) -> Score:
    if not has_static:
        score.status = "no_static_inputs"
        score.reason = f"none of the {n_static} static inputs is served as of {score.as_of}: not scored"
        score.probability = score.decision = None
    elif status.in_population:
        score.status = "scored"
    else:
        score.status = "scored"
        score.reason = f"outside the intended population ({status.reason}); scored with --allow-outside-population"
    score.in_population = status.in_population
    return score


def _not_scored(status: StayStatus, as_of: datetime) -> Score:
    return Score(
        status.stay_id,
        as_of,
        False,
        None,
        None,
        {},
        status=status.status,
        reason=status.reason,
        in_population=False,
    )


def prediction_frame(scores: list[Score], time_column: str, index) -> pd.DataFrame:
    """Scores of (stay, time) rows as `Run.predict` and the MLflow model answer them: stay_id, the time,
    known, the calibrated probability (NaN unscored) and the decision; `index` aligned with the input frame."""
    return pd.DataFrame(
        {
            "stay_id": [s.stay_id for s in scores],
            time_column: [s.as_of for s in scores],
            "known": [s.known for s in scores],
            "probability": [np.nan if s.probability is None else s.probability for s in scores],
            "decision": [s.decision for s in scores],
        },
        index=index,
    )
