"""Benchmark of the whole chain at full MIMIC-IV scale on one machine: wall time, peak memory and disk per step.

Generates a synthetic MIMIC-IV of --stays ICU stays (default 94,000, full MIMIC-IV v2.2) at the real data's
rows per stay (`synth --density full`), then runs each step as a user does, one command at a time:

    synth | dbt build (cold) | sepsis-fusion build again (unchanged inputs: skipped) | plain `dbt build`
    again (raw ingest skipped, models re-run) | embed (a fixed sample of notes: notes/s and the hours
    projected for MIMIC-IV-Note's 2.3M radiology reports; the chain itself runs without the note
    modality) | features apply | features materialize | point-in-time training set (Feast historical
    retrieval) | train (the demo grid) | score offline and online (as of the last prediction time, up to
    which the online store is materialized; few stays are in the ICU at one time, since the synthetic
    stays spread over a century) | score offline every cohort stay at its own prediction time

Each step's peak memory is the largest resident set of its process tree (polled every 0.2 s), its disk the
size of the benchmark's folder after it. Targets: the cold dbt build under 15 minutes and 16 GiB. The
table is printed and written to bench/results/full_scale_<stays>.json. The synthetic data is generated once
and reused; every other step runs again on each invocation.

    python bench/bench_full_scale.py [--stays 94000] [--sample-notes 2000] [--resume-at "features apply"]
    python bench/bench_full_scale.py --notes-only   # synth (once) and the embedding figures, no chain
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from bench.bench_dbt import plain_dbt_build  # noqa: E402

CLI = str(Path(sys.executable).with_name("sepsis-fusion"))
MIMIC_NOTES = 2_321_355  # MIMIC-IV-Note v2.2 radiology reports
TARGETS = {"dbt build (cold)": (15 * 60, 16.0)}  # seconds, GiB


def peak_rss(proc: psutil.Process, stop: threading.Event, out: list[int]) -> None:
    """The largest resident set of `proc` and its children while it runs."""
    while not stop.is_set():
        try:
            tree = [proc, *proc.children(recursive=True)]
            out[0] = max(out[0], sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        stop.wait(0.2)


def measured(name: str, cmd: list[str] | None, env: dict, root: Path, fn=None) -> dict:
    """Run a command (or `fn` in a child process's place: then this process is measured) with its peak."""
    print(f"-> {name}", flush=True)
    peak, stop = [0], threading.Event()
    start = time.perf_counter()
    if cmd is not None:
        child = subprocess.Popen(cmd, env=env)
        watcher = threading.Thread(target=peak_rss, args=(psutil.Process(child.pid), stop, peak))
        watcher.start()
        code = child.wait()
    else:
        watcher = threading.Thread(target=peak_rss, args=(psutil.Process(), stop, peak))
        watcher.start()
        fn()
        code = 0
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    if code != 0:
        sys.exit(f"{name} failed (exit {code})")
    disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    row = {"step": name, "seconds": seconds, "peak_gib": peak[0] / 2**30, "disk_gib": disk / 2**30}
    print(f"   {seconds:,.1f} s, peak {row['peak_gib']:.2f} GiB, disk {row['disk_gib']:.2f} GiB", flush=True)
    return row


def embedding_rate(mimic: Path, sample: int, icustays: Path) -> dict:
    """Notes per second of the packaged MiniLM in fp32 on a fixed sample of the radiology reports (this CPU;
    bench_embed.py has fp32 against bf16), and how many of the reports some ICU stay can serve: charted
    within a stay of the same admission (notes_to_embed's rule, on the raw files; a stay without outtime
    counts to the end of the data), the count the projection uses."""
    import duckdb

    from sepsis_fusion.pipelines.embed.encoder import load_encoder
    from sepsis_fusion.pipelines.embed.run import embed_texts

    reports = f"read_csv('{mimic}/note/radiology.csv.gz', header=true, quote='\"', escape='\"')"
    texts = [t for (t,) in duckdb.sql(f"SELECT text FROM {reports} ORDER BY note_id LIMIT {sample}").fetchall()]
    stays = f"read_csv('{icustays}', header=true)"
    (written, in_stay), *_ = duckdb.sql(
        f"""SELECT (SELECT count(*) FROM {reports}),
                   (SELECT count(DISTINCT n.note_id) FROM {reports} n JOIN {stays} s
                    ON n.hadm_id = s.hadm_id AND n.charttime >= s.intime
                    AND n.charttime <= coalesce(s.outtime, TIMESTAMP '9999-12-31'))"""
    ).fetchall()
    encoder = load_encoder("minilm", device="cpu", precision="fp32")
    start = time.perf_counter()
    embed_texts(encoder, texts)
    rate = len(texts) / (time.perf_counter() - start)
    return {
        "notes": len(texts),
        "notes_per_s": rate,
        "reports_written": written,
        "reports_in_a_stay": in_stay,
        "projected_hours_in_stay": in_stay / rate / 3600,
        "projected_hours_2_3M": MIMIC_NOTES / rate / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=94_000)
    parser.add_argument("--sample-notes", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="benchmark folder (default bench/results/full_<stays>)")
    parser.add_argument(
        "--resume-at", default=None, help="run from this step on, reusing the earlier steps' rows and data"
    )
    parser.add_argument(
        "--notes-only",
        action="store_true",
        help="only the embedding figures (notes/s, reports in a stay): to full_scale_<stays>_notes.json",
    )
    args = parser.parse_args()
    root = (args.out or RESULTS / f"full_{args.stays}").resolve()
    mimic, data = root / "mimic", root / "data"
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SEPSIS_FUSION_DATA": str(data), "DBT_QUIET": "true"}
    synth_row = root / "synth_step.json"  # the data is generated once; its row is kept for later runs
    if not (mimic / "icu" / "icustays.csv.gz").exists():
        row = measured("synth", [CLI, "synth", "--stays", str(args.stays), "--out", str(mimic)], env, root)
        synth_row.write_text(json.dumps(row))
    rows = [json.loads(synth_row.read_text())] if synth_row.exists() else []
    notes = root / "notes_held_out"
    if (mimic / "note").exists() and not notes.exists():
        shutil.move(mimic / "note", notes)  # the chain runs without the note modality (see embed below)
    if args.notes_only:
        embedding = embedding_rate(_notes_root(notes, root), args.sample_notes, mimic / "icu" / "icustays.csv.gz")
        print(embedding_line(embedding))
        write_results(f"full_scale_{args.stays}_notes.json", {"stays": args.stays, "embedding": embedding})
        return
    warehouse = data / "warehouse.duckdb"
    import duckdb

    def as_of() -> str:  # scored as of the last prediction time (a stay in the ICU then); the store filled to it
        (t,) = duckdb.sql(f"SELECT max(prediction_time) FROM '{data}/features/cohort.parquet'").fetchall()[0]
        return t.isoformat()

    run = ["--run", str(data / "runs" / "full")]
    retrieval = "from sepsis_fusion import Project; print(len(Project().training_set().cohort), 'stays')"
    score_cohort = (
        "from sepsis_fusion import Project; p = Project(); s = p.run('full').predict(p.cohort()); "
        "print(int(s['known'].sum()), 'of', len(s), 'cohort stays scored at their prediction time')"
    )
    steps = [
        ("dbt build (cold)", lambda: [CLI, "build", "--mimic", str(mimic), "--force"]),
        ("sepsis-fusion build, inputs unchanged", lambda: [CLI, "build", "--mimic", str(mimic)]),
        ("plain dbt build, inputs unchanged", lambda: None),
        ("embed (no notes: empty slots)", lambda: [CLI, "embed", "--encoder", "minilm"]),
        ("features apply", lambda: [CLI, "features", "apply"]),
        ("features materialize", lambda: [CLI, "features", "materialize", "--end", as_of()]),
        ("training set (point in time)", lambda: [sys.executable, "-c", retrieval]),
        ("train (demo grid)", lambda: [CLI, "train", "--out", str(data / "runs" / "full")]),
        ("score offline", lambda: [CLI, "score", "--as-of", as_of(), *run]),
        ("score offline, every cohort stay at its T", lambda: [sys.executable, "-c", score_cohort]),
        ("score online", lambda: [CLI, "score", "--online", "--as-of", as_of(), *run]),
    ]
    names = [name for name, _ in steps]
    if args.resume_at and args.resume_at not in names:
        sys.exit(f"--resume-at: no step {args.resume_at!r}; the steps are: {', '.join(names)}")
    saved_path = root / "steps.json"  # each step's row as it finishes, for --resume-at
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    first = names.index(args.resume_at) if args.resume_at else 0
    for index, (name, command) in enumerate(steps):
        if index < first:
            if name not in saved:
                sys.exit(f"--resume-at {args.resume_at}: step {name!r} has no saved row in {saved_path}")
            rows.append(saved[name])
            continue
        if name == "plain dbt build, inputs unchanged":
            row = measured(name, None, env, root, lambda: plain_dbt_build(mimic, warehouse))
        else:
            row = measured(name, command(), env, root)
        rows.append(row)
        saved[name] = row
        saved_path.write_text(json.dumps(saved, indent=2))
    embedding = embedding_rate(_notes_root(notes, root), args.sample_notes, mimic / "icu" / "icustays.csv.gz")
    report = {"stays": args.stays, "cpu_count": os.cpu_count(), "steps": rows, "embedding": embedding}
    print(f"\n{'step':<40}{'time':>12}{'peak GiB':>10}{'disk GiB':>10}")
    for r in rows:
        target = TARGETS.get(r["step"])
        missed = target and (r["seconds"] > target[0] or r["peak_gib"] > target[1])
        print(
            f"{r['step']:<40}{r['seconds']:>10,.0f} s{r['peak_gib']:>10.2f}{r['disk_gib']:>10.2f}"
            + ("  MISSES its target (15 min, 16 GiB)" if missed else "")
        )
    print(embedding_line(embedding))
    write_results(f"full_scale_{args.stays}.json", report)


def embedding_line(embedding: dict) -> str:
    return (
        f"embedding: {embedding['notes_per_s']:.1f} notes/s with MiniLM in fp32 on this CPU ({embedding['notes']} "
        f"notes); {embedding['reports_in_a_stay']:,} of the {embedding['reports_written']:,} generated reports are "
        f"charted in an ICU stay: {embedding['projected_hours_in_stay']:.1f} h to embed them "
        f"({embedding['projected_hours_2_3M']:.0f} h for all 2.3M of MIMIC-IV-Note; the cache makes it resumable)"
    )


def write_results(name: str, report: dict) -> None:
    # bench/results/ is not in a clone (ignored), and --out may be elsewhere: the table is printed first
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / name
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")


def _notes_root(notes: Path, root: Path) -> Path:
    """A MIMIC-IV-shaped folder whose note/ holds the held-out notes (the sample is read from there)."""
    view = root / "notes_sample"
    view.mkdir(exist_ok=True)
    link = view / "note"
    if not link.exists():
        link.symlink_to(notes)
    return view


if __name__ == "__main__":
    main()
