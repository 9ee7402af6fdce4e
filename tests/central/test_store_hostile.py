"""The central store protects itself from data its databases cannot hold as sent.

Not only the HTTP API: whoever calls :meth:`CentralStore.ingest` (the API, the CLI,
a test, a future import) gets a per-event rejection with the reason, never a failed
transaction. Every test runs on SQLite and on PostgreSQL (conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from central.errors import (
    CentralError,
    InvalidClockSample,
    ReferenceDataError,
    UnstorableReference,
)
from central.storable import MAX_DATA_DEPTH, MAX_INT64
from central.store import CentralStore
from sync.protocol import ClockSample, Event, ReferenceKind
from tests.central.test_store import BOOT, T0, enrol, event, visit_event


def deep(levels: int) -> Any:
    return json.loads("[" * levels + "]" * levels)


def _surrogate_kind() -> Event:
    """An event built without validation (pydantic refuses lone surrogates in str fields)."""
    valid = event("tap.refused")
    return Event.model_construct(**{**dict(valid), "kind": "tap\ud800refused"})


HOSTILE: list[tuple[str, Callable[[], Event], str]] = [
    ("nul in data", lambda: event("tap.refused", note="nul \x00 here"),
     "data contains a NUL character"),
    ("nul in a data key", lambda: event("tap.refused", **{"no\x00te": 1}),
     "data a key contains a NUL character"),
    ("nul in kind", lambda: event("odd\x00kind"), "kind contains a NUL character"),
    ("nul in boot_id", lambda: event("tap.refused", boot_id="boot\x00"),
     "boot_id contains a NUL character"),
    ("lone surrogate in data", lambda: event("tap.refused", note="\ud800"),
     "data contains a lone surrogate (not valid Unicode)"),
    ("lone surrogate in kind", _surrogate_kind,
     "kind contains a lone surrogate (not valid Unicode)"),
    ("NaN", lambda: event("tap.refused", value=float("nan")),
     "data contains NaN or Infinity (not JSON)"),
    ("Infinity", lambda: event("tap.refused", value=[1.0, float("-inf")]),
     "data contains NaN or Infinity (not JSON)"),
    ("time overflowing UTC", lambda: event(
        "tap.refused", at=datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))),
     "at time outside 1900-9000"),
    ("time underflowing UTC", lambda: event(
        "tap.refused", at=datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5)))),
     "at time outside 1900-9000"),
    ("boottime_ns of 2^63", lambda: event("tap.refused", boottime_ns=MAX_INT64 + 1),
     "boottime_ns exceeds 64 bits"),
    ("data too deep", lambda: event("tap.refused", nested=deep(MAX_DATA_DEPTH + 5)),
     f"data nests deeper than {MAX_DATA_DEPTH} levels"),
]


@pytest.mark.parametrize(("make", "reason"), [(m, r) for _, m, r in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_hostile_event_is_rejected_with_its_reason_and_the_rest_stored(
        central_store: CentralStore, make: Callable[[], Event], reason: str) -> None:
    device = enrol(central_store)
    before, hostile, after = event("staff.signed_in"), make(), visit_event("visit.arrived", "v1")
    result = central_store.ingest(device, [before, hostile, after], None)
    assert result.stored == [before.event_id, after.event_id]
    assert [(r.event_id, r.reason) for r in result.rejected] == [(hostile.event_id, reason)]
    assert sorted(e["event_id"] for e in central_store.events()) == sorted(result.stored)
    assert central_store.list_devices()[0].events == 2
    # Sent again (an agent retries what was not stored): the same answer, nothing doubled.
    again = central_store.ingest(device, [before, hostile, after], None)
    assert (again.stored, again.rejected) == (result.stored, result.rejected)
    assert central_store.event_count() == 2


def test_a_hostile_visit_event_does_not_reach_the_visits(central_store: CentralStore) -> None:
    device = enrol(central_store)
    arrived = visit_event("visit.arrived", "v1")
    departed = visit_event("visit.departed", "v1", T0 + timedelta(minutes=20),
                           note="\x00")
    result = central_store.ingest(device, [arrived, departed], None)
    assert result.stored == [arrived.event_id]
    [visit] = central_store.visits()
    assert (visit.visit_id, visit.status, visit.departed_at) == ("v1", "open", None)


def test_limits_themselves_are_storable(central_store: CentralStore) -> None:
    device = enrol(central_store)
    edge = [event("tap.refused", boottime_ns=MAX_INT64),
            event("tap.refused", nested=deep(MAX_DATA_DEPTH - 1)),
            event("tap.refused", at=datetime(1900, 1, 1, tzinfo=UTC)),
            event("tap.refused", note="ÅÄÖ \u2603 \U0001f511", value=1e308)]
    result = central_store.ingest(device, edge, None)
    assert (result.stored, result.rejected) == ([e.event_id for e in edge], [])
    stored = {e["event_id"]: e for e in central_store.events()}
    assert stored[edge[0].event_id]["boottime_ns"] == MAX_INT64
    assert stored[edge[3].event_id]["payload"]["data"]["note"] == "ÅÄÖ \u2603 \U0001f511"


def test_unstorable_and_foreign_events_are_both_rejected(central_store: CentralStore) -> None:
    device = enrol(central_store)
    mine = event("staff.signed_in")
    foreign = event("staff.signed_in", device="intruder")
    hostile_foreign = event("staff.signed_in", device="intruder", note="\x00")
    result = central_store.ingest(device, [foreign, mine, hostile_foreign], None)
    assert result.stored == [mine.event_id]
    reasons = {r.event_id: r.reason for r in result.rejected}
    assert reasons == {foreign.event_id: "not your event: device_id intruder",
                       hostile_foreign.event_id: "data contains a NUL character"}


@pytest.mark.parametrize(("change", "reason"), [
    ({"boot_id": "boot\x00"}, "clock: contains a NUL character"),
    ({"server_time": datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))},
     "clock: time outside 1900-9000"),
    ({"boottime_ns": MAX_INT64 + 1}, "clock: a count exceeds 64 bits"),
    ({"rtt_ns": MAX_INT64 + 1}, "clock: a count exceeds 64 bits"),
], ids=["nul boot_id", "server_time overflow", "boottime_ns", "rtt_ns"])
def test_an_unstorable_clock_sample_stores_nothing_of_the_batch(
        central_store: CentralStore, change: dict[str, Any], reason: str) -> None:
    device = enrol(central_store)
    sample = {"boot_id": BOOT, "boottime_ns": 1, "server_time": T0, "rtt_ns": 1, **change}
    with pytest.raises(InvalidClockSample) as caught:
        central_store.ingest(device, [event("staff.signed_in")], ClockSample(**sample))
    assert str(caught.value) == reason
    assert isinstance(caught.value, CentralError)
    assert central_store.event_count() == 0


# --- reference data ------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "reason"), [
    ({"ref": "K-1", "display_name": "Kar\x00in"}, "data contains a NUL"),
    ({"ref": "K-1", "display_name": "\ud800"}, "data contains a lone surrogate"),
    ({"ref": "K-1", "extra": float("nan")}, "data contains NaN"),
    ({"ref": "K-1", "extra": deep(MAX_DATA_DEPTH + 2)}, "data nests deeper"),
], ids=["nul", "lone surrogate", "NaN", "too deep"])
def test_unstorable_reference_data_changes_nothing(central_store: CentralStore,
                                                   record: dict[str, Any], reason: str) -> None:
    with pytest.raises(UnstorableReference, match=reason) as caught:
        central_store.import_reference({"clients": [record]})
    assert isinstance(caught.value, ReferenceDataError)  # existing except clauses hold
    with pytest.raises(UnstorableReference, match=reason):
        central_store.upsert_reference(ReferenceKind.CLIENT, "K-1", record)
    assert central_store.reference_since(0, 10) == ([], 0, False)


def test_unstorable_reference_keys_are_refused(central_store: CentralStore) -> None:
    central_store.import_reference({"clients": [{"ref": "K-1"}]})
    for key in ("K-\x001", "K-\ud800"):
        with pytest.raises(UnstorableReference, match="key contains"):
            central_store.upsert_reference(ReferenceKind.CLIENT, key, {})
        with pytest.raises(UnstorableReference, match="key contains"):
            central_store.delete_reference(ReferenceKind.CLIENT, key)
    assert [i.key for i in central_store.reference_since(0, 10)[0]] == ["K-1"]


def test_event_ids_are_not_reused_across_hostile_and_good(central_store: CentralStore) -> None:
    """A rejected event's id is not taken: the agent may fix and resend it under it."""
    device = enrol(central_store)
    event_id = uuid.uuid4().hex
    bad = event("tap.refused", event_id=event_id, note="\x00")
    assert central_store.ingest(device, [bad], None).stored == []
    good = event("tap.refused", event_id=event_id, note="fixed")
    assert central_store.ingest(device, [good], None).stored == [event_id]
