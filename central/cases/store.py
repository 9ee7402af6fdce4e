"""The routine store: cases of the four flows, their audit trail and effects, per role and unit.

:class:`RoutineStore` sits on a :class:`central.store.CentralStore` and shares its
engine, clock and day zone. What must hold, and how:

- **A case moves only as the routine allows.** Each step is
  :meth:`routine.flows.Machine.apply` with the facts read from the data
  (:mod:`central.cases.facts`); the routine's errors pass through with the state
  and the actions allowed there. A step for another role is :class:`AccessDenied`.
- **Every step is on record, once, for good.** One append-only ``case_steps`` row
  per step (no code path updates or deletes one; a trigger refuses it), written in
  the same transaction as the case's new state and the step's effects
  (:mod:`central.cases.effects`): all of it commits, or none.
- **Steps on one case, bookings of one fitter, are serialised.** A step locks its
  case row, a booking its fitter's row (``SELECT .. FOR UPDATE`` on PostgreSQL;
  SQLite has one writer), so a double booking cannot slip between two processes.
- **Who may do what is decided here** (:mod:`central.cases.access`), so the HTTP
  API and the CLI cannot differ.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from central import db as central_db
from central.cases import access, effects, facts, proofs, refdata, reports, rows, sun, suncheck
from central.cases import db as t
from central.cases.access import Actor, Units
from central.cases.alerts import Alert, Settings, compute
from central.cases.errors import (
    AccessDenied,
    CaseConflict,
    CaseError,
    DoubleBooking,
    ImplementationConflict,
    KeyNumberBound,
    NoKeysBound,
    TagNotIssuable,
    TagStockEmpty,
    UnknownRecord,
)
from central.cases.values import (
    Booking,
    Case,
    CaseStep,
    DocumentationText,
    Implementation,
    ImplementationKind,
    InboxMessage,
    Job,
    JobKind,
    KeyReceipt,
    KeySet,
    KeyUse,
    Principal,
    Tag,
)
from central.storable import bad_text
from central.store import CentralStore, check_unit
from routine import deadlines, texts
from routine import keys as key_rules
from routine.flows import Effect, Flow, Role, WrongRole, machine
from routine.keys import DEFAULT_POLICY, KeyPolicy, KeyUnit
from routine.tags import TagEvent, TagState, needs_tag, next_state

log = logging.getLogger(__name__)

MAX_NOTE = 2000  # free text on steps, messages, key uses: a paragraph, not a file
MAX_KEY_NUMBER = 64  # key_sets.key_number


class RoutineStore:
    """The routine's data at the centre. Thread-safe, like the central store under it.

    ``units`` names the alarm and night group; ``key_policy`` is the municipality's
    reading of what section 4 leaves open (:class:`routine.keys.KeyPolicy`);
    ``tag_when_no_lock_by_choice`` lets providers issue NFC tags to clients who chose
    to have no lock (lock status ``none``): off, as the seed names only clients whose
    lock is pending or impossible (section 5). ``tag_url_base`` and ``tag_policy`` are the
    SUN defaults (:mod:`central.cases.sun`) where the centre's settings table names none
    (``nyckelfri-central tag-keys url-base|policy`` set them for every process).
    """

    def __init__(self, central: CentralStore, *, units: Units | None = None,
                 key_policy: KeyPolicy = DEFAULT_POLICY,
                 tag_when_no_lock_by_choice: bool = False,
                 tag_url_base: str = sun.DEFAULT_URL_BASE,
                 tag_policy: str = sun.AUTO) -> None:
        self.central = central
        self.units = units or Units()
        self.key_policy = key_policy
        self.tag_when_no_lock_by_choice = tag_when_no_lock_by_choice
        self.proofs = proofs.LockProofs(self)
        central.add_applier(proofs.APPLIER, proofs.KINDS, self.proofs.apply)
        self.sun = sun.SunAuthority(self, url_base=tag_url_base, tag_policy=tag_policy)
        central.add_ingest_check(suncheck.CHECKER, suncheck.KINDS, suncheck.check_taps)

    # The central store's transactions (connection errors become DatabaseUnavailable).
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.central._write() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.central._read() as conn:
            yield conn

    # --- principals ------------------------------------------------------------------------

    def principal(self, name: str) -> Principal:
        """An enrolled, unrevoked principal by name (for the CLI's ``--as NAME``)."""
        d = central_db.devices.c
        with self._read() as conn:
            row = conn.execute(sa.select(d.name, d.role, d.unit, d.revoked_at)
                               .where(d.name == name)).first()
        if row is None or row.revoked_at is not None:
            raise UnknownRecord(f"no enrolled principal named {name!r}; enrol it with its role "
                                "and unit first")
        return Principal(row.name, row.role, row.unit)

    # --- implementations (verkställigheter) ------------------------------------------------

    def start_implementation(self, client_ref: str, kind: ImplementationKind | str, unit: str,
                             started_on: date, actor: Actor) -> Implementation:
        """Record that ``unit`` delivers ``kind`` to the client from ``started_on``."""
        client, kind = refdata.client_ref(client_ref), ImplementationKind(kind)
        access.check_implementation(actor, kind, check_unit(unit), self.units)
        now = self.central.now()
        try:
            with self._write() as conn:
                i = t.implementations.c
                running = conn.execute(sa.select(t.implementations).where(
                    i.client_ref == client, i.kind == kind.value, i.ended_on.is_(None))).first()
                if running is not None:
                    raise _running(rows.implementation(running))
                new_id = conn.execute(sa.insert(t.implementations).values(
                    client_ref=client, kind=kind.value, unit=unit, started_on=started_on,
                    started_by=actor.name, updated_at=now).returning(i.id)).scalar_one()
                row = conn.execute(sa.select(t.implementations).where(i.id == new_id)).one()
        except IntegrityError:  # started by another process between check and insert
            raise ImplementationConflict(
                f"client {client} already has a running {kind} implementation; end it first"
            ) from None
        log.info("client %s: %s implementation started by %s (%s)", client, kind, unit,
                 actor.name)
        return rows.implementation(row)

    def end_implementation(self, client_ref: str, kind: ImplementationKind | str,
                           ended_on: date, actor: Actor) -> Implementation:
        """End the client's running ``kind`` implementation on ``ended_on``."""
        client, kind = refdata.client_ref(client_ref), ImplementationKind(kind)
        # The role before anything is loaded; another unit's implementation is answered
        # as none running, so the answer does not tell what runs elsewhere.
        access.require_role(actor, (access.IMPLEMENTATION_ROLES[kind],),
                            f"end a {kind} implementation")
        i = t.implementations.c
        with self._write() as conn:
            row = conn.execute(sa.select(t.implementations).where(
                i.client_ref == client, i.kind == kind.value, i.ended_on.is_(None))
                .with_for_update()).first()
            try:
                if row is not None:
                    access.check_implementation(actor, kind, row.unit, self.units)
            except AccessDenied:
                row = None
            if row is None:
                raise ImplementationConflict(
                    f"client {client} has no running {kind} implementation that "
                    f"{access.who(actor)} runs; list the client's implementations")
            effects.end_running(conn, client, (kind,), row.unit, ended_on, actor.name,
                                self.central.now())
            ended = conn.execute(sa.select(t.implementations).where(i.id == row.id)).one()
        return rows.implementation(ended)

    def implementations(self, client_ref: str, *,
                        actor: Actor | None = None) -> list[Implementation]:
        """The client's implementations, running and ended, oldest first."""
        if actor is not None:
            access.require_routine_principal(actor)
        with self._read() as conn:
            return rows.implementations_of(conn, refdata.client_ref(client_ref))

    # --- cases -----------------------------------------------------------------------------

    def open_case(self, flow: Flow | str, client_ref: str, actor: Actor, *,
                  provider_unit: str | None = None, assessor_unit: str | None = None,
                  note: str | None = None) -> Case:
        """Open a case of ``flow`` for the client, in the flow's start state.

        2a/2b are opened by an assessor (its unit becomes the case's assessor unit) for
        ``provider_unit``, the provider the order or cancellation goes to; for 2b it
        defaults to the unit of the client's running home care. 3a/3b are opened by an
        alarm administrator. One case of a flow may be open per client.
        """
        flow, client = Flow(flow), refdata.client_ref(client_ref)
        access.check_open(actor, flow, self.units)
        note = _note(note)
        if actor.role == Role.ASSESSOR:
            assessor_unit = actor.unit
        m, now = machine(flow), self.central.now()
        try:
            with self._write() as conn:
                provider = self._provider_unit(conn, flow, client, provider_unit)
                open_ = _open_case_id(conn, client, flow)
                if open_ is not None:
                    raise _already_open(flow, client, open_)
                case_id = conn.execute(sa.insert(t.cases).values(
                    flow=flow.value, client_ref=client, state=m.start, provider_unit=provider,
                    assessor_unit=assessor_unit, opened_by=actor.name, opened_at=now,
                    updated_at=now, file_moved_to_home_care=False, alarm_stays=False,
                    note=note).returning(t.cases.c.id)).scalar_one()
        except IntegrityError:  # opened by another process between check and insert
            raise _already_open(flow, client, None) from None
        log.info("case %s (%s) opened for client %s by %s", case_id, flow, client, actor.name)
        return self.case(case_id)

    def _provider_unit(self, conn: Connection, flow: Flow, client: str,
                       given: str | None) -> str | None:
        if given is not None:
            return check_unit(given)
        if flow is Flow.INSTALL_ASSESSED:
            raise CaseConflict("a 2a order goes to a provider: give provider_unit")
        if flow is Flow.REMOVE_ASSESSED:
            running = [i for i in rows.implementations_of(conn, client)
                       if i.running and i.kind is ImplementationKind.HOME_CARE]
            if not running:
                raise CaseConflict(f"client {client} has no running home care: give "
                                   "provider_unit, the provider the cancellation goes to")
            return running[0].unit
        return None

    def act(self, case_id: int, action: str, answer: str | None, actor: Actor, *,
            note: str | None = None, checks: Collection[str] = ()) -> CaseStep:
        """Take one step of the case's flow: ``action`` with its ``answer`` (None for a
        plain step), as ``actor``; ``checks`` are the on-site checkpoints ticked
        (:data:`central.cases.facts.CONFIRMED`). Booking steps go through :meth:`book`.
        """
        ticked = facts.checked(checks)
        note = _note(note)
        access.require_routine_principal(actor)  # before anything is loaded
        with self._write() as conn:
            case = self._visible_case(conn, case_id, actor, for_update=True)
            step = self._step(conn, case, action, answer, actor, note, ticked)
        return step

    def _visible_case(self, conn: Connection, case_id: int, actor: Actor, *,
                      for_update: bool = False) -> rows.Row:
        """The case row, if ``actor`` may see it; a case it may not see is answered as a
        missing one (UnknownRecord), so no answer tells which ids exist."""
        try:
            row = rows.case_row(conn, case_id, for_update=for_update)
            access.check_case(actor, Flow(row.flow), row.provider_unit, row.assessor_unit,
                              self.units)
        except (UnknownRecord, AccessDenied):
            if access.is_admin(actor):
                raise
            raise UnknownRecord(f"no case {case_id} among those {access.who(actor)} may see; "
                                "list your cases to find its id") from None
        return row

    def _step(self, conn: Connection, case: rows.Row, action: str, answer: str | None,
              actor: Actor, note: str | None, ticked: Collection[str], *,
              booking: int | None = None) -> CaseStep:
        """Apply, record and carry out one step on the (locked) case row."""
        flow = Flow(case.flow)
        access.check_case(actor, flow, case.provider_unit, case.assessor_unit, self.units,
                          f"act on case {case.id}")
        m = machine(flow)
        transition = m.transition(case.state, action, answer)
        role = access.acting_role(actor, m.actions[action].role)
        known = facts.facts(conn, case, transition.requires, ticked)
        try:
            step = m.apply(case.state, action, answer, role, known)
        except WrongRole as exc:
            raise AccessDenied(f"{access.who(actor)}: {exc}") from exc
        if Effect.BOOKING in step.effects and booking is None:
            raise CaseConflict(f"{action} is taken by booking a time in the shared schedule: "
                               f"book the case's job (job id in the binder) for a fitter")
        now = self.central.now()
        seq = conn.execute(sa.insert(t.case_steps).values(
            case_id=case.id, from_state=step.from_state, action=step.action,
            answer=step.answer, to_state=step.to_state, seed=step.seed, actor=actor.name,
            role=actor.role, acting_as=role.value, unit=actor.unit, at=now,
            documentation=step.documentation, effects=[e.value for e in step.effects],
            checks=known, note=note).returning(t.case_steps.c.seq)).scalar_one()
        ctx = effects.StepContext(conn, case, step, transition.requires, actor, role, now,
                                  self.central.today(), self.units, note)
        updates = effects.perform(ctx)
        conn.execute(sa.update(t.cases).where(t.cases.c.id == case.id)
                     .values(state=step.to_state, updated_at=now, **updates))
        if role is Role.ALARM_ADMIN:  # the administrator took the case from the inbox
            _handle_messages(conn, t.inbox_messages.c.case_id == case.id, actor.name, now)
        log.info("case %s (%s) %s: %s %s -> %s by %s", case.id, flow, step.seed, action,
                 answer or "", step.to_state, actor.name)
        return rows.step(conn.execute(sa.select(t.case_steps)
                                      .where(t.case_steps.c.seq == seq)).one())

    def case(self, case_id: int, *, actor: Actor | None = None) -> Case:
        """The case with its steps (and what may be done next: ``Case.allowed``)."""
        if actor is not None:
            access.require_routine_principal(actor)  # before anything is loaded
        with self._read() as conn:
            row = (rows.case_row(conn, case_id) if actor is None
                   else self._visible_case(conn, case_id, actor))
            return rows.case(row, rows.steps_of(conn, [case_id]).get(case_id, ()))

    def cases(self, *, client_ref: str | None = None, flow: Flow | str | None = None,
              open_only: bool = False, actor: Actor | None = None) -> list[Case]:
        """Cases, oldest first; with ``actor``, only those of its unit (its role's scope)."""
        c = t.cases.c
        query = sa.select(t.cases).order_by(c.id)
        if client_ref is not None:
            query = query.where(c.client_ref == refdata.client_ref(client_ref))
        if flow is not None:
            query = query.where(c.flow == Flow(flow).value)
        if open_only:
            query = query.where(c.closed_at.is_(None))
        if actor is not None:
            query = self._scoped(query, actor)
        with self._read() as conn:
            return rows.cases(conn, query)

    def _scoped(self, query: sa.Select[Any], actor: Actor) -> sa.Select[Any]:
        access.require_routine_principal(actor)
        c = t.cases.c
        if access.is_admin(actor):
            return query
        if actor.role == Role.PROVIDER:
            return query.where(c.provider_unit == actor.unit)
        if actor.role == Role.ASSESSOR:
            return query.where(c.assessor_unit == actor.unit,
                               c.flow.in_([f.value for f in access.ASSESSED_FLOWS]))
        access.require_alarm_group(actor, self.units, "list cases",
                                   (Role.ALARM_ADMIN, Role.FITTER))
        return query

    def documentation(self, client_ref: str, *,
                      actor: Actor | None = None) -> list[DocumentationText]:
        """The texts to paste into the case system for the client, where the routine put
        them, oldest first (``field``: "Personuppgifter, övrig information")."""
        client = refdata.client_ref(client_ref)
        s, c = t.case_steps.c, t.cases.c
        query = (sa.select(s.seq, s.case_id, s.seed, s.actor, s.at, s.documentation)
                 .join(t.cases, c.id == s.case_id)
                 .where(c.client_ref == client, s.documentation.is_not(None))
                 .order_by(s.seq))
        if actor is not None:
            query = self._scoped(query, actor)
        with self._read() as conn:
            return [DocumentationText(client_ref=client, text=r.documentation, case_id=r.case_id,
                                      step_seq=r.seq, seed=r.seed, who=r.actor, at=r.at,
                                      field=texts.DOCUMENTATION_FIELD)
                    for r in conn.execute(query)]

    # --- the "Digitala LÅS" inbox -----------------------------------------------------------

    def inbox(self, actor: Actor, *, include_handled: bool = False) -> list[InboxMessage]:
        """The alarm group's "Digitala LÅS" messages, oldest first."""
        access.require_alarm_group(actor, self.units, "read the Digitala LÅS inbox")
        m = t.inbox_messages.c
        query = sa.select(t.inbox_messages).order_by(m.id)
        if not include_handled:
            query = query.where(m.handled_at.is_(None))
        with self._read() as conn:
            return [rows.message(r) for r in conn.execute(query)]

    def handle_inbox(self, message_id: int, actor: Actor) -> InboxMessage:
        """Mark a message handled (taking the case's next step does so too). Idempotent."""
        access.require_alarm_group(actor, self.units, "handle the Digitala LÅS inbox")
        m = t.inbox_messages.c
        with self._write() as conn:
            _handle_messages(conn, m.id == message_id, actor.name, self.central.now())
            row = conn.execute(sa.select(t.inbox_messages).where(m.id == message_id)).first()
            if row is None:
                raise UnknownRecord(f"no message {message_id} in the Digitala LÅS inbox")
        return rows.message(row)

    # --- the binder and the shared schedule ------------------------------------------------

    def binder(self, actor: Actor, *, kind: JobKind | str | None = None,
               open_only: bool = True, fitter: str | None = None) -> list[Job]:
        """The fitters' jobs (oldest first), with their live booking; ``fitter``: booked
        for that fitter."""
        access.require_alarm_group(actor, self.units, "read the binder",
                                   (Role.ALARM_ADMIN, Role.FITTER))
        j = t.binder_jobs.c
        query = sa.select(t.binder_jobs).where(j.unit == self.units.alarm_group).order_by(j.id)
        if kind is not None:
            query = query.where(j.kind == JobKind(kind).value)
        if open_only:
            query = query.where(j.done_at.is_(None))
        if fitter is not None:
            query = query.where(j.id.in_(_booked_for(fitter)))
        with self._read() as conn:
            return rows.jobs(conn, query)

    def job(self, job_id: int, *, actor: Actor | None = None) -> Job:
        if actor is not None:
            access.require_alarm_group(actor, self.units, "read the binder",
                                       (Role.ALARM_ADMIN, Role.FITTER))
        with self._read() as conn:
            found = rows.jobs(conn, sa.select(t.binder_jobs)
                              .where(t.binder_jobs.c.id == job_id))
        if not found:
            raise UnknownRecord(f"no job {job_id} in the binder; list the binder to find its id")
        return found[0]

    def jobs_for_fitter(self, fitter: str) -> list[Job]:
        """The open jobs booked for ``fitter``, by appointment: what the fitter's agent pulls."""
        j, b = t.binder_jobs.c, t.bookings.c
        query = (sa.select(t.binder_jobs).join(t.bookings, b.job_id == j.id)
                 .where(b.fitter == fitter, b.cancelled_at.is_(None), j.done_at.is_(None))
                 .order_by(b.start_at, j.id))
        with self._read() as conn:
            return rows.jobs(conn, query)

    def book(self, job_id: int, fitter: str, start: datetime, end: datetime, actor: Actor, *,
             note: str | None = None) -> Booking:
        """Book the job for ``fitter`` from ``start`` to ``end`` in the shared schedule.

        It is the case's booking step (2a.6, 2b.7, 3a.5, 3b.5), recorded with it;
        booking a booked job again moves the appointment. A fitter books for themself.
        Refused with :class:`DoubleBooking` when the fitter has another booking that
        overlaps: the fitter's row is locked first, so two processes cannot both pass.
        """
        _check_span(start, end)
        note = _note(note)
        access.require_alarm_group(actor, self.units, "book fitter jobs", (Role.FITTER,))
        if actor.role == Role.FITTER and actor.name != fitter:
            raise AccessDenied(f"{access.who(actor)} may book only for themself, not for "
                               f"{fitter}")
        now = self.central.now()
        with self._write() as conn:
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
            self._step(conn, case, action, None, actor, note, (), booking=booking_id)
            row = conn.execute(rows.bookings_query().where(b.id == booking_id)).one()
        return rows.booking(row)

    def _lock_fitter(self, conn: Connection, fitter: str) -> None:
        """Lock the fitter's principal row: one booking of a fitter at a time."""
        d = central_db.devices.c
        row = conn.execute(sa.select(d.name, d.role, d.unit, d.revoked_at)
                           .where(d.name == fitter).with_for_update()).first()
        if (row is None or row.revoked_at is not None or row.role != Role.FITTER
                or row.unit != self.units.alarm_group):
            raise UnknownRecord(f"no fitter named {fitter!r} in the alarm group "
                                f"({self.units.alarm_group}); enrol them as a fitter of it")

    def schedule(self, *, fitter: str | None = None, day: date | None = None) -> list[Booking]:
        """The shared schedule: live bookings by start (a fitter's calendar, a day's)."""
        b = t.bookings.c
        query = rows.bookings_query()
        if fitter is not None:
            query = query.where(b.fitter == fitter)
        if day is not None:
            start, end = rows.day_bounds(day, self.central.day_zone)
            query = query.where(b.start_at < end, b.end_at > start)
        with self._read() as conn:
            return [rows.booking(r) for r in conn.execute(query)]

    # --- locks in the lock system -----------------------------------------------------------

    def bind_lock(self, serial: str, client_ref: str, actor: Actor) -> None:
        """Bind a lock to the client in the centre's lock records (2a.7 "kopplat till
        brukaren"); agents learn it by sync."""
        self._put_lock(serial, refdata.client_ref(client_ref), actor)

    def unbind_lock(self, serial: str, actor: Actor) -> None:
        """Unbind a lock from its client (2b.8 "frånkopplat brukaren i Phoniro")."""
        self._put_lock(serial, None, actor)

    def _put_lock(self, serial: str, client: str | None, actor: Actor) -> None:
        access.require_alarm_group(actor, self.units, "bind and unbind locks",
                                   (Role.ALARM_ADMIN, Role.FITTER))
        key = refdata.lock_serial(serial)
        with self._write() as conn:
            refdata.put_lock(conn, key, client, self.central.now())

    def enrol_lock(self, serial: str, secret: bytes, actor: Actor) -> None:
        """Keep the lock's 16-byte secret (AES-128) at the centre, its only holder: agents
        never see it, no API answer carries it. Admin or alarm administrator."""
        proofs.require_lock_admin(actor, "enrol lock secrets")
        key = refdata.lock_serial(serial)
        proofs.check_secret(secret)
        with self._write() as conn:
            proofs.enrol(conn, key, secret, actor.name, self.central.now())
        log.info("lock %s: secret enrolled by %s", key, actor.name)

    def lock_enrolled(self, serial: str) -> bool:
        s = t.lock_secrets.c
        with self._read() as conn:
            return conn.execute(sa.select(s.serial).where(
                s.serial == refdata.lock_serial(serial))).first() is not None

    def lock_verifications(self, actor: Actor, *, serial: str | None = None,
                           job_id: int | None = None) -> list[proofs.LockVerification]:
        """The centre's verdicts on lock verifications, oldest first."""
        proofs.require_lock_admin(actor, "read lock verifications")
        with self._read() as conn:
            return proofs.verifications(
                conn, serial=refdata.lock_serial(serial) if serial is not None else None,
                job_id=job_id)

    def job_checkpoints(self, job_id: int) -> list[proofs.Checkpoint]:
        with self._read() as conn:
            return proofs.checkpoints(conn, job_id)

    def fitter_jobs(self, jobs: list[Job]) -> list[tuple[Job, str | None, list[str],
                                                          list[str]]]:
        """Per job: its lock serial (the client's bound lock), key numbers, checkpoints
        ticked (applied)."""
        with self._read() as conn:
            done = proofs.applied_checkpoints(conn, [j.id for j in jobs])
            out = []
            for j in jobs:
                serials = refdata.locks_bound_to(conn, j.client_ref)
                numbers = sorted({s.key_number for s in rows.key_sets_of(conn, j.client_ref,
                                                              bound_only=True)})
                out.append((j, serials[0] if serials else None, numbers, done.get(j.id, [])))
        return out

    # --- the key register (section 4) -------------------------------------------------------

    def register_key_set(self, client_ref: str, unit: KeyUnit | str, key_number: str,
                         actor: Actor, *, holder: str | None = None) -> KeySet:
        """Record a set of physical keys by key number (unique while bound)."""
        client, key_unit = refdata.client_ref(client_ref), KeyUnit(unit)
        number = _key_number(key_number)
        now = self.central.now()
        try:
            with self._write() as conn:
                owner = self._holder(conn, client, key_unit, holder, actor)
                access.check_keys(actor, key_unit, owner, self.units,
                                  f"register {key_unit} keys")
                k = t.key_sets.c
                bound = conn.execute(sa.select(t.key_sets).where(
                    k.key_number == number, k.returned_at.is_(None))).first()
                if bound is not None:
                    raise _bound(rows.key_set(bound))
                new_id = conn.execute(sa.insert(t.key_sets).values(
                    client_ref=client, key_unit=key_unit.value, holder=owner,
                    key_number=number, registered_by=actor.name, registered_at=now)
                    .returning(k.id)).scalar_one()
                row = conn.execute(sa.select(t.key_sets).where(k.id == new_id)).one()
        except IntegrityError:  # bound by another process between check and insert
            raise KeyNumberBound(f"key number {number} was just bound to another client; "
                                 "check the key register") from None
        return rows.key_set(row)

    def _holder(self, conn: Connection, client: str, key_unit: KeyUnit, given: str | None,
                actor: Actor) -> str:
        """The unit that holds ``key_unit``'s set: the alarm or night group, or a provider."""
        fixed = self.units.holder(key_unit)
        if fixed is not None:
            return fixed
        if given is not None:
            return check_unit(given)
        if actor.role == Role.PROVIDER and actor.unit:
            return actor.unit
        running = [i.unit for i in rows.implementations_of(conn, client)
                   if i.running and i.kind is ImplementationKind.HOME_CARE]
        if not running:
            raise CaseConflict(f"client {client} has no running home care: give the holder "
                               "(the provider unit that holds the keys)")
        return running[0]

    def key_sets(self, client_ref: str, *, bound_only: bool = False) -> list[KeySet]:
        with self._read() as conn:
            return rows.key_sets_of(conn, refdata.client_ref(client_ref), bound_only=bound_only)

    def key_number_unbound(self, key_number: str) -> bool:
        """Whether no client has the key number bound in the register (the 2b.9 check)."""
        k = t.key_sets.c
        with self._read() as conn:
            return conn.execute(sa.select(k.id).where(
                k.key_number == _key_number(key_number), k.returned_at.is_(None))).first() is None

    def required_key_sets(self, client_ref: str, policy: KeyPolicy | None = None, *,
                          other_agreement: bool = False) -> dict[KeyUnit, int]:
        """Key sets each unit should hold (routine.keys) from the client's running
        implementations and the case answers (opens the door themself, code lock)."""
        client = refdata.client_ref(client_ref)
        with self._read() as conn:
            running = rows.running_kinds(rows.implementations_of(conn, client))
            opens_door = rows.latest_answer(conn, client, "home_care_only_opens_door") == "yes"
            code_lock = rows.latest_answer(conn, client, "code_lock") == "yes"
        return key_rules.required_key_sets(
            has_home_care=ImplementationKind.HOME_CARE in running,
            has_safety_alarm=ImplementationKind.SAFETY_ALARM in running,
            opens_door_themself=opens_door, other_agreement=other_agreement,
            code_lock=code_lock, night_help=ImplementationKind.NIGHT_HELP in running,
            policy=policy or self.key_policy)

    def return_keys(self, client_ref: str, unit: KeyUnit | str, signed_by: str, actor: Actor,
                    *, holder: str | None = None) -> KeyReceipt:
        """Hand the unit's bound key sets back to the client against a signed receipt."""
        client, key_unit = refdata.client_ref(client_ref), KeyUnit(unit)
        k = t.key_sets.c
        now = self.central.now()
        with self._write() as conn:
            owner = holder or self.units.holder(key_unit) or (
                actor.unit if actor.role == Role.PROVIDER else None)
            where = [k.client_ref == client, k.key_unit == key_unit.value,
                     k.returned_at.is_(None)]
            if owner is not None:
                where.append(k.holder == owner)
            sets = conn.execute(sa.select(t.key_sets).where(*where).order_by(k.id)
                                .with_for_update()).all()
            if not sets:
                raise NoKeysBound(f"client {client} has no {key_unit} key set bound"
                                  f"{f' held by {owner}' if owner else ''}; list the key sets")
            owner = sets[0].holder
            access.check_keys(actor, key_unit, owner, self.units, f"return {key_unit} keys",
                              fitter_may=True)
            numbers = [s.key_number for s in sets if s.holder == owner]
            for number in numbers:  # the routine's receipt rules (signed, numbered)
                key_rules.KeyReceipt(client, key_unit, number, self.central.today(),
                                     signed_by, sets=1)
            receipt_id = conn.execute(sa.insert(t.key_receipts).values(
                client_ref=client, key_unit=key_unit.value, holder=owner, key_numbers=numbers,
                signed_by=signed_by.strip(), returned_by=actor.name, returned_at=now)
                .returning(t.key_receipts.c.id)).scalar_one()
            conn.execute(sa.update(t.key_sets)
                         .where(*where, k.holder == owner)
                         .values(returned_at=now, receipt_id=receipt_id))
            row = conn.execute(sa.select(t.key_receipts)
                               .where(t.key_receipts.c.id == receipt_id)).one()
        return rows.receipt(row)

    def key_receipts(self, client_ref: str) -> list[KeyReceipt]:
        r = t.key_receipts.c
        with self._read() as conn:
            return [rows.receipt(row) for row in conn.execute(
                sa.select(t.key_receipts)
                .where(r.client_ref == refdata.client_ref(client_ref)).order_by(r.id))]

    def record_key_use(self, client_ref: str, unit: KeyUnit | str, actor: Actor, *,
                       note: str = "", emergency: bool = False,
                       lock_available: bool = True) -> KeyUse:
        """A physical key used at the client, classified by the routine
        (routine.keys.classify_key_use) against the client's lock status now."""
        client, key_unit = refdata.client_ref(client_ref), KeyUnit(unit)
        note = _note(note) or ""
        now = self.central.now()
        with self._write() as conn:
            holder = self._holder(conn, client, key_unit, None, actor)
            access.check_keys(actor, key_unit, holder, self.units, f"use {key_unit} keys",
                              fitter_may=True)
            status = refdata.lock_status(conn, client)
            use = key_rules.classify_key_use(client, key_unit, status == refdata.INSTALLED,
                                             lock_available, emergency, note=note)
            use_id = conn.execute(sa.insert(t.key_uses).values(
                client_ref=client, key_unit=key_unit.value, reason=use.reason.value,
                note=note, lock_status=status, used_by=actor.name, unit=actor.unit,
                used_at=now).returning(t.key_uses.c.id)).scalar_one()
            row = conn.execute(sa.select(t.key_uses).where(t.key_uses.c.id == use_id)).one()
        if not use.justified:
            log.warning("client %s: %s used a physical key although the lock works (%s)",
                        client, actor.name, key_unit)
        return rows.key_use(row)

    def record_emergency_key_use(self, client_ref: str, unit: KeyUnit | str, reason: str,
                                 actor: Actor, *, lock_available: bool = True) -> KeyUse:
        """An emergency use of a physical key (4.4); ``reason`` says what happened."""
        return self.record_key_use(client_ref, unit, actor, note=reason, emergency=True,
                                   lock_available=lock_available)

    def key_uses(self, client_ref: str | None = None) -> list[KeyUse]:
        u = t.key_uses.c
        query = sa.select(t.key_uses).order_by(u.id)
        if client_ref is not None:
            query = query.where(u.client_ref == refdata.client_ref(client_ref))
        with self._read() as conn:
            return [rows.key_use(r) for r in conn.execute(query)]

    # --- NFC tags (section 5) ---------------------------------------------------------------

    def add_tag_stock(self, provider_unit: str, count: int, actor: Actor) -> int:
        """Add ``count`` tags to the provider's stock; returns the stock now."""
        unit = check_unit(provider_unit)
        access.require_role(actor, (Role.PROVIDER,), "add NFC tags to a stock")
        access.require_own_unit(actor, unit, "add NFC tags to its stock")
        if count < 1:
            raise CaseConflict(f"add at least one tag to the stock, not {count}")
        with self._write() as conn:
            s = t.tag_stock.c
            stmt = central_db.dialect_insert(conn, t.tag_stock)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["provider_unit"],
                set_={"count": s.count + stmt.excluded["count"],
                      "updated_at": stmt.excluded["updated_at"]},
            ), {"provider_unit": unit, "count": count, "updated_at": self.central.now()})
            return int(conn.execute(sa.select(s.count).where(s.provider_unit == unit))
                       .scalar_one())

    def tag_stock(self, provider_unit: str) -> int:
        s = t.tag_stock.c
        with self._read() as conn:
            count = conn.execute(sa.select(s.count).where(s.provider_unit == provider_unit)
                                 ).scalar()
        return int(count or 0)

    def issue_tag(self, uid: str, client_ref: str, provider_unit: str, actor: Actor) -> Tag:
        """Issue a tag from the provider's stock to a client whose lock is pending or
        impossible, and register it in the reference data for the agents."""
        client, key, unit = refdata.client_ref(client_ref), refdata.tag_uid(uid), \
            check_unit(provider_unit)
        access.require_role(actor, (Role.PROVIDER,), "issue NFC tags")
        access.require_own_unit(actor, unit, "issue its NFC tags")
        now = self.central.now()
        try:
            with self._write() as conn:
                self.issue_on(conn, key, client, unit, actor, now)
        except IntegrityError:  # issued by another process between check and insert
            raise TagNotIssuable(f"tag {key} was just issued elsewhere; use another") from None
        return self.tag(key)

    def issue_on(self, conn: Connection, uid: str, client: str, unit: str, actor: Actor,
                 now: datetime) -> None:
        """Issue the tag on ``conn`` (checked: normalised ``uid``/``client``, access): the
        routine's checks, one tag out of the unit's stock, the tag's row and its reference
        record. The SUN provisioning's confirmation issues a new tag this way."""
        self._check_tag_use(conn, client, uid)
        s = t.tag_stock.c
        taken = conn.execute(sa.update(t.tag_stock)
                             .where(s.provider_unit == unit, s.count > 0)
                             .values(count=s.count - 1, updated_at=now)).rowcount
        if not taken:
            raise TagStockEmpty(f"{unit} has no NFC tags in stock; add stock first "
                                "(section 5: each provider keeps tags at hand)")
        conn.execute(sa.insert(t.nfc_tags).values(
            uid=uid, client_ref=client, provider_unit=unit,
            state=TagState.ISSUED.value, issued_by=actor.name, issued_at=now,
            updated_at=now, updated_by=actor.name))
        refdata.put_tag(conn, uid, client, True, now)

    def check_tag_client(self, conn: Connection, client: str) -> None:
        """TagNotIssuable unless the client uses NFC tags (lock pending or impossible)."""
        status = refdata.lock_status(conn, client)
        if status is None:
            raise TagNotIssuable(f"client {client} is not in the reference data; import the "
                                 "client (lock status pending) or request the lock first")
        if not needs_tag(status, self.tag_when_no_lock_by_choice):
            raise TagNotIssuable(
                f"client {client} does not use NFC tags: lock status {status!r} (tags are "
                "for clients whose lock is pending, or where no lock can be installed)")

    def _check_tag_use(self, conn: Connection, client: str, uid: str) -> None:
        self.check_tag_client(conn, client)
        existing = conn.execute(sa.select(t.nfc_tags.c.client_ref)
                                .where(t.nfc_tags.c.uid == uid)).scalar()
        if existing is not None:
            raise TagNotIssuable(f"tag {uid} was already issued (to client {existing}); a tag "
                                 "is issued once: use another")

    def tag(self, uid: str) -> Tag:
        found = self.tags(uid=uid)
        if not found:
            raise UnknownRecord(f"no NFC tag {uid} was issued; list the client's tags")
        return found[0]

    def tags(self, client_ref: str | None = None, *, uid: str | None = None) -> list[Tag]:
        g = t.nfc_tags.c
        query = sa.select(t.nfc_tags).order_by(g.issued_at, g.uid)
        if client_ref is not None:
            query = query.where(g.client_ref == refdata.client_ref(client_ref))
        if uid is not None:
            query = query.where(g.uid == refdata.tag_uid(uid))
        with self._read() as conn:
            return rows.tags(conn, query)

    def tag_taken_down(self, uid: str, actor: Actor) -> Tag:
        """Staff took the tag down (the lock is installed); agents stop accepting it."""
        return self._tag_event(uid, TagEvent.TAKE_DOWN, actor)

    def tag_lost(self, uid: str, actor: Actor) -> Tag:
        """The tag is missing; agents stop accepting it (issue a new one if still needed)."""
        return self._tag_event(uid, TagEvent.LOST, actor)

    def _tag_event(self, uid: str, event: TagEvent, actor: Actor) -> Tag:
        key = refdata.tag_uid(uid)
        access.require_role(actor, (Role.PROVIDER,), f"record a tag {event}")
        g = t.nfc_tags.c
        now = self.central.now()
        with self._write() as conn:
            row = conn.execute(sa.select(t.nfc_tags).where(g.uid == key)
                               .with_for_update()).first()
            if row is None or not (access.is_admin(actor) or actor.unit == row.provider_unit):
                # another unit's tag is answered as a missing one: no answer tells which exist
                raise UnknownRecord(f"no NFC tag {key} was issued to {actor.unit or 'a unit'}; "
                                    "list the client's tags")
            after = next_state(TagState(row.state), event)  # TagError passes through
            conn.execute(sa.update(t.nfc_tags).where(g.uid == key)
                         .values(state=after.value, updated_at=now, updated_by=actor.name))
            refdata.put_tag(conn, key, row.client_ref, False, now)
        return self.tag(key)

    # --- alerts and reports -----------------------------------------------------------------

    def alerts(self, today: date | None = None, *, no_visit_hours: float = 24,
               removal_warn_days: int = deadlines.REMOVAL_WARN_DAYS) -> list[Alert]:
        """What someone must act on now, most severe first (:mod:`central.cases.alerts`).

        ``today`` (default: the centre's) dates the deadlines; the no-visit gap,
        ``no_visit_hours``, is measured to the centre's clock now.
        """
        settings = Settings(now=self.central.now(), today=today or self.central.today(),
                            zone=self.central.day_zone,
                            no_visit_gap=timedelta(hours=no_visit_hours),
                            removal_warn_days=removal_warn_days, key_policy=self.key_policy)
        with self._read() as conn:
            return compute(conn, settings)


    def pending_installs(self, today: date | None = None) -> list[reports.PendingInstall]:
        """Open install cases with the lock requested, and their age in working days."""
        with self._read() as conn:
            return reports.pending_installs(conn, today or self.central.today(),
                                            self.central.day_zone)

    def removals(self, today: date | None = None) -> list[reports.Removal]:
        """Locks to remove, by due date (14 days after the last implementation ended)."""
        with self._read() as conn:
            return reports.removals(conn, today or self.central.today())

    def client_status(self, client_ref: str | None = None, *,
                      policy: KeyPolicy | None = None) -> list[reports.ClientStatus]:
        """Lock status, tags and key sets (held against required) per client."""
        clients = None if client_ref is None else [refdata.client_ref(client_ref)]
        with self._read() as conn:
            return reports.client_status(conn, clients, policy or self.key_policy)

    def visits_by_method(self, *, start: date | None = None,
                         end: date | None = None) -> list[reports.VisitMethods]:
        """Visits per client by registration method (tag or lock), days start..end."""
        with self._read() as conn:
            return reports.visits_by_method(conn, self.central.day_zone, start, end)


# --- helpers -------------------------------------------------------------------------------


def _note(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NOTE or bad_text(value):
        raise CaseError(f"a note is text of at most {MAX_NOTE} characters")
    return value.strip() or None


def _key_number(value: str) -> str:
    number = value.strip() if isinstance(value, str) else ""
    if not number or len(number) > MAX_KEY_NUMBER or bad_text(number):
        raise CaseError(f"key number {value!r} is not usable: 1-{MAX_KEY_NUMBER} characters")
    return number


def _check_span(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise CaseError("give booking times with their time zone (aware datetimes)")
    if end <= start:
        raise CaseError(f"a booking ends after it starts: {start.isoformat()} to "
                        f"{end.isoformat()}")


def _running(row: Implementation) -> ImplementationConflict:
    return ImplementationConflict(
        f"client {row.client_ref} already has a running {row.kind} implementation (of "
        f"{row.unit}, since {row.started_on}); end it first")


def _open_case_id(conn: Connection, client: str, flow: Flow) -> int | None:
    c = t.cases.c
    found: int | None = conn.execute(sa.select(c.id).where(
        c.client_ref == client, c.flow == flow.value, c.closed_at.is_(None))).scalar()
    return found


def _already_open(flow: Flow, client: str, case_id: int | None) -> CaseConflict:
    which = f"case {case_id}" if case_id is not None else "a case"
    return CaseConflict(f"client {client} already has {which} of flow {flow} open; go on "
                        "with it instead")


def _bound(row: KeySet) -> KeyNumberBound:
    return KeyNumberBound(
        f"key number {row.key_number} is bound to client {row.client_ref} ({row.unit}, held "
        f"by {row.holder}) since {row.registered_at.isoformat()}; return it first")


def _booked_for(fitter: str) -> sa.Select[Any]:
    b = t.bookings.c
    return sa.select(b.job_id).where(b.fitter == fitter, b.cancelled_at.is_(None))


def _handle_messages(conn: Connection, where: sa.ColumnElement[bool], actor: str,
                     now: datetime) -> int:
    m = t.inbox_messages.c
    return int(conn.execute(sa.update(t.inbox_messages).where(where, m.handled_at.is_(None))
                            .values(handled_at=now, handled_by=actor)).rowcount)
