"""Cases of the four flows: opening, steps, the audit trail, the documentation texts.

A case moves only as the routine allows: each step is
:meth:`routine.flows.Machine.apply` with the facts read from the data
(:mod:`central.cases.facts`); one append-only ``case_steps`` row per step, written in the
same transaction as the case's new state and the step's effects
(:mod:`central.cases.effects`). A case the actor may not see is answered as a missing one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from central.cases import access, effects, facts, refdata, rows
from central.cases import db as t
from central.cases.access import Actor
from central.cases.errors import AccessDenied, CaseConflict, UnknownRecord
from central.cases.values import Case, CaseStep, DocumentationText, ImplementationKind
from central.services.base import Core, Service, note
from central.store import check_unit
from routine import texts
from routine.flows import Effect, Flow, Role, WrongRole, machine

log = logging.getLogger(__name__)


class Cases(Service):
    def open(self, flow: Flow | str, client_ref: str, actor: Actor, *,
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
        text = _note(note)
        if actor.role == Role.ASSESSOR:
            assessor_unit = actor.unit
        m, now = machine(flow), self.central.now()
        try:
            with self.core.write() as conn:
                provider = _provider_unit(conn, flow, client, provider_unit)
                open_ = open_case_id(conn, client, flow)
                if open_ is not None:
                    raise _already_open(flow, client, open_)
                case_id = conn.execute(sa.insert(t.cases).values(
                    flow=flow.value, client_ref=client, state=m.start, provider_unit=provider,
                    assessor_unit=assessor_unit, opened_by=actor.name, opened_at=now,
                    updated_at=now, file_moved_to_home_care=False, alarm_stays=False,
                    note=text).returning(t.cases.c.id)).scalar_one()
        except IntegrityError:  # opened by another process between check and insert
            raise _already_open(flow, client, None) from None
        log.info("case %s (%s) opened for client %s by %s", case_id, flow, client, actor.name)
        return self.get(case_id, actor=actor)

    def act(self, case_id: int, action: str, answer: str | None, actor: Actor, *,
            note: str | None = None, checks: Collection[str] = ()) -> CaseStep:
        """Take one step of the case's flow: ``action`` with its ``answer`` (None for a
        plain step), as ``actor``; ``checks`` are the on-site checkpoints ticked
        (:data:`central.cases.facts.CONFIRMED`). Booking steps go through
        :meth:`central.services.schedule.Schedule.book`.
        """
        ticked = facts.checked(checks)
        text = _note(note)
        access.require_routine_principal(actor)  # before anything is loaded
        with self.core.write() as conn:
            case = visible_case(self.core, conn, case_id, actor, for_update=True)
            return take_step(self.core, conn, case, action, answer, actor, text, ticked)

    def get(self, case_id: int, *, actor: Actor) -> Case:
        """The case with its steps (the audit trail) and what may be done next
        (``Case.allowed``)."""
        access.require_routine_principal(actor)  # before anything is loaded
        with self.core.read() as conn:
            row = visible_case(self.core, conn, case_id, actor)
            return rows.case(row, rows.steps_of(conn, [case_id]).get(case_id, ()))

    def find(self, *, actor: Actor, client_ref: str | None = None,
             flow: Flow | str | None = None, open_only: bool = False) -> list[Case]:
        """The cases ``actor`` may see (its role's scope and unit), oldest first."""
        c = t.cases.c
        query = sa.select(t.cases).order_by(c.id)
        if client_ref is not None:
            query = query.where(c.client_ref == refdata.client_ref(client_ref))
        if flow is not None:
            query = query.where(c.flow == Flow(flow).value)
        if open_only:
            query = query.where(c.closed_at.is_(None))
        query = scoped(self.core, query, actor)
        with self.core.read() as conn:
            return rows.cases(conn, query)

    def documentation(self, client_ref: str, *, actor: Actor) -> list[DocumentationText]:
        """The texts to paste into the case system for the client, where the routine put
        them, oldest first (``field``: "Personuppgifter, övrig information"), of the cases
        ``actor`` may see."""
        client = refdata.client_ref(client_ref)
        s, c = t.case_steps.c, t.cases.c
        query = (sa.select(s.seq, s.case_id, s.seed, s.actor, s.at, s.documentation)
                 .join(t.cases, c.id == s.case_id)
                 .where(c.client_ref == client, s.documentation.is_not(None))
                 .order_by(s.seq))
        query = scoped(self.core, query, actor)
        with self.core.read() as conn:
            return [DocumentationText(client_ref=client, text=r.documentation, case_id=r.case_id,
                                      step_seq=r.seq, seed=r.seed, who=r.actor, at=r.at,
                                      field=texts.DOCUMENTATION_FIELD)
                    for r in conn.execute(query)]


# --- shared with the schedule and the inbox -------------------------------------------------

def visible_case(core: Core, conn: Connection, case_id: int, actor: Actor, *,
                 for_update: bool = False) -> rows.Row:
    """The case row, if ``actor`` may see it; a case it may not see is answered as a
    missing one (UnknownRecord), so no answer tells which ids exist."""
    try:
        row = rows.case_row(conn, case_id, for_update=for_update)
        access.check_case(actor, Flow(row.flow), row.provider_unit, row.assessor_unit,
                          core.units)
    except (UnknownRecord, AccessDenied):
        if access.is_admin(actor):
            raise
        raise UnknownRecord(f"no case {case_id} among those {access.who(actor)} may see; "
                            "list your cases to find its id") from None
    return row


def take_step(core: Core, conn: Connection, case: rows.Row, action: str, answer: str | None,
              actor: Actor, note: str | None, ticked: Collection[str], *,
              booking: int | None = None) -> CaseStep:
    """Apply, record and carry out one step on the (locked) case row."""
    flow = Flow(case.flow)
    access.check_case(actor, flow, case.provider_unit, case.assessor_unit, core.units,
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
    now = core.central.now()
    seq = conn.execute(sa.insert(t.case_steps).values(
        case_id=case.id, from_state=step.from_state, action=step.action,
        answer=step.answer, to_state=step.to_state, seed=step.seed, actor=actor.name,
        role=actor.role, acting_as=role.value, unit=actor.unit, at=now,
        documentation=step.documentation, effects=[e.value for e in step.effects],
        checks=known, note=note).returning(t.case_steps.c.seq)).scalar_one()
    ctx = effects.StepContext(conn, case, step, transition.requires, actor, role, now,
                              core.central.today(), core.units, note)
    updates = effects.perform(ctx)
    conn.execute(sa.update(t.cases).where(t.cases.c.id == case.id)
                 .values(state=step.to_state, updated_at=now, **updates))
    if role is Role.ALARM_ADMIN:  # the administrator took the case from the inbox
        handle_messages(conn, t.inbox_messages.c.case_id == case.id, actor.name, now)
    log.info("case %s (%s) %s: %s %s -> %s by %s", case.id, flow, step.seed, action,
             answer or "", step.to_state, actor.name)
    return rows.step(conn.execute(sa.select(t.case_steps)
                                  .where(t.case_steps.c.seq == seq)).one())


def scoped(core: Core, query: sa.Select[Any], actor: Actor) -> sa.Select[Any]:
    """``query`` over cases narrowed to those ``actor`` may see."""
    access.require_routine_principal(actor)
    c = t.cases.c
    if access.is_admin(actor):
        return query
    if actor.role == Role.PROVIDER:
        return query.where(c.provider_unit == actor.unit)
    if actor.role == Role.ASSESSOR:
        return query.where(c.assessor_unit == actor.unit,
                           c.flow.in_([f.value for f in access.ASSESSED_FLOWS]))
    access.require_alarm_group(actor, core.units, "list cases",
                               (Role.ALARM_ADMIN, Role.FITTER))
    return query


def handle_messages(conn: Connection, where: sa.ColumnElement[bool], actor: str,
                    now: datetime) -> int:
    """Mark the inbox messages matching ``where`` handled by ``actor``."""
    m = t.inbox_messages.c
    return int(conn.execute(sa.update(t.inbox_messages).where(where, m.handled_at.is_(None))
                            .values(handled_at=now, handled_by=actor)).rowcount)


def open_case_id(conn: Connection, client: str, flow: Flow) -> int | None:
    c = t.cases.c
    found: int | None = conn.execute(sa.select(c.id).where(
        c.client_ref == client, c.flow == flow.value, c.closed_at.is_(None))).scalar()
    return found


_note = note


def _provider_unit(conn: Connection, flow: Flow, client: str, given: str | None) -> str | None:
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


def _already_open(flow: Flow, client: str, case_id: int | None) -> CaseConflict:
    which = f"case {case_id}" if case_id is not None else "a case"
    return CaseConflict(f"client {client} already has {which} of flow {flow} open; go on "
                        "with it instead")
