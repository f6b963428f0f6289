"""Where the project's files live.

The project files (dbt_project/, feature_repo/, model/configs/) sit beside the import packages: in a
source checkout they are the repository's folders, in an installed wheel the package data under
site-packages/sepsis_fusion/ (pyproject.toml maps both the same way), so one rule finds them.

Generated files all go under the data folder: $SEPSIS_FUSION_DATA, else ./data (the repository's data/
when run from its root, as the README does). That one setting moves every generated file.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
FEATURE_REPO = PROJECT_ROOT / "feature_repo"
CONFIG_DIR = PROJECT_ROOT / "model" / "configs"
RUNS = "runs"  # the run folders' folder, under a data folder


def data_dir() -> Path:
    return Path(os.environ.get("SEPSIS_FUSION_DATA") or "data").resolve()


def runs_dir() -> Path:
    """Where run folders go by name (`sepsis-fusion train --out`, `--run NAME`)."""
    return data_dir() / RUNS


def warehouse_path() -> Path:
    return data_dir() / "warehouse.duckdb"


def features_dir(warehouse: Path | None = None) -> Path:
    """Parquet for Feast and the trainer: beside the warehouse (so each warehouse has its own)."""
    return Path(warehouse or warehouse_path()).parent / "features"


def config_path(name: str) -> Path:
    """A packaged study config by name ('demo', 'study')."""
    return CONFIG_DIR / f"{name}.yaml"


def cache_dir() -> Path:
    """Caches that only save time (dbt's partial parse): $XDG_CACHE_HOME/sepsis-fusion, else ~/.cache/."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sepsis-fusion"


def dbt_var(name: str):
    """A var of the shipped dbt_project.yml (the sequence lengths the embedder and Feast share with dbt)."""
    import yaml

    return yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))["vars"][name]
