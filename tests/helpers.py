"""What tests share: running the command line, and reading a warehouse.

`invoke` runs the CLI in this process with typer's CliRunner (argument handling, messages, exit codes);
`run_cli` and `start_cli` run the installed `sepsis-fusion` command in a subprocess, as users do, for
end-to-end runs and servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
from typer.testing import CliRunner

from sepsis_fusion.pipelines.cli import app

COMMAND = Path(sys.executable).with_name("sepsis-fusion")


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
