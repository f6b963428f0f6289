"""Benchmark of a point-in-time retrieval split into groups of feature views (pipelines/features/training.py,
VIEWS_PER_QUERY) against one query of the whole feature service, side by side in one run, on a data folder
with an applied store (e.g. `make demo`'s data/).

Feast's DuckDB offline store compiles one ibis expression joining every view; its cost grows faster than
the number of views and hardly with the rows, so every retrieval pays it (the training set, offline scoring,
each `Run.predict`). For each entity-row count: the seconds of one query and of groups of k views, best of
--repeat, alternating, and the answers checked equal.

    python bench/bench_retrieval_groups.py --data data [--rows 8 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from sepsis_fusion.pipelines.features import training  # noqa: E402
from sepsis_fusion.pipelines.features.store import SERVICE_NAME, open_store  # noqa: E402

ONE_QUERY = 10_000  # more views per query than the service has


def timed(store, service, ids, times, views_per_query: int) -> tuple[float, pd.DataFrame]:
    training.VIEWS_PER_QUERY = views_per_query
    start = time.perf_counter()
    answer = training._retrieve(store, service, ids, times)
    return time.perf_counter() - start, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--rows", type=int, nargs="+", default=[8, 2000])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 3, 6])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    store = open_store(args.data)
    service = store.get_feature_service(SERVICE_NAME)
    views = len(service.feature_view_projections)
    cohort = training.read_cohort(args.data)
    report = {"data": str(args.data), "views": views, "results": []}
    print(f"{views} feature views, {sum(len(p.features) for p in service.feature_view_projections)} features")
    for n in args.rows:
        rows = cohort.sample(min(n, len(cohort)), random_state=0)
        ids, times = rows["stay_id"].to_numpy(), rows["prediction_time"]
        best: dict[int, float] = {}
        reference = None
        for _ in range(args.repeat):
            for k in (ONE_QUERY, *args.groups):
                seconds, answer = timed(store, service, ids, times, k)
                best[k] = min(best.get(k, float("inf")), seconds)
                if reference is None:
                    reference = answer
                else:
                    pd.testing.assert_frame_equal(answer[reference.columns], reference)
        one = best[ONE_QUERY]
        print(f"{len(rows):>6} rows: one query {one:.2f} s", end="")
        for k in args.groups:
            print(f"; {k} view(s) per query {best[k]:.2f} s ({one / best[k]:.2f}x)", end="")
        print()
        report["results"].append(
            {"rows": len(rows), "one_query_s": one, **{f"groups_of_{k}_s": best[k] for k in args.groups}}
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrieval_groups.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
