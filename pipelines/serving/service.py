"""`sepsis-fusion serve`: the trained model behind HTTP, on the Feast online store.

POST /score with {"stay_id": 123} or {"stay_ids": [123, 456]} answers each stay's probability, the
decision at the model's threshold, the model version and the inputs that were missing (with
`?explain=true`, also the inputs that contributed most: name, modality, contribution in logit units, and
for a note how many hours before it was charted); GET /health says
what is served. Unknown stays (no feature in the online store at the service's clock) get 404 naming them;
malformed requests get 422 from the request schema. Answers and logs carry ids, numbers and feature names
only: the model reads note embeddings, never note text.

Requests are scored on the event loop, one at a time: a request is a few milliseconds of CPU (an online
read and a small forward pass) and Feast's SQLite connection is bound to one thread. Worker processes
(`--workers`, about one per core) scale it out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sepsis_fusion.model.explain import TOP_INPUTS as EXPLAIN_TOP

from ..features.store import FeatureStoreError, online_store_time
from .scorer import Scorer

MAX_BATCH = 1000
MAX_EXPLAINED = 100  # stays per request with explain=true


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stay_id: int | None = Field(None, description="one ICU stay")
    stay_ids: list[int] | None = Field(None, description=f"a batch of ICU stays (at most {MAX_BATCH})")

    @model_validator(mode="after")
    def one_of(self) -> ScoreRequest:
        if (self.stay_id is None) == (self.stay_ids is None):
            raise ValueError("give exactly one of stay_id or stay_ids")
        if self.stay_ids is not None and not 0 < len(self.stay_ids) <= MAX_BATCH:
            raise ValueError(f"stay_ids needs 1 to {MAX_BATCH} ids, got {len(self.stay_ids)}")
        return self


def create_app(scorer: Scorer, clock: Callable[[], datetime], clock_name: str) -> FastAPI:
    """The service around one scorer; `clock` gives the time each request is scored as of."""
    app = FastAPI(title="Sepsis Fusion scoring service", version=scorer.version)
    base = {"model_version": scorer.version, "threshold": scorer.threshold}

    def now() -> datetime:
        try:
            return clock()
        except FeatureStoreError as exc:
            raise HTTPException(503, str(exc)) from None

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            **base,
            "feature_service": scorer.service,
            "online_store": scorer.store.config.online_store.type,
            "clock": clock_name,
            "as_of": now().isoformat(),
        }

    @app.post("/score")
    async def score(
        request: ScoreRequest,
        explain: bool = Query(False, description=f"name the {EXPLAIN_TOP} inputs that contributed most to each score"),
    ) -> dict:
        ids = [request.stay_id] if request.stay_id is not None else request.stay_ids
        if explain and len(ids) > MAX_EXPLAINED:
            # an explanation is ~32 forward and backward passes per fold model and stay, on the event loop
            raise HTTPException(422, f"explain=true takes at most {MAX_EXPLAINED} stays per request, got {len(ids)}")
        as_of = now()
        scores = scorer.online(ids, as_of, EXPLAIN_TOP if explain else 0)
        unknown = [s.stay_id for s in scores if not s.known]
        if unknown:
            raise HTTPException(
                404,
                f"unknown stays {unknown[:20]}{' ...' if len(unknown) > 20 else ''}: no "
                f"features in the online store as of {as_of.isoformat()} (not a stay, not "
                f"admitted yet, or not materialized)",
            )
        answers = [
            {
                "stay_id": s.stay_id,
                "probability": s.probability,
                "decision": s.decision,
                "missing": s.missing,
                **({"explanation": s.explanation} if explain else {}),
            }
            for s in scores
        ]
        common = {**base, "as_of": as_of.isoformat()}
        return {**answers[0], **common} if request.stay_id is not None else {**common, "scores": answers}

    return app


def run_service(
    run: Path,
    host: str,
    port: int,
    clock: str,
    online_store: str,
    workers: int,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve a run folder with uvicorn until stopped. The app is built here first, so a bad run folder or
    store fails before the server starts, with its message; more workers each build their own."""
    import uvicorn

    os.environ.update(
        SEPSIS_FUSION_SERVE_RUN=str(Path(run).resolve()),
        SEPSIS_FUSION_SERVE_CLOCK=clock,
        SEPSIS_FUSION_SERVE_ONLINE_STORE=online_store,
    )
    app = app_from_env()
    announce(f"serving {run} on http://{host}:{port} with {workers} worker(s) (POST /score, GET /health)")
    target = app if workers == 1 else "sepsis_fusion.pipelines.serving.service:app_from_env"
    uvicorn.run(
        target, factory=workers > 1, host=host, port=port, workers=workers, access_log=False, log_level="warning"
    )


def app_from_env() -> FastAPI:
    """The app as `sepsis-fusion serve --workers N` starts it in each worker process (uvicorn factory):
    settings come from SEPSIS_FUSION_SERVE_RUN, _CLOCK and _ONLINE_STORE."""
    import torch

    from ..features.store import open_store

    torch.set_num_threads(1)  # one small forward pass per request: threads cost more than they give
    scorer = Scorer(
        Path(os.environ["SEPSIS_FUSION_SERVE_RUN"]),
        open_store(online=os.environ.get("SEPSIS_FUSION_SERVE_ONLINE_STORE", "sqlite")),
    )
    clock_name = os.environ.get("SEPSIS_FUSION_SERVE_CLOCK", "materialized")
    clock = store_clock(scorer) if clock_name == "materialized" else wall_clock
    scorer.online([0], clock())  # open the online store's connection before the first request
    return create_app(scorer, clock, clock_name)


def store_clock(scorer: Scorer, refresh_s: float = 10.0) -> Callable[[], datetime]:
    """The online store's own present: where its materialization has reached (re-read every `refresh_s`).
    For replaying MIMIC-IV, whose dates lie in the future; live data uses the wall clock."""
    state = {"at": float("-inf"), "value": None}

    def clock() -> datetime:
        if time.monotonic() - state["at"] > refresh_s:
            scorer.store.refresh_registry()
            state.update(at=time.monotonic(), value=online_store_time(scorer.store, scorer.service))
        return state["value"]

    return clock


def wall_clock() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
