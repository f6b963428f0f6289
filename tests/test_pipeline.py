"""`sepsis-fusion pipeline`, the whole chain on a MIMIC-IV folder, run as users run it, on the open demo
(140 stays, no notes): every step runs or says why it was skipped, and nothing built is lost."""

from __future__ import annotations

import pandas as pd
from helpers import run_cli

from sepsis_fusion.pipelines.features.store import materialized_until, open_store


def test_the_open_demo_runs_through_the_chain_and_it_says_what_it_skipped_and_why(demo_dir, demo_warehouse):
    data = demo_warehouse.parent
    # no --encoder: the default (Bio_ClinicalBERT, from the hub) is never loaded, as the demo has no notes
    proc = run_cli(["pipeline", "--mimic", demo_dir], data)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-4000:]
    assert "Traceback" not in out
    summary = out[out.index("what ran") :]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in summary.splitlines() if line.startswith("│")]
    assert {row[0]: row[1] for row in rows if row[0]} == {
        "dbt build": "reused",
        "note embeddings": "degraded",
        "Feast": "done",
        "train": "skipped",
        "evaluate": "skipped",
        "score": "skipped",
    }
    assert "no notes (no note/ folder, or no report of a cohort stay): every note slot is empty" in " ".join(
        row[2] for row in rows
    )
    assert (
        "training skipped: 41 cohort stays with 10 positive and 31 negative (died_within_horizon): too few to train "
        "(50 of each class needed for 5-fold cross-validation plus a test set)"
    ) in out
    assert out.rstrip().endswith("skipped: train, evaluate, score (reasons above)")
    # what the chain built is there and usable: feature files, embeddings marked missing, a materialized store
    cohort = pd.read_parquet(data / "features" / "cohort.parquet")
    assert len(cohort) == 41
    slots = [pd.read_parquet(data / "features" / f"note_slot_{j:02d}.parquet") for j in range(16)]
    assert all(len(slot) == 0 for slot in slots)  # every slot file there, empty: no note is served
    assert materialized_until(open_store(data)) is not None
    assert not (data / "runs").exists()
