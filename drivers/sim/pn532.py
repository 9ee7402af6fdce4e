"""A PN532 on a pseudo-terminal: nfcpy's unmodified PN532 driver talks to it as to a reader.

:class:`Pn532Emulator` opens a pty pair and answers PN532 host frames (UART/HSU
syntax: preamble, start code ``00 FF``, normal and extended information frames,
ACK/NACK, checksums) on the master side, like an NXP PN532 with firmware 1.6.
Simulated tags (:class:`SimTag`, e.g. ``drivers.sim.tags.Ntag21x``) are put in
its RF field with :meth:`Pn532Emulator.present`; InListPassiveTarget selects
them and InCommunicateThru forwards raw frames to ``tag.exchange`` (Type 2, and
ISO-DEP blocks for a Type 4 tag). CRC_A follows the CIU registers as on the chip:
with RxCRCEn cleared (nfcpy does that for Type 2) the reply carries the tag's
CRC_A, and a 4-bit ACK/NAK comes back as one byte without CRC.

nfcpy's own ``tty:`` path regex refuses ``/dev/pts/N``; :func:`open_frontend`
builds the same driver stack by hand (``TTY`` transport, ``pn532.init``) for any
serial device path (``drivers.nfc.reader`` does the same for ``serial:`` paths).

What the emulator knows of the PN532 comes from the PN532 User Manual (UM0701)
and from what nfcpy 1.0.4's ``nfc/clf/pn532.py`` and ``pn53x.py`` send and check.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import select
import termios
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import nfc
import nfc.clf.pn532
import nfc.clf.transport

from drivers.nfc.base import ReaderOpenError
from drivers.sim.tags import SimTag

log = logging.getLogger(__name__)

# --- Host frame syntax (UM0701 section 6.2) -------------------------------------------
START_CODE = b"\x00\xff"  # after the 00 preamble; everything before it is wake-up or noise
ACK_FRAME = bytes.fromhex("0000ff00ff00")
NACK_FRAME = bytes.fromhex("0000ffff0000")
SYNTAX_ERROR_FRAME = bytes.fromhex("0000ff01ff7f8100")  # "application level error" frame
HOST_TFI = 0xD4  # frame identifier host -> PN532
CHIP_TFI = 0xD5  # frame identifier PN532 -> host
# LEN 0xFF in a normal frame would be read as the extended-frame marker FF FF.
NORMAL_FRAME_MAX_LEN = 0xFE

# IC 0x32 (PN532), version 1, revision 6, supports ISO 18092 + ISO 14443 B + A.
FIRMWARE_VERSION = bytes.fromhex("32010607")
# Index -> baud rate of SetSerialBaudrate (UM0701 7.2.8); nfcpy uses the same table.
SERIAL_BAUDRATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1288000)
INITIAL_BAUDRATE = 115200  # a PN532 always starts its HSU at 115.2 kbps

# --- Timing ----------------------------------------------------------------------------
# How often the emulator thread looks at its stop event: bounds close() latency.
POLL_INTERVAL_S = 0.05
# On a pty a frame arrives within milliseconds; a partial frame older than this is a
# broken host write and would otherwise swallow the start of the next command.
FRAME_ASSEMBLY_TIMEOUT_S = 0.5
# A host that stopped reading must not wedge the emulator thread on a full pty buffer.
WRITE_TIMEOUT_S = 1.0
# close() waits this long for the thread; it exits within POLL_INTERVAL_S plus one
# RF timeout, so this only guards against a tag model stuck inside exchange().
THREAD_JOIN_TIMEOUT_S = 2.0
# A real chip waits the whole RF timeout (100 us * 2**(n-1), up to 3.3 s) for a mute
# tag. nfcpy waits timeout + 0.1 s on the host side, so any shorter wait is faithful;
# capping it keeps a mute tag from stalling tests and demos.
RF_TIMEOUT_CAP_S = 0.2
RF_TIMEOUT_BASE_S = 100e-6
DEFAULT_RF_TIMEOUT_INDEX = 0x0A  # PN532 power-on value for non-DEP commands (51.2 ms)
READ_CHUNK = 4096

# --- RF / CIU details ------------------------------------------------------------------
BRTY_106A = 0x00  # InListPassiveTarget baud rate / modulation: 106 kbps type A
CRC_ENABLE = 0x80  # bit 7 of CIU_TxMode / CIU_RxMode (TxCRCEn / RxCRCEn)
ANTENNA_ON = 0x03  # CIU_TxControl Tx1RFEn | Tx2RFEn
FORCE_100_ASK = 0x40  # CIU_TxAuto, set for type A
SENS_REQ = 0x26  # REQA; left in the CIU FIFO when no tag answered the poll
CASCADE_TAG = 0x88  # prefix nfcpy puts before a 7/10 byte UID in InListPassiveTarget
TYPE2_ACK = 0x0A  # 4-bit ACK; any other 4-bit answer is a NAK
SHORT_FRAME_MAX = 0x0F  # a 1-byte answer up to this is a 4-bit frame (ACK/NAK), not a byte
RF_FIELD_ON = 0x01  # RFConfiguration item 1, bit 0
STATUS_OK = 0x00
STATUS_TIMEOUT = 0x01  # "the target has not answered"
STATUS_CRC_ERROR = 0x02  # what a 4-bit ACK/NAK looks like while RxCRCEn is set
STATUS_WRONG_CONTEXT = 0x27  # "command not acceptable in the current context"


class Command(enum.IntEnum):
    """PN532 command codes the emulator answers (UM0701 chapter 7)."""

    DIAGNOSE = 0x00
    GET_FIRMWARE_VERSION = 0x02
    GET_GENERAL_STATUS = 0x04
    READ_REGISTER = 0x06
    WRITE_REGISTER = 0x08
    SET_SERIAL_BAUDRATE = 0x10
    SET_PARAMETERS = 0x12
    SAM_CONFIGURATION = 0x14
    POWER_DOWN = 0x16
    RF_CONFIGURATION = 0x32
    IN_COMMUNICATE_THRU = 0x42
    IN_DESELECT = 0x44
    IN_LIST_PASSIVE_TARGET = 0x4A
    IN_RELEASE = 0x52


class Register(enum.IntEnum):
    """CIU registers nfcpy reads or writes around Type A tag commands."""

    CIU_TX_MODE = 0x6302
    CIU_RX_MODE = 0x6303
    CIU_TX_CONTROL = 0x6304
    CIU_TX_AUTO = 0x6305
    CIU_FIFO_DATA = 0x6339
    CIU_FIFO_LEVEL = 0x633A


class RfConfigItem(enum.IntEnum):
    RF_FIELD = 0x01
    VARIOUS_TIMINGS = 0x02  # RFU, ATR_RES timeout, non-DEP (InCommunicateThru) timeout


class DiagnoseTest(enum.IntEnum):
    LINE = 0x00  # communication line test: the chip echoes the frame
    ROM = 0x01
    RAM = 0x02


class CommandError(Exception):
    """A host command the chip answers with the syntax error frame."""


def crc_a(data: bytes) -> bytes:
    """ISO/IEC 14443-3 CRC_A of *data*, least significant byte first, as sent on air."""
    crc = 0x6363
    for octet in data:
        mixed = (octet ^ crc) & 0xFF
        mixed = (mixed ^ (mixed << 4)) & 0xFF
        crc = (crc >> 8) ^ (mixed << 8) ^ (mixed << 3) ^ (mixed >> 4)
    return bytes((crc & 0xFF, crc >> 8))


def encode_frame(payload: bytes) -> bytes:
    """Wrap *payload* (TFI onwards) in a PN532 normal or extended information frame."""
    length = len(payload)
    if length <= NORMAL_FRAME_MAX_LEN:
        head = bytes((0x00, 0x00, 0xFF, length, -length & 0xFF))
    else:
        size = length.to_bytes(2, "big")
        head = b"\x00\x00\xff\xff\xff" + size + bytes((-sum(size) & 0xFF,))
    return head + payload + bytes((-sum(payload) & 0xFF, 0x00))


def short_hex(data: bytes, limit: int = 24) -> str:
    """Hex for log lines: long frames are cut, with their length."""
    if len(data) <= limit:
        return data.hex()
    return f"{data[:limit].hex()}...({len(data)} bytes)"


class FrameKind(enum.Enum):
    ACK = "ack"
    NACK = "nack"
    INFO = "info"


@dataclass(frozen=True)
class HostFrame:
    """One frame from the host; ``payload`` (TFI onwards, no DCS) for information frames."""

    kind: FrameKind
    payload: bytes = b""


class HostFrameParser:
    """Cut the host's byte stream into frames.

    Bytes before a start code (wake-up zeros, postambles, noise) are dropped. A frame
    with a bad length or data checksum is dropped and logged: a PN532 does not
    acknowledge it, so the host times out and retries.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._buffer = bytearray()
        self._last_rx = 0.0

    def feed(self, data: bytes, now: float) -> list[HostFrame]:
        self._buffer += data
        self._last_rx = now
        frames: list[HostFrame] = []
        while (frame := self._next_frame()) is not None:
            frames.append(frame)
        return frames

    def expire(self, now: float) -> None:
        """Drop a partial frame that stopped growing (see FRAME_ASSEMBLY_TIMEOUT_S)."""
        if self._buffer.strip(b"\x00") and now - self._last_rx > FRAME_ASSEMBLY_TIMEOUT_S:
            log.warning("%s: dropping incomplete host frame %s", self._name,
                        short_hex(bytes(self._buffer)))
            self._buffer.clear()

    def _next_frame(self) -> HostFrame | None:
        while True:
            start = self._buffer.find(START_CODE)
            if start < 0:
                del self._buffer[:-1]  # a trailing 00 may begin a split start code
                return None
            del self._buffer[:start]
            frame, consumed = self._parse_at_start_code()
            if consumed == 0:
                return None  # incomplete, wait for more bytes
            del self._buffer[:consumed]
            if frame is not None:
                return frame

    def _parse_at_start_code(self) -> tuple[HostFrame | None, int]:
        """Return (frame, bytes consumed); consumed 0 means incomplete, frame None dropped."""
        buf = self._buffer
        if len(buf) < 4:
            return None, 0
        marker = bytes(buf[2:4])
        if marker == b"\x00\xff":
            return HostFrame(FrameKind.ACK), 4
        if marker == b"\xff\x00":
            return HostFrame(FrameKind.NACK), 4
        if marker == b"\xff\xff":
            if len(buf) < 7:
                return None, 0
            header, length, length_ok = 7, buf[4] << 8 | buf[5], sum(buf[4:7]) & 0xFF == 0
        else:
            header, length, length_ok = 4, buf[2], sum(buf[2:4]) & 0xFF == 0
        if not length_ok or length == 0:
            log.warning("%s: length checksum error in host frame %s", self._name,
                        short_hex(bytes(buf)))
            return None, len(START_CODE)
        end = header + length + 1
        if len(buf) < end:
            return None, 0
        payload = bytes(buf[header:header + length])
        if (sum(payload) + buf[header + length]) & 0xFF:
            log.warning("%s: data checksum error in host frame %s", self._name,
                        short_hex(payload))
            return None, end
        return HostFrame(FrameKind.INFO, payload), end


class Field:
    """The antenna's view: which tag is in the RF field, and since which presentation.

    Shared by the caller's thread (present/remove) and the emulator thread. Each
    presentation gets a new number, so a tag put back is a new tag that needs
    selecting again, as on a real reader.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tag: SimTag | None = None
        self._leaves_at: float | None = None
        self._presentation = 0

    def present(self, tag: SimTag, seconds: float | None = None) -> None:
        with self._lock:
            self._presentation += 1
            self._tag = tag
            self._leaves_at = None if seconds is None else time.monotonic() + seconds

    def remove(self) -> None:
        with self._lock:
            self._presentation += 1
            self._tag = None
            self._leaves_at = None

    def current(self) -> tuple[int, SimTag] | None:
        """(presentation number, tag) of the tag in the field, or None."""
        with self._lock:
            if self._leaves_at is not None and time.monotonic() >= self._leaves_at:
                self._presentation += 1
                self._tag = None
                self._leaves_at = None
            if self._tag is None:
                return None
            return self._presentation, self._tag


def uid_from_initiator_data(data: bytes) -> bytes:
    """The UID nfcpy asks InListPassiveTarget to reselect, without cascade tags.

    nfcpy sends a 7-byte UID as ``88 u0..u6`` and a 10-byte one as
    ``88 u0 u1 u2 88 u3..u9`` (``pn53x.Device.sense_tta``).
    """
    if len(data) == 8 and data[0] == CASCADE_TAG:
        return data[1:]
    if len(data) == 12 and data[0] == data[4] == CASCADE_TAG:
        return data[1:4] + data[5:]
    return data


class Pn532Chip:
    """The PN532's command layer: one host command in, response data out. No I/O.

    ``wait`` is called with the RF timeout when a tag does not answer (inject the
    emulator's stop event ``wait`` so close() is not delayed).
    """

    def __init__(self, field: Field, *, wait: Callable[[float], object], name: str) -> None:
        self._field = field
        self._wait = wait
        self._name = name
        self._registers: dict[int, int] = {
            Register.CIU_TX_MODE: CRC_ENABLE,
            Register.CIU_RX_MODE: CRC_ENABLE,
            Register.CIU_TX_CONTROL: 0x80,
            Register.CIU_TX_AUTO: 0x00,
        }
        self._rf_timeout_index = DEFAULT_RF_TIMEOUT_INDEX
        self._field_on = False
        self._selected: int | None = None  # presentation number of the selected tag
        self._parameters = 0
        self._counts_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.serial_baudrate = INITIAL_BAUDRATE
        self.powered_down = False
        self._handlers: dict[int, Callable[[bytes], bytes]] = {
            Command.DIAGNOSE: self._diagnose,
            Command.GET_FIRMWARE_VERSION: lambda _params: FIRMWARE_VERSION,
            Command.GET_GENERAL_STATUS: self._get_general_status,
            Command.READ_REGISTER: self._read_register,
            Command.WRITE_REGISTER: self._write_register,
            Command.SET_SERIAL_BAUDRATE: self._set_serial_baudrate,
            Command.SET_PARAMETERS: self._set_parameters,
            Command.SAM_CONFIGURATION: self._sam_configuration,
            Command.POWER_DOWN: self._power_down,
            Command.RF_CONFIGURATION: self._rf_configuration,
            Command.IN_LIST_PASSIVE_TARGET: self._in_list_passive_target,
            Command.IN_COMMUNICATE_THRU: self._in_communicate_thru,
            Command.IN_DESELECT: self._release,
            Command.IN_RELEASE: self._release,
        }

    def execute(self, code: int, params: bytes) -> bytes:
        """Run command *code*; return the response data after ``D5 code+1``.

        Raises :class:`CommandError` for an unknown command or malformed parameters.
        """
        handler = self._handlers.get(code)
        if handler is None:
            raise CommandError(f"unsupported command 0x{code:02X}")
        with self._counts_lock:
            self._counts[Command(code).name] += 1
        if self.powered_down and code != Command.POWER_DOWN:
            log.debug("%s: woken up from power down", self._name)
            self.powered_down = False
        return handler(params)

    def command_counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    # --- miscellaneous commands ---------------------------------------------------------
    def _diagnose(self, params: bytes) -> bytes:
        test = params[:1]
        if test == bytes((DiagnoseTest.LINE,)):
            return params  # nfcpy compares the echo with everything it sent, test byte too
        if test in (bytes((DiagnoseTest.ROM,)), bytes((DiagnoseTest.RAM,))):
            return bytes((STATUS_OK,))
        raise CommandError(f"unsupported Diagnose test {params[:1].hex()}")

    def _get_general_status(self, _params: bytes) -> bytes:
        targets = b"" if self._selected_tag() is None else bytes((1, 0, 0, 0))
        return bytes((STATUS_OK, int(self._field_on), len(targets) // 4)) + targets + b"\x00"

    def _read_register(self, params: bytes) -> bytes:
        if not params or len(params) % 2:
            raise CommandError("ReadRegister wants 2-byte addresses")
        addresses = [int.from_bytes(params[i:i + 2], "big") for i in range(0, len(params), 2)]
        return bytes(self._registers.get(address, 0) for address in addresses)

    def _write_register(self, params: bytes) -> bytes:
        if not params or len(params) % 3:
            raise CommandError("WriteRegister wants (address, value) triples")
        for i in range(0, len(params), 3):
            self._registers[int.from_bytes(params[i:i + 2], "big")] = params[i + 2]
        return b""

    def _set_serial_baudrate(self, params: bytes) -> bytes:
        if len(params) != 1 or params[0] >= len(SERIAL_BAUDRATES):
            raise CommandError("SetSerialBaudrate wants one rate index")
        self.serial_baudrate = SERIAL_BAUDRATES[params[0]]
        log.debug("%s: host switches to %d baud (no effect on a pty)", self._name,
                  self.serial_baudrate)
        return b""

    def _set_parameters(self, params: bytes) -> bytes:
        if len(params) != 1:
            raise CommandError("SetParameters wants one flags byte")
        self._parameters = params[0]
        return b""

    def _sam_configuration(self, params: bytes) -> bytes:
        if not params or not 1 <= params[0] <= 4:
            raise CommandError("SAMConfiguration wants a mode 1..4")
        return b""

    def _power_down(self, _params: bytes) -> bytes:
        self._set_field(False)
        self.powered_down = True
        log.debug("%s: powered down", self._name)
        return bytes((STATUS_OK,))

    # --- RF ------------------------------------------------------------------------------
    def _rf_configuration(self, params: bytes) -> bytes:
        if not params:
            raise CommandError("RFConfiguration wants an item")
        item, data = params[0], params[1:]
        if item == RfConfigItem.RF_FIELD and data:
            self._set_field(bool(data[0] & RF_FIELD_ON))
        elif item == RfConfigItem.VARIOUS_TIMINGS and len(data) == 3:
            self._rf_timeout_index = data[2]
        return b""

    def _set_field(self, on: bool) -> None:
        self._field_on = on
        control = self._registers[Register.CIU_TX_CONTROL]
        self._registers[Register.CIU_TX_CONTROL] = (
            control | ANTENNA_ON if on else control & ~ANTENNA_ON
        )
        if not on:
            self._selected = None  # tags lose power with the field

    def _rf_timeout(self) -> bytes:
        """Wait as a chip would for a mute tag, then report the timeout status."""
        index = self._rf_timeout_index
        seconds = RF_TIMEOUT_BASE_S * (1 << (index - 1)) if index else RF_TIMEOUT_CAP_S
        self._wait(min(seconds, RF_TIMEOUT_CAP_S))
        return bytes((STATUS_TIMEOUT,))

    def _selected_tag(self) -> SimTag | None:
        current = self._field.current()
        if current is None or current[0] != self._selected:
            return None
        return current[1]

    # --- initiator commands ----------------------------------------------------------------
    def _in_list_passive_target(self, params: bytes) -> bytes:
        if len(params) < 2 or params[0] not in (1, 2):
            raise CommandError("InListPassiveTarget wants MaxTg 1..2 and BrTy")
        brty, initiator_data = params[1], params[2:]
        self._set_field(True)
        self._selected = None
        if brty != BRTY_106A:
            return b"\x00"  # only type A tags are simulated
        current = self._field.current()
        if current is None:
            self._registers[Register.CIU_FIFO_DATA] = SENS_REQ
            return b"\x00"
        self._registers[Register.CIU_FIFO_DATA] = 0x00  # the ATQA overwrote the REQA
        presentation, tag = current
        if initiator_data and uid_from_initiator_data(initiator_data) != tag.uid:
            return b"\x00"
        if not self._reset(tag):
            return b"\x00"
        self._selected = presentation
        self._enable_type_a_framing()
        log.debug("%s: selected tag %s", self._name, tag.uid.hex())
        return (bytes((1, 1)) + tag.sens_res[::-1]
                + bytes((tag.sel_res, len(tag.uid))) + tag.uid)

    def _enable_type_a_framing(self) -> None:
        """Registers as after a type A activation: CRC on both ways, 100 % ASK."""
        self._registers[Register.CIU_TX_MODE] = CRC_ENABLE
        self._registers[Register.CIU_RX_MODE] = CRC_ENABLE
        self._registers[Register.CIU_TX_AUTO] |= FORCE_100_ASK

    def _in_communicate_thru(self, params: bytes) -> bytes:
        tag = self._selected_tag()
        frame = self._frame_as_sent(params)
        if tag is None or frame is None:
            return self._rf_timeout()
        response = self._exchange(tag, frame)
        if response is None:
            return self._rf_timeout()
        if len(response) == 1 and response[0] <= SHORT_FRAME_MAX:
            return self._short_frame(response[0])
        if self._registers.get(Register.CIU_RX_MODE, 0) & CRC_ENABLE:
            return bytes((STATUS_OK,)) + response  # the CIU checked and stripped CRC_A
        return bytes((STATUS_OK,)) + response + crc_a(response)  # passed through

    def _frame_as_sent(self, params: bytes) -> bytes | None:
        """The frame the tag sees, without CRC; None if the host's own CRC is wrong."""
        if self._registers.get(Register.CIU_TX_MODE, 0) & CRC_ENABLE:
            return params  # the CIU appends CRC_A
        if len(params) < 3 or crc_a(params[:-2]) != params[-2:]:
            log.debug("%s: host-built frame has a bad CRC_A, tag ignores it", self._name)
            return None
        return params[:-2]

    def _short_frame(self, nibble: int) -> bytes:
        """A 4-bit ACK/NAK: no CRC, so the CIU flags a CRC error unless RxCRCEn is off."""
        if nibble != TYPE2_ACK:
            log.debug("%s: tag answered NAK %#x and went idle", self._name, nibble)
            self._selected = None  # a Type 2 tag returns to IDLE after a NAK
        if self._registers.get(Register.CIU_RX_MODE, 0) & CRC_ENABLE:
            return bytes((STATUS_CRC_ERROR,))
        return bytes((STATUS_OK, nibble))

    def _release(self, params: bytes) -> bytes:
        if len(params) != 1:
            raise CommandError("InRelease/InDeselect wants a target number")
        if self._selected is None:
            return bytes((STATUS_WRONG_CONTEXT,))
        self._selected = None
        return bytes((STATUS_OK,))

    # --- calls into the tag model (foreign code: a model that raises acts as a mute tag) ---
    def _exchange(self, tag: SimTag, frame: bytes) -> bytes | None:
        try:
            response = tag.exchange(frame)
        except Exception:  # the chip must keep answering the host
            log.exception("%s: simulated tag raised on %s, treating it as mute", self._name,
                          short_hex(frame))
            return None
        return None if response is None else bytes(response)

    def _reset(self, tag: SimTag) -> bool:
        try:
            tag.reset()
        except Exception:  # the chip must keep answering the host
            log.exception("%s: simulated tag raised on reset, treating it as absent",
                          self._name)
            return False
        return True


class Pn532Emulator:
    """A PN532 on a pseudo-terminal, answering from its own thread.

    ``path`` is the slave device (``/dev/pts/N``) to open with :func:`open_frontend`;
    ``reader_path`` the ``serial:/dev/pts/N:pn532`` form the reader driver accepts.
    Use as a context manager, or call :meth:`close`. Thread-safe.
    """

    def __init__(self, tag: SimTag | None = None, *, name: str = "pn532-sim") -> None:
        self._master, self._slave = os.openpty()
        # Raw from the start: with the default cooked mode the pty would echo our
        # replies back to us until the host's pyserial configures it.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.name = f"{name}@{self.path}"
        self._stop = threading.Event()
        self._field = Field()
        self._chip = Pn532Chip(self._field, wait=self._stop.wait, name=self.name)
        self._parser = HostFrameParser(self.name)
        self._last_reply = b""
        self._closed = False
        if tag is not None:
            self.present(tag)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        log.info("%s: PN532 emulator ready", self.name)

    @property
    def reader_path(self) -> str:
        """The path to give the agent (``drivers.nfc.reader``): ``serial:/dev/pts/N:pn532``."""
        return f"serial:{self.path}:pn532"

    @property
    def tag(self) -> SimTag | None:
        """The tag in the field now (None after remove() or when its time ran out)."""
        current = self._field.current()
        return None if current is None else current[1]

    @property
    def powered_down(self) -> bool:
        """True after the host's PowerDown, until its next command."""
        return self._chip.powered_down

    @property
    def serial_baudrate(self) -> int:
        """The rate the host last asked for with SetSerialBaudrate."""
        return self._chip.serial_baudrate

    @property
    def tty_baudrate(self) -> int:
        """The speed the host set on the pty (what a real UART would run at), 0 if unknown."""
        speed = termios.tcgetattr(self._slave)[4]
        return _TERMIOS_SPEEDS.get(speed, 0)

    def command_counts(self) -> dict[str, int]:
        """How often each PN532 command was received, by :class:`Command` name."""
        return self._chip.command_counts()

    def present(self, tag: SimTag, seconds: float | None = None) -> None:
        """Put *tag* in the field, replacing any other; it leaves after *seconds* if given."""
        self._field.present(tag, seconds)
        log.info("%s: tag %s presented%s", self.name, tag.uid.hex(),
                 "" if seconds is None else f" for {seconds} s")

    def remove(self) -> None:
        """Take the tag out of the field."""
        self._field.remove()
        log.info("%s: tag removed", self.name)

    def close(self) -> None:
        """Stop the thread and close the pty (a host still attached then reads EOF/EIO)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(THREAD_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("%s: emulator thread did not stop in %s s", self.name,
                        THREAD_JOIN_TIMEOUT_S)
        os.close(self._master)
        os.close(self._slave)
        log.info("%s: closed", self.name)

    def __enter__(self) -> Pn532Emulator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- emulator thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._read()
                now = time.monotonic()
                if not data:
                    self._parser.expire(now)
                    continue
                for frame in self._parser.feed(data, now):
                    self._on_frame(frame)
        except OSError:
            log.exception("%s: pty failed, emulator stopped", self.name)

    def _read(self) -> bytes:
        ready, _, _ = select.select([self._master], [], [], POLL_INTERVAL_S)
        if not ready:
            return b""
        try:
            return os.read(self._master, READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as error:
            if error.errno != errno.EIO:
                raise
            # EIO: no process has the slave open. We keep our own slave fd open, so
            # this is transient; wait instead of spinning.
            self._stop.wait(POLL_INTERVAL_S)
            return b""

    def _on_frame(self, frame: HostFrame) -> None:
        if frame.kind is FrameKind.ACK:
            log.debug("%s: host ACK (ends the current command)", self.name)
            return
        if frame.kind is FrameKind.NACK:
            log.debug("%s: host NACK, repeating last reply", self.name)
            self._write(self._last_reply)
            return
        log.debug("%s: <<< %s", self.name, short_hex(frame.payload))
        self._write(ACK_FRAME)  # before executing: a mute tag must not delay the ACK
        reply = self._answer(frame.payload)
        self._last_reply = reply
        log.debug("%s: >>> %s", self.name, short_hex(reply))
        self._write(reply)

    def _answer(self, payload: bytes) -> bytes:
        if len(payload) < 2 or payload[0] != HOST_TFI:
            log.warning("%s: not a host command frame: %s", self.name, short_hex(payload))
            return SYNTAX_ERROR_FRAME
        code, params = payload[1], payload[2:]
        try:
            data = self._chip.execute(code, params)
        except CommandError as error:
            log.warning("%s: answering syntax error to %s: %s", self.name,
                        short_hex(payload), error)
            return SYNTAX_ERROR_FRAME
        return encode_frame(bytes((CHIP_TFI, code + 1)) + data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        while view:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                if time.monotonic() > deadline or self._stop.is_set():
                    log.warning("%s: host is not reading, dropped %d bytes", self.name,
                                len(view))
                    return
                select.select([], [self._master], [], POLL_INTERVAL_S)


_TERMIOS_SPEEDS = {
    getattr(termios, f"B{rate}"): rate
    for rate in (*SERIAL_BAUDRATES, 1200, 2400, 4800)
    if hasattr(termios, f"B{rate}")
}


READER_PATH_PREFIXES = ("serial:", "pty:")  # drivers.nfc.reader uses serial:/dev/X:pn532


def serial_device_path(path: str) -> str:
    """The device of a reader path: ``serial:/dev/pts/3:pn532`` (the reader driver's
    form), ``pty:/dev/pts/3:pn532``, ``serial:/dev/pts/3`` or ``/dev/pts/3`` all give
    ``/dev/pts/3``. Only the pn532 driver runs on such a path.
    """
    prefix = next((p for p in READER_PATH_PREFIXES if path.startswith(p)), None)
    if prefix is None:
        return path
    device, _, driver = path.removeprefix(prefix).partition(":")
    if driver not in ("", "pn532"):
        raise ValueError(f"{path}: only the pn532 driver can run on a serial path, not {driver!r}")
    return device


def open_frontend(target: Pn532Emulator | str) -> nfc.ContactlessFrontend:
    """Open nfcpy's unmodified PN532 driver on a serial device and return the frontend.

    *target* is an emulator, a device path (``/dev/pts/3``, also works for a real
    ``/dev/ttyUSB0``) or a reader path ``serial:/dev/pts/3:pn532``. This is the stack
    ``ContactlessFrontend('tty:...:pn532')`` builds, minus nfcpy's path regex that
    refuses ``/dev/pts/N``: ``TTY(device)``, ``pn532.init(transport)``, set as the
    frontend's ``device``. It also sets the names ``str(clf)`` prints (nfcpy sets
    them only when it opens by path, and never names a PN532 on a tty).

    The caller owns the frontend: ``clf.close()`` sends the driver's close sequence
    (SetSerialBaudrate 115200, PowerDown). Raises :class:`ReaderOpenError` when the
    device is missing or does not answer like a PN532.
    """
    device_path = target.path if isinstance(target, Pn532Emulator) else serial_device_path(target)
    try:
        transport = nfc.clf.transport.TTY(device_path)
    except OSError as error:  # serial.SerialException is an OSError
        raise ReaderOpenError(device_path, str(error),
                              "Is the emulator (nyckelfri sim pn532) still running?") from error
    try:
        device = nfc.clf.pn532.init(transport)
    except OSError as error:
        transport.close()
        raise ReaderOpenError(device_path, f"no PN532 answered ({error})",
                              "Check that nothing else uses the port and the reader "
                              "is a PN532 in HSU (UART) mode.") from error
    device._path = device_path
    device._vendor_name = "NXP"
    device._device_name = "PN532"
    clf = nfc.ContactlessFrontend()
    clf.device = device
    return clf


def serve(tag: SimTag | None, stop: threading.Event, *, seconds: float | None = None,
          on_ready: Callable[[Pn532Emulator], None] | None = None,
          name: str = "pn532-sim") -> None:
    """Run an emulator with *tag* in its field until *stop* is set (for the CLI).

    *seconds* limits how long the tag stays in the field (a tap); None keeps it there.
    *on_ready* is called once with the running emulator, so the caller can print
    ``emulator.path`` / ``emulator.reader_path`` and present or remove tags later.
    Prints nothing; blocks until *stop* is set, then closes the pty.
    """
    with Pn532Emulator(name=name) as emulator:
        if tag is not None:
            emulator.present(tag, seconds)
        if on_ready is not None:
            on_ready(emulator)
        stop.wait()
