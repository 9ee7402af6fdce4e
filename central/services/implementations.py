"""Implementations (verkställigheter): which unit delivers which service to a client."""

from __future__ import annotations

import logging
from datetime import date

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from central.cases import access, effects, refdata, rows
from central.cases import db as t
from central.cases.access import Actor
from central.cases.errors import AccessDenied, ImplementationConflict
from central.cases.values import Implementation, ImplementationKind
from central.services.base import Service
from central.store import check_unit

log = logging.getLogger(__name__)


class Implementations(Service):
    def start(self, client_ref: str, kind: ImplementationKind | str, unit: str,
              started_on: date, actor: Actor) -> Implementation:
        """Record that ``unit`` delivers ``kind`` to the client from ``started_on``."""
        client, kind = refdata.client_ref(client_ref), ImplementationKind(kind)
        access.check_implementation(actor, kind, check_unit(unit), self.units)
        now = self.central.now()
        try:
            with self.core.write() as conn:
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

    def end(self, client_ref: str, kind: ImplementationKind | str, ended_on: date,
            actor: Actor) -> Implementation:
        """End the client's running ``kind`` implementation on ``ended_on``."""
        client, kind = refdata.client_ref(client_ref), ImplementationKind(kind)
        # The role before anything is loaded; another unit's implementation is answered
        # as none running, so the answer does not tell what runs elsewhere.
        access.require_role(actor, (access.IMPLEMENTATION_ROLES[kind],),
                            f"end a {kind} implementation")
        i = t.implementations.c
        with self.core.write() as conn:
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

    def of_client(self, client_ref: str, *, actor: Actor) -> list[Implementation]:
        """The client's implementations, running and ended, oldest first."""
        access.require_routine_principal(actor)
        with self.core.read() as conn:
            return rows.implementations_of(conn, refdata.client_ref(client_ref))


def _running(row: Implementation) -> ImplementationConflict:
    return ImplementationConflict(
        f"client {row.client_ref} already has a running {row.kind} implementation (of "
        f"{row.unit}, since {row.started_on}); end it first")
