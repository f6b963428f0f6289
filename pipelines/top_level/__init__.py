"""Sepsis Fusion: a point-in-time-correct feature store and fusion model for ICU sepsis prognosis.

The Python API (pipelines/api.py) at the package top:

    from sepsis_fusion import Project
    project = Project("data")
    frame = project.training_frame()
    scores = project.run("demo").predict(frame)

This file is installed as sepsis_fusion/__init__.py (pyproject.toml maps it there). Its names load on
first use, so `import sepsis_fusion.model` and the command line do not pay for pandas and Feast.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sepsis_fusion.model.errors import SepsisFusionError
    from sepsis_fusion.pipelines.api import Project, Run

__all__ = ["Project", "Run", "SepsisFusionError", "__version__"]
_WHERE = {
    "Project": "sepsis_fusion.pipelines.api",
    "Run": "sepsis_fusion.pipelines.api",
    "SepsisFusionError": "sepsis_fusion.model.errors",
}


def __getattr__(name: str) -> object:
    if name == "__version__":
        return metadata.version("sepsis-fusion")
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sepsis_fusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
