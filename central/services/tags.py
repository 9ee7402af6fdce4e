"""NFC tags (section 5): the providers' stock, tags issued to clients whose lock is
pending or impossible, and tags taken down or lost (agents stop accepting them)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from central import db as central_db
from central.cases import access, refdata, rows
from central.cases import db as t
from central.cases.access import Actor
from central.cases.errors import CaseConflict, TagNotIssuable, TagStockEmpty, UnknownRecord
from central.cases.values import Tag
from central.services.base import Service
from central.store import check_unit
from routine.flows import Role
from routine.tags import TagEvent, TagState, needs_tag, next_state


class Tags(Service):
    def add_stock(self, provider_unit: str, count: int, actor: Actor) -> int:
        """Add ``count`` tags to the provider's stock; returns the stock now."""
        unit = check_unit(provider_unit)
        access.require_role(actor, (Role.PROVIDER,), "add NFC tags to a stock")
        access.require_own_unit(actor, unit, "add NFC tags to its stock")
        if count < 1:
            raise CaseConflict(f"add at least one tag to the stock, not {count}")
        with self.core.write() as conn:
            s = t.tag_stock.c
            stmt = central_db.dialect_insert(conn, t.tag_stock)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["provider_unit"],
                set_={"count": s.count + stmt.excluded["count"],
                      "updated_at": stmt.excluded["updated_at"]},
            ), {"provider_unit": unit, "count": count, "updated_at": self.central.now()})
            return int(conn.execute(sa.select(s.count).where(s.provider_unit == unit))
                       .scalar_one())

    def stock(self, provider_unit: str, *, actor: Actor) -> int:
        """How many tags the provider has at hand."""
        access.require_routine_principal(actor)
        s = t.tag_stock.c
        with self.core.read() as conn:
            count = conn.execute(sa.select(s.count).where(s.provider_unit == provider_unit)
                                 ).scalar()
        return int(count or 0)

    def issue(self, uid: str, client_ref: str, provider_unit: str, actor: Actor) -> Tag:
        """Issue a tag from the provider's stock to a client whose lock is pending or
        impossible, and register it in the reference data for the agents."""
        client, key, unit = refdata.client_ref(client_ref), refdata.tag_uid(uid), \
            check_unit(provider_unit)
        access.require_role(actor, (Role.PROVIDER,), "issue NFC tags")
        access.require_own_unit(actor, unit, "issue its NFC tags")
        now = self.central.now()
        try:
            with self.core.write() as conn:
                self.issue_on(conn, key, client, unit, actor, now)
        except IntegrityError:  # issued by another process between check and insert
            raise TagNotIssuable(f"tag {key} was just issued elsewhere; use another") from None
        return self._one(key)

    def issue_on(self, conn: Connection, uid: str, client: str, unit: str, actor: Actor,
                 now: datetime) -> None:
        """Issue the tag on ``conn`` (checked by the caller: normalised ``uid``/``client``,
        access): the routine's checks, one tag out of the unit's stock, the tag's row and
        its reference record. The SUN provisioning's confirmation issues a new tag so."""
        self.check_client(conn, client)
        existing = conn.execute(sa.select(t.nfc_tags.c.client_ref)
                                .where(t.nfc_tags.c.uid == uid)).scalar()
        if existing is not None:
            raise TagNotIssuable(f"tag {uid} was already issued (to client {existing}); a tag "
                                 "is issued once: use another")
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

    def check_client(self, conn: Connection, client: str) -> None:
        """TagNotIssuable unless the client uses NFC tags (lock pending or impossible)."""
        status = refdata.lock_status(conn, client)
        if status is None:
            raise TagNotIssuable(f"client {client} is not in the reference data; import the "
                                 "client (lock status pending) or request the lock first")
        if not needs_tag(status, self.core.tag_when_no_lock_by_choice):
            raise TagNotIssuable(
                f"client {client} does not use NFC tags: lock status {status!r} (tags are "
                "for clients whose lock is pending, or where no lock can be installed)")

    def get(self, uid: str, *, actor: Actor) -> Tag:
        access.require_routine_principal(actor)
        return self._one(refdata.tag_uid(uid))

    def find(self, client_ref: str | None = None, *, actor: Actor,
             uid: str | None = None) -> list[Tag]:
        """Tags issued, oldest first (one client's, or all)."""
        access.require_routine_principal(actor)
        return self._find(client_ref, uid)

    def taken_down(self, uid: str, actor: Actor) -> Tag:
        """Staff took the tag down (the lock is installed); agents stop accepting it."""
        return self._event(uid, TagEvent.TAKE_DOWN, actor)

    def lost(self, uid: str, actor: Actor) -> Tag:
        """The tag is missing; agents stop accepting it (issue a new one if still needed)."""
        return self._event(uid, TagEvent.LOST, actor)

    def _event(self, uid: str, event: TagEvent, actor: Actor) -> Tag:
        key = refdata.tag_uid(uid)
        access.require_role(actor, (Role.PROVIDER,), f"record a tag {event}")
        g = t.nfc_tags.c
        now = self.central.now()
        with self.core.write() as conn:
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
        return self._one(key)

    def _one(self, uid: str) -> Tag:
        found = self._find(None, uid)
        if not found:
            raise UnknownRecord(f"no NFC tag {uid} was issued; list the client's tags")
        return found[0]

    def _find(self, client_ref: str | None, uid: str | None) -> list[Tag]:
        g = t.nfc_tags.c
        query = sa.select(t.nfc_tags).order_by(g.issued_at, g.uid)
        if client_ref is not None:
            query = query.where(g.client_ref == refdata.client_ref(client_ref))
        if uid is not None:
            query = query.where(g.uid == refdata.tag_uid(uid))
        with self.core.read() as conn:
            return rows.tags(conn, query)
