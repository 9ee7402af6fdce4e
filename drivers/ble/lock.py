"""Find a nyckelfri lock at a door, read it, and record its proof: the fitter's driver.

Uses only bleak's public API and bleak-retry-connector, so the same code runs on
BlueZ, CoreBluetooth, WinRT, or any backend classes handed in (the bumble test
backend of ``drivers.sim.bleak_bumble``, an ESPHome proxy)::

    driver = LockDriver()                                   # this machine's Bluetooth
    result = await driver.verify("NF-000123", "K-1")
    result.client_matches, result.response_hex              # verdicts and the proof

``verify`` scans for the lock's device tag, checks the signal against a proximity
threshold, connects with ``establish_connection`` (a fresh client each time),
reads serial, firmware, battery, bound client and binding state, writes a
challenge and takes the response by notification (or reads it), and disconnects.
The agent cannot check the response (it has no secret); the centre does, with
``drivers.ble.profile.verify_response``.

Every failure is its own :class:`~drivers.ble.errors.LockError` with advice;
failures after the lock was found carry the readings so far in ``.verification``.
A lock bound to another client is not an error: ``client_matches`` is False and the
fitter sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import (
    PROTOCOL_ERROR_CODES,
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakError,
    BleakGATTProtocolError,
)
from bleak_retry_connector import (
    BleakAbortedError,
    BleakClientWithServiceCache,
    BleakConnectionError,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
    establish_connection,
)

from drivers.ble import profile
from drivers.ble.errors import (
    BluetoothUnavailable,
    GattFailure,
    LockConnectionFailed,
    LockDisconnected,
    LockError,
    LockNotFound,
    LockTimeout,
    LockTooFar,
    PayloadError,
    UnsupportedVersion,
    WrongLock,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# A phone at the door reads a lock on its inside at about -45 to -65 dBm; a
# neighbour's lock through a wall or a floor is usually below -75 dBm.
RSSI_THRESHOLD_DBM = -70
# Idle locks advertise every 1-2 s (battery); ten seconds covers several intervals
# and is about as long as a fitter waits before turning the knob to wake it.
SCAN_TIMEOUT_S = 10.0
# After the lock is first seen, keep listening this long and take the median RSSI:
# at 100-500 ms advertising intervals that is 2-10 samples, and the median drops
# one faded or reflected sample that would flip the proximity verdict.
RSSI_WINDOW_S = 1.0
# bleak-retry-connector's own default is 4; three attempts ride out the transient
# aborts of a busy adapter without keeping a fitter waiting a minute for a dead lock.
CONNECT_ATTEMPTS = 3
# One connect attempt, including service discovery. bleak-retry-connector passes 20 s
# (its BLEAK_TIMEOUT) to connect() itself; backends that honour the client's timeout
# use the smaller of the two.
CONNECT_TIMEOUT_S = 20.0
# bleak-retry-connector backs off up to 4 s between attempts (full adapter); the
# whole connect is bounded by attempts x (timeout + this).
CONNECT_BACKOFF_MAX_S = 4.0
# One GATT read or write. The ATT transaction timeout is 30 s (Core Vol 3 Part F
# 3.3.3); a lock that has not answered a read in 10 s has gone away.
GATT_TIMEOUT_S = 10.0
# AES-CMAC over 60 bytes takes a lock MCU milliseconds; five seconds covers one that
# batches radio work to save power. After that the response is read instead.
RESPONSE_TIMEOUT_S = 5.0
# Thumb-turn locks warn at 20-25 % and die weeks later; below this the fitter swaps
# the batteries before leaving, so the lock does not fail before the next visit.
BATTERY_MIN_PERCENT = 20
# Starting or stopping a scan is a D-Bus round trip; anything longer means a hung stack.
SCANNER_TIMEOUT_S = 10.0
# disconnect() on BlueZ waits for the link to close: a supervision timeout at most.
DISCONNECT_TIMEOUT_S = 6.0

DBUS_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown"
DBUS_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
BLUEZ_NOT_READY = "org.bluez.Error.NotReady"


# --- values ----------------------------------------------------------------------------


class BleakBackend(Protocol):
    """The bleak backend classes to use: a class (or object) with these two attributes.

    ``None`` for either means bleak's platform default. ``drivers.sim.bleak_bumble``
    makes one for the simulated air; tests make ones whose scanner fails.
    """

    @property
    def scanner(self) -> type[BaseBleakScanner] | None: ...

    @property
    def client(self) -> type[BaseBleakClient] | None: ...


@dataclass(frozen=True)
class LockSighting:
    """A nyckelfri lock heard during a scan. ``tag`` is the device tag in hex."""

    address: str
    tag: str
    rssi: int  # median of the samples heard, dBm
    samples: int
    tx_power: int | None
    name: str | None
    version: int
    device: BLEDevice = field(repr=False, compare=False)

    def is_lock(self, serial: str) -> bool:
        return self.tag == profile.device_tag(serial).hex()


@dataclass(frozen=True)
class Verification:
    """What a fitter's on-site check of one lock established.

    ``nonce_hex`` and ``response_hex`` are the proof the centre checks with the lock's
    secret. ``error`` is None when every reading succeeded; otherwise it names what
    could not be read (an optional reading such as the battery, or, on a raised
    error's ``.verification``, what stopped the check).
    """

    expected_serial: str
    expected_client: str
    address: str | None
    serial: str | None
    firmware: str | None
    battery_percent: int | None
    rssi: int | None
    tx_power: int | None
    bound_client: str | None
    binding: profile.BindingState | None
    nonce_hex: str
    response_hex: str | None
    started_at: datetime
    finished_at: datetime
    serial_matches: bool
    client_matches: bool
    proximity_ok: bool
    battery_ok: bool
    rssi_threshold: int = RSSI_THRESHOLD_DBM
    battery_min_percent: int = BATTERY_MIN_PERCENT
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Every verdict holds and nothing failed (the proof itself is the centre's)."""
        return (self.serial_matches and self.client_matches and self.proximity_ok
                and self.battery_ok and self.response_hex is not None and self.error is None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601, the binding state as a nested dict."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat()
        return data


@dataclass
class _Record:
    """The readings of one verification as they come in."""

    expected_serial: str
    expected_client: str
    nonce: bytes
    started_at: datetime
    rssi_threshold: int
    address: str | None = None
    rssi: int | None = None
    tx_power: int | None = None
    serial: str | None = None
    firmware: str | None = None
    battery: int | None = None
    bound_client: str | None = None
    binding: profile.BindingState | None = None
    response: bytes | None = None
    notes: list[str] = field(default_factory=list)

    def result(self, finished_at: datetime, error: str | None = None) -> Verification:
        problems = [*self.notes, *([error] if error else [])]
        return Verification(
            expected_serial=self.expected_serial, expected_client=self.expected_client,
            address=self.address, serial=self.serial, firmware=self.firmware,
            battery_percent=self.battery, rssi=self.rssi, tx_power=self.tx_power,
            bound_client=self.bound_client, binding=self.binding,
            nonce_hex=self.nonce.hex(),
            response_hex=None if self.response is None else self.response.hex(),
            started_at=self.started_at, finished_at=finished_at,
            serial_matches=self.serial == self.expected_serial,
            client_matches=(self.binding is not None and self.binding.bound
                            and self.bound_client == self.expected_client),
            proximity_ok=self.rssi is not None and self.rssi >= self.rssi_threshold,
            battery_ok=self.battery is not None and self.battery >= BATTERY_MIN_PERCENT,
            rssi_threshold=self.rssi_threshold,
            error="; ".join(problems) if problems else None,
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- Bluetooth unavailable -------------------------------------------------------------


def bluetooth_unavailable(exc: BaseException) -> BluetoothUnavailable | None:
    """The BluetoothUnavailable that ``exc`` (or what caused it) means, if any.

    bleak says "no Bluetooth" three ways on Linux: a plain ``FileNotFoundError``
    when there is no system D-Bus, ``BleakDBusError`` ServiceUnknown when D-Bus runs
    but bluetoothd does not, and ``BleakBluetoothNotAvailableError`` (no adapter,
    powered off, denied).
    """
    seen: BaseException | None = exc
    while seen is not None:
        found = _unavailable_one(seen)
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


def _unavailable_one(exc: BaseException) -> BluetoothUnavailable | None:
    if isinstance(exc, FileNotFoundError):
        return BluetoothUnavailable(
            f"no system D-Bus ({exc.filename} not found)" if exc.filename
            else "no system D-Bus socket",
            "Start D-Bus and bluetoothd (sudo systemctl start bluetooth); in a container, "
            "mount /run/dbus and run with the host's Bluetooth")
    if isinstance(exc, BleakDBusError):
        if exc.dbus_error == DBUS_SERVICE_UNKNOWN:
            return BluetoothUnavailable(
                "bluetoothd is not running",
                "Install BlueZ >= 5.55 and start it: sudo systemctl enable --now bluetooth")
        if exc.dbus_error == DBUS_ACCESS_DENIED:
            return BluetoothUnavailable(
                "D-Bus denied access to BlueZ",
                "Add the agent's user to the bluetooth group and log in again")
        if exc.dbus_error == BLUEZ_NOT_READY:
            return BluetoothUnavailable(
                "the Bluetooth adapter is not ready (powered off?)",
                "Power it on: rfkill unblock bluetooth; bluetoothctl power on")
        return None
    if isinstance(exc, BleakBluetoothNotAvailableError):
        advice = {
            BleakBluetoothNotAvailableReason.NO_BLUETOOTH:
                "Plug in a Bluetooth LE adapter (a USB dongle) and check `bluetoothctl list`",
            BleakBluetoothNotAvailableReason.POWERED_OFF:
                "Power the adapter on: rfkill unblock bluetooth; bluetoothctl power on",
            BleakBluetoothNotAvailableReason.DENIED_BY_USER:
                "Allow this program to use Bluetooth in the system settings",
            BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM:
                "Ask the administrator to allow Bluetooth for the agent's user",
        }.get(exc.reason, "Check the adapter with `bluetoothctl show`")
        return BluetoothUnavailable(str(exc.args[0]) if exc.args else "not available", advice)
    return None


# --- one connected session -------------------------------------------------------------


class _LinkLost(Exception):
    """The lock disconnected while we waited for something from it."""


class _Session:
    """A connected client plus the error mapping every GATT operation goes through."""

    def __init__(self, serial: str, gatt_timeout: float) -> None:
        self.serial = serial
        self.gatt_timeout = gatt_timeout
        self.client: BleakClient | None = None
        self.gone = asyncio.Event()
        self._waiting: asyncio.Future[bytes] | None = None

    def on_disconnect(self, _client: BleakClient | None = None) -> None:
        log.debug("lock %s: link lost", self.serial)
        self.gone.set()
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_exception(_LinkLost())

    @contextlib.asynccontextmanager
    async def op(self, what: str, seconds: float | None = None) -> AsyncIterator[None]:
        seconds = self.gatt_timeout if seconds is None else seconds
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError as exc:
            if self.gone.is_set():
                raise LockDisconnected(self.serial, what) from exc
            raise LockTimeout(self.serial, what, seconds) from exc
        except _LinkLost as exc:
            raise LockDisconnected(self.serial, what) from exc
        except BleakCharacteristicNotFoundError as exc:
            raise GattFailure(self.serial, what, None, "characteristic missing") from exc
        except BleakGATTProtocolError as exc:
            code = int(exc.code)
            raise GattFailure(self.serial, what, code,
                              PROTOCOL_ERROR_CODES.get(code, "unknown")) from exc
        except (BleakError, EOFError, BrokenPipeError) as exc:
            if self.gone.is_set() or self.client is None or not self.client.is_connected:
                raise LockDisconnected(self.serial, what) from exc
            raise GattFailure(self.serial, what, None, str(exc) or type(exc).__name__) from exc

    def _client(self) -> BleakClient:
        assert self.client is not None, "read before connect"
        return self.client

    async def read(self, what: str, uuid: str) -> bytes:
        async with self.op(f"reading the {what}"):
            return bytes(await self._client().read_gatt_char(uuid))

    async def write(self, what: str, uuid: str, data: bytes) -> None:
        async with self.op(f"writing the {what}"):
            await self._client().write_gatt_char(uuid, data, response=True)

    def can_notify(self, uuid: str) -> bool:
        char = self._client().services.get_characteristic(uuid)
        if char is None:
            raise GattFailure(self.serial, "the response", None, "characteristic missing")
        return "notify" in char.properties

    async def challenge(self, nonce: bytes, response_timeout: float) -> bytes:
        """Write the challenge; the response by notification, else by reading it."""
        payload = b""
        if self.can_notify(profile.RESPONSE_CHAR):
            payload = await self._notified_response(nonce, response_timeout)
        else:
            await self.write("challenge", profile.CHALLENGE_CHAR, profile.encode_challenge(nonce))
        if not payload:
            payload = await self.read("response", profile.RESPONSE_CHAR)
        if not payload:
            raise LockTimeout(self.serial, "answering the challenge", response_timeout)
        profile.decode_response(payload)
        return payload

    async def _notified_response(self, nonce: bytes, response_timeout: float) -> bytes:
        """The response as notified, or b"" when none (or a cut one) came in time."""
        client = self._client()
        waiting: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def on_response(_char: Any, data: bytearray) -> None:
            if not waiting.done():
                waiting.set_result(bytes(data))

        self._waiting = waiting
        try:
            async with self.op("subscribing to the response"):
                await client.start_notify(profile.RESPONSE_CHAR, on_response)
            await self.write("challenge", profile.CHALLENGE_CHAR, profile.encode_challenge(nonce))
            async with asyncio.timeout(response_timeout):
                payload = await waiting
        except TimeoutError:
            log.info("lock %s: no response notification in %.1f s; reading it",
                     self.serial, response_timeout)
            return b""
        except _LinkLost as exc:
            raise LockDisconnected(self.serial, "waiting for the response") from exc
        finally:
            self._waiting = None
            if waiting.done() and not waiting.cancelled():
                waiting.exception()  # retrieved: a late _LinkLost is not an unhandled error
            else:
                waiting.cancel()
        return payload if _decodes(payload) else b""


def _decodes(payload: bytes) -> bool:
    try:
        profile.decode_response(payload)
    except PayloadError:
        return False
    return True


def _lock_advert(adv: AdvertisementData) -> profile.Advert | None:
    data = adv.manufacturer_data.get(profile.COMPANY_ID)
    if data is None:
        return None
    try:
        return profile.decode_manufacturer_data(data)
    except UnsupportedVersion as exc:
        log.warning("a lock with a newer profile is in range: %s", exc)
    except PayloadError as exc:
        log.debug("ignoring manufacturer data 0x%04X %s: %s", profile.COMPANY_ID,
                  data[:8].hex(), exc)
    return None


class _Heard:
    """RSSI samples and the latest advertisement of one lock during a scan."""

    def __init__(self, device: BLEDevice, advert: profile.Advert) -> None:
        self.device = device
        self.advert = advert
        self.rssi: list[int] = []
        self.tx_power: int | None = None
        self.name: str | None = None

    def add(self, device: BLEDevice, adv: AdvertisementData) -> None:
        self.device = device
        self.rssi.append(adv.rssi)
        self.tx_power = adv.tx_power if adv.tx_power is not None else self.tx_power
        self.name = adv.local_name or self.name

    def sighting(self) -> LockSighting:
        return LockSighting(
            address=self.device.address, tag=self.advert.tag.hex(),
            rssi=int(statistics.median_low(self.rssi)), samples=len(self.rssi),
            tx_power=self.tx_power, name=self.name, version=self.advert.version,
            device=self.device)


# --- the driver ------------------------------------------------------------------------


class LockDriver:
    """Scans for nyckelfri locks and verifies one on site (see the module docstring).

    ``backend`` names the bleak backend classes (None: this platform's). ``clock``
    stamps ``started_at``/``finished_at``; ``random_bytes`` makes nonces.
    """

    def __init__(
        self,
        backend: BleakBackend | None = None,
        *,
        rssi_threshold: int = RSSI_THRESHOLD_DBM,
        scan_timeout: float = SCAN_TIMEOUT_S,
        connect_attempts: int = CONNECT_ATTEMPTS,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        gatt_timeout: float = GATT_TIMEOUT_S,
        response_timeout: float = RESPONSE_TIMEOUT_S,
        rssi_window: float = RSSI_WINDOW_S,
        clock: Callable[[], datetime] = _utcnow,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if connect_attempts < 1:
            raise ValueError("connect_attempts is at least 1")
        self.scanner_backend = None if backend is None else backend.scanner
        self.client_backend = None if backend is None else backend.client
        self.rssi_threshold = rssi_threshold
        self.scan_timeout = scan_timeout
        self.connect_attempts = connect_attempts
        self.connect_timeout = connect_timeout
        self.gatt_timeout = gatt_timeout
        self.response_timeout = response_timeout
        self.rssi_window = rssi_window
        self.clock = clock
        self.random_bytes = random_bytes

    # scanning

    @contextlib.asynccontextmanager
    async def _scanning(self, on_lock: Callable[[BLEDevice, AdvertisementData, profile.Advert],
                                                None]) -> AsyncIterator[None]:
        def detected(device: BLEDevice, adv: AdvertisementData) -> None:
            advert = _lock_advert(adv)
            if advert is not None:
                on_lock(device, adv, advert)

        kwargs: dict[str, Any] = {}
        if self.scanner_backend is not None:
            kwargs["backend"] = self.scanner_backend
        try:
            scanner = BleakScanner(detected, [profile.LOCK_SERVICE], **kwargs)
            async with asyncio.timeout(SCANNER_TIMEOUT_S):
                await scanner.start()
        except (BleakError, OSError, EOFError) as exc:
            raise self._stack_error(exc, "starting a scan") from exc
        except TimeoutError as exc:
            raise BluetoothUnavailable(f"starting a scan took over {SCANNER_TIMEOUT_S:.0f} s",
                                       "Restart Bluetooth: sudo systemctl restart bluetooth"
                                       ) from exc
        try:
            yield
        finally:
            try:
                async with asyncio.timeout(SCANNER_TIMEOUT_S):
                    await scanner.stop()
            except (BleakError, OSError, EOFError, TimeoutError) as exc:
                log.warning("stopping the scan failed: %r", exc)

    @staticmethod
    def _stack_error(exc: BaseException, doing: str) -> LockError:
        unavailable = bluetooth_unavailable(exc)
        if unavailable is not None:
            return unavailable
        return BluetoothUnavailable(f"{doing} failed: {exc!r}",
                                    "Check the adapter with `bluetoothctl show`")

    async def scan(self, timeout: float | None = None) -> list[LockSighting]:
        """Every nyckelfri lock heard within ``timeout`` s, strongest signal first."""
        heard: dict[str, _Heard] = {}

        def on_lock(device: BLEDevice, adv: AdvertisementData, advert: profile.Advert) -> None:
            heard.setdefault(device.address, _Heard(device, advert)).add(device, adv)

        async with self._scanning(on_lock):
            await asyncio.sleep(self.scan_timeout if timeout is None else timeout)
        return sorted((h.sighting() for h in heard.values()), key=lambda s: -s.rssi)

    async def find(self, serial: str, *, address: str | None = None) -> LockSighting:
        """The lock with ``serial``'s device tag (or at ``address``), RSSI sampled."""
        tag = profile.device_tag(serial)
        found = asyncio.Event()
        heard: _Heard | None = None
        others = 0

        def on_lock(device: BLEDevice, adv: AdvertisementData, advert: profile.Advert) -> None:
            nonlocal heard, others
            wanted = (device.address.upper() == address.upper() if address
                      else advert.tag == tag)
            if not wanted:
                others += 1
                return
            if heard is None:
                heard = _Heard(device, advert)
            heard.add(device, adv)
            found.set()

        async with self._scanning(on_lock):
            try:
                async with asyncio.timeout(self.scan_timeout):
                    await found.wait()
            except TimeoutError:
                detail = f"{others} advertisement(s) of other locks heard" if others else ""
                raise LockNotFound(serial, self.scan_timeout, detail) from None
            await asyncio.sleep(self.rssi_window)
        assert heard is not None
        sighting = heard.sighting()
        log.info("lock %s seen at %s: %d dBm (%d samples)", serial, sighting.address,
                 sighting.rssi, sighting.samples)
        return sighting

    # verification

    async def verify(self, serial: str, expected_client: str, *,
                     nonce: bytes | None = None, address: str | None = None) -> Verification:
        """Verify on site that lock ``serial`` is here and bound to ``expected_client``.

        ``address`` finds the lock by address instead of its device tag (then a
        serial mismatch shows up as WrongLock). ``nonce`` defaults to 16 random bytes.
        """
        profile.check_serial(serial)
        nonce = self.random_bytes(profile.NONCE_LEN) if nonce is None else bytes(nonce)
        if len(nonce) != profile.NONCE_LEN:
            raise ValueError(f"a nonce is {profile.NONCE_LEN} bytes, not {len(nonce)}")
        record = _Record(serial, expected_client, nonce, self.clock(), self.rssi_threshold)
        try:
            sighting = await self.find(serial, address=address)
            record.address, record.rssi = sighting.address, sighting.rssi
            record.tx_power = sighting.tx_power
            if sighting.rssi < self.rssi_threshold:
                raise LockTooFar(serial, sighting.rssi, self.rssi_threshold)
            await self._read_lock(sighting, record)
        except LockError as exc:
            exc.verification = record.result(self.clock(), str(exc))
            raise
        result = record.result(self.clock())
        log.info("lock %s verified: client %s, battery %s %%, proof recorded", serial,
                 "matches" if result.client_matches else "DOES NOT MATCH",
                 result.battery_percent)
        return result

    async def _read_lock(self, sighting: LockSighting, record: _Record) -> None:
        serial = record.expected_serial
        session = _Session(serial, self.gatt_timeout)
        session.client = await self._connect(sighting, session)
        try:
            record.serial = profile.decode_serial(
                await session.read("serial number", profile.SERIAL_NUMBER_CHAR))
            if record.serial != serial:
                raise WrongLock(serial, record.serial)
            record.firmware = await self._optional(
                record, session, "firmware revision", profile.FIRMWARE_REVISION_CHAR,
                profile.decode_firmware)
            record.battery = await self._optional(
                record, session, "battery level", profile.BATTERY_LEVEL_CHAR,
                profile.decode_battery)
            record.bound_client = profile.decode_bound_client(
                await session.read("bound client", profile.BOUND_CLIENT_CHAR))
            record.binding = profile.decode_binding(
                await session.read("binding state", profile.BINDING_STATE_CHAR))
            record.response = await session.challenge(record.nonce, self.response_timeout)
        finally:
            await self._disconnect(session)

    async def _optional(self, record: _Record, session: _Session, what: str, uuid: str,
                           decode: Callable[[bytes], T]) -> T | None:
        """A reading the proof does not depend on: a failure is noted, not raised."""
        try:
            return decode(await session.read(what, uuid))
        except (GattFailure, PayloadError) as exc:
            log.warning("%s", exc)
            record.notes.append(str(exc))
            return None

    async def _connect(self, sighting: LockSighting, session: _Session) -> BleakClient:
        serial = session.serial
        kwargs: dict[str, Any] = {"timeout": self.connect_timeout}
        if self.client_backend is not None:
            kwargs["backend"] = self.client_backend
        budget = self.connect_attempts * (self.connect_timeout + CONNECT_BACKOFF_MAX_S)
        try:
            async with asyncio.timeout(budget):
                client = await establish_connection(
                    BleakClientWithServiceCache, sighting.device, f"lock {serial}",
                    disconnected_callback=session.on_disconnect,
                    max_attempts=self.connect_attempts, **kwargs)
        except TimeoutError as exc:
            raise LockTimeout(serial, "connecting", budget) from exc
        except BleakNotFoundError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise LockTimeout(serial, f"connecting ({self.connect_attempts} attempts)",
                                  self.connect_timeout) from exc
            raise self._connect_error(serial, exc) from exc
        except (BleakOutOfConnectionSlotsError, BleakAbortedError,
                BleakConnectionError) as exc:
            raise self._connect_error(serial, exc) from exc
        except (BleakError, OSError, EOFError) as exc:
            raise self._connect_error(serial, exc) from exc
        # A failed attempt may have fired the disconnected callback; this link is new.
        session.gone.clear()
        log.debug("lock %s: connected to %s", serial, sighting.address)
        return client

    def _connect_error(self, serial: str, exc: BaseException) -> LockError:
        unavailable = bluetooth_unavailable(exc)
        if unavailable is not None:
            return unavailable
        if isinstance(exc, BleakNotFoundError):
            return LockNotFound(serial, self.scan_timeout, f"it vanished before connecting: {exc}")
        return LockConnectionFailed(serial, str(exc) or type(exc).__name__)

    @staticmethod
    async def _disconnect(session: _Session) -> None:
        client = session.client
        if client is None or session.gone.is_set():
            return
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await client.disconnect()
        except (BleakError, OSError, EOFError, TimeoutError) as exc:
            log.warning("lock %s: disconnecting failed: %r", session.serial, exc)

    # for the CLI (no running event loop there)

    def scan_sync(self, timeout: float | None = None) -> list[LockSighting]:
        return _run(lambda: self.scan(timeout))

    def verify_sync(self, serial: str, expected_client: str, *, nonce: bytes | None = None,
                    address: str | None = None) -> Verification:
        return _run(lambda: self.verify(serial, expected_client, nonce=nonce, address=address))


def _run(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(start())
    raise RuntimeError("the *_sync methods are for code without an event loop; await instead")
