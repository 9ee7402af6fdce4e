"""Reading the routine's tables: queries shared by the store, alerts and reports, and
rows turned into values (:mod:`central.cases.values`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db as central_db
from central.cases import db as t
from central.cases.errors import UnknownRecord
from central.cases.values import (
    Booking,
    Case,
    CaseStep,
    Implementation,
    ImplementationKind,
    InboxMessage,
    Job,
    JobKind,
    KeyReceipt,
    KeySet,
    KeyUse,
    Tag,
)
from routine.flows import LOCK_STATUS_AFTER, Flow, Outcome, Role, machine
from routine.keys import KeyUnit, KeyUseReason
from routine.tags import TagState, state_after_tap

Row = sa.Row[Any]

INSTALL_FLOWS = (Flow.INSTALL_ASSESSED.value, Flow.INSTALL_ALARM_ONLY.value)
#: The states in which a case leaves the client's lock installed (the routine's outcomes).
INSTALLED_STATES = frozenset(
    s.name for f in Flow for s in machine(f).states.values()
    if s.outcome is not None and LOCK_STATUS_AFTER[Outcome(s.outcome)] == "installed")

# --- implementations ---------------------------------------------------------------------------


def implementation(row: Row) -> Implementation:
    return Implementation(id=row.id, client_ref=row.client_ref,
                          kind=ImplementationKind(row.kind), unit=row.unit,
                          started_on=row.started_on, ended_on=row.ended_on,
                          started_by=row.started_by, ended_by=row.ended_by)


def implementations_of(conn: Connection, client: str) -> list[Implementation]:
    i = t.implementations.c
    query = sa.select(t.implementations).where(i.client_ref == client).order_by(i.started_on,
                                                                                 i.id)
    return [implementation(r) for r in conn.execute(query)]


def running_kinds(implementations: Iterable[Implementation]) -> set[ImplementationKind]:
    return {i.kind for i in implementations if i.running}


def last_end(implementations: Iterable[Implementation]) -> date | None:
    """The end that starts the 14-day removal clock once nothing runs; None while any runs."""
    items = list(implementations)
    if not items or any(i.running for i in items):
        return None
    return max(i.ended_on for i in items if i.ended_on is not None)


# --- cases -------------------------------------------------------------------------------------


def case_row(conn: Connection, case_id: int, *, for_update: bool = False) -> Row:
    query = sa.select(t.cases).where(t.cases.c.id == case_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise UnknownRecord(f"no case {case_id}; list the client's cases to find its id")
    return row


def step(row: Row) -> CaseStep:
    return CaseStep(seq=row.seq, case_id=row.case_id, from_state=row.from_state,
                    action=row.action, answer=row.answer, to_state=row.to_state, seed=row.seed,
                    actor=row.actor, role=row.role, acting_as=Role(row.acting_as),
                    unit=row.unit, at=row.at, documentation=row.documentation,
                    effects=tuple(row.effects), checks=dict(row.checks), note=row.note)


def steps_of(conn: Connection, case_ids: Iterable[int]) -> dict[int, list[CaseStep]]:
    s = t.case_steps.c
    found: dict[int, list[CaseStep]] = {}
    ids = sorted(set(case_ids))
    for i in range(0, len(ids), 500):
        query = (sa.select(t.case_steps).where(s.case_id.in_(ids[i:i + 500]))
                 .order_by(s.case_id, s.seq))
        for row in conn.execute(query):
            found.setdefault(row.case_id, []).append(step(row))
    return found


def case(row: Row, steps: Iterable[CaseStep] = ()) -> Case:
    return Case(id=row.id, flow=Flow(row.flow), client_ref=row.client_ref, state=row.state,
                provider_unit=row.provider_unit, assessor_unit=row.assessor_unit,
                opened_by=row.opened_by, opened_at=row.opened_at, updated_at=row.updated_at,
                closed_at=row.closed_at, outcome=row.outcome,
                file_moved_to_home_care=row.file_moved_to_home_care,
                alarm_stays=row.alarm_stays, note=row.note, steps=tuple(steps))


def cases(conn: Connection, query: sa.Select[Any]) -> list[Case]:
    rows = conn.execute(query).all()
    steps = steps_of(conn, (r.id for r in rows))
    return [case(r, steps.get(r.id, ())) for r in rows]


def latest_answer(conn: Connection, client: str, action: str) -> str | None:
    """The client's latest answer to ``action`` in any case (e.g. ``code_lock``)."""
    s, c = t.case_steps.c, t.cases.c
    query = (sa.select(s.answer).join(t.cases, c.id == s.case_id)
             .where(c.client_ref == client, s.action == action)
             .order_by(s.seq.desc()).limit(1))
    answer: str | None = conn.execute(query).scalar()
    return answer


def installed_at(conn: Connection, clients: Iterable[str]) -> dict[str, datetime]:
    """When each client's lock was last recorded installed by a case step."""
    s, c = t.case_steps.c, t.cases.c
    query = (sa.select(c.client_ref, sa.func.max(s.at))
             .join(t.cases, c.id == s.case_id)
             .where(c.client_ref.in_(sorted(set(clients))),
                    s.to_state.in_(sorted(INSTALLED_STATES)))
             .group_by(c.client_ref))
    return {ref: at for ref, at in conn.execute(query)}


# --- inbox, binder, schedule -------------------------------------------------------------------


def message(row: Row) -> InboxMessage:
    return InboxMessage(id=row.id, case_id=row.case_id, client_ref=row.client_ref,
                        kind=JobKind(row.kind), keys_exist=row.keys_exist,
                        from_unit=row.from_unit, sent_by=row.sent_by, sent_at=row.sent_at,
                        note=row.note, handled_at=row.handled_at, handled_by=row.handled_by)


def booking(row: Row) -> Booking:
    return Booking(id=row.id, job_id=row.job_id, case_id=row.case_id,
                   client_ref=row.client_ref, kind=JobKind(row.kind), fitter=row.fitter,
                   start=row.start_at, end=row.end_at, booked_by=row.booked_by,
                   booked_at=row.booked_at)


def bookings_query() -> sa.Select[Any]:
    """Live bookings with their job's case, client and kind."""
    b, j = t.bookings.c, t.binder_jobs.c
    return (sa.select(b.id, b.job_id, j.case_id, j.client_ref, j.kind, b.fitter, b.start_at,
                      b.end_at, b.booked_by, b.booked_at)
            .join(t.binder_jobs, j.id == b.job_id)
            .where(b.cancelled_at.is_(None))
            .order_by(b.start_at, b.id))


def overlapping(conn: Connection, fitter: str, start: datetime, end: datetime,
                other_than_job: int) -> Booking | None:
    """The fitter's first live booking overlapping [start, end), other than the job's own."""
    b = t.bookings.c
    row = conn.execute(bookings_query().where(b.fitter == fitter, b.job_id != other_than_job,
                                              b.start_at < end, b.end_at > start)).first()
    return None if row is None else booking(row)


def jobs(conn: Connection, query: sa.Select[Any]) -> list[Job]:
    rows = conn.execute(query).all()
    live: dict[int, Booking] = {}
    ids = [r.id for r in rows]
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for row in conn.execute(bookings_query().where(t.bookings.c.job_id.in_(chunk))):
            live[row.job_id] = booking(row)
    return [Job(id=r.id, case_id=r.case_id, client_ref=r.client_ref, kind=JobKind(r.kind),
                unit=r.unit, created_by=r.created_by, created_at=r.created_at, due_on=r.due_on,
                done_at=r.done_at, done_by=r.done_by, booking=live.get(r.id)) for r in rows]


def job_row(conn: Connection, job_id: int, *, for_update: bool = False) -> Row:
    query = sa.select(t.binder_jobs).where(t.binder_jobs.c.id == job_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise UnknownRecord(f"no job {job_id} in the binder; list the binder to find its id")
    return row


def start_of(day: date, zone: tzinfo) -> datetime:
    """The first instant of ``day`` in ``zone`` (the centre's day zone)."""
    return datetime.combine(day, time(), zone)


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    return start_of(day, zone), start_of(day + timedelta(days=1), zone)


def requested_at(conn: Connection) -> dict[int, tuple[datetime, int | None]]:
    """Open install cases: when the lock was requested (the first inbox message, 2a.4, or
    install job, 3a.4) and their open install job if any."""
    c, m, j = t.cases.c, t.inbox_messages.c, t.binder_jobs.c
    open_cases = (sa.select(c.id).where(c.closed_at.is_(None), c.flow.in_(INSTALL_FLOWS))
                  .scalar_subquery())
    found: dict[int, tuple[datetime, int | None]] = {}
    for case_id, at in conn.execute(sa.select(m.case_id, sa.func.min(m.sent_at))
                                    .where(m.case_id.in_(open_cases),
                                           m.kind == JobKind.INSTALL.value)
                                    .group_by(m.case_id)):
        found[case_id] = (at, None)
    for row in conn.execute(sa.select(j.case_id, j.id, j.created_at)
                            .where(j.case_id.in_(open_cases), j.kind == JobKind.INSTALL.value,
                                   j.done_at.is_(None))
                            .order_by(j.id)):
        first = found.get(row.case_id, (row.created_at, None))[0]
        found[row.case_id] = (min(first, row.created_at), row.id)
    return found


# --- keys and tags -----------------------------------------------------------------------------


def key_set(row: Row) -> KeySet:
    return KeySet(id=row.id, client_ref=row.client_ref, unit=KeyUnit(row.key_unit),
                  holder=row.holder, key_number=row.key_number,
                  registered_by=row.registered_by, registered_at=row.registered_at,
                  case_id=row.case_id, returned_at=row.returned_at, receipt_id=row.receipt_id)


def key_sets_of(conn: Connection, client: str, *, bound_only: bool = False) -> list[KeySet]:
    k = t.key_sets.c
    query = sa.select(t.key_sets).where(k.client_ref == client).order_by(k.id)
    if bound_only:
        query = query.where(k.returned_at.is_(None))
    return [key_set(r) for r in conn.execute(query)]


def receipt(row: Row) -> KeyReceipt:
    return KeyReceipt(id=row.id, client_ref=row.client_ref, unit=KeyUnit(row.key_unit),
                      holder=row.holder, key_numbers=tuple(row.key_numbers),
                      signed_by=row.signed_by, returned_by=row.returned_by,
                      returned_at=row.returned_at, case_id=row.case_id)


def key_use(row: Row) -> KeyUse:
    return KeyUse(id=row.id, client_ref=row.client_ref, unit=KeyUnit(row.key_unit),
                  reason=KeyUseReason(row.reason), note=row.note, lock_status=row.lock_status,
                  used_by=row.used_by, used_at=row.used_at)


def tags(conn: Connection, query: sa.Select[Any]) -> list[Tag]:
    """Tags, an issued one shown IN_USE once a visit was registered with it."""
    rows = conn.execute(query).all()
    issued = sorted(r.uid for r in rows if r.state == TagState.ISSUED)
    used: set[str] = set()
    v = central_db.visits.c
    for i in range(0, len(issued), 500):
        used |= set(conn.execute(sa.select(v.tag_uid).distinct()
                                 .where(v.tag_uid.in_(issued[i:i + 500]))).scalars())
    return [Tag(uid=r.uid, client_ref=r.client_ref, provider_unit=r.provider_unit,
                state=state_after_tap(TagState(r.state)) if r.uid in used else TagState(r.state),
                issued_by=r.issued_by, issued_at=r.issued_at, updated_at=r.updated_at,
                updated_by=r.updated_by, key_version=r.key_version) for r in rows]
