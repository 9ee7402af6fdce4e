"""The lock driver end to end: LockDriver -> bleak -> bleak-retry-connector -> the bumble
backend -> emulated controllers -> the simulated lock's GATT server, and back.

Nothing is patched: faults are the simulated lock's own settings, Bluetooth failures
come from real backend classes whose scanners raise what bleak raises on a machine
without Bluetooth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from drivers.ble import profile
from drivers.ble.errors import (
    BluetoothUnavailable,
    GattFailure,
    LockDisconnected,
    LockError,
    LockNotFound,
    LockTimeout,
    LockTooFar,
    WrongLock,
)
from drivers.ble.lock import BATTERY_MIN_PERCENT, LockDriver, Verification
from drivers.sim.ble_lock import (
    LockConfig,
    LockFaults,
    SimLock,
    address_for,
    advertising_data,
    run_lock,
    start_lock,
)
from drivers.sim.bleak_bumble import SimulatedAir, open_central

pytestmark = pytest.mark.timeout(60)

SECRET = bytes.fromhex("5a1e9c0b7d3f48e2a6c4b8d0f2e4a6c8")
SERIAL = "NF-000123"
CLIENT = "K-1"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
# Short timeouts: the emulated air answers in milliseconds.
FAST: dict[str, Any] = {"scan_timeout": 1.0, "rssi_window": 0.2, "connect_timeout": 1.0,
                        "connect_attempts": 2, "gatt_timeout": 2.0, "response_timeout": 0.5}
LIMIT_S = 20.0  # no scenario may take longer, whatever goes wrong

R = TypeVar("R")


class Clock:
    """A clock that moves one second per reading."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def run(scenario: Callable[[], Awaitable[R]]) -> R:
    async def bounded() -> R:
        async with asyncio.timeout(LIMIT_S):
            return await scenario()
    return asyncio.run(bounded())


def lock_config(**settings: Any) -> LockConfig:
    faults = settings.pop("faults", LockFaults())
    base: dict[str, Any] = {"serial": SERIAL, "secret": SECRET, "bound_client": CLIENT,
                            "binding_counter": 3}
    return LockConfig(**{**base, **settings}, faults=faults)


def verify_with(config: LockConfig, *, serial: str = SERIAL, client: str = CLIENT,
                address: str | None = None, **driver: Any
                ) -> tuple[Verification | LockError, SimLock]:
    """Verify ``config``'s lock on a fresh air; the result (or error) and the lock."""
    async def scenario() -> tuple[Verification | LockError, SimLock]:
        async with SimulatedAir() as air:
            lock = await start_lock(air, config)
            driver_ = LockDriver(air.backend, **{**FAST, "clock": Clock(), **driver})
            try:
                return await driver_.verify(serial, client, address=address), lock
            except LockError as exc:
                return exc, lock
    return run(scenario)


def verified(config: LockConfig, **kwargs: Any) -> tuple[Verification, SimLock]:
    result, lock = verify_with(config, **kwargs)
    assert isinstance(result, Verification), f"expected a verification, got {result!r}"
    return result, lock


def failed(config: LockConfig, **kwargs: Any) -> tuple[LockError, SimLock]:
    result, lock = verify_with(config, **kwargs)
    assert isinstance(result, LockError), f"expected an error, got {result!r}"
    return result, lock


def proof_holds(v: Verification, secret: bytes = SECRET) -> bool:
    """What the centre does with a recorded verification."""
    assert v.serial and v.binding is not None and v.bound_client is not None
    assert v.response_hex is not None
    return profile.verify_response(secret, bytes.fromhex(v.nonce_hex), v.serial, v.binding,
                                   v.bound_client, bytes.fromhex(v.response_hex))


# --- a good lock -----------------------------------------------------------------------


def test_a_good_lock_is_verified_and_its_proof_holds_at_the_centre():
    nonce = bytes(range(16))
    v, lock = verified(lock_config(), random_bytes=lambda n: nonce)
    assert (v.serial_matches, v.client_matches, v.proximity_ok, v.battery_ok) == (True,) * 4
    assert v.ok and v.error is None
    assert v.serial == SERIAL and v.bound_client == CLIENT
    assert v.binding == profile.BindingState(True, 3)
    assert v.firmware == "1.0.0-sim" and v.battery_percent == 87 and v.rssi == -50
    assert v.address == address_for(SERIAL)
    assert v.nonce_hex == nonce.hex() and lock.challenges == [nonce]
    assert proof_holds(v)
    assert T0 < v.started_at < v.finished_at
    assert lock.connections == 1


def test_every_verification_uses_a_fresh_nonce_and_connection():
    async def scenario() -> tuple[list[Verification], SimLock]:
        async with SimulatedAir() as air:
            lock = await start_lock(air, lock_config())
            driver = LockDriver(air.backend, **FAST)
            return [await driver.verify(SERIAL, CLIENT) for _ in range(2)], lock
    results, lock = run(scenario)
    assert results[0].nonce_hex != results[1].nonce_hex
    assert all(proof_holds(v) for v in results)
    assert lock.connections == 2


def test_the_verification_serialises_for_the_outbox():
    v, _ = verified(lock_config())
    data = v.to_dict()
    assert data["binding"] == {"bound": True, "counter": 3}
    assert data["started_at"].startswith("2026-11-30T09:00:01")
    assert data["response_hex"] == v.response_hex


def test_given_nonce_is_used():
    nonce = bytes.fromhex("00112233445566778899aabbccddeeff")
    async def scenario() -> Verification:
        async with SimulatedAir() as air:
            await start_lock(air, lock_config())
            return await LockDriver(air.backend, **FAST).verify(SERIAL, CLIENT, nonce=nonce)
    v = run(scenario)
    assert v.nonce_hex == nonce.hex() and proof_holds(v)


def test_a_lock_that_only_lets_the_response_be_read_still_proves_itself():
    v, _ = verified(lock_config(faults=LockFaults(notify=False)))
    assert proof_holds(v)


# --- verdicts the fitter must see --------------------------------------------------------


def test_a_lock_bound_to_another_client_is_a_verdict_not_an_error():
    v, _ = verified(lock_config(bound_client="K-2"))
    assert not v.client_matches and v.bound_client == "K-2"
    assert v.serial_matches and v.proximity_ok and v.battery_ok and not v.ok
    assert proof_holds(v)  # the lock honestly says whom it is bound to


def test_an_unbound_lock_does_not_match_any_client():
    v, _ = verified(lock_config(bound_client=""))
    assert v.binding == profile.BindingState(False, 3)
    assert v.bound_client == "" and not v.client_matches
    assert not verified(lock_config(bound_client=""), client="")[0].client_matches


def test_low_battery_is_a_verdict():
    v, _ = verified(lock_config(battery_percent=BATTERY_MIN_PERCENT - 1))
    assert not v.battery_ok and v.client_matches and not v.ok
    assert verified(lock_config(battery_percent=BATTERY_MIN_PERCENT))[0].battery_ok


def test_a_wrong_answer_is_recorded_and_fails_at_the_centre():
    v, _ = verified(lock_config(faults=LockFaults(wrong_mac=True)))
    assert v.response_hex is not None and v.client_matches
    assert not proof_holds(v)


def test_a_missing_battery_reading_is_noted_not_raised():
    v, _ = verified(lock_config(faults=LockFaults(missing=frozenset({"battery"}))))
    assert v.battery_percent is None and not v.battery_ok
    assert v.error is not None and "battery level" in v.error
    assert proof_holds(v)


# --- failures ----------------------------------------------------------------------------


def test_a_lock_that_drops_mid_read_is_lock_disconnected():
    error, lock = failed(lock_config(faults=LockFaults(drop_after_reads=2)))
    assert isinstance(error, LockDisconnected)
    assert lock.reads == 3
    partial = error.verification
    assert partial is not None and partial.serial == SERIAL and partial.error == str(error)
    assert partial.response_hex is None


def test_a_lock_that_drops_while_answering_the_challenge_is_lock_disconnected():
    # notify off: the response must be read, and the lock drops on that read.
    faults = LockFaults(notify=False, drop_after_reads=5)
    error, lock = failed(lock_config(faults=faults))
    assert isinstance(error, LockDisconnected) and "response" in str(error)
    assert lock.challenges


def test_a_slow_lock_is_reached_by_retrying():
    v, lock = verified(lock_config(faults=LockFaults(wake_delay_s=0.5)),
                       connect_timeout=0.4, connect_attempts=4)
    assert v.ok and proof_holds(v)
    assert lock.connections >= 2  # the first attempt met a lock still asleep


@pytest.mark.parametrize("faults", [LockFaults(), LockFaults(wake_delay_s=0.5),
                                    LockFaults(reject_challenge=0x80)])
def test_the_driver_always_leaves_the_lock_disconnected(faults):
    async def scenario() -> tuple[int, int]:
        async with SimulatedAir() as air:
            lock = await start_lock(air, lock_config(faults=faults))
            driver = LockDriver(air.backend, **{**FAST, "connect_timeout": 0.4,
                                                "connect_attempts": 4})
            with contextlib.suppress(LockError):
                await driver.verify(SERIAL, CLIENT)
            await asyncio.sleep(0.1)  # the lock hears the link close
            return lock.connections, lock.live_links  # before the air closes them
    connections, live_links = run(scenario)
    assert connections >= 1 and live_links == 0


def test_a_lock_slower_than_all_attempts_is_lock_timeout():
    error, lock = failed(lock_config(faults=LockFaults(wake_delay_s=30)),
                         connect_timeout=0.3, connect_attempts=2)
    assert isinstance(error, LockTimeout) and "connecting" in str(error)
    assert lock.connections == 2


def test_a_lock_that_does_not_advertise_is_not_found():
    error, _ = failed(lock_config(faults=LockFaults(advertising=False)), scan_timeout=0.5)
    assert isinstance(error, LockNotFound) and error.serial == SERIAL
    assert "turning the knob" in str(error)


def test_another_lock_nearby_is_not_taken_for_the_wanted_one():
    error, _ = failed(lock_config(serial="NF-777777"), scan_timeout=0.5)
    assert isinstance(error, LockNotFound) and "other locks" in str(error)


def test_a_weak_signal_is_lock_too_far():
    error, lock = failed(lock_config(rssi=-85))
    assert isinstance(error, LockTooFar)
    assert (error.rssi, error.threshold) == (-85, -70) and "-85 dBm" in str(error)
    assert lock.connections == 0  # never connected to a lock that is not at this door
    assert error.verification is not None and not error.verification.proximity_ok


def test_the_proximity_threshold_is_a_setting():
    v, _ = verified(lock_config(rssi=-85), rssi_threshold=-90)
    assert v.proximity_ok and v.rssi == -85


def test_a_lock_with_another_serial_at_the_given_address_is_wrong_lock():
    other = lock_config(serial="NF-999999")
    error, lock = failed(other, address=address_for("NF-999999"))
    assert isinstance(error, WrongLock)
    assert (error.expected, error.actual) == (SERIAL, "NF-999999")
    assert lock.challenges == []  # no challenge goes to a wrong lock


def test_a_device_tag_collision_is_caught_by_the_serial():
    colliding = lock_config(serial="NF-999999", faults=LockFaults(advertised_serial=SERIAL))
    error, _ = failed(colliding)
    assert isinstance(error, WrongLock) and error.actual == "NF-999999"


def test_a_missing_lock_characteristic_is_a_gatt_failure():
    error, _ = failed(lock_config(faults=LockFaults(missing=frozenset({"bound_client"}))))
    assert isinstance(error, GattFailure) and error.code is None
    assert "bound client" in str(error)


def test_a_rejected_challenge_is_a_gatt_failure_with_its_code():
    error, _ = failed(lock_config(faults=LockFaults(reject_challenge=0x80)))
    assert isinstance(error, GattFailure) and error.code == 0x80
    assert "ATT error 0x80" in str(error)


# --- scanning ---------------------------------------------------------------------------


def test_scan_lists_locks_strongest_first():
    async def scenario() -> list[Any]:
        async with SimulatedAir() as air:
            await start_lock(air, lock_config(serial="NF-000001", rssi=-80))
            await start_lock(air, lock_config(serial="NF-000002", rssi=-55))
            return await LockDriver(air.backend, **FAST).scan(0.5)
    sightings = run(scenario)
    assert [s.rssi for s in sightings] == [-55, -80]
    assert sightings[0].is_lock("NF-000002") and sightings[1].is_lock("NF-000001")
    assert all(s.version == profile.PROFILE_VERSION and s.samples >= 2 for s in sightings)


def test_advertisements_carry_no_personal_data_and_fit_legacy_advertising():
    config = lock_config(bound_client="K-424242")
    adv, scan_response = advertising_data(config)
    assert len(adv) <= 31 and len(scan_response) <= 31
    for data in (adv, scan_response):
        assert b"K-424242" not in data and SERIAL.encode() not in data


def test_run_lock_serves_until_stopped():
    async def scenario() -> tuple[Verification, LockError]:
        async with SimulatedAir() as air:
            stop = asyncio.Event()
            serving = asyncio.create_task(run_lock(air, lock_config(), stop))
            driver = LockDriver(air.backend, **{**FAST, "scan_timeout": 0.5})
            v = await driver.verify(SERIAL, CLIENT)
            stop.set()
            await serving
            try:
                await driver.verify(SERIAL, CLIENT)
            except LockError as exc:
                return v, exc
            raise AssertionError("the stopped lock was still found")
    v, error = run(scenario)
    assert v.ok and isinstance(error, LockNotFound)


# --- Bluetooth unavailable ---------------------------------------------------------------


class FailingScanner(BaseBleakScanner):
    """A scanner backend whose start fails the way bleak's BlueZ backend does."""

    def __init__(self, detection_callback: Any, service_uuids: Any, *args: Any,
                 **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)

    def failure(self) -> BaseException:
        raise NotImplementedError

    async def start(self) -> None:
        raise self.failure()

    async def stop(self) -> None:
        pass


class NoDBusScanner(FailingScanner):
    def failure(self) -> BaseException:  # measured: no system D-Bus socket
        return FileNotFoundError(2, "No such file or directory", "/run/dbus/system_bus_socket")


class NoBluetoothdScanner(FailingScanner):
    def failure(self) -> BaseException:  # measured: D-Bus runs, bluetoothd does not
        return BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown",
                              ["The name org.bluez was not provided by any .service files"])


class PoweredOffScanner(FailingScanner):
    def failure(self) -> BaseException:
        return BleakBluetoothNotAvailableError("Bluetooth adapter is powered off",
                                               BleakBluetoothNotAvailableReason.POWERED_OFF)


class NoDBus:
    scanner: ClassVar[type[BaseBleakScanner]] = NoDBusScanner
    client = None


class NoBluetoothd:
    scanner: ClassVar[type[BaseBleakScanner]] = NoBluetoothdScanner
    client = None


class PoweredOff:
    scanner: ClassVar[type[BaseBleakScanner]] = PoweredOffScanner
    client = None


@pytest.mark.parametrize("backend,reason,advice", [
    (NoDBus, "no system D-Bus", "/run/dbus"),
    (NoBluetoothd, "bluetoothd is not running", "systemctl enable --now bluetooth"),
    (PoweredOff, "powered off", "rfkill unblock bluetooth"),
])
def test_bluetooth_unavailable_is_one_clear_error(backend, reason, advice):
    driver = LockDriver(backend, **FAST)
    for attempt in (lambda: driver.scan(0.1), lambda: driver.verify(SERIAL, CLIENT)):
        with pytest.raises(BluetoothUnavailable) as caught:
            run(attempt)
        assert reason in caught.value.reason and advice in str(caught.value)


def test_the_sync_wrappers_run_their_own_loop_and_map_errors():
    driver = LockDriver(NoDBus, **FAST)
    with pytest.raises(BluetoothUnavailable):
        driver.verify_sync(SERIAL, CLIENT)
    with pytest.raises(BluetoothUnavailable):
        driver.scan_sync(0.1)

    async def inside_a_loop() -> None:
        driver.scan_sync(0.1)
    with pytest.raises(RuntimeError, match="await instead"):
        run(inside_a_loop)


@pytest.mark.skipif(os.path.exists("/run/dbus/system_bus_socket"),
                    reason="this machine has a system D-Bus; bleak may really scan here")
def test_this_machines_missing_bluetooth_maps_to_bluetooth_unavailable():
    # The real bleak platform backend, no fakes: on a machine without D-Bus it
    # raises FileNotFoundError, which the driver turns into advice.
    with pytest.raises(BluetoothUnavailable, match="D-Bus"):
        run(lambda: LockDriver(**FAST).scan(0.1))


# --- the bumble backend under plain bleak ------------------------------------------------


def test_plain_bleak_discovers_the_simulated_lock():
    async def scenario() -> Any:
        async with SimulatedAir() as air:
            await start_lock(air, lock_config(rssi=-61))
            return await BleakScanner.discover(0.4, return_adv=True,
                                               service_uuids=[profile.LOCK_SERVICE],
                                               backend=air.backend.scanner)
    found = run(scenario)
    (device, adv), = found.values()
    assert device.address == address_for(SERIAL)
    assert adv.rssi == -61 and profile.LOCK_SERVICE in adv.service_uuids
    assert adv.manufacturer_data[profile.COMPANY_ID] == profile.encode_manufacturer_data(SERIAL)


def test_typed_gatt_errors_and_the_disconnect_callback_reach_bleak():
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {"disconnected": 0}
        async with SimulatedAir() as air:
            await start_lock(air, lock_config(faults=LockFaults(drop_after_reads=1)))
            device = await BleakScanner.find_device_by_address(
                address_for(SERIAL), 2.0, backend=air.backend.scanner)
            assert device is not None

            def gone(_client: BleakClient) -> None:
                out["disconnected"] += 1

            async with BleakClient(device, gone, timeout=2.0,
                                   backend=air.backend.client) as client:
                try:
                    await client.read_gatt_char("0000beef-0000-1000-8000-00805f9b34fb")
                except BleakCharacteristicNotFoundError as exc:
                    out["missing"] = exc
                for name, payload in (("short", b"\x01\x02"), ("version", b"\x09" + bytes(16))):
                    try:
                        await client.write_gatt_char(profile.CHALLENGE_CHAR, payload,
                                                     response=True)
                    except BleakGATTProtocolError as exc:
                        out[name] = exc.code
                out["serial"] = await client.read_gatt_char(profile.SERIAL_NUMBER_CHAR)
                out["mtu"] = client.mtu_size
                try:
                    await client.read_gatt_char(profile.BOUND_CLIENT_CHAR)  # the lock drops
                except Exception as exc:
                    out["dropped"] = exc
                out["connected_after_drop"] = client.is_connected
        return out
    out = run(scenario)
    assert isinstance(out["missing"], BleakCharacteristicNotFoundError)
    assert out["short"] == BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
    assert out["version"] == profile.ATT_ERROR_UNSUPPORTED_VERSION
    assert out["serial"] == bytearray(SERIAL.encode()) and out["mtu"] == 23
    assert type(out["dropped"]).__name__ == "BleakError"
    assert out["connected_after_drop"] is False and out["disconnected"] == 1


# --- a lock in another process ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_lock_in_another_process_over_bumbles_tcp_controllers():
    lock_port, central_port = free_port(), free_port()
    root = Path(__file__).resolve().parents[2]
    # bumble's tcp-server transport serves the first client that connects: no probing.
    controllers = subprocess.Popen(
        [sys.executable, "-m", "bumble.apps.controllers", f"tcp-server:127.0.0.1:{lock_port}",
         f"tcp-server:127.0.0.1:{central_port}"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes = [controllers]
    try:
        async def scenario() -> Verification:
            backend, close = await central_when_listening(f"tcp-client:127.0.0.1:{central_port}")
            try:
                # The controllers open their ports in order: the lock's is up by now.
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "drivers.sim.ble_lock",
                     "--transport", f"tcp-client:127.0.0.1:{lock_port}", "--serial", SERIAL,
                     "--secret", SECRET.hex(), "--client", CLIENT],
                    cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                driver = LockDriver(backend, **{**FAST, "scan_timeout": 10.0})
                return await driver.verify(SERIAL, CLIENT)
            finally:
                await close()
        v = run(scenario)
        assert v.ok and proof_holds(v)
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=10)


async def central_when_listening(transport: str, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await open_central(transport)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
