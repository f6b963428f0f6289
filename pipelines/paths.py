"""Where the project's files live. One setting, SEPSIS_FUSION_DATA, moves every generated file."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


def data_dir() -> Path:
    return Path(os.environ.get("SEPSIS_FUSION_DATA", REPO_ROOT / "data")).resolve()


def warehouse_path() -> Path:
    return data_dir() / "warehouse.duckdb"


def features_dir(warehouse: Path | None = None) -> Path:
    """Parquet for Feast and the trainer: beside the warehouse (so each warehouse has its own)."""
    return Path(warehouse or warehouse_path()).parent / "features"
