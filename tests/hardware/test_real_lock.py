"""Hardware in the loop, opt-in: a real lock speaking the nyckelfri profile, on this
machine's Bluetooth (bleak's platform backend, BlueZ on Linux).

    NYCKELFRI_HW_LOCK=NF-000123 NYCKELFRI_HW_LOCK_SECRET=000102...0f \\
        python -m pytest -m hardware tests/hardware/test_real_lock.py
    NYCKELFRI_HW_LOCK=NF-000123@C4:12:34:56:78:9A ...     # by serial and address
    NYCKELFRI_HW_LOCK_CLIENT=K-1 ...                      # the client it must be bound to

Stand next to the lock (inside the proximity threshold) and wake it before starting.
Skipped, with the reason, everywhere else.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from drivers.ble import profile
from drivers.ble.lock import LockDriver, Verification

LOCK = os.environ.get("NYCKELFRI_HW_LOCK", "")
SECRET_HEX = os.environ.get("NYCKELFRI_HW_LOCK_SECRET", "")
CLIENT = os.environ.get("NYCKELFRI_HW_LOCK_CLIENT")
SERIAL, _, ADDRESS = LOCK.partition("@")
WALL_CLOCK_S = 120.0  # scan + up to three connect attempts on a real adapter

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.timeout(WALL_CLOCK_S + 30),
    pytest.mark.skipif(not (LOCK and SECRET_HEX),
                       reason="set NYCKELFRI_HW_LOCK (serial or serial@address) and "
                              "NYCKELFRI_HW_LOCK_SECRET (32 hex digits) to run"),
]


def verify() -> Verification:
    async def bounded() -> Verification:
        async with asyncio.timeout(WALL_CLOCK_S):
            return await LockDriver().verify(SERIAL, CLIENT or "", address=ADDRESS or None)
    return asyncio.run(bounded())


def test_the_lock_is_heard():
    sightings = asyncio.run(LockDriver().scan(10.0))
    assert any(s.is_lock(SERIAL) or s.address.upper() == ADDRESS.upper() for s in sightings), \
        f"{SERIAL} not among {[(s.address, s.tag, s.rssi) for s in sightings]}"


def test_the_lock_proves_its_secret_and_binding():
    v = verify()
    assert v.serial_matches and v.proximity_ok, v
    secret = bytes.fromhex(SECRET_HEX)
    assert v.binding is not None and v.bound_client is not None and v.response_hex
    assert profile.verify_response(secret, bytes.fromhex(v.nonce_hex), SERIAL, v.binding,
                                   v.bound_client, bytes.fromhex(v.response_hex))
    if CLIENT is not None:
        assert v.client_matches, f"bound to {v.bound_client!r}, expected {CLIENT!r}"
    assert v.error is None, v.error
