"""The central store: enrolled devices, every event stored once, visits, reference data.

One class, :class:`CentralStore`, over SQLAlchemy Core; the same statements run on
SQLite (a file, one municipality) and PostgreSQL (several stateless API processes).
What must hold on both, and how:

- **An event is stored once and never lost.** ``INSERT .. ON CONFLICT (event_id) DO
  NOTHING`` in one transaction per batch; the answer lists every id now held for the
  device, new or from an earlier delivery, only after COMMIT returned.
- **A device's batches are applied one at a time.** Each ingest first updates the
  device's row (``last_seen_at``), which locks it on PostgreSQL (SQLite has one writer
  anyway), so clock anchors, re-corrected times and folded visits never interleave.
- **Times are the best known** (:func:`routine.timekeeping.best_time`): a clock
  sample from a boot re-corrects that boot's unsynchronised events and their visits.
- **Reference versions commit in order.** Writers lock the one-row counter, so a
  reader paging by cursor never passes a version that is still in flight.
- **Who may send what is one table** (:mod:`central.senders`), checked per event
  before anything is stored: a refused event is rejected with its reason, stored
  nowhere, and counted (``sender_refusals``).
- **The routine's events are applied once, durably** (:mod:`central.applications`):
  queued in the ingest transaction, each applied later in one transaction of its own.
- **Checks that must see each event once run in its ingest transaction**
  (:meth:`CentralStore.add_ingest_check`: the centre's SUN check of taps): on the
  batch's new events only, committed with them or not at all.
- **Hostile data never reaches a statement.** What the databases cannot hold as sent
  (:mod:`central.storable`) is a per-event rejection, or an error for a clock sample
  or reference data, before any transaction starts; reference records are checked
  by the routine's one definition (:mod:`routine.reference`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pydantic
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from central import applications, db, senders
from central.errors import (
    CentralError,
    DatabaseUnavailable,
    DeviceExists,
    Forbidden,
    InvalidClockSample,
    ReferenceDataError,
    Unauthorized,
    UnknownDevice,
    UnknownReference,
    UnstorableReference,
)
from central.storable import bad_text, unstorable_clock, unstorable_event, unstorable_json
from routine import reference
from routine.timekeeping import Anchor, Quality, best_anchor, best_time
from routine.visits import VISIT_KINDS, VisitEvent, VisitRecord, fold
from sync.protocol import (
    MAX_REFERENCE_PAGE,
    ClockSample,
    DeviceName,
    Event,
    ReferenceItem,
    ReferenceKind,
    Rejection,
)

log = logging.getLogger(__name__)

ROLES = ("device", "admin", "assessor", "provider", "alarm_admin", "fitter")
# The routine's roles (routine.flows.Role): a principal in one of them belongs to a unit
# (a provider's "hemtjanst-nord", "larmgruppen", a "bestallarenhet"), and the routine
# store (central.cases) lets it act only on that unit's cases, jobs and keys.
UNIT_ROLES = ("assessor", "provider", "alarm_admin", "fitter")
MAX_UNIT_LENGTH = 64  # devices.unit
# 32 random bytes (256 bits): unguessable, so a fast hash (not a password hash) is
# enough to keep a stolen database from yielding usable tokens.
TOKEN_BYTES = 32
# authenticate() records last_seen_at at most this often per device: a write on
# every request would put every read behind SQLite's single writer.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Day filters follow the municipality's calendar, not UTC: a visit at 00:30 local
# time belongs to that local day.
DEFAULT_DAY_ZONE = "Europe/Stockholm"
# Ids per IN (...) list: far below SQLite's bound-parameter limit (32766) and a
# batch (sync.protocol.MAX_BATCH = 500) fits in one.
IN_CHUNK = 500

# Reference data (the agent's `import-reference` format, plus locks): routine.reference.
SECTIONS: dict[str, ReferenceKind] = {
    section: ReferenceKind(kind) for section, kind in reference.SECTIONS.items()
}

_DEVICE_NAME: pydantic.TypeAdapter[str] = pydantic.TypeAdapter(DeviceName)


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """An enrolled device (agent or administrator). The token is never part of it."""

    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    events: int  # events stored from this device
    unit: str | None = None  # the principal's unit; always set for the routine's roles
    fitter: str | None = None  # the fitter a device is enrolled to (central.senders)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class IngestResult:
    stored: list[str]  # every id of the batch now held for the device, in batch order
    rejected: list[Rejection]


@dataclass(frozen=True)
class VisitRow:
    """A visit as folded from its events, with the best known times."""

    device: str
    visit_id: str
    client_ref: str
    staff_ref: str
    tag_uid: str | None
    method: str
    arrived_at: datetime | None
    arrived_quality: Quality | None
    departed_at: datetime | None
    departed_quality: Quality | None
    status: str  # open | closed | departure_missing | incomplete
    close_reason: str | None
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class SenderRefusal:
    """Events of one kind refused from one device for one reason (central.senders)."""

    device: str
    kind: str
    reason: str
    count: int
    first_at: datetime
    last_at: datetime


# The connection of an application in progress (central.applications): the store's
# _write()/_read() (and so the routine store's) join it instead of opening their own.
_JOINED: ContextVar[tuple[Engine, Connection] | None] = ContextVar("nyckelfri_joined",
                                                                   default=None)


#: A check run in the ingest transaction on a batch's new events of its kinds (in batch
#: order): ``check(conn, device, events, now)``. Raising fails the whole batch (nothing
#: stored; the agent sends it again), so a check records what it finds rather than raise.
IngestCheck = Callable[[Connection, "DeviceInfo", Sequence[Event], datetime], None]


class _Put(NamedTuple):
    """One reference write: a record, or a tombstone when ``deleted``."""

    kind: ReferenceKind
    key: str
    data: dict[str, Any]
    deleted: bool = False


# --- the store ---------------------------------------------------------------------------


class CentralStore:
    """The centre's database. Thread-safe: each call takes a pooled connection."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None,
                 day_zone: tzinfo | None = None) -> None:
        self._engine = engine
        self._clock = clock or _utc_now
        self._zone = day_zone or ZoneInfo(DEFAULT_DAY_ZONE)
        self._appliers: dict[str, applications.Applier] = {}
        self._checks: dict[str, tuple[frozenset[str], IngestCheck]] = {}

    @classmethod
    def open(cls, database: str, *, clock: Callable[[], datetime] | None = None,
             migrate: bool = True, day_zone: tzinfo | None = None) -> CentralStore:
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

    def __enter__(self) -> CentralStore:
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

    # --- devices -------------------------------------------------------------------------

    def add_device(self, name: str, role: str = "device", unit: str | None = None,
                   fitter: str | None = None) -> str:
        """Enrol a device; returns its token, which is shown this once and never stored.

        ``role`` is one of :data:`ROLES`; the routine's roles (:data:`UNIT_ROLES`) need
        the ``unit`` the principal works for, the others may name one. ``fitter`` binds
        a device (role ``device``) to an enrolled fitter: its agent then sends that
        fitter's lock verifications and checkpoints, and nothing else
        (:mod:`central.senders`).
        """
        _check_device(name, role, unit)
        if fitter is not None and role != "device":
            raise CentralError(f"only a device (an agent) is enrolled to a fitter, not a {role}; "
                               "enrol the fitter's agent with 'device add NAME --fitter FITTER'")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        row = {"name": name, "role": role, "unit": unit, "token_hash": _token_hash(token),
               "created_at": self.now(), "event_count": 0, "fitter": fitter}
        try:
            with self._write() as conn:
                if _device_row(conn, name) is not None:
                    raise _device_exists(name)
                if fitter is not None:
                    _check_fitter(conn, fitter)
                conn.execute(sa.insert(db.devices).values(row))
        except IntegrityError:  # enrolled by another process between check and insert
            raise _device_exists(name) from None
        log.info("enrolled device %s as %s%s%s", name, role, f" of {unit}" if unit else "",
                 f" for fitter {fitter}" if fitter else "")
        return token

    def revoke_device(self, name: str) -> None:
        """Refuse the device's token from now on. Its events stay. Idempotent."""
        with self._write() as conn:
            result = conn.execute(
                sa.update(db.devices)
                .where(db.devices.c.name == name, db.devices.c.revoked_at.is_(None))
                .values(revoked_at=self.now())
            )
            if result.rowcount == 0 and _device_row(conn, name) is None:
                raise UnknownDevice(
                    f"no device named {name!r} is enrolled; list the enrolled devices to "
                    "check the spelling"
                )
        log.info("revoked device %s", name)

    def list_devices(self) -> list[DeviceInfo]:
        with self._read() as conn:
            rows = conn.execute(sa.select(db.devices).order_by(db.devices.c.name)).all()
        return [_device_info(r) for r in rows]

    def device_on(self, conn: Connection, name: str) -> DeviceInfo:
        """The enrolled device ``name``, read on ``conn`` (UnknownDevice if none)."""
        row = _device_row(conn, name)
        if row is None:
            raise UnknownDevice(f"no device named {name!r} is enrolled")
        return _device_info(row)

    def sender_refusals(self, device: str | None = None) -> list[SenderRefusal]:
        """Counts of events refused by :mod:`central.senders`, per device, kind and reason."""
        r = db.sender_refusals.c
        query = sa.select(db.sender_refusals).order_by(r.device, r.kind, r.reason)
        if device is not None:
            query = query.where(r.device == device)
        with self._read() as conn:
            return [SenderRefusal(**row._mapping) for row in conn.execute(query)]

    def authenticate(self, token: str | None) -> DeviceInfo:
        """The device a token belongs to; raises Unauthorized or Forbidden."""
        if not token:
            raise Unauthorized(
                "no device token given; enrol the device at the centre and configure the "
                "token shown at enrolment"
            )
        digest = _token_hash(token)
        with self._read() as conn:
            row = conn.execute(
                sa.select(db.devices).where(db.devices.c.token_hash == digest)
            ).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise Unauthorized(
                "unknown device token; check the configured token, or enrol the device "
                "again to get a new one"
            )
        if row.revoked_at is not None:
            raise Forbidden(
                f"device {row.name} was revoked at {row.revoked_at.isoformat()}; an "
                "administrator must enrol it again (under a new name) before it may sync"
            )
        return self._seen(_device_info(row))

    def _seen(self, device: DeviceInfo) -> DeviceInfo:
        now = self.now()
        last = device.last_seen_at
        if last is not None and now - last < LAST_SEEN_RESOLUTION:
            return device
        with self._write() as conn:
            conn.execute(sa.update(db.devices).where(db.devices.c.name == device.name)
                         .values(last_seen_at=now))
        return replace(device, last_seen_at=now)

    # --- ingest --------------------------------------------------------------------------

    def add_applier(self, name: str, kinds: Collection[str], apply: applications.Apply,
                    ) -> None:
        """Apply each new event of ``kinds`` with ``apply(device, event)``, once, in a
        transaction of its own (:mod:`central.applications`): the event is queued in the
        ingest transaction and applied right after its COMMIT, or by the sweeper if that
        fails or the process dies. ``apply`` runs on the applying transaction's
        connection (this store's ``_write()``/``_read()`` join it); raising rolls it all
        back and leaves the event pending. One applier per kind; adding one of the same
        ``name`` again replaces it.
        """
        applier = applications.Applier(name, frozenset(kinds), apply)
        for kind, other in list(self._appliers.items()):
            if other.name == name:
                del self._appliers[kind]
        for kind in applier.kinds:
            if kind in self._appliers:
                raise ValueError(f"{kind} is applied by {self._appliers[kind].name} already")
            self._appliers[kind] = applier

    def add_ingest_check(self, name: str, kinds: Collection[str], check: IngestCheck) -> None:
        """Run ``check(conn, device, events, now)`` in each ingest transaction, on the
        batch's events of ``kinds`` stored by it (not those held already), in batch order:
        what it writes commits with the events or not at all, so each event is checked
        exactly once. Adding one of the same ``name`` again replaces it.
        """
        self._checks[name] = (frozenset(kinds), check)

    def apply_pending(self, *, device: str | None = None) -> applications.Sweep:
        """Apply what is still pending (of ``device``, or of every device)."""
        return applications.apply_pending(self, dict(self._appliers), device=device)

    def pending_applications(self, *, device: str | None = None,
                             ) -> list[applications.Pending]:
        with self._read() as conn:
            return applications.pending(conn, device=device)

    def ingest(self, device: DeviceInfo, events: Sequence[Event],
               clock: ClockSample | None) -> IngestResult:
        """Store a batch from ``device`` once each, durably, before returning.

        Events the databases cannot hold as sent (:mod:`central.storable`) are
        rejected with the reason, as are events naming another device and ids
        already held for another device; none of them is stored. ``clock`` (a sync
        round trip of the device) becomes the boot's anchor when it is the best yet,
        and re-corrects the times of that boot's unsynchronised events and their
        visits; a clock sample the store cannot keep raises InvalidClockSample and
        nothing of the batch is stored.
        """
        if clock is not None and (reason := unstorable_clock(clock)):
            raise InvalidClockSample(f"clock: {reason}")
        now = self.now()
        storable, unstorable = _storable_events(device.name, events)
        mine, foreign = _own_events(device.name, storable)
        mine, refused = _allowed_events(device, mine)
        rejected = unstorable + foreign + [rejection for rejection, _ in refused]
        with self._write() as conn:
            _claim_device(conn, device.name, now)
            _count_refusals(conn, device.name, [(e.kind, why) for _, (e, why) in refused],
                            now)
            refold = _take_anchor(conn, device.name, clock, now) if clock else set()
            anchors = _anchors(conn, device.name, {e.boot_id for e in mine})
            new = _insert_events(conn, device.name, mine, anchors, now)
            held, collisions = _already_held(conn, device.name,
                                             [e for e in mine if e.event_id not in new])
            refold |= {vid for e in mine if e.event_id in new and (vid := _visit_id(e))}
            _refold(conn, device.name, refold, now)
            fresh = [e for e in mine if e.event_id in new]
            for kinds, check in list(self._checks.values()):
                if chosen := [e for e in fresh if e.kind in kinds]:
                    check(conn, device, chosen, now)
            if new:
                conn.execute(sa.update(db.devices).where(db.devices.c.name == device.name)
                             .values(event_count=db.devices.c.event_count + len(new)))
            queued = applications.queue(conn, device.name,
                                        [e for e in mine if e.event_id in new],
                                        self._appliers.keys(), now)
        stored = [e.event_id for e in mine if e.event_id in new or e.event_id in held]
        if queued:
            # Committed as pending: applied now, or by the sweeper if this fails or dies.
            self.apply_pending(device=device.name)
        log.info("device %s: %d event(s) new, %d already held, %d rejected, %d visit(s) "
                 "refolded", device.name, len(new), len(held), len(rejected) + len(collisions),
                 len(refold))
        return IngestResult(stored=stored, rejected=rejected + collisions)

    def events(self, *, device: str | None = None, kind: str | None = None,
               limit: int = 1000) -> list[dict[str, Any]]:
        """Stored events in ingest order (``seq``), for administration and tests."""
        query = sa.select(db.events).order_by(db.events.c.seq).limit(max(limit, 0))
        if device is not None:
            query = query.where(db.events.c.device == device)
        if kind is not None:
            query = query.where(db.events.c.kind == kind)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def event_count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(db.events))
                       .scalar_one())

    # --- visits --------------------------------------------------------------------------

    def visits(self, *, day: date | None = None, client_ref: str | None = None,
               staff_ref: str | None = None) -> list[VisitRow]:
        """Visits (arrival, else first known time) on ``day`` in the day zone, filtered."""
        v = db.visits.c
        query = sa.select(db.visits).order_by(v.visit_at, v.device, v.visit_id)
        if day is not None:
            start = datetime.combine(day, time(), self._zone)
            end = datetime.combine(day + timedelta(days=1), time(), self._zone)
            query = query.where(v.visit_at >= start, v.visit_at < end)
        if client_ref is not None:
            query = query.where(v.client_ref == client_ref)
        if staff_ref is not None:
            query = query.where(v.staff_ref == staff_ref)
        with self._read() as conn:
            return [_visit_row(r) for r in conn.execute(query)]

    # --- reference data ------------------------------------------------------------------

    def import_reference(self, data: dict[str, Any]) -> dict[str, int]:
        """Upsert clients, tags, staff badges and locks from a reference file's content.

        Validates everything first: a bad file changes nothing. Unchanged records
        keep their version (agents do not download them again). Returns the count
        per section and ``changed``, the number of records given a new version.
        """
        _check_storable(data)
        with _validated():
            puts = [_Put(ReferenceKind(r.kind), r.key, r.data)
                    for r in reference.validate_reference(data)]
        with self._write() as conn:
            _, changed = _put_reference(conn, puts, self.now())
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
            versions, _ = _put_reference(conn, [_Put(kind, record_key, record)], self.now())
        return versions[0]

    def delete_reference(self, kind: ReferenceKind, key: str) -> int:
        """Replace a record by a tombstone with a new version; agents then remove it."""
        _check_key(key)
        kind = _reference_kind(kind)
        with _validated():
            record_key = reference.normalise_key(kind, key)
        with self._write() as conn:
            versions, _ = _put_reference(conn, [_Put(kind, record_key, {}, deleted=True)],
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


# --- devices -----------------------------------------------------------------------------


def _check_device(name: str, role: str, unit: str | None) -> None:
    try:
        _DEVICE_NAME.validate_python(name)
    except pydantic.ValidationError:
        raise CentralError(
            f"device name {name!r} is not usable: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (agents send it as their device_id)"
        ) from None
    if role not in ROLES:
        raise CentralError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if unit is None:
        if role in UNIT_ROLES:
            raise CentralError(
                f"a {role} works for a unit: give the unit (e.g. hemtjanst-nord, "
                "larmgruppen, bestallarenhet)"
            )
        return
    check_unit(unit)


def check_unit(unit: str) -> str:
    """``unit`` if it can name a principal's unit, else CentralError saying what is wrong."""
    if (not isinstance(unit, str) or not unit.strip() or unit != unit.strip()
            or len(unit) > MAX_UNIT_LENGTH or bad_text(unit)):
        raise CentralError(
            f"unit {unit!r} is not usable: 1-{MAX_UNIT_LENGTH} characters without leading or "
            "trailing spaces"
        )
    return unit


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _device_row(conn: Connection, name: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(db.devices).where(db.devices.c.name == name)).first()


def _device_exists(name: str) -> DeviceExists:
    return DeviceExists(
        f"a device named {name!r} is already enrolled (or was, and was revoked: its events "
        "keep the name); choose another name"
    )


def _device_info(row: sa.Row[Any]) -> DeviceInfo:
    return DeviceInfo(name=row.name, role=row.role, created_at=row.created_at,
                      revoked_at=row.revoked_at, last_seen_at=row.last_seen_at,
                      events=int(row.event_count), unit=row.unit, fitter=row.fitter)


def _check_fitter(conn: Connection, fitter: str) -> None:
    row = _device_row(conn, fitter)
    if row is None or row.revoked_at is not None or row.role != "fitter":
        raise CentralError(
            f"no enrolled fitter named {fitter!r}: enrol the fitter first ('principal add "
            f"{fitter} --role fitter --unit UNIT'), then the fitter's agent with --fitter")


def _claim_device(conn: Connection, name: str, now: datetime) -> None:
    """Lock the device's row for this transaction (and note it was seen)."""
    result = conn.execute(
        sa.update(db.devices)
        .where(db.devices.c.name == name, db.devices.c.revoked_at.is_(None))
        .values(last_seen_at=now)
    )
    if result.rowcount == 0:
        raise Forbidden(
            f"device {name} is revoked or not enrolled; an administrator must enrol it "
            "before it may sync"
        )


# --- ingest ------------------------------------------------------------------------------


def _storable_events(name: str,
                     events: Iterable[Event]) -> tuple[list[Event], list[Rejection]]:
    """The events the databases can hold as sent; rejections, with reasons, for the rest."""
    fine: list[Event] = []
    refused: list[Rejection] = []
    for e in events:
        if reason := unstorable_event(e):
            log.warning("device %s sent event %s that cannot be stored (%s); rejected", name,
                        e.event_id, reason)
            refused.append(Rejection(event_id=e.event_id, reason=reason))
        else:
            fine.append(e)
    return fine, refused


def _own_events(name: str, events: Iterable[Event]) -> tuple[list[Event], list[Rejection]]:
    """The batch's events of this device, each id once; rejections for the others."""
    mine: dict[str, Event] = {}
    rejected: list[Rejection] = []
    for e in events:
        if e.device_id != name:
            log.warning("device %s sent event %s of device_id %s; rejected", name, e.event_id,
                        e.device_id)
            rejected.append(Rejection(event_id=e.event_id,
                                      reason=f"not your event: device_id {e.device_id}"))
        else:
            mine.setdefault(e.event_id, e)
    return list(mine.values()), rejected


def _allowed_events(device: DeviceInfo, events: Iterable[Event],
                    ) -> tuple[list[Event], list[tuple[Rejection, tuple[Event, str]]]]:
    """The events ``device`` may send (:mod:`central.senders`); rejections for the rest,
    each with the event and the reason it is counted under."""
    fine: list[Event] = []
    refused: list[tuple[Rejection, tuple[Event, str]]] = []
    for e in events:
        if (why := senders.refusal(device, e)) is None:
            fine.append(e)
            continue
        reason, message = why
        log.warning("device %s may not send event %s (%s): %s", device.name, e.event_id,
                    e.kind, reason)
        refused.append((Rejection(event_id=e.event_id, reason=message), (e, str(reason))))
    return fine, refused


def _count_refusals(conn: Connection, device: str, refused: Sequence[tuple[str, str]],
                    now: datetime) -> None:
    counts: dict[tuple[str, str], int] = {}
    for kind, reason in refused:
        counts[kind, reason] = counts.get((kind, reason), 0) + 1
    r = db.sender_refusals.c
    for (kind, reason), count in sorted(counts.items()):
        insert = db.dialect_insert(conn, db.sender_refusals).values(
            device=device, kind=kind, reason=reason, count=count, first_at=now, last_at=now)
        conn.execute(insert.on_conflict_do_update(
            index_elements=[r.device, r.kind, r.reason],
            set_={"count": r["count"] + insert.excluded["count"], "last_at": now}))


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    ordered = sorted(set(values))
    for i in range(0, len(ordered), IN_CHUNK):
        yield ordered[i:i + IN_CHUNK]


def _anchors(conn: Connection, device: str, boot_ids: Iterable[str]) -> dict[str, Anchor]:
    a = db.anchors.c
    found: dict[str, Anchor] = {}
    for chunk in _chunks(boot_ids):
        for row in conn.execute(sa.select(db.anchors).where(a.device == device,
                                                            a.boot_id.in_(chunk))):
            found[row.boot_id] = Anchor(row.boot_id, row.boottime_ns, row.server_time,
                                        row.rtt_ns)
    return found


def _take_anchor(conn: Connection, device: str, sample: ClockSample,
                 now: datetime) -> set[str]:
    """Keep the sample if it is the boot's best; re-correct. Returns visits to refold."""
    new = Anchor(sample.boot_id, sample.boottime_ns, sample.server_time, sample.rtt_ns)
    current = _anchors(conn, device, [sample.boot_id]).get(sample.boot_id)
    if current is not None and best_anchor([current, new], sample.boot_id) is current:
        return set()
    row = {"device": device, "boot_id": new.boot_id, "boottime_ns": new.boottime_ns,
           "server_time": new.server_time, "rtt_ns": new.rtt_ns, "received_at": now}
    stmt = db.dialect_insert(conn, db.anchors)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["device", "boot_id"],
        set_={k: stmt.excluded[k] for k in ("boottime_ns", "server_time", "rtt_ns",
                                             "received_at")},
    ), row)
    return _recorrect(conn, device, new)


def _recorrect(conn: Connection, device: str, anchor: Anchor) -> set[str]:
    """Place the boot's unsynchronised events on the centre's clock through ``anchor``."""
    e = db.events.c
    rows = conn.execute(
        sa.select(e.seq, e.device_at, e.boottime_ns, e.visit_id)
        .where(e.device == device, e.boot_id == anchor.boot_id, e.clock_synced.is_(False))
    ).all()
    if not rows:
        return set()
    params = []
    for row in rows:
        at, quality = best_time(row.device_at, row.boottime_ns, anchor.boot_id, False, anchor)
        params.append({"b_seq": row.seq, "b_at": at, "b_quality": str(quality)})
    conn.execute(
        sa.update(db.events).where(e.seq == sa.bindparam("b_seq"))
        .values(best_at=sa.bindparam("b_at", type_=db.UTCDateTime()),
                quality=sa.bindparam("b_quality")),
        params,
    )
    log.info("device %s boot %s: %d event(s) re-corrected from a clock sample (rtt %.1f ms)",
             device, anchor.boot_id, len(rows), anchor.rtt_ns / 1e6)
    return {row.visit_id for row in rows if row.visit_id}


def _visit_id(event: Event) -> str | None:
    value = event.data.get("visit_id")
    if event.kind in VISIT_KINDS and isinstance(value, str) and value:
        return value
    return None


def _event_row(device: str, event: Event, anchor: Anchor | None,
               now: datetime) -> dict[str, Any]:
    at, quality = best_time(event.at, event.boottime_ns, event.boot_id, event.clock_synced,
                            anchor)
    return {
        "event_id": event.event_id, "device": device, "kind": event.kind,
        "visit_id": _visit_id(event), "payload": event.model_dump(mode="json"),
        "device_at": event.at, "boottime_ns": event.boottime_ns, "boot_id": event.boot_id,
        "clock_synced": event.clock_synced, "best_at": at, "quality": str(quality),
        "received_at": now,
    }


def _insert_events(conn: Connection, device: str, events: Sequence[Event],
                   anchors: dict[str, Anchor], now: datetime) -> set[str]:
    """Insert what is new; returns the ids inserted by this call."""
    if not events:
        return set()
    # Sorted by id: concurrent batches with overlapping ids then take the unique
    # index's row locks in the same order and cannot deadlock on PostgreSQL.
    rows = sorted((_event_row(device, e, anchors.get(e.boot_id), now) for e in events),
                  key=lambda r: r["event_id"])
    stmt = (db.dialect_insert(conn, db.events)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(db.events.c.event_id))
    return set(conn.execute(stmt, rows).scalars())


def _already_held(conn: Connection, device: str,
                  events: Sequence[Event]) -> tuple[set[str], list[Rejection]]:
    """Of events that were not inserted: those held for this device, and rejections."""
    e = db.events.c
    found: dict[str, Any] = {}  # event_id -> its (event_id, device, payload) row
    for chunk in _chunks(ev.event_id for ev in events):
        for row in conn.execute(sa.select(e.event_id, e.device, e.payload)
                                .where(e.event_id.in_(chunk))):
            found[row.event_id] = row
    held: set[str] = set()
    rejected: list[Rejection] = []
    for event in events:
        stored = found.get(event.event_id)
        if stored is None:  # cannot happen: ON CONFLICT saw it; never claim it stored
            log.error("event %s of %s neither inserted nor found", event.event_id, device)
            rejected.append(Rejection(event_id=event.event_id,
                                      reason="not stored (centre error); send it again"))
        elif stored.device != device:
            log.warning("device %s sent event id %s already held for device %s; rejected",
                        device, event.event_id, stored.device)
            rejected.append(Rejection(
                event_id=event.event_id,
                reason="event_id already used by another device; give the event a new id",
            ))
        else:
            held.add(event.event_id)
            if stored.payload != event.model_dump(mode="json"):
                log.warning("device %s resent event %s with different content; the first "
                            "delivery is kept", device, event.event_id)
    return held, rejected


# --- visits ------------------------------------------------------------------------------


def _refold(conn: Connection, device: str, visit_ids: set[str], now: datetime) -> None:
    """Rebuild the given visits of the device from all their events (best times)."""
    if not visit_ids:
        return
    e = db.events.c
    events: list[VisitEvent] = []
    quality: dict[tuple[str, str, datetime], Quality] = {}
    for chunk in _chunks(visit_ids):
        for row in conn.execute(
            sa.select(e.event_id, e.kind, e.best_at, e.quality, e.payload)
            .where(e.device == device, e.visit_id.in_(chunk), e.kind.in_(VISIT_KINDS))
        ):
            data = row.payload.get("data", {})
            events.append(VisitEvent(row.kind, row.best_at, data, row.event_id))
            quality[(str(data["visit_id"]), row.kind, row.best_at)] = Quality(row.quality)
    first_at: dict[str, datetime] = {}
    for ev in events:
        vid = str(ev.data["visit_id"])
        first_at[vid] = min(ev.at, first_at.get(vid, ev.at))
    rows = [_fold_row(device, rec, quality, first_at[vid], now)
            for vid, rec in fold(events).items()]
    stmt = db.dialect_insert(conn, db.visits)
    keys = ("device", "visit_id")
    conn.execute(stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: stmt.excluded[c.name] for c in db.visits.c if c.name not in keys},
    ), rows)


def _fold_row(device: str, rec: VisitRecord, quality: dict[tuple[str, str, datetime], Quality],
              first_at: datetime, now: datetime) -> dict[str, Any]:
    def quality_of(kind: str, at: datetime | None) -> str | None:
        return str(quality[(rec.visit_id, kind, at)]) if at is not None else None

    return {
        "device": device, "visit_id": rec.visit_id, "client_ref": rec.client_ref,
        "staff_ref": rec.staff_ref,
        "tag_uid": str(rec.tag_uid) if rec.tag_uid is not None else None,
        "method": rec.method, "arrived_at": rec.arrived_at,
        "arrived_quality": quality_of("visit.arrived", rec.arrived_at),
        "departed_at": rec.departed_at,
        "departed_quality": quality_of("visit.departed", rec.departed_at),
        "status": rec.status, "close_reason": rec.close_reason,
        "visit_at": rec.arrived_at or first_at, "updated_at": now,
    }


def _visit_row(row: sa.Row[Any]) -> VisitRow:
    return VisitRow(
        device=row.device, visit_id=row.visit_id, client_ref=row.client_ref,
        staff_ref=row.staff_ref, tag_uid=row.tag_uid, method=row.method,
        arrived_at=row.arrived_at,
        arrived_quality=Quality(row.arrived_quality) if row.arrived_quality else None,
        departed_at=row.departed_at,
        departed_quality=Quality(row.departed_quality) if row.departed_quality else None,
        status=row.status, close_reason=row.close_reason, updated_at=row.updated_at,
    )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}


# --- reference data: writing -------------------------------------------------------------


def _put_reference(conn: Connection, puts: Sequence[_Put],
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
                       puts: Sequence[_Put]) -> dict[tuple[str, str], sa.Row[Any]]:
    r = db.reference_items.c
    found: dict[tuple[str, str], sa.Row[Any]] = {}
    for kind in {p.kind for p in puts}:
        for chunk in _chunks(p.key for p in puts if p.kind == kind):
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
