"""Benchmark of the landmark: which prediction time the study asks about, and what each choice costs.

On one synthetic MIMIC-IV (with `_truth/`), builds the cohort under each setting of the dbt vars that place
T (docs/COHORT.md) and trains the study on each, side by side:

    prediction_hours 24, 0 and 6 (culture_known_at: charttime, the default), and 24 with storetime

For each: first Sepsis-3 stays and the share that reaches the cohort, the in-hospital deaths among them and
the share kept, the primary label's rate, the hours from onset to T (median and IQR), and the held-out test
AUROC (95% bootstrap interval) of the fusion model, tuned logistic regression and the clinical scores at T,
with the fusion model minus logistic regression (paired interval). Each setting has its own cohort and
test set, so figures compare across settings only as far as their intervals allow.

Every setting gets its own data folder under --out (warehouse, features, Feast store, run); the embedding
cache is shared, so notes are embedded once. Training uses the demo grid without the loss comparison and
ablation (`experiments: false`). Prints a Markdown table and writes bench/results/cohort_landmark_<stays>.json.

    python bench/bench_cohort_landmark.py --mimic data/bench30k/synthetic [--out data/bench30k/landmark]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from sepsis_fusion.model.cohort_table import reach  # noqa: E402
from sepsis_fusion.model.config import load_config  # noqa: E402
from sepsis_fusion.model.metrics import auroc, bootstrap, paired_difference  # noqa: E402
from sepsis_fusion.model.study import run_study  # noqa: E402
from sepsis_fusion.pipelines import workflow  # noqa: E402
from sepsis_fusion.pipelines.features.training import training_set  # noqa: E402

SETTINGS = {
    "T = recognition + 24 h (default)": {"prediction_hours": 24, "culture_known_at": "charttime"},
    "T = recognition + 0 h": {"prediction_hours": 0, "culture_known_at": "charttime"},
    "T = recognition + 6 h": {"prediction_hours": 6, "culture_known_at": "charttime"},
    "T = recognition + 24 h, cultures from storetime": {"prediction_hours": 24, "culture_known_at": "storetime"},
}


def run_setting(name: str, dbt_vars: dict, mimic: Path, folder: Path, cache: Path, resamples: int) -> dict:
    """Build, embed, materialize, train and score one setting in its own data folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "embedding_cache").exists():
        (folder / "embedding_cache").symlink_to(cache, target_is_directory=True)
    os.environ["SEPSIS_FUSION_DATA"] = str(folder)
    print(f"\n== {name}: {dbt_vars}", flush=True)
    start = time.perf_counter()
    workflow.build(mimic, dbt_vars=dbt_vars)
    workflow.embed(workflow.DEMO_ENCODER)
    workflow.apply_store()
    workflow.materialize_store()
    ts = training_set(folder)
    config = load_config(ROOT / "model" / "configs" / "demo.yaml", ["experiments=false"])
    run_dir = folder / "runs" / "landmark"
    run_study(ts, config, run_dir, progress=lambda line: print(line, flush=True))
    seconds = time.perf_counter() - start

    first_stays, first_deaths, cohort_stays, cohort_deaths = reach(ts.flow)
    hours = (ts.cohort["prediction_time"] - ts.cohort["onset_time"]).dt.total_seconds() / 3600
    test = pd.read_csv(run_dir / "predictions.csv")
    baselines = pd.read_csv(run_dir / "baseline_predictions.csv").set_index("stay_id").loc[test["stay_id"]]
    y, fusion = test["outcome"].to_numpy(), test["probability"].to_numpy()
    ranking = lambda y_, p_: {"auroc": auroc(y_, p_)}  # noqa: E731
    models = {"fusion model": fusion, **{c: baselines[c].to_numpy() for c in baselines.columns}}
    scored = {m: bootstrap(y, p, ranking, resamples, label=m)["auroc"] for m, p in models.items()}
    difference = paired_difference(y, fusion, models["logistic regression"], resamples)["auroc"]
    return {
        "setting": name,
        "vars": dbt_vars,
        "first_sepsis3_stays": first_stays,
        "cohort_stays": cohort_stays,
        "first_sepsis3_deaths": first_deaths,
        "cohort_deaths": cohort_deaths,
        "primary_label_rate": float(ts.labels().mean()),
        "hours_onset_to_t": [float(hours.quantile(q)) for q in (0.25, 0.5, 0.75)],
        "test_stays": len(test),
        "auroc": scored,
        "fusion_minus_logistic_regression": difference,
        "minutes": seconds / 60,
    }


def table(rows: list[dict]) -> str:
    ci = lambda m: f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"  # noqa: E731
    lines = [
        "| setting | cohort stays (of first Sepsis-3) | in-hospital deaths kept | 28-day death rate | hours onset "
        "to T, median [IQR] | test stays | fusion AUROC | logistic regression AUROC | fusion - LR | SOFA at T "
        "| OASIS at T |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        q1, med, q3 = r["hours_onset_to_t"]
        d = r["fusion_minus_logistic_regression"]
        lines.append(
            f"| {r['setting']} | {r['cohort_stays']:,} of {r['first_sepsis3_stays']:,} "
            f"({r['cohort_stays'] / r['first_sepsis3_stays']:.0%}) | {r['cohort_deaths']:,} of "
            f"{r['first_sepsis3_deaths']:,} ({r['cohort_deaths'] / r['first_sepsis3_deaths']:.0%}) | "
            f"{r['primary_label_rate']:.1%} | {med:.0f} [{q1:.0f}-{q3:.0f}] | {r['test_stays']:,} | "
            f"{ci(r['auroc']['fusion model'])} | {ci(r['auroc']['logistic regression'])} | "
            f"{d['value']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f}) | {r['auroc']['SOFA at T']['value']:.3f} | "
            f"{r['auroc'].get('OASIS at T', {'value': np.nan})['value']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mimic", type=Path, required=True, help="a synthetic MIMIC-IV folder (with _truth/)")
    parser.add_argument("--out", type=Path, default=None, help="where the settings' data folders go")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--only", action="append", default=[], help="run only these settings (by name)")
    args = parser.parse_args()
    mimic = args.mimic.resolve()
    stays = len(pd.read_csv(mimic / "icu" / "icustays.csv.gz", usecols=["stay_id"]))
    out = (args.out or mimic.parent / "landmark").resolve()
    cache = out / "embedding_cache"
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, dbt_vars) in enumerate(SETTINGS.items()):
        if args.only and name not in args.only:
            continue
        rows.append(run_setting(name, dbt_vars, mimic, out / f"setting_{i}", cache, args.resamples))
        print("\n" + table(rows), flush=True)
    print(f"\n{stays:,} generated stays; each setting's own cohort and test set (not paired across settings)")
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cohort_landmark_{stays}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
