"""The pages' calls into the routine's services for alerts and reports.

Every call passes the signed-in principal as ``actor``; the services check access.
"""

from __future__ import annotations

from datetime import date

from central.cases import access
from central.cases.alerts import Alert
from central.cases.reports import PendingInstall, Removal, VisitMethods
from central.cases.store import RoutineStore


def alerts(routine: RoutineStore, actor: access.Actor) -> list[Alert]:
    return routine.alerts.current(actor=actor)


def pending_installs(routine: RoutineStore, actor: access.Actor) -> list[PendingInstall]:
    return routine.reports.pending_installs(actor=actor)


def removals(routine: RoutineStore, actor: access.Actor) -> list[Removal]:
    return routine.reports.removals(actor=actor)


def visits(routine: RoutineStore, actor: access.Actor, *, start: date | None = None,
           end: date | None = None) -> list[VisitMethods]:
    return routine.reports.visits_by_method(actor=actor, start=start, end=end)
