"""Provisioning an NTAG 424 DNA through nfcpy's real drivers, and rerunning it when cut.

The tag is ``Ntag424Tag`` (ISO-DEP front + ``Ntag424Sim``) in the field of nfcpy's
``udp`` driver or of the PN532 emulator on a pty; ``provision_ntag424`` talks to it
through nfcpy's ``Type4Tag.transceive`` exactly as on a real reader. A tag pulled
away is ``server.remove()`` at a named step (``on_step``) or the ``mute_after`` fault.
The last tests cut a run after every single APDU in-process (the chip's
``process_apdu``, no radio), both before the tag saw it and after it acted on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import nfc
import nfc.tag
import nfc.tag.tt4
import pytest

from drivers.nfc.base import NfcError
from drivers.nfc.provision import (
    NotNtag424Error,
    ProvisionInterrupted,
    TagKeysMismatch,
    identify_ntag424,
    provision_ntag424,
)
from drivers.sim.ntag424 import Ntag424Sim, Ntag424Tag
from drivers.sim.pn532 import Pn532Emulator, open_frontend
from drivers.sim.tags import TagFaults, Type4Tag, ndef_bytes
from drivers.sim.udp_tag import UdpTagServer
from routine.sun import SunError, sun_keys, tag_key_set, verify_sun

pytestmark = pytest.mark.timeout(120)

UID = bytes.fromhex("04C0FFEE123456")
FACTORY = [bytes(16)] * 5
V1 = tag_key_set(bytes.fromhex("11" * 16), UID)
V2 = tag_key_set(bytes.fromhex("22" * 16), UID)
URL_BASE = "https://nyckelfri.example/t"
CONNECT_LIMIT_S = 10.0  # upper bound for nfcpy to find the tag; it takes milliseconds
RDWR: dict[str, Any] = {"targets": ["106A"], "iterations": 1, "interval": 0.05,
                        "beep-on-connect": False, "on-connect": lambda tag: False}


def activate(clf: nfc.ContactlessFrontend) -> Any:
    """One tap: the tag nfcpy activated (on-connect returns False: it stays selected)."""
    deadline = time.monotonic() + CONNECT_LIMIT_S
    tag = clf.connect(rdwr=dict(RDWR), terminate=lambda: time.monotonic() > deadline)
    assert tag, "nfcpy found no tag"
    return tag


def read_url(clf: nfc.ContactlessFrontend) -> str:
    """A phone's tap: nfcpy reads the NDEF message, its URI record."""
    return str(activate(clf).ndef.records[0].iri)


def provision(clf: nfc.ContactlessFrontend, new: list[bytes], current: list[bytes],
              version: int = 1, on_step: Callable[[str], None] | None = None) -> str:
    tag = activate(clf)
    assert isinstance(tag, nfc.tag.tt4.Type4Tag)
    return provision_ntag424(tag.transceive, bytes(tag.identifier), new, current, URL_BASE,
                             key_version=version, on_step=on_step)


class Field:
    """A transport with a chip in its field: present (a fresh front), remove, tap."""

    def __init__(self, place: Any, clf: nfc.ContactlessFrontend) -> None:
        self.place, self.clf = place, clf

    def present(self, chip: Ntag424Sim, faults: TagFaults | None = None) -> None:
        self.place.present(Ntag424Tag(chip, faults))

    def remove(self) -> None:
        self.place.remove()


@pytest.fixture
def udp() -> Iterator[Field]:
    with UdpTagServer() as server:
        clf = nfc.ContactlessFrontend(server.path)
        try:
            yield Field(server, clf)
        finally:
            clf.close()


@pytest.fixture
def pn532() -> Iterator[Field]:
    with Pn532Emulator() as emulator:
        clf = open_frontend(emulator)
        try:
            yield Field(emulator, clf)
        finally:
            clf.close()


@pytest.fixture(params=["udp", "pn532"])
def field(request: pytest.FixtureRequest) -> Field:
    return request.getfixturevalue(request.param)


def verified(url: str, keys: list[bytes]) -> int:
    return verify_sun(url, sun_keys(keys), expected_uid=UID).counter


# --- the happy paths ---------------------------------------------------------------------


def test_factory_tag_provisioned_then_taps_verify_then_keys_rotate(field: Field) -> None:
    chip = Ntag424Sim(UID)
    field.present(chip)

    url = provision(field.clf, V1, FACTORY)

    assert verified(url, V1) == 1  # SDM enabled (counter 0), then read back once
    assert chip.keys == V1 and chip.key_versions == [1] * 5
    counters = [verified(read_url(field.clf), V1) for _ in range(3)]
    assert counters == [2, 3, 4]

    rotated = provision(field.clf, V2, V1, version=2)

    # Same URL base: the SDM settings were already right and were left alone, so the
    # counter goes on instead of restarting at 0 (ChangeFileSettings would reset it).
    assert verified(rotated, V2) == 5
    assert chip.keys == V2 and chip.key_versions == [2] * 5
    after = read_url(field.clf)
    assert verified(after, V2) == 6
    with pytest.raises(SunError):  # the old keys no longer verify anything new
        verified(after, V1)


def test_wrong_current_keys_are_a_clear_error_and_change_nothing(udp: Field) -> None:
    chip = Ntag424Sim(UID)
    udp.present(chip)
    provision(udp.clf, V1, FACTORY)
    before = chip.to_dict()

    with pytest.raises(TagKeysMismatch) as caught:
        provision(udp.clf, V2, FACTORY, version=2)  # the centre thinks it is factory-new

    message = str(caught.value)
    assert message.startswith("this tag's keys are not the ones the centre expects: ")
    assert "Nothing was changed" in message
    assert caught.value.steps_done == ("identified NTAG 424 DNA",)
    assert isinstance(caught.value, NfcError)
    assert {k: v for k, v in chip.to_dict().items() if k != "sdm_read_counter"} == \
        {k: v for k, v in before.items() if k != "sdm_read_counter"}
    assert verified(read_url(udp.clf), V1) == 2  # still a working tag with its real keys
    assert verified(provision(udp.clf, V2, V1, version=2), V2) == 3


def test_a_plain_type4_tag_is_not_an_ntag424(udp: Field) -> None:
    udp.place.present(Type4Tag(UID, ndef_bytes(URL_BASE)))
    tag = activate(udp.clf)
    with pytest.raises(NotNtag424Error, match="is not an NTAG 424 DNA"):
        identify_ntag424(tag.transceive, UID)
    tag = activate(udp.clf)
    with pytest.raises(NotNtag424Error):
        provision_ntag424(tag.transceive, UID, V1, FACTORY, URL_BASE)
    assert read_url(udp.clf) == URL_BASE  # untouched


def test_identify_reports_the_product() -> None:
    identity = identify_ntag424(Ntag424Sim(UID).process_apdu, UID)
    assert (identity.uid, identity.product) == (UID, "NTAG 424 DNA")
    with pytest.raises(NfcError, match="two tags in the field"):
        identify_ntag424(Ntag424Sim(UID).process_apdu, bytes.fromhex("04000000000001"))


# --- interrupted, then rerun -------------------------------------------------------------


@pytest.mark.parametrize("cut_at", [
    "ChangeFileSettings: enable SDM",
    "change key 2",
    "authenticate with the new key 0",  # key 0 is already changed: the rerun needs the new one
])
def test_tag_removed_mid_way_then_the_same_command_again_finishes(udp: Field,
                                                                   cut_at: str) -> None:
    chip = Ntag424Sim(UID)
    udp.present(chip)

    def pull_away(step: str) -> None:
        if step == cut_at:
            udp.remove()

    with pytest.raises(ProvisionInterrupted) as caught:
        provision(udp.clf, V1, FACTORY, on_step=pull_away)

    message = str(caught.value)
    assert f"stopped answering during '{cut_at}'" in message
    assert "run the same provisioning again" in message
    assert caught.value.steps_done[0] == "identified NTAG 424 DNA"
    udp.present(chip)
    url = provision(udp.clf, V1, FACTORY)  # the centre still says: factory keys
    assert verified(url, V1) == 1 and chip.keys == V1
    assert verified(read_url(udp.clf), V1) == 2


def test_half_changed_keys_are_named_in_the_error(pn532: Field) -> None:
    chip = Ntag424Sim(UID)
    pn532.present(chip)

    def pull_away(step: str) -> None:
        if step == "change key 3":
            pn532.remove()

    with pytest.raises(ProvisionInterrupted, match="verify with neither key set") as caught:
        provision(pn532.clf, V2, FACTORY, on_step=pull_away)
    assert "key 1 changed" in caught.value.steps_done and chip.keys[1] == V2[1]
    pn532.present(chip)
    assert verified(provision(pn532.clf, V2, FACTORY), V2) == 1


def test_tag_going_mute_mid_way_then_rerun(udp: Field) -> None:
    chip = Ntag424Sim(UID)
    udp.present(chip, TagFaults(mute_after=12))  # RATS and 11 frames: inside ChangeKey
    with pytest.raises(ProvisionInterrupted):
        provision(udp.clf, V1, FACTORY)
    udp.present(chip)  # held properly this time
    assert verified(provision(udp.clf, V1, FACTORY), V1) == 1


class Cut:
    """The chip's process_apdu, with the radio cut at APDU ``at``: before the tag saw it
    (``acted`` False) or after it acted on it (the answer lost)."""

    def __init__(self, chip: Ntag424Sim, at: int | None, acted: bool) -> None:
        self.chip, self.at, self.acted, self.count = chip, at, acted, 0

    def __call__(self, apdu: bytes) -> bytes:
        index, self.count = self.count, self.count + 1
        if index == self.at:
            if self.acted:
                self.chip.process_apdu(apdu)
            raise nfc.tag.tt4.Type4TagCommandError(nfc.tag.TIMEOUT_ERROR)
        return self.chip.process_apdu(apdu)


def apdus_of_a_run(current: list[bytes], new: list[bytes], version: int) -> int:
    chip = Ntag424Sim(UID, current)
    counter = Cut(chip, None, False)
    provision_ntag424(counter, UID, new, current, URL_BASE, key_version=version)
    return counter.count


@pytest.mark.parametrize(("current", "new", "version"), [(FACTORY, V1, 1), (V1, V2, 2)],
                         ids=["first", "rotation"])
@pytest.mark.parametrize("acted", [False, True], ids=["unseen", "answer-lost"])
def test_a_run_cut_after_any_apdu_is_finished_by_a_rerun(current: list[bytes], new: list[bytes],
                                                          version: int, acted: bool) -> None:
    total = apdus_of_a_run(current, new, version)
    # select, GetVersion x3, authenticate x2, WriteData, GetFileSettings,
    # ChangeFileSettings, ChangeKey x5, authenticate x2, select x2, ReadBinary x2
    assert total == 20
    for at in range(total):
        chip = Ntag424Sim(UID, current)
        with pytest.raises(ProvisionInterrupted):
            provision_ntag424(Cut(chip, at, acted), UID, new, current, URL_BASE,
                              key_version=version)
        chip.new_activation()  # the tag comes back to the field
        url = provision_ntag424(chip.process_apdu, UID, new, current, URL_BASE,
                                key_version=version)
        assert chip.keys == new, f"cut at APDU {at}"
        assert chip.key_versions == [version] * 5
        assert verify_sun(url, sun_keys(new), expected_uid=UID).counter >= 1
