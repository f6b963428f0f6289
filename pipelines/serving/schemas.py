"""The scoring service's request and response bodies (what its OpenAPI schema at /openapi.json shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .scorer import ScoreStatus

MAX_BATCH = 1000
# Feast keys stays as 64-bit integers; JSON integers only (no strings, floats or booleans)
StayId = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1, description="an ICU stay (MIMIC-IV stay_id)")]


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"stay_id": 33651696}]})
    stay_id: StayId | None = Field(None, description="one ICU stay")
    stay_ids: list[StayId] | None = Field(
        None, min_length=1, max_length=MAX_BATCH, description=f"a batch of ICU stays (1 to {MAX_BATCH})"
    )

    @model_validator(mode="after")
    def one_of(self) -> ScoreRequest:
        if (self.stay_id is None) == (self.stay_ids is None):
            raise ValueError("give exactly one of stay_id or stay_ids")
        return self

    @property
    def ids(self) -> list[int]:
        return [self.stay_id] if self.stay_id is not None else list(self.stay_ids)


class MissingInputs(BaseModel):
    static: list[str] = Field(description="static features with no value")
    sequence: list[str] = Field(description="panel features with no value known at the sequence's latest step")
    notes: list[str] = Field(description="'notes' when the stay has no note available")


class Contribution(BaseModel):
    input: str = Field(description="a static feature, a panel feature, or a note by recency ('note 1 (newest)')")
    modality: Literal["static", "sequence", "notes"]
    contribution: float = Field(description="integrated gradients, logit units, mean over the fold models")
    hours_before: float | None = Field(None, description="for a note: hours from its charting to as_of")


class StayScore(BaseModel):
    stay_id: int
    status: ScoreStatus = Field(
        description="'scored', or why not: before_prediction_time (Sepsis-3 recognised, T not reached), "
        "outside_population (not an adult's first Sepsis-3 ICU stay recognised by as_of), not_in_icu (left the "
        "ICU or died), not_admitted (admitted after as_of), unknown_stay (no such ICU stay in the data), "
        "no_static_inputs (none of the static inputs served)"
    )
    in_population: bool = Field(
        description="in the intended population at as_of; false with a probability only under "
        "--allow-outside-population (a flagged score)"
    )
    reason: str | None = Field(None, description="why the stay was not scored, or why its score is flagged")
    probability: float | None = Field(None, description="calibrated risk of the outcome (status 'scored' only)")
    decision: bool | None = Field(None, description="probability >= threshold (status 'scored' only)")
    missing: MissingInputs | None = Field(None, description="the inputs with no value (status 'scored' only)")
    explanation: list[Contribution] | None = Field(None, description="with ?explain=true: the largest contributions")


class ServedBy(BaseModel):
    model_version: str = Field(description="run folder name @ digest of its weights, preprocessing, calibration")
    threshold: float
    as_of: datetime = Field(description="the time the features were served for (naive UTC)")


class SingleScore(StayScore, ServedBy):
    """The answer to {"stay_id": ...}."""


class BatchScore(ServedBy):
    """The answer to {"stay_ids": [...]}, in the order asked: every stay with its status, scored or not (a
    batch is refused whole, 404, only when none of its stays is known to the data)."""

    scores: list[StayScore]


class Problem(BaseModel):
    detail: str | list = Field(description="what was wrong; for 422, the fields at fault")
    request_id: str | None = None


class Health(BaseModel):
    status: Literal["ok"]
    model_version: str
    threshold: float
    feature_service: str
    online_store: str
    clock: str
    as_of: datetime


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="model, online_store, freshness: 'ok' or why not")
    as_of: datetime | None = None
    staleness_seconds: float | None = Field(None, description="the clock's time minus where the store is filled to")
