"""What `sepsis-fusion serve` was told, typed: the command line fills it, and worker processes read it back
from the environment (SEPSIS_FUSION_SERVE_<FIELD>, set by `run_service`), validated the same way."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SETTINGS_ENV = "SEPSIS_FUSION_SERVE_"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=SETTINGS_ENV, frozen=True, extra="forbid")

    run: str = Field(description="the run folder served")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    clock: str = "materialized"  # 'materialized', 'now' or an ISO time (naive UTC)
    max_staleness_s: float = Field(7200.0, ge=0)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout_s: float = Field(30.0, ge=0)
    registry_refresh_s: float = Field(10.0, ge=0)  # how soon a materialization by another process is seen
    allow_outside_population: bool = False  # also score stays outside the intended population, flagged
    api_key_file: str | None = None  # keys that /score, /metrics and /health require (access.py)
    max_body_bytes: int = Field(65536, ge=1024)  # a larger request body is refused with 413
    monitor_stays: int = Field(500, ge=1)  # the PSI gauges of /metrics: over the last N stays scored (monitoring.py)
    monitor_inputs: int = Field(10, ge=1)  # the most important inputs with a PSI gauge (importance.csv)

    def to_env(self) -> dict[str, str]:
        return {SETTINGS_ENV + k.upper(): str(v) for k, v in self.model_dump().items() if v is not None}


def default(field: str):
    """A setting's default, for the command line's options."""
    return ServiceSettings.model_fields[field].default
