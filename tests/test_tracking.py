"""Experiment tracking (`--track`): evaluated run folders logged to a real MLflow SQLite store in a temporary
folder, one MLflow run per run folder (found again by its model version), child runs per grid setting."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from helpers import assert_exit, invoke

from sepsis_fusion.model.evaluate import evaluate
from sepsis_fusion.model.run_folder import RunFolder
from sepsis_fusion.pipelines import workflow
from sepsis_fusion.pipelines.tracking import NotEvaluated, TrackingError, artifact_location, log_run

mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional extra sepsis-fusion[track]")
EXPERIMENT = "tests"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (its first use creates and migrates the tables: seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def client(store):
    return mlflow.MlflowClient(tracking_uri=store)


@pytest.fixture(scope="module")
def runs(trained_run, synthetic_training_set, tmp_path_factory) -> list[Path]:
    """Two evaluated copies of the trained run folder under different names, hence two model versions."""
    root = tmp_path_factory.mktemp("tracked")
    copies = [Path(shutil.copytree(trained_run, root / name)) for name in ("first", "second")]
    for run in copies:
        evaluate(synthetic_training_set, run, resamples=50)
    return copies


@pytest.fixture(scope="module")
def tracked(runs, store) -> list[workflow.TrackStep]:
    return [workflow.track_run(run, EXPERIMENT, store) for run in runs]


def parents(client, experiment_id: str) -> list:
    return [r for r in client.search_runs([experiment_id]) if "mlflow.parentRunId" not in r.data.tags]


def children(client, experiment_id: str, parent: str) -> list:
    return client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")


def test_each_run_folder_is_one_run_with_a_child_run_per_grid_setting(client, runs, tracked):
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert {r.info.run_id for r in parents(client, experiment.experiment_id)} == {t.run_id for t in tracked}
    for run, t in zip(runs, tracked):
        cv = json.loads((run / "cv.json").read_text())
        kids = children(client, experiment.experiment_id, t.run_id)
        assert t.settings == len(kids) == 2  # the fixture's grid: dropout 0.1 and 0.3
        assert all(k.info.status == "FINISHED" for k in kids)
        by_dropout = {k.data.params["setting.dropout"]: k for k in kids}
        assert set(by_dropout) == {"0.1", "0.3"}
        for dropout, kid in by_dropout.items():
            folds = [f for f in cv["folds"] if f["setting"] == {"dropout": float(dropout)}]
            assert len(folds) == 3
            for f in folds:
                assert kid.data.metrics[f"fold_{f['fold']}_auroc"] == pytest.approx(f["auroc"])
            assert kid.data.metrics["cv_auroc_mean"] == pytest.approx(sum(f["auroc"] for f in folds) / 3)
            assert kid.data.tags["chosen"] == str(cv["best_setting"] == {"dropout": float(dropout)}).lower()
            history = client.get_metric_history(kid.info.run_id, "fold_0/val_auroc")
            assert [m.step for m in history] == list(range(len(folds[0]["val_auroc"])))


def test_params_are_the_config_and_the_chosen_setting(client, runs, tracked):
    run, t = runs[0], tracked[0]
    params = client.get_run(t.run_id).data.params
    config = yaml.safe_load((run / "config.yaml").read_text())
    flat = {
        f"{section}.{key}": value
        for section, values in config.items()
        if isinstance(values, dict) and values
        for key, value in values.items()
    }
    flat.update({key: value for key, value in config.items() if not isinstance(value, dict) or not value})
    assert {"train.lr", "grid.dropout", "outcome", "split", "folds", "seed", "model.modalities"} <= set(params)
    # every value as `train --set key=value` reads it back (YAML)
    assert {key: yaml.safe_load(params[key]) for key in flat} == flat
    chosen = json.loads((run / "cv.json").read_text())["best_setting"]
    assert yaml.safe_load(params["setting.dropout"]) == chosen["dropout"]


def test_test_metrics_with_intervals_tags_and_artifacts(client, runs, tracked, store):
    run, t = runs[1], tracked[1]
    logged = client.get_run(t.run_id)
    metrics = json.loads((run / "metrics.json").read_text())
    fusion = metrics["models"]["fusion model"]["auroc"]
    assert logged.data.metrics["test_auroc"] == pytest.approx(fusion["value"])
    assert logged.data.metrics["test_auroc_low"] == pytest.approx(fusion["low"])
    assert logged.data.metrics["test_auroc_high"] == pytest.approx(fusion["high"])
    sofa = metrics["models"]["SOFA at T"]["auprc"]["value"]
    assert logged.data.metrics["baseline/SOFA_at_T/test_auprc"] == pytest.approx(sofa)
    difference = metrics["paired_differences"]["logistic regression"]["auroc"]["low"]
    assert logged.data.metrics["difference/logistic_regression/auroc_low"] == pytest.approx(difference)
    slope = metrics["calibration"]["fusion model, after calibration"]["calibration_slope"]["value"]
    assert logged.data.metrics["calibration/fusion_model_after_calibration/calibration_slope"] == pytest.approx(slope)

    tags = logged.data.tags
    assert tags["data.fingerprint"] == json.loads((run / "data.json").read_text())["fingerprint"]
    encoder = json.loads((run / "data.json").read_text())["encoder"]
    assert tags["encoder"] == encoder["model"] and tags["encoder.precision"] == encoder["precision"]
    assert tags["version.torch"] == json.loads((run / "versions.json").read_text())["torch"]
    assert tags["model_version"] == RunFolder(run).version() == t.model_version
    assert tags["run_folder"] == "second" and logged.info.run_name == "second"
    assert logged.info.status == "FINISHED"

    artifacts = {a.path for a in client.list_artifacts(t.run_id)}
    pngs = {p.name for p in run.glob("*.png")}
    assert {"report.md", "model_card.md", "cv.json", "metrics.json", "config.yaml"} | pngs <= artifacts
    assert {"roc.png", "calibration.png"} <= pngs
    assert "report.html" in artifacts
    local = Path(client.download_artifacts(t.run_id, "report.md", str(run.parent / "downloaded")))
    assert local.read_text() == (run / "report.md").read_text()
    # the artifacts lie beside the SQLite database, not in the working directory's ./mlruns
    assert client.get_experiment(logged.info.experiment_id).artifact_location == artifact_location(store, EXPERIMENT)


def test_tracking_a_folder_again_replaces_its_run(client, runs, tracked, store):
    again = workflow.track_run(runs[0], EXPERIMENT, store)
    assert again.replaced == 1 + again.settings  # the earlier parent and its child runs
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    now = parents(client, experiment_id)
    assert len(now) == 2 and {r.info.run_id for r in now} == {again.run_id, tracked[1].run_id}
    assert len(children(client, experiment_id, again.run_id)) == again.settings
    assert client.get_run(tracked[0].run_id).info.lifecycle_stage == "deleted"


def test_an_unevaluated_run_folder_is_refused(trained_run, store, tmp_path):
    unevaluated = tmp_path / "unevaluated"  # trained_run itself may have been evaluated by another test
    shutil.copytree(trained_run, unevaluated, ignore=shutil.ignore_patterns("metrics.json"))
    with pytest.raises(NotEvaluated, match=r"has not been evaluated \(no metrics\.json\): run `sepsis-fusion evaluate"):
        log_run(unevaluated, store, EXPERIMENT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrackingError, match="is not a run folder"):
        log_run(tmp_path / "empty", store, EXPERIMENT)


def test_without_mlflow_the_error_names_the_extra(runs, store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: not found, and no import
    with pytest.raises(TrackingError, match=r"pip install 'sepsis-fusion\[track\]'"):
        log_run(runs[0], store, EXPERIMENT)
    # the chain refuses before it builds anything
    with pytest.raises(TrackingError, match=r"sepsis-fusion\[track\]"):
        workflow.run_chain(tmp_path / "nowhere", "minilm", tmp_path / "none.yaml", tmp_path / "run", track=True)


def test_the_default_store_is_a_sqlite_file_under_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SEPSIS_FUSION_DATA", str(tmp_path))
    assert workflow.default_tracking_uri() == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    artifacts = artifact_location(workflow.default_tracking_uri(), "sepsis-fusion")
    assert artifacts == (tmp_path / "mlflow" / "artifacts" / "sepsis-fusion").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert workflow.default_tracking_uri() == "http://127.0.0.1:5000"
    assert artifact_location("http://127.0.0.1:5000", "sepsis-fusion") is None  # the server's own


def test_evaluate_track_on_the_command_line(feature_data, trained_run, synthetic_warehouse, tmp_path, monkeypatch):
    """`sepsis-fusion evaluate --track` with the default store: data/mlflow/mlflow.db under the data folder;
    the operating points as asked; on data built from a synthetic MIMIC-IV, the generator's ceiling."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    data = tmp_path / "data"
    shutil.copytree(feature_data, data)
    # the build's own record of what it was built from, as `build` leaves it beside the data folder's warehouse
    stamp = synthetic_warehouse.parent / f"{synthetic_warehouse.stem}_dbt" / "last_build.json"
    (data / "warehouse_dbt").mkdir()
    shutil.copy(stamp, data / "warehouse_dbt" / "last_build.json")
    run = Path(shutil.copytree(trained_run, data / "runs" / "demo"))
    options = ["--risk-threshold", 0.15, "--risk-threshold", 0.25, "--at-sensitivity", 0.9]
    result = invoke(["evaluate", "--run", run, "--resamples", 50, *options, "--track"], data=data)
    assert_exit(result, 0)
    report = (run / "report.md").read_text()
    assert "| risk >= 15% | fusion model |" in report and "| risk >= 25% |" in report
    assert "| risk >= 10% |" not in report and "| sensitivity 90% | fusion model (risk >= " in report
    assert "The data's own ceiling" in report
    uri = f"sqlite:///{data}/mlflow/mlflow.db"
    assert f"tracking URI: {uri}" in result.stderr
    assert f"browse it: mlflow ui --backend-store-uri {uri}" in result.stderr
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(workflow.DEFAULT_EXPERIMENT)
    (logged,) = parents(client, experiment.experiment_id)
    assert f"MLflow run {logged.info.run_id} in experiment sepsis-fusion" in result.stderr
    assert logged.data.tags["model_version"] == RunFolder(run).version()
    # the run folder's pyfunc model, registered (tests/test_registry.py tests it)
    registered_line = "registered model sepsis-fusion version 1 (models:/sepsis-fusion/1); make it the champion: "
    assert registered_line in result.stderr
    (registered,) = client.search_model_versions("name = 'sepsis-fusion'")
    assert registered.run_id == logged.info.run_id and registered.tags["model_version"] == RunFolder(run).version()
    artifacts = data / "mlflow" / "artifacts" / "sepsis-fusion"
    assert experiment.artifact_location == artifacts.as_uri()
    assert (artifacts / logged.info.run_id / "artifacts" / "report.md").read_text() == (run / "report.md").read_text()

    usage = invoke(["evaluate", "--run", run, "--experiment", "other"], data=data)
    assert_exit(usage, 2)
    assert "--track" in usage.output
