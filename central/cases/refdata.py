"""The reference data the routine changes, written in the step's own transaction.

Agents learn a client's lock status, the NFC tags to accept and the locks bound to
clients from the centre's reference data (``reference_items``, pulled by sync).
The routine store writes those records here through the central store's own
writer (:func:`central.store.put_reference`: versions under the counter's row
lock, unchanged records keep their version), so a step and what agents will see
of it commit together or not at all. Every record is checked by the routine's one
definition (:mod:`routine.reference`) before it is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db
from central.errors import ReferenceDataError
from central.storable import bad_text
from central.store_reference import Put, put_reference
from routine import reference
from sync.protocol import ReferenceKind

INSTALLED = "installed"
LOCK_BOUND = "installed"  # a lock record's state while bound to a client
LOCK_UNBOUND = "removed"


def client_ref(value: str) -> str:
    """A client reference as the reference data keys it; ReferenceDataError if unusable."""
    return _key(reference.CLIENT, value)


def tag_uid(value: str) -> str:
    """An NFC-A UID normalised (upper-case hex, 4/7/10 bytes); ReferenceDataError if not."""
    return _key(reference.TAG, value)


def lock_serial(value: str) -> str:
    return _key(reference.LOCK, value)


def _key(kind: str, value: str) -> str:
    if not isinstance(value, str) or (reason := bad_text(value)):
        raise ReferenceDataError(f"{kind} {value!r}: not usable text ({reason or 'not text'})")
    try:
        return reference.normalise_key(kind, value)
    except reference.ReferenceDataError as exc:
        raise ReferenceDataError(str(exc)) from None


def record(conn: Connection, kind: str, key: str) -> dict[str, Any] | None:
    """The live record's data, or None (never written, or deleted)."""
    r = db.reference_items.c
    row = conn.execute(sa.select(r.data, r.deleted)
                       .where(r.kind == kind, r.key == key)).first()
    if row is None or row.deleted:
        return None
    data: dict[str, Any] = row.data
    return data


def lock_status(conn: Connection, client: str) -> str | None:
    """The client's lock status in the reference data; None when there is no client record."""
    data = record(conn, reference.CLIENT, client)
    return None if data is None else str(data.get("lock_status", "pending"))


def put(conn: Connection, kind: str, data: dict[str, Any], now: datetime) -> None:
    """Validate and write one record (a new version only when it changed)."""
    try:
        key, fields = reference.validate_record(
            kind, data, f"{kind} {data.get(reference.KEY_FIELDS[kind], '')}")
    except reference.ReferenceDataError as exc:
        raise ReferenceDataError(str(exc)) from None
    put_reference(conn, [Put(ReferenceKind(kind), key, fields)], now)


def set_lock_status(conn: Connection, client: str, status: str, now: datetime) -> None:
    """Set the client's lock status, keeping the rest of its record (created if missing)."""
    old = record(conn, reference.CLIENT, client) or {"ref": client}
    put(conn, reference.CLIENT, {**old, "lock_status": status}, now)


def put_tag(conn: Connection, uid: str, client: str, active: bool, now: datetime) -> None:
    put(conn, reference.TAG, {"uid": uid, "client_ref": client, "active": active}, now)


def put_lock(conn: Connection, serial: str, client: str | None, now: datetime) -> None:
    put(conn, reference.LOCK, {"serial": serial, "client_ref": client,
                               "state": LOCK_BOUND if client else LOCK_UNBOUND}, now)


def locks_bound_to(conn: Connection, client: str) -> list[str]:
    """Serials of the live lock records bound to the client (the lock system's binding)."""
    r = db.reference_items.c
    query = sa.select(r.key).where(r.kind == reference.LOCK, r.deleted.is_(False),
                                   r.data["client_ref"].as_string() == client)
    return sorted(conn.execute(query).scalars())


def clients_with_status(conn: Connection, status: str) -> dict[str, dict[str, Any]]:
    """Live client records with this lock status, by reference."""
    r = db.reference_items.c
    query = sa.select(r.key, r.data).where(r.kind == reference.CLIENT, r.deleted.is_(False),
                                           r.data["lock_status"].as_string() == status)
    return {row.key: row.data for row in conn.execute(query)}
