"""Applying the events that drive the routine: once, in one transaction, durably.

Lock verifications and fitters' checkpoints change cases, lock records and key
registers. Ingest only *records* them as to apply (``pending_applications``, in the
same transaction that stores the event); each is then applied in a transaction of its
own, which also deletes its pending row:

- **once**: the pending row is re-read inside the applying transaction (after the
  PostgreSQL advisory lock, or SQLite's BEGIN IMMEDIATE, has serialised appliers), so
  two processes sweeping together apply an event once; appliers are idempotent per
  ``event_id`` besides;
- **all or nothing**: the applier runs on that transaction's connection (every
  ``_write()``/``_read()`` of the central and routine stores joins it), so a case step,
  its effects and the checkpoint record commit together or not at all;
- **nothing lost**: a crash or an error leaves the pending row, with ``attempts`` and
  ``last_error``; the sweeper (:class:`Sweeper`: at the centre's start-up and every
  :data:`SWEEP_INTERVAL_S`) applies what is left, in ingest order per device, and a
  device's later events wait behind its first failing one (checkpoints are ticked in
  order).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db
from sync.protocol import Event

if TYPE_CHECKING:
    from central.store import CentralStore, DeviceInfo

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key ("nyap") serialising applications across processes.
APPLY_LOCK_KEY = 0x6E796170
SWEEP_INTERVAL_S = 10.0
MAX_ERROR = 2000  # pending_applications.last_error: the first lines say enough

Apply = Callable[["DeviceInfo", Event], None]


@dataclass(frozen=True)
class Applier:
    name: str
    kinds: frozenset[str]
    apply: Apply


@dataclass(frozen=True)
class Pending:
    """An event still to apply, and why it is not applied yet (if it was tried)."""

    seq: int
    event_id: str
    device: str
    kind: str
    queued_at: datetime
    attempts: int
    last_error: str | None
    last_attempt_at: datetime | None


@dataclass(frozen=True)
class Sweep:
    applied: int  # applied by this sweep
    failed: int  # tried and failed (left pending, attempts + 1)
    waiting: int  # left pending untried: behind a failed one of its device, or no applier


class NotYet(Exception):
    """An event that cannot be applied yet (what it rests on is itself still pending);
    it stays pending and a later sweep applies it."""


def queue(conn: Connection, device: str, events: Collection[Event], kinds: Collection[str],
          now: datetime) -> int:
    """Record the events of ``kinds`` as to apply, in batch order (ingest's transaction)."""
    rows = [{"event_id": e.event_id, "device": device, "kind": e.kind, "queued_at": now,
             "attempts": 0} for e in events if e.kind in kinds]
    if rows:
        conn.execute(sa.insert(db.pending_applications), rows)
    return len(rows)


def pending(conn: Connection, *, device: str | None = None) -> list[Pending]:
    p = db.pending_applications.c
    query = sa.select(db.pending_applications).order_by(p.seq)
    if device is not None:
        query = query.where(p.device == device)
    return [Pending(**{f: r._mapping[f] for f in Pending.__dataclass_fields__})
            for r in conn.execute(query)]


def is_pending(conn: Connection, event_id: str) -> bool:
    p = db.pending_applications.c
    return conn.execute(sa.select(p.seq).where(p.event_id == event_id)).first() is not None


def apply_pending(store: CentralStore, appliers: dict[str, Applier], *,
                  device: str | None = None) -> Sweep:
    """Apply what is pending (of ``device``, or of all), oldest first; never raises for an
    applier's failure (it is logged and noted on the pending row)."""
    with store._read() as conn:
        todo = pending(conn, device=device)
    stuck: set[str] = set()
    applied = failed = waiting = 0
    for row in todo:
        applier = appliers.get(row.kind)
        if row.device in stuck or applier is None:
            if applier is None:
                log.warning("event %s (%s) of %s: no applier for its kind in this process; "
                            "left pending", row.event_id, row.kind, row.device)
            stuck.add(row.device)
            waiting += 1
            continue
        try:
            done = _apply_one(store, applier, row)
        except Exception as exc:
            log.exception("event %s (%s) of %s: not applied (attempt %d); it stays pending "
                          "and the sweeper retries it", row.event_id, row.kind, row.device,
                          row.attempts + 1)
            _note_failure(store, row, exc)
            stuck.add(row.device)
            failed += 1
            continue
        if done:
            applied += 1
        else:
            stuck.add(row.device)
            waiting += 1
    return Sweep(applied=applied, failed=failed, waiting=waiting)


def _apply_one(store: CentralStore, applier: Applier, row: Pending) -> bool:
    """Apply one pending event in one transaction; False if an earlier one of its device
    is still pending (this one waits). Already applied by another process: True."""
    p = db.pending_applications.c
    with store._write() as conn:
        if conn.dialect.name == db.POSTGRESQL:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(APPLY_LOCK_KEY)))
        if conn.execute(sa.select(p.seq).where(p.seq == row.seq)).first() is None:
            return True
        if conn.execute(sa.select(p.seq).where(p.device == row.device, p.seq < row.seq)
                        .limit(1)).first() is not None:
            return False
        event, device = _event_and_device(store, conn, row)
        with store.joined(conn):
            applier.apply(device, event)
        conn.execute(sa.delete(db.pending_applications).where(p.seq == row.seq))
    log.info("event %s (%s) of %s applied by %s", row.event_id, row.kind, row.device,
             applier.name)
    return True


def _event_and_device(store: CentralStore, conn: Connection,
                      row: Pending) -> tuple[Event, DeviceInfo]:
    e = db.events.c
    payload = conn.execute(sa.select(e.payload).where(e.event_id == row.event_id)).scalar_one()
    return Event.model_validate(payload), store.device_on(conn, row.device)


def _note_failure(store: CentralStore, row: Pending, exc: BaseException) -> None:
    p = db.pending_applications.c
    error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
    try:
        with store._write() as conn:
            conn.execute(sa.update(db.pending_applications).where(p.seq == row.seq)
                         .values(attempts=p.attempts + 1, last_error=error,
                                 last_attempt_at=store.now()))
    except Exception:  # the database itself is failing; the row stays pending anyway
        log.exception("event %s: could not note the failed attempt", row.event_id)


class Sweeper:
    """Applies what is left pending: once at start, then every ``interval`` seconds, in a
    daemon thread, until :meth:`stop`."""

    def __init__(self, store: CentralStore, interval: float = SWEEP_INTERVAL_S) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> Sweep | None:
        try:
            result = self.store.apply_pending()
        except Exception:  # the database is down: the next sweep retries
            log.exception("sweeping pending applications failed; retrying in %s s",
                          self.interval)
            return None
        if result.applied or result.failed or result.waiting:
            log.info("sweep: %d applied, %d failed, %d waiting", result.applied,
                     result.failed, result.waiting)
        return result

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="central-apply-sweeper",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def describe(row: Pending) -> dict[str, Any]:
    return {"seq": row.seq, "event_id": row.event_id, "device": row.device, "kind": row.kind,
            "queued_at": row.queued_at.isoformat(), "attempts": row.attempts,
            "last_error": row.last_error,
            "last_attempt_at": row.last_attempt_at.isoformat() if row.last_attempt_at
            else None}
