"""Reference data at the centre: clients, tags, staff badges and locks, versioned.

Writers lock the one-row counter (:func:`put_reference`), so a reader paging by cursor
(:meth:`References.reference_since`) never passes a version still in flight. Records are
checked by the routine's one definition (:mod:`routine.reference`), and what the
databases cannot hold as sent is refused before any transaction starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db
from central.errors import (
    ReferenceDataError,
    UnknownReference,
    UnstorableReference,
)
from central.storable import bad_text, unstorable_json
from central.store_base import StoreBase, chunks
from routine import reference
from sync.protocol import (
    MAX_REFERENCE_PAGE,
    ReferenceItem,
    ReferenceKind,
)

log = logging.getLogger(__name__)

# Reference data (the agent's `import-reference` format, plus locks): routine.reference.
SECTIONS: dict[str, ReferenceKind] = {
    section: ReferenceKind(kind) for section, kind in reference.SECTIONS.items()
}


class Put(NamedTuple):
    """One reference write: a record, or a tombstone when ``deleted``."""

    kind: ReferenceKind
    key: str
    data: dict[str, Any]
    deleted: bool = False


class References(StoreBase):
    """Import, upsert, delete and page reference data."""

    def import_reference(self, data: dict[str, Any]) -> dict[str, int]:
        """Upsert clients, tags, staff badges and locks from a reference file's content.

        Validates everything first: a bad file changes nothing. Unchanged records
        keep their version (agents do not download them again). Returns the count
        per section and ``changed``, the number of records given a new version.
        """
        _check_storable(data)
        with _validated():
            puts = [Put(ReferenceKind(r.kind), r.key, r.data)
                    for r in reference.validate_reference(data)]
        with self._write() as conn:
            _, changed = put_reference(conn, puts, self.now())
        counts = {section: sum(p.kind == kind for p in puts) for section, kind in SECTIONS.items()}
        counts["changed"] = changed
        log.info("imported reference data: %s", counts)
        return counts

    def upsert_reference(self, kind: ReferenceKind, key: str, data: dict[str, Any]) -> int:
        """Create or replace one record; returns its version (unchanged data keeps it)."""
        _check_storable(data)
        _check_key(key)
        kind = _reference_kind(kind)
        field = reference.KEY_FIELDS[kind]
        given = data.get(field, key)
        with _validated():
            record_key, record = reference.validate_record(kind, {**data, field: given},
                                                           f"{kind} {key}")
            same = record_key == reference.normalise_key(kind, key)
        if not same:
            raise ReferenceDataError(
                f"{kind} {key}: the data's {field} {given!r} differs from the key; "
                "give the same value in both"
            )
        with self._write() as conn:
            versions, _ = put_reference(conn, [Put(kind, record_key, record)], self.now())
        return versions[0]

    def delete_reference(self, kind: ReferenceKind, key: str) -> int:
        """Replace a record by a tombstone with a new version; agents then remove it."""
        _check_key(key)
        kind = _reference_kind(kind)
        with _validated():
            record_key = reference.normalise_key(kind, key)
        with self._write() as conn:
            versions, _ = put_reference(conn, [Put(kind, record_key, {}, deleted=True)],
                                         self.now())
        return versions[0]

    def reference_since(self, cursor: int, limit: int) -> tuple[list[ReferenceItem], int, bool]:
        """Records changed after ``cursor``, oldest first: (items, next cursor, more).

        ``limit`` is clamped to 1..MAX_REFERENCE_PAGE. Pass the returned cursor next
        time; ``more`` says another page is already waiting.
        """
        limit = max(1, min(limit, MAX_REFERENCE_PAGE))
        r = db.reference_items.c
        query = (sa.select(db.reference_items).where(r.version > cursor)
                 .order_by(r.version).limit(limit + 1))
        with self._read() as conn:
            rows = conn.execute(query).all()
        items = [ReferenceItem(kind=ReferenceKind(row.kind), key=row.key, version=row.version,
                               deleted=row.deleted, data=row.data) for row in rows[:limit]]
        next_cursor = items[-1].version if items else max(cursor, 0)
        return items, next_cursor, len(rows) > limit


# --- reference data: writing -------------------------------------------------------------


def put_reference(conn: Connection, puts: Sequence[Put],
                   now: datetime) -> tuple[list[int], int]:
    """Write records under the counter's row lock. Returns each one's version and how
    many got a new one (unchanged records keep theirs)."""
    c = db.reference_counter.c
    version = conn.execute(sa.select(c.version).where(c.id == db.COUNTER_ROW)
                           .with_for_update()).scalar_one()
    current = _current_reference(conn, puts)
    versions: list[int] = []
    rows: list[dict[str, Any]] = []
    for put in puts:
        old = current.get((put.kind, put.key))
        if put.deleted and (old is None or old.deleted):
            raise UnknownReference(
                f"no {put.kind} {put.key!r} to delete; list the reference data to check the key"
            )
        if old is not None and old.deleted == put.deleted and old.data == put.data:
            versions.append(old.version)
            continue
        version += 1
        versions.append(version)
        rows.append({"kind": str(put.kind), "key": put.key, "version": version,
                     "deleted": put.deleted, "data": put.data, "updated_at": now})
    if rows:
        stmt = db.dialect_insert(conn, db.reference_items)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["kind", "key"],
            set_={k: stmt.excluded[k] for k in ("version", "deleted", "data", "updated_at")},
        ), rows)
        conn.execute(sa.update(db.reference_counter).where(c.id == db.COUNTER_ROW)
                     .values(version=version))
    return versions, len(rows)


def _current_reference(conn: Connection,
                       puts: Sequence[Put]) -> dict[tuple[str, str], sa.Row[Any]]:
    r = db.reference_items.c
    found: dict[tuple[str, str], sa.Row[Any]] = {}
    for kind in {p.kind for p in puts}:
        for chunk in chunks(p.key for p in puts if p.kind == kind):
            query = sa.select(db.reference_items).where(r.kind == str(kind), r.key.in_(chunk))
            for row in conn.execute(query):
                found[(row.kind, row.key)] = row
    return found


# --- reference data: validation ----------------------------------------------------------


@contextmanager
def _validated() -> Iterator[None]:
    """The routine's ReferenceDataError as the store's (a CentralError, same message)."""
    try:
        yield
    except reference.ReferenceDataError as exc:
        if isinstance(exc, ReferenceDataError):
            raise
        raise ReferenceDataError(str(exc)) from None


def _check_storable(data: Any) -> None:
    """UnstorableReference unless the databases can hold ``data`` as sent."""
    if reason := unstorable_json(data):
        raise UnstorableReference(f"data {reason}")


def _check_key(key: str) -> None:
    """UnstorableReference unless the databases can compare and hold ``key``."""
    if reason := bad_text(key):
        raise UnstorableReference(f"key {reason}")


def _reference_kind(kind: ReferenceKind | str) -> ReferenceKind:
    try:
        return ReferenceKind(kind)
    except ValueError:
        raise ReferenceDataError(
            f"unknown reference kind {kind!r}; one of {', '.join(k.value for k in ReferenceKind)}"
        ) from None
