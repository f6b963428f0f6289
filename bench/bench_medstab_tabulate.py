"""Benchmark of MEDS-Tab's time-series aggregation: its Python loop over every (subject, time) and every
lookback (with the three defects mended, so both give the same matrix) against the vectorised
`medstab_patches.aggregate_ranges`, side by side in one run on one shard of a MEDS export (docs/MEDS.md).

    python bench/bench_medstab_tabulate.py --export data/meds/demo --medstab data/meds-tab/demo --split held_out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def looped(index_df, matrix, window_size, agg, num_features):
    """MEDS-Tab 0.2.0's compute_agg with the [first, last + 1) bounds: its own aggregate_matrix loop, twice."""
    import polars as pl
    from MEDS_tabular_automl import generate_summarized_reps as reps

    groups = (
        index_df.with_row_index("index")
        .group_by(["subject_id", "time"], maintain_order=True)
        .agg(pl.col("index").min().alias("min_index"), (pl.col("index").max() + 1).alias("max_index"))
        .collect()
    )
    matrix = reps.aggregate_matrix(groups.select("min_index", "max_index"), matrix, agg, num_features)
    windows = reps.get_rolling_window_indicies(groups.lazy().select("subject_id", "time"), window_size)
    if isinstance(windows, pl.LazyFrame):
        windows = windows.collect()
    return reps.aggregate_matrix(windows, matrix, agg, num_features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="a MEDS export (sepsis-fusion export meds)")
    parser.add_argument("--medstab", type=Path, required=True, help="MEDS-Tab's output folder (its describe step)")
    parser.add_argument("--split", default="held_out")
    parser.add_argument("--aggs", nargs="+", default=["code/count", "value/min"])
    parser.add_argument("--lookbacks", nargs="+", default=["7d", "full"])
    args = parser.parse_args()

    import polars as pl
    from MEDS_tabular_automl.describe_codes import get_feature_columns
    from MEDS_tabular_automl.generate_ts_features import get_flat_ts_rep

    from sepsis_fusion.pipelines.meds import medstab_patches

    medstab_patches.apply()  # the mended value rows and min/max, for both
    features = get_feature_columns(args.medstab / "metadata" / "codes.parquet")
    shard = sorted((args.export / "data" / args.split).glob("*.parquet"))[0]
    frame = pl.scan_parquet(shard)
    events = frame.select(pl.len()).collect().item()
    subjects = frame.select(pl.col("subject_id").n_unique()).collect().item()
    print(f"{shard}: {subjects:,} subjects, {events:,} events, {len(features)} features")
    print("| aggregation | lookback | MEDS-Tab's loop (s) | vectorised (s) | ratio | max abs difference |")
    print("|---|---|---:|---:|---:|---:|")
    for agg in args.aggs:
        index_df, matrix = get_flat_ts_rep(agg, features, frame)
        for lookback in args.lookbacks:
            started = time.perf_counter()
            slow = looped(index_df, matrix, lookback, agg, len(features))
            loop_s = time.perf_counter() - started
            started = time.perf_counter()
            fast = medstab_patches.compute_agg(index_df, matrix, lookback, agg, len(features))
            fast_s = time.perf_counter() - started
            diff = np.abs(slow.toarray().astype(float) - fast.toarray().astype(float)).max()
            print(f"| {agg} | {lookback} | {loop_s:.2f} | {fast_s:.2f} | {loop_s / fast_s:.1f}x | {diff:.2g} |")


if __name__ == "__main__":
    main()
