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
from tqdm.auto import tqdm

from sepsis_fusion.model.inputs import (
    OUTCOMES,
    FeatureArrays,
    FeatureLayout,
    TrainingSet,
    arrays_from_columns,
    as_vector,
)

from .. import paths
from .layout import full_name, layout_from_service
from .store import SERVICE_NAME, FeatureStoreError, open_store


def read_cohort(data: Path | None = None, outcome_known: bool = False) -> pd.DataFrame:
    """The cohort mart; with `outcome_known`, only the stays whose labels are known (what training and
    evaluation read: a live extract's open stays are left out)."""
    path = Path(data or paths.data_dir()) / "features" / "cohort.parquet"
    if not path.exists():
        raise FeatureStoreError(f"{path} not found: run `sepsis-fusion build` first")
    # dbt writes one all-NULL row into an empty external model to keep its schema
    cohort = duckdb.sql(f"SELECT * FROM '{path}' WHERE stay_id IS NOT NULL ORDER BY stay_id").df()
    cohort["prediction_time"] = cohort["prediction_time"].astype("datetime64[us]")
    if outcome_known and "outcome_known" in cohort:  # a build from before 0.3 knows every outcome
        cohort = cohort.loc[cohort["outcome_known"].astype(bool)].reset_index(drop=True)
        for label in OUTCOMES:
            cohort[label] = cohort[label].astype(bool)
    return cohort


def read_cohort_flow(data: Path | None = None) -> pd.DataFrame | None:
    """The cohort flow written beside the cohort (None for a build from before it was written)."""
    path = Path(data or paths.data_dir()) / "features" / "cohort_flow.parquet"
    return duckdb.sql(f"SELECT * FROM '{path}' ORDER BY step").df() if path.exists() else None


def read_cohort_excluded(data: Path | None = None) -> pd.DataFrame | None:
    """The first Sepsis-3 stays that did not reach the cohort, with the reason (None for an older build)."""
    path = Path(data or paths.data_dir()) / "features" / "cohort_excluded.parquet"
    if not path.exists():
        return None
    return duckdb.sql(f"SELECT * FROM '{path}' WHERE stay_id IS NOT NULL ORDER BY stay_id").df()


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


# Feature views per point-in-time query. Feast compiles one query joining every view, at a cost that grows
# faster than the views joined and hardly with the rows. On DuckDB (ibis) the service's 33 views took 6.3 s
# for 8 entity rows and 7.3 s for 1,838 as one query, 3.1 s and 4.0 s in groups of 3; on Spark (Catalyst)
# 44.6 s for the open demo's 41 rows as one query, 11.5 s in groups of 3 (bench/bench_retrieval_groups.py).
# Each view's join is independent, so the groups' answers side by side are the one query's.
VIEWS_PER_QUERY = 3


def _retrieve(store, features, stay_ids, times, filter_by_created_timestamp: bool = True) -> pd.DataFrame:
    """Feast's point-in-time answer for each (stay, time), in the order given, full feature names.
    `features`: a feature service or "view:feature" references."""
    entities = entity_frame(stay_ids, times)
    answers = []
    for refs in _query_groups(features):
        job = store.get_historical_features(
            entity_df=entities,
            features=refs,
            full_feature_names=True,
            filter_by_created_timestamp=filter_by_created_timestamp,
        )
        answer = job.to_df().sort_values("entity_row").reset_index(drop=True)
        if len(answer) != len(entities):
            raise FeatureStoreError(f"Feast returned {len(answer)} rows for {len(entities)} entity rows")
        answers.append(answer if not answers else answer.drop(columns=list(entities.columns)))
    return pd.concat(answers, axis=1)


def _query_groups(features) -> list[list[str]]:
    """The queries a retrieval is made of: "view:feature" references in groups of VIEWS_PER_QUERY views."""
    if isinstance(features, list):
        by_view: dict[str, list[str]] = {}
        for ref in features:
            by_view.setdefault(ref.split(":", 1)[0], []).append(ref)
    else:
        by_view = {p.name: [f"{p.name}:{f.name}" for f in p.features] for p in features.feature_view_projections}
    views = list(by_view.values())
    return [sum(views[i : i + VIEWS_PER_QUERY], []) for i in range(0, len(views), VIEWS_PER_QUERY)]


RETRIEVAL_ROWS = 4096  # entity rows per point-in-time retrieval: bounds Feast's frame at any cohort size


def historical_features(
    store,
    layout: FeatureLayout,
    stay_ids,
    times,
    filter_by_created_timestamp: bool = True,
    chunk_rows: int = RETRIEVAL_ROWS,
) -> FeatureArrays:
    """The model's inputs for each (stay, time), as known at that time (Feast get_historical_features).

    Retrieved `chunk_rows` entity rows at a time and assembled chunk by chunk into the compact arrays, so
    Feast's wide pandas frame (thousands of columns, embeddings as Python lists) never holds the cohort."""
    service = store.get_feature_service(layout.service)
    stay_ids, times = np.asarray(stay_ids, dtype=np.int64), pd.Series(pd.to_datetime(times))
    parts = []
    for rows in _chunks(len(stay_ids), chunk_rows, "point-in-time retrieval"):
        frame = _retrieve(store, service, stay_ids[rows], times.iloc[rows], filter_by_created_timestamp)

        def numbers(view: str, features: list[str], frame=frame) -> np.ndarray:
            return frame[[full_name(view, f) for f in features]].to_numpy(dtype=np.float64, na_value=np.nan)

        parts.append(
            arrays_from_columns(
                layout,
                numbers,
                lambda view, feature, frame=frame: frame[full_name(view, feature)].tolist(),
                frame["stay_id"].to_numpy(),
                frame["event_timestamp"].dt.tz_localize(None).to_numpy(),
            )
        )
    return FeatureArrays.concat(parts)


def _chunks(n: int, size: int, what: str):
    """Slices of `size` rows covering n (one empty slice when n is 0), with a progress bar when several."""
    starts = range(0, max(n, 1), size)
    for start in tqdm(starts, desc=what, unit="chunk", disable=len(starts) < 2, leave=False):
        yield slice(start, start + size)


def training_set(data: Path | None = None, store=None, service: str = SERVICE_NAME) -> TrainingSet:
    """Every cohort stay whose outcome is known, at its prediction time, with its labels (cohort mart) and its
    features (Feast)."""
    data = Path(data or paths.data_dir())
    store = store or open_store(data)
    cohort = read_cohort(data, outcome_known=True)
    layout = layout_from_service(store, service)
    features = historical_features(store, layout, cohort["stay_id"], cohort["prediction_time"])
    from ..embed.run import read_encoder_record

    encoder = read_encoder_record(data / "features")
    return TrainingSet(features, cohort, read_cohort_flow(data), read_cohort_excluded(data), encoder)


AGGREGATES_VIEW = "windows_24h"


def training_frame(
    data: Path | None = None, store=None, service: str = SERVICE_NAME, notes: bool = False
) -> pd.DataFrame:
    """The cohort at its prediction times as one flat frame for tabular models and analysis: the cohort's
    columns (ids, prediction time, labels), the static baseline, the 24-hour aggregates of every panel
    feature ending at the last whole hour before T (`<feature>_<min|max|mean|std|count|last>_24h`) and,
    with `notes`, how many notes were available at T and the mean of their embeddings
    (`note_embedding_<k>`). One point-in-time retrieval from Feast, created-timestamp filtered, as the
    training set's. A cohort column that is also a static feature (age) comes once, from the static view.
    Only stays whose outcome is known, as the training set."""
    data = Path(data or paths.data_dir())
    store = store or open_store(data)
    cohort = read_cohort(data, outcome_known=True)
    layout = layout_from_service(store, service)
    aggregates = [f.name for f in store.get_feature_view(AGGREGATES_VIEW).features]
    refs = [f"{layout.static_view}:{f}" for f in layout.static] + [f"{AGGREGATES_VIEW}:{f}" for f in aggregates]
    if notes:
        refs += [f"{view}:embedding" for view in layout.note_views]
    columns = {full_name(layout.static_view, f): f for f in layout.static}
    columns.update({full_name(AGGREGATES_VIEW, f): f"{f}_24h" for f in aggregates})
    parts = []
    for rows in _chunks(len(cohort), RETRIEVAL_ROWS, "point-in-time retrieval"):
        answer = _retrieve(store, refs, cohort["stay_id"].iloc[rows], cohort["prediction_time"].iloc[rows])
        part = answer[list(columns)].rename(columns=columns)
        parts.append(pd.concat([part, _note_means(answer, layout)], axis=1) if notes else part)
    cohort = cohort.drop(columns=[c for c in layout.static if c in cohort])  # e.g. age: the static view's
    answers = pd.concat(parts, ignore_index=True)  # a chunk without notes lacks the embedding columns: NaN
    return pd.concat([cohort.reset_index(drop=True), answers], axis=1)


def _note_means(answer: pd.DataFrame, layout: FeatureLayout) -> pd.DataFrame:
    """Per row: the number of notes served and the mean of their embeddings (NaN without a note)."""
    slots = [[as_vector(v) for v in answer[full_name(view, "embedding")]] for view in layout.note_views]
    dim = next((len(v) for slot in slots for v in slot if v is not None), 0)
    total, count = np.zeros((len(answer), dim)), np.zeros(len(answer))
    for slot in slots:
        for i, v in enumerate(slot):
            if v is not None and len(v) == dim:
                total[i] += v
                count[i] += 1
    with np.errstate(invalid="ignore"):
        means = total / count[:, None]
    out = pd.DataFrame(means, columns=[f"note_embedding_{k:03d}" for k in range(dim)])
    out.insert(0, "notes_available", count.astype(np.int64))
    return out
