"""Visits at the centre: folded from their events with the best known times.

:func:`refold_visits` rebuilds visits from all their stored events (in the ingest
transaction, and when a clock sample re-corrects a boot's times); :meth:`Visits.visits`
reads them by the municipality's calendar day.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db
from central.store_base import StoreBase, chunks, jsonable
from routine.timekeeping import Quality
from routine.visits import VISIT_KINDS, VisitEvent, VisitRecord, fold
from sync.protocol import Event

log = logging.getLogger(__name__)


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
        return jsonable(asdict(self))


class Visits(StoreBase):
    """Reading visits."""

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


def visit_id(event: Event) -> str | None:
    """The visit an event belongs to, if it is one of the visit kinds."""
    value = event.data.get("visit_id")
    if event.kind in VISIT_KINDS and isinstance(value, str) and value:
        return value
    return None


def refold_visits(conn: Connection, device: str, visit_ids: set[str], now: datetime) -> None:
    """Rebuild the given visits of the device from all their events (best times)."""
    if not visit_ids:
        return
    e = db.events.c
    events: list[VisitEvent] = []
    quality: dict[tuple[str, str, datetime], Quality] = {}
    for chunk in chunks(visit_ids):
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


