"""The fitters' binder: jobs put there by the alarm administrators, a fitter's own jobs
by appointment, and the on-site checkpoints ticked on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from central.cases import access, proofs, refdata, rows
from central.cases import db as t
from central.cases.access import Actor
from central.cases.errors import AccessDenied, CaseError, UnknownRecord
from central.cases.values import Job, JobKind
from central.services.base import Service
from routine.flows import Role

READERS = (Role.ALARM_ADMIN, Role.FITTER)


@dataclass(frozen=True)
class JobAtTheDoor:
    """A job as a fitter takes it to the door: the client's bound lock, the key numbers
    to label the knob with, and the checkpoints ticked so far."""

    job: Job
    lock_serial: str | None
    key_numbers: list[str]
    done: list[str]


class Binder(Service):
    def jobs(self, actor: Actor, *, kind: JobKind | str | None = None,
             open_only: bool = True, fitter: str | None = None) -> list[Job]:
        """The fitters' jobs (oldest first), with their live booking; ``fitter``: booked
        for that fitter."""
        access.require_alarm_group(actor, self.units, "read the binder", READERS)
        j = t.binder_jobs.c
        query = sa.select(t.binder_jobs).where(j.unit == self.units.alarm_group).order_by(j.id)
        if kind is not None:
            query = query.where(j.kind == JobKind(kind).value)
        if open_only:
            query = query.where(j.done_at.is_(None))
        if fitter is not None:
            query = query.where(j.id.in_(_booked_for(fitter)))
        with self.core.read() as conn:
            return rows.jobs(conn, query)

    def job(self, job_id: int, *, actor: Actor) -> Job:
        access.require_alarm_group(actor, self.units, "read the binder", READERS)
        with self.core.read() as conn:
            found = rows.jobs(conn, sa.select(t.binder_jobs)
                              .where(t.binder_jobs.c.id == job_id))
        if not found:
            raise UnknownRecord(f"no job {job_id} in the binder; list the binder to find its id")
        return found[0]

    def for_fitter(self, actor: Actor, fitter: str | None = None) -> list[Job]:
        """A fitter's open jobs by appointment: a fitter reads their own; an
        administrator names the fitter; a device enrolled to a fitter (the fitter's
        agent) reads that fitter's."""
        bound = getattr(actor, "fitter", None)
        if actor.role == "device" and bound is not None:
            if fitter not in (None, bound):
                raise AccessDenied(f"{actor.name} is enrolled to fitter {bound}: it reads "
                                   f"only {bound}'s jobs, not {fitter}'s")
            return self._booked_jobs(bound)
        access.require_alarm_group(actor, self.units, "read fitters' jobs", READERS)
        if actor.role == Role.FITTER:
            if fitter not in (None, actor.name):
                raise AccessDenied(f"{access.who(actor)} may read only their own jobs, not "
                                   f"{fitter}'s")
            return self._booked_jobs(actor.name)
        if fitter is None:
            raise CaseError(f"{access.who(actor)} is no fitter: name the fitter whose jobs "
                            "to read (fitter=NAME)")
        return self._booked_jobs(fitter)

    def at_the_door(self, jobs: list[Job], *, actor: Actor) -> list[JobAtTheDoor]:
        """Per job: its lock serial (the client's bound lock), key numbers, checkpoints
        ticked (applied). ``jobs`` come from :meth:`jobs` or :meth:`for_fitter`, which
        checked ``actor``'s access; this checks it again for callers that did not."""
        if not (actor.role == "device" and getattr(actor, "fitter", None) is not None):
            access.require_alarm_group(actor, self.units, "read fitters' jobs", READERS)
        with self.core.read() as conn:
            done = proofs.applied_checkpoints(conn, [j.id for j in jobs])
            out = []
            for j in jobs:
                serials = refdata.locks_bound_to(conn, j.client_ref)
                numbers = sorted({s.key_number for s in rows.key_sets_of(
                    conn, j.client_ref, bound_only=True)})
                out.append(JobAtTheDoor(j, serials[0] if serials else None, numbers,
                                     done.get(j.id, [])))
        return out

    def checkpoints(self, job_id: int, *, actor: Actor) -> list[proofs.Checkpoint]:
        """The checkpoints the fitter's agent sent for the job, with the centre's verdicts."""
        proofs.require_lock_admin(actor, "read a job's checkpoints")
        with self.core.read() as conn:
            return proofs.checkpoints(conn, job_id)

    def _booked_jobs(self, fitter: str) -> list[Job]:
        j, b = t.binder_jobs.c, t.bookings.c
        query = (sa.select(t.binder_jobs).join(t.bookings, b.job_id == j.id)
                 .where(b.fitter == fitter, b.cancelled_at.is_(None), j.done_at.is_(None))
                 .order_by(b.start_at, j.id))
        with self.core.read() as conn:
            return rows.jobs(conn, query)


def _booked_for(fitter: str) -> sa.Select[Any]:
    b = t.bookings.c
    return sa.select(b.job_id).where(b.fitter == fitter, b.cancelled_at.is_(None))
