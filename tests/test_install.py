"""The package as a wheel, not the repository: it carries dbt_project/, feature_repo/, the configs and the
report templates, and its command line builds and applies the store from a folder outside the repository.

The wheel is installed with --no-deps into a folder of its own and run with `python -S`, so that the
repository's editable install is not on the path; the dependencies come from this environment's
site-packages, added as a plain path. `.ci/run` also installs it with pip into a fresh environment and
runs `sepsis-fusion demo`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("sepsis_fusion-*.whl")
    return found


def test_the_wheel_carries_the_project_files_and_no_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "sepsis_fusion/dbt_project/dbt_project.yml",
        "sepsis_fusion/dbt_project/profiles.yml",
        "sepsis_fusion/dbt_project/models/marts/cohort.sql",
        "sepsis_fusion/dbt_project/models/marts/windows_24h.yml",
        "sepsis_fusion/dbt_project/macros/ingest_mimic.sql",
        "sepsis_fusion/dbt_project/seeds/panel_features.csv",
        "sepsis_fusion/feature_repo/definitions.py",
        "sepsis_fusion/feature_repo/feature_store.yaml",
        "sepsis_fusion/feature_repo/feature_store.redis.yaml",
        "sepsis_fusion/model/configs/demo.yaml",
        "sepsis_fusion/model/configs/study.yaml",
        "sepsis_fusion/model/templates/report.md.j2",
        "sepsis_fusion/model/templates/model_card.md.j2",
        "sepsis_fusion/pipelines/cli.py",
        "sepsis_fusion/pipelines/synth/TRUTH.md",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("data/", "tests/", "sepsis_fusion/data/")) or "/target/" in n]
    metadata = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "sepsis-fusion = sepsis_fusion.pipelines.cli:app" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_the_installed_package_builds_and_applies_the_store_outside_the_repository(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "work"  # the user's folder: data/ goes here
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPSIS_FUSION_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    env["COLUMNS"] = "200"

    def cli(*args: str) -> subprocess.CompletedProcess:
        code = "import sys; from sepsis_fusion.pipelines.cli import app; sys.argv[0] = 'sepsis-fusion'; app()"
        return subprocess.run(
            [sys.executable, "-S", "-c", code, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )

    where = subprocess.run(
        [sys.executable, "-S", "-c", "from sepsis_fusion.pipelines import paths; print(paths.DBT_PROJECT_DIR)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == target / "sepsis_fusion" / "dbt_project"
    for args in (
        ["--version"],
        ["synth", "--stays", "60", "--density", "light"],
        ["build"],
        ["embed", "--encoder", "minilm", "--device", "cpu"],
        ["features", "apply"],
    ):
        proc = cli(*args)
        assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    assert (work / "data" / "features" / "cohort.parquet").is_file()
    assert (work / "data" / "feast" / "registry.db").is_file()
    assert not (target / "sepsis_fusion" / "dbt_project" / "target").exists()  # dbt wrote nothing into the package
