"""Benchmark: the same dbt project built by DuckDB and by Spark (local mode) on one synthetic MIMIC-IV.

Both builds run in this one invocation, one after the other, on the same raw files (the machine is
noisy: only the ratio measured side by side means anything). Each is a cold `sepsis-fusion build`
(`--force`, a fresh data folder): raw ingest, every model and every dbt test. The marts of the two builds
are then compared row for row (as tests/test_spark.py does on small data). Spark on two local cores is
expected to be slower than DuckDB: the point is that the same SQL runs on a cluster, where DuckDB cannot.

    python bench/bench_engines.py --stays 10000 [--master local[2]]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests"))


def generate(stays: int) -> Path:
    from sepsis_fusion.pipelines.synth.generate import generate as synth
    from sepsis_fusion.pipelines.synth.generate import matches

    out = RESULTS / f"synthetic_{stays}"
    if not matches(out, stays, 0, "full"):
        synth(stays, 0, out, progress=True)
    return out


def timed_build(mimic: Path, data: Path, engine: str) -> float:
    from sepsis_fusion.pipelines.build import dbt_build

    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    start = time.perf_counter()
    dbt_build(mimic, warehouse=data / "warehouse.duckdb", force=True, engine=engine)
    return time.perf_counter() - start


def folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, default=10_000)
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2]: this machine's cores)")
    parser.add_argument(
        "--compare-only", action="store_true", help="compare the marts of the last run's two builds, build nothing"
    )
    args = parser.parse_args()
    os.environ["SEPSIS_FUSION_SPARK_MASTER"] = args.master
    os.environ["DBT_QUIET"] = "true"  # dbt's progress lines would drown the figures
    RESULTS.mkdir(parents=True, exist_ok=True)
    mimic = generate(args.stays)

    seconds, peaks = {}, {}
    for engine in () if args.compare_only else ("duckdb", "spark"):
        print(f"{args.stays:,} stays: dbt build on {engine} ...", flush=True)
        seconds[engine] = timed_build(mimic, RESULTS / f"engines_{args.stays}_{engine}", engine)
        peaks[engine] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        print(f"  {seconds[engine]:.1f} s", flush=True)

    duck, spark = (RESULTS / f"engines_{args.stays}_{e}" for e in ("duckdb", "spark"))
    if not args.compare_only:
        print(
            f"\n{args.stays:,} synthetic stays, cold dbt build with tests, one run:\n"
            f"  DuckDB             {seconds['duckdb']:8.1f} s\n"
            f"  Spark {args.master:<12} {seconds['spark']:8.1f} s\n"
            f"  Spark / DuckDB     {seconds['spark'] / seconds['duckdb']:8.2f}x\n"
            f"  peak memory of DuckDB's dbt process {peaks['duckdb']:.1f} GiB (Spark's JVM is not a waited-for "
            "child; watch it with top)\n"
            f"  feature folder: DuckDB {folder_mib(duck / 'features'):.0f} MiB, "
            f"Spark {folder_mib(spark / 'features'):.0f} MiB",
            flush=True,
        )
    from test_spark import assert_same_marts

    counts = assert_same_marts(duck, spark)
    print(
        "  marts equal on both engines (keys exact, numbers to 1e-9): "
        + ", ".join(f"{name} {n:,}" for name, n in counts.items())
    )


if __name__ == "__main__":
    main()
