"""The model in MLflow: `--track` logs the run folder as the MLflow run's pyfunc model and registers it (a real
SQLite store and registry in a temporary folder); `promote` sets an alias; `models:/NAME@ALIAS` and
`models:/NAME/VERSION` are served (real uvicorn) and scored as the run folder is."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_exit, copy_feature_store, http, invoke, start_cli, wait_for_service

from sepsis_fusion.model.evaluate import evaluate
from sepsis_fusion.model.run_folder import RunFolder
from sepsis_fusion.pipelines import workflow
from sepsis_fusion.pipelines.api import Project
from sepsis_fusion.pipelines.features.local_redis import free_port
from sepsis_fusion.pipelines.features.population import Population
from sepsis_fusion.pipelines.features.store import data_present, materialize, open_store
from sepsis_fusion.pipelines.serving.scorer import Scorer
from sepsis_fusion.pipelines.tracking import TrackingError, resolve_model_uri

mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional extra sepsis-fusion[track]")
NAME = "sepsis-test"
EXPERIMENT = "registry-tests"


@pytest.fixture(scope="module")
def data(feature_data, tmp_path_factory) -> Path:
    """A data folder of its own: the fixture's features, its Feast store applied and materialized to the data's
    present (the service scores online)."""
    data = copy_feature_store(feature_data, tmp_path_factory.mktemp("registry") / "data")
    materialize(open_store(data), data, end=data_present(data))
    return data


@pytest.fixture(scope="module")
def store(data) -> str:
    return f"sqlite:///{data.parent / 'mlflow' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def runs(trained_run, synthetic_training_set, data) -> list[Path]:
    """Two evaluated run folders under the data folder's runs/ (copies of one, so two model versions)."""
    first = Path(shutil.copytree(trained_run, data / "runs" / "first"))
    evaluate(synthetic_training_set, first, resamples=50)
    return [first, Path(shutil.copytree(first, data / "runs" / "second"))]


@pytest.fixture(scope="module")
def tracked(runs, store, data) -> list[workflow.TrackStep]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEPSIS_FUSION_DATA", str(data))
        return [workflow.track_run(run, EXPERIMENT, store, registered_model=NAME) for run in runs]


@pytest.fixture
def env(store, data, monkeypatch):
    """MLflow's store and the data folder, as a user's shell would name them."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("SEPSIS_FUSION_DATA", str(data))


def test_tracking_registers_the_run_folder_as_a_pyfunc_model(runs, tracked, store, env):
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{NAME}'")}
    assert sorted(versions) == ["1", "2"]
    for run, t in zip(runs, tracked):
        assert (t.registered_model, t.model_uri) == (NAME, f"models:/{NAME}/{t.registered_version}")
        registered = versions[t.registered_version]
        assert registered.run_id == t.run_id
        assert registered.tags["model_version"] == RunFolder(run).version() == t.model_version
    # the MLflow run's `model`: a pyfunc model with its signature and the whole run folder as its artifacts
    model = mlflow.models.get_model_info(f"runs:/{tracked[0].run_id}/model")
    assert model.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.model"
    assert [c["name"] for c in model.signature.inputs.to_dict()] == ["stay_id", "prediction_time"]
    assert {c["name"] for c in model.signature.outputs.to_dict()} >= {"probability", "decision", "known"}
    assert model.metadata["model_version"] == tracked[0].model_version
    assert "SEPSIS_FUSION_DATA" in model.metadata["data"]
    logged = {a.path for a in client.list_artifacts(tracked[0].run_id, "model/artifacts/first")}
    assert {f"model/artifacts/first/{f.name}" for f in runs[0].iterdir() if f.is_file()} <= logged


def test_the_registered_model_predicts_as_the_run_folder(runs, tracked, data, env):
    workflow.promote(runs[0], "champion", NAME)
    project = Project(data)
    frame = project.training_frame()
    frame = frame.iloc[np.linspace(0, len(frame) - 1, 25).astype(int)]  # 25 stays across the cohort
    assert frame["stay_id"].nunique() == 25 and len(frame.columns) > 20
    expected = project.run(runs[0]).predict(frame)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    got = model.predict(frame)  # training_frame's columns; only stay_id and prediction_time are read
    assert got.index.equals(frame.index)
    assert got["stay_id"].tolist() == expected["stay_id"].tolist() == frame["stay_id"].tolist()
    assert got["known"].all() and got["decision"].tolist() == expected["decision"].tolist()
    difference = np.max(np.abs(got["probability"].to_numpy() - expected["probability"].to_numpy()))
    print(f"max |pyfunc - Run.predict| over {len(frame)} rows: {difference:.3g}")
    assert difference <= 1e-6
    # the Python API opens a registered version as a run folder, the same model version
    assert project.run(f"models:/{NAME}@champion").version == RunFolder(runs[0]).version()


def test_promote_sets_the_alias_and_a_second_promote_moves_it(runs, tracked, store, env):
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    first = invoke(["promote", runs[0], "--alias", "staging", "--registered-model", NAME])
    assert_exit(first, 0)
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == tracked[0].registered_version
    assert f"models:/{NAME}@staging is version {tracked[0].registered_version}" in first.stderr
    second = invoke(["promote", "second", "--alias", "staging", "--registered-model", NAME])  # by name under runs/
    assert_exit(second, 0)
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == tracked[1].registered_version
    assert f"(moved from version {tracked[0].registered_version})" in second.stderr
    # resolved: the run folder inside the downloaded model, the same model version
    folder = workflow.find_run(f"models:/{NAME}@staging")
    assert RunFolder(folder).version() == RunFolder(runs[1]).version()
    assert folder.is_relative_to(Path(workflow.paths.data_dir()) / "registry" / NAME / tracked[1].registered_version)
    assert RunFolder(workflow.find_run(f"models:/{NAME}/1")).version() == RunFolder(runs[0]).version()


def test_tracking_a_folder_again_moves_its_aliases_to_the_new_version(runs, tracked, store, data, env):
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    workflow.promote(runs[1], "canary", NAME)
    again = workflow.track_run(runs[1], EXPERIMENT, store, registered_model=NAME)
    assert int(again.registered_version) > int(tracked[1].registered_version)
    assert str(client.get_model_version_by_alias(NAME, "canary").version) == again.registered_version
    kept = [str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")]
    assert tracked[1].registered_version not in kept and tracked[0].registered_version in kept
    folder = workflow.find_run(f"models:/{NAME}@canary")
    assert RunFolder(folder).version() == RunFolder(runs[1]).version()


def test_serve_a_registered_alias_answers_as_the_run_folder(runs, tracked, data, env, tmp_path):
    workflow.promote(runs[0], "champion", NAME)
    clock = data_present(data)
    scorer = Scorer(runs[0], open_store(data))
    listed = Population(data).in_icu(clock)
    ids = listed.loc[listed["status"] == "in_population", "stay_id"]
    stays = [s.stay_id for s in scorer.online(ids, clock) if s.status == "scored"][:5]
    assert len(stays) >= 2
    expected = {s.stay_id: s.probability for s in scorer.online(stays, clock)}
    port, log = free_port(), tmp_path / "service.log"
    proc = start_cli(
        ["serve", "--run", f"models:/{NAME}@champion", "--port", port, "--clock", clock.isoformat()],
        data=data,
        stdout=log.open("w"),
    )
    try:
        wait_for_service(proc, port)
        status, answer, _ = http(port, "/score", {"stay_ids": stays})
        assert status == 200, answer
        assert answer["model_version"] == scorer.version == RunFolder(runs[0]).version()
        status, health, _ = http(port, "/health")
        assert status == 200 and health["model_version"] == scorer.version
        got = {a["stay_id"]: a["probability"] for a in answer["scores"]}
        np.testing.assert_allclose([got[s] for s in stays], [expected[s] for s in stays], atol=1e-6)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_an_unknown_alias_version_or_model_is_refused_with_what_exists(runs, tracked, store, data, env, tmp_path):
    workflow.promote(runs[0], "champion", NAME)
    result = invoke(["score", "--online", "--run", f"models:/{NAME}@nosuch"], data=data)
    assert_exit(result, 1)
    assert f"the registered model '{NAME}' has no alias 'nosuch'" in result.stderr
    assert "champion (version" in result.stderr and "sepsis-fusion promote RUN --alias nosuch" in result.stderr
    with pytest.raises(TrackingError, match=r"has no version 99 .*\(its versions: 1"):
        workflow.find_run(f"models:/{NAME}/99")
    with pytest.raises(TrackingError, match=rf"no registered model 'other' in .*registered models there: {NAME}"):
        workflow.find_run("models:/other@champion")
    with pytest.raises(TrackingError, match="is not a registered model's URI"):
        workflow.find_run("models:/")
    # a run folder never tracked: promote names what is missing and the command that registers it
    untracked = Path(shutil.copytree(runs[0], tmp_path / "untracked"))
    refused = invoke(["promote", untracked, "--alias", "champion", "--registered-model", NAME])
    assert_exit(refused, 1)
    assert "is no version of the registered model" in refused.stderr and "--track" in refused.stderr
    # no store at all
    with pytest.raises(TrackingError, match="no MLflow store at"):
        resolve_model_uri(f"models:/{NAME}@champion", f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "cache")


def test_without_mlflow_a_models_uri_names_the_extra(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(TrackingError, match=r"pip install 'sepsis-fusion\[track\]'"):
        workflow.find_run(f"models:/{NAME}@champion")


def test_registered_model_needs_track(runs, data):
    usage = invoke(["evaluate", "--run", runs[0], "--registered-model", NAME], data=data)
    assert_exit(usage, 2)
    assert "--track" in usage.output
