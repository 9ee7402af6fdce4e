"""routine.sun: NTAG 424 DNA SUN verification against published vectors, and its refusals.

Sources of the vectors (every expected value is transcribed, none computed by this code):
* NXP AN12196 "NTAG 424 DNA and NTAG 424 DNA TagTamper features and hints", §3 (SUN
  message calculations, Tables 1-5), as also transcribed in /work/shared/docs/nfc.md,
  nfc-developer/sdm-backend tests/test_libsdm.py and Amperstrand/ntag424-vectors.
* NXP AN10922 "Symmetric key diversifications", §2.2.1 (AES-128 example).
* nfc-developer/sdm-backend tests/test_libsdm.py (demo links and a custom-key vector).
* Amperstrand/ntag424-vectors vectors.json (Boltcard vectors with distinct keys).
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routine.sun import (
    SunBadMac,
    SunError,
    SunMalformed,
    SunReading,
    SunReplay,
    SunTemplate,
    SunUidMismatch,
    SunWrongTag,
    TagKeys,
    _cmac_subkeys,
    aes_cmac,
    check_counter,
    decrypt_file_data,
    decrypt_picc_data,
    diversify,
    sdm_mac,
    sdm_session_keys,
    truncate_mac,
    verify_sun,
)

h = bytes.fromhex
ZERO = bytes(16)
ZERO_KEYS = TagKeys(meta_read=ZERO, file_read=ZERO)
# AN12196 §3.4.4.2.1 (Table 4): the SUN URL of a tag with all-zero keys
TABLE4_URL = "https://ntag.nxp.com/424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
# AN12196 §3.4.4.2.2 (Table 5): encrypted PICC data, encrypted file data, MAC over "enc..."
TABLE5_URL = ("https://www.my424dna.com/?picc_data=FD91EC264309878BE6345CBE53BADF40"
              "&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6")
# nfc-developer/sdm-backend tests/test_libsdm.py test_plain_sdm (sdm.nfcdeveloper.com demo)
PLAIN_URL = "https://sdm.nfcdeveloper.com/tagpt?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3"


# --- published vectors -------------------------------------------------------------------


def test_session_keys_an12196_table1():
    """AN12196 §3.3 Table 1: SV1/SV2 -> K_SesSDMFileReadENC / K_SesSDMFileReadMAC."""
    enc, mac = sdm_session_keys(h("5ACE7E50AB65D5D51FD5BF5A16B8205B"), h("04C767F2066180"), 1)
    assert enc == h("66DA61797E23DECA5D8ECA13BBADF7A9")
    assert mac == h("3A3E8110E05311F7A3FCF0D969BF2B48")


def test_picc_data_decryption_an12196_table2():
    """AN12196 §3.4.2 Table 2: PICCENCData with K_SDMMetaRead = 0 -> tag C7, UID, counter 61."""
    uid, counter = decrypt_picc_data(ZERO, h("EF963FF7828658A599F3041510671E88"))
    assert uid == h("04DE5F1EACC040")
    assert counter == 0x3D == 61  # counter bytes 3D 00 00, least significant first


def test_file_data_decryption_an12196_table3():
    """AN12196 §3.4.3 Table 3: SDMENCFileData, K_SesSDMFileReadENC and IV from the counter."""
    uid = h("04958CAA5C5E80")
    enc_key, _ = sdm_session_keys(ZERO, uid, 1)
    assert enc_key == h("8097D73344D53F963B09E23E03B62336")
    assert decrypt_file_data(ZERO, uid, 1, h("94592FDE69FA06E8E3B6CA686A22842B")) \
        == b"xxxxxxxxxxxxxxxx"


def test_sdmmac_of_empty_input_an12196_table4():
    """AN12196 §3.4.4.2.1 Table 4 (and nfc.md): session MAC key, full CMAC, truncation."""
    uid, counter = h("04DE5F1EACC040"), 61
    _, mac_key = sdm_session_keys(ZERO, uid, counter)
    assert mac_key == h("3FB5F6E3A807A03D5E3570ACE393776F")
    full = aes_cmac(mac_key, b"")
    assert full == h("E194C7EE12D9F7EE8A65C8331B704386")
    assert truncate_mac(full) == h("94EED9EE65337086")
    assert sdm_mac(ZERO, uid, counter) == h("94EED9EE65337086")


def test_sdmmac_of_url_text_an12196_table5():
    """AN12196 §3.4.4.2.2 Table 5: MAC input is the URL text from the enc value to the MAC."""
    uid = h("04958CAA5C5E80")
    _, mac_key = sdm_session_keys(ZERO, uid, 8)
    assert mac_key == h("3ED0920E5E6A0320D823D5987FEAFBB1")
    assert sdm_mac(ZERO, uid, 8, b"CEE9A53E3E463EF1F459635736738962&cmac=") \
        == h("ECC1E7F6C6C73BF6")


def test_verify_table4_url():
    """AN12196 §3.4.4.2.1: the whole URL, e/c parameters, all-zero keys."""
    assert verify_sun(TABLE4_URL, ZERO_KEYS) == SunReading(h("04DE5F1EACC040"), 61, None)


def test_verify_table5_url_with_file_data():
    """AN12196 §3.4.4.2.2 (sdm-backend test_sun2): picc_data/enc/cmac, file data decrypted."""
    reading = verify_sun(TABLE5_URL, ZERO_KEYS)
    assert reading == SunReading(h("04958CAA5C5E80"), 8, b"xxxxxxxxxxxxxxxx")


def test_verify_plain_mirror_url():
    """sdm-backend tests/test_libsdm.py test_plain_sdm: plain UID, counter MSB first."""
    assert verify_sun(PLAIN_URL, ZERO_KEYS) == SunReading(h("041E3C8A2D6B80"), 6, None)


def test_custom_key_vector_from_sdm_backend():
    """sdm-backend tests/test_libsdm.py test_sun3_custom: non-zero keys, MAC over the enc hex."""
    meta, file_key = h("42aff114f2cb3b6141be6dc95dfc5416"), h("b62a9baf092439bd43c62aee96b970c5")
    uid, counter = decrypt_picc_data(meta, h("8ACADDEF0A9B62CDAE39A16B83FC14DE"))
    assert (uid, counter) == (h("041d3c8a2d6b80"), 291)
    assert sdm_mac(file_key, uid, counter, b"B8436E11F627BB7F543FCC0C1E0D1A89") \
        == h("238B2543A8DEBAD8")
    assert decrypt_file_data(file_key, uid, counter, h("B8436E11F627BB7F543FCC0C1E0D1A89")) \
        == h("4e545858716e6f5f6f42467077792d56")


@pytest.mark.parametrize(("p", "c", "counter", "mac_key"), [
    ("e61cb056f52d34f9368f079d1814d2cf", "fcc9a22201ea2298", 0, "85f6155e3414e60874534940a44703a2"),
    ("d798d011fa0bf5bd5ece6f42265b02d5", "b49d12860da69e54", 1, "e201ced0a166872a8d1746305d979edb"),
])
def test_boltcard_vectors_with_distinct_keys(p, c, counter, mac_key):
    """Amperstrand/ntag424-vectors vectors.json sdm-valid-picc-counter0/1: meta != file key."""
    keys = TagKeys(meta_read=h("55da174c9608993dc27bb3f30a4a7314"),
                   file_read=h("2ab74abc1273fb43cae97553a36d4d08"))
    reading = verify_sun(f"https://card.example/ln?p={p}&c={c}", keys,
                         template=SunTemplate(picc=("p",)))
    assert reading == SunReading(h("0425607a8f6980"), counter, None)
    assert sdm_session_keys(keys.file_read, reading.uid, counter)[1] == h(mac_key)


def test_an10922_aes128_diversification_example():
    """AN10922 §2.2.1: M = UID || AID 3042F5 || "NXP Abu"; subkeys and diversified key."""
    master = h("00112233445566778899AABBCCDDEEFF")
    assert _cmac_subkeys(master) == (h("FBC9F75C9413C041DFEE452D3F0706D1"),
                                     h("F793EEB928278083BFDC8A5A7E0E0D25"))
    key = diversify(master, h("04782E21801D80"), application_id=h("3042F5"),
                    system_identifier=h("4E585020416275"))
    assert key == h("A8DD63A3B89D54B37CA802473FDA9175")


# --- diversification properties ----------------------------------------------------------


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=31))
def test_diversify_equals_plain_cmac_when_no_extra_block_is_padded(master, m):
    """With 16-31 bytes of M, AN10922's 32-byte rule is exactly AES-CMAC(01 || M)."""
    assert diversify(master, m, application_id=b"") == aes_cmac(master, b"\x01" + m)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=1, max_size=15))
def test_diversify_pads_short_input_to_two_blocks(master, m):
    """With under 16 bytes of M, AN10922 pads to 32 bytes, unlike plain CMAC (one block)."""
    assert diversify(master, m, application_id=b"") != aes_cmac(master, b"\x01" + m)


def test_diversify_separates_tags_and_key_numbers():
    master = bytes(range(16))
    uid = h("04112233445566")
    keys = {diversify(master, uid, system_identifier=bytes([n])) for n in range(5)}
    assert len(keys) == 5
    assert diversify(master, h("04112233445567")) != diversify(master, uid)


@pytest.mark.parametrize(("master", "uid", "extra"), [
    (bytes(15), bytes(7), b""), (bytes(16), b"", b""), (bytes(16), bytes(7), bytes(25)),
])
def test_diversify_refuses_bad_input(master, uid, extra):
    with pytest.raises(ValueError):
        diversify(master, uid, application_id=b"", system_identifier=extra)


# --- refusals ----------------------------------------------------------------------------


def flip(url: str, index: int) -> str:
    digit = url[index]
    return url[:index] + ("1" if digit != "1" else "2") + url[index + 1 :]


def test_tampered_cmac_is_bad_mac():
    with pytest.raises(SunBadMac) as caught:
        verify_sun(flip(TABLE4_URL, len(TABLE4_URL) - 1), ZERO_KEYS)
    assert caught.value.reason == "bad_mac"


def test_tampered_file_data_is_bad_mac():
    """sdm-backend test_sun2_wrong_sdmmac spirit: the MAC covers the enc text."""
    index = TABLE5_URL.index("enc=") + 6
    with pytest.raises(SunBadMac):
        verify_sun(flip(TABLE5_URL, index), ZERO_KEYS)
    wrong = TABLE5_URL.replace("ECC1E7F6C6C73BF6", "3CC1E7F6C6C33B33")  # sdm-backend's own
    with pytest.raises(SunBadMac):
        verify_sun(wrong, ZERO_KEYS)


def test_wrong_meta_read_key_is_wrong_tag():
    with pytest.raises(SunWrongTag) as caught:
        verify_sun(TABLE4_URL, TagKeys(meta_read=bytes(range(16)), file_read=ZERO))
    assert caught.value.reason == "wrong_tag"


def test_wrong_file_read_key_is_bad_mac():
    with pytest.raises(SunBadMac):
        verify_sun(TABLE4_URL, TagKeys(meta_read=ZERO, file_read=bytes(range(16))))
    with pytest.raises(SunBadMac):
        verify_sun(PLAIN_URL, TagKeys(meta_read=ZERO, file_read=bytes(range(16))))


def test_expected_uid():
    assert verify_sun(TABLE4_URL, ZERO_KEYS, expected_uid=h("04DE5F1EACC040")).counter == 61
    with pytest.raises(SunUidMismatch) as caught:
        verify_sun(TABLE4_URL, ZERO_KEYS, expected_uid=h("04DE5F1EACC041"))
    assert caught.value.reason == "uid_mismatch"


def test_keys_for_callable():
    asked: list[bytes] = []

    def keys_for(uid: bytes) -> TagKeys:
        asked.append(uid)
        return ZERO_KEYS

    assert verify_sun(TABLE4_URL, keys_for, meta_read=ZERO).uid == h("04DE5F1EACC040")
    assert verify_sun(PLAIN_URL, keys_for).counter == 6  # plain: no meta-read key needed
    assert asked == [h("04DE5F1EACC040"), h("041E3C8A2D6B80")]
    with pytest.raises(ValueError, match="meta_read"):
        verify_sun(TABLE4_URL, keys_for)


def test_unknown_tag_from_keys_for_is_wrong_tag():
    def keys_for(uid: bytes) -> TagKeys:
        raise KeyError(uid)

    with pytest.raises(SunWrongTag, match="no keys"):
        verify_sun(TABLE4_URL, keys_for, meta_read=ZERO)


@pytest.mark.parametrize(("url", "says"), [
    ("https://ntag.nxp.com/424", "no query"),
    ("https://x/?e=EF963FF7828658A599F3041510671E88", "no MAC"),
    ("https://x/?c=94EED9EE65337086", "neither"),
    ("https://x/?e=EF963FF7828658A599F3041510671E8&c=94EED9EE65337086", "32 hex"),
    ("https://x/?e=EF963FF7828658A599F3041510671E88&c=94EED9EE6533708", "16 hex"),
    ("https://x/?e=EF963FF7828658A599F3041510671EXX&c=94EED9EE65337086", "hex digits"),
    ("https://x/?e=EF963FF7828658A599F3041510671E 8&c=94EED9EE65337086", "hex digits"),
    ("https://x/?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086&c=94EED9EE65337086",
     "2 times"),
    ("https://x/?e=EF963FF7828658A599F3041510671E88&picc_data=EF963FF7828658A599F3041510671E88"
     "&c=94EED9EE65337086", "2 times"),
    ("https://x/?uid=041E3C8A2D6B80&cmac=4B00064004B0B3D3", "neither"),
    ("https://x/?e=EF963FF7828658A599F3041510671E88&uid=041E3C8A2D6B80&ctr=000006"
     "&c=94EED9EE65337086", "both"),
    ("https://x/?e=EF963FF7828658A599F3041510671E88&enc=CEE9A53E&c=94EED9EE65337086",
     "AES blocks"),
    ("https://x/?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
     "&enc=CEE9A53E3E463EF1F459635736738962", "after the MAC"),
])
def test_malformed(url, says):
    with pytest.raises(SunMalformed, match=says) as caught:
        verify_sun(url, ZERO_KEYS)
    assert caught.value.reason == "malformed"


def test_hex_is_case_insensitive():
    base, query = TABLE4_URL.split("?")
    lower = base + "?" + query.lower()
    assert verify_sun(lower, ZERO_KEYS).counter == 61
    assert verify_sun(PLAIN_URL.lower(), ZERO_KEYS).counter == 6


def test_mac_input_text_is_taken_as_received():
    """The MAC covers the URL text itself: lowercasing MACed text breaks it (as on the tag)."""
    index = TABLE5_URL.index("enc=") + 4
    lowered = TABLE5_URL[:index] + TABLE5_URL[index:].lower()
    with pytest.raises(SunBadMac):
        verify_sun(lowered, ZERO_KEYS)


def test_template_names_and_mac_input_offset():
    renamed = TABLE5_URL.replace("picc_data=", "p=").replace("enc=", "f=").replace("cmac=", "m=")
    template = SunTemplate(picc=("p",), enc=("f",), mac=("m",))
    with pytest.raises(SunBadMac):  # "f=..&m=" is not the "enc=..&cmac=" the tag MACed
        verify_sun(renamed, ZERO_KEYS, template=template)
    original = SunTemplate(mac_input_offset=TABLE5_URL.index("CEE9"))
    assert verify_sun(TABLE5_URL, ZERO_KEYS, template=original).counter == 8
    with pytest.raises(SunMalformed, match="after the MAC"):
        verify_sun(TABLE5_URL, ZERO_KEYS, template=SunTemplate(mac_input_offset=len(TABLE5_URL)))
    with pytest.raises(SunBadMac):  # an offset that covers more than the tag did
        verify_sun(TABLE5_URL, ZERO_KEYS, template=SunTemplate(mac_input_offset=0))
    with pytest.raises(SunMalformed, match="no MAC"):  # the default names are not accepted
        verify_sun(renamed, ZERO_KEYS, template=SunTemplate(picc=("p",), enc=("f",)))


def test_fragment_is_not_part_of_the_query():
    assert verify_sun(TABLE4_URL + "#top", ZERO_KEYS).counter == 61


# --- replay ------------------------------------------------------------------------------


def test_check_counter():
    reading = SunReading(h("04DE5F1EACC040"), 61)
    check_counter(reading, None)
    check_counter(reading, 60)
    for last in (61, 62, 1000):
        with pytest.raises(SunReplay) as caught:
            check_counter(reading, last)
        assert caught.value.reason == "replay"


def test_errors_have_distinct_reasons_and_are_value_errors():
    classes = [SunMalformed, SunBadMac, SunWrongTag, SunUidMismatch, SunReplay]
    assert len({cls.reason for cls in classes}) == len(classes)
    error = SunMalformed("x")
    assert isinstance(error, SunError) and isinstance(error, ValueError)
    assert str(error) == "malformed: x" and error.detail == "x"


def test_data_classes():
    with pytest.raises(ValueError):
        TagKeys(meta_read=bytes(15), file_read=ZERO)
    assert repr(TagKeys(bytes(range(16)), bytes(range(16)))) == "TagKeys()"  # keys stay out of logs
    with pytest.raises(dataclasses.FrozenInstanceError):
        SunReading(b"", 0).counter = 1  # type: ignore[misc]


# --- robustness --------------------------------------------------------------------------


def verify_or_refuse(url: str) -> None:
    with contextlib.suppress(SunError):
        verify_sun(url, ZERO_KEYS)


@given(st.text())
def test_arbitrary_text_raises_only_sun_errors(url):
    verify_or_refuse(url)


QUERYISH = st.lists(st.sampled_from(
    ["e", "c", "picc_data", "cmac", "enc", "uid", "ctr", "=", "&", "?", "#", "0", "9", "a",
     "F", "g", " ", "%", "\u00e9", "\ud800", "EF963FF7828658A599F3041510671E88",
     "94EED9EE65337086", "CEE9A53E3E463EF1F459635736738962"]), max_size=30).map("".join)


@given(QUERYISH)
def test_query_like_text_raises_only_sun_errors(query):
    verify_or_refuse("https://x/?" + query)


@given(st.integers(min_value=0, max_value=len(TABLE5_URL) - 1), st.characters())
def test_any_single_change_to_a_valid_url_is_refused_or_harmless(index, char):
    url = TABLE5_URL[:index] + char + TABLE5_URL[index + 1 :]
    try:
        reading = verify_sun(url, ZERO_KEYS)
    except SunError:
        return
    assert reading == verify_sun(TABLE5_URL, ZERO_KEYS)  # e.g. a changed host or hex case
