"""The alarm group's shared schedule: fitters' appointments, double bookings refused.

A booking is the case's booking step (2a.6, 2b.7, 3a.5, 3b.5), recorded with it. The
fitter's principal row is locked before the overlap check (``SELECT .. FOR UPDATE`` on
PostgreSQL; SQLite has one writer), so two processes cannot both book one fitter twice.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db as central_db
from central.cases import access, rows
from central.cases import db as t
from central.cases.access import Actor
from central.cases.errors import AccessDenied, CaseConflict, CaseError, DoubleBooking, UnknownRecord
from central.cases.values import Booking, JobKind
from central.services.base import Service, note
from central.services.cases import take_step
from routine.flows import Role


class Schedule(Service):
    def book(self, job_id: int, fitter: str, start: datetime, end: datetime, actor: Actor, *,
             note: str | None = None) -> Booking:
        """Book the job for ``fitter`` from ``start`` to ``end`` in the shared schedule.

        Booking a booked job again moves the appointment. A fitter books for themself.
        Refused with :class:`DoubleBooking` when the fitter has another booking that
        overlaps.
        """
        _check_span(start, end)
        text = _note(note)
        access.require_alarm_group(actor, self.units, "book fitter jobs", (Role.FITTER,))
        if actor.role == Role.FITTER and actor.name != fitter:
            raise AccessDenied(f"{access.who(actor)} may book only for themself, not for "
                               f"{fitter}")
        now = self.central.now()
        with self.core.write() as conn:
            # Locks in one order everywhere: fitter, case, job (a step: case, job).
            self._lock_fitter(conn, fitter)
            case = rows.case_row(conn, rows.job_row(conn, job_id).case_id, for_update=True)
            job = rows.job_row(conn, job_id, for_update=True)
            if job.done_at is not None:
                raise CaseConflict(f"job {job_id} was done at {job.done_at.isoformat()}; "
                                   "nothing to book")
            clash = rows.overlapping(conn, fitter, start, end, job_id)
            if clash is not None:
                raise DoubleBooking(
                    f"{fitter} is already booked {clash.start.isoformat()} to "
                    f"{clash.end.isoformat()} for job {clash.job_id} (client "
                    f"{clash.client_ref}); choose another time", clash)
            b = t.bookings.c
            conn.execute(sa.update(t.bookings).where(b.job_id == job_id,
                                                     b.cancelled_at.is_(None))
                         .values(cancelled_at=now))
            booking_id = conn.execute(sa.insert(t.bookings).values(
                job_id=job_id, fitter=fitter, start_at=start, end_at=end,
                booked_by=actor.name, booked_at=now).returning(b.id)).scalar_one()
            action = ("book_installation" if job.kind == JobKind.INSTALL
                      else "book_removal")
            take_step(self.core, conn, case, action, None, actor, text, (), booking=booking_id)
            row = conn.execute(rows.bookings_query().where(b.id == booking_id)).one()
        return rows.booking(row)

    def bookings(self, *, actor: Actor, fitter: str | None = None,
                 day: date | None = None) -> list[Booking]:
        """The shared schedule, live bookings by start (a fitter's calendar, a day's): the
        alarm group's administrators' and fitters' to read."""
        access.require_alarm_group(actor, self.units, "read the shared schedule",
                                   (Role.ALARM_ADMIN, Role.FITTER))
        b = t.bookings.c
        query = rows.bookings_query()
        if fitter is not None:
            query = query.where(b.fitter == fitter)
        if day is not None:
            start, end = rows.day_bounds(day, self.central.day_zone)
            query = query.where(b.start_at < end, b.end_at > start)
        with self.core.read() as conn:
            return [rows.booking(r) for r in conn.execute(query)]

    def _lock_fitter(self, conn: Connection, fitter: str) -> None:
        """Lock the fitter's principal row: one booking of a fitter at a time."""
        d = central_db.devices.c
        row = conn.execute(sa.select(d.name, d.role, d.unit, d.revoked_at)
                           .where(d.name == fitter).with_for_update()).first()
        if (row is None or row.revoked_at is not None or row.role != Role.FITTER
                or row.unit != self.units.alarm_group):
            raise UnknownRecord(f"no fitter named {fitter!r} in the alarm group "
                                f"({self.units.alarm_group}); enrol them as a fitter of it")


_note = note


def _check_span(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise CaseError("give booking times with their time zone (aware datetimes)")
    if end <= start:
        raise CaseError(f"a booking ends after it starts: {start.isoformat()} to "
                        f"{end.isoformat()}")
