"""The PN532 emulator under nfcpy's real, unmodified PN532 driver (nfc.clf.pn532).

Every test opens the driver on the emulator's pty with ``open_frontend`` and
drives it through ``ContactlessFrontend``: init, sense, Type 2 activation, NDEF
read/write, faults, close. Nothing here patches nfcpy.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ndef
import nfc
import nfc.clf
import nfc.clf.device
import nfc.clf.pn53x
import nfc.tag
import pytest
import serial

from drivers.nfc.base import ReaderOpenError
from drivers.sim.pn532 import (
    ACK_FRAME,
    NACK_FRAME,
    SYNTAX_ERROR_FRAME,
    HostFrameParser,
    Pn532Emulator,
    crc_a,
    encode_frame,
    open_frontend,
    serial_device_path,
    serve,
    uid_from_initiator_data,
)
from drivers.sim.tags import GARBAGE_NDEF, Ntag21x, TagFaults, Type4Tag, ndef_bytes, sign_uid

pytestmark = pytest.mark.timeout(30)

UID = bytes.fromhex("04a1b2c3d4e5f6")
URI = "https://nyckelfri.example/t/K-0042"
NEW_URI = "https://nyckelfri.example/t/K-0043"
# One sense round per connect loop: nfcpy only polls `terminate` between rounds, and
# its default (5 iterations x 0.5 s) would make every no-tag test take 2.5 s.
FAST_RDWR: dict[str, Any] = {"iterations": 1, "interval": 0.1, "beep-on-connect": False}
CONNECT_LIMIT_S = 5.0  # generous upper bound for one connect() in these tests


def ntag215(**kwargs: Any) -> Ntag21x:
    return Ntag21x(UID, "NTAG215", ndef=ndef_bytes(URI), **kwargs)


@pytest.fixture
def emulator() -> Iterator[Pn532Emulator]:
    with Pn532Emulator() as emu:
        yield emu


@pytest.fixture
def clf(emulator: Pn532Emulator) -> Iterator[nfc.ContactlessFrontend]:
    frontend = open_frontend(emulator)
    yield frontend
    frontend.close()


def connect(clf: nfc.ContactlessFrontend, on_connect: Callable[[Any], Any],
            limit_s: float = CONNECT_LIMIT_S, **rdwr: Any) -> Any:
    """clf.connect with the fast options and a deadline, as the reader worker runs it."""
    deadline = time.monotonic() + limit_s
    options = {**FAST_RDWR, "on-connect": on_connect, **rdwr}
    return clf.connect(rdwr=options, terminate=lambda: time.monotonic() > deadline)


# --- init and close -------------------------------------------------------------------------

def test_init_with_the_real_driver(emulator: Pn532Emulator,
                                   clf: nfc.ContactlessFrontend) -> None:
    assert isinstance(clf.device, nfc.clf.pn532.Device)
    assert "PN532" in str(clf)
    assert str(clf.device) == f"NXP PN532 PN532v1.6 at {emulator.path}"
    # The driver negotiated the high-speed UART and reopened the pty at that speed.
    assert emulator.serial_baudrate == 921600
    assert emulator.tty_baudrate == 921600
    counts = emulator.command_counts()
    assert counts["DIAGNOSE"] == 1  # the 263-byte extended-frame line test was echoed
    assert counts["GET_FIRMWARE_VERSION"] == 2


def test_close_powers_down_and_a_new_open_works(emulator: Pn532Emulator) -> None:
    first = open_frontend(emulator)
    first.close()
    assert emulator.powered_down
    assert emulator.serial_baudrate == 115200  # set back for the next opener
    assert emulator.tty_baudrate == 115200
    assert emulator.command_counts()["POWER_DOWN"] == 1

    again = open_frontend(emulator.reader_path)  # same emulator, serial:...:pn532 form
    try:
        assert not emulator.powered_down
        assert "PN532" in str(again)
    finally:
        again.close()

    with Pn532Emulator(ntag215()) as second:
        other = open_frontend(second)
        try:
            tag = connect(other, lambda tag: False)
            assert tag.product == "NXP NTAG215"
        finally:
            other.close()
        assert second.powered_down


def test_open_without_an_emulator_fails_clearly(tmp_path: Any) -> None:
    with pytest.raises(ReaderOpenError, match="No NFC reader at"):
        open_frontend(str(tmp_path / "no-such-tty"))


def test_open_on_a_silent_pty_fails_clearly() -> None:
    master, slave = os.openpty()
    try:
        started = time.monotonic()
        with pytest.raises(ReaderOpenError, match="no PN532 answered"):
            open_frontend(os.ttyname(slave))
        assert time.monotonic() - started < 2.0
    finally:
        os.close(master)
        os.close(slave)


# --- sense and read ------------------------------------------------------------------------

def test_reads_an_ntag215_and_reports_release(emulator: Pn532Emulator,
                                              clf: nfc.ContactlessFrontend) -> None:
    emulator.present(ntag215())
    seen: dict[str, Any] = {}

    def on_connect(tag: Any) -> bool:
        seen["product"] = tag.product
        seen["uid"] = tag.identifier
        seen["records"] = tag.ndef.records
        seen["signature"] = tag.signature
        emulator.remove()  # the visitor walks away; presence checks now time out
        return True

    def on_release(tag: Any) -> bool:
        seen["released"] = time.monotonic()
        return True

    assert connect(clf, on_connect, **{"on-release": on_release}) is True
    assert seen["product"] == "NXP NTAG215"
    assert seen["uid"] == UID
    assert seen["records"] == [ndef.UriRecord(URI)]
    assert seen["signature"] == sign_uid(UID)
    assert "released" in seen
    # nfcpy switched the CIU's CRC check off for Type 2 and checks CRC_A itself.
    assert clf.device.chipset.read_register("CIU_RxMode") & 0x80 == 0
    counts = emulator.command_counts()
    assert counts["IN_COMMUNICATE_THRU"] > 0
    assert "IN_DATA_EXCHANGE" not in counts  # nfcpy never uses it for Type 2


def test_no_tag_connect_returns_after_terminate(clf: nfc.ContactlessFrontend) -> None:
    started = time.monotonic()
    result = connect(clf, lambda tag: pytest.fail("no tag was present"), limit_s=1.0)
    elapsed = time.monotonic() - started
    assert result is None
    assert 1.0 <= elapsed < 2.0
    # How nfcpy told "no tag" from "tag without anticollision": REQA still in the FIFO.
    assert clf.device.chipset.read_register("CIU_FIFOData") == 0x26


def test_tag_that_leaves_by_itself_is_released(emulator: Pn532Emulator,
                                               clf: nfc.ContactlessFrontend) -> None:
    emulator.present(ntag215(), seconds=0.5)
    released = threading.Event()

    def on_release(tag: Any) -> bool:
        released.set()
        return True

    assert connect(clf, lambda tag: True, **{"on-release": on_release}) is True
    assert released.is_set()
    assert emulator.tag is None


def test_type4_tag_through_the_pn532(emulator: Pn532Emulator,
                                     clf: nfc.ContactlessFrontend) -> None:
    emulator.present(Type4Tag(UID, ndef=ndef_bytes(URI)))
    tag = connect(clf, lambda tag: False)
    assert tag.type == "Type4Tag"
    assert tag.ndef.records == [ndef.UriRecord(URI)]


# --- write ---------------------------------------------------------------------------------

def test_write_ndef_and_read_it_back(emulator: Pn532Emulator,
                                     clf: nfc.ContactlessFrontend) -> None:
    model = ntag215()
    emulator.present(model)

    def write(tag: Any) -> bool:
        tag.ndef.records = [ndef.UriRecord(NEW_URI)]
        return False

    connect(clf, write)
    assert model.ndef_octets() == ndef_bytes(NEW_URI)

    emulator.present(model)  # a new tap of the same tag
    tag = connect(clf, lambda tag: False)
    assert tag.ndef.records == [ndef.UriRecord(NEW_URI)]


# --- faults: nfcpy must not hang, and we pin what it reports ----------------------------

def test_garbage_ndef_is_read_but_does_not_parse(emulator: Pn532Emulator,
                                                 clf: nfc.ContactlessFrontend) -> None:
    emulator.present(ntag215(faults=TagFaults(garbage_ndef=True)))
    tag = connect(clf, lambda tag: False)
    assert tag.ndef is not None
    assert tag.ndef.octets == GARBAGE_NDEF
    with pytest.raises(ndef.DecodeError):
        tag.ndef.records  # noqa: B018 - the property decodes


def test_truncated_reads_give_no_ndef(emulator: Pn532Emulator,
                                      clf: nfc.ContactlessFrontend) -> None:
    emulator.present(ntag215(faults=TagFaults(truncate_reads=True)))
    tag = connect(clf, lambda tag: False)
    assert tag.product == "NXP NTAG215"  # GET_VERSION is not a READ
    started = time.monotonic()
    assert tag.ndef is None  # INVALID_RESPONSE_ERROR inside nfcpy, swallowed
    assert tag.is_present is False  # the presence check is a READ too
    assert time.monotonic() - started < 1.0
    with pytest.raises(nfc.tag.tt2.Type2TagCommandError, match="invalid response data"):
        tag.read(0)


def test_tag_mute_mid_read_gives_no_ndef_quickly(emulator: Pn532Emulator,
                                                 clf: nfc.ContactlessFrontend) -> None:
    # Frames after the last re-select: GET_VERSION, READ 0 (CC), READ 4 (TLV start),
    # then mute in the middle of the NDEF message.
    emulator.present(ntag215(faults=TagFaults(mute_after=3)))
    tag = connect(clf, lambda tag: False)
    assert tag.product == "NXP NTAG215"
    started = time.monotonic()
    assert tag.ndef is None  # TIMEOUT_ERROR after 1 + 2 retries, swallowed
    assert tag.is_present is False
    assert tag.signature == bytes(32)  # nfcpy's "could not read" value
    assert time.monotonic() - started < 2.0


def test_tag_removed_before_read(emulator: Pn532Emulator,
                                 clf: nfc.ContactlessFrontend) -> None:
    emulator.present(ntag215())

    def on_connect(tag: Any) -> Any:
        emulator.remove()
        return False

    tag = connect(clf, on_connect)
    started = time.monotonic()
    assert tag.ndef is None
    assert tag.signature == bytes(32)
    with pytest.raises(nfc.tag.tt2.Type2TagCommandError, match="timeout"):
        tag.read(4)
    assert time.monotonic() - started < 2.0


def test_tag_removed_mid_write(emulator: Pn532Emulator,
                               clf: nfc.ContactlessFrontend) -> None:
    # After the re-select: GET_VERSION, READ 0, READ 4, READ 8, READ 12 (NDEF read),
    # then two page WRITEs of the new message before the tag goes mute.
    model = ntag215(faults=TagFaults(mute_after=7))
    emulator.present(model)
    errors: list[Exception] = []

    def write(tag: Any) -> bool:
        try:
            tag.ndef.records = [ndef.UriRecord(NEW_URI + "-longer-than-before")]
        except nfc.tag.TagCommandError as error:
            errors.append(error)
        return False

    connect(clf, write)
    assert len(errors) == 1
    assert isinstance(errors[0], nfc.tag.tt2.Type2TagCommandError)
    assert int(errors[0]) == nfc.tag.TIMEOUT_ERROR


# --- protocol details -----------------------------------------------------------------------

def test_unknown_command_gets_the_syntax_error_frame(clf: nfc.ContactlessFrontend) -> None:
    in_auto_poll = 0x60  # a real PN532 command the emulator does not implement
    with pytest.raises(nfc.clf.pn53x.Chipset.Error) as error:
        clf.device.chipset.command(in_auto_poll, b"\x01\x01\x00", timeout=0.5)
    assert error.value.errno == 0x7F


def test_raw_frames_on_the_wire(emulator: Pn532Emulator) -> None:
    with serial.Serial(emulator.path, 115200, timeout=1.0) as port:
        port.write(bytes(10) + encode_frame(b"\xd4\x02"))  # wake-up + GetFirmwareVersion
        assert port.read(6) == ACK_FRAME
        assert port.read(13) == bytes.fromhex("0000ff06fad50332010607e800")
        port.write(encode_frame(b"\xd4\x60"))
        assert port.read(6 + len(SYNTAX_ERROR_FRAME)) == ACK_FRAME + SYNTAX_ERROR_FRAME
        port.write(NACK_FRAME)  # host NACK: repeat the last reply
        assert port.read(len(SYNTAX_ERROR_FRAME)) == SYNTAX_ERROR_FRAME
        bad = bytearray(encode_frame(b"\xd4\x02"))
        bad[-2] ^= 0xFF  # data checksum error: a PN532 stays silent
        port.write(bytes(bad))
        assert port.read(6) == b""


def test_frame_parser_handles_split_and_extended_frames() -> None:
    parser = HostFrameParser("test")
    payload = b"\xd4\x00" + bytes(range(256))
    wire = b"\x00" * 10 + encode_frame(payload) + ACK_FRAME
    frames = [frame for i in range(0, len(wire), 7)
              for frame in parser.feed(wire[i:i + 7], now=0.0)]
    assert [frame.kind.value for frame in frames] == ["info", "ack"]
    assert frames[0].payload == payload


def test_crc_a_matches_nfcpy() -> None:
    for data in (b"", b"\x30\x00", bytes(range(16)), ndef_bytes(URI)):
        framed = bytearray(data + crc_a(data))
        assert nfc.clf.device.Device.check_crc_a(framed)
    assert crc_a(b"\x00\x00") == bytes.fromhex("a01e")  # ISO/IEC 14443-3 annex B


def test_uid_from_initiator_data() -> None:
    assert uid_from_initiator_data(b"\x88" + UID) == UID
    ten = bytes(range(1, 11))
    assert uid_from_initiator_data(b"\x88" + ten[:3] + b"\x88" + ten[3:]) == ten
    assert uid_from_initiator_data(b"\x01\x02\x03\x04") == b"\x01\x02\x03\x04"


def test_serial_device_path() -> None:
    assert serial_device_path("serial:/dev/pts/3:pn532") == "/dev/pts/3"
    assert serial_device_path("pty:/dev/pts/3:pn532") == "/dev/pts/3"
    assert serial_device_path("serial:/dev/pts/3") == "/dev/pts/3"
    assert serial_device_path("/dev/pts/3") == "/dev/pts/3"
    with pytest.raises(ValueError, match="only the pn532 driver"):
        serial_device_path("serial:/dev/pts/3:arygon")


def test_serve_exposes_the_pty_and_stops_on_the_event() -> None:
    stop = threading.Event()
    ready: list[Pn532Emulator] = []
    worker = threading.Thread(
        target=serve, args=(ntag215(), stop), kwargs={"on_ready": ready.append}, daemon=True)
    worker.start()
    deadline = time.monotonic() + 2.0
    while not ready and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready and ready[0].reader_path.startswith("serial:/dev/pts/")
    frontend = open_frontend(ready[0].reader_path)
    try:
        assert connect(frontend, lambda tag: False).product == "NXP NTAG215"
    finally:
        frontend.close()
    stop.set()
    worker.join(2.0)
    assert not worker.is_alive()


def test_close_is_prompt_with_a_host_attached() -> None:
    emu = Pn532Emulator()
    port = serial.Serial(emu.path, 115200, timeout=0.1)
    try:
        started = time.monotonic()
        emu.close()
        emu.close()  # idempotent
        assert time.monotonic() - started < 1.0
        # The host side now sees the pty hang up instead of blocking.
        readable, _, _ = select.select([port.fileno()], [], [], 0.5)
        assert readable
    finally:
        port.close()


def test_the_agents_reader_driver_opens_the_emulator() -> None:
    reader = pytest.importorskip("drivers.nfc.reader")
    with Pn532Emulator(ntag215()) as emu:
        frontend = reader.open_frontend(emu.reader_path)
        try:
            assert connect(frontend, lambda tag: False).product == "NXP NTAG215"
        finally:
            frontend.close()
        assert emu.powered_down
