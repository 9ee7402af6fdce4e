"""The pages' calls into the routine's services for cases (:mod:`central.services`).

Every call passes the signed-in principal as ``actor``; the services check access.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date

from central.cases import access
from central.cases.errors import AccessDenied
from central.cases.store import RoutineStore
from central.cases.values import Case, CaseStep, DocumentationText, Implementation, Job
from routine.flows import Action, Flow, Role


def cases(routine: RoutineStore, actor: access.Actor, *, flow: str | None = None,
          client: str | None = None, open_only: bool = False) -> list[Case]:
    return routine.cases.find(actor=actor, client_ref=client or None, flow=flow or None,
                              open_only=open_only)


def case(routine: RoutineStore, actor: access.Actor, case_id: int) -> Case:
    return routine.cases.get(case_id, actor=actor)


def open_case(routine: RoutineStore, actor: access.Actor, flow: str, client: str, *,
              provider_unit: str | None, note: str | None) -> Case:
    return routine.cases.open(Flow(flow), client, actor, provider_unit=provider_unit or None,
                              note=note or None)


def act(routine: RoutineStore, actor: access.Actor, case_id: int, action: str,
        answer: str | None, *, note: str | None, checks: Collection[str]) -> CaseStep:
    return routine.cases.act(case_id, action, answer or None, actor, note=note or None,
                             checks=checks)


def documentation(routine: RoutineStore, actor: access.Actor,
                  client: str) -> list[DocumentationText]:
    return routine.cases.documentation(client, actor=actor)


def mine(actor: access.Actor, actions: list[Action]) -> list[Action]:
    """The actions of ``actions`` the actor takes (an admin: all of them)."""
    return [a for a in actions if access.is_admin(actor) or a.role.value == actor.role]


def job_of(routine: RoutineStore, actor: access.Actor, case_id: int) -> Job | None:
    """The case's latest binder job, where the actor may read the binder."""
    if not (access.is_admin(actor) or (actor.role in (Role.ALARM_ADMIN, Role.FITTER)
                                       and actor.unit == routine.units.alarm_group)):
        return None
    try:
        found = [j for j in routine.binder.jobs(actor, open_only=False) if j.case_id == case_id]
    except AccessDenied:
        return None
    return found[-1] if found else None


def units_of(routine: RoutineStore, role: str) -> list[str]:
    """The units of live principals in ``role`` (for a form's choices), sorted."""
    return sorted({d.unit for d in routine.central.list_devices()
                   if d.role == role and d.unit and not d.revoked})


def fitters(routine: RoutineStore) -> list[str]:
    """The alarm group's live fitters, by name."""
    return sorted(d.name for d in routine.central.list_devices()
                  if d.role == Role.FITTER and d.unit == routine.units.alarm_group
                  and not d.revoked)


def implementations(routine: RoutineStore, actor: access.Actor,
                    client: str) -> list[Implementation]:
    """The client's implementations, running and ended, oldest first."""
    return routine.implementations.of_client(client, actor=actor)


def start_implementation(routine: RoutineStore, actor: access.Actor, client: str, kind: str,
                         unit: str, started_on: date) -> Implementation:
    return routine.implementations.start(client, kind, unit, started_on, actor)


def end_implementation(routine: RoutineStore, actor: access.Actor, client: str, kind: str,
                       ended_on: date) -> Implementation:
    return routine.implementations.end(client, kind, ended_on, actor)
