"""Principals by name: who acts (the CLI's ``--as NAME``, a web session, an agent's fitter)."""

from __future__ import annotations

import sqlalchemy as sa

from central import db as central_db
from central.cases.errors import UnknownRecord
from central.cases.values import Principal
from central.services.base import Service


class Principals(Service):
    def get(self, name: str) -> Principal:
        """An enrolled, unrevoked principal by name (UnknownRecord otherwise).

        Nothing to check access against: this is how the actor is found.
        """
        d = central_db.devices.c
        with self.core.read() as conn:
            row = conn.execute(sa.select(d.name, d.role, d.unit, d.revoked_at)
                               .where(d.name == name)).first()
        if row is None or row.revoked_at is not None:
            raise UnknownRecord(f"no enrolled principal named {name!r}; enrol it with its role "
                                "and unit first")
        return Principal(row.name, row.role, row.unit)
