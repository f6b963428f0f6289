"""`sepsis-fusion serve`: the trained model behind HTTP, on the Feast online store.

POST /score with {"stay_id": 123} or {"stay_ids": [123, 456]} answers each stay's status in the intended
population at the service's clock and, for the stays in it, the probability, the decision at the model's
threshold and the inputs that were missing (with `?explain=true`, also the inputs that contributed most),
with the model version. Other stays get their status and the reason; a request whose stays are all unknown
to the data gets 404 naming them; malformed requests 422 naming the field; an online store that
cannot be read 503, and the service answers again when it is back. GET /livez says the process answers,
GET /readyz whether it can score (model loaded, online store reachable, features not stale), GET /metrics
gives Prometheus metrics, GET /health what is served. Answers and logs carry ids, numbers and feature
names only: the model reads note embeddings, never note text.

Scoring runs on one thread beside the event loop (Feast's SQLite connection belongs to the thread that
opened it), so /livez, /metrics and /readyz answer while a stay is scored; requests (refusals of unknown
stays included, which need a read) are scored one at a time per process: a request is a few milliseconds
of CPU. Worker processes (`--workers`, about one per
core) scale it out. On SIGTERM or Ctrl-C the server stops accepting connections and finishes the requests
in flight (up to --shutdown-timeout seconds) before it exits.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import faulthandler
import logging
import math
import os
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sepsis_fusion.model.errors import SepsisFusionError
from sepsis_fusion.model.explain import TOP_INPUTS as EXPLAIN_TOP

from .. import utc
from ..features.store import FeatureStoreError, materialized_until, require_materialized, store_data_dir
from .access import access_middleware, load_api_keys
from .monitoring import Monitor
from .observability import LOGGER, Metrics, configure_logging, log_config, request_middleware
from .schemas import MAX_BATCH, BatchScore, Health, Problem, Readiness, ScoreRequest, SingleScore
from .scorer import Scorer
from .settings import ServiceSettings

MAX_EXPLAINED = 100  # stays per request with explain=true
PROBE_TIMEOUT_S = 2.0  # /readyz: an online store slower than this to answer one read is not ready
RECENT_READ_S = 5.0  # /readyz: a read answered this recently stands for the probe
ERRORS = {
    401: {"model": Problem},
    404: {"model": Problem},
    411: {"model": Problem},
    413: {"model": Problem},
    422: {"model": Problem},
    503: {"model": Problem},
}

__all__ = ["MAX_BATCH", "ServiceSettings", "create_app", "run_service"]


def online_store_errors() -> tuple[type[BaseException], ...]:
    """What reading an unreachable online store raises: redis-py's connection errors, SQLite's, the OS's."""
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        import redis.exceptions

        errors += (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)
    except ImportError:
        pass
    return errors


class OnlineStoreUnavailable(Exception):
    pass


def create_app(
    scorer: Scorer, fill: Callable[[], datetime | None], clock: Callable[[], datetime], settings: ServiceSettings
) -> FastAPI:
    """The service around one scorer; `fill` says where its online store is filled to, `clock` gives the time
    each request is scored as of."""
    logger = logging.getLogger(LOGGER)
    store_type = scorer.store.config.online_store.type
    metrics = Metrics(scorer.version, store_type)
    monitor = Monitor(scorer, metrics, store_data_dir(scorer.store), settings.monitor_stays, settings.monitor_inputs)
    store_errors = online_store_errors()
    scoring = ThreadPoolExecutor(1, thread_name_prefix="scoring")
    last_read = {"ok_at": float("-inf")}  # when the online store last answered a read (monotonic)

    async def on_scoring_thread(fn: Callable, *args):
        """Run on the scoring thread (with the request's id for its logs); an online store that cannot be read
        becomes OnlineStoreUnavailable."""

        def call():
            try:
                result = fn(*args)
            except store_errors as exc:
                last_read["ok_at"] = float("-inf")
                raise OnlineStoreUnavailable(f"the {store_type} online store cannot be read ({exc})") from exc
            if fn in (scorer.online_features, score_now):
                last_read["ok_at"] = time.monotonic()
            return result

        return await asyncio.wrap_future(scoring.submit(contextvars.copy_context().run, call))

    def now() -> datetime:
        try:
            return clock()
        except FeatureStoreError as exc:
            raise HTTPException(503, str(exc)) from None

    def score_now(ids: list[int], explain: int) -> tuple[datetime, list]:
        """A request's whole scoring, on the scoring thread: the clock, each stay's status in the intended
        population, the online store's features of those to score, the scores. A request none of whose stays
        the data knows is refused (404) before any read."""
        as_of = now()
        statuses = scorer.population.status(ids, as_of)
        unknown = [s.stay_id for s in statuses if s.status == "unknown_stay"]
        if len(unknown) == len(ids):
            raise HTTPException(
                404,
                f"unknown stays {unknown[:20]}{' ...' if len(unknown) > 20 else ''}: no such ICU stay in the data "
                "(`sepsis-fusion stays` lists the stays in the ICU)",
            )
        seen: list = []
        scores = scorer.online(ids, as_of, explain, settings.allow_outside_population, observe=seen.append)
        return as_of, scores, monitor.inputs(seen[0] if seen else None)

    def open_connection() -> None:
        try:
            scorer.online_features([0])
        except store_errors as exc:
            logger.warning("the %s online store cannot be read yet (%s): not ready until it answers", store_type, exc)

    # the first read opens the online store's connection, on the thread that will use it
    scoring.submit(open_connection).result()
    require_materialized(fill())  # a store that was never materialized is refused here, before the server starts

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        logger.info("serving %s on the %s online store (clock %s)", scorer.version, store_type, settings.clock)
        logger.info("monitoring: served stays logged to %s; PSI of %s", monitor.log.folder, monitor.chosen)
        yield
        logger.info("stopping: requests in flight are done")
        await asyncio.to_thread(scoring.shutdown, wait=True, cancel_futures=True)

    app = FastAPI(
        title="Sepsis Fusion scoring service",
        version=scorer.version,
        description=__doc__.split("\n\n")[1],
        lifespan=lifespan,
    )
    # the access check inside the request middleware, so that a refusal is logged and counted with its id
    keys = load_api_keys(settings.api_key_file)
    app.middleware("http")(access_middleware(keys, settings.max_body_bytes, logger))
    app.middleware("http")(request_middleware(metrics, logger))
    base = {"model_version": scorer.version, "threshold": scorer.threshold}

    def problem(request: Request, status: int, detail, headers: dict | None = None) -> JSONResponse:
        body = {"detail": detail, "request_id": getattr(request.state, "request_id", None)}
        return JSONResponse(jsonable_encoder(body), status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(request, 422, _json_safe(exc.errors()))

    @app.exception_handler(OnlineStoreUnavailable)
    async def store_down(request: Request, exc: OnlineStoreUnavailable) -> JSONResponse:
        logger.warning("%s", exc)
        return problem(request, 503, f"{exc}: scoring resumes when it is back", {"Retry-After": "5"})

    @app.get("/livez", summary="The process answers (restart it when this fails)")
    async def livez() -> dict:
        return {"status": "alive"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> JSONResponse:
        """Ready to score: the model is loaded, the online store answers a read within 2 s, and the service's
        clock is at or after the time the online store is filled to, by at most --max-staleness. Send traffic
        only while this is 200."""
        checks = {"model": "ok"}  # the app exists only once its run folder has loaded
        as_of = staleness = None
        try:
            # a read answered in the last seconds proves the store: under load a probe would wait behind it
            if time.monotonic() - last_read["ok_at"] > RECENT_READ_S:
                await asyncio.wait_for(on_scoring_thread(scorer.online_features, [0]), PROBE_TIMEOUT_S)
            checks["online_store"] = "ok"
        except OnlineStoreUnavailable as exc:
            checks["online_store"] = str(exc)
        except TimeoutError:
            checks["online_store"] = f"no answer to one read within {PROBE_TIMEOUT_S:.0f} s"
        try:
            until = require_materialized(await asyncio.to_thread(fill))
            as_of = await asyncio.to_thread(clock)
            staleness = metrics.observe_store(as_of, until)
            if staleness < 0:
                checks["freshness"] = (
                    f"the clock ({as_of.isoformat()}) is before the time the online store is filled to "
                    f"({until.isoformat()}): it would serve rows from after the clock's time; materialize to "
                    "the clock's time or use --clock materialized"
                )
                staleness = None
            elif staleness > settings.max_staleness_s:
                checks["freshness"] = (
                    f"the features end {staleness:.0f} s before the clock (more than --max-staleness "
                    f"{settings.max_staleness_s:.0f})"
                )
            else:
                checks["freshness"] = "ok"
        except FeatureStoreError as exc:
            checks["freshness"] = str(exc)
        ready = all(v == "ok" for v in checks.values())
        body = Readiness(
            status="ready" if ready else "not ready", checks=checks, as_of=as_of, staleness_seconds=staleness
        )
        return JSONResponse(jsonable_encoder(body), 200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        try:
            as_of = await asyncio.to_thread(clock)
            until = await asyncio.to_thread(fill)
            if until is not None:
                metrics.observe_store(as_of, until)
        except (OnlineStoreUnavailable, FeatureStoreError):
            pass  # the gauges keep their last values; /readyz says what is wrong
        await asyncio.to_thread(monitor.refresh)  # the PSI gauges, from the served-score log
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/health", response_model=Health, responses=ERRORS)
    async def health() -> dict:
        return {
            "status": "ok",
            **base,
            "feature_service": scorer.service,
            "online_store": store_type,
            "clock": settings.clock,
            "as_of": await on_scoring_thread(now),
        }

    @app.post("/score", response_model=SingleScore | BatchScore, response_model_exclude_none=True, responses=ERRORS)
    async def score(
        request: ScoreRequest,
        explain: bool = Query(False, description=f"name the {EXPLAIN_TOP} inputs that contributed most to each score"),
    ) -> dict:
        """Each stay's status in the intended population as of the service's clock and, for those in it, the
        calibrated probability from the online store's features. A stay outside the population (before its T,
        out of the ICU, not an adult's first recognised Sepsis-3 stay), not admitted by then, unknown to the
        data, or with no static input served gets its status and the reason instead of a probability. A
        single stay unknown to the data, or a batch of only such stays, is 404."""
        ids = request.ids
        if explain and len(ids) > MAX_EXPLAINED:
            # an explanation is ~32 forward and backward passes per fold model and stay
            raise HTTPException(422, f"explain=true takes at most {MAX_EXPLAINED} stays per request, got {len(ids)}")
        as_of, scores, inputs = await on_scoring_thread(score_now, ids, EXPLAIN_TOP if explain else 0)
        metrics.stays.inc(sum(s.status == "scored" for s in scores))
        await asyncio.to_thread(monitor.record, scores, as_of, inputs)
        answers = [
            {
                "stay_id": s.stay_id,
                "status": s.status,
                "in_population": s.in_population,
                "reason": s.reason,
                **(
                    {
                        "probability": s.probability,
                        "decision": s.decision,
                        "missing": s.missing,
                        **({"explanation": s.explanation} if explain else {}),
                    }
                    if s.status == "scored"
                    else {}
                ),
            }
            for s in scores
        ]
        common = {**base, "as_of": as_of}
        return {**answers[0], **common} if request.stay_id is not None else {**common, "scores": answers}

    return app


def run_service(
    run: Path, host: str, port: int, workers: int, settings: ServiceSettings, announce: Callable[[str], None] = print
) -> None:
    """Serve a run folder with uvicorn until stopped. The app is built here first, so a bad run folder or
    store fails before the server starts, with its message; more workers each build their own."""
    import uvicorn

    check_port(host, port)
    os.environ.update(settings.to_env())
    # The workers' metric files go to a folder of this service alone: an inherited PROMETHEUS_MULTIPROC_DIR
    # (Feast's import sets one for its own server) would mix in the counts of every process sharing it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sepsis-fusion-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    app = app_from_env()
    announce(
        f"serving {run} on http://{host}:{port} with {workers} worker(s) "
        "(POST /score; GET /readyz, /livez, /metrics, /health; docs at /docs)"
    )
    target = app if workers == 1 else "sepsis_fusion.pipelines.serving.service:app_from_env"
    uvicorn.run(
        target,
        factory=workers > 1,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=log_config(settings.log_format, settings.log_level),
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )


class PortInUse(SepsisFusionError):
    """The service's port cannot be bound."""


def check_port(host: str, port: int) -> None:
    """Refuse a port another process holds before any work (uvicorn would exit 3, the status of a skipped
    chain step, after building the app)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"cannot serve on {host}:{port}: {exc.strerror or exc} (another process holds port {port}? "
                "stop it or pass --port)"
            ) from None


def app_from_env() -> FastAPI:
    """The app as `sepsis-fusion serve --workers N` starts it in each worker process (uvicorn factory),
    from the settings run_service put in the environment (SEPSIS_FUSION_SERVE_*)."""
    import torch

    from ..features.store import open_store

    settings = ServiceSettings()  # from SEPSIS_FUSION_SERVE_*, validated
    configure_logging(settings.log_format, settings.log_level)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` writes every thread's stack to the log
    torch.set_num_threads(1)  # one small forward pass per request: threads cost more than they give
    scorer = Scorer(Path(settings.run), open_store(online=settings.online_store))
    fill = FillLevel(scorer, settings.registry_refresh_s)
    return create_app(scorer, fill, service_clock(fill, settings.clock), settings)


class FillLevel:
    """Where the online store is filled to (Feast's registry), re-read at most every `refresh_s` seconds:
    a materialization run by another process shows here within that time."""

    def __init__(self, scorer: Scorer, refresh_s: float):
        self.scorer, self.refresh_s = scorer, refresh_s
        self._at, self._value = float("-inf"), None
        self._lock = threading.Lock()  # the scoring thread and /readyz's and /metrics' threads ask

    def __call__(self) -> datetime | None:
        with self._lock:
            return self._read()

    def _read(self) -> datetime | None:
        if time.monotonic() - self._at > self.refresh_s:
            try:
                self.scorer.store.refresh_registry()
                value = materialized_until(self.scorer.store, self.scorer.service)
            except Exception as exc:  # Feast rewrites the registry file in place: a read mid-write is partial
                if self._at == float("-inf"):
                    raise
                logging.getLogger(LOGGER).warning("Feast's registry could not be re-read (%s): kept the last one", exc)
                return self._value
            self._at, self._value = time.monotonic(), value
        return self._value


def service_clock(fill: FillLevel, clock: str) -> Callable[[], datetime]:
    """'materialized': the online store's own present (for replaying MIMIC-IV, whose dates lie in the
    future); 'now': the wall clock (live data); else a fixed ISO time."""
    if clock == "materialized":
        return lambda: require_materialized(fill())
    if clock == "now":
        return utc.now
    fixed = utc.parse(clock)
    return lambda: fixed


def _json_safe(value):
    """Validation errors echo the input; JSON has no NaN or infinity (Python's parser reads them): as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
