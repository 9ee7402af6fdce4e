"""The simulated NTAG 424 DNA in an RF field, read by nfcpy's real, unmodified drivers.

``Ntag424Tag`` = ``Type4Tag``'s ISO-DEP front + ``Ntag424Sim``. Every tap here is one
``ContactlessFrontend.connect`` through the ``udp`` driver (against ``UdpTagServer``)
or the PN532 driver on a pty (against ``Pn532Emulator``); nfcpy's own tag activation
and NDEF reading do the work. The second half pins the simulator's SDM read-counter
rule to NT4H2421Gx §9.3.1 and §9.3.3 at the APDU level.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from typing import Any

import ndef
import nfc
import nfc.tag
import nfc.tag.tt4
import pytest

from drivers.nfc.ntag424 import NDEF_FILE, NDEF_FILE_ID, Ntag424, sdm_url
from drivers.nfc.provision import provision_ntag424
from drivers.sim.ntag424 import NTAG424_ATS, Ntag424Sim, Ntag424Tag
from drivers.sim.pn532 import Pn532Emulator, open_frontend
from drivers.sim.tags import GARBAGE_NDEF, SimError, TagFaults, ndef_bytes
from drivers.sim.udp_tag import UdpTagServer, build_tag
from routine.sun import sun_keys, tag_key_set, verify_sun

pytestmark = pytest.mark.timeout(60)

UID = bytes.fromhex("04A1B2C3D4E5F6")
ZERO_KEYS = [bytes(16)] * 5
KEYS = tag_key_set(bytes.fromhex("00112233445566778899AABBCCDDEEFF"), UID)
URL_BASE = "https://nyckelfri.example/t"
READ_BACK = 1  # the counter after provisioning: SDM enabled (0), then one read back
CONNECT_LIMIT_S = 10.0  # upper bound for one tap; a tap takes milliseconds
RDWR: dict[str, Any] = {"targets": ["106A"], "iterations": 1, "interval": 0.05,
                        "beep-on-connect": False}


def provisioned_chip() -> Ntag424Sim:
    """A chip provisioned in-process (the nfcpy paths are tests/drivers/test_provision.py)."""
    chip = Ntag424Sim(UID)
    provision_ntag424(chip.process_apdu, UID, KEYS, ZERO_KEYS, URL_BASE)
    assert chip.sdm_read_counter == READ_BACK  # provisioning read its first URL back
    chip.new_activation()
    return chip


def tap(clf: nfc.ContactlessFrontend, read: Callable[[Any], Any]) -> Any:
    """One tap: nfcpy activates the tag and ``read`` runs in on-connect; its result."""
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + CONNECT_LIMIT_S

    def on_connect(tag: Any) -> bool:
        seen["value"] = read(tag)
        return False

    clf.connect(rdwr={**RDWR, "on-connect": on_connect},
                terminate=lambda: "value" in seen or time.monotonic() > deadline)
    assert "value" in seen, "nfcpy found no tag"
    return seen["value"]


def summary(tag: Any) -> dict[str, Any]:
    return {"class": type(tag), "type": tag.type, "identifier": bytes(tag.identifier),
            "str": str(tag), "ndef": tag.ndef is not None,
            "octets": bytes(tag.ndef.octets) if tag.ndef else None,
            "records": list(tag.ndef.records) if tag.ndef and tag.ndef.octets else [],
            "capacity": tag.ndef.capacity if tag.ndef else None}


@pytest.fixture
def udp() -> Iterator[tuple[UdpTagServer, nfc.ContactlessFrontend]]:
    with UdpTagServer() as server:
        clf = nfc.ContactlessFrontend(server.path)
        try:
            yield server, clf
        finally:
            clf.close()


@pytest.fixture
def pn532() -> Iterator[tuple[Pn532Emulator, nfc.ContactlessFrontend]]:
    with Pn532Emulator() as emulator:
        clf = open_frontend(emulator)
        try:
            yield emulator, clf
        finally:
            clf.close()


@pytest.fixture(params=["udp", "pn532"])
def field(request: pytest.FixtureRequest) -> tuple[Any, nfc.ContactlessFrontend]:
    return request.getfixturevalue(request.param)


# --- through nfcpy -----------------------------------------------------------------------


def test_a_factory_tag_is_a_type4_tag_with_an_empty_ndef_file(field: Any) -> None:
    server, clf = field
    server.present(build_tag(UID.hex(), "NTAG424"))

    got = tap(clf, summary)

    assert issubclass(got["class"], nfc.tag.tt4.Type4Tag) and got["type"] == "Type4Tag"
    assert got["identifier"] == UID
    # The ATS nfcpy parsed: 128-byte frames (MIU 125) as on the chip, FWI 10 (see NTAG424_ATS)
    assert got["str"] == "Type4ATag MIU=125 FWT=0.309314"
    assert got["ndef"] and got["octets"] == b"" and got["capacity"] == 254


def test_sun_urls_change_every_tap_and_the_counter_counts_taps(field: Any) -> None:
    server, clf = field
    chip = provisioned_chip()
    server.present(Ntag424Tag(chip))
    urls = []
    for expected in (READ_BACK + 1, READ_BACK + 2, READ_BACK + 3):
        records = tap(clf, lambda tag: list(tag.ndef.records))
        assert len(records) == 1 and isinstance(records[0], ndef.UriRecord)
        url = records[0].iri
        assert url.startswith(URL_BASE + "?e=")
        reading = verify_sun(url, sun_keys(KEYS), expected_uid=UID)
        assert reading.counter == expected == chip.sdm_read_counter
        urls.append(url)
    assert len(set(urls)) == 3


def test_one_chip_across_fronts_and_transports(udp: Any, pn532: Any) -> None:
    """The chip keeps its state whichever reader taps it (a new front per presentation)."""
    chip = provisioned_chip()
    for (server, clf), expected in ((udp, 2), (pn532, 3), (udp, 4)):
        server.present(Ntag424Tag(chip))
        url = tap(clf, lambda tag: tag.ndef.records[0].iri)
        assert verify_sun(url, sun_keys(KEYS), expected_uid=UID).counter == expected
        server.remove()


def test_a_tag_with_a_plain_url_written_before_sun(udp: Any) -> None:
    server, clf = udp
    server.present(build_tag(UID.hex(), "NTAG424", uri=URL_BASE))
    assert tap(clf, summary)["records"] == [ndef.UriRecord(URL_BASE)]


def test_a_muted_tag_gives_nfcpy_no_ndef_and_the_chip_goes_on(udp: Any) -> None:
    server, clf = udp
    chip = provisioned_chip()
    server.present(Ntag424Tag(chip, TagFaults(mute_after=4)))  # RATS + 3 APDUs, then silence
    assert tap(clf, lambda tag: tag.ndef) is None
    assert chip.sdm_read_counter == READ_BACK  # it went mute before reading the NDEF file
    server.present(Ntag424Tag(chip))
    url = tap(clf, lambda tag: tag.ndef.records[0].iri)
    assert verify_sun(url, sun_keys(KEYS), expected_uid=UID).counter == READ_BACK + 1


def test_nfcpy_tagtool_show_reads_it(udp: Any) -> None:
    """nfcpy's examples/tagtool.py is not installed (the wheel ships no examples); this is
    its ``show`` command's logic on the 1.0 API: print the tag, the NDEF capabilities and
    the records."""
    server, clf = udp
    server.present(Ntag424Tag(provisioned_chip()))

    def show(tag: Any) -> str:
        out = io.StringIO()
        with redirect_stdout(out):
            print(tag)
            if tag.ndef:
                print("NDEF Capabilities:")
                print(f"  readable  = {('no', 'yes')[tag.ndef.is_readable]}")
                print(f"  writeable = {('no', 'yes')[tag.ndef.is_writeable]}")
                print(f"  capacity  = {tag.ndef.capacity} byte")
                print(f"  message   = {tag.ndef.length} byte")
                if tag.ndef.length > 0:
                    print("NDEF Message:")
                    for i, record in enumerate(tag.ndef.records):
                        print("record", i + 1)
                        print("  type =", repr(record.type))
                        print("  name =", repr(record.name))
                        print("  data =", repr(record.data))
        return out.getvalue()

    text = tap(clf, show)
    print(text)  # shown with pytest -s
    assert text.startswith("Type4ATag MIU=125 FWT=0.309314\nNDEF Capabilities:\n")
    assert "  readable  = yes\n" in text and "  capacity  = 254 byte\n" in text
    assert "  type = 'urn:nfc:wkt:U'\n" in text and "nyckelfri.example/t?e=" in text


def test_build_tag_ntag424_options() -> None:
    tag = build_tag(UID.hex(), "ntag424", text="Ytterdörr")
    assert isinstance(tag, Ntag424Tag) and tag.product == "NTAG424"
    assert tag.ndef_octets() == ndef_bytes(text="Ytterdörr") and tag.chip.keys == ZERO_KEYS
    assert Ntag424Tag.factory(UID, GARBAGE_NDEF).ndef_octets() == GARBAGE_NDEF
    for kwargs, message in (
        ({"faults": TagFaults(garbage_ndef=True)}, "garbage_ndef is not modelled"),
        ({"faults": TagFaults(truncate_reads=True)}, "Type 2 tags only"),
        ({"text": "x" * 300}, "does not fit"),
    ):
        with pytest.raises(SimError, match=message):
            build_tag(UID.hex(), "NTAG424", **kwargs)
    with pytest.raises(SimError, match="7-byte UID"):
        build_tag("0411", "NTAG424")
    assert NTAG424_ATS.hex() == "067777a10280"


# --- the SDM read counter at APDU level (NT4H2421Gx §9.3.1, §9.3.3) -------------------------


def reader(chip: Ntag424Sim) -> Ntag424:
    tag = Ntag424(chip.process_apdu)
    tag.select_application()
    tag.select_file(NDEF_FILE_ID)
    return tag


def test_consecutive_reads_share_one_count_and_one_image() -> None:
    chip = provisioned_chip()
    tag = reader(chip)
    first = tag.iso_read_binary(0, 64) + tag.iso_read_binary(64, 64)
    assert chip.sdm_read_counter == READ_BACK + 1
    assert tag.iso_read_binary(0, 128) == first  # same padding, same MAC: chunked reads work


def test_any_other_command_in_between_counts_again() -> None:
    chip = provisioned_chip()
    tag = reader(chip)
    first = tag.iso_read_binary(0, 128)
    tag.get_file_settings(NDEF_FILE)  # a different command (plain, unauthenticated)
    second = tag.iso_read_binary(0, 128)
    assert chip.sdm_read_counter == READ_BACK + 2 and second != first
    tag.read_data(NDEF_FILE, 0, 128)  # ReadData after ISOReadBinary: a new first read
    assert chip.sdm_read_counter == READ_BACK + 3


def test_authenticated_reads_see_static_data_and_do_not_count() -> None:
    chip = provisioned_chip()
    tag = Ntag424(chip.process_apdu)
    tag.select_application()
    tag.authenticate(0, KEYS[0])
    template = sdm_url(URL_BASE)
    assert tag.read_data(NDEF_FILE, 0, len(template.ndef_file)) == template.ndef_file
    assert chip.sdm_read_counter == READ_BACK


def test_enabling_sdm_resets_the_counter() -> None:
    chip = provisioned_chip()
    for _ in range(3):
        reader(chip).iso_read_binary(0, 2)
    assert chip.sdm_read_counter == READ_BACK + 3
    tag = Ntag424(chip.process_apdu)
    tag.select_application()
    tag.authenticate(0, KEYS[0])
    tag.change_file_settings(NDEF_FILE, tag.get_file_settings(NDEF_FILE))  # SDM stays on
    assert chip.sdm_read_counter == 0


def test_only_the_app_master_key_changes_keys() -> None:
    """NT4H2421Gx §10.6.1 (and NXP's answer on their forum): even its own key needs key 0."""
    chip = Ntag424Sim(UID)
    chip.process_apdu(bytes.fromhex("00A4040C07D2760000850101"))
    tag = Ntag424(chip.process_apdu)
    tag.authenticate(1, bytes(16))
    with pytest.raises(Exception, match="91 AE"):
        tag.change_key(1, KEYS[1])
    assert chip.keys[1] == bytes(16)
