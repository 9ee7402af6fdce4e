"""Locks in the centre's lock records: bound to a client or not, their secrets (kept at
the centre only), and the centre's verdicts on fitters' on-site verifications."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from central.cases import access, proofs, refdata
from central.cases import db as t
from central.cases.access import Actor
from central.services.base import Service
from routine.flows import Role

log = logging.getLogger(__name__)


class Locks(Service):
    def bind(self, serial: str, client_ref: str, actor: Actor) -> None:
        """Bind a lock to the client in the centre's lock records (2a.7 "kopplat till
        brukaren"); agents learn it by sync."""
        self._put(serial, refdata.client_ref(client_ref), actor)

    def unbind(self, serial: str, actor: Actor) -> None:
        """Unbind a lock from its client (2b.8 "frånkopplat brukaren i Phoniro")."""
        self._put(serial, None, actor)

    def enrol(self, serial: str, secret: bytes, actor: Actor) -> None:
        """Keep the lock's 16-byte secret (AES-128) at the centre, its only holder: agents
        never see it, no API answer carries it. Admin or alarm administrator."""
        proofs.require_lock_admin(actor, "enrol lock secrets")
        key = refdata.lock_serial(serial)
        proofs.check_secret(secret)
        with self.core.write() as conn:
            proofs.enrol(conn, key, secret, actor.name, self.central.now())
        log.info("lock %s: secret enrolled by %s", key, actor.name)

    def enrolled(self, serial: str, *, actor: Actor) -> bool:
        """Whether the centre holds the lock's secret (never the secret itself)."""
        proofs.require_lock_admin(actor, "read which locks are enrolled")
        s = t.lock_secrets.c
        with self.core.read() as conn:
            return conn.execute(sa.select(s.serial).where(
                s.serial == refdata.lock_serial(serial))).first() is not None

    def verifications(self, actor: Actor, *, serial: str | None = None,
                      job_id: int | None = None) -> list[proofs.LockVerification]:
        """The centre's verdicts on lock verifications, oldest first."""
        proofs.require_lock_admin(actor, "read lock verifications")
        with self.core.read() as conn:
            return proofs.verifications(
                conn, serial=refdata.lock_serial(serial) if serial is not None else None,
                job_id=job_id)

    def _put(self, serial: str, client: str | None, actor: Actor) -> None:
        access.require_alarm_group(actor, self.units, "bind and unbind locks",
                                   (Role.ALARM_ADMIN, Role.FITTER))
        key = refdata.lock_serial(serial)
        with self.core.write() as conn:
            refdata.put_lock(conn, key, client, self.central.now())
