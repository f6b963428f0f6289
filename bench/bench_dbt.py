"""Benchmark of `dbt build` on synthetic MIMIC-IV: cold build, rebuild with unchanged inputs, per stage.

Targets: 10,000 stays at MIMIC-IV density build cold in under 10 minutes on a 2-core machine,
and rebuild with unchanged inputs in under a tenth of that. Each size gets a fresh warehouse; data sets
are generated once under bench/results/ (ignored by git) and reused.

    python bench/bench_dbt.py --stays 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TARGET_COLD_S = {10_000: 600}


def generate(stays: int) -> Path:
    from sepsis_fusion.pipelines.synth.generate import generate as synth
    from sepsis_fusion.pipelines.synth.generate import matches

    out = RESULTS / f"synthetic_{stays}"
    if not matches(out, stays, 0, "full"):
        synth(stays, 0, out, progress=False)
    return out


def plain_dbt_build(mimic: Path, warehouse: Path) -> float:
    """`dbt build` as a user runs it in dbt_project/ (models always re-run; raw ingest skips unchanged files)."""
    env = dict(
        os.environ,
        SEPSIS_FUSION_MIMIC_DIR=str(mimic),
        SEPSIS_FUSION_WAREHOUSE=str(warehouse),
        SEPSIS_FUSION_FEATURES=str(warehouse.parent / "features"),
    )
    dbt = Path(sys.executable).with_name("dbt")
    project = ROOT / "dbt_project"
    target = warehouse.parent / "plain_dbt"
    start = time.perf_counter()
    subprocess.run(
        [
            str(dbt),
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--quiet",
            "--target-path",
            str(target / "target"),
            "--log-path",
            str(target / "logs"),
        ],
        env=env,
        check=True,
    )
    return time.perf_counter() - start


def wrapper_build(mimic: Path, warehouse: Path, force: bool) -> float:
    """`sepsis-fusion build`: skips the dbt run when neither raw files nor the project changed."""
    from sepsis_fusion.pipelines.build import dbt_build

    start = time.perf_counter()
    dbt_build(mimic, warehouse=warehouse, force=force)
    return time.perf_counter() - start


def stage_of(unique_id: str, manifest: dict) -> str:
    """raw ingest, staging, intermediate, marts, seeds or tests: the folder a node lives in."""
    if unique_id.startswith("operation."):
        return "raw ingest (hook)"
    node = manifest["nodes"].get(unique_id, {})
    if node.get("resource_type") == "model":
        return node["original_file_path"].split("/")[1]
    return node.get("resource_type", "other") + "s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ["DBT_QUIET"] = "true"  # dbt's own progress lines would drown the figures
    for stays in args.stays:
        mimic = generate(stays)
        warehouse = RESULTS / f"warehouse_{stays}" / "warehouse.duckdb"
        warehouse.parent.mkdir(parents=True, exist_ok=True)
        warehouse.unlink(missing_ok=True)
        cold = wrapper_build(mimic, warehouse, force=True)
        artifacts = warehouse.parent / f"{warehouse.stem}_dbt" / "target"
        results = json.loads((artifacts / "run_results.json").read_text())
        manifest = json.loads((artifacts / "manifest.json").read_text())
        warm = wrapper_build(mimic, warehouse, force=False)
        plain = plain_dbt_build(mimic, warehouse)
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        per_stage: dict[str, float] = defaultdict(float)
        for r in results["results"]:
            per_stage[stage_of(r["unique_id"], manifest)] += r["execution_time"]
        with duckdb.connect(str(warehouse), read_only=True) as con:
            raw_rows = con.sql("SELECT sum(rows) FROM raw._ingest_log").fetchall()[0][0]
            counts = {
                t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                for t in ("int_sofa_hourly", "sepsis3", "cohort")
            }
        target = TARGET_COLD_S.get(stays)
        print(
            f"\n{stays:,} stays: cold build {cold:.1f} s; rebuild with unchanged inputs: sepsis-fusion build "
            f"{warm:.2f} s = {warm / cold:.3f} of cold, plain dbt build {plain:.1f} s = {plain / cold:.2f} of cold "
            f"(raw ingest skipped, models re-run); peak memory of a dbt process {peak_gib:.2f} GiB"
        )
        if target:
            print(
                f"  target: cold under {target} s -> {cold / target:.2f} of it; rebuild under a tenth -> "
                f"{'met' if warm < cold / 10 else 'NOT met'}"
            )
        print(
            f"  raw rows loaded: {raw_rows:,} ({raw_rows / max(per_stage['raw ingest (hook)'], 1e-9):,.0f} rows/s "
            f"in the ingest hook)"
        )
        for stage, seconds in sorted(per_stage.items(), key=lambda kv: -kv[1]):
            print(f"  {stage:<20} {seconds:8.1f} s (node time, summed over threads)")
        print("  " + ", ".join(f"{t}: {n:,} rows" for t, n in counts.items()))


if __name__ == "__main__":
    main()
