"""Canaries: the nfcpy 1.0.4 internals our code relies on.

nfcpy is unmaintained and pinned. If an upgrade changes one of these details,
this file fails first, naming the detail, instead of the simulator or a reader
misbehaving somewhere downstream. Each test names who relies on the detail.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator

import ndef
import nfc.clf
import nfc.clf.udp
import nfc.tag
import nfc.tag.tt2
import nfc.tag.tt2_nxp
import nfc.tag.tt4
import pytest

pytestmark = pytest.mark.timeout(30)

WAIT = 2.0  # s; a datagram on localhost arrives in well under a millisecond


@pytest.fixture
def fake_tag() -> Iterator[socket.socket]:
    """A bare UDP socket where a tag would listen: we script its answers by hand."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def receive(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    ready, _, _ = select.select([sock], [], [], WAIT)
    assert ready, "nfcpy sent nothing"
    data, addr = sock.recvfrom(1024)
    return data, addr


def test_udp_device_sends_ascii_frames_with_send_data(fake_tag: socket.socket) -> None:
    # drivers/sim/udp_tag.py parses and writes exactly this format.
    port = fake_tag.getsockname()[1]
    device = nfc.clf.udp.Device("127.0.0.1", port)
    try:
        assert callable(nfc.clf.udp.Device._send_data)
        device._send_data("106A", bytearray.fromhex("9320"), ("127.0.0.1", port))
        assert receive(fake_tag)[0] == b"106A 9320"
    finally:
        device.close()


def poll_once(device: nfc.clf.udp.Device, fake_tag: socket.socket) -> tuple[str, int]:
    """One nfcpy poll: answer its REQA with an ATQA, stay mute on SDD_REQ; return its address."""
    poll = threading.Thread(target=device.sense_tta, args=(nfc.clf.RemoteTarget("106A"),))
    poll.start()
    try:
        reqa, reader = receive(fake_tag)
        assert reqa == b"106A 26"
        fake_tag.sendto(b"106A 4400", reader)
        assert receive(fake_tag)[0] == b"106A 9320"  # SDD_REQ, cascade level 1
    finally:
        poll.join(WAIT)  # nfcpy gives up on SDD_RES after 0.5 s
    assert not poll.is_alive()
    return reader


def test_udp_polls_with_reqa_from_a_fresh_port_and_mutes_with_rfoff(
    fake_tag: socket.socket,
) -> None:
    # udp_tag.py answers each poll's source address and treats RFOFF as "field off".
    device = nfc.clf.udp.init("127.0.0.1", fake_tag.getsockname()[1])
    try:
        first = poll_once(device, fake_tag)
        device.mute()  # what ContactlessFrontend.sense() does before every poll
        rfoff, rfoff_from = receive(fake_tag)
        second = poll_once(device, fake_tag)
    finally:
        device.close()
    assert rfoff == b"RFOFF"
    assert rfoff_from == first
    assert second != first


def test_udp_frame_size_limits() -> None:
    # nfcpy then asks for 256-byte ISO-DEP frames (RATS E0 80), which the Type 4
    # model honours, and a frame's hex still fits the simulator's 1024-byte datagram.
    assert nfc.clf.udp.Device.get_max_recv_data_size(None, None) == 290
    assert nfc.clf.udp.Device.get_max_send_data_size(None, None) == 290


@pytest.mark.parametrize(
    ("version", "name"),
    [
        ("0004040201000f03", "NTAG213"),
        ("0004040201001103", "NTAG215"),
        ("0004040201001303", "NTAG216"),
    ],
)
def test_tt2_nxp_maps_get_version_to_ntag_products(version: str, name: str) -> None:
    # drivers/sim/tags.py answers GET_VERSION with these bytes; readers report the product.
    cls = nfc.tag.tt2_nxp.VERSION_MAP[bytes.fromhex(version)]
    assert cls is getattr(nfc.tag.tt2_nxp, name)
    assert issubclass(cls, nfc.tag.tt2_nxp.NTAG21x)
    target = nfc.clf.RemoteTarget("106A", sdd_res=bytearray.fromhex("04A1B2C3D4E5F6"))
    assert cls(None, target).product == f"NXP {name}"


def test_ntag21x_signature_is_read_with_read_sig() -> None:
    # Readers take tag.signature (32 zero bytes on failure) for the originality check.
    assert isinstance(nfc.tag.tt2_nxp.NTAG21x.signature, property)


def test_tt2_write_ack_and_error_codes() -> None:
    # The Type 2 model answers WRITE with 0x0A; the reader layer tells faults apart by errno.
    assert nfc.tag.TIMEOUT_ERROR == 0
    assert nfc.tag.tt2.INVALID_PAGE_ERROR == 2
    assert nfc.tag.tt2.INVALID_RESPONSE_ERROR == 3


def test_tt4_ndef_application_id() -> None:
    # The Type 4 model only answers SELECT for the mapping version 2.0 AID.
    assert bytes(nfc.tag.tt4.ndef_aid_v2) == bytes.fromhex("D2760000850101")


def test_ndef_records_decode_relaxed_and_reserved_tnf_still_fails() -> None:
    # Tag.NDEF.records decodes with errors='relax'; the garbage-NDEF fault relies on
    # a reserved TNF (7) raising DecodeError even then.
    with pytest.raises(ndef.DecodeError):
        list(ndef.message_decoder(bytes.fromhex("d7010455deadbeef"), errors="relax"))
