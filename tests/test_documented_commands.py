"""The commands docs/SCORING.md and docs/FEATURES.md give for online scoring, the service and the feature
server, run as written (bash) on a data folder laid out as `make demo` leaves it: the synthetic fixture's
features, its Feast store materialized to the data's present, its trained run as runs/demo, in a copy of
the repository's layout. Only what is the demo's own is mapped to this data: its literal times, and fixed
ports (8000, 6566) to free ones."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import copy_feature_store, invoke

from sepsis_fusion.pipelines.features.local_redis import LocalRedis, free_port
from sepsis_fusion.pipelines.features.store import data_present

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEPLOYMENT = ROOT / "docs" / "DEPLOYMENT.md"
DEMO_PRESENT = "2203-08-06T15:00"  # the demo's data present, as the docs write it
DEMO_OFFLINE = "2203-08-05T12:00"


def bash_blocks(doc: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "docs" / doc).read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def repo(feature_data, trained_run, tmp_path_factory) -> Path:
    """A copy of the repository's layout (feature_repo/, dbt's marts) with data/ as `make demo` leaves it."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "dbt_project" / "models" / "marts", root / "dbt_project" / "models" / "marts")
    shutil.copy(ROOT / "dbt_project" / "dbt_project.yml", root / "dbt_project" / "dbt_project.yml")
    data = copy_feature_store(feature_data, root / "data")
    shutil.copytree(trained_run, data / "runs" / "demo")
    assert invoke(["features", "materialize"], data=data).exit_code == 0
    return root


def run_bash(script: str, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SEPSIS_FUSION_", "MLFLOW_"))}
    environment["PATH"] = f"{Path(sys.executable).parent}:{environment['PATH']}"
    environment.update(env or {})
    # the background servers of a block are stopped when it ends
    wrapped = f"set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
    return subprocess.run(
        ["bash", "-c", wrapped], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def json_answers(text: str) -> list[dict]:
    """The JSON objects curl printed one after another (curl adds no line break)."""
    decoder, answers, i = json.JSONDecoder(), [], text.find("{")
    while i != -1:
        answer, end = decoder.raw_decode(text, i)
        answers.append(answer)
        i = text.find("{", end)
    return answers


def this_data(block: str, data: Path) -> str:
    present = data_present(data)
    offline = present - timedelta(hours=27)
    return block.replace(DEMO_PRESENT, present.strftime("%Y-%m-%dT%H:%M")).replace(
        DEMO_OFFLINE, offline.strftime("%Y-%m-%dT%H:%M")
    )


def test_scoring_commands_run_as_written(repo):
    commands, service = bash_blocks("SCORING.md")
    data = repo / "data"
    port = free_port()
    service = service.replace("localhost:8000", f"localhost:{port}").replace(
        "sepsis-fusion serve &", f"sepsis-fusion serve --port {port} &"
    )
    result = run_bash(this_data(commands, data) + "\n" + service, repo)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "in the ICU at" in result.stderr and "in the intended population" in result.stderr
    assert "online scores as of" in result.stderr and "unknown_stay" in result.stderr
    assert "offline scores as of" in result.stderr
    single, batch = json_answers(result.stdout)
    assert single["status"] == "scored" and 0 < single["probability"] < 1 and single["in_population"]
    assert [a["status"] for a in batch["scores"]] == ["scored", "unknown_stay"]
    assert batch["scores"][0]["probability"] == single["probability"]


def test_feast_commands_run_as_written(repo, tmp_path):
    plain, server = bash_blocks("FEATURES.md")[:2]
    data = repo / "data"
    redis = LocalRedis(data_dir=tmp_path)
    redis.start()
    try:
        result = run_bash(this_data(plain, data), repo, {"SEPSIS_FUSION_REDIS": redis.connection})
    finally:
        redis.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No changes to registry" in result.stdout and "No changes to infrastructure" in result.stdout
    port = free_port()
    result = run_bash(server.replace("6566", str(port)), repo)
    assert result.returncode == 0, result.stderr[-3000:]
    (answer,) = json_answers(result.stdout)
    names = answer["metadata"]["feature_names"]
    assert {"static_baseline__age", "sequence_steps__lactate_value", "sequence_steps_lag1__lactate_value"} <= set(names)
    assert answer["results"][names.index("static_baseline__age")]["values"][0] is not None


def test_readmes_online_commands_run_as_written(repo):
    """README's block: the demo's stay id becomes one of this data's stays in the population."""
    (block,) = re.findall(r"## Online, on the demo's live ward.*?```bash\n(.*?)```", README.read_text(), flags=re.S)
    port = free_port()
    script = (
        block.replace(".venv/bin/", "")
        .replace("localhost:8000", f"localhost:{port}")
        .replace("sepsis-fusion serve &", f"sepsis-fusion serve --port {port} &")
    )
    script = re.sub(r"""-d '\{"stay_ids": \[\d+, 123\]\}'""", """-d "{\\"stay_ids\\": [$STAY, 123]}" """, script)
    assert "$STAY" in script, "README's curl asks for one demo stay and 123"
    result = run_bash("STAY=$(sepsis-fusion stays --ids | head -n 1)\n" + script, repo)
    assert result.returncode == 0, result.stderr[-3000:]
    (batch,) = json_answers(result.stdout)
    assert [a["status"] for a in batch["scores"]] == ["scored", "unknown_stay"]


def test_deployment_walk_runs_as_written(repo, second_site):
    """DEPLOYMENT.md's walk, validate -> recalibrate -> register -> promote -> serve -> monitor, on the second
    synthetic hospital's data folder (laid out as its first block builds it) with the first hospital's run."""
    from sepsis_fusion.model.run_folder import RunFolder

    walk = r"## From a study to another hospital.*?```bash\n(.*?)```"
    (block,) = re.findall(walk, DEPLOYMENT.read_text(), flags=re.S)
    site = copy_feature_store(second_site, repo / "data" / "site_b")
    assert invoke(["features", "materialize"], data=site).exit_code == 0
    port = free_port()
    script = block.replace("localhost:8000", f"localhost:{port}").replace(" &   # 5.", f" --port {port} &")
    assert f"--port {port}" in script
    result = run_bash(script, repo)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (site / "validations" / "demo" / "report.html").exists()
    recalibrated = RunFolder(site / "runs" / "demo-recalibrated")
    parent = RunFolder(repo / "data" / "runs" / "demo").version()
    assert recalibrated.read_json("model.json")["parent"]["version"] == parent
    (batch,) = json_answers(result.stdout)
    assert batch["model_version"] == recalibrated.version()
    assert any(s["status"] == "scored" for s in batch["scores"])
    assert "calibration intercept" in result.stderr and "registered model sepsis-fusion" in result.stderr
    assert list((site / "monitoring").glob("report-*/monitor.html"))
