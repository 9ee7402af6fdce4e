"""Canaries: the bleak, bleak-retry-connector and bumble details our BLE code relies on.

If an upgrade changes one of these, this file fails first and names the detail,
instead of the lock driver or the simulator misbehaving somewhere downstream. Each
test says who relies on the detail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from typing import Any

import bleak
import bleak_retry_connector
import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakGATTProtocolError,
)
from bleak_retry_connector import BleakClientWithServiceCache, BleakNotFoundError
from bumble import att, core, gatt, hci
from bumble.controller import Controller
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy, Client

from drivers.ble import profile
from drivers.sim.ble_lock import LockConfig, advertising_data, start_lock
from drivers.sim.bleak_bumble import BumbleClient, SimulatedAir

pytestmark = pytest.mark.timeout(30)

LIMIT_S = 10.0


def run(scenario: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(LIMIT_S):
            return await scenario()
    return asyncio.run(bounded())


# --- bleak ------------------------------------------------------------------------------


def test_backend_base_classes_have_the_abstract_methods_we_implement():
    # drivers/sim/bleak_bumble.py implements exactly these; a new one breaks instantiation.
    assert BaseBleakScanner.__abstractmethods__ == {"start", "stop"}
    assert BaseBleakClient.__abstractmethods__ == {
        "connect", "disconnect", "is_connected", "mtu_size", "pair", "unpair",
        "read_gatt_char", "read_gatt_descriptor", "write_gatt_char", "write_gatt_descriptor",
        "start_notify", "stop_notify",
    }


def test_base_scanner_helpers_the_bumble_scanner_calls():
    for name in ("create_or_update_device", "call_detection_callbacks", "is_allowed_uuid",
                 "register_detection_callback"):
        assert callable(getattr(BaseBleakScanner, name)), name
    params = list(inspect.signature(BaseBleakScanner.create_or_update_device).parameters)
    assert params == ["self", "key", "address", "name", "details", "adv"]


def test_base_client_keeps_timeout_and_callback_where_the_bumble_client_reads_them():
    class Probe(BumbleClient):
        central = None  # type: ignore[assignment]  # never connected

    probe = Probe("C0:00:00:00:00:01", disconnected_callback=print, timeout=3.5)
    assert probe._timeout == 3.5 and probe._disconnected_callback is print
    assert probe.address == "C0:00:00:00:00:01"


def test_bleak_public_classes_take_backend_and_forward_extra_kwargs():
    # LockDriver passes backend=; establish_connection passes _is_retry_client=True and
    # our timeout= through BleakClient to the backend's constructor.
    for cls in (BleakScanner, BleakClient):
        params = inspect.signature(cls.__init__).parameters
        assert "backend" in params and any(p.kind is p.VAR_KEYWORD for p in params.values())


def test_gatt_object_constructors_the_bumble_client_builds():
    assert list(inspect.signature(BleakGATTService.__init__).parameters) == [
        "self", "obj", "handle", "uuid"]
    assert list(inspect.signature(BleakGATTCharacteristic.__init__).parameters) == [
        "self", "obj", "handle", "uuid", "properties", "max_write_without_response_size",
        "service"]
    assert list(inspect.signature(BleakGATTDescriptor.__init__).parameters) == [
        "self", "obj", "handle", "uuid", "characteristic"]


def test_advertisement_data_fields_and_rssi_lives_there():
    assert AdvertisementData._fields == (
        "local_name", "manufacturer_data", "service_data", "service_uuids", "tx_power",
        "rssi", "platform_data")
    assert "rssi" not in BLEDevice.__slots__  # bleak 3: RSSI only on AdvertisementData


def test_the_errors_the_driver_maps():
    assert BleakGATTProtocolError(0x0D).code == 0x0D
    dbus = BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", ["no bluez"])
    assert dbus.dbus_error == "org.freedesktop.DBus.Error.ServiceUnknown"
    off = BleakBluetoothNotAvailableError("off", BleakBluetoothNotAvailableReason.POWERED_OFF)
    assert off.reason is BleakBluetoothNotAvailableReason.POWERED_OFF
    assert not issubclass(FileNotFoundError, bleak.exc.BleakError)  # mapped separately


# --- bleak-retry-connector ------------------------------------------------------------------


def test_establish_connection_signature():
    params = inspect.signature(bleak_retry_connector.establish_connection).parameters
    for name in ("client_class", "device", "name", "disconnected_callback", "max_attempts"):
        assert name in params
    assert any(p.kind is p.VAR_KEYWORD for p in params.values())


def test_exhausted_timeouts_end_in_not_found_caused_by_timeout():
    # LockDriver turns exactly this into LockTimeout.
    class NeverConnects(BumbleClient):
        central = None  # type: ignore[assignment]

        async def connect(self, pair: bool, **kwargs: Any) -> None:
            raise TimeoutError("no answer")

    device = BLEDevice("C0:00:00:00:00:02", None, {"source": "canary"})

    async def scenario() -> BaseException:
        try:
            await bleak_retry_connector.establish_connection(
                BleakClientWithServiceCache, device, "canary", max_attempts=2,
                backend=NeverConnects)
        except BleakNotFoundError as exc:
            return exc
        raise AssertionError("establish_connection did not fail")
    error = run(scenario)
    assert isinstance(error.__cause__, TimeoutError)


def test_details_without_a_bluez_path_keep_the_connector_off_dbus():
    # The bumble scanner's BLEDevice.details has no "path": no D-Bus lookups at all.
    device = BLEDevice("C0:00:00:00:00:03", None, {"source": "bumble"})
    assert bleak_retry_connector.path_from_ble_device(device) is None
    assert run(lambda: bleak_retry_connector.get_connected_devices(device)) == []


def test_establish_connection_gives_connect_its_own_timeout():
    # Why BumbleClient.connect takes the smaller of kwargs["timeout"] and its own.
    async def scenario() -> list[tuple[bool, dict[str, Any], float]]:
        async with SimulatedAir() as air:
            lock = await start_lock(air, LockConfig("NF-CANARY", bytes(16)))
            seen: list[tuple[bool, dict[str, Any], float]] = []
            base: Any = air.backend.client

            class Recording(base):
                async def connect(self, pair: bool, **kwargs: Any) -> None:
                    seen.append((pair, kwargs, self._timeout))
                    await super().connect(pair, **kwargs)

            device = await BleakScanner.find_device_by_address(
                lock.config.device_address, 2.0, backend=air.backend.scanner)
            assert device is not None
            client = await bleak_retry_connector.establish_connection(
                BleakClientWithServiceCache, device, "canary", max_attempts=1,
                backend=Recording, timeout=2.5)
            await client.disconnect()
            return seen
    (pair, kwargs, own), = run(scenario)
    assert pair is False and own == 2.5
    assert kwargs["timeout"] == bleak_retry_connector.BLEAK_TIMEOUT == 20.0


# --- bumble -------------------------------------------------------------------------------


def test_controller_methods_the_air_overrides():
    # drivers/sim/bleak_bumble.AirController overrides these two.
    assert list(inspect.signature(Controller.send_hci_packet).parameters) == ["self", "packet"]
    assert list(inspect.signature(Controller.on_link_acl_data).parameters) == [
        "self", "sender_address", "transport", "data"]


def test_advertising_reports_are_dataclasses_with_rssi_and_address():
    for event in (hci.HCI_LE_Advertising_Report_Event,
                  hci.HCI_LE_Extended_Advertising_Report_Event):
        fields = {f.name for f in dataclasses.fields(event.Report)}
        assert {"address", "rssi", "data"} <= fields
        assert [f.name for f in dataclasses.fields(event)] == ["reports"]


def test_the_emulated_controller_still_hardcodes_rssi():
    # If bumble learns per-device RSSI, AirController's rewrite can go (docs say why).
    source = inspect.getsource(Controller.on_advertising_pdu)
    assert "rssi=-50" in source


def test_the_emulated_controller_repeats_advertising_data_as_scan_response():
    # docs/lock-profile.md: a name or TX power only in the scan response never arrives.
    async def scenario() -> list[AdvertisementData]:
        async with SimulatedAir() as air:
            config = LockConfig("NF-CANARY", bytes(16), tx_power=-4)
            await start_lock(air, config)
            found = await BleakScanner.discover(0.4, return_adv=True,
                                                backend=air.backend.scanner)
            return [adv for _, adv in found.values()]
    adv, = run(scenario)
    assert adv.local_name is None and adv.tx_power is None
    assert advertising_data(LockConfig("NF-CANARY", bytes(16)))[1]  # it was sent


def test_bumble_device_and_gatt_client_api():
    assert "timeout" in inspect.signature(Device.connect).parameters
    assert Device.EVENT_ADVERTISEMENT == "advertisement"
    assert Device.EVENT_CONNECTION == "connection"
    assert Connection.EVENT_DISCONNECTION == "disconnection"
    for name in ("discover_services", "get_characteristics_by_uuid"):
        assert callable(getattr(Peer, name))
    for name in ("read_value", "write_value", "subscribe", "unsubscribe",
                 "discover_descriptors"):
        assert callable(getattr(CharacteristicProxy, name))
    assert {f.name for f in dataclasses.fields(Advertisement)} >= {"address", "rssi", "data"}
    assert hci.Address("C0:01:02:03:04:05").to_string(with_type_qualifier=False) == \
        "C0:01:02:03:04:05"
    assert att.ATT_Error(0x0D).error_code == 0x0D
    assert att.ATT_DEFAULT_MTU == profile.ATT_DEFAULT_MTU


def test_a_dropped_link_cancels_the_pending_gatt_request():
    # BumbleClient turns this CancelledError into BleakError("Disconnected ...").
    source = inspect.getsource(Client.on_disconnection)
    assert "pending_response.cancel()" in source


def test_bumble_timeouts_are_not_builtin_timeouts():
    # So BumbleClient maps core.TimeoutError to TimeoutError for bleak-retry-connector.
    assert not issubclass(core.TimeoutError, TimeoutError)


def test_characteristic_values_may_be_async_callables():
    # drivers/sim/ble_lock.py reads and drops the link inside an async read callback.
    source = inspect.getsource(att.Attribute.read_value)
    assert "isawaitable" in source
    assert gatt.CharacteristicValue is not None
