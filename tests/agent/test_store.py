"""The agent's SQLite store: durability settings, migrations, reference data, outbox."""

from __future__ import annotations

import json
import sqlite3

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
    ],
)
def test_bad_reference_data_changes_nothing(store, data, message):
    before = store.reference_counts()
    with pytest.raises(ReferenceDataError, match=message):
        store.import_reference(data, "now")
    assert store.reference_counts() == before


def test_reference_upsert_normalises_uids(store):
    store.import_reference({"tags": [{"uid": "04:a1:b2:c3:d4:e5:f6", "client_ref": "K-2"}]}, "t")
    client, active = store.client_for_tag("04A1B2C3D4E5F6")
    assert client.ref == "K-2" and active
    assert json.dumps(store.reference_counts()) == '{"clients": 3, "tags": 3, "staff": 2}'
