"""What an operator sees of the scoring service: Prometheus metrics, request ids, and logs (text or JSON lines).

Every request gets an id: the caller's `X-Request-ID` when it is a short printable token, else a new one;
it is echoed in the response's `X-Request-ID` header and in every log line written while the request is
served. Logs carry ids, numbers and feature names only, never note text.

With several worker processes, `sepsis-fusion serve --workers N` points prometheus_client's multiprocess
mode at a fresh folder (PROMETHEUS_MULTIPROC_DIR) so that /metrics, whichever worker answers it, counts
the requests of all of them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import get_args

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client import multiprocess as prometheus_multiprocess

from .scorer import ScoreStatus

LOGGER = "sepsis_fusion.service"
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Latency buckets (seconds) around the service's range: a few ms for one stay, up to seconds for explained batches
BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBABILITY_BUCKETS = tuple(round(0.05 * k, 2) for k in range(1, 21))  # served probabilities, 0.05 wide
DECISIONS = ("positive", "negative")
STATUSES = get_args(ScoreStatus)
MODALITIES = ("static", "sequence", "notes")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is a safe token (it goes into logs), else a fresh one."""
    if header and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self, model_version: str, online_store: str):
        self.registry = CollectorRegistry()
        # prometheus_client keeps values in files when PROMETHEUS_MULTIPROC_DIR was set at its import (by
        # `serve --workers N`, or by Feast's import, which sets it for its own server): then read them there
        self.multiprocess = values.ValueClass is not values.MutexValue
        r = self.registry
        self.requests = Counter(
            "sepsis_fusion_requests", "HTTP requests answered, by path and status", ["path", "status"], registry=r
        )
        self.latency = Histogram(
            "sepsis_fusion_request_duration_seconds",
            "Time to answer a request, by path",
            ["path"],
            buckets=BUCKETS,
            registry=r,
        )
        self.stays = Counter(
            "sepsis_fusion_stays_scored", "Stays scored (a batch counts each of its stays)", registry=r
        )
        self.in_flight = Gauge(
            "sepsis_fusion_requests_in_flight", "Requests being answered", registry=r, multiprocess_mode="livesum"
        )
        self.info = Gauge(
            "sepsis_fusion_model_info",
            "The model served (value 1): run folder and digest, and the online store",
            ["model_version", "online_store"],
            registry=r,
            multiprocess_mode="max",
        )
        self.info.labels(model_version, online_store).set(1)
        self.materialized = Gauge(
            "sepsis_fusion_online_store_materialized_until_seconds",
            "Where the online store is filled to (Unix time of Feast's latest materialization end)",
            registry=r,
            multiprocess_mode="max",
        )
        self.staleness = Gauge(
            "sepsis_fusion_online_store_staleness_seconds",
            "The service clock's time minus where the online store is filled to (NaN while the clock is before it)",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        # what is served (monitoring.py): probabilities, decisions, statuses, missing inputs, input shift
        self.probability = Histogram(
            "sepsis_fusion_probability", "Calibrated probabilities served", buckets=PROBABILITY_BUCKETS, registry=r
        )
        self.decisions = Counter(
            "sepsis_fusion_decisions", "Decisions served at the model's threshold, by class", ["decision"], registry=r
        )
        self.statuses = Counter(
            "sepsis_fusion_stays_served",
            "Stays answered, by status in the intended population ('scored' or why not)",
            ["status"],
            registry=r,
        )
        self.missing = Counter(
            "sepsis_fusion_missing_inputs",
            "Inputs missing in the stays scored, by modality (static features, panel features, notes)",
            ["modality"],
            registry=r,
        )
        self.input_psi = Gauge(
            "sepsis_fusion_input_psi",
            "Population stability index of a monitored input over the last served stays against the training "
            "reference (<0.1 stable, 0.1-0.25 moderate, >0.25 major shift)",
            ["input"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.probability_psi = Gauge(
            "sepsis_fusion_probability_psi",
            "Population stability index of the probabilities served over the last served stays against the "
            "training part's out-of-fold probabilities",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.psi_stays = Gauge(
            "sepsis_fusion_psi_stays",
            "Stays scored that the PSI gauges are computed over (at most --monitor-stays)",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        for decision in DECISIONS:
            self.decisions.labels(decision)
        for status in STATUSES:
            self.statuses.labels(status)
        for modality in MODALITIES:
            self.missing.labels(modality)

    def observe_store(self, as_of: datetime, materialized_until: datetime) -> float:
        """Sets the gauges; returns the staleness in seconds, negative when the clock is before the store's time
        (then the staleness gauge is NaN: /readyz says not ready)."""
        staleness = (as_of - materialized_until).total_seconds()
        self.materialized.set(materialized_until.replace(tzinfo=UTC).timestamp())
        self.staleness.set(staleness if staleness >= 0 else float("nan"))
        return staleness

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            registry.register(_Prefixed(prometheus_multiprocess.MultiProcessCollector(None), "sepsis_fusion_"))
            return generate_latest(registry)
        return generate_latest(self.registry)


class _Prefixed:
    """The metric families of a collector whose names start with `prefix` (the folder holds Feast's too)."""

    def __init__(self, collector, prefix: str):
        self.collector, self.prefix = collector, prefix

    def collect(self):
        return (family for family in self.collector.collect() if family.name.startswith(self.prefix))


def request_middleware(metrics: Metrics, logger: logging.Logger) -> Callable:
    """HTTP middleware: the request id, one log line per request, and the request metrics."""

    async def middleware(request, call_next: Callable[..., Awaitable]):
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(request_id)
        request.state.request_id = request_id
        start = time.perf_counter()
        status = 500
        metrics.in_flight.inc()
        try:
            try:
                response = await call_next(request)
            except Exception:  # logged once, here, with the request id; the caller gets the id, not the trace
                logger.exception("%s %s failed", request.method, request.url.path)
                response = JSONResponse(
                    {"detail": "internal error: see the service log for this request id", "request_id": request_id},
                    500,
                )
            status = response.status_code
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            route = request.scope.get("route")
            path = route.path if route is not None else "unmatched"  # unknown paths must not grow the label set
            metrics.requests.labels(path, str(status)).inc()
            metrics.latency.labels(path).observe(elapsed)
            shown = request.url.path.encode("unicode_escape").decode("ascii")  # no line breaks from a caller's path
            logger.info(
                "%s %s %d %.1f ms",
                request.method,
                shown,
                status,
                elapsed * 1000,
                extra={"method": request.method, "path": shown, "status": status, "ms": elapsed * 1000},
            )
            request_id_var.reset(token)

    return middleware


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and the record's extra fields."""

    FIELDS = ("method", "path", "status", "ms", "stays")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = request_id_var.get()
        return f"{line} [request {request_id}]" if request_id else line


def log_config(log_format: str, level: str) -> dict:
    """logging.config.dictConfig for uvicorn and the service: one handler on stderr in the chosen format."""
    if log_format not in ("text", "json"):
        raise ValueError(f"unknown log format {log_format!r}: use text or json")
    formatter = f"{__name__}.{'JsonFormatter' if log_format == 'json' else 'TextFormatter'}"
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["main"], "level": level.upper(), "propagate": False} for name in (LOGGER, "uvicorn")}
    loggers["uvicorn.access"] = {"handlers": [], "level": "WARNING", "propagate": False}  # the service logs requests
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": formatter}},
        "handlers": {"main": handler},
        "loggers": loggers,
    }


def configure_logging(log_format: str, level: str) -> None:
    import logging.config

    logging.config.dictConfig(log_config(log_format, level))
    sys.stderr.reconfigure(line_buffering=True)
