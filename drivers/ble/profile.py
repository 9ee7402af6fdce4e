"""The open nyckelfri lock profile: UUIDs, payload codecs and the proof MAC.

Pure functions only: this module imports the standard library and
``cryptography``, never bleak or bumble, so the centre (which alone holds lock
secrets) can verify a recorded proof with :func:`verify_response`. The spec page
is ``docs/lock-profile.md``; the two must agree (tests pin the vectors).

A fitter's agent writes a challenge (version + 16-byte nonce); the lock answers
with version + AES-CMAC, keyed with its per-lock 16-byte secret, over::

    version (1) || nonce (16) || len(serial) (1) || serial (ASCII)
      || bound (1) || binding counter (4, little-endian)
      || len(client ref) (1) || client ref (ASCII)

Every payload of the lock service starts with a version byte and fits in 20
bytes, the value room of one notification or read at the default ATT MTU of 23,
so no MTU exchange is needed on any stack.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from drivers.ble.errors import PayloadError, UnsupportedVersion

# --- identifiers -----------------------------------------------------------------------


def sig_uuid(short: int) -> str:
    """A Bluetooth SIG 16-bit UUID in the 128-bit string form bleak uses."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


DEVICE_INFORMATION_SERVICE = sig_uuid(0x180A)
SERIAL_NUMBER_CHAR = sig_uuid(0x2A25)  # UTF-8 string
FIRMWARE_REVISION_CHAR = sig_uuid(0x2A26)  # UTF-8 string
BATTERY_SERVICE = sig_uuid(0x180F)
BATTERY_LEVEL_CHAR = sig_uuid(0x2A19)  # uint8, percent

# The nyckelfri lock service: random 128-bit UUIDs (uuid4, generated once), the
# characteristics differing from the service in the last byte of the first group.
LOCK_SERVICE = "8984ce00-1153-4d8c-80e7-424b2e25b402"
BOUND_CLIENT_CHAR = "8984ce01-1153-4d8c-80e7-424b2e25b402"  # read
BINDING_STATE_CHAR = "8984ce02-1153-4d8c-80e7-424b2e25b402"  # read
CHALLENGE_CHAR = "8984ce03-1153-4d8c-80e7-424b2e25b402"  # write (with response)
RESPONSE_CHAR = "8984ce04-1153-4d8c-80e7-424b2e25b402"  # notify + read

# 0xFFFF is the Bluetooth SIG's company identifier reserved for tests and
# internal use. An open profile with no company of its own uses it until a vendor
# adapter maps a real lock's id; the service UUID keeps other 0xFFFF users out.
COMPANY_ID = 0xFFFF

PROFILE_VERSION = 1
KNOWN_VERSIONS: tuple[int, ...] = (1,)

NONCE_LEN = 16  # one AES block: never repeats in practice when random
SECRET_LEN = 16  # AES-128 key
MAC_LEN = 16  # the full CMAC tag; 1 + 16 = 17 bytes leaves room below 20
TAG_LEN = 4  # device tag in the advertisement: tells locks apart, reveals nothing
ATT_DEFAULT_MTU = 23  # Bluetooth Core Vol 3 Part F 3.2.8
MAX_PAYLOAD = ATT_DEFAULT_MTU - 3  # value room of one notification / write at MTU 23
MAX_SERIAL_LEN = 20  # a whole serial fits one read without READ BLOB
MAX_CLIENT_REF_LEN = MAX_PAYLOAD - 1  # version byte + reference

# ATT application error codes (0x80-0x9F) the lock answers a bad challenge with;
# a challenge of the wrong length gets the standard 0x0D (invalid value length).
ATT_ERROR_UNSUPPORTED_VERSION = 0x80
ATT_ERROR_INVALID_ATTRIBUTE_LENGTH = 0x0D

_TAG_DOMAIN = b"nyckelfri-tag\x00"
# A Swedish personal identity number (personnummer / samordningsnummer), with or
# without century and separator: never allowed where an opaque reference belongs.
_IDENTITY_NUMBER = re.compile(r"(?<!\d)(\d{2})?\d{6}[-+]?\d{4}(?!\d)")
_BINDING = struct.Struct("<BBI")  # version, bound, counter
_COUNTER_MAX = 0xFFFFFFFF


# --- values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BindingState:
    """Whether the lock is bound to a client, and how many bindings it has had."""

    bound: bool
    counter: int


@dataclass(frozen=True)
class Challenge:
    version: int
    nonce: bytes


@dataclass(frozen=True)
class Response:
    version: int
    mac: bytes


@dataclass(frozen=True)
class Advert:
    """What a lock's manufacturer data says: profile version and device tag."""

    version: int
    tag: bytes


# --- checks ----------------------------------------------------------------------------


def _is_token(text: str) -> bool:
    return all(0x21 <= ord(ch) <= 0x7E for ch in text)


def check_serial(serial: str) -> str:
    """A serial is 1-20 printable ASCII characters without spaces."""
    if not 1 <= len(serial) <= MAX_SERIAL_LEN or not _is_token(serial):
        raise ValueError(f"a lock serial is 1-{MAX_SERIAL_LEN} printable ASCII "
                         f"characters without spaces, not {serial!r}")
    return serial


def check_client_ref(ref: str) -> str:
    """A bound client reference is opaque: 0-19 printable ASCII, never a name or id number."""
    if len(ref) > MAX_CLIENT_REF_LEN or not _is_token(ref):
        raise ValueError(f"a client reference is 0-{MAX_CLIENT_REF_LEN} printable ASCII "
                         f"characters without spaces, not {ref!r}")
    if looks_like_identity_number(ref):
        raise ValueError("a client reference must be opaque, not a personal identity number")
    return ref


def looks_like_identity_number(text: str) -> bool:
    """True when ``text`` contains what looks like a Swedish personal identity number."""
    return _IDENTITY_NUMBER.search(text) is not None


def _version(payload: bytes, what: str) -> int:
    if not payload:
        raise PayloadError(what, "empty")
    version = payload[0]
    if version not in KNOWN_VERSIONS:
        raise UnsupportedVersion(what, version, KNOWN_VERSIONS)
    return version


def _ascii(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PayloadError(what, f"not ASCII ({raw[:24].hex()})") from exc
    if not _is_token(text):
        raise PayloadError(what, f"not printable ASCII ({text!r})")
    return text


# --- advertisement ---------------------------------------------------------------------


def device_tag(serial: str) -> bytes:
    """The 4-byte tag a lock advertises: SHA-256 over a label and the serial."""
    return hashlib.sha256(_TAG_DOMAIN + check_serial(serial).encode("ascii")).digest()[:TAG_LEN]


def encode_manufacturer_data(serial: str, version: int = PROFILE_VERSION) -> bytes:
    """Manufacturer data after the company id: version (1) + device tag (4)."""
    return bytes([version]) + device_tag(serial)


def decode_manufacturer_data(payload: bytes) -> Advert:
    version = _version(payload, "manufacturer data")
    if len(payload) != 1 + TAG_LEN:
        raise PayloadError("manufacturer data", f"{len(payload)} bytes, expected {1 + TAG_LEN}")
    return Advert(version, bytes(payload[1:]))


# --- standard characteristics ----------------------------------------------------------


def decode_serial(payload: bytes) -> str:
    text = _ascii(bytes(payload), "serial number")
    if not 1 <= len(text) <= MAX_SERIAL_LEN:
        raise PayloadError("serial number", f"{len(text)} characters")
    return text


def decode_firmware(payload: bytes) -> str:
    try:
        return bytes(payload).decode("utf-8").strip("\x00 ")
    except UnicodeDecodeError as exc:
        raise PayloadError("firmware revision", f"not UTF-8 ({payload[:24].hex()})") from exc


def decode_battery(payload: bytes) -> int:
    if len(payload) != 1 or payload[0] > 100:
        raise PayloadError("battery level", f"expected one byte 0-100, got {bytes(payload).hex()}")
    return payload[0]


# --- lock service ----------------------------------------------------------------------


def encode_bound_client(ref: str, version: int = PROFILE_VERSION) -> bytes:
    """Bound client: version (1) + opaque reference (0-19 ASCII); empty when unbound."""
    return bytes([version]) + check_client_ref(ref).encode("ascii")


def decode_bound_client(payload: bytes) -> str:
    """The reference; refuses one that looks like personal data (never record that)."""
    _version(payload, "bound client")
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError("bound client", f"{len(payload)} bytes, at most {MAX_PAYLOAD}")
    ref = _ascii(bytes(payload[1:]), "bound client") if len(payload) > 1 else ""
    if looks_like_identity_number(ref):
        raise PayloadError("bound client", "it looks like a personal identity number; the "
                                           "lock must be re-bound with an opaque reference")
    return ref


def encode_binding(state: BindingState, version: int = PROFILE_VERSION) -> bytes:
    """Binding state: version (1) + bound (1: 0 or 1) + counter (4, little-endian)."""
    if not 0 <= state.counter <= _COUNTER_MAX:
        raise ValueError(f"binding counter out of range: {state.counter}")
    return _BINDING.pack(version, int(state.bound), state.counter)


def decode_binding(payload: bytes) -> BindingState:
    _version(payload, "binding state")
    if len(payload) != _BINDING.size:
        raise PayloadError("binding state", f"{len(payload)} bytes, expected {_BINDING.size}")
    _, bound, counter = _BINDING.unpack(bytes(payload))
    if bound not in (0, 1):
        raise PayloadError("binding state", f"bound flag {bound}, expected 0 or 1")
    return BindingState(bool(bound), counter)


def encode_challenge(nonce: bytes, version: int = PROFILE_VERSION) -> bytes:
    """Challenge: version (1) + nonce (16) = 17 bytes."""
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"a nonce is {NONCE_LEN} bytes, not {len(nonce)}")
    return bytes([version]) + bytes(nonce)


def decode_challenge(payload: bytes) -> Challenge:
    version = _version(payload, "challenge")
    if len(payload) != 1 + NONCE_LEN:
        raise PayloadError("challenge", f"{len(payload)} bytes, expected {1 + NONCE_LEN}")
    return Challenge(version, bytes(payload[1:]))


def encode_response(mac: bytes, version: int = PROFILE_VERSION) -> bytes:
    """Response: version (1) + MAC (16) = 17 bytes."""
    if len(mac) != MAC_LEN:
        raise ValueError(f"a MAC is {MAC_LEN} bytes, not {len(mac)}")
    return bytes([version]) + bytes(mac)


def decode_response(payload: bytes) -> Response:
    version = _version(payload, "response")
    if len(payload) != 1 + MAC_LEN:
        raise PayloadError("response", f"{len(payload)} bytes, expected {1 + MAC_LEN}")
    return Response(version, bytes(payload[1:]))


# --- the proof -------------------------------------------------------------------------


def mac_message(nonce: bytes, serial: str, binding: BindingState, client_ref: str,
                *, version: int = PROFILE_VERSION) -> bytes:
    """The exact bytes the lock MACs (see the module docstring)."""
    if len(nonce) != NONCE_LEN:
        raise ValueError(f"a nonce is {NONCE_LEN} bytes, not {len(nonce)}")
    serial_bytes = check_serial(serial).encode("ascii")
    ref_bytes = check_client_ref(client_ref).encode("ascii")
    return b"".join((
        bytes([version]), bytes(nonce),
        bytes([len(serial_bytes)]), serial_bytes,
        _BINDING.pack(version, int(binding.bound), binding.counter)[1:],
        bytes([len(ref_bytes)]), ref_bytes,
    ))


def compute_mac(secret: bytes, nonce: bytes, serial: str, binding: BindingState,
                client_ref: str, *, version: int = PROFILE_VERSION) -> bytes:
    """AES-CMAC (RFC 4493) with the lock's secret, truncated to MAC_LEN bytes."""
    if len(secret) != SECRET_LEN:
        raise ValueError(f"a lock secret is {SECRET_LEN} bytes, not {len(secret)}")
    cmac = CMAC(algorithms.AES(bytes(secret)))
    cmac.update(mac_message(nonce, serial, binding, client_ref, version=version))
    return cmac.finalize()[:MAC_LEN]


def verify_response(secret: bytes, nonce: bytes, serial: str, binding: BindingState,
                    client_ref: str, response: bytes) -> bool:
    """True when ``response`` (the payload the lock sent) proves ``secret``.

    Compares in constant time. Raises :class:`PayloadError` (or
    :class:`UnsupportedVersion`) when the response cannot be judged at all, which
    is not the same as a forged one.
    """
    answer = decode_response(response)
    expected = compute_mac(secret, nonce, serial, binding, client_ref, version=answer.version)
    return hmac.compare_digest(expected, answer.mac)
