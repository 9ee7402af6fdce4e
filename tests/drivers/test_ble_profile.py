"""The lock profile's codecs, versioning and proof MAC (pure: no Bluetooth here)."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble import profile
from drivers.ble.errors import LockError, PayloadError, UnsupportedVersion
from drivers.ble.profile import BindingState

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "lock-profile.md"

# The vector in docs/lock-profile.md: change both together, never one.
SECRET = bytes(range(16))  # 000102...0f
NONCE = bytes(range(0xA0, 0xB0))  # a0a1...af
SERIAL = "NF-000123"
CLIENT = "K-1"
BOUND = BindingState(bound=True, counter=1)
MESSAGE_HEX = "01a0a1a2a3a4a5a6a7a8a9aaabacadaeaf094e462d3030303132330101000000034b2d31"
MAC_HEX = "840bdecbb958b1d49b5baf9740eeee1a"
UNBOUND_MAC_HEX = "fea2334b8346ae91ebb02e95ba9f4804"  # BindingState(False, 2), ref ""
TAG_HEX = "9fea317d"

serials = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                  max_size=profile.MAX_SERIAL_LEN)
refs = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E),
               max_size=profile.MAX_CLIENT_REF_LEN).filter(
                   lambda ref: not profile.looks_like_identity_number(ref))
bindings = st.builds(BindingState, st.booleans(), st.integers(0, 0xFFFFFFFF))


def reference_cmac(key: bytes, message: bytes) -> bytes:
    """RFC 4493 written out from AES-ECB: an independent check of cryptography's CMAC."""
    def aes(block: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        return encryptor.update(block) + encryptor.finalize()

    def double(block: bytes) -> bytes:
        value = int.from_bytes(block, "big") << 1
        if block[0] & 0x80:
            value ^= 0x87
        return (value & (1 << 128) - 1).to_bytes(16, "big")

    k1 = double(aes(bytes(16)))
    k2 = double(k1)
    blocks = [message[i:i + 16] for i in range(0, len(message), 16)] or [b""]
    last = blocks[-1]
    if len(last) == 16:
        last = bytes(a ^ b for a, b in zip(last, k1, strict=True))
    else:
        padded = last + b"\x80" + bytes(15 - len(last))
        last = bytes(a ^ b for a, b in zip(padded, k2, strict=True))
    state = bytes(16)
    for block in [*blocks[:-1], last]:
        state = aes(bytes(a ^ b for a, b in zip(state, block, strict=True)))
    return state


# --- MAC vectors -----------------------------------------------------------------------


def test_cmac_matches_rfc_4493_example_2():
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    message = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert reference_cmac(key, message).hex() == "070a16b46b4d4144f79bdd9dd04a287c"


def test_mac_message_is_pinned():
    assert profile.mac_message(NONCE, SERIAL, BOUND, CLIENT).hex() == MESSAGE_HEX


def test_mac_vectors_are_pinned():
    assert profile.compute_mac(SECRET, NONCE, SERIAL, BOUND, CLIENT).hex() == MAC_HEX
    unbound = BindingState(bound=False, counter=2)
    assert profile.compute_mac(SECRET, NONCE, SERIAL, unbound, "").hex() == UNBOUND_MAC_HEX


def test_mac_is_aes_cmac_of_the_message():
    message = profile.mac_message(NONCE, SERIAL, BOUND, CLIENT)
    assert profile.compute_mac(SECRET, NONCE, SERIAL, BOUND, CLIENT) == \
        reference_cmac(SECRET, message)[:profile.MAC_LEN]


def test_the_spec_page_carries_the_same_vector():
    text = SPEC.read_text()
    for value in (SECRET.hex(), NONCE.hex(), MESSAGE_HEX, MAC_HEX, TAG_HEX):
        assert value in text.replace(" ", ""), f"{value} missing from {SPEC.name}"


def test_the_spec_page_names_every_uuid_and_constant():
    text = SPEC.read_text().lower()
    for uuid in (profile.LOCK_SERVICE, profile.BOUND_CLIENT_CHAR, profile.BINDING_STATE_CHAR,
                 profile.CHALLENGE_CHAR, profile.RESPONSE_CHAR):
        assert uuid in text
    assert "0xffff" in text
    assert re.search(r"0x80\b", text), "the unsupported-version ATT error code"


# --- verify_response -------------------------------------------------------------------


def test_verify_response_accepts_the_locks_answer():
    response = profile.encode_response(profile.compute_mac(SECRET, NONCE, SERIAL, BOUND, CLIENT))
    assert profile.verify_response(SECRET, NONCE, SERIAL, BOUND, CLIENT, response)


@pytest.mark.parametrize("change", ["secret", "nonce", "serial", "bound", "counter", "client"])
def test_verify_response_rejects_any_other_reading(change):
    response = profile.encode_response(profile.compute_mac(SECRET, NONCE, SERIAL, BOUND, CLIENT))
    args: dict[str, Any] = {"secret": SECRET, "nonce": NONCE, "serial": SERIAL,
                            "binding": BOUND, "client_ref": CLIENT}
    changes: dict[str, dict[str, Any]] = {
        "secret": {"secret": bytes(16)},
        "nonce": {"nonce": bytes(16)},
        "serial": {"serial": "NF-000124"},
        "bound": {"binding": BindingState(False, 1)},
        "counter": {"binding": BindingState(True, 2)},
        "client": {"client_ref": "K-2"},
    }
    args.update(changes[change])
    assert not profile.verify_response(response=response, **args)


def test_verify_response_rejects_a_flipped_bit():
    mac = bytearray(profile.compute_mac(SECRET, NONCE, SERIAL, BOUND, CLIENT))
    mac[-1] ^= 1
    response = profile.encode_response(bytes(mac))
    assert not profile.verify_response(SECRET, NONCE, SERIAL, BOUND, CLIENT, response)


def test_verify_response_refuses_to_judge_what_it_cannot_read():
    with pytest.raises(UnsupportedVersion):
        profile.verify_response(SECRET, NONCE, SERIAL, BOUND, CLIENT, b"\x02" + bytes(16))
    with pytest.raises(PayloadError):
        profile.verify_response(SECRET, NONCE, SERIAL, BOUND, CLIENT, b"\x01" + bytes(8))


@given(serials, refs, bindings, st.binary(min_size=16, max_size=16),
       st.binary(min_size=16, max_size=16))
def test_a_lock_with_the_secret_always_verifies(serial, ref, binding, secret, nonce):
    response = profile.encode_response(profile.compute_mac(secret, nonce, serial, binding, ref))
    assert profile.verify_response(secret, nonce, serial, binding, ref, response)


@given(serials, serials, refs)
def test_length_prefixes_keep_fields_apart(serial_a, serial_b, ref):
    # "AB" + "C" must never MAC like "A" + "BC": serial and ref are length-prefixed.
    joined_a = profile.mac_message(NONCE, serial_a, BOUND, ref)
    joined_b = profile.mac_message(NONCE, serial_b, BOUND, ref)
    assert (joined_a == joined_b) == (serial_a == serial_b)


def test_verify_response_uses_a_constant_time_compare():
    source = Path(profile.__file__).read_text()
    body = source[source.index("def verify_response"):]
    assert "hmac.compare_digest" in body and " == answer.mac" not in body


# --- payloads and versioning -----------------------------------------------------------


def test_payloads_have_the_documented_layout():
    assert profile.encode_challenge(NONCE).hex() == "01" + NONCE.hex()
    assert profile.encode_binding(BOUND).hex() == "010101000000"
    assert profile.encode_bound_client(CLIENT).hex() == "014b2d31"
    assert profile.encode_bound_client("").hex() == "01"
    assert profile.device_tag(SERIAL).hex() == TAG_HEX
    assert profile.encode_manufacturer_data(SERIAL).hex() == "01" + TAG_HEX


def test_every_lock_payload_fits_one_notification_at_the_default_mtu():
    longest_ref = "R" * profile.MAX_CLIENT_REF_LEN
    payloads = [
        profile.encode_challenge(NONCE),
        profile.encode_response(bytes(profile.MAC_LEN)),
        profile.encode_binding(BindingState(True, 0xFFFFFFFF)),
        profile.encode_bound_client(longest_ref),
    ]
    assert max(map(len, payloads)) <= profile.MAX_PAYLOAD == 20


@pytest.mark.parametrize("decode,payload", [
    (profile.decode_challenge, b"\x02" + bytes(16)),
    (profile.decode_response, b"\x07" + bytes(16)),
    (profile.decode_binding, b"\x00\x01\x01\x00\x00\x00"),
    (profile.decode_bound_client, b"\xffK-1"),
    (profile.decode_manufacturer_data, b"\x02\x00\x00\x00\x00"),
])
def test_decoders_reject_unknown_versions_clearly(decode, payload):
    with pytest.raises(UnsupportedVersion) as caught:
        decode(payload)
    assert caught.value.version == payload[0]
    assert "Update the agent" in str(caught.value)
    assert isinstance(caught.value, LockError)


@pytest.mark.parametrize("decode,payload", [
    (profile.decode_challenge, b""),
    (profile.decode_challenge, b"\x01" + bytes(15)),
    (profile.decode_response, b"\x01" + bytes(17)),
    (profile.decode_binding, b"\x01\x02\x00\x00\x00\x00"),
    (profile.decode_binding, b"\x01\x01"),
    (profile.decode_bound_client, b"\x01K 1"),
    (profile.decode_bound_client, b"\x01" + b"R" * 20),
    (profile.decode_battery, b"\x65"),
    (profile.decode_battery, b""),
    (profile.decode_serial, b"NF\xff"),
    (profile.decode_manufacturer_data, b"\x01\x00\x00"),
])
def test_decoders_reject_malformed_payloads(decode, payload):
    with pytest.raises(PayloadError):
        decode(payload)


@given(st.binary(min_size=16, max_size=16))
def test_challenge_round_trips(nonce):
    assert profile.decode_challenge(profile.encode_challenge(nonce)).nonce == nonce


@given(bindings)
def test_binding_round_trips(binding):
    assert profile.decode_binding(profile.encode_binding(binding)) == binding


@given(refs)
def test_bound_client_round_trips(ref):
    assert profile.decode_bound_client(profile.encode_bound_client(ref)) == ref


@given(st.binary(max_size=40))
def test_decoders_raise_only_payload_errors_on_garbage(data):
    for decode in (profile.decode_challenge, profile.decode_response, profile.decode_binding,
                   profile.decode_bound_client, profile.decode_manufacturer_data,
                   profile.decode_battery, profile.decode_serial, profile.decode_firmware):
        with contextlib.suppress(PayloadError):
            decode(data)


@pytest.mark.parametrize("bad", ["", "has space", "x" * 21, "Åsa"])
def test_serials_are_short_printable_ascii(bad):
    with pytest.raises(ValueError):
        profile.check_serial(bad)


@pytest.mark.parametrize("bad", ["Anna Andersson", "R" * 20, "19121212-1212", "121212-1212",
                                 "1212121212", "K-191212121212"])
def test_client_refs_are_opaque_never_names_or_identity_numbers(bad):
    with pytest.raises(ValueError):
        profile.check_client_ref(bad)


@pytest.mark.parametrize("fine", ["", "K-1", "K-000042", "C-20261130-7"])
def test_opaque_client_refs_pass(fine):
    assert profile.check_client_ref(fine) == fine


def test_a_lock_that_carries_an_identity_number_is_refused():
    with pytest.raises(PayloadError, match="personal identity number"):
        profile.decode_bound_client(b"\x01" + b"191212121212")


def test_a_secret_is_sixteen_bytes():
    with pytest.raises(ValueError):
        profile.compute_mac(bytes(15), NONCE, SERIAL, BOUND, CLIENT)


def test_the_profile_imports_without_any_bluetooth_stack():
    # The centre verifies proofs: profile (and errors) must not pull in bleak or bumble.
    code = ("import sys, drivers.ble.profile, drivers.ble.errors; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('bleak', 'bumble', 'bleak_retry_connector', 'dbus_fast')); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
