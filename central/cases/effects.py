"""What the centre does when a routine step fires (routine.flows.Effect), in its transaction.

One function per effect; each writes what the effect means and returns the case
fields it changes. The documentation text itself is the step's own row (the audit
trail holds it; :meth:`RoutineStore.documentation` reads it from there).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central.cases import db as t
from central.cases import refdata, rows
from central.cases.access import Actor, Units
from central.cases.errors import CaseConflict
from central.cases.facts import ALARM_KEY_UNITS
from central.cases.values import ImplementationKind, JobKind
from routine import deadlines
from routine.flows import LOCK_STATUS_AFTER, Effect, Flow, Outcome, Role, Step, machine
from routine.tags import TRANSITIONS, TagEvent

INSTALL_FLOWS = frozenset({Flow.INSTALL_ASSESSED, Flow.INSTALL_ALARM_ONLY})
#: Which implementations a role's "end the implementation" step ends (2b.3: the
#: provider its home care; 2b.5 / 3b.3: the alarm administrator the safety alarm).
ENDED_BY_ROLE: Mapping[Role, ImplementationKind] = {
    Role.PROVIDER: ImplementationKind.HOME_CARE,
    Role.ALARM_ADMIN: ImplementationKind.SAFETY_ALARM,
}


@dataclass(frozen=True)
class StepContext:
    conn: Connection
    case: rows.Row
    step: Step
    requires: tuple[str, ...]
    actor: Actor
    role: Role  # the routine's role the step was taken in
    now: datetime
    today: date
    units: Units
    note: str | None


def perform(ctx: StepContext) -> dict[str, Any]:
    """Carry out the step's effects; the case fields they change."""
    updates: dict[str, Any] = {}
    for effect in ctx.step.effects:
        updates |= HANDLERS[effect](ctx)
    if "job_marked_done" in ctx.requires:
        _mark_job_done(ctx)
    return updates


# --- shared with the store ---------------------------------------------------------------------


def tag_event(conn: Connection, client: str, event: TagEvent, actor: str,
              now: datetime) -> None:
    """Move the client's tags that the event applies to (routine.tags lifecycle)."""
    g = t.nfc_tags.c
    for state in {s for (s, e) in TRANSITIONS if e is event}:
        conn.execute(sa.update(t.nfc_tags)
                     .where(g.client_ref == client, g.state == state.value)
                     .values(state=TRANSITIONS[(state, event)].value, updated_at=now,
                             updated_by=actor))


def end_running(conn: Connection, client: str, kinds: Collection[ImplementationKind],
                unit: str | None, ended_on: date, actor: str, now: datetime) -> int:
    """End the client's running implementations of ``kinds`` (of ``unit`` if given).

    When nothing runs any more, the client's tags are due down (no visits, no tag).
    Returns how many were ended.
    """
    i = t.implementations.c
    where = [i.client_ref == client, i.ended_on.is_(None), i.kind.in_([k.value for k in kinds])]
    if unit is not None:
        where.append(i.unit == unit)
    started = conn.execute(sa.select(sa.func.max(i.started_on)).where(*where)).scalar()
    if started is not None and ended_on < started:
        raise CaseConflict(f"client {client}: an implementation cannot end ({ended_on}) before "
                           f"it started ({started})")
    ended = conn.execute(sa.update(t.implementations).where(*where)
                         .values(ended_on=ended_on, ended_by=actor, updated_at=now)).rowcount
    if not rows.running_kinds(rows.implementations_of(conn, client)):
        tag_event(conn, client, TagEvent.SERVICES_ENDED, actor, now)
    return int(ended)


def set_pending(conn: Connection, client: str, now: datetime) -> None:
    """A lock is requested: the client's lock is pending (tags are used meanwhile)."""
    if refdata.lock_status(conn, client) != refdata.INSTALLED:
        refdata.set_lock_status(conn, client, "pending", now)


# --- the effects -------------------------------------------------------------------------------


def _nothing(_: StepContext) -> dict[str, Any]:
    return {}


def _inbox(ctx: StepContext) -> dict[str, Any]:
    flow = Flow(ctx.case.flow)
    install = flow in INSTALL_FLOWS
    ctx.conn.execute(sa.insert(t.inbox_messages).values(
        case_id=ctx.case.id, client_ref=ctx.case.client_ref,
        kind=(JobKind.INSTALL if install else JobKind.REMOVAL).value,
        keys_exist=(ctx.step.answer == "keys_exist") if install else None,
        from_unit=ctx.actor.unit or ctx.case.provider_unit, sent_by=ctx.actor.name,
        sent_at=ctx.now, note=ctx.note))
    if install:
        set_pending(ctx.conn, ctx.case.client_ref, ctx.now)
    return {}


def _job(ctx: StepContext, kind: JobKind, due_on: date | None) -> None:
    ctx.conn.execute(sa.insert(t.binder_jobs).values(
        case_id=ctx.case.id, client_ref=ctx.case.client_ref, kind=kind.value,
        unit=ctx.units.alarm_group, created_by=ctx.actor.name, created_at=ctx.now,
        due_on=due_on))


def _install_job(ctx: StepContext) -> dict[str, Any]:
    _job(ctx, JobKind.INSTALL, None)
    set_pending(ctx.conn, ctx.case.client_ref, ctx.now)
    return {}


def _removal_job(ctx: StepContext) -> dict[str, Any]:
    end = rows.last_end(rows.implementations_of(ctx.conn, ctx.case.client_ref))
    _job(ctx, JobKind.REMOVAL, deadlines.removal_due(end) if end is not None else None)
    return {}


def _lock_installed(ctx: StepContext) -> dict[str, Any]:
    refdata.set_lock_status(ctx.conn, ctx.case.client_ref, refdata.INSTALLED, ctx.now)
    tag_event(ctx.conn, ctx.case.client_ref, TagEvent.LOCK_INSTALLED, ctx.actor.name, ctx.now)
    return {}


def _lock_removed(ctx: StepContext) -> dict[str, Any]:
    refdata.set_lock_status(ctx.conn, ctx.case.client_ref, "none", ctx.now)
    return {}


def _keys_registered(ctx: StepContext) -> dict[str, Any]:
    """3a.3/3a.4: the alarm group's keys are in the register; the case notes which."""
    k = t.key_sets.c
    bound = [k.client_ref == ctx.case.client_ref, k.returned_at.is_(None),
             k.key_unit.in_(ALARM_KEY_UNITS)]
    if ctx.conn.execute(sa.select(k.id).where(*bound).limit(1)).first() is None:
        raise CaseConflict(
            f"client {ctx.case.client_ref}: no key set of the alarm group is in the key "
            "register; register it with its key number, then take the step again")
    ctx.conn.execute(sa.update(t.key_sets).where(*bound, k.case_id.is_(None))
                     .values(case_id=ctx.case.id))
    return {}


def _key_receipt(ctx: StepContext) -> dict[str, Any]:
    """2b.8/3b.6: the alarm keys' signed receipts belong to this case."""
    r = t.key_receipts.c
    ctx.conn.execute(sa.update(t.key_receipts)
                     .where(r.client_ref == ctx.case.client_ref, r.case_id.is_(None),
                            r.key_unit.in_(ALARM_KEY_UNITS))
                     .values(case_id=ctx.case.id))
    return {}


def _implementation_ended(ctx: StepContext) -> dict[str, Any]:
    kind = ENDED_BY_ROLE[ctx.role]
    unit = ctx.case.provider_unit if kind is ImplementationKind.HOME_CARE else None
    end_running(ctx.conn, ctx.case.client_ref, (kind,), unit, ctx.today, ctx.actor.name,
                ctx.now)
    return {}


def _closed(ctx: StepContext) -> dict[str, Any]:
    state = machine(ctx.case.flow).states[ctx.step.to_state]
    outcome = Outcome(state.outcome) if state.outcome else None
    status = LOCK_STATUS_AFTER[outcome] if outcome is not None else None
    if status is not None:
        refdata.set_lock_status(ctx.conn, ctx.case.client_ref, status, ctx.now)
    if status == refdata.INSTALLED:
        tag_event(ctx.conn, ctx.case.client_ref, TagEvent.LOCK_INSTALLED, ctx.actor.name,
                  ctx.now)
    return {"closed_at": ctx.now, "outcome": outcome.value if outcome else None}


def _mark_job_done(ctx: StepContext) -> None:
    j = t.binder_jobs.c
    ctx.conn.execute(sa.update(t.binder_jobs)
                     .where(j.case_id == ctx.case.id, j.done_at.is_(None))
                     .values(done_at=ctx.now, done_by=ctx.actor.name))


HANDLERS: Mapping[Effect, Callable[[StepContext], dict[str, Any]]] = {
    Effect.DOCUMENT: _nothing,
    Effect.INBOX_DIGITALA_LAS: _inbox,
    Effect.BINDER_INSTALL_JOB: _install_job,
    Effect.BINDER_REMOVAL_JOB: _removal_job,
    Effect.BOOKING: _nothing,  # RoutineStore.book wrote it, in this transaction
    Effect.LOCK_INSTALLED: _lock_installed,
    Effect.LOCK_REMOVED: _lock_removed,
    Effect.KEYS_REGISTERED: _keys_registered,
    Effect.KEY_RECEIPT: _key_receipt,
    Effect.IMPLEMENTATION_ENDED: _implementation_ended,
    Effect.FILE_MOVES_TO_HOME_CARE: lambda _: {"file_moved_to_home_care": True},
    Effect.ALARM_STAYS: lambda _: {"alarm_stays": True},
    Effect.CASE_CLOSED: _closed,
}
