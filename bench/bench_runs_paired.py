"""Two run folders' fusion models on the same test stays: each one's test AUROC and AUPRC and the paired
difference (b minus a) with its 95% bootstrap interval, the report's own paired bootstrap.

For runs that differ in one thing, trained on the same cohort with the same seed (so the same test stays):
e.g. notes embedded in fp32 and in bf16 (`embed --precision`), docs/SCALING.md.

    python bench/bench_runs_paired.py RUN_A RUN_B [--resamples 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepsis_fusion.model.metrics import auprc, auroc, paired_difference  # noqa: E402
from sepsis_fusion.model.run_folder import PREDICTIONS, RunFolder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    a, b = (RunFolder(p).read_csv(PREDICTIONS).set_index("stay_id") for p in (args.a, args.b))
    if sorted(a.index) != sorted(b.index):
        sys.exit(f"{args.a} and {args.b} were tested on other stays ({len(a)} and {len(b)}): no paired comparison")
    b = b.loc[a.index]
    if not (a.outcome == b.outcome).all():
        sys.exit(f"{args.a} and {args.b} give the same stays other outcomes: not the same label")
    y = a.outcome.to_numpy()
    pa_, pb = a.probability.to_numpy(), b.probability.to_numpy()
    print(f"{len(y):,} test stays, {y.mean():.1%} positive")
    for name, p in ((args.a, pa_), (args.b, pb)):
        print(f"{name}: AUROC {auroc(y, p):.4f}, AUPRC {auprc(y, p):.4f}")
    d = paired_difference(y, pb, pa_, args.resamples)
    for m in ("auroc", "auprc"):
        print(
            f"{m.upper()} b minus a: {d[m]['value']:+.4f} (95% {d[m]['low']:+.4f} to {d[m]['high']:+.4f}; "
            f"bootstrap p {d[m]['p']:.3f})"
        )
    print(f"probabilities: mean absolute difference {np.abs(pa_ - pb).mean():.4f}, max {np.abs(pa_ - pb).max():.4f}")


if __name__ == "__main__":
    main()
