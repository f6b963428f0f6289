"""Benchmark of `sepsis-fusion synth`: wall time, rows per second and peak memory at MIMIC-IV density.

Target: 10,000 stays at MIMIC-IV density in under 10 minutes and under 6 GiB on a 2-core
machine. Each size runs in a fresh process so that its peak memory is its own.

    python bench/bench_synth.py --stays 1000 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

TARGET_SECONDS = {10_000: 600}
TARGET_GIB = 6.0

CHILD = r"""
import json, resource, sys, time
from sepsis_fusion.pipelines.synth.generate import generate
stays, out = int(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
result = generate(stays, 0, out, progress=False)
elapsed = time.perf_counter() - t
peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"stays": stays, "seconds": elapsed, "peak_gib": peak_gib, "rows": result.rows}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    print(
        f"{'stays':>7} {'seconds':>8} {'chart rows/stay':>15} {'lab rows/stay':>13} {'rows/s':>10} "
        f"{'peak GiB':>8} {'GiB on disk':>11}  vs target"
    )
    for stays in args.stays:
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(stays), tmp], capture_output=True, text=True, check=True
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs) / 2**30
        total = sum(r["rows"].values())
        target = TARGET_SECONDS.get(stays)
        verdict = (
            (
                f"{r['seconds'] / target:.2f} of the {target} s budget, "
                f"{r['peak_gib'] / TARGET_GIB:.2f} of {TARGET_GIB} GiB"
            )
            if target
            else ""
        )
        print(
            f"{stays:>7,} {r['seconds']:>8.1f} {r['rows']['icu/chartevents'] / stays:>15,.0f} "
            f"{r['rows']['hosp/labevents'] / stays:>13,.0f} {total / r['seconds']:>10,.0f} "
            f"{r['peak_gib']:>8.2f} {disk:>11.2f}  {verdict}"
        )


if __name__ == "__main__":
    main()
