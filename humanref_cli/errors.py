"""Errors a user can act on. Each carries its exit code (design.md §1) and a one-line fix hint.

The CLI prints ``error: <message>`` and, when present, ``hint: <fix>`` on stderr and exits with
``exit_code``. Anything that is not a ``HumanrefError`` is an internal error (exit 1).
"""

from __future__ import annotations


class HumanrefError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(HumanrefError):
    """Bad usage or bad input: unreadable image, no person found, bad option or config key."""

    exit_code = 2


class UpstreamError(HumanrefError):
    """An upstream stage is missing or stale (``coarse`` before ``prep``)."""

    exit_code = 3


class WorkspaceConflict(HumanrefError):
    """Locked by another process, foreign or newer manifest, key mismatch on resume."""

    exit_code = 4


class MissingModel(HumanrefError):
    """A required model or optional dependency is missing; the hint names the command that fixes it."""

    exit_code = 5


class Interrupted(HumanrefError):
    """Ctrl-C: the stage wrote its checkpoint and was marked ``interrupted``; rerun to resume."""

    exit_code = 130
