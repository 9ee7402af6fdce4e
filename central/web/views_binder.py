"""The pages' calls into the routine store for the inbox, the binder and the schedule.

Where the store itself checks no access, the checks of the JSON routes
(:mod:`central.http.routes_routine`) are made here, with the same rules.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from central.cases import access
from central.cases.errors import AccessDenied
from central.cases.proofs import Checkpoint
from central.cases.store import RoutineStore
from central.cases.values import Booking, InboxMessage, Job
from routine.flows import Role


def inbox(routine: RoutineStore, actor: access.Actor, *,
          include_handled: bool = False) -> list[InboxMessage]:
    return routine.inbox(actor, include_handled=include_handled)


def handle(routine: RoutineStore, actor: access.Actor, message_id: int) -> InboxMessage:
    return routine.handle_inbox(message_id, actor)


def binder(routine: RoutineStore, actor: access.Actor, *, open_only: bool = True) -> list[Job]:
    return routine.binder(actor, open_only=open_only)


def job(routine: RoutineStore, actor: access.Actor, job_id: int) -> Job:
    return routine.job(job_id, actor=actor)


def checkpoints(routine: RoutineStore, actor: access.Actor, job_id: int) -> list[Checkpoint]:
    """What the fitter's agent ticked on the job (applied or refused, with the reason)."""
    routine.job(job_id, actor=actor)  # the binder's access check
    return routine.job_checkpoints(job_id)


def my_jobs(routine: RoutineStore, actor: access.Actor) -> list[Job]:
    """A fitter's own open jobs, by appointment (the checks of ``GET /v1/jobs``)."""
    access.require_alarm_group(actor, routine.units, "read fitters' jobs",
                               (Role.ALARM_ADMIN, Role.FITTER))
    if actor.role != Role.FITTER:
        raise AccessDenied(f"{access.who(actor)} is no fitter: read the binder instead")
    return routine.jobs_for_fitter(actor.name)


def week(routine: RoutineStore, actor: access.Actor, monday: date) -> list[Booking]:
    """The shared schedule's bookings that touch the week from ``monday`` (local days)."""
    zone = routine.central.day_zone
    start = datetime.combine(monday, datetime.min.time(), zone)
    end = datetime.combine(monday + timedelta(days=7), datetime.min.time(), zone)
    # the checks of GET /v1/schedule: the alarm group's administrators and fitters
    access.require_alarm_group(actor, routine.units, "read the shared schedule",
                               (Role.ALARM_ADMIN, Role.FITTER))
    return [b for b in routine.schedule() if b.start < end and b.end > start]


def book(routine: RoutineStore, actor: access.Actor, job_id: int, fitter: str,
         start: datetime, end: datetime, note: str | None) -> Booking:
    return routine.book(job_id, fitter, start, end, actor, note=note or None)
