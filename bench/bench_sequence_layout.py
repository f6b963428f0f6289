"""How to serve a sequence of S steps at a stride of s hours through Feast: S lag views, or one view of arrays.

A measurement for the sequence redesign (docs/FEATURES.md). From a built data folder (default: the
demo's), the hourly windows of the cohort stays are tiled to --stays cohort stays and, for the `_last`
value of every panel feature, written two ways: (A) one Parquet file with S event-timestamp columns
(`event_timestamp + k s`), read by S feature views (today's design, at stride s); (B) one Parquet file
whose row at each hour holds, per feature, the array of the S step values ending there (NaN where
absent), read by one view. For each: the Parquet size, get_historical_features for every cohort stay at
its prediction time (best of --repeat, both must give the same numbers), and one-stay online reads from
SQLite (p50 and p99 of --calls reads) after materializing the last day.

    python bench/bench_sequence_layout.py [--source data] [--stays 5000] [--steps 24] [--stride 2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepsis_fusion.pipelines import paths  # noqa: E402

STAY_OFFSET = 1_000_000_000
FEAST_YAML = """project: sequence_bench
provider: local
registry: {data}/registry.db
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: {data}/online.db
entity_key_serialization_version: 3
"""


def tiled(source: Path, out: Path, stays: int) -> tuple[str, list[str], int]:
    """The cohort stays' hourly windows (their `_last` values), tiled with shifted ids; a DuckDB view name."""
    features = source / "features"
    columns = [
        c
        for (c, *_) in duckdb.sql(f"DESCRIBE SELECT * FROM '{features}/windows_24h.parquet'").fetchall()
        if c.endswith("_last")
    ]
    per_copy = duckdb.sql(f"SELECT count(stay_id) FROM '{features}/cohort.parquet'").fetchall()[0][0]
    copies = math.ceil(stays / per_copy)
    duckdb.sql(f"""CREATE OR REPLACE TABLE cohort AS
        SELECT stay_id + i * {STAY_OFFSET} AS stay_id, prediction_time
        FROM '{features}/cohort.parquet', range({copies}) t(i) WHERE stay_id IS NOT NULL""")
    duckdb.sql(f"""CREATE OR REPLACE TABLE windows AS
        SELECT w.stay_id + i * {STAY_OFFSET} AS stay_id, w.event_timestamp, w.created_timestamp,
               {", ".join(f"w.{c}" for c in columns)}
        FROM '{features}/windows_24h.parquet' w, range({copies}) t(i)
        WHERE w.stay_id IN (SELECT stay_id FROM '{features}/cohort.parquet')""")
    return "windows", columns, copies


def write_lags(out: Path, columns: list[str], steps: int, stride: int) -> Path:
    path = out / "lags.parquet"
    lags = ", ".join(f"event_timestamp + INTERVAL {k * stride} HOUR AS ts_lag{k}" for k in range(steps))
    duckdb.sql(f"COPY (SELECT stay_id, created_timestamp, {', '.join(columns)}, {lags} FROM windows) TO '{path}'")
    return path


def write_arrays(out: Path, columns: list[str], steps: int, stride: int) -> Path:
    """Row at hour e: per feature, [value at e - (S-1)s, ..., value at e] (oldest first, NaN where absent).

    The hourly grid has a row for every hour of a stay, so the values of the last (S-1)s hours are one
    window frame; the steps are every s-th of them, counted back from the current row."""
    path = out / "arrays.parquet"
    span = (steps - 1) * stride
    frame = (
        "OVER (PARTITION BY stay_id ORDER BY event_timestamp "
        f"RANGE BETWEEN INTERVAL {span} HOUR PRECEDING AND CURRENT ROW)"
    )
    hours = ", ".join(f"list(coalesce({c}, 'NaN'::DOUBLE)) {frame} AS {c}" for c in columns)
    picks = ", ".join(
        f"list_transform(range({steps - 1}, -1, -1), lambda k: CASE WHEN len({c}) - k * {stride} >= 1 "
        f"THEN {c}[len({c}) - k * {stride}] ELSE 'NaN'::DOUBLE END) AS {c}"
        for c in columns
    )
    duckdb.sql("SET preserve_insertion_order = false")
    duckdb.sql(f"""COPY (
        SELECT stay_id, event_timestamp, created_timestamp, {picks}
        FROM (SELECT stay_id, event_timestamp, created_timestamp, {hours} FROM windows)) TO '{path}'""")
    return path


def store(repo: Path, views: list):
    from feast import Entity, FeatureStore, ValueType

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(FEAST_YAML.format(data=repo))
    fs = FeatureStore(repo_path=str(repo))
    fs.apply([Entity(name="stay", join_keys=["stay_id"], value_type=ValueType.INT64), *views])
    return fs


def lag_views(path: Path, columns: list[str], steps: int):
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64

    stay = Entity(name="stay", join_keys=["stay_id"], value_type=ValueType.INT64)
    return [
        FeatureView(
            name=f"lag{k}",
            entities=[stay],
            ttl=timedelta(hours=1),
            schema=[Field(name=c, dtype=Float64) for c in columns],
            source=FileSource(
                path=str(path), timestamp_field=f"ts_lag{k}", created_timestamp_column="created_timestamp"
            ),
        )
        for k in range(steps)
    ]


def array_view(path: Path, columns: list[str]):
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float64

    stay = Entity(name="stay", join_keys=["stay_id"], value_type=ValueType.INT64)
    return [
        FeatureView(
            name="sequence",
            entities=[stay],
            ttl=timedelta(hours=1),
            schema=[Field(name=c, dtype=Array(Float64)) for c in columns],
            source=FileSource(
                path=str(path), timestamp_field="event_timestamp", created_timestamp_column="created_timestamp"
            ),
        )
    ]


def historical(fs, views, entities, repeat: int) -> tuple[float, list]:
    refs = [f"{v.name}:{f.name}" for v in views for f in v.features]
    best, frame = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        frame = fs.get_historical_features(entity_df=entities, features=refs, full_feature_names=True).to_df()
        best = min(best, time.perf_counter() - start)
    return best, frame.sort_values(["stay_id", "event_timestamp"]).reset_index(drop=True)


def online(fs, views, stay: int, calls: int) -> tuple[float, float]:
    refs = [f"{v.name}:{f.name}" for v in views for f in v.features]
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fs.get_online_features(features=refs, entity_rows=[{"stay_id": stay}], full_feature_names=True)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=paths.data_dir(), help="a built data folder (make demo)")
    parser.add_argument("--stays", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        _, columns, copies = tiled(args.source, out, args.stays)
        n_rows = duckdb.sql("SELECT count(*) FROM windows").fetchall()[0][0]
        entities = duckdb.sql("SELECT stay_id, prediction_time AS event_timestamp FROM cohort ORDER BY 1").df()
        entities["event_timestamp"] = entities["event_timestamp"].astype("datetime64[us]")
        print(
            f"{len(entities):,} cohort stays ({copies} copies), {n_rows:,} hourly rows, {len(columns)} features, "
            f"{args.steps} steps at {args.stride} h"
        )
        results = {}
        for name, write, define in (
            ("lag views", write_lags, lambda p: lag_views(p, columns, args.steps)),
            ("array view", write_arrays, lambda p: array_view(p, columns)),
        ):
            start = time.perf_counter()
            path = write(out, columns, args.steps, args.stride)
            written = time.perf_counter() - start
            views = define(path)
            fs = store(out / name.replace(" ", "_"), views)
            seconds, frame = historical(fs, views, entities, args.repeat)
            end = duckdb.sql("SELECT max(event_timestamp) FROM windows").fetchall()[0][0]
            fs.materialize(start_date=end - timedelta(days=1), end_date=end + timedelta(hours=1))
            ((stay,),) = duckdb.sql(f"SELECT stay_id FROM windows WHERE event_timestamp = '{end}' LIMIT 1").fetchall()
            p50, p99 = online(fs, views, stay, args.calls)
            results[name] = (os.path.getsize(path), written, seconds, p50, p99, frame)
            print(
                f"{name}: Parquet {os.path.getsize(path) / 2**20:.1f} MiB (written in {written:.1f} s), "
                f"training-set retrieval {seconds:.1f} s, online read p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )
        lags, arrays = results["lag views"][5], results["array view"][5]
        for k in range(args.steps):
            for c in columns:
                a = lags[f"lag{args.steps - 1 - k}__{c}"].to_numpy(dtype=float, na_value=np.nan)
                b = np.array([v[k] if v is not None else np.nan for v in arrays[f"sequence__{c}"]], dtype=float)
                np.testing.assert_allclose(a, b, equal_nan=True, err_msg=f"step {k} {c}")
        (size_a, _, time_a, _, p99_a, _), (size_b, _, time_b, _, p99_b, _) = results.values()
        print(
            f"same values both ways; array view / lag views: Parquet {size_b / size_a:.2f}x, "
            f"retrieval {time_b / time_a:.2f}x, online p99 {p99_b / p99_a:.2f}x"
        )


if __name__ == "__main__":
    main()
