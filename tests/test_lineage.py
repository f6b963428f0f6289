"""The lineage of the dbt project (docs/LINEAGE.md, docs/figures/lineage.png) is generated from dbt's manifest
and current; the exposures name what Feast and the trainer read; `dbt parse` and `dbt docs generate` need no
raw data and load nothing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from sepsis_fusion.pipelines.build import dbt_executable
from sepsis_fusion.pipelines.paths import DBT_PROJECT_DIR, FEATURE_REPO

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return load_script(DBT_PROJECT_DIR / "scripts" / "generate_lineage.py", "generate_lineage")


@pytest.fixture(scope="module")
def manifest(generator) -> dict:
    return generator.parse_manifest()


def test_lineage_doc_is_generated_from_the_current_manifest(generator, manifest):
    assert generator.MARKDOWN.read_text(encoding="utf-8") == generator.render_markdown(manifest), "run make lineage"
    assert generator.PICTURE.is_file() and generator.PICTURE.stat().st_size > 10_000
    nodes, edges = generator.lineage(manifest)
    assert {layer for layer, _ in nodes.values()} == set(generator.COLOURS)  # every layer has nodes
    models = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "seed")]
    assert len(nodes) == len(models) + len(manifest["sources"]) + len(manifest["exposures"])


def exposure_reads(manifest: dict, name: str) -> set[str]:
    exposure = manifest["exposures"][f"exposure.sepsis_fusion.{name}"]
    assert not exposure.get("url"), f"{name} points outside the repository"
    assert exposure["owner"]["name"]
    return {uid.split(".")[-1] for uid in exposure["depends_on"]["nodes"]}


def test_the_feature_service_exposure_reads_the_marts_behind_the_services_views(manifest, monkeypatch, tmp_path):
    monkeypatch.setenv("SEPSIS_FUSION_DATA", str(tmp_path))
    definitions = load_script(FEATURE_REPO / "definitions.py", "sepsis_fusion_feast_definitions")
    views = {v.name: v for v in vars(definitions).values() if isinstance(v, definitions.FeatureView)}
    served = set()
    for projection in definitions.sepsis_fusion_model.feature_view_projections:
        file = Path(views[projection.name].batch_source.path).name
        # the note slots are written by `sepsis-fusion embed` from notes_to_embed
        served.add("notes_to_embed" if file.startswith("note_slot_") else file.removesuffix(".parquet"))
    assert (
        exposure_reads(manifest, "sepsis_fusion_model")
        == served
        == {
            "static_baseline",
            "sequence_steps",
            "notes_to_embed",
        }
    )
    # the trained model: what is served, plus the cohort (labels, prediction times) and its flow (the report)
    assert exposure_reads(manifest, "sepsis_fusion_trained_model") == served | {"cohort", "cohort_flow"}


@pytest.mark.parametrize("mimic", ["empty", "missing"])
def test_parse_and_docs_generate_need_no_raw_data_and_create_nothing(tmp_path, mimic):
    folder = tmp_path / "mimic"
    if mimic == "empty":
        folder.mkdir()
    warehouse, features = tmp_path / "warehouse.duckdb", tmp_path / "features"
    env = dict(
        os.environ,
        SEPSIS_FUSION_MIMIC_DIR=str(folder),
        SEPSIS_FUSION_WAREHOUSE=str(warehouse),
        SEPSIS_FUSION_FEATURES=str(features),
    )
    project = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    paths = ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    for command in (["parse"], ["docs", "generate"]):
        result = subprocess.run(
            [dbt_executable(), *command, *project, *paths], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 0, f"dbt {' '.join(command)}: {result.stdout[-3000:]}{result.stderr[-2000:]}"
        assert "raw: loading" not in result.stdout
    assert (tmp_path / "target" / "catalog.json").is_file()
    assert not features.exists()  # the feature folder's hook did not run either
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.sql("SELECT table_schema, table_name FROM information_schema.tables").fetchall() == []
        assert "raw" not in {
            row[0] for row in con.sql("SELECT schema_name FROM information_schema.schemata").fetchall()
        }
    # the docs' SQL of the windows has every panel feature, though no seed is in the warehouse yet
    compiled = tmp_path / "target" / "compiled" / "sepsis_fusion" / "models" / "marts" / "windows_24h.sql"
    assert "albumin_count" in compiled.read_text() and "vasopressor_nee_last" in compiled.read_text()
