"""The key register (section 4): key sets by key number, who holds them, the sets the
routine requires, signed receipts when keys go back to the client, and key uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from central.cases import access, refdata, rows
from central.cases import db as t
from central.cases.access import Actor
from central.cases.errors import CaseConflict, KeyNumberBound, NoKeysBound
from central.cases.values import ImplementationKind, KeyReceipt, KeySet, KeyUse
from central.services.base import Service, key_number, note
from central.store import check_unit
from routine import keys as key_rules
from routine.flows import Role
from routine.keys import KeyPolicy, KeyUnit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeysOverview:
    """A client's key sets held and returned, against the sets the routine requires."""

    client_ref: str
    held: list[KeySet]
    returned: list[KeySet]
    required: dict[KeyUnit, int]
    missing: dict[KeyUnit, int]


class Keys(Service):
    def register(self, client_ref: str, unit: KeyUnit | str, number: str, actor: Actor, *,
                 holder: str | None = None) -> KeySet:
        """Record a set of physical keys by key number (unique while bound)."""
        client, key_unit = refdata.client_ref(client_ref), KeyUnit(unit)
        number = key_number(number)
        now = self.central.now()
        try:
            with self.core.write() as conn:
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

    def sets(self, client_ref: str, *, actor: Actor, bound_only: bool = False) -> list[KeySet]:
        """The client's key sets, oldest first (``bound_only``: not returned)."""
        access.require_routine_principal(actor)
        with self.core.read() as conn:
            return rows.key_sets_of(conn, refdata.client_ref(client_ref), bound_only=bound_only)

    def overview(self, client_ref: str, *, actor: Actor) -> KeysOverview:
        """The client's key sets held and returned, and what is missing of the sets the
        routine requires."""
        sets = self.sets(client_ref, actor=actor)
        required = self.required(client_ref, actor=actor)
        held = [s for s in sets if s.bound]
        missing = {unit: n - sum(s.unit is unit for s in held) for unit, n in required.items()
                   if n > sum(s.unit is unit for s in held)}
        return KeysOverview(refdata.client_ref(client_ref), held,
                            [s for s in sets if not s.bound], required, missing)

    def unbound(self, number: str, *, actor: Actor) -> bool:
        """Whether no client has the key number bound in the register (the 2b.9 check)."""
        access.require_routine_principal(actor)
        k = t.key_sets.c
        with self.core.read() as conn:
            return conn.execute(sa.select(k.id).where(
                k.key_number == key_number(number), k.returned_at.is_(None))).first() is None

    def required(self, client_ref: str, *, actor: Actor, policy: KeyPolicy | None = None,
                 other_agreement: bool = False) -> dict[KeyUnit, int]:
        """Key sets each unit should hold (routine.keys) from the client's running
        implementations and the case answers (opens the door themself, code lock)."""
        access.require_routine_principal(actor)
        client = refdata.client_ref(client_ref)
        with self.core.read() as conn:
            running = rows.running_kinds(rows.implementations_of(conn, client))
            opens_door = rows.latest_answer(conn, client, "home_care_only_opens_door") == "yes"
            code_lock = rows.latest_answer(conn, client, "code_lock") == "yes"
        return key_rules.required_key_sets(
            has_home_care=ImplementationKind.HOME_CARE in running,
            has_safety_alarm=ImplementationKind.SAFETY_ALARM in running,
            opens_door_themself=opens_door, other_agreement=other_agreement,
            code_lock=code_lock, night_help=ImplementationKind.NIGHT_HELP in running,
            policy=policy or self.core.key_policy)

    def return_keys(self, client_ref: str, unit: KeyUnit | str, signed_by: str, actor: Actor,
                    *, holder: str | None = None) -> KeyReceipt:
        """Hand the unit's bound key sets back to the client against a signed receipt."""
        client, key_unit = refdata.client_ref(client_ref), KeyUnit(unit)
        k = t.key_sets.c
        now = self.central.now()
        with self.core.write() as conn:
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
            for n in numbers:  # the routine's receipt rules (signed, numbered)
                key_rules.KeyReceipt(client, key_unit, n, self.central.today(),
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

    def receipts(self, client_ref: str, *, actor: Actor) -> list[KeyReceipt]:
        """The client's signed key receipts, oldest first."""
        access.require_routine_principal(actor)
        r = t.key_receipts.c
        with self.core.read() as conn:
            return [rows.receipt(row) for row in conn.execute(
                sa.select(t.key_receipts)
                .where(r.client_ref == refdata.client_ref(client_ref)).order_by(r.id))]

    def record_use(self, client_ref: str, unit: KeyUnit | str, actor: Actor, *,
                   note: str = "", emergency: bool = False,
                   lock_available: bool = True) -> KeyUse:
        """A physical key used at the client, classified by the routine
        (routine.keys.classify_key_use) against the client's lock status now."""
        client, key_unit = refdata.client_ref(client_ref), KeyUnit(unit)
        text = _note(note) or ""
        now = self.central.now()
        with self.core.write() as conn:
            holder = self._holder(conn, client, key_unit, None, actor)
            access.check_keys(actor, key_unit, holder, self.units, f"use {key_unit} keys",
                              fitter_may=True)
            status = refdata.lock_status(conn, client)
            use = key_rules.classify_key_use(client, key_unit, status == refdata.INSTALLED,
                                             lock_available, emergency, note=text)
            use_id = conn.execute(sa.insert(t.key_uses).values(
                client_ref=client, key_unit=key_unit.value, reason=use.reason.value,
                note=text, lock_status=status, used_by=actor.name, unit=actor.unit,
                used_at=now).returning(t.key_uses.c.id)).scalar_one()
            row = conn.execute(sa.select(t.key_uses).where(t.key_uses.c.id == use_id)).one()
        if not use.justified:
            log.warning("client %s: %s used a physical key although the lock works (%s)",
                        client, actor.name, key_unit)
        return rows.key_use(row)

    def record_emergency_use(self, client_ref: str, unit: KeyUnit | str, reason: str,
                             actor: Actor, *, lock_available: bool = True) -> KeyUse:
        """An emergency use of a physical key (4.4); ``reason`` says what happened."""
        return self.record_use(client_ref, unit, actor, note=reason, emergency=True,
                               lock_available=lock_available)

    def uses(self, client_ref: str | None = None, *, actor: Actor) -> list[KeyUse]:
        """Physical key uses, oldest first (one client's, or all)."""
        access.require_routine_principal(actor)
        u = t.key_uses.c
        query = sa.select(t.key_uses).order_by(u.id)
        if client_ref is not None:
            query = query.where(u.client_ref == refdata.client_ref(client_ref))
        with self.core.read() as conn:
            return [rows.key_use(r) for r in conn.execute(query)]

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


_note = note


def _bound(row: KeySet) -> KeyNumberBound:
    return KeyNumberBound(
        f"key number {row.key_number} is bound to client {row.client_ref} ({row.unit}, held "
        f"by {row.holder}) since {row.registered_at.isoformat()}; return it first")
