"""`sepsis-fusion build`: `dbt build` of dbt_project/ over one MIMIC-IV folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import paths


class BuildError(RuntimeError):
    """dbt build failed; the message names the failing nodes."""


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


def dbt_build(mimic_dir: Path, warehouse: Path | None = None, select: str | None = None) -> list[str]:
    """Run `dbt build` with the shipped profile; returns the names of the nodes that ran.

    dbt runs in its own process (it keeps DuckDB connections and global state), reading the MIMIC
    folder and the warehouse path from environment variables (dbt_project.yml, profiles.yml), so plain
    `dbt build` in dbt_project/ does the same.
    """
    mimic_dir = Path(mimic_dir).resolve()
    if not (mimic_dir / "hosp").is_dir() or not (mimic_dir / "icu").is_dir():
        raise BuildError(f"{mimic_dir} is not a MIMIC-IV folder: it needs hosp/ and icu/")
    warehouse = Path(warehouse or paths.warehouse_path()).resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    features = warehouse.parent / "features"  # Parquet for Feast, beside the warehouse
    env = dict(os.environ, SEPSIS_FUSION_MIMIC_DIR=str(mimic_dir), SEPSIS_FUSION_WAREHOUSE=str(warehouse),
               SEPSIS_FUSION_FEATURES=str(features))
    project = paths.DBT_PROJECT_DIR
    # dbt's artifacts and logs go beside the warehouse, so that builds of different warehouses (tests,
    # benchmarks, a demo) never share dbt_project/target.
    target = warehouse.parent / f"{warehouse.stem}_dbt"
    cmd = [dbt_executable(), "build", "--project-dir", str(project), "--profiles-dir", str(project),
           "--target-path", str(target / "target"), "--log-path", str(target / "logs")]
    if select:
        cmd += ["--select", select]
    proc = subprocess.run(cmd, env=env, cwd=project)
    results = _run_results(target / "target" / "run_results.json")
    if proc.returncode != 0:
        failed = [name for name, status in results if status in ("error", "fail")]
        detail = f"failing nodes: {', '.join(failed)}" if failed else "see the dbt output above"
        raise BuildError(f"dbt build over {mimic_dir} failed ({detail})")
    return [name for name, _ in results]


def _run_results(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    # unique_id: "model.sepsis_fusion.stg_icustays", "test.sepsis_fusion.unique_stg_icustays_stay_id.<hash>"
    return [(r["unique_id"].split(".")[2], r["status"]) for r in data.get("results", [])]
