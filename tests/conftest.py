from __future__ import annotations

import os
from pathlib import Path

# Tests never reach a model hub (nor may they): transformers reads this when first imported.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from sepsis_fusion.pipelines.build import dbt_build
from sepsis_fusion.pipelines.synth.generate import generate

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT.parent / "shared" / "mimic-iv-demo"


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    if not DEMO.is_dir():
        pytest.skip(f"the open MIMIC-IV demo is not at {DEMO}")
    return DEMO


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Path:
    """1,500 synthetic stays (light charting density): enough for the planted rates to show."""
    out = tmp_path_factory.mktemp("synthetic")
    generate(1500, 7, out, density="light", progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_warehouse(synthetic, tmp_path_factory) -> Path:
    warehouse = tmp_path_factory.mktemp("warehouse") / "synthetic.duckdb"
    dbt_build(synthetic, warehouse=warehouse)
    return warehouse


@pytest.fixture(scope="session")
def demo_warehouse(demo_dir, tmp_path_factory) -> Path:
    warehouse = tmp_path_factory.mktemp("warehouse") / "demo.duckdb"
    dbt_build(demo_dir, warehouse=warehouse)
    return warehouse
