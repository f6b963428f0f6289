"""The one base class of the errors Sepsis Fusion raises for its user to act on.

It lives in the bottom layer (the model package imports nothing of the others), so every stage can
derive its own errors from it. The command line prints such an error's message, without a traceback,
and exits with status 1; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SepsisFusionError(Exception):
    """A failure the user can act on; the message names the file, column, value or step and says why."""


class InputError(SepsisFusionError, ValueError):
    """The model's inputs do not fit its contract (model/inputs.py): the message says which and how."""


class StudyError(SepsisFusionError, ValueError):
    """The data or the settings cannot support the study as configured; the message says why."""


class TooFewStays(StudyError):
    """The cohort is empty, or has too few stays of one outcome class, to train and test a model."""
