"""Deterministic gzip CSV writing in MIMIC-IV's layout (unquoted header, quotes only where needed)."""

from __future__ import annotations

import gzip
import io
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from .present import Present
from .schema import column_names

# MIMIC-IV quotes a value only where it holds a comma, quote or line break. Arrow cannot decide that per
# value, so a chunk goes out unquoted when none of its values needs quotes (Arrow refuses otherwise) and
# with every string quoted when some do (free text); readers see the same values either way.
UNQUOTED = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=65536)
QUOTED = pacsv.WriteOptions(include_header=False, quoting_style="needed", batch_size=65536)


class TableWriter:
    """Appends chunks of one MIMIC-IV table to DIR/<table>.csv.gz.

    The gzip header carries no file name and no time, so the same rows give the same bytes. Formatting
    and compression run on a background thread (both release the GIL), at most one chunk behind the caller.
    """

    def __init__(self, root: Path, table: str, level: int, pool: ThreadPoolExecutor, present: Present | None = None):
        self.table, self.present = table, present
        self.path = root / f"{table}.csv.gz"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".part")
        self._raw = open(self._tmp, "wb")
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=level, mtime=0)
        self._gz.write((",".join(column_names(table)) + "\n").encode())
        self._pool = pool
        self._pending: Future | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        # At most one chunk waits per table: without this wait, generation running ahead of compression
        # queued every chunk (15 GiB at 94,000 stays).
        previous = self._pending
        if previous is not None:
            previous.result()
        if self.present is not None:
            table = self.present.cut(self.table, table)
        self.rows += table.num_rows
        self._pending = self._pool.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        buf = io.BytesIO()
        try:
            pacsv.write_csv(table, buf, UNQUOTED)
        except pa.ArrowInvalid:
            buf = io.BytesIO()
            pacsv.write_csv(table, buf, QUOTED)
        self._gz.write(buf.getbuffer())

    def close(self) -> None:
        if self._pending is not None:
            self._pending.result()
        self._gz.close()
        self._raw.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        self._raw.close()
        self._tmp.unlink(missing_ok=True)
