"""A bleak backend on a bumble central, and the simulated air it can run in.

bleak picks its platform code through ``backend=`` classes (subclasses of
``BaseBleakScanner`` and ``BaseBleakClient``), the seam Home Assistant's ESPHome
proxies use. :class:`BumbleScanner` and :class:`BumbleClient` implement it on a
bumble :class:`~bumble.device.Device` acting as central, so unchanged bleak code
(``BleakScanner(..., backend=...)``, ``BleakClient(..., backend=...)``) and
``bleak_retry_connector.establish_connection`` run over bumble:

* advertisements become bleak ``AdvertisementData`` (RSSI, manufacturer data,
  service UUIDs, TX power from the advertising data);
* ATT error responses surface as ``BleakGATTProtocolError`` with the ATT code, a
  UUID the peripheral lacks as bleak's own ``BleakCharacteristicNotFoundError``;
* a link lost mid-request raises ``BleakError`` and the disconnected callback fires
  (on every disconnect, as bleak's BlueZ backend does).

:class:`SimulatedAir` puts bumble's emulated controllers on one ``LocalLink`` in
this process, so simulated peripherals (``drivers.sim.ble_lock``) and the central
see each other with no radio. It adds what the emulated controller lacks:

* **signal strength.** bumble's ``Controller`` reports every advertisement with
  ``rssi=-50`` (controller.py, ``on_advertising_pdu``). The air's controllers rewrite
  the RSSI of the reports they hand their host to the value set for the advertiser
  with :meth:`SimulatedAir.set_rssi`: the central's *controller* measures it, as on
  real hardware, and the backend just passes it on.
* **a peripheral that does not answer.** A device added with ``awake=`` ignores link
  data while that predicate is false (a sleeping lock's radio): the central's
  requests go unanswered and its connect times out, exactly like a lock that is
  slow to wake.

Known limits of the emulation (docs/lock-profile.md lists them): the controller
repeats the advertising data as the scan response, so data only in a scan response
(a name, a TX power level) never arrives; long reads are completed with READ BLOB,
but notifications are cut to MTU - 3 = 20 bytes unless an MTU is exchanged.

The backend also runs on a central whose controller is elsewhere: :func:`open_central`
opens any bumble HCI transport (``tcp-client:HOST:PORT`` to
``python -m bumble.apps.controllers``, tested; ``usb:0`` for a real dongle, untested).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bleak.uuids import normalize_uuid_str
from bumble import att, core, hci
from bumble.controller import Controller
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

log = logging.getLogger(__name__)

SOURCE = "bumble"  # BLEDevice.details["source"]: no "path", so bleak-retry-connector skips D-Bus
CENTRAL_ADDRESS = "C0:4E:59:4B:00:01"  # random static (top bits 11), "NYK" in the middle
# Default RSSI of an advertiser nobody set one for: bumble's own constant, kept so a
# plain bumble setup and the air agree.
DEFAULT_RSSI = -50
# How long disconnect() waits for the controller to confirm: the emulated link
# answers in microseconds, a real controller within a supervision timeout (< 6 s).
DISCONNECT_TIMEOUT_S = 6.0
# Connect timeout when neither bleak nor the caller gives one (bleak's default).
DEFAULT_CONNECT_TIMEOUT_S = 30.0

_AD = core.AdvertisingData
_Report = TypeVar("_Report", hci.HCI_LE_Advertising_Report_Event.Report,
                  hci.HCI_LE_Extended_Advertising_Report_Event.Report)
_UUID_LISTS = {
    _AD.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2,
    _AD.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2,
    _AD.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4,
    _AD.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4,
    _AD.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16,
    _AD.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16,
}
_SERVICE_DATA = {
    _AD.SERVICE_DATA_16_BIT_UUID: 2,
    _AD.SERVICE_DATA_32_BIT_UUID: 4,
    _AD.SERVICE_DATA_128_BIT_UUID: 16,
}
_PROPERTY_NAMES: tuple[tuple[int, Any], ...] = (
    (0x01, "broadcast"), (0x02, "read"), (0x04, "write-without-response"), (0x08, "write"),
    (0x10, "notify"), (0x20, "indicate"), (0x40, "authenticated-signed-writes"),
    (0x80, "extended-properties"),
)


# --- conversions -----------------------------------------------------------------------


def uuid_str(value: core.UUID) -> str:
    """A bumble UUID as bleak's normalised lower-case 128-bit string."""
    return normalize_uuid_str(str(uuid.UUID(bytes=value.to_bytes(force_128=True)[::-1])))


def address_str(address: hci.Address) -> str:
    return address.to_string(with_type_qualifier=False)


def advertisement_data(adv: Advertisement,
                       previous: AdvertisementData | None = None) -> AdvertisementData:
    """bleak's view of one bumble advertisement, merged over the previous one.

    Like BlueZ, fields a later advertisement lacks keep their last value; RSSI is
    always the latest.
    """
    name = previous.local_name if previous else None
    manufacturer = dict(previous.manufacturer_data) if previous else {}
    service_data = dict(previous.service_data) if previous else {}
    uuids = list(previous.service_uuids) if previous else []
    tx_power = previous.tx_power if previous else None
    for ad_type, raw in adv.data.ad_structures:
        if ad_type in (_AD.COMPLETE_LOCAL_NAME, _AD.SHORTENED_LOCAL_NAME):
            name = raw.decode("utf-8", "replace")
        elif ad_type == _AD.MANUFACTURER_SPECIFIC_DATA and len(raw) >= 2:
            manufacturer[struct.unpack_from("<H", raw)[0]] = bytes(raw[2:])
        elif ad_type in _UUID_LISTS:
            size = _UUID_LISTS[ad_type]
            for offset in range(0, len(raw) - size + 1, size):
                text = uuid_str(core.UUID.from_bytes(raw[offset:offset + size]))
                if text not in uuids:
                    uuids.append(text)
        elif ad_type in _SERVICE_DATA and len(raw) >= _SERVICE_DATA[ad_type]:
            size = _SERVICE_DATA[ad_type]
            service_data[uuid_str(core.UUID.from_bytes(raw[:size]))] = bytes(raw[size:])
        elif ad_type == _AD.TX_POWER_LEVEL and len(raw) == 1:
            tx_power = struct.unpack("b", raw)[0]  # signed dBm
    return AdvertisementData(
        local_name=name, manufacturer_data=manufacturer, service_data=service_data,
        service_uuids=uuids, tx_power=tx_power, rssi=adv.rssi, platform_data=(adv,),
    )


def properties(flags: int) -> list[Any]:
    return [name for bit, name in _PROPERTY_NAMES if flags & bit]


# --- the air ---------------------------------------------------------------------------


class AirController(Controller):
    """bumble's emulated controller plus the two radio facts the air decides.

    Overrides two methods of ``bumble.controller.Controller`` (pinned by
    tests/drivers/test_bleak_canary.py): ``send_hci_packet`` to put the air's RSSI in
    advertising reports, ``on_link_acl_data`` to ignore link data while asleep.
    """

    def __init__(self, name: str, *, link: LocalLink, air: SimulatedAir,
                 awake: Callable[[], bool] | None = None) -> None:
        super().__init__(name, link=link)
        self._air = air
        self._awake = awake

    def send_hci_packet(self, packet: hci.HCI_Packet) -> None:
        if isinstance(packet, hci.HCI_LE_Advertising_Report_Event):
            packet = hci.HCI_LE_Advertising_Report_Event(
                reports=[self._measured(r) for r in packet.reports])
        elif isinstance(packet, hci.HCI_LE_Extended_Advertising_Report_Event):
            packet = hci.HCI_LE_Extended_Advertising_Report_Event(
                reports=[self._measured(r) for r in packet.reports])
        super().send_hci_packet(packet)

    def _measured(self, report: _Report) -> _Report:
        return dataclasses.replace(report, rssi=self._air.rssi_of(address_str(report.address)))

    def on_link_acl_data(self, sender_address: hci.Address, transport: core.PhysicalTransport,
                         data: bytes) -> None:
        if self._awake is not None and not self._awake():
            log.debug("%s asleep: ignoring %d bytes from %s", self.name, len(data), sender_address)
            return
        super().on_link_acl_data(sender_address, transport, data)


class SimulatedAir:
    """Emulated controllers on one ``LocalLink``: peripherals and a central, no radio.

    Create and use it inside a running event loop (bumble's controllers need one)::

        async with SimulatedAir() as air:
            lock = await start_lock(air, LockConfig(...))     # drivers.sim.ble_lock
            driver = LockDriver(air.backend)                  # drivers.ble.lock
    """

    def __init__(self) -> None:
        self.link = LocalLink()
        self._rssi: dict[str, int] = {}
        self._devices: list[tuple[Device, AirController]] = []
        self._central: BumbleCentral | None = None
        self._central_lock = asyncio.Lock()
        self._backend: type[BumbleBackend] | None = None

    async def __aenter__(self) -> SimulatedAir:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # radio

    def set_rssi(self, address: str, rssi: int | None) -> None:
        """What every receiver measures from ``address`` (None: bumble's -50 dBm)."""
        if rssi is None:
            self._rssi.pop(address.upper(), None)
        else:
            self._rssi[address.upper()] = rssi

    def rssi_of(self, address: str) -> int:
        return self._rssi.get(address.upper(), DEFAULT_RSSI)

    # devices

    async def add_device(self, name: str, address: str, *,
                         awake: Callable[[], bool] | None = None) -> Device:
        """A powered-on bumble Device with its own controller on this air."""
        controller = AirController(name, link=self.link, air=self, awake=awake)
        device = Device(name=name, address=hci.Address(address),
                        host=Host(controller, AsyncPipeSink(controller)))
        await device.power_on()
        self._devices.append((device, controller))
        return device

    async def remove_device(self, device: Device) -> None:
        """Take a device off the air: it stops advertising and its controller leaves."""
        await _quiet_power_off(device)
        if self._central is not None and self._central.device is device:
            self._central = None
        for entry in [e for e in self._devices if e[0] is device]:
            self._devices.remove(entry)
            if entry[1] in self.link.controllers:
                self.link.remove_controller(entry[1])

    async def central(self) -> BumbleCentral:
        """The one central of this air, created on first use."""
        async with self._central_lock:
            if self._central is None:
                device = await self.add_device("nyckelfri-central", CENTRAL_ADDRESS)
                self._central = BumbleCentral(device)
            return self._central

    @property
    def backend(self) -> type[BumbleBackend]:
        """Backend classes for ``drivers.ble.lock.LockDriver`` bound to this air's central."""
        if self._backend is None:
            self._backend = bumble_backend(_LazyCentral(self))
        return self._backend

    async def close(self) -> None:
        for device, _ in list(self._devices):
            await self.remove_device(device)


# --- the central -----------------------------------------------------------------------


class BumbleCentral:
    """One bumble Device in the central role, shared by every scanner and client."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self._listeners: list[Callable[[Advertisement], None]] = []
        self.connect_lock = asyncio.Lock()  # bumble allows one pending LE connect

    async def ready(self) -> BumbleCentral:
        return self

    async def start_scanning(self, listener: Callable[[Advertisement], None], *,
                             passive: bool = False) -> None:
        first = not self._listeners
        self._listeners.append(listener)
        if first:
            self.device.on(Device.EVENT_ADVERTISEMENT, self._dispatch)
            await self.device.start_scanning(active=not passive, filter_duplicates=False)

    async def stop_scanning(self, listener: Callable[[Advertisement], None]) -> None:
        if listener not in self._listeners:
            return
        self._listeners.remove(listener)
        if not self._listeners:
            self.device.remove_listener(Device.EVENT_ADVERTISEMENT, self._dispatch)
            await self.device.stop_scanning()

    def _dispatch(self, adv: Advertisement) -> None:
        for listener in list(self._listeners):
            listener(adv)


class _LazyCentral:
    """Resolves the air's central when a scanner or client first needs it."""

    def __init__(self, air: SimulatedAir) -> None:
        self._air = air

    async def ready(self) -> BumbleCentral:
        return await self._air.central()


async def open_central(
    transport: str,
) -> tuple[type[BumbleBackend], Callable[[], Awaitable[None]]]:
    """Backend classes on a central behind a bumble HCI transport, and its closer.

    ``transport`` is any bumble transport name: ``tcp-client:127.0.0.1:9001`` (a
    controller of ``python -m bumble.apps.controllers``), ``usb:0`` (a dongle).
    """
    hci_transport = await open_transport(transport)
    device = Device.with_hci("nyckelfri-central", hci.Address(CENTRAL_ADDRESS),
                             hci_transport.source, hci_transport.sink)
    await device.power_on()
    return bumble_backend(BumbleCentral(device)), hci_transport.close


async def _quiet_power_off(device: Device) -> None:
    try:
        if device.is_scanning:
            await device.stop_scanning()
        await device.stop_advertising()
        await device.power_off()
    except (core.BaseBumbleError, TimeoutError) as exc:
        log.debug("powering off %s: %r", device.name, exc)


# --- bleak backend ---------------------------------------------------------------------


class CentralSource(Protocol):
    """What the backend classes need: a way to get the (powered-on) central."""

    async def ready(self) -> BumbleCentral: ...


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend on a bumble central (bind one with :func:`bumble_backend`)."""

    central: ClassVar[CentralSource]  # set on the subclass bumble_backend() makes

    def __init__(self, detection_callback: AdvertisementDataCallback | None,
                 service_uuids: list[str] | None,
                 scanning_mode: Literal["active", "passive"] = "active",
                 **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._passive = scanning_mode == "passive"
        self._hub: BumbleCentral | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._hub = await self.central.ready()
        await self._hub.start_scanning(self._on_advertisement, passive=self._passive)

    async def stop(self) -> None:
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await hub.stop_scanning(self._on_advertisement)

    def _on_advertisement(self, adv: Advertisement) -> None:
        key = address_str(adv.address)
        previous = self.seen_devices.get(key)
        data = advertisement_data(adv, previous[1] if previous else None)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        details = {"source": SOURCE, "address": adv.address}
        device = self.create_or_update_device(key, key, data.local_name, details, data)
        self.call_detection_callbacks(device, data)


class BumbleClient(BaseBleakClient):
    """bleak client backend on a bumble central (bind one with :func:`bumble_backend`)."""

    central: ClassVar[CentralSource]  # set on the subclass bumble_backend() makes

    def __init__(self, address_or_ble_device: BLEDevice | str, *,
                 disconnected_callback: Callable[[], None] | None = None,
                 timeout: float = DEFAULT_CONNECT_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback,
                         timeout=timeout)
        details = getattr(address_or_ble_device, "details", None)
        peer = details.get("address") if isinstance(details, dict) else None
        self._peer_address: hci.Address = peer or hci.Address(self.address)
        self._name = getattr(address_or_ble_device, "name", None) or self.address
        self._requested: set[str] | None = kwargs.get("services")
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    # connectivity

    @property
    def name(self) -> str:
        return self._name

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection else att.ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect and discover services, within the smaller of the two timeouts.

        bleak-retry-connector always passes its own 20 s ``timeout`` to connect();
        the client's constructor ``timeout`` is the caller's bound on one attempt,
        so the smaller wins.
        """
        if self._connection is not None:
            raise BleakError("Client is already connected")
        if pair:
            log.info("%s: pairing is not implemented by the bumble backend; ignored",
                     self.address)
        timeout = min(float(kwargs.get("timeout", self._timeout)), self._timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        hub = await self.central.ready()
        async with hub.connect_lock:
            try:
                connection = await hub.device.connect(
                    self._peer_address, transport=core.PhysicalTransport.LE, timeout=timeout)
            except core.TimeoutError as exc:
                raise TimeoutError(f"{self.address}: no connection within {timeout:.1f} s") from exc
            except core.ConnectionError as exc:
                raise BleakError(f"{self.address}: connection failed: {exc}") from exc
        self._connection = connection
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        self._peer = Peer(connection)
        try:
            async with asyncio.timeout_at(deadline):
                self.services = await self._discover(self._peer)
        except BaseException:
            await self._abandon()
            raise

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        services = await self._call(peer.discover_services())
        for service in services:
            service_uuid = uuid_str(service.uuid)
            if self._requested and service_uuid not in self._requested:
                continue
            await self._call(service.discover_characteristics())
            bleak_service = BleakGATTService(service, service.handle, service_uuid)
            collection.add_service(bleak_service)
            for char in service.characteristics:
                await self._call(char.discover_descriptors())
                bleak_char = BleakGATTCharacteristic(
                    char, char.handle, uuid_str(char.uuid), properties(char.properties),
                    lambda: self.mtu_size - 3, bleak_service)
                collection.add_characteristic(bleak_char)
                for descriptor in char.descriptors:
                    collection.add_descriptor(BleakGATTDescriptor(
                        descriptor, descriptor.handle, uuid_str(descriptor.type), bleak_char))
        return collection

    async def _abandon(self) -> None:
        """Drop a half-made connection without raising (the caller raises)."""
        try:
            await asyncio.shield(self.disconnect())
        except (BleakError, core.BaseBumbleError, TimeoutError) as exc:
            log.debug("%s: abandoning the connection: %r", self.address, exc)

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        gone: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def closed(reason: int) -> None:
            if not gone.done():
                gone.set_result(reason)

        connection.once(Connection.EVENT_DISCONNECTION, closed)
        try:
            await connection.disconnect()
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await gone
        except (core.BaseBumbleError, hci.HCI_Error, TimeoutError) as exc:
            log.debug("%s: disconnect: %r", self.address, exc)
            self._on_disconnection(hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR)

    def _on_disconnection(self, reason: int) -> None:
        if self._connection is None:
            return
        log.debug("%s: disconnected (reason 0x%02X)", self.address, reason)
        self._connection = None
        self._peer = None
        self._subscribers.clear()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("pairing is not implemented by the bumble test backend")

    async def unpair(self) -> None:
        raise BleakError("unpairing is not implemented by the bumble test backend")

    # I/O

    async def _call(self, operation: Any) -> Any:
        """Await one bumble GATT operation; bumble's failures become bleak's."""
        try:
            return await operation
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        except core.TimeoutError as exc:
            raise TimeoutError(f"{self.address}: GATT request timed out") from exc
        except asyncio.CancelledError:
            # bumble cancels a pending request when the link drops; a real
            # cancellation of this task is passed on.
            task = asyncio.current_task()
            if (task is not None and task.cancelling()) or self._connection is not None:
                raise
            raise BleakError(f"{self.address}: Disconnected during a GATT request") from None

    def _connected(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        peer = self._connected()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        if use_cached and proxy.handle in peer.gatt_client.cached_values:
            return bytearray(peer.gatt_client.cached_values[proxy.handle][1])
        return bytearray(await self._call(proxy.read_value()))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        self._connected()
        proxy: DescriptorProxy = descriptor.obj
        return bytearray(await self._call(proxy.read_value()))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any,
                              response: bool) -> None:
        self._connected()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        await self._call(proxy.write_value(bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        self._connected()
        proxy: DescriptorProxy = descriptor.obj
        await self._call(proxy.write_value(bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        self._connected()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakError(f"{characteristic.uuid} can neither notify nor indicate")

        def deliver(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[proxy.handle] = deliver
        await self._call(proxy.subscribe(deliver))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._connected()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        subscriber = self._subscribers.pop(proxy.handle, None)
        await self._call(proxy.unsubscribe(subscriber))


class BumbleBackend:
    """The pair of bleak backend classes for one central (what LockDriver takes)."""

    scanner: ClassVar[type[BaseBleakScanner]]
    client: ClassVar[type[BaseBleakClient]]


def bumble_backend(central: CentralSource) -> type[BumbleBackend]:
    """Scanner and client classes bound to ``central`` (anything with ``async ready()``)."""

    class Scanner(BumbleScanner):
        pass

    class Client(BumbleClient):
        pass

    Scanner.central = central
    Client.central = central

    class Backend(BumbleBackend):
        scanner = Scanner
        client = Client

    return Backend

