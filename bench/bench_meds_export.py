"""Benchmark of `sepsis-fusion export meds`: time, events, size and peak memory of the MEDS export of a built
synthetic MIMIC-IV, and ACES' labels against the project's (docs/MEDS.md).

No model is trained here: the subject split is the study's own patient split (model/protocol.py, 80/20
stratified by the primary outcome, grouped by patient, seed 0; tuning = a fifth of the training part, grouped
by patient) written as the minimal run folder the export reads. Synthetic data are generated and built once
under bench/results/ (ignored by git) and reused.

    python bench/bench_meds_export.py --stays 30000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def built(stays: int) -> Path:
    """A data folder with the warehouse and feature files of `stays` synthetic stays (retrospective)."""
    from sepsis_fusion.pipelines.build import dbt_build
    from sepsis_fusion.pipelines.synth.generate import generate, matches

    mimic = RESULTS / f"synthetic_{stays}_retrospective"
    if not matches(mimic, stays, 0, "full", live_share=0):
        generate(stays, 0, mimic, live_share=0, progress=True)
    data = RESULTS / f"meds_data_{stays}"
    started = time.perf_counter()
    dbt_build(mimic, warehouse=data / "warehouse.duckdb")
    print(f"dbt build: {time.perf_counter() - started:,.0f} s")
    return data


def split_run(data: Path, out: Path) -> Path:
    """The minimal run folder the export reads, split by the study's own patient split."""
    from sepsis_fusion.model.protocol import cv_folds, patient_split
    from sepsis_fusion.model.run_folder import DATA, MODEL, OOF_PREDICTIONS, PREDICTIONS, RunFolder
    from sepsis_fusion.pipelines.features.training import read_cohort

    cohort = read_cohort(data, outcome_known=True)
    y = cohort["died_within_horizon"].to_numpy(dtype=int)
    groups = cohort["subject_id"].to_numpy()
    train, test = patient_split(y, groups, 0.2, 0)
    fold = np.zeros(len(train), dtype=int)
    for k, (_, rows) in enumerate(cv_folds(y[train], groups[train], 5, 0)):
        fold[rows] = k
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    run = RunFolder(out)
    run.write_csv(PREDICTIONS, cohort.iloc[test][["stay_id", "subject_id"]])
    run.write_csv(OOF_PREDICTIONS, cohort.iloc[train][["stay_id", "subject_id"]].assign(fold=fold))
    run.write_json(MODEL, {"outcome": "died_within_horizon"})
    run.write_json(DATA, {"fingerprint": None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, default=30_000)
    parser.add_argument("--no-aces", action="store_true", help="skip the ACES label comparison")
    args = parser.parse_args()

    from tqdm import tqdm

    from sepsis_fusion.pipelines.meds import task
    from sepsis_fusion.pipelines.meds.export import export_meds

    data = built(args.stays)
    run = split_run(data, RESULTS / f"meds_split_{args.stays}")
    exported = export_meds(run, RESULTS / f"meds_{args.stays}", data, progress=tqdm)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result = {
        "stays": args.stays,
        "subjects": exported.subjects,
        "events": exported.events,
        "codes": exported.codes,
        "shards": exported.shards,
        "mib": round(exported.bytes / 2**20, 1),
        "export_seconds": round(exported.seconds, 1),
        "peak_rss_gib": round(peak, 2),
    }
    if not args.no_aces:
        started = time.perf_counter()
        project, aces = task.project_labels(exported.root), task.aces_labels(exported.root)
        differences = task.label_differences(project, aces)
        result |= {
            "aces_seconds": round(time.perf_counter() - started, 1),
            "labels": len(project),
            "aces_labels": len(aces),
            "label_differences": len(differences),
            "positive_share": round(float(pd.Series(project["boolean_value"]).mean()), 4),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
