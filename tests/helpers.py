"""What tests share: running the command line, and reading a warehouse.

`invoke` runs the CLI in this process with typer's CliRunner (argument handling, messages, exit codes);
`run_cli` and `start_cli` run the installed `sepsis-fusion` command in a subprocess, as users do, for
end-to-end runs and servers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pandas as pd
from typer.testing import CliRunner

from sepsis_fusion.pipelines.cli import app

COMMAND = Path(sys.executable).with_name("sepsis-fusion")

# Radiology-report sentences: the tiny test BERT's vocabulary is trained on them (conftest.tiny_bert), and
# notes planted into MIMIC-IV folders use them
REPORT_SENTENCES = [
    "The lungs are clear without focal consolidation.",
    "New multifocal airspace opacities concerning for pneumonia.",
    "Endotracheal tube terminates approximately 4 cm above the carina.",
    "Innumerable hypodense hepatic lesions compatible with metastases.",
    "Small bilateral pleural effusions and mild pulmonary vascular congestion.",
]


def _env(data: Path | None) -> dict[str, str]:
    extra = {"SEPSIS_FUSION_DATA": str(data)} if data is not None else {}
    return {**os.environ, "COLUMNS": "200", **extra}


def invoke(args: list[str], data: Path | None = None):
    """The CLI in this process: a click Result with exit_code, stdout and stderr."""
    extra = {"SEPSIS_FUSION_DATA": str(data)} if data is not None else {}
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **extra})


def run_cli(args: list[str], data: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """`sepsis-fusion ARGS` in a subprocess, to the end."""
    return subprocess.run(
        [str(COMMAND), *map(str, args)], capture_output=True, text=True, env=_env(data), timeout=timeout
    )


def start_cli(args: list[str], data: Path | None = None, **popen) -> subprocess.Popen:
    """`sepsis-fusion ARGS` started in a subprocess (a server); the caller stops it."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.STDOUT)
    return subprocess.Popen([str(COMMAND), *map(str, args)], env=_env(data), text=True, **popen)


def query(warehouse: Path, sql: str) -> pd.DataFrame:
    """A query on a built warehouse, opened read-only."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).df()


def scalar(warehouse: Path, sql: str):
    return query(warehouse, sql).iat[0, 0]


def assert_exit(result, code: int) -> None:
    """An invoke() result ended with `code`, and, if it failed, through the CLI's own exit (no crash)."""
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output[-3000:]}\n{result.exception!r}"
    if code:
        assert isinstance(result.exception, SystemExit), repr(result.exception)


def copy_feature_store(feature_data: Path, target: Path) -> Path:
    """A data folder with the feature files of `feature_data` and a Feast store of its own, applied (SQLite)."""
    from sepsis_fusion.pipelines.features.store import apply

    shutil.copytree(feature_data / "features", target / "features")
    apply(target)
    return target


def http(port: int, path: str, body=None, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, dict]:
    """GET (or POST `body`, JSON or bytes) on the local service: status, answer (JSON, or {'text': ...}), headers."""
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        answer = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        answer = error
    with answer:
        raw, status, received = answer.read(), answer.status, dict(answer.headers)
    try:
        return status, json.loads(raw), received
    except ValueError:
        return status, {"text": raw.decode()}, received


def post(port: int, body, path: str = "/score") -> tuple[int, dict]:
    status, answer, _ = http(port, path, body)
    return status, answer


def wait_for_service(proc: subprocess.Popen, port: int, path: str = "/livez", timeout: float = 120) -> dict:
    """The service's first answer on `path` (any status), once it listens; fails with its log if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return http(port, path, timeout=5)[1]
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else f"the service exited {proc.returncode}"
            time.sleep(0.5)
    raise AssertionError(f"the service did not answer on {path} within {timeout} s")
