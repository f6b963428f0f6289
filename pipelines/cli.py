"""The `sepsis-fusion` command line."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import typer
from rich.console import Console

# Feast's DuckDB store (through ibis) calls a DuckDB method deprecated in 2.0, once per query: noise for users.
warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)

app = typer.Typer(help="Sepsis Fusion: a point-in-time-correct feature store and fusion model for ICU sepsis "
                       "prognosis on MIMIC-IV.", no_args_is_help=True, add_completion=False)
console = Console(stderr=True)


@app.callback()
def main() -> None:
    """Sepsis Fusion command line."""


@app.command()
def synth(
    stays: int = typer.Option(2000, "--stays", help="Number of ICU stays to generate."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    out: Path = typer.Option(Path("data/synthetic"), "--out", help="Folder to write hosp/, icu/, note/ and _truth/."),
    density: str = typer.Option("full", "--density", help="'full': MIMIC-IV's density (about 3,000 chart rows per "
                                "stay); 'light': fewer nursing rows, for quick tests."),
) -> None:
    """Generate a synthetic MIMIC-IV (v2.2 layout, gzip CSV) with known outcome probabilities."""
    from .synth.generate import SynthError, generate

    start = time.perf_counter()
    try:
        result = generate(stays, seed, out, density=density)
    except SynthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    elapsed = time.perf_counter() - start
    counts = ", ".join(f"{name.split('/')[1]} {result.rows[name]:,}"
                       for name in ("icu/chartevents", "hosp/labevents", "note/radiology"))
    console.print(f"wrote {result.stays:,} ICU stays to {result.out} in {elapsed:.1f} s: {counts}", soft_wrap=True)


@app.command()
def build(
    mimic: Path = typer.Option(None, "--mimic", help="MIMIC-IV folder with hosp/ and icu/ (default: "
                               "$SEPSIS_FUSION_MIMIC_DIR, else data/synthetic)."),
    select: str = typer.Option(None, "--select", help="dbt node selection, as `dbt build --select`."),
    force: bool = typer.Option(False, "--force", help="Build even when nothing changed since the last build."),
) -> list[str]:
    """Run `dbt build` (staging -> intermediate -> marts) over a MIMIC-IV folder into the DuckDB warehouse."""
    from . import paths
    from .build import BuildError, dbt_build

    mimic = mimic or Path(os.environ.get("SEPSIS_FUSION_MIMIC_DIR", paths.data_dir() / "synthetic"))
    try:
        nodes = dbt_build(mimic, select=select, force=force)
    except BuildError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    done = f"{len(nodes)} nodes passed" if nodes else "nothing to do"
    console.print(f"dbt build: {done}; warehouse {paths.warehouse_path()}", soft_wrap=True)
    return nodes


@app.command()
def embed(
    model: str = typer.Option("emilyalsentzer/Bio_ClinicalBERT", "--model", help="Hub id, local folder, or "
                              "'minilm' (the packaged all-MiniLM-L6-v2, no hub needed)."),
    pooling: str = typer.Option("mean", "--pooling", help="'mean' (attention-masked) or 'cls'."),
    device: str = typer.Option("auto", "--device", help="'auto' (GPU when present), 'cpu', 'cuda', 'cuda:1', ..."),
    max_length: int = typer.Option(512, "--max-length", help="Tokens per chunk, special tokens included."),
    stride: int = typer.Option(64, "--stride", help="Tokens shared by consecutive chunks of a long note."),
    batch_tokens: int = typer.Option(16384, "--batch-tokens", help="Padded tokens per encoder batch."),
):  # -> EmbedResult (not annotated: typer resolves every annotation of a command)
    """Embed the notes of notes_to_embed (only new or changed ones) and pool them per 24-hour window."""
    from . import paths
    from .embed.encoder import EncoderNotFound, load_encoder
    from .embed.run import embed_feature_folder

    try:
        enc = load_encoder(model, pooling=pooling, device=device, max_length=max_length)
        result = embed_feature_folder(enc, paths.features_dir(), paths.data_dir() / "embedding_cache",
                                      stride=stride, batch_tokens=batch_tokens)
    except (EncoderNotFound, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rate = f", {result.embedded / result.seconds_encoding:.1f} notes/s" if result.seconds_encoding else ""
    console.print(f"notes: {result.notes:,} ({result.embedded:,} embedded now{rate}, the rest from the cache); "
                  f"windows: {result.windows:,}, {result.windows_with_notes:,} with notes; written to "
                  f"{paths.features_dir()}", soft_wrap=True)
    if result.notes == 0:
        console.print("no notes to embed (no note/ folder in the MIMIC-IV data, or no radiology report of a "
                      "cohort stay): every stay's note windows are marked missing, so the model's note branch "
                      "gives only its learned 'absent' encoding", soft_wrap=True)
    return result


features_app = typer.Typer(help="The Feast feature store in feature_repo/ (files under the data folder): "
                            "`feast apply`, `feast materialize` and `feast serve` on it.", no_args_is_help=True)
app.add_typer(features_app, name="features")
ONLINE_OPTION = typer.Option("sqlite", "--online", help="Online store: 'sqlite' (embedded, the default) or "
                             "'redis' (feature_store.redis.yaml; set SEPSIS_FUSION_REDIS, e.g. 127.0.0.1:6379).")


def _error_exit(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _parse_time(value: str | None):
    """An ISO time (naive UTC), 'now' (the wall clock, UTC) or None."""
    from datetime import datetime, timezone

    if value is None:
        return None
    if value == "now":
        return datetime.now(timezone.utc).replace(tzinfo=None)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO time such as 2150-03-01T12:00, or 'now'") from None
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


@features_app.command("apply")
def features_apply(online: str = ONLINE_OPTION) -> None:
    """Register the feature definitions and create the online store's tables (`feast apply`)."""
    from . import paths
    from .features.store import FeatureStoreError, apply

    try:
        output = apply(online=online)
    except FeatureStoreError as exc:
        raise _error_exit(exc) from None
    console.print(output.strip(), soft_wrap=True, markup=False, highlight=False)
    console.print(f"feast apply: registry under {paths.data_dir() / 'feast'}", soft_wrap=True)


@features_app.command("materialize")
def features_materialize(
    end: str = typer.Option(None, "--end", help="ISO time, or 'now'. Default: the data's latest window end "
                            "(MIMIC-IV's dates lie in the future)."),
    start: str = typer.Option(None, "--start", help="ISO time (default: the beginning of the data)."),
    incremental: bool = typer.Option(False, "--incremental", help="Start where the last run ended "
                                     "(`feast materialize-incremental`)."),
    online: str = ONLINE_OPTION,
) -> None:
    """Load the latest features per stay as of --end into the online store (`feast materialize`)."""
    from .features.store import FeatureStoreError, materialize, open_store

    try:
        store = open_store(online=online)
        until = materialize(store, end=_parse_time(end), start=_parse_time(start), incremental=incremental)
    except FeatureStoreError as exc:
        raise _error_exit(exc) from None
    console.print(f"online store ({online}) holds each stay's latest features as of {until}", soft_wrap=True)


@features_app.command("serve")
def features_serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(6566, "--port"),
    online: str = ONLINE_OPTION,
) -> None:
    """Feast's feature server on this store (`feast serve`): POST /get-online-features."""
    from .features.store import FeatureStoreError, exec_feast

    try:
        exec_feast(["serve", "-h", host, "-p", str(port)], online=online)
    except FeatureStoreError as exc:
        raise _error_exit(exc) from None


@app.command()
def train(
    config: Path = typer.Option(None, "--config", help="Study settings (YAML); default model/configs/demo.yaml."),
    overrides: list[str] = typer.Option([], "--set", help="Override a setting: section.key=value "
                                        "(e.g. train.lr=0.0005, grid.dropout=[0.1,0.3], outcome=died_in_icu)."),
    out: Path = typer.Option(None, "--out", help="Run folder (default: data/runs/<time>)."),
) -> None:
    """Train the fusion model with the study's protocol on the Feast training set; write a run folder."""
    import datetime as dt

    from . import paths
    from .features.store import FeatureStoreError
    from .features.training import training_set
    from sepsis_fusion.model.study import StudyError, load_config, run_study

    try:
        study = load_config(config or paths.REPO_ROOT / "model" / "configs" / "demo.yaml", overrides)
        ts = training_set()
        run_dir = out or paths.data_dir() / "runs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        result = run_study(ts, study, run_dir, progress=lambda line: console.print(line, soft_wrap=True,
                                                                                   markup=False))
    except (StudyError, FeatureStoreError, FileNotFoundError) as exc:
        raise _error_exit(exc) from None
    except KeyboardInterrupt:
        from shlex import quote

        again = ["sepsis-fusion train"] + ([f"--config {quote(str(config))}"] if config else []) + \
            [f"--set {quote(o)}" for o in overrides] + [f"--out {quote(str(run_dir))}"]
        raise _interrupted(run_dir, " ".join(again)) from None
    console.print(f"run folder: {result.run_dir}", soft_wrap=True)


def _interrupted(run_dir: Path, again: str) -> typer.Exit:
    """Ctrl-C during training: what was kept and how to resume, instead of a traceback."""
    from sepsis_fusion.model.study import partial_folder

    work = partial_folder(run_dir)
    folds = len(list((work / "folds").glob("*.json")))
    typer.echo(f"interrupted: {folds} finished cross-validation fold(s) are kept in {work}"
               + (f", and {run_dir} is as it was" if run_dir.exists() else "")
               + f"; to resume, run again: {again}", err=True)
    return typer.Exit(130)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run folder written by `sepsis-fusion train`."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples for the 95% intervals."),
) -> None:
    """Evaluate a run on its held-out test set: metrics with CIs, baselines, plots and report.md."""
    from .features.store import FeatureStoreError
    from .features.training import training_set
    from sepsis_fusion.model.evaluate import evaluate as evaluate_run
    from sepsis_fusion.model.study import StudyError

    try:
        report = evaluate_run(training_set(), run, resamples)
    except (StudyError, FeatureStoreError, FileNotFoundError) as exc:
        raise _error_exit(exc) from None
    console.print(f"report: {report}", soft_wrap=True)


def _write_scores(scorer, scores, mode: str, when, out: Path | None = None):
    """Scores as a CSV (default data/scores/<mode>-<time>.csv); returns the table and the path."""
    from . import paths

    table = scorer.frame(scores)
    out = out or paths.data_dir() / "scores" / f"{mode}-{when:%Y%m%dT%H%M%S}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table, out


STORE_OPTION = typer.Option("sqlite", "--online-store", help="Online store: 'sqlite' (the default) or 'redis' "
                            "(set SEPSIS_FUSION_REDIS).")
RUN_OPTION = typer.Option(None, "--run", help="Run folder from `sepsis-fusion train` (default: the newest under "
                          "data/runs).")


@app.command()
def score(
    as_of: str = typer.Option(None, "--as-of", help="ISO time to score as of, or 'now'. Offline: required. "
                              "Online: default the time the online store is materialized to (MIMIC-IV's "
                              "dates lie in the future; live deployments pass 'now')."),
    online: bool = typer.Option(False, "--online", help="Read the Feast online store instead of a "
                                "point-in-time historical retrieval."),
    stays: str = typer.Option(None, "--stays", help="Comma-separated stay ids (default: the cohort stays in "
                              "the ICU at that time)."),
    run: Path = RUN_OPTION,
    out: Path = typer.Option(None, "--out", help="CSV to write (default: data/scores/<mode>-<time>.csv)."),
    online_store: str = STORE_OPTION,
) -> None:
    """Score stays with only what was known at a time: probability, decision, model version, missing inputs."""
    from . import paths
    from .features.store import FeatureStoreError, online_store_time, open_store
    from .features.training import in_icu, read_cohort
    from sepsis_fusion.model.scoring import Scorer, latest_run
    from sepsis_fusion.model.study import StudyError

    when = _parse_time(as_of)
    if when is None and not online:
        raise _error_exit(ValueError("offline scoring needs --as-of TIME (or use --online)"))
    try:
        store = open_store(online=online_store)
        scorer = Scorer(run or latest_run(paths.data_dir() / "runs"), store)
        when = when or online_store_time(store)
        if stays:
            try:
                ids = [int(s) for s in stays.split(",") if s.strip()]
            except ValueError:
                raise typer.BadParameter(f"--stays {stays!r}: use comma-separated integer stay ids") from None
        else:
            ids = in_icu(read_cohort(), when)
            if not ids:
                raise StudyError(f"no cohort stay was in the ICU at {when}: pass --stays or another --as-of")
        scores = scorer.online(ids, when) if online else scorer.offline(ids, when)
    except (StudyError, FeatureStoreError, FileNotFoundError) as exc:
        raise _error_exit(exc) from None
    mode = "online" if online else "offline"
    table, out = _write_scores(scorer, scores, mode, when, out)
    known = table["probability"].notna()
    console.print(f"{mode} scores as of {when} by {scorer.version}: {int(known.sum())} stays scored, "
                  f"{int(table['decision'].eq(True).sum())} above the threshold {scorer.threshold:.3f}"
                  + (f", {int((~known).sum())} with no features at that time" if (~known).any() else "")
                  + f"\n{out}", soft_wrap=True, markup=False)


@app.command()
def serve(
    run: Path = RUN_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8000, "--port"),
    clock: str = typer.Option("materialized", "--clock", help="The time requests are scored as of: "
                              "'materialized' (where the online store is filled to; for MIMIC-IV replays) or "
                              "'now' (the wall clock; live data)."),
    online_store: str = STORE_OPTION,
    workers: int = typer.Option(1, "--workers", help="Worker processes (about one per core)."),
) -> None:
    """HTTP scoring service on the online store: POST /score, GET /health (docs at /docs)."""
    import uvicorn

    from . import paths
    from .features.store import FeatureStoreError
    from sepsis_fusion.model.scoring import latest_run
    from sepsis_fusion.model.service import app_from_env
    from sepsis_fusion.model.study import StudyError

    if clock not in ("materialized", "now"):
        raise typer.BadParameter(f"--clock {clock!r}: use 'materialized' or 'now'")
    try:
        run = run or latest_run(paths.data_dir() / "runs")
        os.environ.update(SEPSIS_FUSION_SERVE_RUN=str(Path(run).resolve()), SEPSIS_FUSION_SERVE_CLOCK=clock,
                          SEPSIS_FUSION_SERVE_ONLINE_STORE=online_store)
        app = app_from_env()  # fails here, with a clear message, on a bad run folder or store
    except (StudyError, FeatureStoreError, FileNotFoundError) as exc:
        raise _error_exit(exc) from None
    console.print(f"serving {run} on http://{host}:{port} with {workers} worker(s) (POST /score, GET /health)",
                  soft_wrap=True)
    # one worker serves the app already loaded; more are separate processes, each loading its own
    target = app if workers == 1 else "sepsis_fusion.model.service:app_from_env"
    uvicorn.run(target, factory=workers > 1, host=host, port=port, workers=workers, access_log=False,
                log_level="warning")


@app.command()
def demo(
    stays: int = typer.Option(5000, "--stays", help="Synthetic ICU stays to generate."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(None, "--out", help="Synthetic MIMIC-IV folder (default: data/synthetic)."),
) -> None:
    """The main job end to end on synthetic data: generate MIMIC-IV, `dbt build`, embed the notes, apply
    and materialize the Feast store, train, evaluate, and score offline and online."""
    from . import paths
    from .synth.generate import SynthError, generate, matches

    out = out or paths.data_dir() / "synthetic"
    steps: list[tuple[str, str, str]] = []
    _rule(steps, "synthetic MIMIC-IV")
    if matches(out, stays, seed, "full"):
        console.print(f"reusing {out} ({stays:,} stays, seed {seed})")
        steps.append(("synthetic MIMIC-IV", "reused", f"{out.resolve()} ({stays:,} stays, seed {seed})"))
    else:
        try:
            generate(stays, seed, out)
        except SynthError as exc:
            raise _error_exit(exc) from None
        steps.append(("synthetic MIMIC-IV", "done", f"{out.resolve()} ({stays:,} stays, seed {seed})"))
    _chain(steps, out, "minilm", paths.REPO_ROOT / "model" / "configs" / "demo.yaml", paths.data_dir() / "runs" / "demo")


@app.command()
def pipeline(
    mimic: Path = typer.Option(..., "--mimic", help="MIMIC-IV folder with hosp/ and icu/, and note/ from "
                               "MIMIC-IV-Note when you have it."),
    model: str = typer.Option("emilyalsentzer/Bio_ClinicalBERT", "--model", help="Note encoder: hub id, local "
                              "folder, or 'minilm' (packaged, no hub)."),
    config: Path = typer.Option(None, "--config", help="Study settings (default model/configs/study.yaml, the "
                                "study's full grid; model/configs/demo.yaml is a small one)."),
    run_name: str = typer.Option(None, "--run-name", help="Run folder under data/runs (default: the config's "
                                 "name); reused when trained with this config on this training set."),
) -> None:
    """The whole chain on a MIMIC-IV folder: `dbt build`, embed the notes, apply and materialize the Feast
    store, train, evaluate, score offline and online. It ends with what ran, what it reused and what it
    skipped and why. Exit status 0: every step ran; 3: a step was skipped (e.g. too few stays to train);
    1 or 2: a step failed (the message says which and why)."""
    from . import paths

    config = config or paths.REPO_ROOT / "model" / "configs" / "study.yaml"
    _chain([], mimic, model, config, paths.data_dir() / "runs" / (run_name or config.stem))


SKIPPED_EXIT = 3


def _rule(steps: list, title: str) -> None:
    console.rule(f"{len(steps) + 1}. {title}")


def _chain(steps: list[tuple[str, str, str]], mimic: Path, model: str, config: Path, run_dir: Path) -> None:
    """build -> embed -> Feast -> train -> evaluate -> score, then the summary; each step's own command
    prints its errors and exits."""
    from . import paths

    _rule(steps, "dbt build")
    nodes = build(mimic=mimic, select=None, force=False)
    steps.append(("dbt build", "done" if nodes else "reused", f"{len(nodes)} nodes passed" if nodes else
                  f"{mimic} and dbt_project/ unchanged since the last build"))
    _rule(steps, f"note embeddings ({model})")
    result = embed(model=model, pooling="mean", device="auto", max_length=512, stride=64, batch_tokens=16384)
    if result.notes:
        steps.append(("note embeddings", "done", f"{result.notes:,} notes ({result.embedded:,} embedded now), "
                      f"{result.windows_with_notes:,} of {result.windows:,} windows with notes"))
    else:
        steps.append(("note embeddings", "degraded", "no notes (no note/ folder, or no report of a cohort stay): "
                      "every note window is marked missing"))
    _rule(steps, "Feast: apply and materialize (SQLite online store)")
    features_apply(online="sqlite")
    features_materialize(end=None, start=None, incremental=False, online="sqlite")
    steps.append(("Feast", "done", f"registry and online store under {paths.data_dir() / 'feast'}"))
    _model_steps(steps, config, run_dir)
    _summary(steps)


def _model_steps(steps: list[tuple[str, str, str]], config_path: Path, run_dir: Path) -> None:
    """Train (reused when config and training set are unchanged; skipped, with the reason, when the cohort
    cannot support it), evaluate, then score offline as of a past time and online as of the store's time."""
    from .features.store import FeatureStoreError, online_store_time, open_store
    from .features.training import in_icu, training_set
    from sepsis_fusion.model.evaluate import evaluate as evaluate_run
    from sepsis_fusion.model.scoring import Scorer
    from sepsis_fusion.model.study import StudyError, TooFewStays, is_current, load_config, run_study

    try:
        _rule(steps, f"train ({config_path.name})")
        config = load_config(config_path)
        ts = training_set()
        fresh = not is_current(run_dir, ts, config)
        if fresh:
            try:
                result = run_study(ts, config, run_dir,
                                   progress=lambda line: console.print(line, soft_wrap=True, markup=False))
            except KeyboardInterrupt:
                raise _interrupted(run_dir, "the same command") from None
            except TooFewStays as exc:
                console.print(f"training skipped: {exc}", soft_wrap=True, markup=False)
                steps.append(("train", "skipped", str(exc)))
                steps += [(name, "skipped", "no model was trained") for name in ("evaluate", "score")]
                return
            steps.append(("train", "done", f"{run_dir} (test AUROC {result.test_auroc:.3f})"))
        else:
            console.print(f"reusing {run_dir}: trained with this config on this training set")
            steps.append(("train", "reused", f"{run_dir}: trained with this config on this training set"))
        _rule(steps, "evaluate on the held-out test set")
        if fresh or not (run_dir / "report.md").exists():
            console.print("metrics with 1,000 bootstrap resamples, baselines (logistic regression, gradient "
                          "boosting, SOFA), plots, report and model card", soft_wrap=True)
            evaluate_run(ts, run_dir, resamples=1000)
            steps.append(("evaluate", "done", f"{run_dir / 'report.md'}, plots {run_dir}/*.png, model card "
                          f"{run_dir / 'model_card.md'}"))
        else:
            console.print(f"reusing {run_dir / 'report.md'}")
            steps.append(("evaluate", "reused", f"{run_dir / 'report.md'}"))
        _rule(steps, "score offline (as of a past time) and online (as of the online store's time)")
        store = open_store()
        scorer = Scorer(run_dir, store)
        cohort = ts.cohort.sort_values("prediction_time")
        past = cohort["prediction_time"].iloc[len(cohort) // 2].to_pydatetime()
        done = []
        for mode, when in (("offline", past), ("online", online_store_time(store))):
            ids = in_icu(cohort, when)
            if not ids:
                done.append(f"{mode}: no cohort stay in the ICU at {when}")
                continue
            scores = scorer.offline(ids, when) if mode == "offline" else scorer.online(ids, when)
            table, target = _write_scores(scorer, scores, mode, when)
            done.append(f"{mode} as of {when}: {int(table['probability'].notna().sum())} stays -> {target}")
        console.print("\n".join(done), soft_wrap=True, markup=False)
        steps.append(("score", "done", "; ".join(done)))
    except (StudyError, FeatureStoreError, FileNotFoundError) as exc:
        raise _error_exit(exc) from None


def _summary(steps: list[tuple[str, str, str]]) -> None:
    from rich.table import Table

    from . import paths

    table = Table(title="what ran", show_lines=False)
    for column in ("step", "status", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "reused": "cyan", "degraded": "yellow", "skipped": "red"}
    for name, status, detail in steps:
        table.add_row(name, f"[{colours[status]}]{status}[/]", detail)
    console.rule("done")
    console.print(table)
    console.print(f"warehouse: {paths.warehouse_path()}\nfeature tables (Parquet): {paths.features_dir()}\n"
                  f"scores: {paths.data_dir() / 'scores'}", soft_wrap=True)
    skipped = [name for name, status, _ in steps if status == "skipped"]
    if skipped:
        console.print(f"skipped: {', '.join(skipped)} (reasons above)", soft_wrap=True)
        raise typer.Exit(SKIPPED_EXIT)


if __name__ == "__main__":
    app()
