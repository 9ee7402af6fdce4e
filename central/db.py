"""The central store's schema, engines and migrations: one code path for SQLite and PostgreSQL.

SQLite (a file, the default for one municipality) and PostgreSQL (several stateless
API processes) run the same SQLAlchemy Core statements over the same tables. What
differs is confined here: URL normalisation, connection set-up (pragmas and
``BEGIN IMMEDIATE`` for SQLite, pre-ping and a connect timeout for PostgreSQL),
the dialect's ``INSERT .. ON CONFLICT`` and the lock taken around migrations.

Migrations are Alembic's, shipped in ``central/migrations`` and configured in code
(no ``alembic.ini``), so they run the same from a checkout or an installed wheel.
"""

from __future__ import annotations

import fcntl
import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from central.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# A writer waits this long for another writer's transaction before giving up with
# DatabaseUnavailable: a batch of 500 events commits in well under a second, so 30 s
# means something is stuck, not busy.
SQLITE_BUSY_TIMEOUT_S = 30.0
# A reachable PostgreSQL answers a connect in milliseconds; without a limit a
# request would hang for the operating system's TCP timeout (about two minutes).
PG_CONNECT_TIMEOUT_S = 10
# pg_advisory_xact_lock key ("nykl") serialising `alembic upgrade` across processes
# that start at once; held only for the migration transaction.
MIGRATION_LOCK_KEY = 0x6E796B6C
# Execution option asking the SQLite connection for BEGIN IMMEDIATE: a write
# transaction takes the write lock up front, so it waits (busy_timeout) instead of
# failing with "database is locked" when it upgrades from reader to writer.
WRITE_OPTION = "nyckelfri_write"

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_PG_DRIVER = "postgresql+psycopg"
_PG_ALIASES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


# --- types -------------------------------------------------------------------------------


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; always read back aware, in UTC.

    SQLite has no timezone type (SQLAlchemy drops the offset), PostgreSQL answers
    in the session's zone: this makes both hand back the same value.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the central store keeps aware times")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == SQLITE else utc

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite's autoincrement needs INTEGER PRIMARY KEY (the rowid); PostgreSQL gets 64 bits.
BigSerial = sa.BigInteger().with_variant(sa.Integer(), SQLITE)

# --- tables ------------------------------------------------------------------------------

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

devices = sa.Table(
    "devices", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("unit", sa.String(64), nullable=True),  # a principal's unit (migration 0002)
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("last_seen_at", UTCDateTime(), nullable=True),
    sa.Column("event_count", sa.BigInteger(), nullable=False, server_default="0"),
    # The fitter a device (role "device") is enrolled to: its agent sends that fitter's
    # lock verifications and checkpoints, and nothing else (central.senders; 0004).
    sa.Column("fitter", sa.String(64), nullable=True),
)

# Events refused by central.senders (who may send what), counted per device, kind and
# reason; the events themselves are stored nowhere.
sender_refusals = sa.Table(
    "sender_refusals", metadata,
    sa.Column("device", sa.String(64), sa.ForeignKey("devices.name"), primary_key=True),
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("first_at", UTCDateTime(), nullable=False),
    sa.Column("last_at", UTCDateTime(), nullable=False),
)

# A device's one-time enrolment code (migration 0006): only a hash of its secret is kept;
# redeeming it gives the device a new token and marks the code used.
enrolment_codes = sa.Table(
    "enrolment_codes", metadata,
    sa.Column("device", sa.String(64), sa.ForeignKey("devices.name"), primary_key=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=True),
)

events = sa.Table(
    "events", metadata,
    # Ingest order across batches; within a batch, rows go in by event_id (see
    # store._insert_events), so seq is not the device's outbox order.
    sa.Column("seq", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(32), nullable=False, unique=True),
    sa.Column("device", sa.String(64), sa.ForeignKey("devices.name"), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("visit_id", sa.Text(), nullable=True),  # from visit.* events' data
    sa.Column("payload", sa.JSON(), nullable=False),  # the full Event as received
    sa.Column("device_at", UTCDateTime(), nullable=False),
    sa.Column("boottime_ns", sa.BigInteger(), nullable=False),
    sa.Column("boot_id", sa.String(64), nullable=False),
    sa.Column("clock_synced", sa.Boolean(), nullable=False),
    sa.Column("best_at", UTCDateTime(), nullable=False),
    sa.Column("quality", sa.String(16), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Index(None, "device", "kind"),
    sa.Index(None, "device", "visit_id"),
    sa.Index(None, "device", "boot_id"),
)

# Events that drive the routine (lock verifications, checkpoints), still to apply:
# written in the ingest transaction with the event, deleted in the transaction that
# applies it (CentralStore.apply_pending), so an event is applied once, even across a
# crash. In seq order per device; attempts and last_error tell why one is stuck.
pending_applications = sa.Table(
    "pending_applications", metadata,
    sa.Column("seq", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(32), sa.ForeignKey("events.event_id"), nullable=False,
              unique=True),
    sa.Column("device", sa.String(64), sa.ForeignKey("devices.name"), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("queued_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
    sa.Index(None, "device", "seq"),
)

# The best clock sample (shortest round trip) of each boot of each device.
anchors = sa.Table(
    "anchors", metadata,
    sa.Column("device", sa.String(64), sa.ForeignKey("devices.name"), primary_key=True),
    sa.Column("boot_id", sa.String(64), primary_key=True),
    sa.Column("boottime_ns", sa.BigInteger(), nullable=False),
    sa.Column("server_time", UTCDateTime(), nullable=False),
    sa.Column("rtt_ns", sa.BigInteger(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
)

# Derived from visit.* events by routine.visits.fold; rebuilt per visit on ingest.
# Text, not String(n): the values come from event data the centre does not bound,
# and PostgreSQL would refuse a whole batch over one over-long reference.
visits = sa.Table(
    "visits", metadata,
    sa.Column("device", sa.String(64), sa.ForeignKey("devices.name"), primary_key=True),
    sa.Column("visit_id", sa.Text(), primary_key=True),
    sa.Column("client_ref", sa.Text(), nullable=False),
    sa.Column("staff_ref", sa.Text(), nullable=False),
    sa.Column("tag_uid", sa.Text(), nullable=True),
    sa.Column("method", sa.Text(), nullable=False),
    sa.Column("arrived_at", UTCDateTime(), nullable=True),
    sa.Column("arrived_quality", sa.String(16), nullable=True),
    sa.Column("departed_at", UTCDateTime(), nullable=True),
    sa.Column("departed_quality", sa.String(16), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("close_reason", sa.Text(), nullable=True),
    # When the visit happened, for day filters and order: the arrival, else the
    # earliest time among its events (a visit known only by its closing event).
    sa.Column("visit_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "visit_at"),
    sa.Index(None, "client_ref", "visit_at"),
    sa.Index(None, "staff_ref", "visit_at"),
)

reference_items = sa.Table(
    "reference_items", metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("version", sa.BigInteger(), nullable=False, unique=True),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# One row (id 1): the last reference version handed out. Writers lock it, so
# versions commit in order and a reader's cursor never skips one still in flight.
reference_counter = sa.Table(
    "reference_counter", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
)
COUNTER_ROW = 1

# Settings of the whole centre (migration 0005), one value per name, so that every API
# process and the CLI see the same: the tag policy and the SUN URL base
# (:mod:`central.settings`). A name without a row has the code's default.
centre_settings = sa.Table(
    "centre_settings", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)


# --- URLs and engines --------------------------------------------------------------------


def database_url(database: str) -> URL:
    """A file path -> a SQLite URL; ``postgresql://``/``postgres://`` -> psycopg 3."""
    if "://" not in database:
        return URL.create(SQLITE, database=str(Path(database).expanduser().resolve()))
    try:
        url = make_url(database)
    except ArgumentError as exc:
        raise DatabaseUnavailable(
            f"cannot parse the database URL ({exc}); give a file path (centre.db) "
            "or postgresql://USER@HOST:PORT/DATABASE"
        ) from None
    if url.drivername in _PG_ALIASES:
        return url.set(drivername=_PG_DRIVER)
    if url.get_backend_name() == SQLITE:
        return url
    raise DatabaseUnavailable(
        f"unsupported database {safe_url(url)}: the centre runs on SQLite (a file path) "
        "or PostgreSQL (postgresql://USER@HOST:PORT/DATABASE)"
    )


def safe_url(url: URL | str) -> str:
    """The URL for messages and logs: never the password."""
    if isinstance(url, str):
        url = make_url(url)
    return url.render_as_string(hide_password=True)


def create_engine(url: URL) -> Engine:
    """One engine per store, set up for durability on SQLite and resilience on PostgreSQL."""
    if url.get_backend_name() == SQLITE:
        _ensure_sqlite_folder(url)
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", functools.partial(_sqlite_connect, url.database))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}
    )


def _ensure_sqlite_folder(url: URL) -> None:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return
    folder = Path(url.database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot create the folder {folder} for the central SQLite database ({exc}); "
            "create it or give a path the centre's user may write to"
        ) from exc


def _sqlite_connect(database: str | None, dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (see _sqlite_begin); the driver must not.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # Set before anything that may wait on another connection's lock.
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        # WAL: readers never block the writer, nor the writer them.
        _switch_to_wal(database, cursor)
        # FULL: in WAL mode NORMAL may lose the last commits on power loss, and the
        # centre has told the agent those events are stored.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _switch_to_wal(database: str | None, cursor: Any) -> None:
    """Put the file in WAL mode (persistent: once per database, not per connection).

    Switching needs SQLite's exclusive lock, and SQLite answers "database is
    locked" at once, without waiting out busy_timeout, when two connections try
    the switch together (each holds the shared lock the other must see go). So
    connections that find the file not yet in WAL take turns on an OS lock beside
    it: the first switches, the rest find it done. Not SQLite's own file: closing
    any descriptor of it would drop the process's SQLite locks.
    """
    cursor.execute("PRAGMA journal_mode")
    if cursor.fetchone()[0].lower() == "wal":
        return
    if not database or database == ":memory:" or database.startswith("file:"):
        cursor.execute("PRAGMA journal_mode=WAL")  # private database: nobody to race
        return
    with open(f"{database}-wal-switch.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.fetchone()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: commits on success, rolls back on any error."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A consistent read: one snapshot on SQLite, statement snapshots on PostgreSQL."""
    with engine.connect() as conn, conn.begin():
        yield conn


def dialect_insert(conn: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` with the dialect's ``ON CONFLICT`` clauses (same on both backends)."""
    if conn.dialect.name == POSTGRESQL:
        return postgresql.insert(table)
    return sqlite.insert(table)


# --- migrations --------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code: works from a checkout or an installed package."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def known_revision(revision: str | None) -> bool:
    """Whether this code's migrations include ``revision`` (None: an empty database)."""
    if revision is None:
        return True
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        return False
    return True


def schema_problem(current: str | None) -> str | None:
    """What is wrong with a database at revision ``current`` for this code, or None."""
    head = head_revision()
    if current == head:
        return None
    if not known_revision(current):
        return (f"has schema revision {current}, newer than this centre knows ({head}); "
                "upgrade the centre's software on every host")
    return (f"has schema revision {current or 'none'}, this centre needs {head}; run the "
            "migrations (open the store with migrate=True)")


def upgrade(engine: Engine) -> None:
    """``alembic upgrade head`` in one transaction, one process at a time.

    On PostgreSQL an advisory lock makes processes that start together take turns
    (the second finds the schema current); on SQLite ``BEGIN IMMEDIATE`` does.
    Both backends run DDL transactionally, so a failed migration leaves nothing.
    """
    with write_transaction(engine) as conn:
        if conn.dialect.name == POSTGRESQL:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        before = current_revision(conn)
        if not known_revision(before):  # a newer centre migrated it: never downgrade
            raise DatabaseUnavailable(f"database {safe_url(engine.url)} {schema_problem(before)}")
        command.upgrade(alembic_config(conn), "head")
        after = current_revision(conn)
    if before != after:
        log.info("migrated central database %s from %s to %s", safe_url(engine.url), before,
                 after)
