"""Experiment tracking (`--track`): an evaluated run folder logged as one MLflow run.

The MLflow run holds what the run folder holds, in MLflow's terms: the study config flattened into
parameters (`train.lr`, `grid.dropout`, ...; each value written so that `sepsis-fusion train --set
key=value` accepts it) and the chosen setting (`setting.dropout`); the test metrics with their bootstrap
intervals (`test_auroc`, `test_auroc_low`, `test_auroc_high`; the baselines' as `baseline/<name>/test_auroc`,
the paired differences as `difference/<baseline>/auroc`, the calibration measures as
`calibration/<model>/brier`); one child run per grid setting with its mean, spread and per-fold
cross-validation AUROC and each fold's learning curve; the report, model card, plots and the run's JSON
files as artifacts; and as tags the model version, the run folder, the data fingerprint (`data.fingerprint`)
and the package versions (`version.torch`).

One run folder is one MLflow run: it is found again by its model version (the `model_version` tag, the
folder's name and a digest of its weights, preprocessing, calibration and threshold), and logging it again
logs a fresh run and then deletes the earlier one and its child runs (MLflow keeps deleted runs until
`mlflow gc`), so a re-evaluated folder leaves exactly its latest evaluation, with no stale metric and no
doubled learning curve. A folder retrained in place has another model version, hence its own MLflow run.

The run folder is also logged as the run's MLflow pyfunc model (`model`; pipelines/serving/mlflow_model.py
writes it: its artifacts are the run folder) and registered as a version of a registered model (default
`sepsis-fusion`), tagged with the folder's model version; tracking the folder again registers a new version
and deletes the earlier one, its aliases moved to the new one. `promote` sets an alias (`champion`) on a run
folder's version, and `resolve_model_uri` turns `models:/NAME@ALIAS` or `models:/NAME/VERSION` into a local
run folder (downloaded once into a cache folder), which `serve`, `score` and `Project.run` then use as any
run folder.

MLflow is an optional dependency (`pip install 'sepsis-fusion[track]'`), imported only here and in the
pyfunc model's module, when a run is logged or a registered model is resolved.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sepsis_fusion.model import run_folder as files
from sepsis_fusion.model.errors import SepsisFusionError
from sepsis_fusion.model.evaluate import FUSION
from sepsis_fusion.model.run_folder import RunFolder

VERSION_TAG = "model_version"
MODEL_ARTIFACT = "model"  # the pyfunc model's folder among the MLflow run's artifacts
DEFAULT_REGISTERED_MODEL = "sepsis-fusion"
REGISTERED_MODEL_ENV = "SEPSIS_FUSION_REGISTERED_MODEL"
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # MLflow's own setting
MODELS_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<number>[0-9]+))/?")


class TrackingError(SepsisFusionError):
    """A run folder cannot be logged to MLflow: not installed, not evaluated, or the store refused it."""


class NotEvaluated(TrackingError):
    """The run folder has no metrics.json: `sepsis-fusion evaluate` has not run on it."""


@dataclass(frozen=True)
class TrackedRun:
    run_id: str
    experiment_id: str
    model_version: str
    settings: int  # child runs, one per grid setting
    replaced: int  # earlier MLflow runs of this run folder (parents and children) deleted
    registered_model: str | None = None  # the registered model the run folder's pyfunc model is a version of
    registered_version: str | None = None  # its version number there


@dataclass(frozen=True)
class Promoted:
    registered_model: str
    registered_version: str
    alias: str
    model_version: str  # the run folder's
    previous: str | None  # the version the alias named before, if any


def registered_model_name(name: str | None = None) -> str:
    """The registered model of `--track` and `promote`: `name`, else $SEPSIS_FUSION_REGISTERED_MODEL, else
    DEFAULT_REGISTERED_MODEL; a name that a models:/ URI cannot spell is refused."""
    name = name or os.environ.get(REGISTERED_MODEL_ENV) or DEFAULT_REGISTERED_MODEL
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise TrackingError(
            f"{name!r} cannot name a registered model: letters, digits, '_', '-' and '.' only "
            "(models:/NAME@ALIAS must spell it)"
        )
    return name


def store_uri(data: Path) -> str:
    """MLflow's store for a data folder: $MLFLOW_TRACKING_URI, else the SQLite file <data>/mlflow/mlflow.db."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(data) / 'mlflow' / 'mlflow.db'}"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a SQLite store's URI (sqlite:///relative or sqlite:////absolute), else None."""
    match = re.fullmatch(r"sqlite:///([^?]+)(\?.*)?", tracking_uri)
    return Path(match.group(1)).resolve() if match else None


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: `artifacts/<experiment>/` beside the database of a SQLite
    store (MLflow's own default would depend on the working directory); the store's default otherwise."""
    database = sqlite_file(tracking_uri)
    return (database.parent / "artifacts" / _name(experiment)).as_uri() if database else None


def log_run(
    run_dir: Path,
    tracking_uri: str,
    experiment: str,
    save_model: Callable[[Path, Path], None] | None = None,
    registered_model: str | None = None,
) -> TrackedRun:
    """Log an evaluated run folder to the MLflow store at `tracking_uri` in `experiment` (created when
    missing), replacing the MLflow run this folder had there. With `save_model` (serving.mlflow_model's,
    which writes the folder's pyfunc model to a path), the run's `model` too, and with `registered_model`
    that model registered as a version of it (created when missing), tagged with the folder's model version."""
    run_dir = Path(run_dir).resolve()
    folder = RunFolder(run_dir)
    if not folder.has(files.MODEL):
        raise TrackingError(f"{run_dir} is not a run folder (no {files.MODEL}): train one with `sepsis-fusion train`")
    if not folder.has(files.METRICS):
        raise NotEvaluated(
            f"{run_dir} has not been evaluated (no metrics.json): run `sepsis-fusion evaluate --run {run_dir}` "
            "first, or `sepsis-fusion evaluate --run ... --track` to evaluate and track it in one go"
        )
    require_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    version = folder.version()
    database = sqlite_file(tracking_uri)
    if database:
        database.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    with _quiet():
        # a client of its own: mlflow.set_tracking_uri would also set MLFLOW_TRACKING_URI for the whole process
        client = MlflowClient(tracking_uri=tracking_uri)
        try:
            experiment_id = _experiment(client, tracking_uri, experiment)
            # matched on the digest (hex, safe in a filter string), then on the whole version
            digest = version.rsplit("@", 1)[1]
            found = client.search_runs([experiment_id], f"tags.{VERSION_TAG} LIKE '%@{digest}'", max_results=1000)
            earlier = [r.info.run_id for r in found if r.data.tags.get(VERSION_TAG) == version]
            run_id, settings = _log(client, experiment_id, run_dir, version, save_model)
            registered = None
            if save_model is not None and registered_model:
                registered = str(_register(client, registered_model, run_id, run_dir, version).version)
            for old in earlier:
                client.delete_run(old)
        except MlflowException as exc:
            raise TrackingError(f"MLflow ({tracking_uri}): {exc.message}") from None
    name = registered_model if registered else None
    return TrackedRun(run_id, experiment_id, version, settings, len(earlier), name, registered)


def promote(run_dir: Path, alias: str, tracking_uri: str, registered_model: str) -> Promoted:
    """Set `alias` of the registered model on the version that is this run folder (its model version tag),
    moving it from the version it named before."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not folder.has(*files.SCORE_FILES):
        raise TrackingError(f"{run_dir} is not a complete run folder: train one with `sepsis-fusion train`")
    version = folder.version()
    client = _registry(tracking_uri)
    from mlflow.exceptions import MlflowException

    again = f"sepsis-fusion evaluate --run {run_dir} --track" + (
        f" --registered-model {_quote(registered_model)}" if registered_model != DEFAULT_REGISTERED_MODEL else ""
    )
    with _quiet():
        model = _registered(client, registered_model, tracking_uri, f"track the run first: {again}")
        found = _versions_of(client, registered_model, version)
        if not found:
            raise TrackingError(
                f"the run folder {run_dir} ({version}) is no version of the registered model {registered_model!r} "
                f"in {tracking_uri}: it was never tracked there, or was retrained since; track it: {again}"
            )
        chosen = max(found, key=lambda v: int(v.version))
        try:
            client.set_registered_model_alias(registered_model, alias, chosen.version)
        except MlflowException as exc:
            raise TrackingError(f"MLflow ({tracking_uri}): {exc.message}") from None
    previous = (model.aliases or {}).get(alias)
    return Promoted(registered_model, str(chosen.version), alias, version, None if previous is None else str(previous))


def resolve_model_uri(uri: str, tracking_uri: str, cache: Path) -> Path:
    """The run folder of a registered model's version, `models:/NAME@ALIAS` or `models:/NAME/VERSION`: its
    pyfunc model downloaded once into `cache`/NAME/VERSION/ (again when the cached folder is not that
    version's run folder), the run folder inside it returned, with the model version it was registered with."""
    match = MODELS_URI.fullmatch(uri)
    if not match:
        raise TrackingError(
            f"{uri!r} is not a registered model's URI: models:/NAME@ALIAS or models:/NAME/VERSION "
            "(`sepsis-fusion promote RUN --alias ALIAS` sets an alias)"
        )
    name, alias, number = match["name"], match["alias"], match["number"]
    client = _registry(tracking_uri)
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    with _quiet():
        model = _registered(client, name, tracking_uri, "`sepsis-fusion evaluate --run RUN --track` registers one")
        aliases = model.aliases or {}
        if alias is not None and alias not in aliases:
            named = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items())) or "none"
            raise TrackingError(
                f"the registered model {name!r} has no alias {alias!r} in {tracking_uri} (its aliases: {named}): "
                f"set it with `sepsis-fusion promote RUN --alias {alias}`, or use models:/{name}/VERSION"
            )
        try:
            found = client.get_model_version(name, str(aliases[alias]) if alias is not None else number)
        except MlflowException:
            versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
            raise TrackingError(
                f"the registered model {name!r} has no version {number} in {tracking_uri} "
                f"(its versions: {', '.join(map(str, versions)) or 'none'})"
            ) from None
        expected = found.tags.get(VERSION_TAG)
        target = Path(cache) / name / str(found.version)
        folder = _cached_run(target, expected)
        if folder is None:
            work = target.parent / f".{found.version}.download-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            try:
                local = download_artifacts(artifact_uri=found.source, dst_path=str(work), tracking_uri=tracking_uri)
                shutil.rmtree(target, ignore_errors=True)
                Path(local).rename(target)  # the model's folder: MLmodel, artifacts/<run folder>/
            except MlflowException as exc:
                raise TrackingError(f"MLflow ({tracking_uri}): {uri}: {exc.message}") from None
            finally:
                shutil.rmtree(work, ignore_errors=True)
            folder = _cached_run(target, expected)
        if folder is None:
            raise TrackingError(
                f"{uri} (version {found.version} of {name!r}) holds no run folder of model version {expected}: "
                "it was not registered by `sepsis-fusion evaluate --track`"
            )
    return folder


def _registry(tracking_uri: str):
    """A client of the store's model registry; a SQLite store that does not exist yet is refused."""
    require_mlflow()
    from mlflow import MlflowClient

    database = sqlite_file(tracking_uri)
    if database is not None and not database.exists():
        raise TrackingError(
            f"no MLflow store at {tracking_uri}: nothing was tracked there yet (`sepsis-fusion evaluate --run RUN "
            "--track` logs and registers a run; $MLFLOW_TRACKING_URI names another store)"
        )
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _registered(client, name: str, tracking_uri: str, hint: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        listed = f"registered models there: {', '.join(names)}" if names else "none is registered there"
        raise TrackingError(f"no registered model {name!r} in {tracking_uri} ({listed}): {hint}") from None


def _versions_of(client, name: str, version: str) -> list:
    """The versions of a registered model that are a run folder of this model version."""
    return [v for v in client.search_model_versions(f"name = '{name}'") if (v.tags or {}).get(VERSION_TAG) == version]


def _register(client, name: str, run_id: str, run_dir: Path, version: str):
    """A new version of the registered model from the run's `model`; the earlier versions of this run folder
    are deleted, their aliases moved to the new one."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description="Sepsis Fusion run folders (`sepsis-fusion evaluate --track`), one version each"
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    earlier = _versions_of(client, name, version)
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"
    created = client.create_model_version(
        name,
        source,
        run_id=run_id,
        tags={VERSION_TAG: version, "run_folder": run_dir.name, "run_dir": str(run_dir)},
        description=f"Run folder `{run_dir}` ({version})",
        await_creation_for=0,
    )
    for old in earlier:
        for alias in client.get_model_version(name, old.version).aliases or []:
            client.set_registered_model_alias(name, alias, created.version)
        client.delete_model_version(name, old.version)
    return created


def _cached_run(target: Path, expected: str | None) -> Path | None:
    """The run folder among a downloaded pyfunc model's artifacts, if it is the expected model version."""
    for candidate in sorted(target.glob("artifacts/*")):
        folder = RunFolder(candidate)
        if folder.has(*files.SCORE_FILES) and (expected is None or folder.version() == expected):
            return candidate
    return None


def _quote(text: str) -> str:
    from shlex import quote

    return quote(text)


def require_mlflow() -> None:
    """Refuse, before any work, when MLflow is not installed (found without importing it: a second or so)."""
    from importlib.util import find_spec

    if find_spec("mlflow") is None:
        raise TrackingError(
            "experiment tracking needs MLflow, an optional dependency: pip install 'sepsis-fusion[track]'"
        )


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow announces at INFO that it creates and migrates its SQLite tables (alembic too), and draws a
    progress bar for every copy of a few local files: noise to a user."""
    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    bar = os.environ.get(PROGRESS_BAR)
    os.environ.setdefault(PROGRESS_BAR, "false")
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bar is None:
            os.environ.pop(PROGRESS_BAR, None)


def _experiment(client, tracking_uri: str, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, artifact_location=artifact_location(tracking_uri, name))
    if found.lifecycle_stage == "deleted":
        raise TrackingError(
            f"the MLflow experiment {name!r} is deleted in {tracking_uri}: restore it "
            f"(mlflow experiments restore --experiment-id {found.experiment_id}) or choose another --experiment"
        )
    return found.experiment_id


def _log(client, experiment_id: str, run_dir: Path, version: str, save_model=None) -> tuple[str, int]:
    """The parent run and its child runs; a run that fails half-way is marked FAILED (and replaced next time)."""
    from mlflow.entities import Metric, Param

    folder = RunFolder(run_dir)
    config = folder.read_config()
    cv, metrics, meta = folder.read_json(files.CV), folder.read_json(files.METRICS), folder.read_json(files.MODEL)
    data = folder.read_json(files.DATA) if folder.has(files.DATA) else {}
    versions = folder.read_json(files.VERSIONS) if folder.has(files.VERSIONS) else {}
    now = int(time.time() * 1000)
    chosen = cv.get("best_setting") or meta.get("setting") or {}

    params = {**_flatten(config), **{f"setting.{k}": v for k, v in chosen.items()}}
    values = {"cv_auroc": cv.get("cv_auroc"), "threshold": meta.get("threshold")}
    for name, measures in metrics.get("models", {}).items():
        values.update(_intervals("test_" if name == FUSION else f"baseline/{_name(name)}/test_", measures))
    for name, measures in metrics.get("paired_differences", {}).items():
        values.update(_intervals(f"difference/{_name(name)}/", measures))
    for name, measures in metrics.get("calibration", {}).items():
        values.update(_intervals(f"calibration/{_name(name)}/", measures))
    test = metrics.get("models", {}).get(FUSION, {}).get("auroc", {})
    tags = {
        VERSION_TAG: version,
        "run_folder": run_dir.name,
        "run_dir": str(run_dir),
        "calibration": meta.get("calibration"),
        **{f"data.{k}": v for k, v in data.items() if k != "encoder"},
        "encoder": (data.get("encoder") or {}).get("model"),
        "encoder.precision": (data.get("encoder") or {}).get("precision"),
        **{f"version.{k}": v for k, v in versions.items()},
        "mlflow.note.content": (
            f"Run folder `{run_dir}` ({version}), outcome {config.get('outcome')}: test AUROC "
            f"{test.get('value', float('nan')):.3f} (95% CI {test.get('low', float('nan')):.3f} to "
            f"{test.get('high', float('nan')):.3f}). The report, model card and plots are among the artifacts."
        ),
    }
    parent = client.create_run(experiment_id, run_name=run_dir.name, tags=_tags(tags)).info.run_id
    try:
        client.log_batch(
            parent,
            metrics=[Metric(k, v, now, 0) for k, v in values.items() if v is not None],
            params=[Param(k, _value(v)) for k, v in params.items()],
            synchronous=True,
        )
        for path in folder.artifacts():
            client.log_artifact(parent, str(path))
        if save_model is not None:
            import tempfile

            with tempfile.TemporaryDirectory() as work:
                save_model(Path(work) / MODEL_ARTIFACT, run_dir)
                client.log_artifacts(parent, str(Path(work) / MODEL_ARTIFACT), MODEL_ARTIFACT)
        settings = _settings(cv)
        for setting, folds in settings.items():
            _child(client, experiment_id, parent, version, json.loads(setting), folds, chosen, now)
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    client.set_terminated(parent, "FINISHED")
    return parent, len(settings)


def _child(client, experiment_id, parent, version, setting: dict, folds: list[dict], chosen: dict, now: int) -> None:
    """One grid setting's cross-validation: its mean and spread, each fold's AUROC and learning curve."""
    import numpy as np
    from mlflow.entities import Metric, Param

    name = ", ".join(f"{k}={_value(v)}" for k, v in setting.items()) or "(defaults)"
    tags = {
        "mlflow.parentRunId": parent,
        VERSION_TAG: version,
        "setting": json.dumps(setting, sort_keys=True),
        "chosen": str(setting == chosen).lower(),
    }
    run = client.create_run(experiment_id, run_name=name, tags=_tags(tags)).info.run_id
    aurocs = [f["auroc"] for f in folds]
    values = [
        Metric("cv_auroc_mean", float(np.mean(aurocs)), now, 0),
        Metric("cv_auroc_std", float(np.std(aurocs)), now, 0),
    ]
    for f in folds:
        values.append(Metric(f"fold_{f['fold']}_auroc", f["auroc"], now, 0))
        values.append(Metric(f"fold_{f['fold']}_best_epoch", f["best_epoch"], now, 0))
        for curve in ("train_loss", "val_loss", "val_auroc"):
            values += [Metric(f"fold_{f['fold']}/{curve}", v, now, epoch) for epoch, v in enumerate(f.get(curve, []))]
    params = [Param(f"setting.{k}", _value(v)) for k, v in setting.items()]
    client.log_batch(run, metrics=[m for m in values if m.value is not None], params=params, synchronous=True)
    client.set_terminated(run, "FINISHED")


def _settings(cv: dict) -> dict[str, list[dict]]:
    """cv.json's folds grouped by setting (the key: the setting as sorted JSON), in the order they ran."""
    grouped: dict[str, list[dict]] = {}
    for fold in cv.get("folds", []):
        grouped.setdefault(json.dumps(fold["setting"], sort_keys=True), []).append(fold)
    return grouped


def _flatten(node: dict, prefix: str = "") -> dict:
    """{'train': {'lr': 0.001}} -> {'train.lr': 0.001}; lists stay values (a grid's choices)."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _intervals(prefix: str, measures: dict) -> dict[str, float]:
    """{'auroc': {value, low, high}} -> {prefix + 'auroc': value, ..._low, ..._high}; plain numbers as they are."""
    out: dict[str, float] = {}
    for measure, m in measures.items():
        key = prefix + _name(measure)
        if isinstance(m, dict):
            out.update(
                {key + suffix: m.get(part) for part, suffix in (("value", ""), ("low", "_low"), ("high", "_high"))}
            )
        elif isinstance(m, int | float):
            out[key] = m
    return {k: float(v) for k, v in out.items() if v is not None}


def _name(text: str) -> str:
    """A name MLflow accepts in a metric key (letters, digits, _ - . / and spaces; spaces too become _)."""
    return re.sub(r"[^A-Za-z0-9_\-./]+", "_", str(text)).strip("_")


def _value(value) -> str:
    """A parameter's value as `--set key=value` takes it (YAML): strings bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _tags(tags: dict) -> dict[str, str]:
    return {_name(k) if not k.startswith("mlflow.") else k: str(v) for k, v in tags.items() if v is not None}
