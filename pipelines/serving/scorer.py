"""Point-in-time scoring of a run folder on the Feast store: offline (historical retrieval, for backtests
and audits) and online (the online store, for scoring now).

Both paths build the same FeatureArrays and go through the same Predictor, so a stay scored online as of
t gets the score the offline path gives as of t (tests/test_scoring.py).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from sepsis_fusion.model.errors import StudyError
from sepsis_fusion.model.inputs import FeatureArrays
from sepsis_fusion.model.predictor import Predictor, Score

from ..features.layout import layout_from_service
from ..features.store import SERVICE_NAME
from ..utc import naive_utc


class Scorer(Predictor):
    """A run folder bound to a Feast store whose feature service serves the features it was trained on."""

    def __init__(self, run_dir: Path, store, service: str = SERVICE_NAME):
        super().__init__(run_dir)
        self.store = store
        self.service = service
        served = layout_from_service(store, service)
        differences = self.layout.differences(served)
        if differences:
            raise StudyError(
                f"the model in {self.run_dir} was trained on other features than the feature service "
                f"{service!r} serves now, so it will not score them: " + "; ".join(differences)
            )
        self._online = None

    def offline(self, stay_ids, as_of: datetime, explain: int = 0) -> list[Score]:
        """Each stay as known at `as_of` (Feast get_historical_features, created-timestamp filtered); with
        `explain` > 0, the inputs that contributed most to each score."""
        return self.at(stay_ids, [naive_utc(as_of)] * len(stay_ids), explain)

    def at(self, stay_ids, times, explain: int = 0) -> list[Score]:
        """Each (stay, time) row as known at its own time (one point-in-time retrieval for all rows)."""
        from ..features.training import historical_features

        features = historical_features(self.store, self.layout, np.asarray(stay_ids, dtype=np.int64), times)
        return self.score(features, explain)

    def online(self, stay_ids, as_of: datetime | None = None, explain: int = 0) -> list[Score]:
        """Each stay from the online store as of `as_of` (default: now); rows past their ttl are dropped."""
        return self.score(self.online_features(stay_ids, as_of), explain)

    def online_features(self, stay_ids, as_of: datetime | None = None) -> FeatureArrays:
        """The online store's features of each stay as of `as_of` (default: now), as the model reads them."""
        from ..features.online import OnlineFeatures

        if self._online is None:
            self._online = OnlineFeatures(self.store, self.service)
        return self._online.read(stay_ids, as_of)
