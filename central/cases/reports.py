"""Reports for the alarm group and the providers, computed from the centre's data.

- :func:`pending_installs`: open install cases with the lock requested, their age
  in Swedish working days against the routine's "up to about 5" (section 5).
- :func:`removals`: locks to remove, by due date (14 days after the last
  implementation ended), with the job and its booking.
- :func:`client_status`: per client, the lock status, NFC tags, key sets bound
  and the sets the routine says each unit should hold.
- :func:`visits_by_method`: visits per client by how they were registered (NFC
  tag or lock), from the visits the agents sent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db as central_db
from central.cases import db as t
from central.cases import refdata, rows
from central.cases.values import ImplementationKind, JobKind, KeySet, Tag, Value
from routine import deadlines, reference
from routine import keys as key_rules
from routine.flows import Flow
from routine.keys import KeyPolicy, KeyUnit


@dataclass(frozen=True)
class PendingInstall(Value):
    case_id: int
    flow: Flow
    client_ref: str
    state: str
    requested_at: datetime
    age_working_days: int
    target_on: date  # the last day within "up to about 5 working days"
    overdue: bool
    job_id: int | None
    fitter: str | None  # booked for
    booked_start: datetime | None


@dataclass(frozen=True)
class Removal(Value):
    client_ref: str
    lock_status: str | None
    ended_on: date | None  # the last implementation's end
    due_on: date | None  # within 14 days of it
    days_left: int | None
    level: deadlines.RemovalLevel | None
    case_id: int | None
    job_id: int | None
    fitter: str | None
    booked_start: datetime | None


@dataclass(frozen=True)
class ClientStatus(Value):
    client_ref: str
    lock_status: str | None
    services: tuple[ImplementationKind, ...]  # running
    tags: tuple[Tag, ...]
    key_sets: tuple[KeySet, ...]  # bound
    required_sets: dict[KeyUnit, int]
    missing_sets: dict[KeyUnit, int]  # required but not bound
    extra_sets: dict[KeyUnit, int]  # bound beyond what is required (to go back)


@dataclass(frozen=True)
class VisitMethods(Value):
    client_ref: str
    by_method: dict[str, int]  # "nfc_tag", "lock", ...
    total: int


def pending_installs(conn: Connection, today: date, zone: tzinfo) -> list[PendingInstall]:
    """Open install cases whose lock is requested, oldest request first."""
    requested = rows.requested_at(conn)
    bookings = _live_bookings(conn)
    c = t.cases.c
    found = []
    for row in conn.execute(sa.select(t.cases).where(c.id.in_(sorted(requested)))):
        at, job_id = requested[row.id]
        day = at.astimezone(zone).date()
        age = deadlines.pending_age(day, max(today, day))
        fitter, start = bookings.get(job_id, (None, None)) if job_id else (None, None)
        found.append(PendingInstall(
            case_id=row.id, flow=Flow(row.flow), client_ref=row.client_ref, state=row.state,
            requested_at=at, age_working_days=age,
            target_on=deadlines.pending_target_date(day),
            overdue=age > deadlines.LOCK_PENDING_TARGET_WORKING_DAYS, job_id=job_id,
            fitter=fitter, booked_start=start))
    return sorted(found, key=lambda p: (p.requested_at, p.case_id))


def removals(conn: Connection, today: date) -> list[Removal]:
    """Locks to remove: installed where every implementation ended, and open removal jobs;
    by due date (unknown dates last)."""
    installed = refdata.clients_with_status(conn, refdata.INSTALLED)
    j = t.binder_jobs.c
    jobs = {r.client_ref: r for r in conn.execute(
        sa.select(t.binder_jobs).where(j.done_at.is_(None), j.kind == JobKind.REMOVAL.value)
        .order_by(j.id))}
    bookings = _live_bookings(conn)
    found = []
    for client in sorted(set(installed) | set(jobs)):
        end = rows.last_end(rows.implementations_of(conn, client))
        job = jobs.get(client)
        if end is None and job is None:
            continue
        due = deadlines.removal_due(end) if end is not None else (job.due_on if job else None)
        fitter, start = bookings.get(job.id, (None, None)) if job else (None, None)
        found.append(Removal(
            client_ref=client, lock_status=refdata.lock_status(conn, client), ended_on=end,
            due_on=due, days_left=(due - today).days if due else None,
            level=deadlines.removal_warning(end, today) if end is not None else None,
            case_id=job.case_id if job else None, job_id=job.id if job else None,
            fitter=fitter, booked_start=start))
    return sorted(found, key=lambda r: (r.due_on is None, r.due_on or date.max, r.client_ref))


def client_status(conn: Connection, client_refs: list[str] | None,
                  policy: KeyPolicy) -> list[ClientStatus]:
    """Tags and keys per client (every client the routine knows of, or those given)."""
    clients = client_refs if client_refs is not None else _known_clients(conn)
    found = []
    for client in clients:
        running = rows.running_kinds(rows.implementations_of(conn, client))
        bound = rows.key_sets_of(conn, client, bound_only=True)
        held: dict[KeyUnit, int] = defaultdict(int)
        for s in bound:
            held[s.unit] += 1
        required = key_rules.required_key_sets(
            has_home_care=ImplementationKind.HOME_CARE in running,
            has_safety_alarm=ImplementationKind.SAFETY_ALARM in running,
            opens_door_themself=rows.latest_answer(conn, client,
                                                   "home_care_only_opens_door") == "yes",
            other_agreement=False,
            code_lock=rows.latest_answer(conn, client, "code_lock") == "yes",
            night_help=ImplementationKind.NIGHT_HELP in running, policy=policy)
        g = t.nfc_tags.c
        found.append(ClientStatus(
            client_ref=client, lock_status=refdata.lock_status(conn, client),
            services=tuple(sorted(running)),
            tags=tuple(rows.tags(conn, sa.select(t.nfc_tags).where(g.client_ref == client)
                                 .order_by(g.issued_at, g.uid))),
            key_sets=tuple(bound), required_sets=required,
            missing_sets={u: n - held[u] for u, n in required.items() if n > held[u]},
            extra_sets={u: n - required.get(u, 0) for u, n in held.items()
                        if n > required.get(u, 0)}))
    return found


def visits_by_method(conn: Connection, zone: tzinfo, start: date | None = None,
                     end: date | None = None) -> list[VisitMethods]:
    """Visits per client and registration method, on days ``start`` to ``end`` inclusive."""
    v = central_db.visits.c
    query = (sa.select(v.client_ref, v.method, sa.func.count())
             .group_by(v.client_ref, v.method).order_by(v.client_ref, v.method))
    if start is not None:
        query = query.where(v.visit_at >= rows.start_of(start, zone))
    if end is not None:
        query = query.where(v.visit_at < rows.start_of(end + timedelta(days=1), zone))
    by_client: dict[str, dict[str, int]] = defaultdict(dict)
    for client, method, count in conn.execute(query):
        by_client[client][method] = int(count)
    return [VisitMethods(client, methods, sum(methods.values()))
            for client, methods in sorted(by_client.items())]


def _live_bookings(conn: Connection) -> dict[int, tuple[str, datetime]]:
    return {r.job_id: (r.fitter, r.start_at) for r in conn.execute(rows.bookings_query())}


def _known_clients(conn: Connection) -> list[str]:
    r = t.implementations.c
    clients = set(conn.execute(sa.select(r.client_ref).distinct()).scalars())
    clients |= set(conn.execute(sa.select(t.key_sets.c.client_ref).distinct()).scalars())
    clients |= set(conn.execute(sa.select(t.nfc_tags.c.client_ref).distinct()).scalars())
    ri = central_db.reference_items.c
    clients |= set(conn.execute(sa.select(ri.key).where(ri.kind == reference.CLIENT,
                                                        ri.deleted.is_(False))).scalars())
    return sorted(clients)
