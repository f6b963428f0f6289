"""`sepsis-fusion build`: `dbt build` of dbt_project/ over one MIMIC-IV folder."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from sepsis_fusion.model.errors import SepsisFusionError

from . import paths


class BuildError(SepsisFusionError):
    """dbt build failed; the message names the failing nodes."""


def dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


ENGINES = ("duckdb", "spark")


def dbt_build(
    mimic_dir: Path,
    warehouse: Path | None = None,
    select: str | None = None,
    force: bool = False,
    engine: str = "duckdb",
    dbt_vars: dict | None = None,
) -> list[str]:
    """Run `dbt build` with the shipped profile; returns the names of the nodes that ran.

    `dbt_vars` overrides the project's vars, as `dbt build --vars` (e.g. {"culture_known_at": "storetime"},
    docs/COHORT.md); they are part of what makes a build current.

    `engine` is the profile's target: "duckdb" (the warehouse file) or "spark" (a local SparkSession,
    dbt_project/profiles.yml; its warehouse and metastore go to spark/ beside the warehouse file). Both
    write the same marts as Parquet to the feature folder (Spark as folders of part files).

    dbt runs in its own process (it keeps DuckDB connections and global state), reading the MIMIC
    folder and the warehouse path from environment variables (dbt_project.yml, profiles.yml), so plain
    `dbt build` in dbt_project/ does the same. When neither the raw files nor the dbt project changed
    since the last complete, successful build of this warehouse, nothing runs and [] is returned
    (`force` builds anyway). Plain `dbt build` always re-runs the models; its raw ingest still skips
    unchanged files.
    """
    mimic_dir = Path(mimic_dir).resolve()
    if not (mimic_dir / "hosp").is_dir() or not (mimic_dir / "icu").is_dir():
        raise BuildError(f"{mimic_dir} is not a MIMIC-IV folder: it needs hosp/ and icu/")
    if engine not in ENGINES:
        raise BuildError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    warehouse = Path(warehouse or paths.warehouse_path()).resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    features = paths.features_dir(warehouse)
    spark_dir = warehouse.parent / "spark"
    if engine == "spark":
        check_spark()
    # dbt runs in the warehouse's folder with the warehouse path relative to it: the rendered profile is
    # then the same for every warehouse of one file name, so dbt's partial parse (kept in a cache, checked
    # by dbt itself) carries over from one warehouse to the next. The feature folder stays absolute: the
    # warehouse's views over the Parquet files keep the path they were created with.
    env = dict(
        os.environ,
        SEPSIS_FUSION_MIMIC_DIR=str(mimic_dir),
        SEPSIS_FUSION_WAREHOUSE=warehouse.name,
        SEPSIS_FUSION_FEATURES=str(features),
        SEPSIS_FUSION_SPARK_DIR=str(spark_dir),
    )
    project = paths.DBT_PROJECT_DIR
    # dbt's artifacts and logs go beside the warehouse, so that builds of different warehouses (tests,
    # benchmarks, a demo) never share dbt_project/target.
    built = warehouse if engine == "duckdb" else spark_dir
    target = warehouse.parent / (f"{warehouse.stem}_dbt" if engine == "duckdb" else "spark_dbt")
    stamp = target / "last_build.json"
    fingerprint = inputs_fingerprint(mimic_dir, project) | {"engine": engine, "vars": dbt_vars or {}}
    if not force and not select and built.exists() and _read_stamp(stamp) == fingerprint:
        print(f"dbt build skipped: {mimic_dir} and dbt_project/ are unchanged since the last build of {built}")
        return []
    stamp.unlink(missing_ok=True)
    if engine == "duckdb":
        _remove_spark_outputs(features)
    cmd = [
        dbt_executable(),
        "build",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(target / "target"),
        "--log-path",
        str(target / "logs"),
        "--target",
        "dev" if engine == "duckdb" else "spark",
    ]
    if select:
        cmd += ["--select", select]
    if dbt_vars:
        cmd += ["--vars", json.dumps(dbt_vars)]
    # dbt's partial parse keeps the project's absolute path (a seed's file, for one) and does not check it:
    # one cache per project folder, so two checkouts or an installed package never read each other's
    project_key = hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:12]
    parse_cache = paths.cache_dir() / "dbt" / f"partial_parse-{engine}-{warehouse.stem}-{project_key}.msgpack"
    _copy_if_missing(parse_cache, target / "target" / PARTIAL_PARSE)
    returncode, output = _run_echoing(cmd, env, warehouse.parent)
    _replace_atomically(target / "target" / PARTIAL_PARSE, parse_cache)
    results = _run_results(target / "target" / "run_results.json")
    if returncode != 0:
        failed = [name for name, status in results if status in ("error", "fail")]
        cause = error_summary(output)
        detail = (f" (failing nodes: {', '.join(failed)})" if failed else "") + (
            f": {cause.rstrip('.')}" if cause else ""
        )
        raise BuildError(
            f"dbt build over {mimic_dir} failed{detail or ' (see the dbt output above)'}. The models "
            f"of the last build stay in {built}; the next build starts again."
        )
    if not select:
        stamp.write_text(json.dumps(fingerprint))
    return [name for name, _ in results]


PARTIAL_PARSE = "partial_parse.msgpack"


def check_spark() -> None:
    """The Spark engine's requirements, checked before dbt starts: pyspark and dbt-spark, and Java."""
    missing = [name for name in ("pyspark", "dbt.adapters.spark") if importlib.util.find_spec(name) is None]
    if missing:
        raise BuildError(f"--engine spark needs {' and '.join(missing)}: pip install 'sepsis-fusion[spark]'")
    java = Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else shutil.which("java")
    if not java or not Path(java).exists():
        raise BuildError("--engine spark needs Java 17 (no java on PATH and no JAVA_HOME): install a JDK 17")


def _remove_spark_outputs(features: Path) -> None:
    """A Spark build leaves each mart as a folder of part files; DuckDB writes single files at those paths."""
    for folder in features.glob("*.parquet"):
        if folder.is_dir() and (folder / "_SUCCESS").exists():
            shutil.rmtree(folder)


def _copy_if_missing(source: Path, target: Path) -> None:
    if source.exists() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _replace_atomically(source: Path, target: Path) -> None:
    """Copy a file so that a reader at the same time sees the old or the new one, never a half."""
    if not source.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(source, partial)
    partial.replace(target)


def _run_echoing(cmd: list[str], env: dict, cwd: Path) -> tuple[int, list[str]]:
    """Run a command, passing its output through as it comes, and keep the output for the error message."""
    lines = []
    with subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    ) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rstrip("\n"))
    return proc.returncode, lines


_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_CONVERT = re.compile(r'Error when converting column "([^"]+)"\. Could not convert string "(.*)" to \'([^\']+)\'')
_CSV_FILE = re.compile(r"^\s*file = (.+)$")
_MESSAGE = re.compile(r"^\s*((?:IO|Conversion|Invalid Input|Binder|Catalog|Parser|Out of Memory) Error: .+)$")
# Spark's errors: "[TABLE_OR_VIEW_NOT_FOUND] The table or view ... cannot be found. ..."
_SPARK_MESSAGE = re.compile(r"^\s*(\[[A-Z_.]+\] .+)$")
# dbt's failed contract: "Compilation Error in model M (path)", then a table of the mismatched columns,
# "| column_name | definition_type | contract_type | mismatch_reason |" (definition: the model's SQL)
_MODEL_ERROR = re.compile(r"Compilation Error in model (\S+) \(([^)]+)\)")
_ANY_ERROR = re.compile(r"(Error|Failure) in ")
_CONTRACT_ROW = re.compile(r"^\s*\|\s*(\w+)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|\s*$")


def error_summary(output: list[str]) -> str | None:
    """The cause of a failed build in one sentence, from dbt's output: a raw file's bad value (file, line,
    column, value, expected type), a model's broken contract (its columns), a message of the project's own
    checks, or DuckDB's error line."""
    text = "\n".join(output)
    convert = _CONVERT.search(text)
    if convert:
        column, value, kind = convert.groups()
        line = _CSV_LINE.search(text)
        file = next((m.group(1) for m in map(_CSV_FILE.match, output) if m), "a raw file")
        where = f"{file}, line {line.group(1)}" if line else file
        return f"{where}: column {column} holds {value!r}, which is not a {kind.lower()}"
    contracts = contract_failures(output)
    if contracts:
        return "; ".join(contracts)
    for i, line in enumerate(output):
        if line.startswith("Compilation Error in operation") and i + 1 < len(output):
            return output[i + 1].strip()  # the message of a check in macros/ (missing file or column)
    for line in output:
        message = _MESSAGE.match(line) or _SPARK_MESSAGE.match(line)
        if message and message.group(1).startswith("Out of Memory"):
            limit = os.environ.get("SEPSIS_FUSION_DUCKDB_MEMORY_LIMIT", "60%")
            return (
                f"{message.group(1)}: DuckDB's memory_limit is {limit}; raise SEPSIS_FUSION_DUCKDB_MEMORY_LIMIT "
                "(a share of RAM such as 80%, or a size such as 16GB)"
            )
        if message:
            return message.group(1)
    return None


def contract_failures(output: list[str]) -> list[str]:
    """Each model whose enforced contract failed, with its mismatched columns, from dbt's output."""
    failures: dict[tuple[str, str], list[str]] = {}
    model = None
    for line in output:
        error = _MODEL_ERROR.search(line)
        if error or _ANY_ERROR.search(line):  # the rows that follow belong to this error
            model = error.groups() if error else None
            continue
        row = _CONTRACT_ROW.match(line)
        if model is None or not row or row.group(1) == "column_name":
            continue
        column, in_sql, in_contract, reason = row.groups()
        if reason == "data type mismatch":
            what = f"column {column} is {in_sql} in the SQL but {in_contract} in the contract"
        elif reason == "missing in definition":
            what = f"column {column} ({in_contract}) of the contract is not in the SQL"
        else:
            what = f"column {column} ({in_sql}) of the SQL is not in the contract"
        columns = failures.setdefault(model, [])
        if what not in columns:  # dbt may print the same error twice
            columns.append(what)
    return [
        f"{name} ({path}) breaks its enforced contract: {', '.join(cols)}" for (name, path), cols in failures.items()
    ]


def built_from(warehouse: Path | None = None) -> Path | None:
    """The MIMIC-IV folder the data folder's marts were last built from (DuckDB's build, else Spark's);
    None before a complete build."""
    warehouse = Path(warehouse or paths.warehouse_path())
    for target in (warehouse.parent / f"{warehouse.stem}_dbt", warehouse.parent / "spark_dbt"):
        stamp = _read_stamp(target / "last_build.json")
        if stamp and stamp.get("mimic_dir"):
            return Path(stamp["mimic_dir"])
    return None


def inputs_fingerprint(mimic_dir: Path, project: Path) -> dict[str, str]:
    """What a build depends on: the raw files (path, size, modification time) and the project's files."""
    raw = hashlib.sha256()
    for path in sorted(p for sub in ("hosp", "icu", "note") for p in (mimic_dir / sub).glob("*") if p.is_file()):
        st = path.stat()
        raw.update(f"{path.relative_to(mimic_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    code = hashlib.sha256()
    skip = {"target", "logs", "dbt_packages"}
    for path in sorted(p for p in project.rglob("*") if p.is_file() and not skip & set(p.relative_to(project).parts)):
        code.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes())
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("DBT_")}
    return {
        "mimic_dir": str(mimic_dir),
        "raw": raw.hexdigest(),
        "project": code.hexdigest(),
        "dbt_env": json.dumps(env),
    }


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_results(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    # unique_id: "model.sepsis_fusion.stg_icustays", "test.sepsis_fusion.unique_stg_icustays_stay_id.<hash>"
    return [(r["unique_id"].split(".")[2], r["status"]) for r in data.get("results", [])]
