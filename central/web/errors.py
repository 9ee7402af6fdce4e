"""What the store refuses, said in Swedish for a page's error box (never a traceback).

:func:`explain` turns the errors the routine and the stores raise on purpose into a
:class:`Problem`: a Swedish headline, Swedish details where the error carries them
(the unmet checkpoints, the actions allowed, the clashing booking) and the store's own
message as the technical detail, with the HTTP status the page answers with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from central.cases import errors as case_errors
from central.errors import CentralError, DatabaseUnavailable, UnknownDevice
from central.web import labels
from routine.flows import NotAllowed, RoutineError, UnmetRequirement, WrongRole
from routine.tags import TagError

#: What a page catches around a store call.
STORE_ERRORS = (CentralError, RoutineError)


@dataclass(frozen=True)
class Problem:
    title: str
    status: int = 409
    lines: tuple[str, ...] = ()
    technical: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def explain(exc: BaseException, zone: tzinfo | None = None) -> Problem:
    technical = str(exc)
    if isinstance(exc, case_errors.DoubleBooking):
        clash = exc.clash
        start, end = clash.start.astimezone(zone), clash.end.astimezone(zone)
        return Problem(
            "Dubbelbokning: tiden krockar med en annan bokning i det gemensamma schemat.",
            409, (f"{clash.fitter} är redan bokad {start:%Y-%m-%d} kl. {start:%H:%M}-"
                  f"{end:%H:%M} för {labels.word(labels.JOB_KINDS, clash.kind).lower()} hos "
                  f"brukare {clash.client_ref} (jobb {clash.job_id}).",
                  "Välj en annan tid."), technical)
    if isinstance(exc, UnmetRequirement):
        return Problem("Steget kan inte registreras än: kontrollpunkter är inte uppfyllda.",
                       409, tuple(labels.word(labels.CHECKPOINTS, f) for f in exc.unmet),
                       technical)
    if isinstance(exc, WrongRole | case_errors.AccessDenied):
        return Problem("Du har inte behörighet till detta med din roll och enhet.", 403,
                       technical=technical)
    if isinstance(exc, NotAllowed):
        allowed = tuple(a.seed for a in exc.allowed)
        return Problem("Rutinen tillåter inte det steget i ärendets nuvarande läge.", 409,
                       (("Tillåtet nu: " + "; ".join(allowed)) if allowed
                        else "Ärendet är avslutat.",), technical)
    if isinstance(exc, case_errors.UnknownRecord | UnknownDevice):
        return Problem("Hittades inte (eller så får du inte se det).", 404,
                       technical=technical)
    if isinstance(exc, case_errors.KeyNumberBound):
        return Problem("Nyckelnumret är redan kopplat till en brukare i nyckelregistret.",
                       409, ("Återlämna nyckeln först, eller kontrollera numret.",), technical)
    if isinstance(exc, case_errors.NoKeysBound):
        return Problem("Det finns ingen nyckeluppsättning att återlämna för den enheten.",
                       409, technical=technical)
    if isinstance(exc, case_errors.TagStockEmpty):
        return Problem("Det finns inga NFC-etiketter i lager. Fyll på lagret först.", 409,
                       technical=technical)
    if isinstance(exc, case_errors.TagNotIssuable | TagError):
        return Problem("NFC-etiketten kan inte lämnas ut eller ändras så.", 409,
                       technical=technical)
    if isinstance(exc, case_errors.ImplementationConflict):
        return Problem("Verkställigheten stämmer inte med det som redan är registrerat.", 409,
                       technical=technical)
    if isinstance(exc, DatabaseUnavailable):
        return Problem("Databasen går inte att nå just nu. Försök igen om en stund.", 503,
                       technical=technical)
    if isinstance(exc, case_errors.CaseConflict):
        return Problem("Uppgifterna tillåter inte det här just nu.", 409, technical=technical)
    return Problem("Uppgifterna kunde inte sparas: kontrollera det du fyllt i.", 422,
                   technical=technical)


def invalid(message: str, **fields: str) -> Problem:
    """A form value the page itself refuses (before asking the store)."""
    return Problem(message, 422, fields=fields)
