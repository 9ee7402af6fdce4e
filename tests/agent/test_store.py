"""The agent's SQLite store: durability settings, migrations, reference data, outbox."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from agent.clock import FixedClock
from agent.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ReferenceDataError,
    Store,
    StoreError,
    migrate,
)
from routine import reference
from routine.timekeeping import Anchor
from sync.protocol import ReferenceItem
from tests.conftest import INSTALLED_TAG as INSTALLED


def test_wal_and_full_sync(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migration_keeps_buffered_events(tmp_path, clock):
    path = tmp_path / "agent.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)  # an agent of the first schema version...
    conn.execute(
        "INSERT INTO outbox(event_id, kind, payload, created_at) VALUES ('e1', 'visit.arrived', "
        "'{\"event_id\": \"e1\"}', '2026-11-30T08:00:00+00:00')"
    )
    conn.execute("INSERT INTO visits(id, client_ref, staff_ref, tag_uid, arrived_at, status) "
                 "VALUES ('v1', 'K-1', 'P-1', '04AA', '2026-11-30T08:00:00+00:00', 'open')")
    conn.close()
    with Store(path) as store:  # ...upgraded in place
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert [e.event_id for e in store.pending_events()] == ["e1"]
        assert [v.id for v in store.visits()] == ["v1"]
        assert store.recent_taps() == []  # the table the later migration added


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "agent.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this agent"):
        Store(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "agent.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable agent store"):
        Store(path)


def test_unwritable_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="--data-dir"):
        Store(blocker / "sub" / "agent.db")


def test_outbox_pending_and_mark_sent(store):
    clock = FixedClock.__new__(FixedClock)
    clock.__init__(__import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").UTC))
    with store.transaction() as conn:
        ids = [store.add_event(conn, "test.event", clock.now(), {"n": i}) for i in range(3)]
    assert [e.event_id for e in store.pending_events()] == ids
    assert store.mark_sent([*ids[:2], "unknown"], "2026-01-01T00:00:01+00:00") == 2
    assert [e.event_id for e in store.pending_events()] == ids[2:]
    assert store.outbox_counts() == {"total": 3, "sent": 2, "pending": 1}
    payload = store.pending_events()[0].payload
    assert payload["device_id"] == "test-agent" and payload["data"] == {"n": 2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tags": [{"uid": "zz", "client_ref": "K"}]}, "not hex"),
        ({"tags": [{"uid": "0102", "client_ref": "K"}]}, "4, 7 or 10"),
        ({"clients": [{"ref": "K", "lock_status": "maybe"}]}, "lock_status"),
        ({"clients": [{"display_name": "x"}]}, "'ref' is required"),
        ({"people": []}, "unknown sections"),
        ([], "must be an object"),
        # the routine's one definition (routine.reference), as at the centre:
        ({"locks": []}, "expected clients, tags, staff"),  # locks come from the centre only
        ({"tags": [{"uid": "04111111111111", "client_ref": "K-1"},
                   {"uid": "04:11:11:11:11:11:11", "client_ref": "K-2"}]}, "also in tags"),
        ({"clients": [{"ref": "K-9", "display_name": 42}]}, "'display_name' must be a string"),
        ({"staff": [{"badge_uid": "0A0B0C0F", "staff_ref": "P", "active": "no"}]},
         "'active' must be true or false"),
        ({"clients": {"ref": "K-9"}}, "clients must be a list"),
    ],
)
def test_bad_reference_data_changes_nothing(store, data, message):
    before = store.reference_counts()
    with pytest.raises(ReferenceDataError, match=message):
        store.import_reference(data, "now")
    assert store.reference_counts() == before


def test_reference_errors_are_the_routines_too(store):
    with pytest.raises(reference.ReferenceDataError) as caught:
        store.import_reference({"tags": [{"uid": "zz", "client_ref": "K"}]}, "now")
    assert isinstance(caught.value, ReferenceDataError)
    assert isinstance(caught.value, StoreError)


def test_missing_display_name_is_empty_and_keys_are_stripped(store):
    store.import_reference({"clients": [{"ref": " K-9 ", "display_name": None}],
                            "tags": [{"uid": "04999999999999", "client_ref": "K-9 "}]}, "t")
    client, _ = store.client_for_tag("04999999999999")
    assert (client.ref, client.display_name) == ("K-9", "")


def test_reference_upsert_normalises_uids(store):
    store.import_reference({"tags": [{"uid": "04:a1:b2:c3:d4:e5:f6", "client_ref": "K-2"}]}, "t")
    client, active = store.client_for_tag("04A1B2C3D4E5F6")
    assert client.ref == "K-2" and active
    assert json.dumps(store.reference_counts()) == '{"clients": 3, "tags": 3, "staff": 2}'


# --- sync with the centre (schema v3) ----------------------------------------------------


def _events(store, clock, n):
    with store.transaction() as conn:
        return [store.add_event(conn, "test.event", clock.now(), {"n": i}) for i in range(n)]


def test_migration_to_sync_schema_keeps_buffered_events(tmp_path):
    path = tmp_path / "agent.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=2)  # an agent from before sync...
    for eid, sent in (("e1", "2026-11-30T08:00:01+00:00"), ("e2", None)):
        conn.execute(
            "INSERT INTO outbox(event_id, kind, payload, created_at, sent_at) "
            "VALUES (?, 'visit.arrived', ?, '2026-11-30T08:00:00+00:00', ?)",
            (eid, json.dumps({"event_id": eid}), sent),
        )
    conn.close()
    with Store(path) as store:  # ...upgraded in place
        assert store.schema_version == SCHEMA_VERSION
        assert [e.event_id for e in store.pending_events()] == ["e2"]
        assert store.outbox_counts() == {"total": 2, "sent": 1, "pending": 1}
        assert store.rejected_count() == 0
        assert store.reference_cursor() == 0 and store.locks() == []


def test_rejected_events_leave_the_queue_but_stay_in_the_store(store, clock):
    ids = _events(store, clock, 3)
    store.mark_rejected(ids[0], "centre: unknown kind")
    assert [e.event_id for e in store.pending_events()] == ids[1:]
    assert store.pending_count() == 2 and store.rejected_count() == 1
    assert store.outbox_counts() == {"total": 3, "sent": 0, "pending": 2}
    [row] = store.rejected_events()
    assert row["event_id"] == ids[0] and row["rejected_reason"] == "centre: unknown kind"
    store.mark_sent(ids[1:], "2026-11-30T08:00:01+00:00")
    assert store.requeue_rejected([ids[0]]) == 1  # after the cause was fixed
    assert [e.event_id for e in store.pending_events()] == ids[:1]


def _item(kind, key, version=1, deleted=False, **data):
    return ReferenceItem(kind=kind, key=key, version=version, deleted=deleted, data=data)


def test_apply_reference_upserts_deletes_and_moves_the_cursor(store):
    store.apply_reference([
        _item("client", "K-1", lock_status="installed", display_name="Karin"),
        _item("tag", "04:11:11:11:11:11:11", client_ref="K-3", active=False),
        _item("staff", "0a0b0c0d", staff_ref="P-anna", display_name="Anna B", active=True),
        _item("lock", "LK-7", client_ref="K-1", state="installed"),
        _item("staff", "0A0B0C0E", deleted=True),
    ], cursor=40)
    assert store.reference_cursor() == 40
    client, _ = store.client_for_tag("04A1B2C3D4E5F6")
    assert (client.lock_status, client.display_name) == ("installed", "Karin")
    assert store.client_for_tag("04111111111111") == (store.client_for_tag(INSTALLED)[0], False)
    assert store.staff_for_badge("0A0B0C0D").display_name == "Anna B"
    assert store.staff_for_badge("0A0B0C0E") is None
    assert [(lk["serial"], lk["state"]) for lk in store.locks()] == [("LK-7", "installed")]
    store.apply_reference([_item("lock", "LK-7", deleted=True)], cursor=41)
    assert store.locks() == [] and store.reference_cursor() == 41


def test_unusable_reference_item_is_skipped_not_blocking(store, caplog):
    store.apply_reference([
        _item("tag", "not-hex", client_ref="K-1"),
        _item("client", "K-4", lock_status="maybe"),
        _item("client", "K-5", lock_status="none"),
    ], cursor=7)
    assert store.reference_cursor() == 7
    assert store.reference_counts()["clients"] == 4  # K-5 only
    assert "not hex" in caplog.text and "lock_status" in caplog.text


def test_a_lock_item_is_validated_like_the_centres(store, caplog):
    store.apply_reference([
        _item("lock", "LK-1", client_ref="K-1"),  # no state: the centre never sends that
        _item("lock", " LK-2 ", state="pending"),
    ], cursor=3)
    assert [(lk["serial"], lk["client_ref"], lk["state"]) for lk in store.locks()] == [
        ("LK-2", None, "pending")]
    assert "'state' is required" in caplog.text


def test_reference_page_and_cursor_are_one_transaction(store, monkeypatch):
    import agent.store as store_module

    calls = []
    real = store_module._apply_reference_row

    def fail_on_second(conn, row, at):
        calls.append(row.key)
        if len(calls) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        real(conn, row, at)

    monkeypatch.setattr(store_module, "_apply_reference_row", fail_on_second)
    with pytest.raises(sqlite3.OperationalError):
        store.apply_reference([_item("client", "K-7"), _item("client", "K-8")], cursor=9)
    assert store.reference_cursor() == 0 and store.reference_counts()["clients"] == 3


def test_an_older_page_does_not_overwrite_a_newer_one(store):
    store.apply_reference([_item("client", "K-1", version=20, lock_status="installed")], 20)
    # a concurrent sync (CLI while the agent runs) applies a page it fetched earlier
    store.apply_reference([_item("client", "K-1", version=5, lock_status="pending")], 10)
    assert store.reference_cursor() == 20
    assert store.client_for_tag("04A1B2C3D4E5F6")[0].lock_status == "installed"


def test_anchors_keep_the_shortest_round_trip_of_each_boot(store):
    t = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert store.anchor("b1") is None
    store.save_anchor(Anchor("b1", 100, t, rtt_ns=50))
    store.save_anchor(Anchor("b1", 900, t, rtt_ns=80))  # worse: ignored
    store.save_anchor(Anchor("b2", 5, t, rtt_ns=99))
    assert store.anchor("b1") == Anchor("b1", 100, t, 50)
    store.save_anchor(Anchor("b1", 700, t, rtt_ns=20))
    assert store.anchor("b1") == Anchor("b1", 700, t, 20)
    assert store.anchor("b2").rtt_ns == 99
