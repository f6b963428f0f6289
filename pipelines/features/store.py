"""The project's Feast store (feature_repo/): open it, and run Feast's own CLI on it.

Every file of the store is under the data folder (paths.data_dir()). feature_repo/feature_store.yaml
puts the registry and online store under $SEPSIS_FUSION_DATA, the folder definitions.py reads the Parquet
sources from (plain `feast` in that folder needs it exported); these helpers write the same configuration
with the data folder's resolved paths to <data>/feast/, hand it to Feast and set $SEPSIS_FUSION_DATA. Two online
stores share the definitions: the embedded SQLite default and Redis (feature_store.redis.yaml,
$SEPSIS_FUSION_REDIS).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
import yaml

from sepsis_fusion.model.errors import SepsisFusionError

from .. import paths
from ..utc import naive_utc

FEATURE_REPO = paths.FEATURE_REPO
SERVICE_NAME = "sepsis_fusion_model"
ONLINE_STORES = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
OFFLINE_STORES = ("duckdb", "spark")
# The Spark offline store's section of feature_store.yaml (replaces the shipped DuckDB one)
SPARK_OFFLINE_YAML = "offline_store.spark.yaml"
FEAST_FILES = ("static_baseline.parquet", "sequence_steps.parquet", "windows_24h.parquet", "note_slot_00.parquet")


class FeatureStoreError(SepsisFusionError):
    """A Feast step failed; the message says which and why."""


def store_yaml(online: str, data: Path | None = None) -> Path:
    """The shipped feature_store*.yaml of an online store, written with the data folder's paths to
    <data>/feast/ (the registry and the SQLite file go there)."""
    if online not in ONLINE_STORES:
        raise FeatureStoreError(f"unknown online store {online!r}: use one of {', '.join(ONLINE_STORES)}")
    shipped = FEATURE_REPO / ONLINE_STORES[online]
    config = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    data_dir = Path(data or paths.data_dir()).resolve()
    feast_dir = data_dir / "feast"
    if offline_store(data_dir) == "spark":
        config["offline_store"] = spark_offline_config(data_dir)
    for section in ("registry", "online_store"):
        if "path" in config[section]:
            config[section]["path"] = str(feast_dir / Path(config[section]["path"]).name)
    target = feast_dir / shipped.name
    text = (
        f"# {shipped.name} of feature_repo/ with this data folder's paths (written by sepsis-fusion)\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    feast_dir.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target


def offline_store(data: Path | None = None) -> str:
    """The data folder's offline store: $SEPSIS_FUSION_OFFLINE, else the one it was applied with
    (<data>/feast/offline_store), else DuckDB."""
    chosen = os.environ.get("SEPSIS_FUSION_OFFLINE")
    if not chosen:
        marker = Path(data or paths.data_dir()).resolve() / "feast" / "offline_store"
        chosen = marker.read_text(encoding="utf-8").strip() if marker.exists() else "duckdb"
    return _known_offline_store(chosen)


def _known_offline_store(name: str) -> str:
    if name not in OFFLINE_STORES:
        raise FeatureStoreError(f"unknown offline store {name!r}: use one of {', '.join(OFFLINE_STORES)}")
    return name


def spark_offline_config(data: Path) -> dict:
    """feature_repo/offline_store.spark.yaml with the data folder's Spark warehouse and the master and driver
    memory of $SEPSIS_FUSION_SPARK_MASTER / $SEPSIS_FUSION_SPARK_DRIVER_MEMORY, as the dbt profile."""
    config = yaml.safe_load((FEATURE_REPO / SPARK_OFFLINE_YAML).read_text(encoding="utf-8"))["offline_store"]
    conf = config.setdefault("spark_conf", {})
    conf["spark.sql.warehouse.dir"] = str(data / "spark" / "feast_warehouse")
    settings = {
        "spark.master": "SEPSIS_FUSION_SPARK_MASTER",
        "spark.driver.memory": "SEPSIS_FUSION_SPARK_DRIVER_MEMORY",
    }
    for key, variable in settings.items():
        if os.environ.get(variable):
            conf[key] = os.environ[variable]
    return config


def feast_env(data: Path | None = None, redis: str | None = None) -> dict[str, str]:
    """The environment feature_store*.yaml and definitions.py read."""
    env = {
        "SEPSIS_FUSION_DATA": str(Path(data or paths.data_dir()).resolve()),
        "SEPSIS_FUSION_OFFLINE": offline_store(data),
    }
    redis = redis or os.environ.get("SEPSIS_FUSION_REDIS")
    if redis:
        env["SEPSIS_FUSION_REDIS"] = redis
    return env


def check_feature_files(data: Path) -> None:
    missing = [name for name in FEAST_FILES if not (data / "features" / name).exists()]
    if missing:
        raise FeatureStoreError(
            f"{', '.join(missing)} not in {data / 'features'}: run `sepsis-fusion build` "
            "and `sepsis-fusion embed` first"
        )


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def open_store(data: Path | None = None, online: str = "sqlite", redis: str | None = None):
    """A feast.FeatureStore on feature_repo/ with its files under `data` (it must have been applied)."""
    from feast import FeatureStore

    # Feast's import sets DeprecationWarnings to "once" ahead of other filters; its DuckDB store (through
    # ibis) then reports a DuckDB 2.0 deprecation on every query. Noise for users: hidden, after that import.
    warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)
    env = feast_env(data, redis)
    if online == "redis" and "SEPSIS_FUSION_REDIS" not in env:
        raise FeatureStoreError("the Redis online store needs SEPSIS_FUSION_REDIS (e.g. 127.0.0.1:6379)")
    registry = "registry.db" if online == "sqlite" else "registry_redis.db"
    if not (Path(env["SEPSIS_FUSION_DATA"]) / "feast" / registry).exists():
        raise FeatureStoreError(
            f"no Feast registry under {env['SEPSIS_FUSION_DATA']}/feast: "
            f"run `sepsis-fusion features apply{' --online-store redis' if online == 'redis' else ''}`"
        )
    with _environment(env):
        return FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=store_yaml(online, data))


def store_data_dir(store) -> Path:
    """The data folder a store opened by open_store belongs to (its registry is <data>/feast/<file>)."""
    registry = store.config.registry
    path = registry.path if hasattr(registry, "path") else registry
    return Path(path).resolve().parent.parent


def feast_cli(
    args: list[str], data: Path | None = None, online: str = "sqlite", redis: str | None = None
) -> subprocess.CompletedProcess:
    """Run `feast -c feature_repo -f <store yaml> <args>`, the command Feast users type, on this store."""
    env = feast_env(data, redis)
    (Path(env["SEPSIS_FUSION_DATA"]) / "feast").mkdir(parents=True, exist_ok=True)
    cmd = _feast_command(args, online, data)
    result = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-15:]
        raise FeatureStoreError(
            f"`feast {' '.join(args)}` failed (exit {result.returncode})" + ("\n" + "\n".join(detail) if detail else "")
        )
    return result


def exec_feast(args: list[str], data: Path | None = None, online: str = "sqlite", redis: str | None = None) -> None:
    """Replace this process with `feast ... <args>` (for `feast serve`: signals then reach Feast itself)."""
    env = feast_env(data, redis)
    cmd = _feast_command(args, online, data)
    os.execve(cmd[0], cmd, {**os.environ, **env})


def _feast_command(args: list[str], online: str, data: Path | None) -> list[str]:
    feast = shutil.which("feast", path=str(Path(sys.executable).parent)) or shutil.which("feast")
    if feast is None:
        raise FeatureStoreError("the feast command is not installed in this environment")
    return [feast, "-c", str(FEATURE_REPO), "-f", str(store_yaml(online, data)), *args]


def apply(
    data: Path | None = None, online: str = "sqlite", redis: str | None = None, offline: str | None = None
) -> str:
    """`feast apply`: register the definitions and create the online tables. Returns Feast's output.

    `offline` ("duckdb" or "spark") chooses the offline store that reads the Parquet files; the data folder
    keeps it for every later command (default: the one it has, else DuckDB)."""
    data = Path(data or paths.data_dir()).resolve()
    check_feature_files(data)
    if offline is not None:
        _known_offline_store(offline)
        (data / "feast").mkdir(parents=True, exist_ok=True)
        (data / "feast" / "offline_store").write_text(offline + "\n", encoding="utf-8")
    return feast_cli(["apply"], data, online, redis).stdout


def data_present(data: Path | None = None) -> datetime:
    """The data's present: the latest hour of the 24-hour aggregates (windows_24h) in the feature files."""
    path = Path(data or paths.data_dir()) / "features" / "windows_24h.parquet"
    (latest,) = duckdb.sql(f"SELECT max(event_timestamp) FROM '{path}'").fetchall()[0]
    if latest is None:
        raise FeatureStoreError(f"{path} has no rows: nothing to materialize")
    return latest


def materialize(
    store,
    data: Path | None = None,
    end: datetime | None = None,
    start: datetime | None = None,
    incremental: bool = False,
    views: list[str] | None = None,
) -> datetime:
    """Load each view's latest row per stay, as of `end`, into the online store (Feast materialize).

    `end` defaults to the data's present (data_present): MIMIC-IV's dates are shifted into the
    future, so "now" would find nothing; pass the wall clock for live data. Incremental runs start
    where the previous one ended; full runs start at `start`, by default each view's ttl before `end`, as
    Feast's first incremental run does: an older row has expired by `end` and would never be served (at full
    MIMIC-IV scale, 94,000 stays' hourly steps against the few hundred stays in the ICU at `end`).

    A full run to an `end` before the store's present rewinds the store (a replay of an earlier time): the
    online tables are emptied first, since Feast's Redis store keeps a newer row over an older one, and the
    store's present becomes `end` (materialized_until), where `serve` and `score --online` then score."""
    end = naive_utc(end or data_present(data))
    online = [v for v in store.list_feature_views() if v.online and (views is None or v.name in views)]
    previous = {v.name: _last_end(v) for v in online}
    if incremental:
        for view in online:
            first = previous[view.name] or (end - view.ttl if view.ttl else datetime(1900, 1, 1))
            if first < end:
                store.materialize(start_date=first, end_date=end, feature_views=[view.name])
        return end
    if any(last is not None and end < last for last in previous.values()):
        if views is not None:
            raise FeatureStoreError(
                f"materializing to {end}, before the store's present, rewinds every view: leave out the view list"
            )
        _empty_online_store(store, online)
    by_start: dict[datetime, list[str]] = {}
    for view in online:
        first = start or (end - view.ttl if view.ttl else datetime(1900, 1, 1))
        by_start.setdefault(first, []).append(view.name)
    for first, names in by_start.items():
        store.materialize(start_date=first, end_date=end, feature_views=names)
    return end


def _last_end(view) -> datetime | None:
    """The end of the view's most recent materialization (Feast keeps them in the order they ran; its
    most_recent_end_time is the latest end ever, which a rewind would not move back)."""
    intervals = view.materialization_intervals
    return naive_utc(intervals[-1][1]) if intervals else None


def _empty_online_store(store, views) -> None:
    """Remove every row of the online store and create its tables again (SQLite: the file; Redis: the keys of
    the entity)."""
    online = store._get_provider().online_store  # no public accessor in Feast 0.67
    entities = store.list_entities()
    online.teardown(store.config, views, entities)
    online.update(store.config, [], views, [], entities, partial=False)


def materialized_until(store, service: str = SERVICE_NAME) -> datetime | None:
    """How far the online store is filled for the service: the time every one of its views has been
    materialized to by its most recent run (naive UTC), or None if a view never was."""
    ends = [
        _last_end(store.get_feature_view(p.name)) for p in store.get_feature_service(service).feature_view_projections
    ]
    return None if any(end is None for end in ends) else min(ends)


def online_store_time(store, service: str = SERVICE_NAME) -> datetime:
    """materialized_until, for scoring: a store that was never materialized is an error that says what to run."""
    return require_materialized(materialized_until(store, service))


def require_materialized(until: datetime | None) -> datetime:
    """A materialization time, or the error that says what to run when the store was never materialized."""
    if until is None:
        raise FeatureStoreError("the online store was never materialized: run `sepsis-fusion features materialize`")
    return until
