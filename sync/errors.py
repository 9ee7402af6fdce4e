"""Errors of the agent's sync client: one root, each message says what to do.

The CLI maps them to exit codes: :class:`CentreUnreachable` is a network problem
(try again later; nothing is lost, the outbox keeps every event), the others need
a person: a token, an upgrade, or a look at what the centre refused.
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of the sync client's errors; the message carries the advice."""


class CentreUnreachable(SyncError):
    """No usable answer after every attempt: network down, timeouts, or the centre
    answering 5xx. Retryable later; the outbox keeps everything meanwhile."""

    def __init__(self, message: str, *, attempts: int = 0, status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status  # the last HTTP status, None when no answer came at all


class CentreAnswerError(SyncError):
    """The centre answered with a refusal (4xx); carries its ProblemDetail."""

    def __init__(self, message: str, *, status: int, detail: str = "", advice: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.advice = advice


class Unauthorized(CentreAnswerError):
    """401: the token is missing, wrong or revoked."""


class Forbidden(CentreAnswerError):
    """403: the token is valid but this device may not do this (not enrolled, disabled)."""


class ProtocolMismatch(CentreAnswerError):
    """426, or an answer that is not protocol v1: agent and centre need the same version."""


class RejectedRequest(CentreAnswerError):
    """400/413/422 and other 4xx: the centre refused the request itself (not retried)."""


class Cancelled(SyncError):
    """The sync was asked to stop (agent shutting down) before it finished."""
