"""Shared fixtures: real SQLite files in tmp folders, a steerable clock, reference data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.clock import FixedClock
from agent.store import Store

CLIENT_TAG = "04A1B2C3D4E5F6"
OTHER_CLIENT_TAG = "04111111111111"
INSTALLED_TAG = "04222222222222"
BADGE_ANNA = "0A0B0C0D"
BADGE_BO = "0A0B0C0E"

REFERENCE = {
    "clients": [
        {"ref": "K-1", "display_name": "", "lock_status": "pending"},
        {"ref": "K-2", "lock_status": "impossible"},
        {"ref": "K-3", "lock_status": "installed"},
    ],
    "tags": [
        {"uid": CLIENT_TAG, "client_ref": "K-1"},
        {"uid": OTHER_CLIENT_TAG, "client_ref": "K-2"},
        {"uid": INSTALLED_TAG, "client_ref": "K-3"},
    ],
    "staff": [
        {"badge_uid": BADGE_ANNA, "staff_ref": "P-anna", "display_name": "Anna"},
        {"badge_uid": BADGE_BO, "staff_ref": "P-bo", "display_name": "Bo"},
    ],
}


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 30, 8, 0, tzinfo=UTC))


@pytest.fixture
def store(tmp_path: Path):
    s = Store.in_dir(tmp_path / "data", device_id="test-agent")
    s.import_reference(REFERENCE, "2026-11-30T07:00:00+00:00")
    yield s
    s.close()
