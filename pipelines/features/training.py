"""Point-in-time training sets from Feast: for every cohort stay, what was known at its prediction time.

The entity dataframe has one row per stay at its prediction time T. Feast's point-in-time join serves each
view's latest row at or before T within the view's ttl, and, with filter_by_created_timestamp, only rows
created by T; the step views' lags turn that into the S steps ending at the last whole hour before T, and
the note slots into the last N notes available at T.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from sepsis_fusion.model.inputs import FeatureArrays, FeatureLayout, TrainingSet, arrays_from_columns

from .. import paths
from .layout import full_name, layout_from_service
from .store import SERVICE_NAME, FeatureStoreError, open_store


def read_cohort(data: Path | None = None) -> pd.DataFrame:
    path = Path(data or paths.data_dir()) / "features" / "cohort.parquet"
    if not path.exists():
        raise FeatureStoreError(f"{path} not found: run `sepsis-fusion build` first")
    # dbt writes one all-NULL row into an empty external model to keep its schema
    cohort = duckdb.sql(f"SELECT * FROM '{path}' WHERE stay_id IS NOT NULL ORDER BY stay_id").df()
    cohort["prediction_time"] = cohort["prediction_time"].astype("datetime64[us]")
    return cohort


def read_cohort_flow(data: Path | None = None) -> pd.DataFrame | None:
    """The cohort flow written beside the cohort (None for a build from before it was written)."""
    path = Path(data or paths.data_dir()) / "features" / "cohort_flow.parquet"
    return duckdb.sql(f"SELECT * FROM '{path}' ORDER BY step").df() if path.exists() else None


def in_icu(cohort: pd.DataFrame, when) -> list[int]:
    """The cohort stays in the ICU at `when` (admitted by then, not yet out)."""
    return cohort.loc[(cohort["intime"] <= when) & (cohort["outtime"] >= when), "stay_id"].tolist()


def entity_frame(stay_ids, times) -> pd.DataFrame:
    """Feast's entity dataframe: one row per (stay, time)."""
    times = pd.Series(pd.to_datetime(times)).dt.floor("us").astype("datetime64[us]")
    frame = pd.DataFrame(
        {
            "stay_id": np.asarray(stay_ids, dtype=np.int64),
            "event_timestamp": times.to_numpy(),
            "entity_row": np.arange(len(times), dtype=np.int64),
        }
    )
    return frame


def historical_features(
    store, layout: FeatureLayout, stay_ids, times, filter_by_created_timestamp: bool = True
) -> FeatureArrays:
    """The model's inputs for each (stay, time), as known at that time (Feast get_historical_features)."""
    entities = entity_frame(stay_ids, times)
    job = store.get_historical_features(
        entity_df=entities,
        features=store.get_feature_service(layout.service),
        full_feature_names=True,
        filter_by_created_timestamp=filter_by_created_timestamp,
    )
    frame = job.to_df().sort_values("entity_row").reset_index(drop=True)
    if len(frame) != len(entities):
        raise FeatureStoreError(f"Feast returned {len(frame)} rows for {len(entities)} entity rows")

    def numbers(view: str, features: list[str]) -> np.ndarray:
        return frame[[full_name(view, f) for f in features]].to_numpy(dtype=np.float64, na_value=np.nan)

    return arrays_from_columns(
        layout,
        numbers,
        lambda view, feature: frame[full_name(view, feature)].tolist(),
        frame["stay_id"].to_numpy(),
        frame["event_timestamp"].dt.tz_localize(None).to_numpy(),
    )


def training_set(data: Path | None = None, store=None, service: str = SERVICE_NAME) -> TrainingSet:
    """Every cohort stay at its prediction time, with its labels (cohort mart) and its features (Feast)."""
    data = Path(data or paths.data_dir())
    store = store or open_store(data)
    cohort = read_cohort(data)
    layout = layout_from_service(store, service)
    features = historical_features(store, layout, cohort["stay_id"], cohort["prediction_time"])
    return TrainingSet(features, cohort, read_cohort_flow(data))
