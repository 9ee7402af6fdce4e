"""NTAG 424 DNA: the reader driver and the simulator against NXP's examples and each other.

Sources (every expected byte string is transcribed, none computed by the code under test):
* NXP AN12196 "NTAG 424 DNA and NTAG 424 DNA TagTamper features and hints": rev. 1.x
  §5.3-5.4 / §4.3 Table 7 (CommMode.MAC and FULL examples), §6.6 and §6.10
  (AuthenticateEV2First with keys 0 and 3), §6.12 (WriteData in CommMode.FULL), §7.3
  (GetCardUID, FULL answer), as transcribed in lucianox777/nfc-ev2-crypto test_ev2.py;
  rev. 2.0 Table 18 (ChangeFileSettings) and §5.16.1-5.16.2 Tables 25-26 (rev. 1.8
  §6.16 Tables 26-27: ChangeKey of key 2 and of key 0), as transcribed in public
  TypeScript and Go implementations found with the search tools.
* A factory tag's GetFileSettings answer ``0000E0EE000100`` (nikeee/node-ntag424
  src/serializer/fileSettings.test.ts, "factory settings").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from drivers.nfc.ntag424 import (
    FREE,
    NDEF_FILE,
    NDEF_FILE_ID,
    NEVER,
    PROPRIETARY_FILE,
    AccessRights,
    CommMode,
    FileSettings,
    Ntag424,
    Ntag424AuthenticationError,
    Ntag424Error,
    Ntag424IntegrityError,
    Ntag424PermissionDenied,
    Ntag424StatusError,
    SdmSettings,
    Session,
    crc32_nk,
    ev2_session_keys,
    native_apdu,
    ndef_uri,
    pad,
    provisioned_settings,
    sdm_url,
    unpad,
)
from drivers.sim.ntag424 import Ntag424Sim
from routine.sun import (
    SunBadMac,
    SunMalformed,
    SunReplay,
    SunTemplate,
    SunWrongTag,
    TagKeys,
    check_counter,
    diversify,
    verify_sun,
)

h = bytes.fromhex
ZERO = bytes(16)
UID = h("04A1B2C3D4E5F6")

# AN12196 §6.6: AuthenticateEV2First with key 0 (all-zero), fixed RndA, the tag's RndB
AUTH0_RND_A = h("13C5DB8A5930439FC3DEF9A4C675360F")
AUTH0_RND_B = h("B9E2FC789B64BF237CCCAA20EC7E6E48")
AUTH0 = [("9071000002000000", "A04C124213C186F22399D33AC2A3021591AF"),
         ("90AF00002035C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D00",
          "3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F081206639100")]
AUTH0_TI = h("9D00C4DF")
AUTH0_ENC, AUTH0_MAC = h("1309C877509E5A215007FF0ED19CA564"), h("4C6626F5E72EA694202139295C7A7FC7")
# AN12196 §6.10: the same with key 3 (all-zero), TI 7614281A
AUTH3_RND_A = h("B98F4C50CF1C2E084FD150E33992B048")
AUTH3 = [("9071000002030000", "B875CEB0E66A6C5CD00898DC371F92D191AF"),
         ("90AF000020FF0306E47DFBC50087C4D8A78E88E62DE1E8BE457AA477C707E2F0874916A8B100",
          "0CC9A8094A8EEA683ECAAC5C7BF20584206D0608D477110FC6B3D5D3F65C3A6A9100")]
AUTH3_TI = h("7614281A")
AUTH3_ENC, AUTH3_MAC = h("7A93D6571E4B180FCA6AC90C9A7488D4"), h("FC4AF159B62E549B5812394CAB1918CC")
# AN12196 §6.12: WriteData 0102..0A to file 03 at offset 0, CommMode.FULL, CmdCtr 0
WRITE3 = ("908D00001F030000000A00006B5E6804909962FC4E3FF5522CF0F8436C0C53315B9C73AA00",
          "C26D236E4A7C046D9100")
# AN12196 rev. 2.0 Table 18: ChangeFileSettings of file 02 under the key-0 session, CmdCtr 1
CHANGE_SETTINGS = ("905F0000190261B6D97903566E84C3AE5274467E89EAD799B7C1A0EF7A0400",
                   "57BFF87B1241E93D9100")


class Script:
    """A transceive that expects exact APDUs and plays back recorded answers."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = [(h(a), h(b)) for a, b in pairs]

    def __call__(self, apdu: bytes) -> bytes:
        expected, answer = self.pairs.pop(0)
        assert apdu.hex().upper() == expected.hex().upper()
        return answer


class Recorder:
    """A transceive into a simulator that keeps every exchange."""

    def __init__(self, sim: Ntag424Sim,
                 tamper: Callable[[bytes, bytes], bytes] | None = None) -> None:
        self.sim, self.tamper = sim, tamper
        self.log: list[tuple[str, str]] = []

    def __call__(self, apdu: bytes) -> bytes:
        answer = self.sim.process_apdu(apdu)
        if self.tamper is not None:
            answer = self.tamper(apdu, answer)
        self.log.append((apdu.hex().upper(), answer.hex().upper()))
        return answer


def randoms(*values: bytes) -> Callable[[int], bytes]:
    queue: Iterator[bytes] = iter(values)

    def take(n: int) -> bytes:
        value = next(queue)
        assert len(value) == n
        return value

    return take


# --- published vectors: the driver -------------------------------------------------------


def test_ev2_session_keys_an12196():
    """AN12196 §6.6: SesAuthENCKey and SesAuthMACKey from RndA and RndB."""
    assert ev2_session_keys(ZERO, AUTH0_RND_A, AUTH0_RND_B) == (AUTH0_ENC, AUTH0_MAC)


def test_authenticate_key0_an12196():
    """AN12196 §6.6: the exact C-APDUs for a fixed RndA, then TI and session keys."""
    tag = Ntag424(Script(AUTH0), random=randoms(AUTH0_RND_A))
    session = tag.authenticate(0, ZERO)
    assert session == Session(0, AUTH0_TI, AUTH0_ENC, AUTH0_MAC, 0)
    assert tag.session is session


def test_authenticate_key3_and_full_write_an12196():
    """AN12196 §6.10 (key 3) and §6.12: WriteData in CommMode.FULL, answer MAC checked."""
    tag = Ntag424(Script([*AUTH3, WRITE3]), random=randoms(AUTH3_RND_A))
    assert tag.authenticate(3, ZERO) == Session(3, AUTH3_TI, AUTH3_ENC, AUTH3_MAC, 0)
    tag.write_data(PROPRIETARY_FILE, 0, bytes(range(1, 11)), CommMode.FULL)
    assert tag.session is not None and tag.session.counter == 1


def test_full_write_of_an_sdm_template_an12196():
    """AN12196 §5.4: WriteData FULL of the NDEF file; its plaintext is sdm_url's template."""
    template = sdm_url("https://choose.url.com/ntag424")
    assert template.url == "https://choose.url.com/ntag424?e=" + "0" * 32 + "&c=" + "0" * 16
    apdu = ("908D00009F02000000800000421C73A27D827658AF481FDFF20A5025B559D0E3"
            "AA21E58D347F343CFFC768BFE596C706BC00F2176781D4B0242642A0FF5A42C4"
            "61AAF894D9A1284B8C76BCFA658ACD40555D362E08DB15CF421B51283F9064BC"
            "BE20E96CAE545B407C9D651A3315B27373772E5DA2367D2064AE054AF996C6F1"
            "F669170FA88CE8C4E3A4A7BBBEF0FD971FF532C3A802AF745660F2B4D1D9A849"
            "9661EBF300")
    tag = Ntag424(Script([(apdu, "FC222E5F7A5424529100")]))
    tag.session = Session(0, AUTH0_TI, AUTH0_ENC, AUTH0_MAC, 0)
    tag.write_data(NDEF_FILE, 0, template.ndef_file.ljust(128, b"\x00"), CommMode.FULL)
    assert tag.session.counter == 1


def test_change_file_settings_an12196():
    """AN12196 rev. 2.0 Table 18: the IV, the C-APDU and the answer at CmdCtr 1.

    Its settings (PICC data at 20h, MAC at 43h) are what provisioned_settings makes for
    sdm_url("https://choose.url.com/ntag424") with MetaRead 2, FileRead 1, CtrRet 1.
    """
    settings = provisioned_settings(sdm_url("https://choose.url.com/ntag424"), ctr_ret=1)
    assert settings.encode() == h("4000E0C1F121200000430000430000")
    session = Session(0, AUTH0_TI, AUTH0_ENC, AUTH0_MAC, 1)
    assert session.command_iv() == h("3E27082AB2ACC1EF55C57547934E9962")
    tag = Ntag424(Script([CHANGE_SETTINGS]))
    tag.session = session
    tag.change_file_settings(NDEF_FILE, settings)
    assert session.counter == 2


def test_get_file_settings_in_mac_mode_an12196():
    """AN12196 §4.3 Table 7 / §5.3: CommMode.MAC command and answer, then the settings.

    The offsets are those sdm_url computes for the AN12196 my424dna.com example URL.
    """
    tag = Ntag424(Script([("90F5000009026597A457C8CD442C00",
                           "0040EEEE000100D1FE001F00004400004400002000006A00002A474282E7A47986"
                           "9100")]))
    tag.session = Session(0, h("7A21085E"), ZERO, h("8248134A386E86EB7FAF54A52E536CB6"), 0)
    settings = tag.get_file_settings(NDEF_FILE)
    assert settings.size == 256 and settings.comm_mode is CommMode.PLAIN
    assert settings.access == AccessRights(FREE, FREE, FREE, FREE)
    template = sdm_url("https://www.my424dna.com/", picc="picc_data", enc="enc",
                       enc_data=b"x" * 16, mac="cmac")
    assert settings.sdm == template.sdm_settings(meta_read=0, file_read=0, ctr_ret=FREE)
    assert (template.picc_data_offset, template.enc_offset, template.enc_length,
            template.mac_offset) == (0x1F, 0x44, 0x20, 0x6A)
    assert settings.encode() == h("40EEEED1FE001F00004400004400002000006A0000")


def test_change_key_both_cases_an12196():
    """AN12196 rev. 2.0 §5.16.1 Table 25 (key 2, XOR and CRC32) and §5.16.2 Table 26 (key 0)."""
    assert crc32_nk(h("F3847D627727ED3BC9C4CC050489B966")) == h("789DFADC")
    tag = Ntag424(Script([
        ("90C4000029022CF362B7BF4311FF3BE1DAA295E8C68DE09050560D19B9E16C2393AE9CD1FAC7"
         "5D0CE20BCD1D06E600", "203BB55D1089D5879100"),
        ("90C400002900C0EB4DEEFEDDF0B513A03A95A75491818580503190D4D05053FF75668A01D6FD"
         "A6610234BDED643200", "9100"),
    ]))
    tag.session = Session(0, AUTH3_TI, h("4CF3CB41A22583A61E89B158D252FC53"),
                          h("5529860B2FC5FB6154B7F28361D30BF9"), 2)
    tag.change_key(2, h("F3847D627727ED3BC9C4CC050489B966"), old_key=ZERO, version=1)
    assert tag.session.counter == 3
    tag.change_key(0, h("5004BF991F408672B1EF00F08F9E8647"), version=1)
    assert tag.session is None  # the session's own key changed


def test_get_card_uid_full_answer_an12196():
    """AN12196 §7.3: GetCardUID, MAC-only command, encrypted and MACed answer."""
    tag = Ntag424(Script([("90510000088E2C155ADDA99BE300",
                           "70756055688505B52A5E26E59E329CD6595F672298EA41B79100")]))
    tag.session = Session(0, h("DF055522"), h("2B4D963C014DC36F24F69A50A394F875"),
                          h("379D32130CE61705DD5FD8C36B95D764"), 0)
    assert tag.get_card_uid() == h("04958CAA5C5E80")


def test_padding_and_apdus():
    assert pad(b"") == b"\x80" + bytes(15)
    assert len(pad(bytes(16))) == 32 and unpad(pad(bytes(16))) == bytes(16)
    with pytest.raises(Ntag424IntegrityError):
        unpad(bytes(16))
    assert native_apdu(0x60) == h("9060000000")
    with pytest.raises(ValueError):
        native_apdu(0x8D, bytes(256))


# --- published vectors: the simulator ----------------------------------------------------


def test_sim_answers_the_an12196_key0_authentication():
    """The simulator, given AN12196's RndB and TI, answers §6.6 byte for byte."""
    sim = Ntag424Sim(UID, random=randoms(AUTH0_RND_B, AUTH0_TI))
    sim.process_apdu(h("00A4040C07D2760000850101"))
    recorder = Recorder(sim)
    Ntag424(recorder, random=randoms(AUTH0_RND_A)).authenticate(0, ZERO)
    assert recorder.log == [(a.upper(), b.upper()) for a, b in AUTH0]


def test_sim_answers_the_an12196_key3_authentication_and_full_write():
    """§6.10 and §6.12 against the simulator; RndB is what the tag encrypted in §6.10."""
    sim = Ntag424Sim(UID, random=randoms(h("91517975190dcea6104948efa3085c1b"), AUTH3_TI))
    recorder = Recorder(sim)
    tag = Ntag424(recorder, random=randoms(AUTH3_RND_A))
    tag.select_application()
    tag.authenticate(3, ZERO)
    tag.write_data(PROPRIETARY_FILE, 0, bytes(range(1, 11)), CommMode.FULL)
    assert recorder.log[1:] == [*AUTH3, WRITE3]
    assert bytes(sim.files[PROPRIETARY_FILE].data[:10]) == bytes(range(1, 11))


def test_sim_answers_the_an12196_change_file_settings():
    """Table 18 against the simulator, after one command at CmdCtr 0."""
    sim = Ntag424Sim(UID, random=randoms(AUTH0_RND_B, AUTH0_TI))
    recorder = Recorder(sim)
    tag = Ntag424(recorder, random=randoms(AUTH0_RND_A))
    tag.select_application()
    tag.authenticate(0, ZERO)
    tag.get_file_settings(NDEF_FILE)
    tag.change_file_settings(NDEF_FILE, FileSettings.decode(h("00") + h("4000E0") + h("000100")
                                                            + h("C1F121200000430000430000")))
    assert recorder.log[-1] == CHANGE_SETTINGS


def test_sim_factory_file_settings():
    """A factory NDEF file: plain, read/write/read-write free, change key 0, 256 bytes."""
    sim = Ntag424Sim(UID)
    sim.process_apdu(h("00A4040007D276000085010100"))  # as nfcpy selects (P2 00, Le)
    assert sim.process_apdu(h("90F50000010200")) == h("0000E0EE0001009100")


# --- provisioning a factory tag, then taps -----------------------------------------------

MASTER = h("8F0E6F2A3C1B4D5E6A7B8C9D0E1F2A3B")
META_READ = h("11223344556677889900AABBCCDDEEFF")  # one per deployment: not per tag


def tag_keys(uid: bytes) -> list[bytes]:
    """Keys 0, 1, 3, 4 diversified per tag and key number; key 2 (meta read) is shared."""
    keys = [diversify(MASTER, uid, system_identifier=b"nyckelfri" + bytes([n])) for n in range(5)]
    keys[2] = META_READ
    return keys


def provision(sim: Ntag424Sim, template_url: str = "https://example.org/t", **url_options):
    tag = Ntag424(sim.process_apdu)
    tag.select_application()
    version = tag.get_version()
    assert version.is_ntag424 and version.product == "NTAG 424 DNA"
    keys = tag_keys(version.uid)
    tag.authenticate(0, ZERO)
    assert tag.get_card_uid() == version.uid
    for number in (1, 2, 3, 4):
        tag.change_key(number, keys[number], old_key=ZERO, version=1)
    template = sdm_url(template_url, **url_options)
    tag.write_data(NDEF_FILE, 0, template.ndef_file)
    settings = provisioned_settings(template, ctr_ret=1)
    tag.change_file_settings(NDEF_FILE, settings)
    read_back = tag.get_file_settings(NDEF_FILE)
    assert read_back == FileSettings(settings.comm_mode, settings.access, settings.sdm, 256)
    tag.change_key(0, keys[0], version=1)
    assert tag.session is None
    tag.authenticate(0, keys[0])  # the new key 0 works
    return tag, keys, template


def tap(sim: Ntag424Sim) -> str:
    sim.new_activation()
    return Ntag424(sim.process_apdu).read_url()


def test_provisioned_tag_yields_verifiable_urls_with_rising_counters():
    sim = Ntag424Sim(UID)
    _, keys, template = provision(sim)
    sun_keys = TagKeys(meta_read=META_READ, file_read=keys[1])
    last: int | None = None
    urls = []
    for expected in (1, 2, 3):
        url = tap(sim)
        assert url.startswith("https://example.org/t?e=") and url != template.url
        reading = verify_sun(url, sun_keys, expected_uid=UID)
        assert (reading.uid, reading.counter) == (UID, expected)
        check_counter(reading, last)
        last = reading.counter
        urls.append(url)
    assert len(set(urls)) == 3
    with pytest.raises(SunReplay):  # a copied URL: authentic, but an old counter
        check_counter(verify_sun(urls[0], sun_keys), last)
    by_uid = {UID: sun_keys}
    assert verify_sun(tap(sim), by_uid.__getitem__, meta_read=META_READ).counter == 4


def test_provisioned_tag_refusals():
    sim = Ntag424Sim(UID)
    _, keys, _ = provision(sim)
    url = tap(sim)
    good = TagKeys(meta_read=META_READ, file_read=keys[1])
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    with pytest.raises(SunBadMac):
        verify_sun(tampered, good)
    with pytest.raises(SunWrongTag):
        verify_sun(url, TagKeys(meta_read=ZERO, file_read=keys[1]))
    with pytest.raises(SunBadMac):
        verify_sun(url, TagKeys(meta_read=META_READ, file_read=keys[3]))
    with pytest.raises(SunMalformed):
        verify_sun(url.split("?")[0] + "?e=nonsense&c=0", good)


def test_authentication_with_a_wrong_key_is_a_clear_error():
    sim = Ntag424Sim(UID)
    provision(sim)
    tag = Ntag424(sim.process_apdu)
    tag.select_application()
    with pytest.raises(Ntag424AuthenticationError) as caught:
        tag.authenticate(0, ZERO)  # the factory key no longer works
    assert caught.value.status == 0x91AE
    assert "91 AE AUTHENTICATION_ERROR" in str(caught.value)
    assert tag.session is None


def test_access_rights_are_enforced_after_provisioning():
    sim = Ntag424Sim(UID)
    _, keys, _ = provision(sim)
    tag = Ntag424(sim.process_apdu)
    tag.select_application()
    with pytest.raises(Ntag424AuthenticationError):  # write is key 0 now: no session
        tag.write_data(NDEF_FILE, 0, b"\x00\x00")
    tag.select_file(NDEF_FILE_ID)
    with pytest.raises(Ntag424StatusError) as caught:
        tag.iso_update_binary(0, b"\x00\x00")
    assert caught.value.status == 0x6982
    tag.authenticate(1, keys[1])
    with pytest.raises(Ntag424PermissionDenied) as denied:
        tag.change_file_settings(NDEF_FILE, FileSettings())
    assert denied.value.status == 0x919D and tag.session is None
    tag.authenticate(0, keys[0])
    with pytest.raises(Ntag424StatusError) as crc:  # a wrong old key fails the CRC32 check
        tag.change_key(3, ZERO, old_key=ZERO)
    assert crc.value.status == 0x911E
    tag.authenticate(2, META_READ)
    with pytest.raises(Ntag424AuthenticationError):  # only key 0 changes other keys
        tag.change_key(3, ZERO, old_key=keys[3])


def test_counter_counts_taps_not_reads():
    """nfcpy reads NLEN, then the message in pieces: one selection, one count, one image;
    an authenticated read neither counts nor mirrors (NT4H2421Gx §9.3.3)."""
    sim = Ntag424Sim(UID)
    _, keys, template = provision(sim)
    tag = Ntag424(sim.process_apdu)
    tag.select_application()
    tag.select_file(NDEF_FILE_ID)
    length = int.from_bytes(tag.iso_read_binary(0, 2), "big")
    message = tag.iso_read_binary(2, 15) + tag.iso_read_binary(17, length - 15)
    assert tag.iso_read_binary(2, length) == message
    reading = verify_sun(ndef_uri(message), TagKeys(META_READ, keys[1]))
    assert reading.counter == sim.sdm_read_counter == 1
    tag.authenticate(1, keys[1])  # SDMCtrRet is key 1
    assert tag.get_file_counters() == 1
    assert tag.read_data(NDEF_FILE, 2, length) == template.ndef_file[2:2 + length]


def test_encrypted_file_data_round_trip():
    sim = Ntag424Sim(UID)
    _, keys, template = provision(sim, "https://example.org/v?x=1", enc="enc",
                                  enc_data=b"client-ref-00042")
    assert template.url.startswith("https://example.org/v?x=1&e=")
    reading = verify_sun(tap(sim), TagKeys(META_READ, keys[1]))
    assert reading.file_data == b"client-ref-00042" and reading.counter == 1


def test_plain_mirror_round_trip():
    sim = Ntag424Sim(UID)
    _, keys, template = provision(sim, picc=None, uid="uid", ctr="ctr", mac="cmac")
    assert template.sdm_settings().meta_read == FREE
    url = tap(sim)
    assert f"uid={UID.hex().upper()}&ctr=000001&cmac=" in url
    reading = verify_sun(url, TagKeys(META_READ, keys[1]), template=SunTemplate())
    assert (reading.uid, reading.counter) == (UID, 1)


def test_sim_state_survives_a_restart():
    sim = Ntag424Sim(UID)
    _, keys, _ = provision(sim)
    tap(sim)
    tap(sim)
    restored = Ntag424Sim.from_dict(json.loads(json.dumps(sim.to_dict())))
    assert restored.to_dict() == sim.to_dict()
    reading = verify_sun(tap(restored), TagKeys(META_READ, keys[1]))
    assert reading.counter == 3
    tag = Ntag424(restored.process_apdu)
    tag.select_application()
    tag.authenticate(0, keys[0])


def test_full_read_and_write_of_the_proprietary_file():
    """File 03 is CommMode.FULL: read key 2, write and read-write key 3."""
    sim = Ntag424Sim(UID)
    tag = Ntag424(sim.process_apdu)
    tag.select_application()
    tag.authenticate(3, ZERO)
    data = bytes(range(100))
    tag.write_data(PROPRIETARY_FILE, 10, data, CommMode.FULL)
    assert tag.read_data(PROPRIETARY_FILE, 10, 100, CommMode.FULL) == data
    tag.authenticate(2, ZERO)
    assert tag.read_data(PROPRIETARY_FILE, 0, 16, CommMode.FULL) == bytes(10) + data[:6]
    with pytest.raises(Ntag424PermissionDenied):
        tag.write_data(PROPRIETARY_FILE, 0, b"x", CommMode.FULL)


# --- the driver's own checks -------------------------------------------------------------


def test_a_tampered_answer_mac_is_an_integrity_error():
    def flip_mac(apdu: bytes, answer: bytes) -> bytes:
        if apdu[1] == 0xF5 and answer[-2:] == b"\x91\x00":
            return answer[:-3] + bytes([answer[-3] ^ 1]) + answer[-2:]
        return answer

    sim = Ntag424Sim(UID)
    tag = Ntag424(Recorder(sim, flip_mac))
    tag.select_application()
    tag.authenticate(0, ZERO)
    with pytest.raises(Ntag424IntegrityError, match="MAC"):
        tag.get_file_settings(NDEF_FILE)


def test_a_tag_that_does_not_know_the_key_is_caught():
    """A fake tag that answers part 2 without knowing RndA: the RndA check refuses it."""
    fake = Script([("9071000002000000", "A04C124213C186F22399D33AC2A3021591AF"),
                   (AUTH0[1][0], "00" * 32 + "9100")])
    with pytest.raises(Ntag424IntegrityError, match="RndA"):
        Ntag424(fake, random=randoms(AUTH0_RND_A)).authenticate(0, ZERO)


def test_commands_that_need_a_session_say_so():
    tag = Ntag424(Ntag424Sim(UID).process_apdu)
    tag.select_application()
    with pytest.raises(Ntag424Error, match="authentication"):
        tag.change_file_settings(NDEF_FILE, FileSettings())
    with pytest.raises(Ntag424Error, match="authentication"):
        tag.change_key(1, ZERO, old_key=ZERO)
    tag.authenticate(0, ZERO)
    with pytest.raises(Ntag424Error, match="before authenticating"):
        tag.get_version()
    with pytest.raises(ValueError, match="current"):
        tag.change_key(1, ZERO)


def test_sim_refuses_what_a_tag_refuses():
    sim = Ntag424Sim(UID)
    assert sim.process_apdu(h("9071000002000000")) == h("919D")  # no application selected
    assert sim.process_apdu(h("00A4040C07D2760000850102")) == h("6A82")
    assert sim.process_apdu(h("00A4000C02E103")) == h("6A82")
    sim.process_apdu(h("00A4040C07D2760000850101"))
    assert sim.process_apdu(h("9071000002050000")) == h("9140")  # NO_SUCH_KEY
    assert sim.process_apdu(h("90AF000000")) == h("911C")  # nothing to continue
    assert sim.process_apdu(h("905F0000010200")) == h("91AE")  # needs a session
    assert sim.process_apdu(h("90F50000010900")) == h("91F0")  # no such file
    assert sim.process_apdu(h("80A4040C07D2760000850101")) == h("6E00")
    assert sim.process_apdu(h("00B0000010")) == h("6986")  # no file selected
    sim.process_apdu(h("00A4000C02E103"))
    cc = sim.process_apdu(h("00B000000F"))
    assert cc[:-2] == h("001720010000FF0406E10401000000") and cc[-2:] == h("9000")
    assert sim.process_apdu(h("00D6000001FF")) == h("6982")  # the CC file: write key 0


@pytest.mark.parametrize("settings", [
    FileSettings(),
    FileSettings(CommMode.FULL, AccessRights(2, 3, 3, 0)),
    FileSettings(CommMode.MAC, AccessRights(FREE, 0, 0, 0), SdmSettings(
        meta_read=FREE, file_read=NEVER, uid_offset=10, ctr_offset=30, ctr_ret=FREE)),
    FileSettings(sdm=SdmSettings(meta_read=0, file_read=3, picc_data_offset=5,
                                 mac_input_offset=40, enc_offset=40, enc_length=64,
                                 mac_offset=110, ctr_limit=1000, ctr_ret=4)),
])
def test_file_settings_encoding_round_trips(settings):
    raw = bytes([0]) + settings.encode()[:3] + (256).to_bytes(3, "little") + settings.encode()[3:]
    assert FileSettings.decode(raw) == FileSettings(settings.comm_mode, settings.access,
                                                    settings.sdm, 256)


def test_sim_checks_sdm_settings():
    sim = Ntag424Sim(UID)
    tag = Ntag424(sim.process_apdu)
    tag.select_application()
    tag.authenticate(0, ZERO)
    bad = FileSettings(sdm=SdmSettings(picc_data_offset=240, mac_input_offset=0, mac_offset=0))
    with pytest.raises(Ntag424StatusError) as caught:  # PICC data would run past the file
        tag.change_file_settings(NDEF_FILE, bad)
    assert caught.value.status == 0x919E


def test_sdm_url_limits():
    with pytest.raises(ValueError, match="256"):
        sdm_url("https://example.org/" + "x" * 200)
    with pytest.raises(ValueError, match="multiple of 16"):
        sdm_url("https://example.org/", enc="enc", enc_data=b"short")
    with pytest.raises(ValueError, match="encrypted PICC data"):
        sdm_url("https://example.org/", picc=None, uid="u", ctr="n", enc="enc", enc_data=bytes(16))
    with pytest.raises(ValueError, match="distinct"):
        sdm_url("https://example.org/", picc="c")
    with pytest.raises(ValueError, match="either picc"):
        sdm_url("https://example.org/", uid="uid")
