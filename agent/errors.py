"""Errors the agent's commands share, in a module that imports nothing heavy (the CLI
maps them to exit codes on every command, so they must be cheap to import)."""

from __future__ import annotations


class FitterError(Exception):
    """A refusal on site (unknown job, checkpoint out of order, no proof); the message
    says what to do."""
