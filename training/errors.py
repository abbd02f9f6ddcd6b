"""Errors of the trainer side, all derived from :class:`agent_tools.errors.VideoseekError`.

- :class:`TrainingConfigError` - a config field outside its valid set (names the field and what is valid).
- :class:`TrainingDataError` - a dataset row or trajectory that cannot be used (names the row and why).
"""

from __future__ import annotations

from agent_tools.errors import VideoseekError

__all__ = ["TrainingConfigError", "TrainingDataError"]


class TrainingConfigError(VideoseekError):
    """A trainer config that cannot run; the message names the field and its valid values."""


class TrainingDataError(VideoseekError):
    """A training example that cannot be used; the message names the example and the reason."""
