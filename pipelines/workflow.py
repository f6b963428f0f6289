"""The chain's steps, each a function that does one stage and returns what it did (a typed result).

The command line (cli.py) only parses arguments and renders these results; the chains `demo` and
`pipeline` are `run_chain` here. Every default lives here once. Failures are SepsisFusionError
subclasses whose message says what to do; progress goes to a Reporter (the CLI's prints with rich).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import pandas as pd

from sepsis_fusion.model.errors import SepsisFusionError, StudyError
from sepsis_fusion.model.explain import TOP_INPUTS as EXPLAIN_TOP

from . import paths
from .synth.present import LIVE_SHARE

DEFAULT_ENCODER = "emilyalsentzer/Bio_ClinicalBERT"
DEMO_ENCODER = "minilm"
DEFAULT_ONLINE_STORE = "sqlite"
DEFAULT_RESAMPLES = 1000
RISK_THRESHOLDS = (0.1, 0.2, 0.3)  # every model compared at these risks (evaluate.py)
AT_SENSITIVITY = 0.8  # and at the threshold that reaches this sensitivity
DEMO_STAYS = 5000
SYNTH_STAYS = 2000
DEFAULT_EXPERIMENT = "sepsis-fusion"

Status = Literal["done", "reused", "degraded", "skipped", "failed"]


class Reporter(Protocol):
    def step(self, title: str) -> None:
        """A step of a chain starts."""

    def line(self, text: str) -> None:
        """Progress from within a step."""


class Silent:
    def step(self, title: str) -> None:
        pass

    def line(self, text: str) -> None:
        pass


class TrainingInterrupted(SepsisFusionError):
    """Ctrl-C during training: what was kept, and how to resume."""

    def __init__(self, run_dir: Path, kept_folds: int, work: Path, again: str):
        self.run_dir, self.kept_folds, self.work = run_dir, kept_folds, work
        super().__init__(
            f"interrupted: {kept_folds} finished cross-validation fold(s) are kept in {work}"
            + (f", and {run_dir} is as it was" if run_dir.exists() else "")
            + f"; to resume, run again: {again}"
        )


@dataclass(frozen=True)
class StepResult:
    """One line of a chain's summary: the step, its status and its typed result (what the CLI renders), or
    why it was skipped or degraded."""

    step: str
    status: Status
    result: object = None  # SynthStep, BuildStep, EmbedStep, ApplyStep, TrainStep, EvaluateStep, TrackStep, ...
    reason: str = ""


class ChainFailed(SepsisFusionError):
    """A chain step failed: the message is the step's error; `steps` what ran, the failed step last."""

    def __init__(self, message: str, steps: list[StepResult]):
        super().__init__(message)
        self.steps = steps


@dataclass(frozen=True)
class NobodyToScore:
    """A chain's scoring found no cohort stay in the ICU at the time it scores as of."""

    mode: Literal["offline", "online"]
    as_of: dt.datetime


@dataclass(frozen=True)
class SynthStep:
    out: Path
    stays: int
    seed: int
    rows: dict[str, int]  # rows written per table ("icu/chartevents": n); empty when reused
    reused: bool


@dataclass(frozen=True)
class BuildStep:
    mimic: Path
    warehouse: Path
    nodes: list[str]  # the dbt nodes that ran; empty when nothing had changed

    @property
    def reused(self) -> bool:
        return not self.nodes


@dataclass(frozen=True)
class EmbedStep:
    encoder: str
    notes: int
    embedded: int  # encoded now (the rest came from the cache)
    stays_with_notes: int
    slots: int  # the note sequence's length N
    seconds_encoding: float
    features: Path
    precision: str | None = None  # the encoder's forward pass ("fp32", "bf16"); None: no encoder was loaded


@dataclass(frozen=True)
class ApplyStep:
    online_store: str
    feast_output: str
    registry: Path


@dataclass(frozen=True)
class MaterializeStep:
    online_store: str
    until: dt.datetime


@dataclass(frozen=True)
class TrainStep:
    run_dir: Path
    test_auroc: float | None  # None when reused
    reused: bool


@dataclass(frozen=True)
class EvaluateStep:
    report: Path
    html: Path  # report.html: the same report, self-contained
    model_card: Path
    reused: bool


@dataclass(frozen=True)
class TrackStep:
    run_dir: Path
    run_id: str  # the MLflow run
    experiment: str
    experiment_id: str
    tracking_uri: str
    model_version: str
    settings: int  # child runs, one per grid setting
    replaced: int  # earlier MLflow runs of this run folder deleted (parent and child runs)
    registered_model: str | None = None  # the run folder's pyfunc model is a version of it
    registered_version: str | None = None

    @property
    def model_uri(self) -> str | None:
        """The registered version's URI, as `serve --run` and mlflow.pyfunc.load_model take it."""
        return f"models:/{self.registered_model}/{self.registered_version}" if self.registered_version else None

    @property
    def browse(self) -> str:
        """How to see the run: the server's page, or the `mlflow ui` command on the store."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        from shlex import quote

        return f"mlflow ui --backend-store-uri {quote(self.tracking_uri)}"


@dataclass(frozen=True)
class PromoteStep:
    run_dir: Path
    registered_model: str
    registered_version: str
    alias: str
    model_version: str  # the run folder's
    previous: str | None  # the version the alias named before
    tracking_uri: str

    @property
    def model_uri(self) -> str:
        return f"models:/{self.registered_model}@{self.alias}"


@dataclass(frozen=True)
class ScoreStep:
    mode: Literal["offline", "online"]
    as_of: dt.datetime
    model_version: str
    threshold: float
    table: pd.DataFrame = field(repr=False)
    csv: Path
    data_warning: str | None = None  # the data are not what the run was trained on (data_mismatch)

    @property
    def scored(self) -> int:
        return int(self.table["probability"].notna().sum())

    @property
    def above_threshold(self) -> int:
        return int(self.table["decision"].eq(True).sum())

    @property
    def not_scored(self) -> int:
        return int(self.table["probability"].isna().sum())


@dataclass(frozen=True)
class ValidateStep:
    report: Path
    html: Path
    validation: object = field(repr=False)  # model.validation.Validation
    recalibrated_run: Path | None


@dataclass(frozen=True)
class StaysStep:
    as_of: dt.datetime
    table: pd.DataFrame = field(repr=False)  # stay_id, intime, prediction_time, hours_in_icu, status, reason

    @property
    def in_population(self) -> int:
        return int(self.table["status"].eq("in_population").sum())


def default_mimic() -> Path:
    return Path(os.environ.get("SEPSIS_FUSION_MIMIC_DIR", paths.data_dir() / "synthetic"))


def synthesize(
    stays: int = SYNTH_STAYS,
    seed: int = 0,
    out: Path | None = None,
    density: str = "full",
    reuse: bool = False,
    live_share: float = LIVE_SHARE,
    site: str = "a",
) -> SynthStep:
    """Generate a synthetic MIMIC-IV; with `reuse`, keep a folder generated with the same arguments. `site`:
    the hospital, "a" (default) or "b" (another case mix, death rate, labs and notes; synth/site.py)."""
    from .synth.generate import generate, matches

    out = Path(out or paths.data_dir() / "synthetic")
    if reuse and matches(out, stays, seed, density, live_share, site):
        return SynthStep(out.resolve(), stays, seed, {}, reused=True)
    result = generate(stays, seed, out, density=density, live_share=live_share, site=site)
    return SynthStep(Path(result.out).resolve(), result.stays, seed, dict(result.rows), reused=False)


def build(
    mimic: Path | None = None,
    select: str | None = None,
    force: bool = False,
    engine: str = "duckdb",
    dbt_vars: dict | None = None,
) -> BuildStep:
    """`dbt build` of dbt_project/ over a MIMIC-IV folder into the data folder's warehouse (DuckDB) or a
    local Spark session (`engine="spark"`); the marts land in the feature folder either way. `dbt_vars`
    override dbt_project.yml's vars (the cohort's settings, docs/COHORT.md)."""
    from .build import dbt_build

    mimic = Path(mimic or default_mimic())
    nodes = dbt_build(mimic, select=select, force=force, engine=engine, dbt_vars=dbt_vars)
    return BuildStep(mimic.resolve(), paths.warehouse_path(), nodes)


def embed(
    encoder: str = DEFAULT_ENCODER,
    pooling: str = "mean",
    device: str = "auto",
    max_length: int = 512,
    stride: int = 64,
    batch_tokens: int | None = None,
    loaded=None,
    precision: str = "auto",
) -> EmbedStep:
    """Embed the notes of notes_to_embed (new or changed ones only) and write the note-sequence slots. Data
    without notes (the open demo) writes empty slots without loading the encoder (no hub, no download).
    `loaded`: the encoder, already loaded (run_chain loads it before the build when the data have notes).
    `precision`: the encoder's forward pass, 'auto' (bf16 where the CPU or GPU has it), 'fp32' or 'bf16'.
    `batch_tokens`: padded tokens per encoder batch; None: 2,048 on a CPU, 16,384 on a GPU."""
    from .embed.encoder import load_encoder
    from .embed.run import embed_feature_folder, notes_to_embed

    enc = None
    if notes_to_embed(paths.features_dir()):
        enc = loaded or load_encoder(
            encoder, pooling=pooling, device=device, max_length=max_length, precision=precision
        )
    result = embed_feature_folder(
        enc,
        paths.features_dir(),
        paths.data_dir() / "embedding_cache",
        stride=stride,
        batch_tokens=batch_tokens,
        slots=int(paths.dbt_var("note_sequence_length")),
    )
    return EmbedStep(
        encoder,
        result.notes,
        result.embedded,
        result.stays_with_notes,
        result.slots,
        result.seconds_encoding,
        paths.features_dir(),
        enc.precision if enc is not None else None,
    )


def apply_store(online_store: str = DEFAULT_ONLINE_STORE, offline_store: str | None = None) -> ApplyStep:
    """`feast apply`: register the definitions and create the online store's tables; `offline_store`
    ("duckdb" or "spark") chooses the offline store for this data folder from now on."""
    from .features.store import apply

    output = apply(online=online_store, offline=offline_store)
    return ApplyStep(online_store, output, paths.data_dir() / "feast")


def materialize_store(
    end: dt.datetime | None = None,
    start: dt.datetime | None = None,
    incremental: bool = False,
    online_store: str = DEFAULT_ONLINE_STORE,
) -> MaterializeStep:
    """`feast materialize`: each stay's latest features as of `end` (default: the data's present)."""
    from .features.store import materialize, open_store

    until = materialize(open_store(online=online_store), end=end, start=start, incremental=incremental)
    return MaterializeStep(online_store, until)


def materialize_on_schedule(
    every_s: float,
    end: Callable[[], dt.datetime | None],
    online_store: str,
    on_run: Callable[[MaterializeStep], None],
    on_error: Callable[[Exception], None],
    stop: threading.Event,
) -> int:
    """`materialize --incremental` every `every_s` seconds until `stop` is set (after the run in progress):
    each run starts where the previous one ended and ends at `end()`, read again each time ('now' moves on).
    A run that fails (the online store away) is reported and the next one starts where the last good one
    ended. A scoring service may read the online store meanwhile: Feast writes each stay's row of a view
    whole. Returns the number of runs that succeeded."""
    runs = 0
    while not stop.is_set():
        try:
            on_run(materialize_store(end(), None, True, online_store))
            runs += 1
        except Exception as exc:  # a schedule outlives one failed run; the next run repeats its range
            on_error(exc)
        stop.wait(every_s)
    return runs


def default_run_dir() -> Path:
    return paths.runs_dir() / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def train(
    config: Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    out: Path | None = None,
    reporter: Reporter = Silent(),
    reuse: bool = False,
    resume_hint: str | None = None,
    ts=None,
) -> TrainStep:
    """The study's protocol on the Feast training set, written to a run folder. With `reuse`, a run folder
    trained with this config on this training set is kept. Ctrl-C raises TrainingInterrupted."""
    from sepsis_fusion.model.config import load_config
    from sepsis_fusion.model.run_folder import finished_folds, partial_folder
    from sepsis_fusion.model.study import is_current, run_study

    from .features.training import training_set

    study = load_config(config or paths.config_path("demo"), list(overrides))
    ts = ts or training_set()
    run_dir = Path(out or default_run_dir())
    if reuse and is_current(run_dir, ts, study):
        return TrainStep(run_dir, None, reused=True)
    try:
        result = run_study(ts, study, run_dir, progress=reporter.line)
    except KeyboardInterrupt:
        work = partial_folder(run_dir)
        again = resume_hint or train_command(config, overrides, run_dir)
        raise TrainingInterrupted(run_dir, finished_folds(work), work, again) from None
    return TrainStep(result.run_dir, result.test_auroc, reused=False)


def train_command(config: Path | None, overrides, run_dir: Path) -> str:
    """The command that resumes an interrupted `train`."""
    from shlex import quote

    return " ".join(
        ["sepsis-fusion train"]
        + ([f"--config {quote(str(config))}"] if config else [])
        + [f"--set {quote(o)}" for o in overrides]
        + [f"--out {quote(str(run_dir))}"]
    )


def find_run(run: str | Path | None = None) -> Path:
    """A run by name under the data folder's runs/, by path, or (None) the newest (run_folder.find_run); or a
    registered model's version, models:/NAME@ALIAS or models:/NAME/VERSION, in MLflow's store (default
    default_tracking_uri()): its run folder, downloaded once into <data>/registry/NAME/VERSION/."""
    from sepsis_fusion.model.run_folder import find_run as find

    if run is not None and str(run).startswith("models:/"):
        from .tracking import resolve_model_uri

        return resolve_model_uri(str(run), default_tracking_uri(), paths.data_dir() / "registry")
    return find(paths.runs_dir(), run)


def evaluate(
    run: Path | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    reuse: bool = False,
    ts=None,
    risk_thresholds: tuple[float, ...] = RISK_THRESHOLDS,
    at_sensitivity: float = AT_SENSITIVITY,
) -> EvaluateStep:
    """Metrics with bootstrap intervals on the run's held-out test set, baselines, plots, report.md and
    report.html; every model also at `risk_thresholds` and at `at_sensitivity`. On data built from a synthetic
    MIMIC-IV, the generator's own probabilities are scored beside the model (the data's ceiling)."""
    from sepsis_fusion.model import run_folder
    from sepsis_fusion.model.evaluate import evaluate as evaluate_run
    from sepsis_fusion.model.report_html import write_html_report

    from .build import built_from
    from .features.training import training_set
    from .synth.truth import read_truth

    run = find_run(run)
    folder = run_folder.RunFolder(run)
    if reuse and folder.evaluated:
        html = folder.file(run_folder.REPORT_HTML)
        if not html.exists():  # a run evaluated before report.html existed: rendering it needs no re-evaluation
            write_html_report(folder.read_text(run_folder.REPORT), run)
        return EvaluateStep(folder.file(run_folder.REPORT), html, folder.file(run_folder.MODEL_CARD), reused=True)
    mimic = built_from()
    truth = read_truth(mimic) if mimic is not None else None
    report = evaluate_run(ts or training_set(), run, resamples, risk_thresholds, at_sensitivity, truth)
    return EvaluateStep(report, folder.file(run_folder.REPORT_HTML), folder.file(run_folder.MODEL_CARD), reused=False)


def default_tracking_uri() -> str:
    """MLflow's store: $MLFLOW_TRACKING_URI (MLflow's own variable), else a SQLite file under the data folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.data_dir() / 'mlflow' / 'mlflow.db'}"


def track_run(
    run: Path | None = None,
    experiment: str | None = None,
    tracking_uri: str | None = None,
    registered_model: str | None = None,
) -> TrackStep:
    """Log an evaluated run folder as one MLflow run (pipelines/tracking.py), replacing the one it had there,
    with the folder as the run's pyfunc model (serving/mlflow_model.py), registered as a version of
    `registered_model`. Default experiment: $MLFLOW_EXPERIMENT_NAME, else DEFAULT_EXPERIMENT; default
    registered model: $SEPSIS_FUSION_REGISTERED_MODEL, else tracking.DEFAULT_REGISTERED_MODEL."""
    from .tracking import log_run, registered_model_name, require_mlflow

    run = find_run(run)
    uri = tracking_uri or default_tracking_uri()
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    registered = registered_model_name(registered_model)
    require_mlflow()  # before the pyfunc model's module, which imports MLflow
    from .serving.mlflow_model import save_model

    t = log_run(run, uri, name, save_model, registered)
    return TrackStep(
        run,
        t.run_id,
        name,
        t.experiment_id,
        uri,
        t.model_version,
        t.settings,
        t.replaced,
        t.registered_model,
        t.registered_version,
    )


def promote(
    run: str | Path, alias: str, registered_model: str | None = None, tracking_uri: str | None = None
) -> PromoteStep:
    """Set `alias` (e.g. champion) of the registered model on the version that is this run folder
    (`track_run` registered it), so that models:/NAME@ALIAS serves it."""
    from .tracking import promote as set_alias
    from .tracking import registered_model_name

    run = find_run(run)
    uri = tracking_uri or default_tracking_uri()
    p = set_alias(run, alias, uri, registered_model_name(registered_model))
    return PromoteStep(run, p.registered_model, p.registered_version, p.alias, p.model_version, p.previous, uri)


def score(
    as_of: dt.datetime | None = None,
    online: bool = False,
    stays: list[int] | None = None,
    run: Path | str | None = None,
    out: Path | None = None,
    online_store: str = DEFAULT_ONLINE_STORE,
    scorer=None,
    explain: bool = False,
    allow_outside: bool = False,
) -> ScoreStep:
    """Score stays with only what was known at `as_of`: offline (point-in-time historical retrieval; needs
    `as_of`) or online (the online store; default `as_of` the time it is materialized to). Default stays:
    those in the intended population at that time. A stay outside it gets its status and the reason, not a
    probability, unless `allow_outside`. With `explain`, each score names the EXPLAIN_TOP inputs that
    contributed most (column top_inputs). The scores are written as CSV (default data/scores/)."""
    from .features.store import online_store_time, open_store, store_data_dir
    from .serving.scorer import Scorer

    if as_of is None and not online:
        raise StudyError("offline scoring needs a time to score as of (--as-of), or use --online")
    if scorer is None:
        scorer = Scorer(find_run(run), open_store(online=online_store))
    when = as_of or online_store_time(scorer.store)
    if stays:
        ids = list(stays)
        statuses = scorer.population.status(ids, when)
        if all(s.status == "unknown_stay" for s in statuses):
            raise UnknownStays(
                f"no such ICU stay in the data: {', '.join(str(i) for i in ids[:20])}"
                f"{' ...' if len(ids) > 20 else ''} (`sepsis-fusion stays --as-of {when:%Y-%m-%dT%H:%M}` lists "
                "the stays in the ICU then)"
            )
    else:
        present = scorer.population.in_icu(when)
        ids = present.loc[present["status"] == "in_population", "stay_id"].tolist()
        if not ids:
            raise StudyError(
                f"no stay in the ICU at {when} is in the intended population ({len(present)} in the ICU): pass "
                f"--stays, another --as-of, or see `sepsis-fusion stays --as-of {when:%Y-%m-%dT%H:%M}`"
            )
    mode = "online" if online else "offline"
    top = EXPLAIN_TOP if explain else 0
    scores = scorer.online(ids, when, top, allow_outside) if online else scorer.offline(ids, when, top, allow_outside)
    table = scorer.frame(scores)
    out = Path(out or paths.data_dir() / "scores" / f"{mode}-{when:%Y%m%dT%H%M%S}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    warning = data_mismatch(scorer.run_dir, store_data_dir(scorer.store))
    return ScoreStep(mode, when, scorer.version, scorer.threshold, table, out, warning)


def data_mismatch(run: Path, data: Path | None = None) -> str | None:
    """Why the data folder is not what the run was trained on (the cohort's stays and prediction times
    differ from the training data's, data.json's `cohort_digest`); None when they match, or when the run
    does not record them (runs trained before 0.3)."""
    from sepsis_fusion.model.run_folder import DATA, RunFolder, cohort_digest

    from .features.training import read_cohort

    folder = RunFolder(run)
    trained = folder.read_json(DATA).get("cohort_digest") if folder.has(DATA) else None
    if trained is None:
        return None
    data = Path(data or paths.data_dir())
    try:
        cohort = read_cohort(data, outcome_known=True)
    except SepsisFusionError:
        return None
    if cohort_digest(cohort["stay_id"], cohort["prediction_time"]) == trained:
        return None
    return (
        f"the run {folder.path.name} was not trained on the data in {data} (its cohort's stays and prediction times "
        f"differ): before using it on other data, validate it there: sepsis-fusion validate --run {folder.path} "
        "(add --recalibrate to fit its calibration to these data)"
    )


def validate(
    run: Path | str | None = None,
    out: Path | None = None,
    recalibrate: bool = False,
    recalibrated_run: Path | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    ts=None,
) -> ValidateStep:
    """External validation of a run on the current data folder (model/validation.py): the report into `out`
    (default <data>/validations/<run>/); with `recalibrate`, a new run version with a map fitted on these
    data (default <data>/runs/<run>-recalibrated)."""
    from sepsis_fusion.model.validation import validate as validate_run

    from .features.training import training_set

    run = find_run(run)
    data = paths.data_dir()
    out = Path(out or data / "validations" / run.name)
    target = None
    if recalibrate:
        target = Path(recalibrated_run or paths.runs_dir() / f"{run.name}-recalibrated")
    result = validate_run(ts or training_set(data), run, out, data, resamples, target)
    return ValidateStep(out / "report.md", out / "report.html", result, target)


def meds_dir(run: Path) -> Path:
    """Where a run's MEDS export goes by default: <data>/meds/<run>/."""
    return paths.data_dir() / "meds" / Path(run).name


def export_meds(run: Path | str | None = None, out: Path | None = None, progress=None):
    """The data folder's cohort as a MEDS dataset split as `run` was (pipelines/meds/export.py), with the
    task's labels and ACES config; default `out`: <data>/meds/<run>/."""
    from .meds.export import export_meds as export

    run = find_run(run)
    mismatch = data_mismatch(run)
    if mismatch:
        raise SepsisFusionError(f"export meds: {mismatch}")
    return export(run, Path(out or meds_dir(run)), paths.data_dir(), progress=progress)


@dataclass
class MedsTabStep:
    export: object  # meds.export.MedsExport
    medstab: object  # meds.medstab.MedsTab
    evaluated: EvaluateStep
    metrics: dict  # the report's figures for the baseline: auroc, auprc, ... each {value, low, high}
    difference: dict  # the fusion model minus the baseline, paired (auroc, auprc: {value, low, high, ...})


def medstab_baseline(
    run: Path | str | None = None,
    trials: int | None = None,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    say=print,
) -> MedsTabStep:
    """MEDS-Tab's XGBoost on the run's MEDS export (exported anew into <data>/meds/<run>/; MEDS-Tab's files
    in <data>/meds-tab/<run>/), its held-out predictions added to the run as a peer baseline, and the run
    evaluated again so that its report compares the fusion model with it."""
    from sepsis_fusion.model.run_folder import METRICS, RunFolder

    from .meds import medstab
    from .meds.export import subject_splits

    run = find_run(run)
    exported = export_meds(run)
    result = medstab.run_medstab(
        exported.root, paths.data_dir() / "meds-tab" / run.name, trials or medstab.TRIALS, seed, say=say
    )
    stays = subject_splits(run).set_index("subject_id")["stay_id"]
    held_out = result.predictions.assign(stay_id=lambda f: stays.loc[f["subject_id"]].to_numpy())
    folder = RunFolder(run)
    folder.write_external_baseline(
        medstab.NAME,
        held_out.set_index("stay_id")["probability"],
        medstab.summary(result, trials or medstab.TRIALS),
    )
    evaluated = evaluate(run, resamples)
    metrics = folder.read_json(METRICS)
    return MedsTabStep(
        exported,
        result,
        evaluated,
        metrics["models"][medstab.NAME],
        metrics["paired_differences"][medstab.NAME],
    )


class UnknownStays(SepsisFusionError):
    """Every stay asked for is unknown to the data."""


def live_stays(as_of: dt.datetime | None = None, data: Path | None = None) -> StaysStep:
    """The stays in the ICU at `as_of` (default: the online store's time, else the data's present), each with
    its T and its status in the intended population."""
    from .features.population import Population
    from .features.store import data_present, materialized_until, open_store

    population = Population(data)
    if as_of is None:
        try:
            as_of = materialized_until(open_store(data))
        except SepsisFusionError:
            as_of = None
        as_of = as_of or population.extract_time() or data_present(data)
    return StaysStep(as_of, population.in_icu(as_of))


def run_chain(
    mimic: Path,
    encoder: str,
    config: Path,
    run_dir: Path,
    reporter: Reporter = Silent(),
    steps: list[StepResult] | None = None,
    track: bool = False,
    experiment: str | None = None,
) -> list[StepResult]:
    """build -> embed -> Feast apply and materialize -> train -> evaluate -> (with `track`) log the run to
    MLflow -> score offline and online. Each step is reused when its inputs are unchanged; training is
    skipped, with the reason, when the cohort cannot support it. Returns the summary, one StepResult per
    step; a failure raises ChainFailed with the summary so far, the failed step last."""
    steps = list(steps or [])
    if track:  # before the chain's minutes of work, not after them
        from .tracking import require_mlflow

        require_mlflow()

    current = ["dbt build"]

    def start(title: str, step: str) -> None:
        current[0] = step
        reporter.step(f"{len(steps) + 1}. {title}")

    try:
        return _chain(mimic, encoder, config, run_dir, reporter, steps, track, experiment, start)
    except SepsisFusionError as exc:
        if isinstance(exc, TrainingInterrupted):
            raise
        raise ChainFailed(str(exc), steps + [StepResult(current[0], "failed", reason=str(exc))]) from exc


def _chain(mimic, encoder, config, run_dir, reporter, steps, track, experiment, start) -> list[StepResult]:
    from sepsis_fusion.model.errors import TooFewStays

    from .features.training import training_set

    loaded = None
    if has_notes(mimic):  # an encoder that cannot be loaded fails here, before minutes of build
        start(f"note encoder ({encoder})", "note embeddings")
        from .embed.encoder import load_encoder

        loaded = load_encoder(encoder)
    start("dbt build", "dbt build")
    built = build(mimic)
    steps.append(StepResult("dbt build", "reused" if built.reused else "done", built))
    start(f"note embeddings ({encoder})", "note embeddings")
    notes = embed(encoder, loaded=loaded)
    steps.append(StepResult("note embeddings", "done" if notes.notes else "degraded", notes))
    start("Feast: apply and materialize (SQLite online store)", "Feast")
    applied = apply_store()
    materialize_store()
    steps.append(StepResult("Feast", "done", applied))
    start(f"train ({config.name})", "train")
    ts = training_set()
    try:
        trained = train(config, out=run_dir, reporter=reporter, reuse=True, resume_hint="the same command", ts=ts)
    except TooFewStays as exc:
        reporter.line(f"training skipped: {exc}")
        return (
            steps
            + [StepResult("train", "skipped", reason=str(exc))]
            + [
                StepResult(name, "skipped", reason="no model was trained")
                for name in ("evaluate", *(("track",) if track else ()), "score")
            ]
        )
    if trained.reused:
        reporter.line(f"reusing {run_dir}: trained with this config on this training set")
    steps.append(StepResult("train", "reused" if trained.reused else "done", trained))
    start("evaluate on the held-out test set", "evaluate")
    reporter.line(
        f"metrics with {DEFAULT_RESAMPLES:,} bootstrap resamples, baselines (logistic regression, "
        "gradient boosting, SOFA and OASIS at T), plots, report and model card"
    )
    evaluated = evaluate(run_dir, reuse=trained.reused, ts=ts)
    steps.append(StepResult("evaluate", "reused" if evaluated.reused else "done", evaluated))
    if track:
        start("track the run in MLflow", "track")
        tracked = track_run(run_dir, experiment)
        steps.append(StepResult("track", "done", tracked))
    start("score offline (as of a past time) and online (as of the online store's time)", "score")
    steps.append(StepResult("score", "done", _score_both(run_dir, ts.cohort, reporter)))
    return steps


def has_notes(mimic: Path) -> bool:
    """Whether a MIMIC-IV folder has MIMIC-IV-Note's reports (note/radiology or note/discharge, any format)."""
    folder = Path(mimic) / "note"
    return folder.is_dir() and any(p.name.startswith(("radiology", "discharge")) for p in folder.iterdir())


def _score_both(run_dir: Path, cohort: pd.DataFrame, reporter: Reporter) -> list[ScoreStep | NobodyToScore]:
    """Score the stays in the intended population at the median prediction time (offline) and at the online
    store's time (online)."""
    from .features.store import online_store_time, open_store
    from .serving.scorer import Scorer

    scorer = Scorer(run_dir, open_store())
    cohort = cohort.sort_values("prediction_time")
    past = cohort["prediction_time"].iloc[len(cohort) // 2].to_pydatetime()
    done = []
    for online, when in ((False, past), (True, online_store_time(scorer.store))):
        mode = "online" if online else "offline"
        present = scorer.population.in_icu(when)
        stays = present.loc[present["status"] == "in_population", "stay_id"].tolist()
        if not stays:
            done.append(NobodyToScore(mode, when))
            continue
        done.append(score(when, online=online, stays=stays, scorer=scorer))
        reporter.line(f"{mode} as of {when}: {done[-1].scored} stays -> {done[-1].csv}")
        if online:  # the live ward, as a deployer would see it
            table = done[-1].table.merge(present[["stay_id", "prediction_time"]], on="stay_id")
            for row in table.sort_values("probability", ascending=False).itertuples():
                reporter.line(
                    f"  stay {row.stay_id}  T {row.prediction_time:%Y-%m-%d %H:%M}  risk {row.probability:.3f}  "
                    f"{'above' if row.decision else 'below'} the threshold {scorer.threshold:.3f}"
                )
    return done


def demo(
    stays: int = DEMO_STAYS,
    seed: int = 0,
    out: Path | None = None,
    reporter: Reporter = Silent(),
    track: bool = False,
    experiment: str | None = None,
) -> list[StepResult]:
    """The main job on synthetic data: generate (or reuse) a synthetic MIMIC-IV, then run_chain with the
    packaged MiniLM encoder and the demo config (with `track`, the run logged to MLflow)."""
    reporter.step("1. synthetic MIMIC-IV")
    synth = synthesize(stays, seed, out, reuse=True)
    if synth.reused:
        reporter.line(f"reusing {synth.out} ({stays:,} stays, seed {seed})")
    first = StepResult("synthetic MIMIC-IV", "reused" if synth.reused else "done", synth)
    return run_chain(
        synth.out,
        DEMO_ENCODER,
        paths.config_path("demo"),
        paths.runs_dir() / "demo",
        reporter,
        steps=[first],
        track=track,
        experiment=experiment,
    )


def pipeline(
    mimic: Path,
    encoder: str = DEFAULT_ENCODER,
    config: Path | None = None,
    run_name: str | None = None,
    reporter: Reporter = Silent(),
    track: bool = False,
    experiment: str | None = None,
) -> list[StepResult]:
    """The whole chain on a MIMIC-IV folder, with the study's full grid unless told otherwise."""
    config = Path(config or paths.config_path("study"))
    run_dir = paths.runs_dir() / (run_name or config.stem)
    return run_chain(Path(mimic), encoder, config, run_dir, reporter, track=track, experiment=experiment)
