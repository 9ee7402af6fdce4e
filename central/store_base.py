"""The centre store's foundation: opening the database, its clock, and transactions.

:class:`StoreBase` holds the engine, the centre's clock and the day zone, and gives
every part of the store (:mod:`central.store_devices`, :mod:`central.store_reference`,
:mod:`central.store_visits`, :mod:`central.store`) its ``_write()``/``_read()``
transactions, which join an application's connection in progress
(:mod:`central.applications`) instead of opening their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Self
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from central import db
from central.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# Day filters follow the municipality's calendar, not UTC: a visit at 00:30 local
# time belongs to that local day.
DEFAULT_DAY_ZONE = "Europe/Stockholm"
# Ids per IN (...) list: far below SQLite's bound-parameter limit (32766) and a
# batch (sync.protocol.MAX_BATCH = 500) fits in one.
IN_CHUNK = 500

# The connection of an application in progress (central.applications): the store's
# _write()/_read() (and so the routine store's) join it instead of opening their own.
_JOINED: ContextVar[tuple[Engine, Connection] | None] = ContextVar("nyckelfri_joined",
                                                                   default=None)


class StoreBase:
    """The database, the clock and transactions. Thread-safe: each call takes a pooled
    connection."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None,
                 day_zone: tzinfo | None = None) -> None:
        self._engine = engine
        self._clock = clock or _utc_now
        self._zone = day_zone or ZoneInfo(DEFAULT_DAY_ZONE)

    @classmethod
    def open(cls, database: str, *, clock: Callable[[], datetime] | None = None,
             migrate: bool = True, day_zone: tzinfo | None = None) -> Self:
        """Open the store at ``database``: a file path (SQLite) or a database URL.

        ``migrate`` runs ``alembic upgrade head`` first (safe when several processes
        start at once); without it the schema must already be current.
        ``clock`` is the centre's clock (aware UTC datetimes); ``day_zone`` the zone
        whose calendar days :meth:`visits` filters by (default Europe/Stockholm).
        """
        url = db.database_url(database)
        engine = db.create_engine(url)
        try:
            with _translated(engine):
                if migrate:
                    db.upgrade(engine)
                else:
                    _check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        log.info("central store open on %s", db.safe_url(url))
        return cls(engine, clock=clock, day_zone=day_zone)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        """The centre's clock."""
        return self._clock()

    @property
    def day_zone(self) -> tzinfo:
        """The zone whose calendar days :meth:`visits` filters by."""
        return self._zone

    def today(self) -> date:
        """Today by the centre's clock, in the day zone's calendar."""
        return self.now().astimezone(self._zone).date()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    def ping(self) -> None:
        """A cheap round trip (``SELECT 1``); DatabaseUnavailable if the database is down."""
        with self._read() as conn:
            conn.execute(sa.select(sa.literal(1))).scalar_one()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if (conn := self._joined_connection()) is not None:
            yield conn
            return
        with _translated(self._engine), db.write_transaction(self._engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        if (conn := self._joined_connection()) is not None:
            yield conn
            return
        with _translated(self._engine), db.read_transaction(self._engine) as conn:
            yield conn

    def _joined_connection(self) -> Connection | None:
        joined = _JOINED.get()
        return joined[1] if joined is not None and joined[0] is self._engine else None

    @contextmanager
    def joined(self, conn: Connection) -> Iterator[None]:
        """Within the block, this thread's ``_write()``/``_read()`` use ``conn`` (its
        transaction commits or rolls back as a whole, by its owner)."""
        token = _JOINED.set((self._engine, conn))
        try:
            yield
        finally:
            _JOINED.reset(token)


def chunks(values: Iterable[str]) -> Iterator[list[str]]:
    """``values`` sorted, once each, in lists of at most :data:`IN_CHUNK` (for IN (...))."""
    ordered = sorted(set(values))
    for i in range(0, len(ordered), IN_CHUNK):
        yield ordered[i:i + IN_CHUNK]


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with datetimes as ISO 8601 text."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


# --- opening -----------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _translated(engine: Engine) -> Iterator[None]:
    """Connection failures and lock time-outs become DatabaseUnavailable, with advice."""
    try:
        yield
    except DBAPIError as exc:
        if not (isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated):
            raise
        raise _unavailable(engine, exc) from exc
    except sa.exc.TimeoutError as exc:
        # every pooled connection busy for the pool's whole timeout: overload, not a
        # bug; clients retry a 503 (with Retry-After) instead of logging a 500
        raise DatabaseUnavailable(
            f"database {db.safe_url(engine.url)} busy: no free connection in the pool "
            f"({exc}); the centre is overloaded, retry shortly"
        ) from exc


def _unavailable(engine: Engine, exc: DBAPIError) -> DatabaseUnavailable:
    lines = (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    if engine.dialect.name == db.SQLITE:
        advice = ("check that the file and its folder are writable by the centre's user and "
                  "that no other process holds a long write transaction; then retry")
    else:
        advice = ("check that PostgreSQL is running and reachable at that host and port and "
                  "that the user and database exist; retry once it answers")
    return DatabaseUnavailable(
        f"database {db.safe_url(engine.url)} unavailable ({reason}): "
        f"{advice}"
    )


def _check_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        problem = db.schema_problem(db.current_revision(conn))
    if problem is not None:
        raise DatabaseUnavailable(f"database {db.safe_url(engine.url)} {problem}")


