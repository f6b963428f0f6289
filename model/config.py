"""The study's configuration, typed: the YAML of model/configs/ and `--set section.key=value` overrides are
validated by the same models, so a misspelt key or a value of the wrong type fails with its name.

Every section is a pydantic dataclass that refuses unknown keys: the protocol (`StudyConfig`), the
preprocessing (`PreprocessConfig`, preprocess.py), the network (`ModelSettings`), the training
(`TrainConfig`, train.py), the grid (lists of values of the tunable keys of `model` and `train`) and the
baselines' grids (`BaselineSettings`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import asdict, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from .errors import StudyError
from .fusion import FusionConfig
from .inputs import OUTCOMES
from .preprocess import PreprocessConfig
from .train import TrainConfig

SPLITS = ("patient", "temporal")
MODALITIES = ("static", "sequence", "notes")
STRICT = ConfigDict(extra="forbid")


@dataclass(config=STRICT)
class ModelSettings:
    static_hidden: tuple[int, int] = (64, 32)
    sequence_hidden: int = 32
    note_hidden: int = 32
    head_hidden: int = 32
    dropout: float = 0.2
    last_steps: int = 0  # read only the last this many steps of the sequence; 0: all of them
    modalities: tuple[Literal["static", "sequence", "notes"], ...] = MODALITIES


@dataclass(config=STRICT)
class BaselineSettings:
    """The baselines' hyperparameter grids, tuned by the same cross-validation as the fusion model."""

    logistic_c: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    boosting_depth: list[int] = field(default_factory=lambda: [3, 6])
    boosting_learning_rate: list[float] = field(default_factory=lambda: [0.03, 0.1])
    boosting_iterations: list[int] = field(default_factory=lambda: [100, 300])


# What the grid may vary: every setting of the network and of training but the modalities (the ablation's),
# the epoch budget, the patience and the seed (the protocol's)
_FIXED = {"modalities", "max_epochs", "patience", "seed"}
_TUNABLE = {
    name: info.annotation
    for section in (TrainConfig, ModelSettings)
    for name, info in section.__pydantic_fields__.items()
    if name not in _FIXED
}
GRID_KEYS = frozenset(_TUNABLE)


@dataclass(config=STRICT)
class StudyConfig:
    outcome: Literal[OUTCOMES] = OUTCOMES[0]  # death within 28 days after T (docs/COHORT.md)
    split: Literal[SPLITS] = "patient"  # stratified 80/20 by patient, or the latest anchor_year_group held out
    test_size: float = 0.2
    folds: int = 5
    validation_size: float = 0.15  # of each fold's training rows, for early stopping only
    # floors on that inner split: its share grows (up to half the rows) until it holds this many stays and events
    min_validation_stays: int = 150
    min_validation_events: int = 25
    seed: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: dict[str, list] = field(default_factory=dict)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    experiments: bool = True  # the loss comparison (BCE vs focal) and the modality ablation, same folds
    # each ablation variant tuned on the grid too (grid size x folds more models each), not the final model's setting
    ablation_grid: bool = False

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list]) -> dict[str, list]:
        unknown = sorted(set(grid) - GRID_KEYS)
        if unknown:
            raise ValueError(f"unknown grid keys {unknown}: use {sorted(GRID_KEYS)}")
        out = {}
        for key, values in grid.items():
            if not values:
                raise ValueError(f"grid.{key} is empty: give it at least one value")
            try:
                out[key] = [TypeAdapter(_TUNABLE[key]).validate_python(v) for v in values]
            except ValidationError as exc:
                raise ValueError(f"{key} value {exc.errors()[0]['input']!r}: {exc.errors()[0]['msg']}") from None
        return out

    def settings(self) -> list[dict]:
        """Every setting of the grid (one dict of values each; [{}] without a grid)."""
        keys = sorted(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))] or [{}]

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def to_dict(self) -> dict:
        return asdict(self)

    def configs(self, setting: dict, dims: tuple[int, int, int]) -> tuple[FusionConfig, TrainConfig]:
        m = {**asdict(self.model), **{k: v for k, v in setting.items() if hasattr(self.model, k)}}
        fusion = FusionConfig(
            static_dim=dims[0],
            sequence_dim=dims[1],
            note_dim=dims[2],
            static_hidden=tuple(m["static_hidden"]),
            sequence_hidden=m["sequence_hidden"],
            note_hidden=m["note_hidden"],
            head_hidden=m["head_hidden"],
            dropout=m["dropout"],
            last_steps=m["last_steps"],
            use_static="static" in m["modalities"],
            use_sequence="sequence" in m["modalities"],
            # no note embeddings at all (MIMIC-IV without MIMIC-IV-Note): no note branch
            use_notes="notes" in m["modalities"] and dims[2] > 0,
        )
        train = replace(self.train, **{k: v for k, v in setting.items() if hasattr(self.train, k)})
        return fusion, train


def load_config(path: Path | None, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """A StudyConfig from YAML plus `section.key=value` overrides (values parsed as YAML), validated as one."""
    raw: dict[str, Any] = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}) or {}
    for item in overrides:
        if "=" not in item:
            raise StudyError(f"override {item!r}: use section.key=value, e.g. train.lr=0.001")
        key, value = item.split("=", 1)
        *sections, leaf = key.split(".")
        node = raw
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise StudyError(f"override {item!r}: {section} is a value, not a section")
        node[leaf] = yaml.safe_load(value)
    try:
        return TypeAdapter(StudyConfig).validate_python(raw)
    except ValidationError as exc:
        raise StudyError(f"config{f' {path}' if path else ''}: {_explain(exc)}") from None


def _explain(exc: ValidationError) -> str:
    """pydantic's errors as one line per key: `train.learning_rate: unknown key (train takes lr, ...)`."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            section = _section(error["loc"][:-1])
            known = ", ".join(f.name for f in dataclasses.fields(section)) if section else ""
            lines.append(f"{where}: unknown key" + (f" (use {known})" if known else ""))
        else:
            given = error.get("input")
            lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}" + _given(given))
    return "; ".join(lines)


def _given(value) -> str:
    return "" if isinstance(value, dict) or value is None else f" (got {value!r})"


def _section(loc: tuple) -> type | None:
    section: type = StudyConfig
    for part in loc:
        fields = {f.name: f for f in dataclasses.fields(section)}
        factory = fields[part].default_factory if part in fields else dataclasses.MISSING
        if factory is dataclasses.MISSING or not dataclasses.is_dataclass(factory()):
            return None
        section = type(factory())
    return section
