"""Small helpers that turn numpy columns into pyarrow tables laid out as a MIMIC-IV table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import MIMIC_TABLES

ARROW_TYPES = {
    "INTEGER": pa.int64(),
    "SMALLINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "REAL": pa.float64(),
    "VARCHAR": pa.string(),
    "TIMESTAMP": pa.timestamp("s"),
    "DATE": pa.date32(),
}
NAT = -(2**62)  # "no time" in int64 second columns


def seconds(values: np.ndarray) -> pa.Array:
    """int64/float seconds since the epoch (NaN or NAT = missing) -> timestamp[s]."""
    v = np.asarray(values)
    missing = (np.isnan(v) | (v <= NAT)) if v.dtype.kind == "f" else v == NAT
    ints = np.where(missing, 0, v).astype(np.int64)
    return pa.array(ints, mask=missing).cast(pa.timestamp("s"))


def number_text(values: np.ndarray, decimals: int) -> pa.Array:
    """The `value` text MIMIC-IV stores beside `valuenum`: the number as charted."""
    return pc.cast(pa.array(np.round(values, decimals) + 0.0, from_pandas=True), pa.string())  # + 0.0: no "-0"


def table(name: str, columns: dict[str, object], length: int) -> pa.Table:
    """A table with every column of MIMIC-IV's `name` in order; columns not given are empty."""
    arrays = []
    for col, sql_type in MIMIC_TABLES[name]:
        typ = ARROW_TYPES[sql_type]
        value = columns.pop(col, None)
        if value is None:
            arrays.append(pa.nulls(length, typ))
            continue
        if isinstance(value, (pa.Array, pa.ChunkedArray)):
            arr = value
        elif sql_type == "TIMESTAMP":
            arr = seconds(np.asarray(value))
        elif sql_type == "DATE":
            arr = seconds(np.asarray(value)).cast(pa.date32())
        elif np.isscalar(value):
            arr = pa.array(np.repeat(np.asarray([value]), length))
        else:
            arr = pa.array(np.asarray(value), from_pandas=True)
        arrays.append(arr.cast(typ) if arr.type != typ else arr)
    if columns:
        raise KeyError(f"{name}: columns not in MIMIC-IV: {sorted(columns)}")
    return pa.table(arrays, names=[c for c, _ in MIMIC_TABLES[name]])


def choice_text(rng: np.random.Generator, options: tuple[str, ...] | list[str], size: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), size)]


def grid(
    rng: np.random.Generator,
    start_h: np.ndarray,
    end_h: np.ndarray,
    every_h: float | np.ndarray,
    keep: float = 1.0,
    jitter_h: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Regular measurement times per stay in [start, end): (stay positions, hours), phase random per stay."""
    every = np.broadcast_to(np.asarray(every_h, dtype=float), start_h.shape)
    phase = rng.uniform(0, 1, start_h.size) * every
    span = np.maximum(end_h - start_h - phase, 0)
    counts = np.where(end_h > start_h + phase, np.floor(span / every).astype(np.int64) + 1, 0)
    pos = np.repeat(np.arange(start_h.size), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    hours = start_h[pos] + phase[pos] + k * every[pos]
    if jitter_h:
        hours = hours + rng.uniform(-jitter_h, jitter_h, hours.size)
    ok = (hours >= start_h[pos]) & (hours < end_h[pos])
    if keep < 1.0:
        ok &= rng.random(hours.size) < keep
    return pos[ok], hours[ok]
