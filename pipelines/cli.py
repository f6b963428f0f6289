"""The `sepsis-fusion` command line: parses arguments, calls pipelines/workflow.py, renders its results.

Exit status: 0 done; 1 a step failed (the message says which and why, without a traceback); 2 the
command was used wrongly (a bad option or value); 3 `pipeline`/`demo` skipped a step (e.g. too few
stays to train; the summary says why); 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import signal
import threading
import warnings
from pathlib import Path
from typing import Literal

import typer
import yaml
from rich.console import Console

from sepsis_fusion.model.errors import SepsisFusionError

from . import paths, utc, workflow
from .serving.settings import ServiceSettings
from .serving.settings import default as serve_default

# Feast's DuckDB store (through ibis) calls a DuckDB method deprecated in 2.0, once per query: noise for users.
warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)

app = typer.Typer(
    help="Sepsis Fusion: a point-in-time-correct feature store and fusion model for ICU sepsis prognosis on MIMIC-IV.",
    no_args_is_help=True,
    add_completion=False,
)
features_app = typer.Typer(
    help="The Feast feature store in feature_repo/ (files under the data folder): "
    "`feast apply`, `feast materialize` and `feast serve` on it.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")
export_app = typer.Typer(help="Write the data in another format: `export meds` (docs/MEDS.md).", no_args_is_help=True)
app.add_typer(export_app, name="export")
baseline_app = typer.Typer(
    help="Peer baselines from other toolkits on a run's split: `baseline meds-tab` (docs/MEDS.md).",
    no_args_is_help=True,
)
app.add_typer(baseline_app, name="baseline")
console = Console(stderr=True)

RUNTIME_ERROR, USAGE_ERROR, SKIPPED, INTERRUPTED = 1, 2, 3, 130
OnlineStore = Literal["sqlite", "redis"]


def _default(function, parameter: str):
    """A parameter's default where it is defined (the workflow), for the option that passes it on."""
    return inspect.signature(function).parameters[parameter].default


class RichReporter:
    def step(self, title: str) -> None:
        console.rule(title)

    def line(self, text: str) -> None:
        console.print(text, soft_wrap=True, markup=False, highlight=False)


def say(text: str) -> None:
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def reports_errors(command):
    """A project error ends the command with its message and exit 1; Ctrl-C in training with what was kept."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except workflow.TrainingInterrupted as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(INTERRUPTED) from None
        except SepsisFusionError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(RUNTIME_ERROR) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"sepsis-fusion {version('sepsis-fusion')}")
        raise typer.Exit()


@app.callback()
def main(
    _: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Sepsis Fusion command line."""


def parse_time(value: str | None) -> dt.datetime | None:
    """An ISO time (naive UTC), 'now' (the wall clock, UTC) or None."""
    if value is None:
        return None
    try:
        return utc.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_vars(value: str | None) -> dict | None:
    """`--vars` as dbt reads it: a YAML mapping."""
    if not value:
        return None
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"not YAML: {exc}", param_hint="--vars") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter(f"a mapping such as '{{prediction_hours: 6}}', not {value!r}", param_hint="--vars")
    return parsed


def parse_stays(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use comma-separated integer stay ids") from None


ONLINE_STORE = typer.Option(
    workflow.DEFAULT_ONLINE_STORE,
    "--online-store",
    help="Online store: 'sqlite' "
    "(embedded, the default) or 'redis' (feature_store.redis.yaml; set "
    "SEPSIS_FUSION_REDIS, e.g. 127.0.0.1:6379).",
)
RUN = typer.Option(
    None, "--run", help="A run: its name under data/runs, or its folder (default: the newest under data/runs)."
)
RUN_OR_MODEL = typer.Option(
    None,
    "--run",
    help="A run: its name under data/runs, its folder, or a registered model's version in MLflow, "
    "models:/NAME@ALIAS or models:/NAME/VERSION (docs/TRACKING.md; downloaded once into data/registry/) "
    "(default: the newest under data/runs).",
)
ALLOW_OUTSIDE = typer.Option(
    False,
    "--allow-outside-population",
    help="Also score stays outside the intended population at that time (before T, out of the ICU, not an "
    "adult's first recognised Sepsis-3 stay), flagged in_population=false. A stay with no static input "
    "served is refused either way.",
)
ENCODER_HELP = "Note encoder: hub id, local folder, or 'minilm' (the packaged all-MiniLM-L6-v2, no hub needed)."
CONFIG_HELP = "Study settings (YAML); default the packaged {}.yaml (see `model/configs/`)."
TRACK = typer.Option(
    False,
    "--track",
    help="Log the evaluated run to MLflow (docs/TRACKING.md; needs sepsis-fusion[track]): a SQLite store under "
    "the data folder (data/mlflow/) unless $MLFLOW_TRACKING_URI names another.",
)
EXPERIMENT = typer.Option(
    None,
    "--experiment",
    help=f"MLflow experiment for --track (default: $MLFLOW_EXPERIMENT_NAME, else {workflow.DEFAULT_EXPERIMENT}).",
)
REGISTERED_MODEL_HELP = (
    "MLflow registered model that the run folder is a version of (default: $SEPSIS_FUSION_REGISTERED_MODEL, "
    "else sepsis-fusion)."
)


@app.command()
@reports_errors
def synth(
    stays: int = typer.Option(workflow.SYNTH_STAYS, "--stays", help="Number of ICU stays to generate."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    out: Path = typer.Option(
        None, "--out", help="Folder to write hosp/, icu/, note/ and _truth/ (default: data/synthetic)."
    ),
    density: Literal["full", "light"] = typer.Option(
        "full",
        "--density",
        help="'full': MIMIC-IV's density (about 3,000 chart rows per "
        "stay); 'light': fewer nursing rows, for quick tests.",
    ),
    live_share: float = typer.Option(
        workflow.LIVE_SHARE,
        "--live-share",
        help="Share of the patients in the ICU at the data's present (the live ward, scored online); "
        "0: every stay in the past, as in MIMIC-IV.",
    ),
    site: Literal["a", "b"] = typer.Option(
        "a",
        "--site",
        help="The hospital: 'a', the default; 'b', a second site for external validation (older, sicker "
        "case mix, higher death rate, other lab analysers, briefer notes) in the same tables.",
    ),
) -> None:
    """Generate a synthetic MIMIC-IV (v2.2 layout, gzip CSV) with known outcome probabilities."""
    import time

    start = time.perf_counter()
    result = workflow.synthesize(stays, seed, out, density, live_share=live_share, site=site)
    counts = ", ".join(
        f"{name.split('/')[1]} {result.rows[name]:,}"
        for name in ("icu/chartevents", "hosp/labevents", "note/radiology")
    )
    say(f"wrote {result.stays:,} ICU stays to {result.out} in {time.perf_counter() - start:.1f} s: {counts}")


@app.command()
@reports_errors
def build(
    mimic: Path = typer.Option(
        None,
        "--mimic",
        help="MIMIC-IV folder with hosp/ and icu/ (default: $SEPSIS_FUSION_MIMIC_DIR, else data/synthetic).",
    ),
    select: str = typer.Option(None, "--select", help="dbt node selection, as `dbt build --select`."),
    force: bool = typer.Option(False, "--force", help="Build even when nothing changed since the last build."),
    engine: Literal["duckdb", "spark"] = typer.Option(
        "duckdb",
        "--engine",
        help="'duckdb' (the warehouse file) or 'spark' (dbt-spark in a local SparkSession; docs/SPARK.md).",
    ),
    dbt_vars: str = typer.Option(
        None,
        "--vars",
        help="dbt vars as YAML, as `dbt build --vars`: the cohort's settings, e.g. "
        "'{culture_known_at: storetime, prediction_hours: 6}' (docs/COHORT.md).",
    ),
) -> None:
    """Run `dbt build` (staging -> intermediate -> marts) over a MIMIC-IV folder, on DuckDB or Spark."""
    result = workflow.build(mimic, select, force, engine, parse_vars(dbt_vars))
    say(
        f"dbt build: {'nothing to do' if result.reused else f'{len(result.nodes)} nodes passed'}; "
        + (f"warehouse {result.warehouse}" if engine == "duckdb" else f"Spark in {result.warehouse.parent / 'spark'}")
        + f"; marts in {paths.features_dir()}"
    )


@app.command()
@reports_errors
def embed(
    encoder: str = typer.Option(workflow.DEFAULT_ENCODER, "--encoder", help=ENCODER_HELP),
    pooling: Literal["mean", "cls"] = typer.Option(
        _default(workflow.embed, "pooling"), "--pooling", help="'mean' (attention-masked) or 'cls'."
    ),
    device: str = typer.Option(
        _default(workflow.embed, "device"), "--device", help="'auto' (GPU when present), 'cpu', 'cuda', 'cuda:1', ..."
    ),
    max_length: int = typer.Option(
        _default(workflow.embed, "max_length"), "--max-length", help="Tokens per chunk, special tokens included."
    ),
    stride: int = typer.Option(
        _default(workflow.embed, "stride"), "--stride", help="Tokens shared by consecutive chunks of a long note."
    ),
    batch_tokens: int | None = typer.Option(
        None,
        "--batch-tokens",
        min=1,
        help="Padded tokens per encoder batch (default: 2,048 on a CPU, 16,384 on a GPU; bench/bench_embed.py "
        "measures the choice).",
    ),
    precision: Literal["auto", "fp32", "bf16"] = typer.Option(
        _default(workflow.embed, "precision"),
        "--precision",
        help="The encoder's forward pass: 'auto' (bf16 where the CPU has AVX512-BF16 or AMX, or the GPU has "
        "bf16; else fp32), 'fp32' or 'bf16'. Part of the cache key: bf16 and fp32 vectors never mix.",
    ),
) -> None:
    """Embed the notes of notes_to_embed (only new or changed ones): one vector per note, for the note sequence."""
    result = workflow.embed(encoder, pooling, device, max_length, stride, batch_tokens, precision=precision)
    rate = f", {result.embedded / result.seconds_encoding:.1f} notes/s" if result.seconds_encoding else ""
    rate += f" in {result.precision}" if result.precision else ""
    say(
        f"notes: {result.notes:,} ({result.embedded:,} embedded now{rate}, the rest from the cache) of "
        f"{result.stays_with_notes:,} stays, in {result.slots} sequence slots; written to {result.features}"
    )
    if result.notes == 0:
        say(
            "no notes to embed (no note/ folder in the MIMIC-IV data, or no radiology report of a cohort stay): "
            "every stay's note slots are empty, so the model's note branch gives only its learned "
            "'absent' encoding"
        )


@features_app.command("apply")
@reports_errors
def features_apply(
    online_store: OnlineStore = ONLINE_STORE,
    offline: Literal["duckdb", "spark"] = typer.Option(
        None,
        "--offline",
        help="Offline store over the Parquet files: 'duckdb' or 'spark' (Feast's Spark store; docs/SPARK.md). "
        "Kept for the data folder's later commands; default: the one it has, else duckdb.",
    ),
) -> None:
    """Register the feature definitions and create the online store's tables (`feast apply`)."""
    result = workflow.apply_store(online_store, offline)
    say(result.feast_output.strip())
    say(f"feast apply: registry under {result.registry}")


@features_app.command("materialize")
@reports_errors
def features_materialize(
    end: str = typer.Option(
        None,
        "--end",
        help="ISO time, or 'now'. Default: the data's present, its latest hour (MIMIC-IV's dates lie in the future).",
    ),
    start: str = typer.Option(None, "--start", help="ISO time (default: the beginning of the data)."),
    incremental: bool = typer.Option(
        False, "--incremental", help="Start where the last run ended (`feast materialize-incremental`)."
    ),
    every: float = typer.Option(
        None,
        "--every",
        min=1,
        help="With --incremental: run again every this many seconds until stopped (Ctrl-C or SIGTERM end it "
        "after the run in progress); --end is read again at each run, so 'now' moves on.",
    ),
    online_store: OnlineStore = ONLINE_STORE,
) -> None:
    """Load the latest features per stay as of --end into the online store (`feast materialize`)."""

    def report(result: workflow.MaterializeStep) -> None:
        say(f"online store ({result.online_store}) holds each stay's latest features as of {result.until}")

    if every is None:
        report(workflow.materialize_store(parse_time(end), parse_time(start), incremental, online_store))
        return
    if not incremental or start is not None:
        raise typer.BadParameter("--every repeats incremental runs: use it with --incremental and no --start")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def failed(exc: Exception) -> None:
        say(f"error: this run failed ({exc}); the next one, in {every:g} s, starts where the last good one ended")

    runs = workflow.materialize_on_schedule(every, lambda: parse_time(end), online_store, report, failed, stop)
    say(f"stopped after {runs} run(s)")


@features_app.command("serve")
@reports_errors
def features_serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(6566, "--port"),
    online_store: OnlineStore = ONLINE_STORE,
) -> None:
    """Feast's feature server on this store (`feast serve`): POST /get-online-features."""
    from .features.store import exec_feast

    exec_feast(["serve", "-h", host, "-p", str(port)], online=online_store)


@app.command()
@reports_errors
def train(
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP.format("demo")),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a setting: section.key=value "
        "(e.g. train.lr=0.0005, grid.dropout=[0.1,0.3], outcome=died_in_icu).",
    ),
    out: Path = typer.Option(None, "--out", help="Run folder (default: data/runs/<time>)."),
) -> None:
    """Train the fusion model with the study's protocol on the Feast training set; write a run folder."""
    result = workflow.train(config, overrides, out, RichReporter())
    say(f"run folder: {result.run_dir}")


@app.command()
@reports_errors
def evaluate(
    run: Path = RUN,
    resamples: int = typer.Option(
        workflow.DEFAULT_RESAMPLES, "--resamples", help="Bootstrap resamples for the 95% intervals."
    ),
    risk_threshold: list[float] = typer.Option(
        list(workflow.RISK_THRESHOLDS),
        "--risk-threshold",
        help="A risk at which every model is compared (repeat the option for several).",
    ),
    at_sensitivity: float = typer.Option(
        workflow.AT_SENSITIVITY, "--at-sensitivity", help="Compare every model's specificity at this sensitivity."
    ),
    track: bool = TRACK,
    experiment: str | None = EXPERIMENT,
    registered_model: str | None = typer.Option(
        None, "--registered-model", help="With --track: the " + REGISTERED_MODEL_HELP
    ),
) -> None:
    """Evaluate a run on its held-out test set: metrics with CIs, baselines, plots, report.md and report.html."""
    tracking(track, experiment, registered_model)
    evaluated = workflow.evaluate(run, resamples, risk_thresholds=tuple(risk_threshold), at_sensitivity=at_sensitivity)
    say(f"report: {evaluated.report}")
    say(f"html report: {evaluated.html}")
    if track:
        _say_tracked(workflow.track_run(evaluated.report.parent, experiment, registered_model=registered_model))


def _say_tracked(tracked: workflow.TrackStep) -> None:
    say(
        f"MLflow run {tracked.run_id} in experiment {tracked.experiment} ({tracked.settings} grid setting(s) as "
        f"child runs{'; replaced the earlier run of this run folder' if tracked.replaced else ''})\n"
        f"tracking URI: {tracked.tracking_uri}\nbrowse it: {tracked.browse}"
    )
    if tracked.registered_version:
        say(
            f"registered model {tracked.registered_model} version {tracked.registered_version} "
            f"({tracked.model_uri}); make it the champion: sepsis-fusion promote {tracked.run_dir} --alias "
            f"champion{_registered_option(tracked.registered_model)}"
        )


@app.command()
@reports_errors
def promote(
    run: str = typer.Argument(..., help="The run: its name under data/runs, or its folder (as `evaluate --run`)."),
    alias: str = typer.Option(..., "--alias", help="The alias to set on its registered version, e.g. champion."),
    registered_model: str | None = typer.Option(None, "--registered-model", help=REGISTERED_MODEL_HELP),
) -> None:
    """Set an alias of the MLflow registered model (e.g. champion) on the version that is this run folder, as
    `evaluate --track` registered it; `serve --run models:/NAME@ALIAS` then serves it (docs/TRACKING.md)."""
    result = workflow.promote(run, alias, registered_model)
    moved = (
        f" (moved from version {result.previous})"
        if result.previous not in (None, result.registered_version)
        else " (it named this version already)"
        if result.previous
        else ""
    )
    say(
        f"{result.model_uri} is version {result.registered_version} of {result.registered_model}, the run folder "
        f"{result.run_dir} ({result.model_version}){moved}\ntracking URI: {result.tracking_uri}"
    )


def tracking(track: bool, experiment: str | None, registered_model: str | None = None) -> None:
    if experiment is not None and not track:
        raise typer.BadParameter("--experiment names the MLflow experiment of --track: add --track")
    if registered_model is not None and not track:
        raise typer.BadParameter("--registered-model names the registered model of --track: add --track")


def _registered_option(name: str | None) -> str:
    """`promote`'s --registered-model for a name other than its default."""
    from shlex import quote

    from .tracking import registered_model_name

    return "" if name in (None, registered_model_name()) else f" --registered-model {quote(name)}"


@app.command()
@reports_errors
def validate(
    run: str = RUN_OR_MODEL,
    recalibrate: bool = typer.Option(
        False,
        "--recalibrate",
        help="Also fit a new calibration map on these data (cross-fitted for its report) and write it as a new "
        "run version with the same weights.",
    ),
    to: Path = typer.Option(
        None, "--to", help="Folder of the recalibrated run version (default: data/runs/<run>-recalibrated)."
    ),
    out: Path = typer.Option(None, "--out", help="Report folder (default: data/validations/<run>)."),
    resamples: int = typer.Option(
        workflow.DEFAULT_RESAMPLES, "--resamples", help="Bootstrap resamples for the 95% intervals."
    ),
    track: bool = typer.Option(
        False,
        "--track",
        help="With --recalibrate: log the recalibrated run version to MLflow and register it (as evaluate --track).",
    ),
    experiment: str | None = EXPERIMENT,
    registered_model: str | None = typer.Option(
        None, "--registered-model", help="With --track: the " + REGISTERED_MODEL_HELP
    ),
) -> None:
    """External validation: a trained run scored on this data folder (another site or period), every
    outcome-known cohort stay at its prediction time; its own report, the run itself untouched."""
    if to is not None and not recalibrate:
        raise typer.BadParameter("--to names the recalibrated run version: add --recalibrate")
    if track and not recalibrate:
        raise typer.BadParameter(
            "--track registers the recalibrated run version: add --recalibrate (a run as trained is "
            "tracked by `evaluate --track`)"
        )
    tracking(track, experiment, registered_model)
    result = workflow.validate(run, out, recalibrate, to, resamples)
    v = result.validation
    for name, m in v.models.items():
        say(
            f"{name}: AUROC {m['auroc']['value']:.3f} ({m['auroc']['low']:.3f} to {m['auroc']['high']:.3f}), "
            f"calibration intercept {m['calibration_intercept']['value']:+.2f} "
            f"({m['calibration_intercept']['low']:+.2f} to {m['calibration_intercept']['high']:+.2f}), "
            f"slope {m['calibration_slope']['value']:.2f} on {v.stays} stays"
        )
    say(f"report: {result.report}\nhtml report: {result.html}")
    if result.recalibrated_run:
        say(f"recalibrated run version: {result.recalibrated_run} (parent {v.version})")
    if track:
        _say_tracked(workflow.track_run(result.recalibrated_run, experiment, registered_model=registered_model))


@export_app.command("meds")
@reports_errors
def export_meds(
    run: str = RUN_OR_MODEL,
    out: Path = typer.Option(None, "--out", help="The MEDS dataset's folder (default: data/meds/<run>)."),
) -> None:
    """The cohort's patients as a MEDS dataset, split as the run was (train/tuning: its training part, tuning
    its CV fold 0; held_out: its test part), with the task's labels and an ACES task config."""
    from tqdm import tqdm

    result = workflow.export_meds(run, out, progress=tqdm)
    subjects = ", ".join(f"{split} {n:,}" for split, n in result.subjects.items())
    say(
        f"MEDS dataset: {result.root}\n  subjects: {subjects}; {result.events:,} events, {result.codes:,} codes, "
        f"{result.shards} shard(s), {result.bytes / 2**20:,.1f} MiB in {result.seconds:,.1f} s"
    )
    say(f"  labels: {result.labels}\n  ACES task config: {result.aces_config}")


@baseline_app.command("meds-tab")
@reports_errors
def baseline_medstab(
    run: Path = RUN,
    trials: int = typer.Option(20, "--trials", help="Trials of MEDS-Tab's optuna sweep over XGBoost's settings."),
    seed: int = typer.Option(0, "--seed", help="The sweep's sampler seed."),
    resamples: int = typer.Option(
        workflow.DEFAULT_RESAMPLES, "--resamples", help="Bootstrap resamples of the run's report."
    ),
) -> None:
    """MEDS-Tab's XGBoost on the run's MEDS export (train/tuning/held_out as the run split its stays), through
    MEDS-Tab's own steps; its held-out predictions join the run's report as a peer baseline, beside
    meds-evaluation's figures for them."""
    result = workflow.medstab_baseline(run, trials, seed, resamples, say=say)
    m, d = result.metrics, result.difference
    ours = result.medstab.meds_evaluation["samples_equally_weighted"]
    say(
        f"{len(result.medstab.predictions):,} held-out stays. MEDS-Tab XGBoost: AUROC {_ci_text(m['auroc'])}, "
        f"AUPRC {_ci_text(m['auprc'])}; fusion model minus it: AUROC {_ci_text(d['auroc'], '+.3f')}, "
        f"AUPRC {_ci_text(d['auprc'], '+.3f')}"
    )
    say(
        f"meds-evaluation on the same predictions: AUROC {ours['roc_auc_score']:.3f}, "
        f"AUPRC (average precision) {ours['average_precision_score']:.3f}"
    )
    say(f"report: {result.evaluated.report}\nhtml report: {result.evaluated.html}")


def _ci_text(m: dict, spec: str = ".3f") -> str:
    return f"{m['value']:{spec}} ({m['low']:{spec}} to {m['high']:{spec}})"


@app.command()
@reports_errors
def score(
    as_of: str = typer.Option(
        None,
        "--as-of",
        help="ISO time to score as of, or 'now'. Offline: required. "
        "Online: default the time the online store is materialized to (MIMIC-IV's "
        "dates lie in the future; live deployments pass 'now').",
    ),
    online: bool = typer.Option(
        False,
        "--online/--offline",
        help="Read the Feast online store, or do a point-in-time historical retrieval (the default).",
    ),
    stays: str = typer.Option(
        None, "--stays", help="Comma-separated stay ids (default: the cohort stays in the ICU at that time)."
    ),
    run: str = RUN_OR_MODEL,
    out: Path = typer.Option(None, "--out", help="CSV to write (default: data/scores/<mode>-<time>.csv)."),
    online_store: OnlineStore = ONLINE_STORE,
    explain: bool = typer.Option(
        False,
        "--explain",
        help=f"Name the {workflow.EXPLAIN_TOP} inputs that contributed most to each score "
        "(integrated gradients; column top_inputs, logit units).",
    ),
    allow_outside: bool = ALLOW_OUTSIDE,
) -> None:
    """Score stays with only what was known at a time: probability, decision, model version, missing inputs.
    A stay outside the intended population at that time gets its status and the reason instead."""
    result = workflow.score(
        parse_time(as_of),
        online,
        parse_stays(stays),
        run,
        out,
        online_store,
        explain=explain,
        allow_outside=allow_outside,
    )
    print_scores(result)
    if result.data_warning:
        say(f"warning: {result.data_warning}")
    say(
        f"{result.mode} scores as of {result.as_of} by {result.model_version}: {result.scored} stays scored, "
        f"{result.above_threshold} above the threshold {result.threshold:.3f}"
        + (f", {result.not_scored} not scored (status column)" if result.not_scored else "")
        + f"\n{result.csv}"
    )


def print_scores(result: workflow.ScoreStep, limit: int = 40) -> None:
    """The scores as a table on the terminal (the CSV has every column)."""
    from rich.table import Table

    frame = result.table
    table = Table(title=f"{result.mode} scores as of {result.as_of}", show_lines=False)
    for column in ("stay", "status", "probability", "decision", "why not scored / flag"):
        table.add_column(column, overflow="fold")
    for row in frame.head(limit).itertuples():
        probability = "" if row.probability is None or row.probability != row.probability else f"{row.probability:.3f}"
        decision = "" if probability == "" else ("above" if row.decision else "below")
        table.add_row(
            str(row.stay_id),
            getattr(row, "status", "scored") or "",
            probability,
            decision,
            getattr(row, "reason", "") or "",
        )
    console.print(table)
    if len(frame) > limit:
        say(f"... {len(frame) - limit} more in {result.csv}")


@app.command()
@reports_errors
def stays(
    as_of: str = typer.Option(
        None,
        "--as-of",
        help="ISO time (default: the time the online store is materialized to, else the data's present).",
    ),
    ids: bool = typer.Option(
        False, "--ids", help="Print only the ids of the stays in the intended population, one per line (scripts)."
    ),
) -> None:
    """The stays in the ICU at a time, with their prediction time T and their status in the intended
    population (who `score` and the service will score then)."""
    import pandas as pd
    from rich.table import Table

    result = workflow.live_stays(parse_time(as_of))
    if ids:
        for stay in result.table.loc[result.table["status"] == "in_population", "stay_id"]:
            typer.echo(stay)
        return
    table = Table(title=f"in the ICU at {result.as_of}", show_lines=False)
    for column in ("stay", "in ICU since", "hours", "T", "status", "reason"):
        table.add_column(column, overflow="fold")
    for row in result.table.itertuples():
        table.add_row(
            str(row.stay_id),
            f"{row.intime:%Y-%m-%d %H:%M}",
            f"{row.hours_in_icu:.1f}",
            "" if pd.isna(row.prediction_time) else f"{row.prediction_time:%Y-%m-%d %H:%M}",
            row.status,
            row.reason or "",
        )
    console.print(table)
    say(
        f"{len(result.table)} stays in the ICU at {result.as_of}, {result.in_population} in the intended population "
        f"(scored by `sepsis-fusion score --online` and POST /score)"
    )


@app.command()
@reports_errors
def serve(
    run: str = RUN_OR_MODEL,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told otherwise)."),
    port: int = typer.Option(8000, "--port"),
    clock: str = typer.Option(
        serve_default("clock"),
        "--clock",
        help="The time requests are scored as of: "
        "'materialized' (where the online store is filled to; for MIMIC-IV replays), "
        "'now' (the wall clock; live data) or a fixed ISO time.",
        callback=lambda value: value if value in ("materialized", "now") else _iso_clock(value),
    ),
    max_staleness: float = typer.Option(
        serve_default("max_staleness_s"),
        "--max-staleness",
        min=0,
        help="Seconds the features may end before the clock; staler, /readyz answers 503 (not ready).",
    ),
    online_store: OnlineStore = ONLINE_STORE,
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes (about one per core)."),
    log_format: Literal["text", "json"] = typer.Option(
        serve_default("log_format"), "--log-format", help="'json': one JSON object per line."
    ),
    log_level: Literal["debug", "info", "warning", "error"] = typer.Option(serve_default("log_level"), "--log-level"),
    shutdown_timeout: float = typer.Option(
        serve_default("shutdown_timeout_s"),
        "--shutdown-timeout",
        min=0,
        help="On SIGTERM, seconds to finish the requests in flight.",
    ),
    registry_refresh: float = typer.Option(
        serve_default("registry_refresh_s"),
        "--registry-refresh",
        min=0,
        help="Seconds between re-reads of Feast's registry (materializations).",
    ),
    allow_outside: bool = ALLOW_OUTSIDE,
    api_key_file: Path = typer.Option(
        None,
        "--api-key-file",
        help="File of API keys, one per line: /score, /metrics and /health then require 'Authorization: Bearer "
        "<key>' (401 otherwise); $SEPSIS_FUSION_API_KEY adds one. /livez and /readyz stay open.",
    ),
    max_body_bytes: int = typer.Option(
        serve_default("max_body_bytes"), "--max-body-bytes", min=1024, help="Larger request bodies get 413."
    ),
    monitor_stays: int = typer.Option(
        serve_default("monitor_stays"),
        "--monitor-stays",
        min=1,
        help="/metrics' PSI gauges compare the last N stays scored with the run's training reference.",
    ),
    monitor_inputs: int = typer.Option(
        serve_default("monitor_inputs"),
        "--monitor-inputs",
        min=1,
        help="Inputs with a PSI gauge: the N most important (importance.csv; every input without it).",
    ),
) -> None:
    """HTTP scoring service on the online store: POST /score; GET /readyz, /livez, /metrics, /health (docs at /docs)."""
    from .serving.service import run_service

    run = workflow.find_run(run).resolve()
    warning = workflow.data_mismatch(run)
    if warning:
        say(f"warning: {warning}")
    settings = ServiceSettings(
        run=str(run),
        online_store=online_store,
        clock=clock,
        max_staleness_s=max_staleness,
        log_format=log_format,
        log_level=log_level,
        shutdown_timeout_s=shutdown_timeout,
        registry_refresh_s=registry_refresh,
        allow_outside_population=allow_outside,
        api_key_file=str(api_key_file.resolve()) if api_key_file else None,
        max_body_bytes=max_body_bytes,
        monitor_stays=monitor_stays,
        monitor_inputs=monitor_inputs,
    )
    run_service(run, host, port, workers, settings, announce=say)


@app.command()
@reports_errors
def monitor(
    run: str = RUN_OR_MODEL,
    since: str = typer.Option(..., "--since", help="Start of the period (ISO time, UTC; the time served)."),
    until: str = typer.Option(None, "--until", help="End of the period, exclusive (default: now)."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: data/monitoring/report-<since>-<until>/)."),
    inputs: int = typer.Option(
        serve_default("monitor_inputs"),
        "--inputs",
        min=1,
        help="Inputs compared: the N most important (importance.csv; every input without it).",
    ),
) -> None:
    """Drift report of the scores served in a period (the data folder's served-score log): monitor.html,
    monitor.md, monitor.json and PNGs (probabilities served vs training, PSI per input, statuses over
    time, missing inputs by modality)."""
    from .serving.drift_report import write_report

    run = workflow.find_run(run).resolve()
    report = write_report(run, paths.data_dir(), parse_time(since), parse_time(until) or utc.now(), out, inputs)
    _monitor_summary(report)


def _monitor_summary(report: dict) -> None:
    from rich.table import Table

    say(
        f"{report['stays']} stays answered, {report['scored']} scored, {report['period']['since']} to "
        f"{report['period']['until']} ({report['model_version']})"
    )
    if report["psi"] is None:
        say(f"no PSI: {report['psi_note']}")
    else:
        table = Table(title=f"PSI against the training reference ({report['psi_note']})")
        table.add_column("input")
        table.add_column("PSI", justify="right")
        table.add_column("reading")
        for row in report["psi"]:
            table.add_row(row["input"], "-" if row["psi"] is None else f"{row['psi']:.3f}", row["reading"])
        console.print(table)
    say(f"report: {report['files']['html']}")


def _iso_clock(value: str) -> str:
    parsed = parse_time(value)
    return parsed.isoformat()


@app.command()
@reports_errors
def demo(
    stays: int = typer.Option(workflow.DEMO_STAYS, "--stays", help="Synthetic ICU stays to generate."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(None, "--out", help="Synthetic MIMIC-IV folder (default: data/synthetic)."),
    track: bool = TRACK,
    experiment: str | None = EXPERIMENT,
) -> None:
    """The main job end to end on synthetic data: generate MIMIC-IV, `dbt build`, embed the notes, apply
    and materialize the Feast store, train, evaluate, (with --track, log the run to MLflow) and score
    offline and online."""
    tracking(track, experiment)
    summary(chain(workflow.demo, stays, seed, out, RichReporter(), track, experiment))


@app.command()
@reports_errors
def pipeline(
    mimic: Path = typer.Option(
        ..., "--mimic", help="MIMIC-IV folder with hosp/ and icu/, and note/ from MIMIC-IV-Note when you have it."
    ),
    encoder: str = typer.Option(workflow.DEFAULT_ENCODER, "--encoder", help=ENCODER_HELP),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP.format("study") + " demo.yaml is a small grid."),
    run_name: str = typer.Option(
        None,
        "--run-name",
        help="Run folder under data/runs (default: the config's "
        "name); reused when trained with this config on this training set.",
    ),
    track: bool = TRACK,
    experiment: str | None = EXPERIMENT,
) -> None:
    """The whole chain on a MIMIC-IV folder: `dbt build`, embed the notes, apply and materialize the Feast
    store, train, evaluate, score offline and online. It ends with what ran, what it reused and what it
    skipped and why. Exit status 0: every step ran; 3: a step was skipped (e.g. too few stays to train);
    1: a step failed (the message says which and why)."""
    tracking(track, experiment)
    summary(chain(workflow.pipeline, mimic, encoder, config, run_name, RichReporter(), track, experiment))


def chain(run, *args) -> list[workflow.StepResult]:
    """Run a chain; when a step fails, the table of what ran prints before the error (exit 1)."""
    try:
        return run(*args)
    except workflow.ChainFailed as exc:
        summary(exc.steps, failed=True)
        raise


def describe(result: object) -> str:
    """A chain step's result in one sentence (the summary table's detail)."""
    if isinstance(result, list):
        return "; ".join(describe(r) for r in result)
    match result:
        case workflow.SynthStep():
            return f"{result.out} ({result.stays:,} stays, seed {result.seed})"
        case workflow.BuildStep(reused=True):
            return f"{result.mimic} and dbt_project/ unchanged since the last build"
        case workflow.BuildStep():
            return f"{len(result.nodes)} nodes passed"
        case workflow.EmbedStep(notes=0):
            return "no notes (no note/ folder, or no report of a cohort stay): every note slot is empty"
        case workflow.EmbedStep():
            return (
                f"{result.notes:,} notes ({result.embedded:,} embedded now, {result.precision}), "
                f"{result.stays_with_notes:,} stays with notes (the last {result.slots} served)"
            )
        case workflow.ApplyStep():
            return f"registry and online store under {result.registry}"
        case workflow.TrainStep(reused=True):
            return f"{result.run_dir}: trained with this config on this training set"
        case workflow.TrainStep():
            return f"{result.run_dir} (test AUROC {result.test_auroc:.3f})"
        case workflow.EvaluateStep(reused=True):
            return f"{result.report}, {result.html}"
        case workflow.EvaluateStep():
            return f"{result.report}, {result.html}, plots {result.report.parent}/*.png, model card {result.model_card}"
        case workflow.TrackStep():
            return (
                f"MLflow run {result.run_id} in experiment {result.experiment} at {result.tracking_uri}"
                + (f", registered as {result.model_uri}" if result.model_uri else "")
                + f"; browse it: {result.browse}"
            )
        case workflow.ScoreStep():
            return f"{result.mode} as of {result.as_of}: {result.scored} stays -> {result.csv}"
        case workflow.NobodyToScore():
            return f"{result.mode}: no stay in the intended population in the ICU at {result.as_of}"
    return str(result)


def summary(steps: list[workflow.StepResult], failed: bool = False) -> None:
    """The table of what ran; exit 3 when a step was skipped (`failed`: the caller reports the error)."""
    from rich.table import Table

    table = Table(title="what ran", show_lines=False)
    for column in ("step", "status", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "reused": "cyan", "degraded": "yellow", "skipped": "red", "failed": "red"}
    for step in steps:
        table.add_row(step.step, f"[{colours[step.status]}]{step.status}[/]", step.reason or describe(step.result))
    console.rule("failed" if failed else "done")
    console.print(table)
    if failed:
        return
    say(
        f"warehouse: {paths.warehouse_path()}\nfeature tables (Parquet): {paths.features_dir()}\n"
        f"scores: {paths.data_dir() / 'scores'}"
    )
    skipped = [step.step for step in steps if step.status == "skipped"]
    if skipped:
        say(f"skipped: {', '.join(skipped)} (reasons above)")
        raise typer.Exit(SKIPPED)


if __name__ == "__main__":
    app()
