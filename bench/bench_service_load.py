"""Load benchmark of the scoring service: 8, then 32 concurrent clients for a bounded time, on the SQLite and
on the Redis online store.

The demo cohort is shifted in time so that every stay is in the ICU at one moment, "now" (bench_features.py's
icu_snapshot), and materialized up to now into the SQLite online store, then into a throwaway local
redis-server; for each store one `sepsis-fusion serve --online-store <store>` process (--workers, default 1;
scoring as of where the store is materialized to) is started and waited for until GET /readyz answers 200
(GET /health where the service has no /readyz). After 50 sequential warm-up requests, 8 and then 32 clients
each hold one keep-alive HTTP connection over loopback and post one stay per request ({"stay_id": ...}),
cycling through the stays in the ICU (each client from its own offset), back to back for --seconds (default
20; --quick: 3) each; a request started before the end is waited for (up to --timeout).

Per store and client count: requests sent, throughput (200 answers with a probability per second of wall
time, the tail of the last requests included), p50/p95/p99 latency of those answers, errors by kind (non-200
answers by status, 200 answers without a probability, connection errors, timeouts), requests lost (sent in
full without an answer: a connection error or a timeout after sending), the connections opened (one per
client while keep-alive holds) and, where the service has /metrics, the /score requests it counted itself.
Written to bench/results/service_load.json (--quick: service_load_quick.json). Requirement: no request
failed or lost at 8 clients (exit status 1 otherwise); at 32 clients errors are reported, not failed on.

The clients are threads of this process using http.client. They share the machine's cores with the service
and redis-server (2 cores on this project's machine), and Python's GIL with each other: the latencies
include the client's own share of the CPU and its wait for the GIL, more so at 32 clients. The figures are
of this machine under that contention, not of the service alone.

    python bench/bench_service_load.py [--source data] [--run data/runs/demo] [--seconds 20] [--workers 1]
    python bench/bench_service_load.py --quick
    SEPSIS_FUSION_API_KEY=<a key of 16+ characters> python bench/bench_service_load.py   # with an API key

With $SEPSIS_FUSION_API_KEY set, the service requires the key (pipelines/serving/access.py) and every client
request sends it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from bench.bench_features import icu_online, percentiles  # noqa: E402
from bench.bench_scoring import Client, get, scored, serving  # noqa: E402
from sepsis_fusion.model.run_folder import latest_run  # noqa: E402
from sepsis_fusion.pipelines import paths  # noqa: E402
from sepsis_fusion.pipelines.features.local_redis import local_redis  # noqa: E402

CLIENTS = (8, 32)
REQUIRED = 8  # clients at which no request may fail or be lost
WARM_UP = 50
QUICK_SECONDS = 3.0


class Tally:
    """What one client saw."""

    def __init__(self):
        self.sent = self.answered = self.lost = 0
        self.errors: Counter[str] = Counter()
        self.times: list[float] = []  # seconds, of the 200 answers with a probability
        self.opened = 0


def load(port: int, stays: list[int], clients: int, seconds: float, timeout_s: float) -> dict:
    """`clients` threads, one keep-alive connection each, posting back to back for `seconds`."""
    tallies = [Tally() for _ in range(clients)]
    window: dict[str, float] = {}

    def start_clock() -> None:  # run by one thread once every client is connected-ready, before any starts
        window["start"] = time.perf_counter()
        window["end"] = window["start"] + seconds

    barrier = threading.Barrier(clients, action=start_clock)

    def work(k: int) -> None:
        tally, client = tallies[k], Client(port, timeout_s)
        i = k * len(stays) // clients
        barrier.wait()
        while time.perf_counter() < window["end"]:
            stay = stays[i % len(stays)]
            i += 1
            try:
                elapsed, status, payload = client.post(stay)
            except TimeoutError:
                kind = "timeout"
            except (OSError, http.client.HTTPException):
                kind = "connection error"
            else:
                tally.answered += 1
                if status == 200 and scored(payload):
                    tally.times.append(elapsed)
                    kind = None
                else:
                    kind = f"status {status}" if status != 200 else "200 without a probability"
            tally.sent += client.sent
            tally.lost += client.sent and kind in ("timeout", "connection error")
            if kind:
                tally.errors[kind] += 1
        tally.opened = client.opened
        client.connection.close()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:  # every request ends within its timeout (connect, send and read each)
        t.join(timeout=seconds + 3 * timeout_s + 30)
    finished = time.perf_counter()
    hung = sum(t.is_alive() for t in threads)  # a request still in flight: counted lost
    wall = finished - window["start"]
    times = [e for t in tallies for e in t.times]
    errors = sum((t.errors for t in tallies), Counter())
    if hung:
        errors["client still waiting"] += hung
    return {
        "clients": clients,
        "seconds": seconds,
        "wall_s": wall,
        "requests": sum(t.sent for t in tallies) + hung,
        "answered": sum(t.answered for t in tallies),
        "scored": len(times),
        "throughput_rps": len(times) / wall,
        **percentiles(times, (50, 95, 99)),
        "max_ms": max(times) * 1000 if times else None,
        "errors": dict(sorted(errors.items())),
        "failed": sum(errors.values()),
        "lost": sum(t.lost for t in tallies) + hung,
        "connections_opened": sum(t.opened for t in tallies),
    }


def counted(port: int) -> Counter[str] | None:
    """The /score requests the service counted, by status (its /metrics), or None without such metrics."""
    try:
        status, body = get(port, "/metrics", timeout_s=30)
    except (OSError, http.client.HTTPException):
        return None
    text = body.decode(errors="replace")
    if status != 200 or "sepsis_fusion_requests" not in text:
        return None
    counts: Counter[str] = Counter()
    for labels, value in re.findall(r"^sepsis_fusion_requests_total\{([^}]*)\} (\S+)$", text, re.M):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if label.get("path") == "/score":
            counts[label.get("status", "?")] += int(float(value))
    return counts


def store_run(
    store: str, run: Path, data: Path, stays: list[int], args: argparse.Namespace, redis: str | None = None
) -> tuple[dict, list[dict]]:
    """One service on the store: warm up, then each client count. Returns its /health and the results."""
    log = RESULTS / "logs" / f"service_load_{store}.log"
    with serving(run, data, args.workers, log, online=store, redis=redis) as (port, health):
        warm = Client(port, args.timeout)
        warm_ok = sum(warm.score(s)[1] for s in stays[:WARM_UP])
        warm.connection.close()
        if warm_ok < min(WARM_UP, len(stays)):
            print(f"warning: {store}: only {warm_ok} of the warm-up requests were scored (see {log})", flush=True)
        results = [{"store": store, **refusal(port, stays, args.timeout)}]
        print(refusal_line(results[0]), flush=True)
        for clients in CLIENTS:
            before = counted(port)
            result = {"store": store, **load(port, stays, clients, args.seconds, args.timeout)}
            after = counted(port)
            if before is not None and after is not None:
                result["service_counted"] = dict(sorted((after - before).items()))
            results.append(result)
            print(row(result), flush=True)
    return health, results


def refusal(port: int, stays: list[int], timeout_s: float, repeat: int = 5) -> dict:
    """Side by side on one connection: a batch of 1,000 unknown ids (refused, 404), a batch of 1,000 stays in
    the ICU (scored, 200; the list repeats when fewer are in), and one stay: the median of `repeat` each."""
    client = Client(port, max(timeout_s, 60))
    batches = {
        "unknown_1000": (list(range(1, 1001)), 404),
        "known_1000": ((stays * (1000 // len(stays) + 1))[:1000], 200),
        "one_stay": (stays[0], 200),
    }
    out = {}
    for name, (body, expected) in batches.items():
        times = []
        for _ in range(repeat):
            elapsed, status, _ = client.post(body)
            if status != expected:
                sys.exit(f"{name}: answered {status}, expected {expected}")
            times.append(elapsed)
        out[f"{name}_ms"] = percentiles(times, (50,))["p50_ms"]
    client.connection.close()
    return out


def refusal_line(r: dict) -> str:
    return (
        f"{r['store']}: 1,000 unknown ids refused in {r['unknown_1000_ms']:.0f} ms, 1,000 stays scored in "
        f"{r['known_1000_ms']:.0f} ms, one stay {r['one_stay_ms']:.1f} ms (medians of 5)"
    )


HEADER = (
    f"{'store':<7}{'clients':>8}{'requests':>10}{'rps':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'lost':>6}  errors"
)


def row(r: dict) -> str:
    def ms(v: float | None) -> str:
        return f"{v:.1f}" if v is not None else "-"

    errors = ", ".join(f"{k}: {n:,}" for k, n in r["errors"].items()) or "0"
    return (
        f"{r['store']:<7}{r['clients']:>8}{r['requests']:>10,}{r['throughput_rps']:>8.1f}{ms(r['p50_ms']):>9}"
        f"{ms(r['p95_ms']):>9}{ms(r['p99_ms']):>9}{r['lost']:>6}  {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=paths.data_dir(), help="a built data folder (make demo)")
    parser.add_argument("--run", type=Path, default=None, help="a run folder (default: the newest under <source>/runs)")
    parser.add_argument("--seconds", type=float, default=None, help="per store and client count (default 20)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK_SECONDS:.0f} s per configuration")
    parser.add_argument("--workers", type=int, default=1, help="service worker processes")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a client waits on a request")
    args = parser.parse_args()
    args.seconds = args.seconds or (QUICK_SECONDS if args.quick else 20.0)
    source = args.source.resolve()
    if not (source / "features" / "cohort.parquet").exists():
        sys.exit(f"{source}/features not found: run `make demo` first (or pass --source)")
    run = (args.run or latest_run(source / "runs")).resolve()
    data = RESULTS / "service_load_online"

    with local_redis() as connection:
        stays = icu_online(source, data, "sqlite").stays  # both stores filled first: Feast prints as it does
        icu_online(source, data, "redis", connection)
        print(
            f"{len(CLIENTS)} client counts x 2 stores, {args.seconds:g} s each, {args.workers} service worker(s), "
            f"{os.cpu_count()} cores shared by clients and service",
            flush=True,
        )
        print(HEADER, flush=True)
        health, results = store_run("sqlite", run, data, stays, args)
        results += store_run("redis", run, data, stays, args, connection)[1]

    report = {
        "run": str(run),
        "model_version": health["model_version"],
        "stays_in_icu": len(stays),
        "cpu_count": os.cpu_count(),
        "workers": args.workers,
        "seconds": args.seconds,
        "timeout_s": args.timeout,
        "refusal": [r for r in results if "unknown_1000_ms" in r],
        "results": [r for r in results if "clients" in r],
    }
    out = RESULTS / ("service_load_quick.json" if args.quick else "service_load.json")
    out.write_text(json.dumps(report, indent=2))
    print(f"{len(stays):,} stays in the ICU at once; model {health['model_version']}; written to {out}")
    results = report["results"]
    for r in results:
        if "service_counted" in r and sum(r["service_counted"].values()) != r["answered"]:
            print(
                f"note: {r['store']}, {r['clients']} clients: the service counted "
                f"{sum(r['service_counted'].values()):,} /score requests, the clients {r['answered']:,} answers"
            )
    bad = [r for r in results if r["clients"] == REQUIRED and (r["failed"] or r["lost"])]
    if bad:
        sys.exit(f"requests failed or were lost at {REQUIRED} clients: " + "; ".join(row(r) for r in bad))


if __name__ == "__main__":
    main()
