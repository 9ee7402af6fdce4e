"""Simulated tags against the real nfcpy stack over its unmodified ``udp`` driver.

Every reader here is ``nfc.ContactlessFrontend('udp:127.0.0.1:PORT')`` running
``clf.connect(rdwr=...)`` in a worker thread, stopped by a ``terminate`` event and
joined with a timeout, so no test can hang.

What nfcpy does with each fault (what the reader layer must detect):

* garbage NDEF: ``tag.ndef`` is an NDEF object, ``tag.ndef.octets`` is the
  garbage, and ``tag.ndef.records`` raises ``ndef.DecodeError``. Type 2 and 4 alike.
* truncated READ: ``tag.ndef`` is None (nfcpy swallows the error), a direct
  ``tag.read(n)`` raises ``Type2TagCommandError`` with errno
  ``INVALID_RESPONSE_ERROR`` (3), and ``tag.is_present`` is False (its presence
  check is a 16-byte READ). GET_VERSION is unaffected, so the product is known.
* mute after N frames (tag pulled away mid-read): ``tag.ndef`` is None,
  ``tag.read(n)`` raises ``Type2TagCommandError`` with errno ``TIMEOUT_ERROR``
  (0), ``tag.signature`` is 32 zero bytes, ``tag.is_present`` is False; on a
  Type 4 tag nfcpy logs "ISO-DEP unrecoverable timeout error" and ``tag.ndef``
  is None.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ecdsa
import ndef
import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt2
import nfc.tag.tt2_nxp
import nfc.tag.tt4
import pytest
from ecdsa.util import sigdecode_string

from drivers.sim.tags import (
    GARBAGE_NDEF,
    NXP_NTAG21X_PUBLIC_KEY_HEX,
    SIM_PUBLIC_KEY_HEX,
    Ntag21x,
    NtagVariantName,
    SimError,
    SimTag,
    TagFaults,
    Type4Tag,
    ndef_bytes,
    sign_uid,
    sim_signing_key,
)
from drivers.sim.udp_tag import UdpTagServer, build_tag, cascade_levels, serve

pytestmark = pytest.mark.timeout(30)

UID = bytes.fromhex("04A1B2C3D4E5F6")
URI = "https://nyckelfri.example/t/K-0042"
TEXT = "Ytterdörr, Storgatan 1"
READ_TIMEOUT = 5.0  # s; a whole tap takes ~15 ms, a fault with timeouts ~1 s
STOP_TIMEOUT = 3.0  # s; an idle poll blocks 1 s in nfcpy's udp sense_tta


# --- Harness ---------------------------------------------------------------------------


@dataclass
class Reading:
    """What on-connect saw, plus what on-release was told."""

    values: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    connected_at: float | None = None
    released_at: float | None = None


def connect_once(
    server: UdpTagServer,
    read: Callable[[nfc.tag.Tag, dict[str, Any]], None],
    *,
    wait_for_release: bool = False,
    timeout: float = READ_TIMEOUT,
) -> Reading:
    """Run one nfcpy connect() against *server* in a worker thread; never hangs."""
    reading = Reading()
    stop = threading.Event()
    clf = nfc.ContactlessFrontend(server.path)

    def on_connect(tag: nfc.tag.Tag) -> bool:
        reading.connected_at = time.monotonic()
        try:
            read(tag, reading.values)
        except BaseException as error:  # reported to the test thread
            reading.error = error
        return wait_for_release

    def on_release(tag: nfc.tag.Tag) -> bool:
        reading.released_at = time.monotonic()
        return True

    rdwr = {
        "targets": ["106A"],  # Type B/F polls would each cost nfcpy's 1 s timeout
        "on-connect": on_connect,
        "on-release": on_release,
        "iterations": 1,
        "interval": 0.05,
        "beep-on-connect": False,
    }
    worker = threading.Thread(
        target=lambda: clf.connect(rdwr=rdwr, terminate=stop.is_set), daemon=True
    )
    worker.start()
    worker.join(timeout)
    stop.set()
    worker.join(STOP_TIMEOUT)
    assert not worker.is_alive(), "nfcpy connect() did not stop"
    clf.close()
    if reading.error is not None:
        raise reading.error
    return reading


@pytest.fixture
def server() -> Iterator[UdpTagServer]:
    with UdpTagServer() as srv:
        yield srv


def read_all(tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
    out["str"] = str(tag)
    out["type"] = tag.type
    out["product"] = tag.product
    out["identifier"] = tag.identifier
    out["class"] = type(tag)
    out["ndef"] = tag.ndef
    if tag.ndef is not None:
        out["octets"] = tag.ndef.octets
        out["records"] = tag.ndef.records
    if isinstance(tag, nfc.tag.tt2_nxp.NTAG21x):
        out["signature"] = tag.signature


def verifies(signature: bytes, uid: bytes, public_key_hex: str) -> bool:
    key = ecdsa.VerifyingKey.from_string(bytes.fromhex(public_key_hex), curve=ecdsa.SECP128r1)
    try:
        return bool(
            key.verify_digest(signature, uid, sigdecode=sigdecode_string, allow_truncate=True)
        )
    except ecdsa.BadSignatureError:
        return False


def visit_records() -> list[Any]:
    return [ndef.UriRecord(URI), ndef.TextRecord(TEXT, "sv")]


def ntag(variant: NtagVariantName = "NTAG215", **kwargs: Any) -> Ntag21x:
    return Ntag21x(UID, variant, ndef=ndef_bytes(URI, TEXT), **kwargs)


def message_of_length(length: int) -> bytes:
    """A one-Text-record message of exactly *length* bytes."""
    overhead = 7 if length - 7 <= 255 - 3 else 10  # short record, or 4-byte payload length
    message = ndef_bytes(text="x" * (length - overhead), language="sv")
    assert len(message) == length
    return message


# --- NTAG213/215/216 through nfcpy --------------------------------------------------------


@pytest.mark.parametrize("variant", ["NTAG213", "NTAG215", "NTAG216"])
def test_nfcpy_identifies_ntag_and_reads_ndef_and_signature(
    server: UdpTagServer, variant: NtagVariantName
) -> None:
    tag = ntag(variant)
    server.present(tag)

    got = connect_once(server, read_all).values

    assert got["product"] == f"NXP {variant}"
    assert got["str"] == f"Type2Tag 'NXP {variant}' ID=04A1B2C3D4E5F6"
    assert got["class"] is getattr(nfc.tag.tt2_nxp, variant)
    assert got["identifier"] == UID
    assert got["records"] == visit_records()
    assert got["signature"] == tag.signature == sign_uid(UID)
    assert verifies(got["signature"], UID, SIM_PUBLIC_KEY_HEX)
    assert not verifies(got["signature"], UID, NXP_NTAG21X_PUBLIC_KEY_HEX)


def test_sim_public_key_belongs_to_the_sim_signing_key() -> None:
    public = sim_signing_key().get_verifying_key().to_string("uncompressed")
    assert public.hex().upper() == SIM_PUBLIC_KEY_HEX.upper()


def test_signature_is_per_uid_and_a_copied_signature_fails() -> None:
    other_uid = bytes.fromhex("04000000000001")
    assert sign_uid(UID) != sign_uid(other_uid)
    assert not verifies(sign_uid(UID), other_uid, SIM_PUBLIC_KEY_HEX)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("NTAG213", b"".join(ndef.message_encoder([ndef.UriRecord(URI + "/skrivet")]))),
        ("NTAG216", message_of_length(400)),  # > 254 bytes: 3-byte TLV length
    ],
)
def test_nfcpy_writes_ndef_and_reads_it_back(
    server: UdpTagServer, variant: NtagVariantName, message: bytes
) -> None:
    tag = ntag(variant)
    server.present(tag)

    def write(nfc_tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
        nfc_tag.ndef.octets = message

    connect_once(server, write)
    got = connect_once(server, read_all).values

    assert got["octets"] == message
    assert tag.ndef_octets() == message


def test_writes_to_uid_pages_are_refused_and_otp_bits_only_set(server: UdpTagServer) -> None:
    tag = ntag("NTAG213")
    server.present(tag)

    def write(nfc_tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
        with pytest.raises(nfc.tag.tt2.Type2TagCommandError) as refused:
            nfc_tag.write(0, b"\xff\xff\xff\xff")
        out["errno"] = refused.value.errno
        out["cc_written"] = nfc_tag.write(3, b"\x00\x00\x00\x0f")
        out["page3"] = bytes(nfc_tag.read(3)[0:4])

    got = connect_once(server, write).values

    assert got["errno"] == nfc.tag.tt2.INVALID_PAGE_ERROR
    assert got["page3"] == bytes.fromhex("e110120f")  # OR-ed into the CC, not replaced


# --- Type 4 through nfcpy -----------------------------------------------------------------


def test_nfcpy_identifies_type4_and_reads_ndef(server: UdpTagServer) -> None:
    server.present(Type4Tag(UID, ndef_bytes(URI, TEXT)))

    got = connect_once(server, read_all).values

    assert issubclass(got["class"], nfc.tag.tt4.Type4Tag)
    assert got["type"] == "Type4Tag"
    assert got["identifier"] == UID
    assert got["records"] == visit_records()


def test_type4_long_message_is_chained_both_ways(server: UdpTagServer) -> None:
    # 254 bytes + SW do not fit one 256-byte frame: the tag chains its answer;
    # nfcpy's 259-byte UPDATE BINARY does not either: nfcpy chains its command.
    tag = Type4Tag(UID, message_of_length(254))
    server.present(tag)
    new_message = message_of_length(250)

    def write(nfc_tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
        out["before"] = nfc_tag.ndef.octets
        nfc_tag.ndef.octets = new_message

    before = connect_once(server, write).values["before"]
    after = connect_once(server, read_all).values["octets"]

    assert before == message_of_length(254)
    assert after == new_message == tag.ndef_octets()


def test_type4_presence_check_and_deselect(server: UdpTagServer) -> None:
    tag = Type4Tag(UID, ndef_bytes(URI))
    server.present(tag)

    def check(nfc_tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
        out["present"] = nfc_tag.is_present  # R(NAK) answered with R(ACK)
        out["after_presence"] = nfc_tag.ndef.records  # block numbers still in step
        out["deselect"] = bytes(nfc_tag.clf.exchange(b"\xc2", timeout=0.1))
        with pytest.raises(nfc.clf.TimeoutError):
            nfc_tag.clf.exchange(b"\x02\x00\xb0\x00\x00\x02", timeout=0.05)

    got = connect_once(server, check).values

    assert got["present"] is True
    assert got["after_presence"] == [ndef.UriRecord(URI)]
    assert got["deselect"] == b"\xc2"


# --- Faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ntag("NTAG215", faults=TagFaults(garbage_ndef=True)),
        lambda: Type4Tag(UID, ndef_bytes(URI), faults=TagFaults(garbage_ndef=True)),
    ],
    ids=["type2", "type4"],
)
def test_garbage_ndef_is_read_then_fails_to_decode(
    server: UdpTagServer, make: Callable[[], SimTag]
) -> None:
    server.present(make())

    def read(nfc_tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
        out["octets"] = nfc_tag.ndef.octets
        with pytest.raises(ndef.DecodeError):
            nfc_tag.ndef.records  # noqa: B018 - the property access is the test

    got = connect_once(server, read).values

    assert got["octets"] == GARBAGE_NDEF


def test_truncated_reads_leave_no_ndef_and_an_invalid_response(server: UdpTagServer) -> None:
    server.present(ntag("NTAG215", faults=TagFaults(truncate_reads=True)))

    def read(nfc_tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
        read_all(nfc_tag, out)
        with pytest.raises(nfc.tag.tt2.Type2TagCommandError) as error:
            nfc_tag.read(4)
        out["errno"] = error.value.errno
        out["present"] = nfc_tag.is_present

    got = connect_once(server, read).values

    assert got["product"] == "NXP NTAG215"
    assert got["ndef"] is None
    assert got["errno"] == nfc.tag.tt2.INVALID_RESPONSE_ERROR
    assert got["present"] is False


def test_tag_muted_mid_read_times_out_and_is_gone(server: UdpTagServer) -> None:
    # After the re-select nfcpy sends GET_VERSION, then READ 0, 4, 8: the third
    # READ (frame 4) goes unanswered, in the middle of the NDEF message.
    server.present(ntag("NTAG215", faults=TagFaults(mute_after=3)))

    def read(nfc_tag: nfc.tag.Tag, out: dict[str, Any]) -> None:
        read_all(nfc_tag, out)
        with pytest.raises(nfc.tag.tt2.Type2TagCommandError) as error:
            nfc_tag.read(4)
        out["errno"] = error.value.errno
        out["present"] = nfc_tag.is_present

    started = time.monotonic()
    got = connect_once(server, read).values

    assert got["product"] == "NXP NTAG215"
    assert got["ndef"] is None
    assert got["signature"] == bytes(32)
    assert got["errno"] == nfc.tag.TIMEOUT_ERROR
    assert got["present"] is False
    assert time.monotonic() - started < READ_TIMEOUT


def test_type4_muted_mid_read_has_no_ndef(server: UdpTagServer) -> None:
    # RATS, SELECT app, SELECT CC, READ CCLEN, READ CC, SELECT NDEF, READ NLEN
    # are answered; the READ of the message itself is not.
    server.present(Type4Tag(UID, ndef_bytes(URI, TEXT), faults=TagFaults(mute_after=7)))

    got = connect_once(server, read_all).values

    assert got["type"] == "Type4Tag"
    assert got["ndef"] is None


# --- The field: presence, removal, activation count ------------------------------------------


def test_tag_presented_briefly_is_detected_then_released(server: UdpTagServer) -> None:
    presented_at = time.monotonic()
    # Brief, but long enough for a whole read on a loaded machine: at 0.5 s the tag
    # sometimes left mid-read and nfcpy decoded a torn NDEF message.
    server.present(ntag("NTAG213"), seconds=1.5)

    reading = connect_once(server, read_all, wait_for_release=True)

    assert reading.values["product"] == "NXP NTAG213"
    assert reading.connected_at is not None and reading.released_at is not None
    assert reading.connected_at - presented_at < 1.5
    assert 1.4 < reading.released_at - presented_at < 4.0
    assert server.activations >= 1
    assert not server.tag_present


def test_removed_tag_fires_release(server: UdpTagServer) -> None:
    server.present(ntag("NTAG213"))
    threading.Timer(0.3, server.remove).start()

    reading = connect_once(server, read_all, wait_for_release=True)

    assert reading.released_at is not None


def test_empty_field_is_silent_but_bound(server: UdpTagServer) -> None:
    with nfc.ContactlessFrontend(server.path) as clf:
        assert clf.sense(nfc.clf.RemoteTarget("106A")) is None
        server.present(ntag("NTAG213"))
        target = clf.sense(nfc.clf.RemoteTarget("106A"))
    assert target is not None
    assert bytes(target.sdd_res) == UID
    assert bytes(target.sens_res) == b"\x44\x00"
    assert bytes(target.sel_res) == b"\x00"
    assert server.wait_for_activations(1, timeout=1.0)


def test_activations_are_counted(server: UdpTagServer) -> None:
    server.present(ntag("NTAG215"))
    connect_once(server, read_all)
    first = server.activations
    connect_once(server, read_all)
    # nfcpy selects an NXP tag twice per tap: again after its Ultralight C probe.
    assert first == 2
    assert server.activations == 2 * first


def test_server_refuses_a_port_in_use_and_bad_durations(server: UdpTagServer) -> None:
    with pytest.raises(SimError, match="Pick another port"):
        UdpTagServer(port=server.port)
    with pytest.raises(SimError):
        server.present(ntag(), seconds=0)


def test_close_is_idempotent() -> None:
    srv = UdpTagServer()
    srv.close()
    srv.close()


# --- CLI entry points ----------------------------------------------------------------------


def test_serve_presents_a_built_tag_until_stopped() -> None:
    stop = threading.Event()
    ready: list[UdpTagServer] = []
    result: list[int] = []
    tag = build_tag(UID.hex(), "NTAG216", uri=URI, text=TEXT)
    worker = threading.Thread(
        target=lambda: result.append(serve(0, tag, stop=stop, on_ready=ready.append)),
        daemon=True,
    )
    worker.start()
    deadline = time.monotonic() + 2.0
    while not ready and time.monotonic() < deadline:
        time.sleep(0.01)

    got = connect_once(ready[0], read_all).values
    stop.set()
    worker.join(STOP_TIMEOUT)

    assert got["product"] == "NXP NTAG216"
    assert got["records"] == visit_records()
    assert result == [2]


def test_serve_returns_after_seconds() -> None:
    started = time.monotonic()
    assert serve(0, build_tag(UID.hex(), "NTAG213"), seconds=0.2) == 0
    assert time.monotonic() - started < 1.0


def test_build_tag_kinds_and_errors() -> None:
    assert isinstance(build_tag(UID.hex(), "ntag213"), Ntag21x)
    type4 = build_tag(UID.hex(), "NTAG215", uri=URI, tag_type=4)
    assert isinstance(type4, Type4Tag)
    assert type4.ndef_octets() == ndef_bytes(URI)
    raw = build_tag(UID.hex(), "NTAG215", raw_ndef_hex=ndef_bytes(text=TEXT).hex())
    assert isinstance(raw, Ntag21x) and raw.ndef_octets() == ndef_bytes(text=TEXT)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"uid_hex": "zz"}, "must be hex"),
        ({"uid_hex": "0411"}, "7-byte UID"),
        ({"uid_hex": "88A1B2C3D4E5F6"}, "cascade tag"),
        ({"uid_hex": UID.hex(), "product": "NTAG999"}, "unknown product"),
        ({"uid_hex": UID.hex(), "tag_type": 1}, "Type 2 and Type 4"),
        ({"uid_hex": UID.hex(), "uri": URI, "raw_ndef_hex": "00"}, "not both"),
        ({"uid_hex": UID.hex(), "product": "NTAG213", "text": "x" * 200}, "does not fit"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SimError, match=message):
            build_tag(**kwargs)


# --- Models on their own (datasheet details nfcpy does not exercise) -------------------------


def test_ntag_memory_layout() -> None:
    tag = Ntag21x(UID, "NTAG215", ndef=ndef_bytes(URI))
    memory = tag.memory
    assert memory[0:4] == bytes([0x04, 0xA1, 0xB2, 0x88 ^ 0x04 ^ 0xA1 ^ 0xB2])
    assert memory[4:8] == UID[3:7]
    assert memory[8:12] == bytes([0xC3 ^ 0xD4 ^ 0xE5 ^ 0xF6, 0x48, 0x00, 0x00])
    assert memory[12:16] == bytes.fromhex("e1103e00")
    assert memory[16:18] == bytes([0x03, len(ndef_bytes(URI))])
    assert len(memory) == 135 * 4
    assert memory[130 * 4 : 132 * 4] == bytes.fromhex("000000bd040000ff")


def test_ntag_read_rolls_over_and_hides_the_password() -> None:
    tag = Ntag21x(UID, "NTAG213")
    last = 44
    answer = tag.exchange(bytes([0x30, last]))
    assert answer is not None
    assert answer[0:4] == bytes(4)  # PACK page reads as zeros
    assert answer[4:16] == tag.memory[0:12]  # rolled over to page 0
    assert tag.exchange(bytes([0x30, 43])) == bytes(4) * 2 + tag.memory[0:8]
    assert tag.exchange(bytes([0x30, 45])) == b"\x00"  # NAK: no such page
    assert tag.exchange(bytes([0x3A, 0, 1])) == tag.memory[0:8]
    assert tag.exchange(bytes([0x3A, 2, 1])) == b"\x00"


def test_ntag_halt_and_unknown_commands_are_mute_until_reset() -> None:
    tag = Ntag21x(UID, "NTAG213")
    assert tag.exchange(b"\x1a\x00") is None  # Ultralight C AUTHENTICATE: not an NTAG command
    assert tag.exchange(b"\x50\x00") is None
    assert tag.exchange(b"\x60") is None  # halted
    tag.reset()
    assert tag.exchange(b"\x60") == bytes.fromhex("0004040201000f03")


def test_mute_after_counts_from_reset() -> None:
    tag = Ntag21x(UID, "NTAG213", faults=TagFaults(mute_after=1))
    assert tag.exchange(b"\x60") is not None
    assert tag.exchange(b"\x60") is None
    tag.reset()
    assert tag.exchange(b"\x60") is not None


def test_cascade_levels_of_a_seven_byte_uid() -> None:
    assert cascade_levels(UID) == [b"\x88" + UID[0:3], UID[3:7]]
