"""The pages' calls into the routine store for alerts and reports."""

from __future__ import annotations

from datetime import date

from central.cases import access
from central.cases.alerts import Alert
from central.cases.reports import PendingInstall, Removal, VisitMethods
from central.cases.store import RoutineStore
from central.web.views_keys import require_reader


def alerts(routine: RoutineStore, actor: access.Actor) -> list[Alert]:
    require_reader(actor)
    return routine.alerts(routine.central.today())


def pending_installs(routine: RoutineStore, actor: access.Actor) -> list[PendingInstall]:
    require_reader(actor)
    return routine.pending_installs(routine.central.today())


def removals(routine: RoutineStore, actor: access.Actor) -> list[Removal]:
    require_reader(actor)
    return routine.removals(routine.central.today())


def visits(routine: RoutineStore, actor: access.Actor, *, start: date | None = None,
           end: date | None = None) -> list[VisitMethods]:
    require_reader(actor)
    return routine.visits_by_method(start=start, end=end)
