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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from bench.bench_features import icu_online, percentiles  # noqa: E402
from sepsis_fusion.model.run_folder import latest_run  # noqa: E402
from sepsis_fusion.pipelines import paths  # noqa: E402
from sepsis_fusion.pipelines.features.local_redis import free_port  # noqa: E402


class Client:
    """One keep-alive HTTP connection to the service; after a failed request the next one opens a new one."""

    def __init__(self, port: int, timeout_s: float = 30):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        self.headers = {"Content-Type": "application/json", **auth_headers()}
        self.opened = 0  # connections opened (stays 1 while keep-alive holds)
        self.sent = False  # whether the last request was sent in full (if it failed: lost, or not)

    def post(self, stay: int | list[int]) -> tuple[float, int, bytes]:
        """POST /score for one stay (or a batch): (seconds, status, body). Raises what http.client raises
        (TimeoutError, other OSErrors, http.client.HTTPException); then `sent` says whether the request had
        gone out."""
        body = json.dumps({"stay_ids": stay} if isinstance(stay, list) else {"stay_id": stay})
        self.sent = False
        self.opened += self.connection.sock is None
        start = time.perf_counter()
        try:
            self.connection.request("POST", "/score", body, self.headers)
            self.sent = True
            answer = self.connection.getresponse()
            payload = answer.read()
        except BaseException:
            self.connection.close()
            raise
        return time.perf_counter() - start, answer.status, payload

    def score(self, stay: int) -> tuple[float, bool]:
        elapsed, status, payload = self.post(stay)
        return elapsed, status == 200 and scored(payload)


def scored(payload: bytes) -> bool:
    """A 200 answer's body holds a probability."""
    try:
        return json.loads(payload).get("probability") is not None
    except (ValueError, AttributeError):
        return False


def auth_headers() -> dict[str, str]:
    """With $SEPSIS_FUSION_API_KEY set, the service started here requires that key, and the clients send it."""
    key = os.environ.get("SEPSIS_FUSION_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def get(port: int, path: str, timeout_s: float = 5) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path, headers=auth_headers())
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def wait_for(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 180) -> dict:
    """Wait until the service is ready (GET /readyz answers 200; where it has no /readyz, GET /health does);
    returns its /health. Exits with the service's log when it exits or is not ready within timeout_s."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the service exited ({proc.returncode}):\n{log_tail(log)}")
        try:
            status, body = get(port, "/readyz")
            if status == 404:  # a service without the readiness probe
                status, body = get(port, "/health")
            if status == 200:
                status, health = get(port, "/health")
                if status == 200:
                    return json.loads(health)
            last = f"{status} {body[:500].decode(errors='replace')}"
        except (OSError, http.client.HTTPException) as exc:
            last = repr(exc)
        time.sleep(0.5)
    sys.exit(f"the service was not ready within {timeout_s} s (last answer: {last}):\n{log_tail(log)}")


def log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@contextmanager
def serving(
    run: Path, data: Path, workers: int, log: Path, online: str = "sqlite", redis: str | None = None
) -> Iterator[tuple[int, dict]]:
    """`sepsis-fusion serve` of a run folder on data's online store (default clock: where it is materialized
    to), on a free loopback port, its output in `log` (a pipe nobody reads would fill and stall it); yields
    (port, its /health) once ready, and stops it (SIGTERM) at the end."""
    port = free_port()
    env = {**os.environ, "SEPSIS_FUSION_DATA": str(data)}
    if redis:
        env["SEPSIS_FUSION_REDIS"] = redis
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
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
                "--online-store",
                online,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port, wait_for(port, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(run: Path, data: Path, stays: list[int], requests: int, clients: int, workers: int) -> dict:
    """Start the service with `workers` processes; time sequential requests, then concurrent clients."""
    with serving(run, data, workers, RESULTS / "logs" / f"scoring_{workers}w.log") as (port, health):
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
    stays = icu_online(args.source.resolve(), data).stays

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
