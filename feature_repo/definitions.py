"""Feast definitions of Sepsis Fusion (docs/FEATURES.md).

Entity `stay` (stay_id); feature views over the Parquet files in <data folder>/features: the static
baseline and the 24-hour windows that dbt writes, and the per-window note embeddings of the note encoder;
and the feature service `sepsis_fusion_model`, the fusion model's inputs.

The model reads the last K daily windows before its time (K = $SEPSIS_FUSION_SEQUENCE_WINDOWS, default 3).
Feast's online store keeps only the latest row of a view per entity, so the sequence is K views over the
same file, one per lag: view `windows_24h_lag<k>` is keyed on dbt's `event_timestamp_lag<k>` (the window
end + k x 24 h), so as of any time t it serves the window that ended about k days before t, offline
(point-in-time join) and online alike.

Column names and types come from dbt's schema files (`data_type` of each column), the one contract of
the marts; the note views are defined here, as the note encoder writes them.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import yaml
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String

# The data folder: $SEPSIS_FUSION_DATA (set by `sepsis-fusion features ...`), else the repository's data/,
# the folder feature_store.yaml points at.
DATA = Path(os.environ.get("SEPSIS_FUSION_DATA") or Path(__file__).resolve().parents[1] / "data").resolve()
FEATURES = DATA / "features"
DBT_MARTS = Path(__file__).resolve().parents[1] / "dbt_project" / "models" / "marts"
MAX_SEQUENCE_WINDOWS = 7  # dbt var max_sequence_windows: windows_24h has event_timestamp_lag1 .. lag6
SEQUENCE_WINDOWS = int(os.environ.get("SEPSIS_FUSION_SEQUENCE_WINDOWS", "3"))
if not 1 <= SEQUENCE_WINDOWS <= MAX_SEQUENCE_WINDOWS:
    raise ValueError(f"SEPSIS_FUSION_SEQUENCE_WINDOWS={SEQUENCE_WINDOWS}: must be 1 to {MAX_SEQUENCE_WINDOWS}")

SERVICE_NAME = "sepsis_fusion_model"
KEYS_AND_TIMES = {"stay_id", "event_timestamp", "created_timestamp"}
DBT_TYPES = {"bigint": Int64, "integer": Int32, "double": Float64, "varchar": String, "boolean": Bool}

# A window row is served for at most one hour after its end: the grid has a row every hour, so a later
# row always takes over, and nothing summarising (end - 24 h, end] is served as if it were current.
WINDOW_TTL = timedelta(hours=1)
# The static baseline describes the stay as known at its prediction time T and stays true for the rest of
# the stay; 180 days is longer than any ICU stay, so it never expires in one, yet an old stay's row is
# not served for ever.
STATIC_TTL = timedelta(days=180)

stay = Entity(
    name="stay",
    join_keys=["stay_id"],
    value_type=ValueType.INT64,
    description="An ICU stay (MIMIC-IV icustays.stay_id).",
)


def dbt_fields(model: str) -> list[Field]:
    """The model's feature columns as Feast fields, from the `data_type` in dbt's schema files."""
    for path in sorted(DBT_MARTS.glob("*.yml")):
        for spec in yaml.safe_load(path.read_text(encoding="utf-8")).get("models", []):
            if spec["name"] == model:
                return [
                    Field(name=c["name"], dtype=DBT_TYPES[c["data_type"]], description=c.get("description", ""))
                    for c in spec["columns"]
                    if c["name"] not in KEYS_AND_TIMES and not c["name"].startswith("event_timestamp_lag")
                ]
    raise LookupError(f"dbt model {model!r} is not described in {DBT_MARTS}/*.yml")


def lag_source(name: str, lag: int) -> FileSource:
    return FileSource(
        name=name if lag == 0 else f"{name}_lag{lag}",
        path=str(FEATURES / f"{name}.parquet"),
        timestamp_field="event_timestamp" if lag == 0 else f"event_timestamp_lag{lag}",
        created_timestamp_column="created_timestamp",
        description=f"{name}.parquet" + ("" if lag == 0 else f", keyed on the window end + {24 * lag} h"),
    )


def lag_views(name: str, schema: list[Field], modality: str, description: str) -> list[FeatureView]:
    return [
        FeatureView(
            name=name if lag == 0 else f"{name}_lag{lag}",
            entities=[stay],
            ttl=WINDOW_TTL,
            schema=schema,
            source=lag_source(name, lag),
            online=True,
            tags={"modality": modality, "lag": str(lag)},
            description=description + ("" if lag == 0 else f" ({lag} day(s) before the latest)"),
        )
        for lag in range(SEQUENCE_WINDOWS)
    ]


static_baseline = FeatureView(
    name="static_baseline",
    entities=[stay],
    ttl=STATIC_TTL,
    schema=dbt_fields("static_baseline"),
    source=FileSource(
        name="static_baseline",
        path=str(FEATURES / "static_baseline.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    ),
    tags={"modality": "static"},
    online=True,
    description="Static baseline of a cohort stay as known at its prediction time (dbt mart static_baseline).",
)

window_views = lag_views(
    "windows_24h",
    dbt_fields("windows_24h"),
    "windows",
    "Lab and vital panel over the 24 hours up to the window end (dbt mart windows_24h).",
)

note_views = lag_views(
    "note_window_embeddings",
    [
        Field(
            name="embedding",
            dtype=Array(Float32),
            description="Mean of the embeddings of the notes available in the window; empty when none.",
        ),
        Field(name="has_note", dtype=Int32, description="1 when the window holds a note, else 0."),
        Field(name="note_count", dtype=Int32, description="Notes in the window."),
    ],
    "notes",
    "Note embeddings pooled over the 24 hours up to the window end (sepsis-fusion embed).",
)

# `feast apply` registers the objects bound to module-level names, not those inside lists.
globals().update({view.name: view for view in (*window_views, *note_views)})

# Oldest window first: the order the sequence models read.
sepsis_fusion_model = FeatureService(
    name=SERVICE_NAME,
    features=[static_baseline, *reversed(window_views), *reversed(note_views)],
    tags={"sequence_windows": str(SEQUENCE_WINDOWS)},
    description="The fusion model's inputs: static baseline, the last K 24-hour windows and their notes.",
)
