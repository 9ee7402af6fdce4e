"""The pages' calls into the routine store for the key register and the NFC tags."""

from __future__ import annotations

from dataclasses import dataclass

from central.cases import access
from central.cases.reports import ClientStatus
from central.cases.store import RoutineStore
from central.cases.values import KeyReceipt, KeySet, Tag
from routine.keys import KeyUnit


def require_reader(actor: access.Actor) -> None:
    """Key sets, tags, alerts, reports: for the routine's principals, not field agents
    (as :func:`central.http.routes_routine.require_reader`)."""
    access.require_routine_principal(actor)


@dataclass(frozen=True)
class Keys:
    held: list[KeySet]
    returned: list[KeySet]
    required: dict[KeyUnit, int]
    missing: dict[KeyUnit, int]  # required, not held


def keys(routine: RoutineStore, actor: access.Actor, client: str) -> Keys:
    """Held, returned, required and missing key sets of the client (as ``keys_answer``)."""
    require_reader(actor)
    sets = routine.key_sets(client)
    required = routine.required_key_sets(client)
    held = [s for s in sets if s.bound]
    missing = {unit: n - sum(s.unit is unit for s in held) for unit, n in required.items()
               if n > sum(s.unit is unit for s in held)}
    return Keys(held, [s for s in sets if not s.bound], required, missing)


def receipts(routine: RoutineStore, actor: access.Actor, client: str) -> list[KeyReceipt]:
    require_reader(actor)
    return routine.key_receipts(client)


def clients(routine: RoutineStore, actor: access.Actor,
            client: str | None = None) -> list[ClientStatus]:
    require_reader(actor)
    return routine.client_status(client or None)


def register(routine: RoutineStore, actor: access.Actor, client: str, unit: str,
             key_number: str, holder: str | None) -> KeySet:
    return routine.register_key_set(client, KeyUnit(unit), key_number, actor,
                                    holder=holder or None)


def return_keys(routine: RoutineStore, actor: access.Actor, client: str, unit: str,
                signed_by: str) -> KeyReceipt:
    return routine.return_keys(client, KeyUnit(unit), signed_by, actor)


def tag_stock(routine: RoutineStore, actor: access.Actor, units: list[str]) -> dict[str, int]:
    require_reader(actor)
    return {unit: routine.tag_stock(unit) for unit in units}


def tags(routine: RoutineStore, actor: access.Actor) -> list[Tag]:
    require_reader(actor)
    return routine.tags()


def add_stock(routine: RoutineStore, actor: access.Actor, unit: str, count: int) -> int:
    return routine.add_tag_stock(unit, count, actor)


def issue_tag(routine: RoutineStore, actor: access.Actor, uid: str, client: str,
              unit: str) -> Tag:
    return routine.issue_tag(uid, client, unit, actor)


def taken_down(routine: RoutineStore, actor: access.Actor, uid: str) -> Tag:
    return routine.tag_taken_down(uid, actor)
