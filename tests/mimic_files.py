"""Editing a MIMIC-IV folder in tests: planting rows into its gzip CSV files."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from sepsis_fusion.pipelines.synth.schema import column_names


def append_rows(mimic: Path, table: str, rows: list[dict]) -> None:
    """Append rows (missing columns empty) to a MIMIC-IV gzip CSV, keeping its header and quoting."""
    path = mimic / f"{table}.csv.gz"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in column_names(table)])
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + out.getvalue().encode()))


def set_cell(path: Path, row: int, column: str, text: str) -> None:
    """Write `text` into one cell (row 0 is the header) of a gzip CSV without quoted commas."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    cells = lines[row].split(",")
    cells[lines[0].split(",").index(column)] = text
    lines[row] = ",".join(cells)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
