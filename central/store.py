"""The central store: enrolled devices, every event stored once, visits, reference data.

:class:`CentralStore`, over SQLAlchemy Core, made of its parts: transactions and the clock
(:mod:`central.store_base`), devices (:mod:`central.store_devices`), reference data
(:mod:`central.store_reference`), visits (:mod:`central.store_visits`), and ingest, here.
The same statements run on SQLite (a file, one municipality) and PostgreSQL (several
stateless API processes).
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

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from central import applications, db, senders
from central.errors import InvalidClockSample
from central.storable import unstorable_clock, unstorable_event
from central.store_base import DEFAULT_DAY_ZONE, StoreBase, chunks
from central.store_devices import (
    ROLES,
    UNIT_ROLES,
    DeviceInfo,
    Devices,
    SenderRefusal,
    check_unit,
    claim_device,
)
from central.store_reference import SECTIONS, References
from central.store_visits import VisitRow, Visits, refold_visits, visit_id
from routine.timekeeping import Anchor, best_anchor, best_time
from sync.protocol import ClockSample, Event, Rejection

log = logging.getLogger(__name__)

# What callers import from here; each part's own names live in its module.
__all__ = [
    "DEFAULT_DAY_ZONE", "ROLES", "SECTIONS", "UNIT_ROLES", "CentralStore", "DeviceInfo",
    "IngestCheck", "IngestResult", "SenderRefusal", "StoreBase", "VisitRow", "check_unit",
]


@dataclass(frozen=True)
class IngestResult:
    stored: list[str]  # every id of the batch now held for the device, in batch order
    rejected: list[Rejection]


#: A check run in the ingest transaction on a batch's new events of its kinds (in batch
#: order): ``check(conn, device, events, now)``. Raising fails the whole batch (nothing
#: stored; the agent sends it again), so a check records what it finds rather than raise.
IngestCheck = Callable[[Connection, "DeviceInfo", Sequence[Event], datetime], None]


class CentralStore(Devices, References, Visits):
    """The centre's database. Thread-safe: each call takes a pooled connection.

    Devices (:mod:`central.store_devices`), reference data
    (:mod:`central.store_reference`) and visits (:mod:`central.store_visits`) are its
    parts; here is ingest, which ties them together.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None,
                 day_zone: tzinfo | None = None) -> None:
        super().__init__(engine, clock=clock, day_zone=day_zone)
        self._appliers: dict[str, applications.Applier] = {}
        self._checks: dict[str, tuple[frozenset[str], IngestCheck]] = {}

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
            claim_device(conn, device.name, now)
            _count_refusals(conn, device.name, [(e.kind, why) for _, (e, why) in refused],
                            now)
            refold = _take_anchor(conn, device.name, clock, now) if clock else set()
            anchors = _anchors(conn, device.name, {e.boot_id for e in mine})
            new = _insert_events(conn, device.name, mine, anchors, now)
            held, collisions = _already_held(conn, device.name,
                                             [e for e in mine if e.event_id not in new])
            refold |= {vid for e in mine if e.event_id in new and (vid := visit_id(e))}
            refold_visits(conn, device.name, refold, now)
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


def _anchors(conn: Connection, device: str, boot_ids: Iterable[str]) -> dict[str, Anchor]:
    a = db.anchors.c
    found: dict[str, Anchor] = {}
    for chunk in chunks(boot_ids):
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


def _event_row(device: str, event: Event, anchor: Anchor | None,
               now: datetime) -> dict[str, Any]:
    at, quality = best_time(event.at, event.boottime_ns, event.boot_id, event.clock_synced,
                            anchor)
    return {
        "event_id": event.event_id, "device": device, "kind": event.kind,
        "visit_id": visit_id(event), "payload": event.model_dump(mode="json"),
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
    for chunk in chunks(ev.event_id for ev in events):
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


