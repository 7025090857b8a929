"""Exception and warning types. Every error the library raises on bad input is one of these.

Why a small hierarchy: users catch ``HPTError`` to handle anything we refuse, and the
message is always one line naming the field (or file) and the fix.
"""
from __future__ import annotations


class HPTError(Exception):
    """Base class for every error raised by hybrid-predict-trainer."""


class ConfigError(HPTError, ValueError):
    """A configuration value, key or file is invalid. The message names the field and the fix."""


class CheckpointError(HPTError):
    """A checkpoint cannot be written or read (truncated, corrupted, foreign, unsafe)."""


class TrainerStateError(HPTError, RuntimeError):
    """The trainer was used in a way its state does not allow (e.g. ``step`` after a fatal error)."""


class LossError(HPTError, TypeError):
    """The user's closure returned something that is not a finite-capable scalar loss."""


class HealthError(HPTError, RuntimeError):
    """Raised by the health monitor under ``policy="raise"``; carries the finding."""

    def __init__(self, finding: object) -> None:
        self.finding = finding
        super().__init__(str(finding))


class HybridWarning(UserWarning):
    """A trainer decision the user should know about (e.g. a gate that cannot open)."""
