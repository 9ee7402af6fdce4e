"""The central store on SQLite and PostgreSQL: devices, ingest, visits, time, reference data.

Every test takes ``database_url`` (directly or through ``central_store``), so each
runs once per backend; PostgreSQL tests fail, never skip, without a server.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import db
from central.errors import (
    CentralError,
    DatabaseUnavailable,
    DeviceExists,
    Forbidden,
    ReferenceDataError,
    Unauthorized,
    UnknownDevice,
    UnknownReference,
)
from central.store import DEFAULT_DAY_ZONE, CentralStore, DeviceInfo
from routine.timekeeping import Quality
from routine.visits import VisitEvent, fold
from sync.protocol import ClockSample, Event, ReferenceKind
from tests.central.conftest import BACKENDS, CENTRE_T0, SteppingClock

AGENT = "agent-1"
OTHER = "agent-2"
BOOT = "boot-a"
T0 = CENTRE_T0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
S = 1_000_000_000  # nanoseconds per second


def event(kind: str, *, device: str = AGENT, at: datetime = T0, boottime_ns: int = 0,
          boot_id: str = BOOT, synced: bool = True, event_id: str | None = None,
          **data: Any) -> Event:
    return Event(event_id=event_id or uuid.uuid4().hex, kind=kind, device_id=device, at=at,
                 boottime_ns=boottime_ns, boot_id=boot_id, clock_synced=synced, data=data)


def visit_event(kind: str, visit_id: str, at: datetime = T0, *, client: str = "K-1",
                staff: str = "P-anna", **kw: Any) -> Event:
    extra: dict[str, Any] = {}
    if kind == "visit.arrived":
        extra = {"tag_uid": "04A1B2C3D4E5F6", "method": "nfc_tag"}
    return event(kind, at=at, visit_id=visit_id, client_ref=client, staff_ref=staff,
                 **extra, **kw)


def enrol(store: CentralStore, name: str = AGENT) -> DeviceInfo:
    return store.authenticate(store.add_device(name))


def raw_rows(database_url: str, table: sa.Table) -> list[dict[str, Any]]:
    engine = db.create_engine(db.database_url(database_url))
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]
    finally:
        engine.dispose()


def run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run callables on threads, started together; their results, re-raising failures."""
    start = threading.Barrier(len(jobs))

    def go(job: Callable[[], Any]) -> Any:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result() for f in [pool.submit(go, job) for job in jobs]]


# --- devices -------------------------------------------------------------------------------


def test_token_is_shown_once_and_only_its_hash_is_kept(central_store, database_url):
    token = central_store.add_device(AGENT)
    admin_token = central_store.add_device("admin-1", role="admin")
    assert token != admin_token and len(token) >= 43  # 32 random bytes, url-safe base64

    rows = {r["name"]: r for r in raw_rows(database_url, db.devices)}
    assert rows[AGENT]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert all(token not in str(v) for r in rows.values() for v in r.values())
    assert central_store.authenticate(token).name == AGENT
    assert central_store.authenticate(admin_token).is_admin
    listed = {d.name: d for d in central_store.list_devices()}
    assert set(listed) == {AGENT, "admin-1"}
    assert token not in str(listed)


def test_unknown_or_missing_token_is_unauthorized(central_store):
    central_store.add_device(AGENT)
    for token in (None, "", "not-a-token"):
        with pytest.raises(Unauthorized, match="token"):
            central_store.authenticate(token)


def test_revoked_device_is_forbidden_and_cannot_push(central_store):
    token = central_store.add_device(AGENT)
    device = central_store.authenticate(token)
    central_store.revoke_device(AGENT)
    central_store.revoke_device(AGENT)  # idempotent
    with pytest.raises(Forbidden, match="revoked"):
        central_store.authenticate(token)
    with pytest.raises(Forbidden):
        central_store.ingest(device, [event("staff.signed_in")], None)
    assert central_store.event_count() == 0
    assert central_store.list_devices()[0].revoked
    with pytest.raises(UnknownDevice, match="no device named"):
        central_store.revoke_device("nobody")
    with pytest.raises(DeviceExists, match="choose another name"):
        central_store.add_device(AGENT)


def test_device_names_and_roles_are_checked(central_store):
    with pytest.raises(CentralError, match="not usable"):
        central_store.add_device("bad name!")
    with pytest.raises(CentralError, match="role"):
        central_store.add_device(AGENT, role="root")
    assert central_store.list_devices() == []


def test_last_seen_and_event_counts(central_store, central_clock):
    token = central_store.add_device(AGENT)
    assert central_store.list_devices()[0].last_seen_at is None
    device = central_store.authenticate(token)
    assert device.last_seen_at == T0
    central_clock.advance(3600)
    central_store.ingest(device, [event("staff.signed_in"), event("tap.refused")], None)
    (listed,) = central_store.list_devices()
    assert (listed.events, listed.last_seen_at) == (2, T0 + timedelta(hours=1))


# --- ingest --------------------------------------------------------------------------------


def test_ingest_is_idempotent(central_store, central_clock):
    device = enrol(central_store)
    batch = [event("staff.signed_in"), visit_event("visit.arrived", "v1"),
             event("tap.refused", reason="unknown_tag")]
    ids = [e.event_id for e in batch]
    for _ in range(3):
        result = central_store.ingest(device, batch, None)
        assert (result.stored, result.rejected) == (ids, [])
        central_clock.advance(10)
    stored = central_store.events()
    assert sorted(e["event_id"] for e in stored) == sorted(ids)
    assert len({e["seq"] for e in stored}) == 3
    assert all(e["received_at"] == T0 for e in stored)  # the first delivery's
    arrival = next(e for e in stored if e["kind"] == "visit.arrived")
    assert arrival["payload"] == batch[1].model_dump(mode="json")
    assert (arrival["visit_id"], arrival["quality"], arrival["best_at"]) == ("v1", "synchronised",
                                                                             T0)
    assert central_store.event_count() == 3
    assert central_store.list_devices()[0].events == 3


def test_event_of_another_device_is_rejected_and_not_stored(central_store):
    device = enrol(central_store)
    mine, foreign = event("staff.signed_in"), event("staff.signed_in", device="intruder")
    result = central_store.ingest(device, [mine, foreign], None)
    assert result.stored == [mine.event_id]
    assert [(r.event_id, r.reason) for r in result.rejected] == [
        (foreign.event_id, "not your event: device_id intruder")]
    assert [e["event_id"] for e in central_store.events()] == [mine.event_id]


def test_event_id_held_by_another_device_is_rejected(central_store):
    first, second = enrol(central_store, AGENT), enrol(central_store, OTHER)
    shared = uuid.uuid4().hex
    assert central_store.ingest(first, [event("tap.refused", event_id=shared)],
                                None).stored == [shared]
    result = central_store.ingest(
        second, [event("tap.refused", device=OTHER, event_id=shared)], None)
    assert result.stored == []
    assert result.rejected[0].event_id == shared
    assert "another device" in result.rejected[0].reason
    assert [(e["event_id"], e["device"]) for e in central_store.events()] == [(shared, AGENT)]


# --- visits --------------------------------------------------------------------------------


def test_arrival_and_departure_fold_into_a_closed_visit(central_store, central_clock):
    device = enrol(central_store)
    central_store.ingest(device, [visit_event("visit.arrived", "v1", T0)], None)
    (open_,) = central_store.visits()
    assert (open_.status, open_.arrived_at, open_.departed_at) == ("open", T0, None)
    central_clock.advance(60)
    departed = T0 + timedelta(minutes=25)
    central_store.ingest(device, [visit_event("visit.departed", "v1", departed)], None)
    (visit,) = central_store.visits()
    assert visit.as_dict() == {
        "device": AGENT, "visit_id": "v1", "client_ref": "K-1", "staff_ref": "P-anna",
        "tag_uid": "04A1B2C3D4E5F6", "method": "nfc_tag",
        "arrived_at": T0.isoformat(), "arrived_quality": Quality.SYNCHRONISED,
        "departed_at": departed.isoformat(), "departed_quality": Quality.SYNCHRONISED,
        "status": "closed", "close_reason": "departed",
        "updated_at": (T0 + timedelta(seconds=60)).isoformat(),
    }


def test_visits_filter_by_local_day_client_and_staff(central_store):
    device = enrol(central_store)
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 00:30 on 1 December in Stockholm
    central_store.ingest(device, [
        visit_event("visit.arrived", "v1", T0),
        visit_event("visit.arrived", "v2", late, client="K-2", staff="P-bo"),
    ], None)
    assert [v.visit_id for v in central_store.visits(day=date(2026, 11, 30))] == ["v1"]
    assert [v.visit_id for v in central_store.visits(day=date(2026, 12, 1))] == ["v2"]
    assert [v.visit_id for v in central_store.visits(client_ref="K-2")] == ["v2"]
    assert [v.visit_id for v in central_store.visits(staff_ref="P-anna")] == ["v1"]
    assert central_store.visits(day=date(2026, 11, 29)) == []


def test_departure_missing_closes_the_visit(central_store):
    device = enrol(central_store)
    central_store.ingest(device, [
        visit_event("visit.arrived", "v1", T0),
        visit_event("visit.departure_missing", "v1", T0 + timedelta(hours=5),
                    reason="open_too_long"),
    ], None)
    (visit,) = central_store.visits()
    assert (visit.status, visit.close_reason, visit.departed_at) == (
        "departure_missing", "open_too_long", None)


def test_departure_before_arrival_is_incomplete_then_closed(central_store):
    device = enrol(central_store)
    departed = T0 + timedelta(minutes=20)
    central_store.ingest(device, [visit_event("visit.departed", "v1", departed)], None)
    (visit,) = central_store.visits(day=date(2026, 11, 30))  # dated by its departure
    assert (visit.status, visit.arrived_at, visit.departed_at) == ("incomplete", None, departed)
    central_store.ingest(device, [visit_event("visit.arrived", "v1", T0)], None)
    (visit,) = central_store.visits()
    assert (visit.status, visit.arrived_at, visit.departed_at) == ("closed", T0, departed)


def _visit_history() -> list[Event]:
    history = []
    for n, ending in enumerate(("visit.departed", "visit.departure_missing", None)):
        start = T0 + timedelta(hours=n)
        history.append(visit_event("visit.arrived", f"v{n}", start))
        if ending:
            history.append(visit_event(ending, f"v{n}", start + timedelta(minutes=30),
                                       reason="tap_at_other_client"))
    return history


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_visits_do_not_depend_on_delivery_order_or_batching(central_store, data):
    """Whatever order and batches events come in (resent too), visits are routine's fold."""
    name = f"agent-{uuid.uuid4().hex[:8]}"  # a fresh device per example, same database
    device = enrol(central_store, name)
    history = [e.model_copy(update={"device_id": name}) for e in _visit_history()]
    deliveries = data.draw(st.permutations(history + data.draw(
        st.lists(st.sampled_from(history), max_size=3))))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(deliveries) - 1), max_size=4)))
    for lo, hi in zip([0, *cuts], [*cuts, len(deliveries)], strict=True):
        central_store.ingest(device, deliveries[lo:hi], None)
    expected = fold(VisitEvent(e.kind, e.at, e.data, e.event_id) for e in history)
    got = {v.visit_id: v for v in central_store.visits() if v.device == name}
    assert set(got) == set(expected)
    for vid, rec in expected.items():
        row = got[vid]
        assert (row.status, row.close_reason, row.arrived_at, row.departed_at) == (
            rec.status, rec.close_reason, rec.arrived_at, rec.departed_at)


# --- time ----------------------------------------------------------------------------------


def test_clock_sample_corrects_unverified_times_of_its_boot(central_store, central_clock):
    """An agent booted with its clock at 1970 taps, then syncs in the same boot."""
    device = enrol(central_store)
    arrived_ns, departed_ns = 300 * S, 1_500_123_456_000
    stale = {"synced": False, "boot_id": "boot-1970"}
    batch = [
        visit_event("visit.arrived", "v1", EPOCH + timedelta(seconds=300),
                    boottime_ns=arrived_ns, **stale),
        visit_event("visit.departed", "v1", EPOCH + timedelta(seconds=1500),
                    boottime_ns=departed_ns, **stale),
        visit_event("visit.arrived", "v2", EPOCH + timedelta(seconds=60), boottime_ns=60 * S,
                    synced=False, boot_id="boot-older"),
    ]
    central_store.ingest(device, batch, None)
    before = {v.visit_id: v for v in central_store.visits()}
    assert before["v1"].arrived_at == EPOCH + timedelta(seconds=300)
    assert before["v1"].arrived_quality == Quality.UNVERIFIED

    central_clock.advance(600)
    sample = ClockSample(boot_id="boot-1970", boottime_ns=1800 * S,
                         server_time=T0 + timedelta(minutes=30), rtt_ns=4_000_000)
    assert central_store.ingest(device, [], sample).stored == []
    after = {v.visit_id: v for v in central_store.visits()}
    v1 = after["v1"]
    assert v1.arrived_at == T0 + timedelta(minutes=5)  # 1500 s before the sample, exactly
    assert v1.departed_at == sample.server_time - timedelta(microseconds=299_876_544)
    assert (v1.arrived_quality, v1.departed_quality) == (Quality.CORRECTED, Quality.CORRECTED)
    assert v1.updated_at == T0 + timedelta(seconds=600)
    v2 = after["v2"]  # another boot: its clock cannot be placed
    assert (v2.arrived_at, v2.arrived_quality) == (EPOCH + timedelta(seconds=60),
                                                   Quality.UNVERIFIED)
    qualities = {e["event_id"]: (e["quality"], e["best_at"]) for e in central_store.events()}
    assert qualities[batch[0].event_id] == ("corrected", T0 + timedelta(minutes=5))


def test_only_a_better_clock_sample_moves_corrected_times(central_store):
    device = enrol(central_store)
    arrival = visit_event("visit.arrived", "v1", EPOCH, boottime_ns=100 * S, synced=False)
    sample = ClockSample(boot_id=BOOT, boottime_ns=200 * S, server_time=T0, rtt_ns=10_000_000)
    central_store.ingest(device, [arrival], sample)
    assert central_store.visits()[0].arrived_at == T0 - timedelta(seconds=100)

    worse = sample.model_copy(update={"server_time": T0 + timedelta(seconds=7),
                                      "rtt_ns": 50_000_000})
    central_store.ingest(device, [], worse)
    assert central_store.visits()[0].arrived_at == T0 - timedelta(seconds=100)

    better = sample.model_copy(update={"server_time": T0 + timedelta(seconds=1),
                                       "rtt_ns": 2_000_000})
    later = visit_event("visit.departed", "v1", EPOCH, boottime_ns=400 * S, synced=False)
    central_store.ingest(device, [later], better)
    (visit,) = central_store.visits()
    assert visit.arrived_at == T0 - timedelta(seconds=99)
    assert visit.departed_at == T0 + timedelta(seconds=201)
    assert visit.departed_quality == Quality.CORRECTED


def test_synchronised_clock_is_kept_over_an_anchor(central_store):
    device = enrol(central_store)
    synced = visit_event("visit.arrived", "v1", T0, boottime_ns=100 * S, synced=True)
    sample = ClockSample(boot_id=BOOT, boottime_ns=100 * S,
                         server_time=T0 + timedelta(seconds=3), rtt_ns=1)
    central_store.ingest(device, [synced], sample)
    (visit,) = central_store.visits()
    assert (visit.arrived_at, visit.arrived_quality) == (T0, Quality.SYNCHRONISED)


# --- reference data ------------------------------------------------------------------------

REFERENCE = {
    "clients": [{"ref": "K-1", "display_name": "", "lock_status": "pending"},
                {"ref": "K-2", "lock_status": "impossible"}],
    "tags": [{"uid": "04:a1:b2:c3:d4:e5:f6", "client_ref": "K-1"}],
    "staff": [{"badge_uid": "0a0b0c0d", "staff_ref": "P-anna", "display_name": "Anna"}],
    "locks": [{"serial": "PH-0001", "client_ref": "K-1", "state": "pending"}],
}


def page_all(store: CentralStore, cursor: int = 0, limit: int = 2) -> list[Any]:
    items = []
    while True:
        page, cursor, more = store.reference_since(cursor, limit)
        items += page
        if not more:
            return items


def test_reference_import_upsert_delete_and_paging(central_store):
    counts = central_store.import_reference(REFERENCE)
    assert counts == {"clients": 2, "tags": 1, "staff": 1, "locks": 1, "changed": 5}
    items, cursor, more = central_store.reference_since(0, 2)
    assert ([i.version for i in items], cursor, more) == ([1, 2], 2, True)
    rest = page_all(central_store, cursor)
    assert [i.version for i in rest] == [3, 4, 5]
    tag = next(i for i in items + rest if i.kind == ReferenceKind.TAG)
    assert (tag.key, tag.data) == ("04A1B2C3D4E5F6",
                                   {"uid": "04A1B2C3D4E5F6", "client_ref": "K-1",
                                    "active": True})

    assert central_store.import_reference(REFERENCE)["changed"] == 0  # nothing new to pull
    assert central_store.reference_since(5, 100) == ([], 5, False)

    assert central_store.upsert_reference(ReferenceKind.CLIENT, "K-1",
                                          {"lock_status": "installed"}) == 6
    assert central_store.upsert_reference(ReferenceKind.CLIENT, "K-1",
                                          {"lock_status": "installed"}) == 6
    assert central_store.delete_reference(ReferenceKind.TAG, "04a1b2c3d4e5f6") == 7
    with pytest.raises(UnknownReference):
        central_store.delete_reference(ReferenceKind.TAG, "04A1B2C3D4E5F6")
    with pytest.raises(UnknownReference):
        central_store.delete_reference(ReferenceKind.LOCK, "PH-9999")
    changed = page_all(central_store, 5)
    assert [(i.kind, i.key, i.version, i.deleted) for i in changed] == [
        (ReferenceKind.CLIENT, "K-1", 6, False), (ReferenceKind.TAG, "04A1B2C3D4E5F6", 7, True)]
    assert changed[0].data == {"ref": "K-1", "display_name": "", "lock_status": "installed"}
    # A fresh agent (cursor 0) sees each record once, at its newest version.
    assert sorted(i.version for i in page_all(central_store)) == [2, 4, 5, 6, 7]
    # Re-creating a deleted record is a change.
    assert central_store.upsert_reference(ReferenceKind.TAG, "04A1B2C3D4E5F6",
                                          {"client_ref": "K-2"}) == 8


@pytest.mark.parametrize("bad, message", [
    ({"clients": [{"ref": "K-9"}], "tags": [{"uid": "zz", "client_ref": "K-9"}]}, "not hex"),
    ({"clients": [{"ref": "K-9", "lock_status": "open"}]}, "lock_status"),
    ({"tags": [{"uid": "04111111111111"}]}, "client_ref"),
    ({"locks": [{"serial": "PH-2"}]}, "state"),
    ({"staff": [{"badge_uid": "0A0B0C0D", "staff_ref": "P"},
                {"badge_uid": "0a0b0c0d", "staff_ref": "Q"}]}, "also in"),
    ({"doors": []}, "unknown sections"),
    ([], "must be an object"),
])
def test_bad_reference_file_changes_nothing(central_store, bad, message):
    central_store.import_reference({"clients": [{"ref": "K-1"}]})
    with pytest.raises(ReferenceDataError, match=message):
        central_store.import_reference(bad)
    assert [i.key for i in page_all(central_store)] == ["K-1"]


def test_upsert_reference_checks_its_key(central_store):
    with pytest.raises(ReferenceDataError, match="differs from the key"):
        central_store.upsert_reference(ReferenceKind.CLIENT, "K-1", {"ref": "K-2"})
    with pytest.raises(ReferenceDataError, match="unknown reference kind"):
        central_store.upsert_reference("door", "D-1", {})  # type: ignore[arg-type]
    assert central_store.reference_since(0, 10) == ([], 0, False)


# --- concurrency: two stores are two processes --------------------------------------------


def test_concurrent_ingest_from_two_stores_stores_each_event_once(
        central_store, database_url, central_clock):
    device = enrol(central_store)
    events = []
    for n in range(30):
        events += [visit_event("visit.arrived", f"v{n}", T0 + timedelta(minutes=n)),
                   visit_event("visit.departed", f"v{n}", T0 + timedelta(minutes=n + 20))]
    batches = [events[0:40], events[20:60], events[10:50], events[::-1], events[5:55], events]
    with CentralStore.open(database_url, clock=central_clock) as second:
        stores = [central_store, second]
        jobs = [(stores[i % 2], batches[i % len(batches)]) for i in range(12)]
        results = run_together([
            lambda s=store, b=batch: s.ingest(device, b, None) for store, batch in jobs])
    for (_, batch), result in zip(jobs, results, strict=True):
        assert sorted(result.stored) == sorted(e.event_id for e in batch)
        assert result.rejected == []
    ids = [e["event_id"] for e in central_store.events()]
    assert sorted(ids) == sorted(e.event_id for e in events)
    assert central_store.event_count() == 60
    assert central_store.list_devices()[0].events == 60
    visits = central_store.visits()
    assert len(visits) == 30 and {v.status for v in visits} == {"closed"}


def test_concurrent_devices_racing_for_the_same_ids_get_each_once(
        central_store, database_url, central_clock):
    first, second_device = enrol(central_store, AGENT), enrol(central_store, OTHER)
    ids = [uuid.uuid4().hex for _ in range(40)]
    mine = [event("tap.refused", event_id=i) for i in ids]
    theirs = [event("tap.refused", device=OTHER, event_id=i) for i in reversed(ids)]
    with CentralStore.open(database_url, clock=central_clock) as second:
        a, b = run_together([lambda: central_store.ingest(first, mine, None),
                             lambda: second.ingest(second_device, theirs, None)])
    assert set(a.stored).isdisjoint(b.stored)
    assert set(a.stored) | set(b.stored) == set(ids)
    assert {r.event_id for r in a.rejected} == set(ids) - set(a.stored)
    assert central_store.event_count() == 40


def test_concurrent_reference_writers_leave_no_gap_for_a_paging_reader(
        central_store, database_url, central_clock):
    writers, per_writer = 4, 25
    done = threading.Event()
    seen: list[int] = []
    with CentralStore.open(database_url, clock=central_clock) as second:
        stores = [central_store, second]

        def write(w: int) -> None:
            for i in range(per_writer):
                stores[w % 2].upsert_reference(ReferenceKind.CLIENT, f"K-{w}-{i}",
                                               {"lock_status": "pending"})

        def read() -> None:
            cursor = 0
            while True:
                finished = done.is_set()
                items, cursor, _ = second.reference_since(cursor, 7)
                seen.extend(i.version for i in items)
                if finished and not items:
                    return
                time.sleep(0.001)

        with ThreadPoolExecutor(writers + 1) as pool:
            reader = pool.submit(read)
            for f in [pool.submit(write, w) for w in range(writers)]:
                f.result()
            done.set()
            reader.result()
    assert seen == list(range(1, writers * per_writer + 1))


# --- schema and opening --------------------------------------------------------------------


def test_migrations_create_exactly_the_metadata(database_url):
    engine = db.create_engine(db.database_url(database_url))
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
            assert db.current_revision(conn) == db.head_revision()
    finally:
        engine.dispose()


def test_processes_starting_together_migrate_once(database_url, central_clock):
    stores = run_together([lambda: CentralStore.open(database_url, clock=central_clock)
                           for _ in range(4)])
    try:
        enrol(stores[0])
        assert [d.name for d in stores[3].list_devices()] == [AGENT]
    finally:
        for store in stores:
            store.close()


def test_opening_without_migrations_needs_a_current_schema(database_url):
    with pytest.raises(DatabaseUnavailable, match="run the migrations"):
        CentralStore.open(database_url, migrate=False)
    CentralStore.open(database_url).close()
    CentralStore.open(database_url, migrate=False).close()


def test_a_schema_newer_than_the_code_is_refused(database_url):
    CentralStore.open(database_url).close()
    engine = db.create_engine(db.database_url(database_url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'from-the-future'")
    finally:
        engine.dispose()
    for migrate in (False, True):
        with pytest.raises(DatabaseUnavailable, match="newer than this centre knows"):
            CentralStore.open(database_url, migrate=migrate)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unreachable_database_is_unavailable_with_advice(backend, tmp_path):
    if backend == "postgresql":
        dsn, advice = "postgresql://postgres:secret@127.0.0.1:1/test", "PostgreSQL is running"
    else:
        (tmp_path / "a-file").write_text("")
        dsn, advice = str(tmp_path / "a-file" / "centre.db"), "create it"
    with pytest.raises(DatabaseUnavailable, match=advice) as caught:
        CentralStore.open(dsn)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_database_urls_are_normalised(backend, tmp_path):
    if backend == "sqlite":
        assert db.database_url("centre.db").drivername == "sqlite"
        assert db.database_url(str(tmp_path / "c.db")).database == str(tmp_path / "c.db")
        assert db.database_url("sqlite:///rel.db").database == "rel.db"
    else:
        pg = db.database_url("postgresql://u:pw@h:5433/d")
        assert (pg.drivername, pg.port, pg.database) == ("postgresql+psycopg", 5433, "d")
        assert db.database_url("postgres://h/d").drivername == "postgresql+psycopg"
        assert db.safe_url(pg) == "postgresql+psycopg://u:***@h:5433/d"
    with pytest.raises(DatabaseUnavailable, match="unsupported"):
        db.database_url("mysql://h/d")


def test_the_stepping_clock_is_the_store_clock(central_store, central_clock: SteppingClock):
    assert central_store.now() == T0
    central_clock.advance(5)
    assert central_store.now() == T0 + timedelta(seconds=5)


# --- health and the calendar ---------------------------------------------------------------


def test_ping_answers_when_the_database_does(central_store):
    assert central_store.ping() is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_ping_of_an_unreachable_database_is_unavailable(backend, tmp_path):
    where = "postgresql://nyckelfri@127.0.0.1:9/nowhere" if backend == "postgresql" else str(
        tmp_path)  # the discard port (refused); a folder where the SQLite file should be
    store = CentralStore(db.create_engine(db.database_url(where)), clock=SteppingClock())
    try:
        with pytest.raises(DatabaseUnavailable, match="unavailable"):
            store.ping()
    finally:
        store.close()


def test_today_is_the_store_clocks_day_in_the_day_zone(central_store, central_clock):
    assert central_store.day_zone == ZoneInfo(DEFAULT_DAY_ZONE)
    assert central_store.today() == date(2026, 11, 30)
    central_clock.at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 00:30 in Stockholm
    assert central_store.today() == date(2026, 12, 1)


def test_today_follows_the_day_zone_given(database_url):
    zone = ZoneInfo("America/New_York")
    clock = SteppingClock(datetime(2026, 12, 1, 3, 0, tzinfo=UTC))  # 22:00 on 30 November
    with CentralStore.open(database_url, clock=clock, day_zone=zone) as store:
        assert store.day_zone is zone
        assert store.today() == date(2026, 11, 30)
