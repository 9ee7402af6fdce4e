"""The routine store's errors: one root (a :class:`central.errors.CentralError`).

The HTTP API maps them to answers: ``AccessDenied`` -> 403, ``UnknownRecord`` -> 404,
the subclasses below -> 409 (the request conflicts with the data: a clash in the
schedule, a key number still bound, no tags in stock), ``CaseError`` itself -> 422
(input to correct: a unit, a note, a key number, booking times). The routine's own
rule errors (:class:`routine.flows.RoutineError`: ``NotAllowed``,
``UnmetRequirement``; ``routine.tags.TagError``, ``routine.keys.KeyRuleError``) pass
through unchanged, with the state and the actions allowed there (409). Its
``WrongRole`` is answered as :class:`AccessDenied` (with the routine's message):
the step is for another role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from central.errors import CentralError

if TYPE_CHECKING:
    from central.cases.values import Booking


class CaseError(CentralError):
    """Root of what the routine store raises on purpose: input that conflicts with the data."""


class AccessDenied(CaseError):
    """The principal's role or unit does not allow this; ``reason`` says which and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownRecord(CaseError):
    """No case, inbox message, job, booking, tag or principal with that id or name."""


class DoubleBooking(CaseError):
    """The fitter already has a booking overlapping the one asked for; ``clash`` is it."""

    def __init__(self, message: str, clash: Booking) -> None:
        super().__init__(message)
        self.clash = clash


class KeyNumberBound(CaseError):
    """The key number is bound to a client in the key register; return it first."""


class NoKeysBound(CaseError):
    """No key set of that unit is bound to the client: nothing to return."""


class TagNotIssuable(CaseError):
    """The client does not use NFC tags (lock installed, none wanted), or the tag exists."""


class TagStockEmpty(CaseError):
    """The provider has no NFC tags in stock; add stock first."""


class ImplementationConflict(CaseError):
    """An implementation that is already running, or none to end."""


class CaseConflict(CaseError):
    """A case the data does not allow: one already open, a step that needs another call."""


class SunNotVerified(CaseError):
    """A SUN URL that does not verify with the tag's keys, or whose read counter is not
    above the last one accepted: the provisioning is not confirmed."""
