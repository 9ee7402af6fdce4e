"""The pages' calls into the routine's services for the key register and the NFC tags.

Every call passes the signed-in principal as ``actor``; the services check access.
"""

from __future__ import annotations

from central.cases import access
from central.cases.reports import ClientStatus
from central.cases.store import RoutineStore
from central.cases.values import KeyReceipt, KeySet, Tag
from central.services.keys import KeysOverview
from routine.keys import KeyUnit


def keys(routine: RoutineStore, actor: access.Actor, client: str) -> KeysOverview:
    """Held, returned, required and missing key sets of the client."""
    return routine.keys.overview(client, actor=actor)


def receipts(routine: RoutineStore, actor: access.Actor, client: str) -> list[KeyReceipt]:
    return routine.keys.receipts(client, actor=actor)


def clients(routine: RoutineStore, actor: access.Actor,
            client: str | None = None) -> list[ClientStatus]:
    return routine.reports.client_status(client or None, actor=actor)


def register(routine: RoutineStore, actor: access.Actor, client: str, unit: str,
             key_number: str, holder: str | None) -> KeySet:
    return routine.keys.register(client, KeyUnit(unit), key_number, actor,
                                 holder=holder or None)


def return_keys(routine: RoutineStore, actor: access.Actor, client: str, unit: str,
                signed_by: str) -> KeyReceipt:
    return routine.keys.return_keys(client, KeyUnit(unit), signed_by, actor)


def tag_stock(routine: RoutineStore, actor: access.Actor, units: list[str]) -> dict[str, int]:
    return {unit: routine.tags.stock(unit, actor=actor) for unit in units}


def tags(routine: RoutineStore, actor: access.Actor) -> list[Tag]:
    return routine.tags.find(actor=actor)


def add_stock(routine: RoutineStore, actor: access.Actor, unit: str, count: int) -> int:
    return routine.tags.add_stock(unit, count, actor)


def issue_tag(routine: RoutineStore, actor: access.Actor, uid: str, client: str,
              unit: str) -> Tag:
    return routine.tags.issue(uid, client, unit, actor)


def taken_down(routine: RoutineStore, actor: access.Actor, uid: str) -> Tag:
    return routine.tags.taken_down(uid, actor)
