"""The pages' calls into the routine's services for the inbox, the binder and the schedule.

Every call passes the signed-in principal as ``actor``; the services check access.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from central.cases import access
from central.cases.errors import AccessDenied
from central.cases.proofs import Checkpoint
from central.cases.store import RoutineStore
from central.cases.values import Booking, InboxMessage, Job
from central.services.binder import JobAtTheDoor


def inbox(routine: RoutineStore, actor: access.Actor, *,
          include_handled: bool = False) -> list[InboxMessage]:
    return routine.inbox.messages(actor, include_handled=include_handled)


def handle(routine: RoutineStore, actor: access.Actor, message_id: int) -> InboxMessage:
    return routine.inbox.handle(message_id, actor)


def binder(routine: RoutineStore, actor: access.Actor, *, open_only: bool = True) -> list[Job]:
    return routine.binder.jobs(actor, open_only=open_only)


def job(routine: RoutineStore, actor: access.Actor, job_id: int) -> Job:
    return routine.binder.job(job_id, actor=actor)


def at_the_door(routine: RoutineStore, actor: access.Actor, found: Job) -> JobAtTheDoor:
    """The job's lock serial, key numbers and the checkpoints ticked (applied) so far."""
    [door] = routine.binder.at_the_door([found], actor=actor)
    return door


def checkpoints(routine: RoutineStore, actor: access.Actor,
                job_id: int) -> list[Checkpoint] | None:
    """Every checkpoint the fitter's agent sent, with the centre's verdict and reason;
    None where the actor may not read them (they are the lock administrators')."""
    try:
        return routine.binder.checkpoints(job_id, actor=actor)
    except AccessDenied:
        return None


def my_jobs(routine: RoutineStore, actor: access.Actor) -> list[Job]:
    """A fitter's own open jobs, by appointment."""
    return routine.binder.for_fitter(actor)


def week(routine: RoutineStore, actor: access.Actor, monday: date) -> list[Booking]:
    """The shared schedule's bookings that touch the week from ``monday`` (local days)."""
    zone = routine.central.day_zone
    start = datetime.combine(monday, datetime.min.time(), zone)
    end = datetime.combine(monday + timedelta(days=7), datetime.min.time(), zone)
    return [b for b in routine.schedule.bookings(actor=actor) if b.start < end and b.end > start]


def book(routine: RoutineStore, actor: access.Actor, job_id: int, fitter: str,
         start: datetime, end: datetime, note: str | None) -> Booking:
    return routine.schedule.book(job_id, fitter, start, end, actor, note=note or None)
