"""Settings of the whole centre, kept in its database (``centre_settings``).

A deployment runs several API processes and a CLI over one database: a setting they
must all agree on (the tag policy agents are told, the URL base written to SUN tags)
lives in a row, one value per name, set with ``nyckelfri-central``. A name without a
row has the default the code was given (a :class:`~central.cases.store.RoutineStore`
keyword, like its other settings). What a value may be is its owner's to check; this
module only stores text.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db


def get(conn: Connection, name: str) -> str | None:
    """The stored value of ``name``, or None when it was never set."""
    c = db.centre_settings.c
    value: str | None = conn.execute(sa.select(c.value).where(c.name == name)).scalar()
    return value


def put(conn: Connection, name: str, value: str, now: datetime) -> None:
    """Store ``value`` for ``name`` (replacing the one before)."""
    stmt = db.dialect_insert(conn, db.centre_settings).values(name=name, value=value,
                                                              updated_at=now)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"value": stmt.excluded["value"], "updated_at": stmt.excluded["updated_at"]}))


def clear(conn: Connection, name: str) -> None:
    """Forget ``name``: the code's default applies again."""
    conn.execute(sa.delete(db.centre_settings).where(db.centre_settings.c.name == name))
