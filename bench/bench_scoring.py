"""Benchmark of the scoring service: one request end to end (HTTP, online features, model).

The demo cohort is shifted in time so that every stay is in the ICU at one moment, "now" (as in
bench_features.py's online benchmark), materialized into the SQLite online store, and served by
`sepsis-fusion serve --clock materialized` with a trained run folder. Then, over loopback with keep-alive
connections: 1,000 sequential requests of one stay each (p50 and p99 latency), and 8 concurrent clients
(throughput), with one worker and with --workers (default 2), side by side. Every answer must be 200 with a
probability. Target: p99 under 25 ms.

    python bench/bench_scoring.py [--source data] [--run bench/results/model_730] [--requests 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from bench.bench_features import icu_snapshot, percentiles  # noqa: E402
from sepsis_fusion.model.scoring import latest_run  # noqa: E402
from sepsis_fusion.pipelines import paths  # noqa: E402
from sepsis_fusion.pipelines.features.local_redis import free_port  # noqa: E402
from sepsis_fusion.pipelines.features.store import apply, materialize, open_store  # noqa: E402


class Client:
    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def score(self, stay: int) -> tuple[float, bool]:
        body = json.dumps({"stay_id": stay})
        start = time.perf_counter()
        self.connection.request("POST", "/score", body, {"Content-Type": "application/json"})
        answer = self.connection.getresponse()
        payload = answer.read()
        elapsed = time.perf_counter() - start
        return elapsed, answer.status == 200 and json.loads(payload).get("probability") is not None


def wait_for(port: int, proc: subprocess.Popen, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the service exited: {proc.stdout.read()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            return json.loads(connection.getresponse().read())
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the service did not answer within {timeout_s} s")


def measure(run: Path, data: Path, stays: list[int], requests: int, clients: int, workers: int) -> dict:
    """Start the service with `workers` processes; time sequential requests, then concurrent clients."""
    port = free_port()
    env = {**os.environ, "SEPSIS_FUSION_DATA": str(data)}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "sepsis-fusion"),
            "serve",
            "--run",
            str(run),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = wait_for(port, proc)
        client = Client(port)
        for s in stays[:50]:
            client.score(s)
        times, failed = [], 0
        for i in range(requests):
            elapsed, ok = client.score(stays[i % len(stays)])
            times.append(elapsed)
            failed += not ok
        per_client = requests // clients
        results: list[tuple[float, bool]] = []
        lock = threading.Lock()

        def work(k: int) -> None:
            mine = Client(port)
            out = [mine.score(stays[(k * per_client + i) % len(stays)]) for i in range(per_client)]
            with lock:
                results.extend(out)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "workers": workers,
        "model_version": health["model_version"],
        "sequential": {**percentiles(times), "requests": requests, "failed": failed},
        "concurrent": {
            **percentiles([e for e, _ in results]),
            "clients": clients,
            "requests": len(results),
            "failed": sum(not ok for _, ok in results),
            "throughput_rps": len(results) / wall,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=paths.data_dir(), help="a built data folder (make demo)")
    parser.add_argument("--run", type=Path, default=None, help="a run folder (default: the newest under <source>/runs)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="service workers for the second concurrent run")
    args = parser.parse_args()
    run = (args.run or latest_run(args.source / "runs")).resolve()
    data = RESULTS / "scoring_online"
    now = icu_snapshot(args.source.resolve(), data)
    apply(data)
    materialize(open_store(data), data, end=now)
    stays = [s for (s,) in duckdb.sql(f"SELECT stay_id FROM '{data}/features/cohort.parquet' ORDER BY 1").fetchall()]

    sequential = measure(run, data, stays, args.requests, args.clients, workers=1)
    scaled = measure(run, data, stays, args.requests, args.clients, workers=args.workers)
    report = {"run": str(run), "stays_in_icu": len(stays), "cpu_count": os.cpu_count(), "runs": [sequential, scaled]}
    print(f"{len(stays):,} stays in the ICU at once; model {sequential['model_version']}, SQLite online store")
    latency = sequential["sequential"]
    print(
        f"one client, {args.requests:,} requests: p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms "
        f"(target < 25), {latency['failed']} failed"
    )
    for result in (sequential, scaled):
        c = result["concurrent"]
        print(
            f"{c['clients']} concurrent clients, {result['workers']} worker(s), {c['requests']:,} requests: "
            f"{c['throughput_rps']:.0f} requests/s, p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms, "
            f"{c['failed']} failed"
        )
    (RESULTS / "scoring.json").write_text(json.dumps(report, indent=2))
    print(f"written to {RESULTS / 'scoring.json'}")
    if any(r[k]["failed"] for r in (sequential, scaled) for k in ("sequential", "concurrent")):
        sys.exit("some requests failed")


if __name__ == "__main__":
    main()
