"""MEDS-Tab 0.2.0's steps with three defects of its time-series tabularization mended at run time
(nothing in site-packages is edited). `python -m sepsis_fusion.pipelines.meds.medstab_patches STEP ARGS...`
runs MEDS-Tab's own `main` of STEP (describe, tabularize-static, tabularize-time-series, cache-task, model)
with the same hydra arguments as its console scripts, after replacing:

1. `generate_ts_features.get_long_value_df`: 0.2.0 keeps the rows whose code is among the feature names
   ("LAB//50813/value"), which no code ("LAB//50813") ever is, so every value/* matrix is empty and the model
   sees counts only. Mended: rows whose code is among the features' codes.
2. `generate_summarized_reps.compute_agg`: the first step groups the rows of one (subject, time) by their
   first and last row index and slices [first, last), an exclusive end, so the last row of each time is lost
   and a time with one row vanishes (its counts too). Mended: the end is last + 1.
3. `generate_summarized_reps.sparse_aggregate`: value/min and value/max reduce over the implicit zeros of
   rows without the code, so a positive lab's minimum is 0. Mended: over the stored values only.

tests/test_meds.py checks each against the tabulated matrices; docs/MEDS.md says why they are needed.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np

STEPS = {
    "describe": "MEDS_tabular_automl.scripts.describe_codes",
    "tabularize-static": "MEDS_tabular_automl.scripts.tabularize_static",
    "tabularize-time-series": "MEDS_tabular_automl.scripts.tabularize_time_series",
    "cache-task": "MEDS_tabular_automl.scripts.cache_task",
    "model": "MEDS_tabular_automl.scripts.launch_model",
}


def get_long_value_df(df, ts_columns: list[str]):
    """The numeric values of the time-series features, as (data, (rows, columns)) of a sparse matrix."""
    import polars as pl
    from MEDS_tabular_automl.generate_ts_features import feature_name_to_code

    column_of_code = {feature_name_to_code(name): i for i, name in enumerate(ts_columns)}
    values = df.with_row_index("index").drop_nulls("numeric_value").filter(pl.col("code").is_in(list(column_of_code)))
    rows = values.select("index").collect().to_series().to_numpy()
    columns = (
        values.select(pl.col("code").cast(str).replace_strict(column_of_code, return_dtype=pl.Int64))
        .collect()
        .to_series()
        .to_numpy()
    )
    data = values.select("numeric_value").collect().to_series().to_numpy()
    return data, (rows, columns)


def compute_agg(index_df, matrix, window_size, agg, num_features, label_df=None, use_tqdm=False):
    """MEDS-Tab's compute_agg with each (subject, time)'s rows as [first, last + 1), both of its steps (rows to
    times, times to lookbacks) done for all ranges at once by `aggregate_ranges`: MEDS-Tab loops over them in
    Python, which takes hours at MIMIC-IV's charting density."""
    import polars as pl
    from MEDS_tabular_automl import generate_summarized_reps as reps

    groups = (
        index_df.with_row_index("index")
        .group_by(["subject_id", "time"], maintain_order=True)
        .agg(pl.col("index").min().alias("min_index"), (pl.col("index").max() + 1).alias("max_index"))
        .collect()
    )
    times = groups.lazy().select("subject_id", "time")
    matrix = aggregate_ranges(groups["min_index"].to_numpy(), groups["max_index"].to_numpy(), matrix, agg, num_features)
    windows = reps.get_rolling_window_indicies(times, window_size, label_df)
    if isinstance(windows, pl.LazyFrame):
        windows = windows.collect()
    starts, ends = windows["min_index"].to_numpy(), windows["max_index"].to_numpy()
    read = rows_read_by_labels(groups.select("subject_id", "time")) if label_df is None else None
    if read is not None:  # the other rows left empty: no label's features come from them
        unread = np.ones(len(starts), dtype=bool)
        unread[read] = False
        starts, ends = starts.copy(), ends.copy()
        ends[unread] = starts[unread]
    return aggregate_ranges(starts, ends, matrix, agg, num_features)


LABELS_VARIABLE = "SEPSIS_FUSION_MEDSTAB_LABELS"
_label_times = {}


def rows_read_by_labels(times) -> np.ndarray | None:
    """The rows of `times` (subject_id, time; one per event time, in order) that MEDS-Tab's cache-task will read
    for the labels under $SEPSIS_FUSION_MEDSTAB_LABELS: for each label, its subject's last event time at or
    before its prediction time (cache-task's as-of join). None when the variable is unset: every row is
    tabulated, as MEDS-Tab does. MEDS-Tab tabulates every event time of every patient, which at MIMIC-IV's
    charting density writes tens of gigabytes that cache-task then reads a few thousand rows of."""
    import os

    import polars as pl

    folder = os.environ.get(LABELS_VARIABLE)
    if not folder:
        return None
    if folder not in _label_times:
        _label_times[folder] = (
            pl.read_parquet(f"{folder}/**/*.parquet", columns=["subject_id", "prediction_time"])
            .with_columns(pl.col("prediction_time").cast(pl.Datetime("us")))
            .sort("subject_id", "prediction_time")
        )
    labels = _label_times[folder]
    rows = times.with_columns(pl.col("time").cast(pl.Datetime("us"))).with_row_index("row").sort("subject_id", "time")
    read = labels.join_asof(rows, left_on="prediction_time", right_on="time", by="subject_id", strategy="backward")
    return read["row"].drop_nulls().to_numpy().astype(np.int64)


def aggregate_ranges(starts, ends, matrix, agg: str, num_features: int):
    """Row r of the result aggregates rows [starts[r], ends[r]) of `matrix` (ranges may overlap) by `agg`
    (sum, sum_sqd, count of stored values; min, max over stored values), as MEDS-Tab's aggregate_matrix does
    with the mended sparse_aggregate, zeros dropped as it drops them. Column by column: sums by prefix sums,
    min and max by a sparse table, so the cost is that of numpy passes, not of a Python loop over rows."""
    from scipy.sparse import coo_array, csc_array

    agg = agg.split("/")[-1]
    if agg not in ("sum", "sum_sqd", "count", "min", "max"):
        raise ValueError(f"Aggregation method '{agg}' not implemented.")
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    columns = csc_array(matrix)
    columns.sum_duplicates()
    out_rows, out_cols, out_data = [], [], []
    for j in range(columns.shape[1]):
        rows = columns.indices[columns.indptr[j] : columns.indptr[j + 1]]
        if not len(rows):
            continue
        values = columns.data[columns.indptr[j] : columns.indptr[j + 1]]
        lo, hi = np.searchsorted(rows, starts), np.searchsorted(rows, ends)
        filled = np.flatnonzero(hi > lo)
        if agg in ("min", "max"):
            result = _range_extreme(values, lo[filled], hi[filled], np.minimum if agg == "min" else np.maximum)
        else:
            summed = {"sum": values, "sum_sqd": values.astype(np.float64) ** 2, "count": np.ones(len(values))}[agg]
            prefix = np.concatenate([[0], np.cumsum(summed, dtype=np.float64)])
            result = prefix[hi[filled]] - prefix[lo[filled]]
        keep = result != 0
        out_rows.append(filled[keep])
        out_cols.append(np.full(int(keep.sum()), j, dtype=np.int64))
        out_data.append(result[keep])
    if not out_rows:
        return coo_array((len(starts), num_features)).tocsr()
    data = np.concatenate(out_data)
    data = data.astype(np.int32 if agg == "count" else np.float32)
    return coo_array(
        (data, (np.concatenate(out_rows), np.concatenate(out_cols))), shape=(len(starts), num_features)
    ).tocsr()


def _range_extreme(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, reduce) -> np.ndarray:
    """reduce (np.minimum or np.maximum) of values[lo:hi] for each pair (hi > lo), by a sparse table."""
    table = [values]
    while 2 ** len(table) <= len(values):
        half = 2 ** (len(table) - 1)
        table.append(reduce(table[-1][:-half], table[-1][half:]))
    level = np.floor(np.log2(hi - lo)).astype(np.int64)
    out = np.empty(len(lo), dtype=values.dtype)
    for k in np.unique(level):
        at = level == k
        out[at] = reduce(table[k][lo[at]], table[k][hi[at] - 2**k])
    return out


_sparse_aggregate = None


def sparse_aggregate(sparse_matrix, agg: str):
    """min and max over each column's stored values (0 where a column has none); the rest as MEDS-Tab does."""
    if agg not in ("min", "max"):
        return _sparse_aggregate(sparse_matrix, agg)
    from scipy.sparse import csc_array

    columns = csc_array(sparse_matrix)
    columns.sum_duplicates()
    out = np.zeros(columns.shape[1], dtype=columns.dtype)
    filled = np.diff(columns.indptr) > 0
    if filled.any():
        reduce = np.minimum if agg == "min" else np.maximum
        out[filled] = reduce.reduceat(columns.data, columns.indptr[:-1][filled])
    return out


def apply() -> None:
    """Replace the three functions in MEDS-Tab's modules (looked up at call time by its steps)."""
    global _sparse_aggregate
    from MEDS_tabular_automl import generate_summarized_reps as reps
    from MEDS_tabular_automl import generate_ts_features as ts

    if _sparse_aggregate is None:
        _sparse_aggregate = reps.sparse_aggregate
    ts.get_long_value_df = get_long_value_df
    reps.compute_agg = compute_agg
    reps.sparse_aggregate = sparse_aggregate


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in STEPS:
        raise SystemExit(f"usage: python -m {__name__} {{{','.join(STEPS)}}} HYDRA_ARGS...")
    step = sys.argv.pop(1)
    apply()
    importlib.import_module(STEPS[step]).main()


if __name__ == "__main__":
    main()
