"""Feast definitions of Sepsis Fusion (docs/FEATURES.md).

Entity `stay` (stay_id); feature views over the Parquet files in <data folder>/features: the static
baseline, the lab and vital sequence and the 24-hour windows that dbt writes, and the note-sequence slots
of the note encoder; and the feature service `sepsis_fusion_model`, the fusion model's inputs.

Feast's online store keeps only the latest row of a view per entity, so a sequence is several views:
- The lab and vital sequence has S steps s hours apart (dbt vars sequence_steps, sequence_stride_hours).
  View `sequence_steps_lag<k>` reads sequence_steps.parquet keyed on dbt's `event_timestamp_lag<k>` (the
  step time + k x s hours), so as of any time t it serves the step k strides before the latest, offline
  (point-in-time join) and online alike, with each value stored once.
- The note sequence holds the last N notes (dbt var note_sequence_length): view `note_slot_<j>` serves
  the latest note whose number in the stay is j modulo N, so as of t the N slot views hold the last N
  notes available then.

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

# The data folder: $SEPSIS_FUSION_DATA, the folder feature_store.yaml's registry and online store are in
# (`sepsis-fusion features ...` sets it; plain `feast` needs it exported), so sources and registry agree.
if not os.environ.get("SEPSIS_FUSION_DATA"):
    raise RuntimeError(
        "feature_repo/ reads its data folder from $SEPSIS_FUSION_DATA, for the registry and online store "
        "(feature_store.yaml) and the Parquet sources alike: export SEPSIS_FUSION_DATA=$(realpath ../data) (the folder "
        "`make demo` fills) or the folder you built, then run feast again"
    )
DATA = Path(os.environ["SEPSIS_FUSION_DATA"]).resolve()
FEATURES = DATA / "features"
DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
DBT_MARTS = DBT_PROJECT / "models" / "marts"
DBT_VARS = yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text(encoding="utf-8"))["vars"]
SEQUENCE_STEPS = int(DBT_VARS["sequence_steps"])
STRIDE_HOURS = int(DBT_VARS["sequence_stride_hours"])
NOTE_SLOTS = int(DBT_VARS["note_sequence_length"])
# The offline store that reads the Parquet files: "duckdb" (feature_store.yaml) or "spark".
OFFLINE = os.environ.get("SEPSIS_FUSION_OFFLINE", "duckdb")

SERVICE_NAME = "sepsis_fusion_model"
KEYS_AND_TIMES = {"stay_id", "event_timestamp", "created_timestamp"}
DBT_TYPES = {"bigint": Int64, "integer": Int32, "double": Float64, "varchar": String, "boolean": Bool}

# A step or window row is served for at most one hour after its time: the grid has a row every hour, so
# a later row always takes over, and nothing is served as if it were current once the stay has ended.
STEP_TTL = timedelta(hours=1)
# The static baseline describes the stay as known at its prediction time T and stays true for the rest of
# the stay; a note stays among the last N until N newer ones arrive. 180 days is longer than any ICU stay,
# so neither expires in one, yet an old stay's rows are not served for ever.
STAY_TTL = timedelta(days=180)

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


def parquet_source(name: str, file: str, timestamp_field: str = "event_timestamp", description: str = ""):
    """A Parquet file (or Spark's folder of part files) of the feature folder, as the offline store reads it:
    a FileSource for DuckDB, a SparkSource for Spark ($SEPSIS_FUSION_OFFLINE, set from the store's yaml)."""
    common = dict(
        name=name,
        path=str(FEATURES / file),
        timestamp_field=timestamp_field,
        created_timestamp_column="created_timestamp",
        description=description or file,
    )
    if OFFLINE == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        source = SparkSource(file_format="parquet", **common)
    else:
        source = FileSource(**common)
    return source


def _plan_ignores_source_stamps() -> None:
    """Feast (0.67) compares a feature view's copy of its source with the copy in the registry, creation and
    update times included; a new source is stamped when built and a materialization restamps the registry's,
    so `feast plan` listed every view as updated on a store nobody had changed. Its comparison (imported with
    these definitions by `feast plan` and `apply`) here disregards those two times of a view's source."""
    from feast.diff import registry_diff

    compare = registry_diff.diff_registry_objects
    if getattr(compare, "ignores_source_stamps", False):
        return

    def unstamped(value):
        if hasattr(value, "meta") and hasattr(value, "data_source_class_type"):
            value = type(value).FromString(value.SerializeToString())
            value.ClearField("meta")
        return value

    def diff_registry_objects(current, new, object_type):
        diff = compare(current, new, object_type)
        kept = [
            d
            for d in diff.feast_object_property_diffs
            if d.property_name not in ("batch_source", "stream_source")
            or unstamped(d.val_existing) != unstamped(d.val_declared)
        ]
        if diff.feast_object_property_diffs and not kept:
            diff.feast_object_property_diffs = []
            diff.transition_type = registry_diff.TransitionType.UNCHANGED
        return diff

    diff_registry_objects.ignores_source_stamps = True
    registry_diff.diff_registry_objects = diff_registry_objects


_plan_ignores_source_stamps()


static_baseline = FeatureView(
    name="static_baseline",
    entities=[stay],
    ttl=STAY_TTL,
    schema=dbt_fields("static_baseline"),
    source=parquet_source("static_baseline", "static_baseline.parquet"),
    tags={"modality": "static"},
    online=True,
    description="Static baseline of a cohort stay as known at its prediction time (dbt mart static_baseline).",
)

step_schema = dbt_fields("sequence_steps")
sequence_views = [
    FeatureView(
        name="sequence_steps" if lag == 0 else f"sequence_steps_lag{lag}",
        entities=[stay],
        ttl=STEP_TTL,
        schema=step_schema,
        source=parquet_source(
            "sequence_steps" if lag == 0 else f"sequence_steps_lag{lag}",
            "sequence_steps.parquet",
            "event_timestamp" if lag == 0 else f"event_timestamp_lag{lag}",
            "sequence_steps.parquet" + ("" if lag == 0 else f", keyed on the step time + {STRIDE_HOURS * lag} h"),
        ),
        online=True,
        tags={"modality": "sequence", "lag": str(lag), "stride_hours": str(STRIDE_HOURS)},
        description="Lab and vital values known at a step of the sequence (dbt mart sequence_steps)"
        + ("" if lag == 0 else f", {lag} stride(s) before the latest"),
    )
    for lag in range(SEQUENCE_STEPS)
]

note_slot_views = [
    FeatureView(
        name=f"note_slot_{slot:02d}",
        entities=[stay],
        ttl=STAY_TTL,
        schema=[
            Field(name="embedding", dtype=Array(Float32), description="The note's embedding (sepsis-fusion embed)."),
            Field(name="charttime_unix_s", dtype=Int64, description="The note's charttime, seconds since 1970 (UTC)."),
        ],
        source=parquet_source(f"note_slot_{slot:02d}", f"note_slot_{slot:02d}.parquet"),
        online=True,
        tags={"modality": "notes", "slot": str(slot)},
        description=f"The latest note available whose number in the stay is {slot} modulo {NOTE_SLOTS}.",
    )
    for slot in range(NOTE_SLOTS)
]

# The 24-hour aggregates (min, max, mean, std, count, last) at each hour, for analysis; not a model input.
windows_24h = FeatureView(
    name="windows_24h",
    entities=[stay],
    ttl=STEP_TTL,
    schema=dbt_fields("windows_24h"),
    source=parquet_source("windows_24h", "windows_24h.parquet"),
    online=False,
    tags={"modality": "aggregates"},
    description="Lab and vital panel over the 24 hours up to the window end (dbt mart windows_24h).",
)

# `feast apply` registers the objects bound to module-level names, not those inside lists.
globals().update({view.name: view for view in (*sequence_views, *note_slot_views)})

# Oldest step first: the order the sequence model reads; note slots in slot order (sorted by time later).
sepsis_fusion_model = FeatureService(
    name=SERVICE_NAME,
    features=[static_baseline, *reversed(sequence_views), *note_slot_views],
    tags={"sequence_steps": str(SEQUENCE_STEPS), "stride_hours": str(STRIDE_HOURS), "note_slots": str(NOTE_SLOTS)},
    description="The fusion model's inputs: static baseline, the lab and vital sequence and the last notes.",
)
