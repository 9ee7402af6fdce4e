"""The routine store's errors: one root (a :class:`central.errors.CentralError`).

Each carries its answers (:mod:`central.errors`): ``AccessDenied`` 403, ``UnknownRecord``
404, the subclasses below 409 (the request conflicts with the data: a clash in the
schedule, a key number still bound, no tags in stock), ``CaseError`` itself 422 (input
to correct: a unit, a note, a key number, booking times); the CLI exits 4 (refused) for
403 and 409, 5 (data) for the others. The routine's own
rule errors (:class:`routine.flows.RoutineError`: ``NotAllowed``,
``UnmetRequirement``; ``routine.tags.TagError``, ``routine.keys.KeyRuleError``) pass
through unchanged, with the state and the actions allowed there (409). Its
``WrongRole`` is answered as :class:`AccessDenied` (with the routine's message):
the step is for another role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from central.errors import EXIT_REFUSED, CentralError

if TYPE_CHECKING:
    from central.cases.values import Booking


class CaseError(CentralError):
    """Root of what the routine store raises on purpose: input that conflicts with the data."""


class AccessDenied(CaseError):
    """The principal's role or unit does not allow this; ``reason`` says which and why."""

    status, error, exit_code = 403, "access_denied", EXIT_REFUSED
    advice = ("act with a principal of the role and unit this needs ('nyckelfri-central "
              "principal list' shows them)")

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownRecord(CaseError):
    """No case, inbox message, job, booking, tag or principal with that id or name."""

    status, error = 404, "unknown_record"
    advice = "list the cases, the binder, the inbox or the tags to find the id"


class DoubleBooking(CaseError):
    """The fitter already has a booking overlapping the one asked for; ``clash`` is it."""

    status, exit_code = 409, EXIT_REFUSED
    error = "double_booking"
    advice = ("choose a time that does not overlap the fitter's bookings "
              "(GET /v1/schedule?fitter=)")

    def __init__(self, message: str, clash: Booking) -> None:
        super().__init__(message)
        self.clash = clash


class KeyNumberBound(CaseError):
    """The key number is bound to a client in the key register; return it first."""

    status, exit_code = 409, EXIT_REFUSED
    error, advice = "key_number_bound", "return the key set first, or check the number"


class NoKeysBound(CaseError):
    """No key set of that unit is bound to the client: nothing to return."""

    status, exit_code = 409, EXIT_REFUSED
    error, advice = "no_keys_bound", "list the client's key sets"


class TagNotIssuable(CaseError):
    """The client does not use NFC tags (lock installed, none wanted), or the tag exists."""

    status, exit_code = 409, EXIT_REFUSED
    error, advice = "tag_not_issuable", "check the client's lock status and tags"


class TagStockEmpty(CaseError):
    """The provider has no NFC tags in stock; add stock first."""

    status, exit_code = 409, EXIT_REFUSED
    error, advice = "tag_stock_empty", "add tags to the provider's stock first"


class ImplementationConflict(CaseError):
    """An implementation that is already running, or none to end."""

    status, exit_code = 409, EXIT_REFUSED
    error, advice = "conflict", "list the client's implementations"


class CaseConflict(CaseError):
    """A case the data does not allow: one already open, a step that needs another call."""

    status, exit_code = 409, EXIT_REFUSED
    error, advice = "conflict", "do what the detail says first, then ask again"


class SunNotVerified(CaseError):
    """A SUN URL that does not verify with the tag's keys, or whose read counter is not
    above the last one accepted: the provisioning is not confirmed."""

    status, exit_code = 409, EXIT_REFUSED
    error = "sun_not_verified"
    advice = ("provision the tag again with it on the reader; the detail says what did not "
              "verify")
