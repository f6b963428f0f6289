"""Benchmark of training-set retrieval: this version's feature service against another version's, on the
same synthetic MIMIC-IV, side by side in one run.

For each store: Feast's get_historical_features for the feature service with one entity row per cohort
stay at its prediction time (what `sepsis-fusion train` retrieves), best of --repeat, the two stores
alternating; and the Parquet bytes of the files the service's views read. The other version is a
feature_repo/ folder of an earlier checkout (e.g. `git worktree add /tmp/before <commit>`) with a data
folder built by that checkout; only its Feast definitions are loaded, in its own registry.

    python bench/bench_training_set.py --data /work/d30 --baseline-repo /tmp/before/feature_repo \
        --baseline-data /work/d30_before [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from sepsis_fusion.pipelines import paths  # noqa: E402
from sepsis_fusion.pipelines.features.store import SERVICE_NAME  # noqa: E402

STORE_YAML = """project: sepsis_fusion
provider: local
registry: {data}/feast_bench/registry.db
online_store:
  type: sqlite
  path: {data}/feast_bench/online_store.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""


def open_bench_store(repo: Path, data: Path):
    """A Feast store of `repo`'s definitions over `data`'s files, in a registry of its own."""
    from feast import FeatureStore

    (data / "feast_bench").mkdir(parents=True, exist_ok=True)
    config = data / "feast_bench" / "feature_store.yaml"
    config.write_text(STORE_YAML.format(data=data))
    env = {**os.environ, "SEPSIS_FUSION_DATA": str(data)}
    feast = Path(sys.executable).with_name("feast")
    proc = subprocess.run(
        [str(feast), "-c", str(repo), "-f", str(config), "apply"], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"feast apply of {repo} failed:\n{proc.stderr[-2000:]}")
    return FeatureStore(repo_path=str(repo), fs_yaml_file=config)


def parquet_bytes(store) -> tuple[int, int]:
    """Bytes of the distinct files the service's views read, and their number."""
    files = {
        store.get_feature_view(p.name).batch_source.path
        for p in store.get_feature_service(SERVICE_NAME).feature_view_projections
    }
    return sum(Path(f).stat().st_size for f in files), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=paths.data_dir(), help="a data folder built by this version")
    parser.add_argument("--baseline-repo", type=Path, required=True, help="feature_repo/ of the other version")
    parser.add_argument("--baseline-data", type=Path, required=True, help="a data folder built by the other version")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    stores = {
        "this version": (paths.FEATURE_REPO, args.data.resolve()),
        "baseline": (args.baseline_repo.resolve(), args.baseline_data.resolve()),
    }
    opened, entities, sizes = {}, {}, {}
    for label, (repo, data) in stores.items():
        store = open_bench_store(repo, data)
        cohort = duckdb.sql(f"""SELECT stay_id, prediction_time FROM '{data}/features/cohort.parquet'
                                WHERE stay_id IS NOT NULL ORDER BY stay_id""").df()
        entities[label] = cohort.rename(columns={"prediction_time": "event_timestamp"})
        opened[label], sizes[label] = store, parquet_bytes(store)
        views = len(store.get_feature_service(SERVICE_NAME).feature_view_projections)
        print(
            f"{label}: {repo} over {data}: {len(cohort):,} cohort stays, {views} views, "
            f"{sizes[label][1]} files, {sizes[label][0] / 2**20:,.1f} MiB",
            flush=True,
        )
    seconds = {label: [] for label in stores}
    columns = {}
    for _ in range(args.repeat):
        for label, store in opened.items():
            start = time.perf_counter()
            frame = store.get_historical_features(
                entity_df=entities[label],
                features=store.get_feature_service(SERVICE_NAME),
                full_feature_names=True,
                filter_by_created_timestamp=True,
            ).to_df()
            seconds[label].append(time.perf_counter() - start)
            columns[label] = frame.shape[1] - 2
            assert len(frame) == len(entities[label]), (label, len(frame))
    best = {label: min(s) for label, s in seconds.items()}
    for label in stores:
        print(f"{label}: retrieval {best[label]:.1f} s (best of {args.repeat}), {columns[label]} feature columns")
    ratio = best["this version"] / best["baseline"]
    size_ratio = sizes["this version"][0] / sizes["baseline"][0]
    print(f"this version / baseline: retrieval {ratio:.2f}x (target <= 2), Parquet {size_ratio:.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        label: {
            "repo": str(stores[label][0]),
            "data": str(stores[label][1]),
            "retrieval_s": best[label],
            "all_s": seconds[label],
            "parquet_bytes": sizes[label][0],
            "files": sizes[label][1],
            "feature_columns": columns[label],
            "cohort_stays": len(entities[label]),
        }
        for label in stores
    }
    report["ratio"] = {"retrieval": ratio, "parquet": size_ratio}
    (RESULTS / "training_set.json").write_text(json.dumps(report, indent=2))
    print(f"written to {RESULTS / 'training_set.json'}")


if __name__ == "__main__":
    main()
