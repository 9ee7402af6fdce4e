"""Visits as the routine sees them (section 5), rebuilt from the agents' events.

An agent decides arrival and departure when the tag is tapped (agent.visits) and
records each decision as an event carrying the visit's id. Anyone holding those
events, the centre above all, rebuilds the visits with :func:`fold`, with no
I/O: whatever order the events arrive in, the result is the same.

Event kinds and their ``data`` (all carry ``visit_id``, ``client_ref``, ``staff_ref``):

- ``visit.arrived``: the visit opens (``tag_uid``, ``method``)
- ``visit.departed``: it closes normally (``arrived_at``, ``duration_s``)
- ``visit.departure_missing``: it closes without a departure (``reason``:
  ``tap_at_other_client`` or ``open_too_long``)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

VISIT_KINDS = ("visit.arrived", "visit.departed", "visit.departure_missing")


@dataclass(frozen=True)
class VisitEvent:
    """The part of an event the fold needs; ``at`` is the best time known for it."""

    kind: str
    at: datetime
    data: Mapping[str, Any]
    event_id: str = ""


@dataclass(frozen=True)
class VisitRecord:
    visit_id: str
    client_ref: str
    staff_ref: str
    tag_uid: str | None
    method: str
    arrived_at: datetime | None
    departed_at: datetime | None
    status: str  # open | closed | departure_missing | incomplete
    close_reason: str | None


def fold(events: Iterable[VisitEvent]) -> dict[str, VisitRecord]:
    """Rebuild every visit from its events. Order-independent; duplicates harmless.

    A departure overrides a "departure missing" for the same visit (the person
    did tap out, the event just arrived later); a visit seen only through its
    closing event is ``incomplete`` until its arrival arrives.
    """
    by_visit: dict[str, list[VisitEvent]] = {}
    for e in events:
        if e.kind in VISIT_KINDS and e.data.get("visit_id"):
            by_visit.setdefault(str(e.data["visit_id"]), []).append(e)
    return {vid: _one(vid, evs) for vid, evs in by_visit.items()}


def _one(visit_id: str, events: list[VisitEvent]) -> VisitRecord:
    kinds = {e.kind: e for e in sorted(events, key=lambda e: (e.at, e.event_id))}
    arrived = kinds.get("visit.arrived")
    departed = kinds.get("visit.departed")
    missing = kinds.get("visit.departure_missing")
    first = arrived or departed or missing
    assert first is not None
    data = first.data
    if departed is not None:
        status, reason, departed_at = "closed", "departed", departed.at
    elif missing is not None:
        status, reason, departed_at = ("departure_missing",
                                       str(missing.data.get("reason") or "unknown"), None)
    else:
        status, reason, departed_at = "open", None, None
    if arrived is None:
        status = "incomplete"
    return VisitRecord(
        visit_id=visit_id,
        client_ref=str(data.get("client_ref", "")),
        staff_ref=str(data.get("staff_ref", "")),
        tag_uid=(arrived.data.get("tag_uid") if arrived else data.get("tag_uid")),
        method=str((arrived or first).data.get("method") or "nfc_tag"),
        arrived_at=arrived.at if arrived else None,
        departed_at=departed_at,
        status=status,
        close_reason=reason,
    )
