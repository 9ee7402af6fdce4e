"""A simulated nyckelfri lock: a bumble GATT peripheral speaking the lock profile.

It advertises like a lock (service UUID, manufacturer id 0xFFFF with version and
device tag, TX power and a tag name in the scan response), serves Device
Information, Battery and the lock service, and answers a challenge with the real
AES-CMAC of ``drivers.ble.profile``. The driver under test reaches it through
unchanged bleak and bleak-retry-connector code over ``drivers.sim.bleak_bumble``.

Faults (:class:`LockFaults`) make it misbehave the ways field locks do:

==========================  ===========================================================
``drop_after_reads=N``      serves N reads, then drops the link instead of answering
``wrong_mac``               answers challenges with a MAC under the wrong key
``wake_delay_s=S``          sleeps through link traffic for S s after the first
                            connection (a slow-to-wake lock: the first connect attempt
                            times out, a retry after S s succeeds)
``advertising=False``       never advertises (out of batteries, out of range)
``notify=False``            does not notify the response; it can only be read
``reject_challenge=CODE``   answers every challenge with ATT error CODE
``missing={"battery"}``     leaves characteristics out (names in ``CHARACTERISTICS``)
``advertised_serial=S``     advertises the device tag of serial S (a tag collision)
==========================  ===========================================================

Low battery and signal strength are plain settings (``battery_percent``, ``rssi``);
the RSSI is applied by the simulated air, see ``bleak_bumble``.

For demos and field training, :func:`run_lock` keeps one lock on the air until
stopped; :func:`serve_lock_on_transport` attaches a lock's host to a bumble HCI
transport instead (``tcp-client:127.0.0.1:9001`` to a controller of
``python -m bumble.apps.controllers``), so it can live in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bumble import att, core, gatt, hci
from bumble.device import Connection, Device
from bumble.transport import open_transport

from drivers.ble import profile
from drivers.sim.bleak_bumble import SimulatedAir

log = logging.getLogger(__name__)

# Field locks advertise every 100 ms-1 s; 100 ms keeps scans in tests short and is
# what a lock does right after its knob was turned.
ADVERTISING_INTERVAL_MS = 100.0
FLAGS_LE_GENERAL_NO_BREDR = 0x06  # LE General Discoverable, BR/EDR not supported
CHARACTERISTICS = ("serial", "firmware", "battery", "bound_client", "binding",
                   "challenge", "response")
DROP_REASON = hci.HCI_ErrorCode.REMOTE_DEVICE_TERMINATED_CONNECTION_DUE_TO_POWER_OFF_ERROR


@dataclass(frozen=True)
class LockFaults:
    drop_after_reads: int | None = None
    wrong_mac: bool = False
    wake_delay_s: float = 0.0
    advertising: bool = True
    notify: bool = True
    reject_challenge: int | None = None
    missing: frozenset[str] = frozenset()
    advertised_serial: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.missing) - set(CHARACTERISTICS)
        if unknown:
            raise ValueError(f"unknown characteristics {sorted(unknown)}; "
                             f"known: {', '.join(CHARACTERISTICS)}")


@dataclass(frozen=True)
class LockConfig:
    """One lock: identity, secret, state, radio, faults. ``bound_client=""``: unbound."""

    serial: str
    secret: bytes
    bound_client: str = ""
    binding_counter: int = 1
    battery_percent: int = 87
    firmware: str = "1.0.0-sim"
    rssi: int = -50  # what the fitter's phone measures at the door
    tx_power: int = 0  # dBm, in the scan response
    address: str | None = None  # random static address; default derived from the serial
    faults: LockFaults = field(default_factory=LockFaults)

    def __post_init__(self) -> None:
        profile.check_serial(self.serial)
        profile.check_client_ref(self.bound_client)
        if len(self.secret) != profile.SECRET_LEN:
            raise ValueError(f"a lock secret is {profile.SECRET_LEN} bytes")
        if not 0 <= self.battery_percent <= 100:
            raise ValueError("battery_percent is 0-100")

    @property
    def binding(self) -> profile.BindingState:
        return profile.BindingState(bool(self.bound_client), self.binding_counter)

    @property
    def device_address(self) -> str:
        return self.address or address_for(self.serial)


def address_for(serial: str) -> str:
    """A random static address derived from the serial (top two bits set)."""
    raw = bytearray(hashlib.sha256(b"nyckelfri-sim-address\x00" + serial.encode()).digest()[:6])
    raw[0] |= 0xC0
    return ":".join(f"{b:02X}" for b in raw)


def advertising_data(config: LockConfig) -> tuple[bytes, bytes]:
    """(advertising data, scan response) of a lock: 30 and 15 bytes, under 31 each."""
    tag_serial = config.faults.advertised_serial or config.serial
    company = profile.COMPANY_ID.to_bytes(2, "little")
    adv = core.AdvertisingData([
        (core.AdvertisingData.FLAGS, bytes([FLAGS_LE_GENERAL_NO_BREDR])),
        (core.AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
         core.UUID(profile.LOCK_SERVICE).to_bytes(force_128=True)),
        (core.AdvertisingData.MANUFACTURER_SPECIFIC_DATA,
         company + profile.encode_manufacturer_data(tag_serial)),
    ])
    scan_response = core.AdvertisingData([
        (core.AdvertisingData.TX_POWER_LEVEL, config.tx_power.to_bytes(1, "little", signed=True)),
        (core.AdvertisingData.COMPLETE_LOCAL_NAME, lock_name(tag_serial).encode("ascii")),
    ])
    return bytes(adv), bytes(scan_response)


def lock_name(serial: str) -> str:
    """The advertised name: the device tag, never anything about the client."""
    return "NF-" + profile.device_tag(serial).hex()


class SimLock:
    """A running simulated lock. Counters let tests see what the driver did."""

    def __init__(self, air: SimulatedAir, config: LockConfig) -> None:
        self.air = air
        self.config = config
        self.device: Device | None = None
        self.reads = 0
        self.connections = 0  # ever made
        self.live_links = 0  # open now
        self.challenges: list[bytes] = []
        self._wake_at: float | None = None
        self._responses: dict[int, bytes] = {}  # connection handle -> last response payload
        self._response_char: gatt.Characteristic[bytes] | None = None

    # lifecycle

    async def start(self) -> SimLock:
        config = self.config
        self.air.set_rssi(config.device_address, config.rssi)
        self.device = await self.air.add_device(lock_name(config.serial), config.device_address,
                                                awake=self.awake)
        self._serve(self.device)
        if config.faults.advertising:
            await self._advertise(self.device)
        log.info("simulated lock %s at %s (rssi %d dBm, %s)", config.serial,
                 config.device_address, config.rssi,
                 f"bound to {config.bound_client}" if config.bound_client else "unbound")
        return self

    async def stop(self) -> None:
        if self.device is not None:
            device, self.device = self.device, None
            await self.air.remove_device(device)

    async def __aenter__(self) -> SimLock:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def awake(self) -> bool:
        """False while a slow lock is still waking after its first connection."""
        loop = asyncio.get_running_loop()
        return self._wake_at is None or loop.time() >= self._wake_at

    async def _advertise(self, device: Device) -> None:
        adv, scan_response = advertising_data(self.config)
        await device.start_advertising(
            advertising_data=adv, scan_response_data=scan_response, auto_restart=True,
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS)

    # GATT

    def _serve(self, device: Device) -> None:
        config, missing = self.config, self.config.faults.missing
        read = gatt.Characteristic.Properties.READ
        readable = gatt.Characteristic.READABLE

        def value(name: str, produce: Callable[[], bytes]) -> gatt.CharacteristicValue[bytes]:
            return gatt.CharacteristicValue(read=lambda connection: self._read(connection, name,
                                                                                produce))

        def char(name: str, uuid: str, props: Any, perms: Any, val: Any) -> list[Any]:
            return [] if name in missing else [gatt.Characteristic(uuid, props, perms, val)]

        info = [
            *char("serial", profile.SERIAL_NUMBER_CHAR, read, readable,
                  value("serial", lambda: config.serial.encode("ascii"))),
            *char("firmware", profile.FIRMWARE_REVISION_CHAR, read, readable,
                  value("firmware", lambda: config.firmware.encode("utf-8"))),
        ]
        battery = char("battery", profile.BATTERY_LEVEL_CHAR, read | gatt.Characteristic.NOTIFY,
                       readable, value("battery", lambda: bytes([config.battery_percent])))
        response_props = read | (gatt.Characteristic.NOTIFY if config.faults.notify
                                 else gatt.Characteristic.Properties(0))
        response = char("response", profile.RESPONSE_CHAR, response_props, readable,
                        gatt.CharacteristicValue(read=self._read_response))
        self._response_char = response[0] if response else None
        lock = [
            *char("bound_client", profile.BOUND_CLIENT_CHAR, read, readable,
                  value("bound_client", lambda: profile.encode_bound_client(config.bound_client))),
            *char("binding", profile.BINDING_STATE_CHAR, read, readable,
                  value("binding", lambda: profile.encode_binding(config.binding))),
            *char("challenge", profile.CHALLENGE_CHAR, gatt.Characteristic.WRITE,
                  gatt.Characteristic.WRITEABLE,
                  gatt.CharacteristicValue(write=self._on_challenge)),
            *response,
        ]
        device.add_service(gatt.Service(profile.DEVICE_INFORMATION_SERVICE, info))
        device.add_service(gatt.Service(profile.BATTERY_SERVICE, battery))
        device.add_service(gatt.Service(profile.LOCK_SERVICE, lock))
        device.on(Device.EVENT_CONNECTION, self._on_connection)

    def _on_connection(self, connection: Connection) -> None:
        self.connections += 1
        self.live_links += 1
        delay = self.config.faults.wake_delay_s
        if delay > 0 and self._wake_at is None:
            self._wake_at = asyncio.get_running_loop().time() + delay
            log.info("lock %s waking up: deaf for %.1f s", self.config.serial, delay)

        def on_disconnection(reason: int) -> None:
            self.live_links -= 1
            self._responses.pop(connection.handle, None)

        connection.on(Connection.EVENT_DISCONNECTION, on_disconnection)

    async def _read(self, connection: Connection, name: str, produce: Callable[[], bytes]) -> bytes:
        self.reads += 1
        limit = self.config.faults.drop_after_reads
        if limit is not None and self.reads > limit:
            log.info("lock %s drops the link instead of answering read %d (%s)",
                     self.config.serial, self.reads, name)
            await connection.disconnect(DROP_REASON)
            raise att.ATT_Error(att.ErrorCode.UNLIKELY_ERROR)  # never reaches the dropped peer
        return produce()

    async def _read_response(self, connection: Connection) -> bytes:
        return await self._read(connection, "response",
                                lambda: self._responses.get(connection.handle, b""))

    def _on_challenge(self, connection: Connection, value: bytes) -> None:
        faults = self.config.faults
        if faults.reject_challenge is not None:
            raise att.ATT_Error(faults.reject_challenge)
        if len(value) != 1 + profile.NONCE_LEN:
            raise att.ATT_Error(profile.ATT_ERROR_INVALID_ATTRIBUTE_LENGTH)
        try:
            challenge = profile.decode_challenge(value)
        except profile.UnsupportedVersion as exc:
            raise att.ATT_Error(profile.ATT_ERROR_UNSUPPORTED_VERSION) from exc
        self.challenges.append(challenge.nonce)
        payload = profile.encode_response(self.mac(challenge.nonce), challenge.version)
        self._responses[connection.handle] = payload
        if faults.notify and self._response_char is not None and self.device is not None:
            # After the write response: a notification never overtakes it.
            asyncio.get_running_loop().call_soon(self._notify, connection, payload)

    def _notify(self, connection: Connection, payload: bytes) -> None:
        if self.device is None or self._response_char is None:
            return
        task = asyncio.ensure_future(
            self.device.notify_subscriber(connection, self._response_char, payload))
        task.add_done_callback(_log_failure)

    def mac(self, nonce: bytes) -> bytes:
        config = self.config
        secret = config.secret
        if config.faults.wrong_mac:
            secret = bytes(b ^ 0xFF for b in secret)
        return profile.compute_mac(secret, nonce, config.serial, config.binding,
                                   config.bound_client)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("notification failed: %r", task.exception())


async def start_lock(air: SimulatedAir, config: LockConfig) -> SimLock:
    """A lock advertising on ``air`` until its ``stop()``."""
    return await SimLock(air, config).start()


async def run_lock(air: SimulatedAir, config: LockConfig,
                   stop: asyncio.Event | None = None) -> SimLock:
    """Keep a lock on the air until ``stop`` is set (or the task is cancelled)."""
    lock = await start_lock(air, config)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await lock.stop()
    return lock


class _TransportAir(SimulatedAir):
    """An 'air' whose one device talks to an external controller over an HCI transport."""

    def __init__(self, hci_transport: Any) -> None:
        super().__init__()
        self._transport = hci_transport

    async def add_device(self, name: str, address: str, *,
                         awake: Callable[[], bool] | None = None) -> Device:
        if awake is not None:
            log.info("wake_delay_s and rssi need the in-process air; ignored over a transport")
        device = Device.with_hci(name, hci.Address(address), self._transport.source,
                                 self._transport.sink)
        await device.power_on()
        return device

    async def remove_device(self, device: Device) -> None:
        await device.stop_advertising()


async def serve_lock_on_transport(transport: str, config: LockConfig,
                                  stop: asyncio.Event | None = None) -> None:
    """Run a lock whose controller is behind a bumble HCI transport, until ``stop``."""
    hci_transport = await open_transport(transport)
    try:
        await run_lock(_TransportAir(hci_transport), config, stop)
    finally:
        await hci_transport.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m drivers.sim.ble_lock``: one simulated lock on a bumble HCI transport.

    With ``python -m bumble.apps.controllers tcp-server:_:9001 tcp-server:_:9002``
    running, ``--transport tcp-client:127.0.0.1:9001`` puts the lock on one controller
    and a central opened with ``bleak_bumble.open_central("tcp-client:127.0.0.1:9002")``
    finds it. Runs until interrupted.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m drivers.sim.ble_lock",
                                     description=main.__doc__)
    parser.add_argument("--transport", required=True, help="bumble HCI transport name")
    parser.add_argument("--serial", required=True)
    parser.add_argument("--secret", required=True, help="32 hex digits")
    parser.add_argument("--client", default="", help="bound client reference ('' = unbound)")
    parser.add_argument("--battery", type=int, default=87)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = LockConfig(args.serial, bytes.fromhex(args.secret), bound_client=args.client,
                        battery_percent=args.battery)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_lock_on_transport(args.transport, config))


if __name__ == "__main__":
    main()
