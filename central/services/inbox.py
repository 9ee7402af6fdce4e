"""The alarm group's "Digitala LÅS" inbox: the messages providers and assessors' steps send."""

from __future__ import annotations

import sqlalchemy as sa

from central.cases import access, rows
from central.cases import db as t
from central.cases.access import Actor
from central.cases.errors import UnknownRecord
from central.cases.values import InboxMessage
from central.services.base import Service
from central.services.cases import handle_messages


class Inbox(Service):
    def messages(self, actor: Actor, *, include_handled: bool = False) -> list[InboxMessage]:
        """The alarm group's "Digitala LÅS" messages, oldest first."""
        access.require_alarm_group(actor, self.units, "read the Digitala LÅS inbox")
        m = t.inbox_messages.c
        query = sa.select(t.inbox_messages).order_by(m.id)
        if not include_handled:
            query = query.where(m.handled_at.is_(None))
        with self.core.read() as conn:
            return [rows.message(r) for r in conn.execute(query)]

    def handle(self, message_id: int, actor: Actor) -> InboxMessage:
        """Mark a message handled (taking the case's next step does so too). Idempotent."""
        access.require_alarm_group(actor, self.units, "handle the Digitala LÅS inbox")
        m = t.inbox_messages.c
        with self.core.write() as conn:
            handle_messages(conn, m.id == message_id, actor.name, self.central.now())
            row = conn.execute(sa.select(t.inbox_messages).where(m.id == message_id)).first()
            if row is None:
                raise UnknownRecord(f"no message {message_id} in the Digitala LÅS inbox")
        return rows.message(row)
