"""Benchmark of the Feast store: historical retrieval against a hand-written DuckDB ASOF JOIN,
and online reads for one stay from SQLite and Redis.

Historical: the feature files of a built data folder (default: the demo's, `make demo`) are tiled, with
stay ids shifted per copy, until the cohort has 10,000 and 30,000 stays; for each size, Feast's
get_historical_features for the feature service (one entity row per stay at its prediction time: static
baseline, the steps of the lab and vital sequence and the note slots) runs beside one DuckDB query of
ASOF JOINs over the same Parquet files with the same ttls, alternately, best of --repeat each. The two
results must be identical.
Target: Feast within 2x of the ASOF JOIN.

Online: the untiled cohort, shifted in time so that every stay is in the ICU at one moment ("now", its
prediction time), is materialized up to now into SQLite and into a local redis-server; then 1,000 reads
of one stay each as of now, through this project's reader (OnlineFeatures, used for scoring) and through
Feast's get_online_features. Target: reader p99 under 10 ms.

    python bench/bench_features.py [--source data] [--stays 10000 30000] [--calls 1000]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from sepsis_fusion.model.inputs import FeatureLayout  # noqa: E402
from sepsis_fusion.pipelines import paths  # noqa: E402
from sepsis_fusion.pipelines.features.layout import layout_from_service  # noqa: E402
from sepsis_fusion.pipelines.features.local_redis import local_redis  # noqa: E402
from sepsis_fusion.pipelines.features.online import OnlineFeatures  # noqa: E402
from sepsis_fusion.pipelines.features.store import SERVICE_NAME, apply, materialize, open_store  # noqa: E402
from sepsis_fusion.pipelines.features.training import entity_frame  # noqa: E402

FILES = ("cohort", "static_baseline", "sequence_steps", *(f"note_slot_{j:02d}" for j in range(16)))
STAY_OFFSET = 1_000_000_000  # MIMIC-IV stay ids are 8 digits


def tile(source: Path, out: Path, cohort_stays: int) -> int:
    """Copies of the source's feature files with shifted ids until the cohort has cohort_stays stays."""
    per_copy = duckdb.sql(f"SELECT count(stay_id) FROM '{source}/features/cohort.parquet'").fetchall()[0][0]
    copies = math.ceil(cohort_stays / per_copy)
    (out / "features").mkdir(parents=True, exist_ok=True)
    # windows_24h: registered offline-only, but `feast apply` reads it; stay_population: whom the scorer scores
    for name in (*FILES, "windows_24h", "stay_population"):
        target = out / "features" / f"{name}.parquet"
        if target.exists():
            continue
        ids = f"stay_id + i * {STAY_OFFSET} AS stay_id"
        extra = f", subject_id + i * {STAY_OFFSET} AS subject_id" if name == "cohort" else ""
        partial = target.with_suffix(".partial")  # renamed when complete: an interrupted run leaves no file
        duckdb.sql(f"""COPY (SELECT * REPLACE ({ids}{extra})
                             FROM '{source}/features/{name}.parquet', range({copies}) t(i)
                            WHERE stay_id IS NOT NULL)
                       TO '{partial}' (FORMAT parquet)""")
        partial.replace(target)
    return copies


def asof_query(layout: FeatureLayout, store, files: Path) -> str:
    """The floor, as one would write it by hand: per view, an ASOF LEFT JOIN of the entity rows with the
    view's keys only (stay_id, its timestamp) finds the latest row at or before the entity's time; rows
    past the view's ttl are dropped; the values are then fetched by an equality join on
    (stay_id, timestamp), which is unique in every file."""
    selects, ctes, joins = ["e.entity_row", "e.stay_id", "e.event_timestamp"], [], []
    for projection in store.get_feature_service(SERVICE_NAME).feature_view_projections:
        view = store.get_feature_view(projection.name)
        source, alias = view.batch_source, f"v{len(ctes)}"
        ts, ttl = source.timestamp_field, int(view.ttl.total_seconds())
        columns = ", ".join(f'"{f.name}"' for f in projection.features)
        ctes.append(f"""{alias}_hit AS (
            SELECT e.entity_row, k.stay_id, k.ts FROM entities e
            ASOF JOIN (SELECT stay_id, {ts} AS ts FROM '{source.path}') k
              ON k.stay_id = e.stay_id AND k.ts <= e.event_timestamp
            WHERE k.ts >= e.event_timestamp - INTERVAL {ttl} SECOND)""")
        joins.append(f"""LEFT JOIN {alias}_hit ON {alias}_hit.entity_row = e.entity_row
            LEFT JOIN (SELECT stay_id, {ts} AS ts, {columns} FROM '{source.path}') {alias}
              ON {alias}.stay_id = {alias}_hit.stay_id AND {alias}.ts = {alias}_hit.ts""")
        selects += [f'{alias}."{f.name}" AS "{view.name}__{f.name}"' for f in projection.features]
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM entities e {' '.join(joins)} ORDER BY e.entity_row"


def same_results(feast: pa.Table, floor: pa.Table) -> None:
    feast = feast.sort_by("entity_row")
    assert feast.num_rows == floor.num_rows, (feast.num_rows, floor.num_rows)
    for name in floor.column_names:
        if name == "event_timestamp":  # the entity's own time (Feast returns it in UTC)
            continue
        a, b = feast.column(name), floor.column(name)
        if pa.types.is_list(b.type):
            assert a.is_null().equals(b.is_null()), name
            x, y = a.combine_chunks().drop_null(), b.combine_chunks().drop_null()
            assert np.array_equal(x.flatten().to_numpy(), y.flatten().to_numpy()), name
        elif pa.types.is_floating(b.type) or pa.types.is_integer(b.type):
            x = a.to_numpy(zero_copy_only=False).astype(float)
            y = b.to_numpy(zero_copy_only=False).astype(float)
            assert np.array_equal(x, y, equal_nan=True), name
        elif pa.types.is_timestamp(b.type):
            assert a.cast(pa.timestamp("us")).equals(b.cast(pa.timestamp("us"))), name
        else:
            assert a.to_pylist() == b.to_pylist(), name


def historical(source: Path, stays: int, repeat: int) -> dict:
    data = RESULTS / f"features_{stays}"
    copies = tile(source, data, stays)
    apply(data)
    store = open_store(data)
    layout = layout_from_service(store, SERVICE_NAME)
    cohort = duckdb.sql(f"""SELECT stay_id, prediction_time FROM '{data}/features/cohort.parquet'
                            ORDER BY stay_id LIMIT {stays}""").df()
    entities = entity_frame(cohort["stay_id"], cohort["prediction_time"])
    step_rows = duckdb.sql(f"SELECT count(*) FROM '{data}/features/sequence_steps.parquet'").fetchall()[0][0]
    con = duckdb.connect()
    con.register("entities", entities)
    query = asof_query(layout, store, data / "features")
    feast_s, floor_s = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        feast = store.get_historical_features(
            entity_df=entities,
            features=store.get_feature_service(SERVICE_NAME),
            full_feature_names=True,
            filter_by_created_timestamp=True,
        ).to_arrow()
        feast_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        floor = con.sql(query).to_arrow_table()
        floor_s.append(time.perf_counter() - start)
    same_results(feast, floor)
    result = {
        "cohort_stays": stays,
        "copies": copies,
        "step_rows": step_rows,
        "features": floor.num_columns - 3,
        "feast_s": min(feast_s),
        "asof_s": min(floor_s),
        "ratio": min(feast_s) / min(floor_s),
    }
    print(
        f"{stays:>7,} stays x S={layout.sequence_steps} ({step_rows:,} step rows, {result['features']} "
        f"features): Feast {result['feast_s']:.2f} s, ASOF JOIN {result['asof_s']:.2f} s, "
        f"ratio {result['ratio']:.2f} (target <= 2), identical results",
        flush=True,
    )
    return result


def percentiles(times: list[float], quantiles: tuple[int, ...] = (50, 99)) -> dict:
    """Latency percentiles in ms of times in seconds (None for no times)."""
    ms = np.array(times) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) if len(ms) else None for q in quantiles}


def icu_snapshot(source: Path, out: Path) -> datetime:
    """The cohort as a live ICU: every cohort stay shifted in time so that its prediction time falls on
    one moment, "now". Returns now. (The dates of MIMIC-IV stays are spread over a century, so at any
    real moment almost no stay of the data is in the ICU.)"""
    now = datetime(2150, 1, 1, 12, 0)
    (out / "features").mkdir(parents=True, exist_ok=True)
    # windows_24h: registered offline-only, but `feast apply` reads it; stay_population: whom the scorer scores
    for name in (*FILES, "windows_24h", "stay_population"):
        target = out / "features" / f"{name}.parquet"
        if target.exists():
            continue
        columns = duckdb.sql(f"DESCRIBE SELECT * FROM '{source}/features/{name}.parquet'").fetchall()
        shifted = [f"f.{c} + s.shift AS {c}" for c, kind, *_ in columns if kind.startswith("TIMESTAMP")]
        if name.startswith("note_slot"):  # the note's charttime, in seconds: shifted alike
            shifted.append("f.charttime_unix_s + CAST(epoch(s.shift) AS BIGINT) AS charttime_unix_s")
        shifted = ", ".join(shifted)
        partial = target.with_suffix(".partial")
        duckdb.sql(f"""COPY (SELECT f.* REPLACE ({shifted}) FROM '{source}/features/{name}.parquet' f
                             JOIN (SELECT stay_id, TIMESTAMP '{now}' - prediction_time AS shift
                                   FROM '{source}/features/cohort.parquet') s USING (stay_id))
                       TO '{partial}' (FORMAT parquet)""")
        partial.replace(target)
    return now


@dataclass(frozen=True)
class IcuOnline:
    store: object  # feast.FeatureStore
    now: datetime
    stays: list[int]  # every cohort stay, in the ICU at now
    materialize_s: float


def icu_online(source: Path, data: Path, online: str = "sqlite", redis: str | None = None) -> IcuOnline:
    """icu_snapshot of source into data, applied and materialized up to now into the online store
    (for Redis, `redis` is the server's connection string)."""
    now = icu_snapshot(source, data)
    apply(data, online=online, redis=redis)
    store = open_store(data, online=online, redis=redis)
    start = time.perf_counter()
    materialize(store, data, end=now)
    materialize_s = time.perf_counter() - start
    stays = [s for (s,) in duckdb.sql(f"SELECT stay_id FROM '{data}/features/cohort.parquet' ORDER BY 1").fetchall()]
    return IcuOnline(store, now, stays, materialize_s)


def online(source: Path, calls: int, kind: str, redis: str | None = None) -> dict:
    icu = icu_online(source, RESULTS / "features_online", kind, redis)
    store, now, stays, materialize_s = icu.store, icu.now, icu.stays, icu.materialize_s
    reader = OnlineFeatures(store)
    service = store.get_feature_service(SERVICE_NAME)
    served = reader.read(stays, as_of=now)
    assert served.sequence_mask[:, -1].all() and served.static["age"].notna().all(), "the online store serves nothing"
    gc.collect()
    gc.freeze()  # what a long-running scorer does after loading; keeps collections short
    results = {}
    for label, call in (
        ("reader", lambda s: reader.read([s], as_of=now)),
        (
            "feast_get_online_features",
            lambda s: store.get_online_features(
                features=service, entity_rows=[{"stay_id": s}], full_feature_names=True
            ).to_dict(),
        ),
    ):
        for s in stays[:20]:
            call(s)
        times = []
        for i in range(calls):
            start = time.perf_counter()
            call(stays[i % len(stays)])
            times.append(time.perf_counter() - start)
        results[label] = percentiles(times)
    gc.unfreeze()
    print(
        f"online {kind:<6}: {len(stays):,} cohort stays in the ICU at once, materialized in {materialize_s:.1f} s "
        f"(steps served: {served.sequence_mask.mean():.0%} of S x stays, notes: {served.note_mask.mean():.0%}); "
        f"one stay, {calls:,} calls: reader p50 {results['reader']['p50_ms']:.2f} ms, p99 "
        f"{results['reader']['p99_ms']:.2f} ms (target < 10); Feast get_online_features p50 "
        f"{results['feast_get_online_features']['p50_ms']:.2f} ms, p99 "
        f"{results['feast_get_online_features']['p99_ms']:.2f} ms",
        flush=True,
    )
    return {"store": kind, "stays": len(stays), "materialize_s": materialize_s, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=paths.data_dir(), help="a built data folder (make demo)")
    parser.add_argument("--stays", type=int, nargs="*", default=[10_000, 30_000])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    source = args.source.resolve()
    for name in FILES:
        if not (source / "features" / f"{name}.parquet").exists():
            sys.exit(f"{source}/features/{name}.parquet not found: run `make demo` first (or pass --source)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"source": str(source), "cpu_count": os.cpu_count(), "historical": [], "online": []}
    # online first: the large historical retrievals leave this process with gigabytes of memory
    report["online"].append(online(source, args.calls, "sqlite"))
    with local_redis() as connection:
        report["online"].append(online(source, args.calls, "redis", connection))
    for stays in args.stays:
        report["historical"].append(historical(source, stays, args.repeat))
    (RESULTS / "features.json").write_text(json.dumps(report, indent=2))
    print(f"written to {RESULTS / 'features.json'}")


if __name__ == "__main__":
    main()
