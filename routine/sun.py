"""NTAG 424 DNA SUN (Secure Unique NFC): verify the URL a tag produced, without I/O.

On every read an NTAG 424 DNA with Secure Dynamic Messaging (SDM) enabled rewrites
parts of its NDEF URL (NXP NT4H2421Gx §9.3, AN12196 §3):

* **PICC data**, either encrypted (``e=`` / ``picc_data=``: 16 bytes, AES-128-CBC with
  IV 0 under K_SDMMetaRead, holding the PICCDataTag byte ``C7``, the 7-byte UID and the
  3-byte read counter SDMReadCtr, least significant byte first, then random padding) or
  plain (``uid=`` 14 hex and ``ctr=`` 6 hex, the counter most significant digit first);
* optionally **encrypted file data** (``enc=``): file bytes encrypted with
  AES-128-CBC under K_SesSDMFileReadENC, IV = AES-ECB(K_SesSDMFileReadENC, SDMReadCtr ||
  13 zero bytes);
* the **SDMMAC** (``c=`` / ``cmac=``): AES-CMAC under K_SesSDMFileReadMAC over the URL
  text from SDMMACInputOffset up to the MAC (empty when the MAC directly follows the PICC
  data), truncated to the odd-indexed bytes 1, 3, ..., 15.

The session keys are AES-CMAC(K_SDMFileRead, SV), with SV1 = ``C3 3C 00 01 00 80`` ||
UID || SDMReadCtr for encryption and SV2 = ``3C C3 00 01 00 80`` || UID || SDMReadCtr for
the MAC, both zero-padded to 16 bytes.

A valid MAC proves the URL came from a tag holding the file-read key; it does not stop a
replayed URL. :func:`check_counter` does: accept a counter only when it is strictly greater
than the last one accepted for that UID (stored durably by the caller).

Keys are diversified per tag (:func:`diversify`, NXP AN10922; :func:`tag_key_set`), the
meta-read key too: nyckelfri's tags keep their static UID (no random ID), so the reader
knows the UID from anticollision before it decrypts, and checks that the PICC data names
the same one (``expected_uid``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

KEY_LENGTH = 16
UID_LENGTH = 7
COUNTER_LENGTH = 3
PICC_DATA_TAG = 0xC7  # bit 7 UID mirrored, bit 6 SDMReadCtr mirrored, bits 3-0 UID length 7
SV1_PREFIX = bytes.fromhex("c33c00010080")  # -> K_SesSDMFileReadENC
SV2_PREFIX = bytes.fromhex("3cc300010080")  # -> K_SesSDMFileReadMAC
NDEF_APPLICATION_DF_NAME = bytes.fromhex("d2760000850101")  # the NTAG 424 DNA NDEF application
AN10922_AES128 = 0x01  # AN10922 diversification constant for an AES-128 key
_BLOCK = 16
MAX_SUN_URL = 1024  # longer than any NDEF URL an NTAG 424 DNA's 256-byte file holds
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class TagPolicy(StrEnum):
    """What a tag at the door must prove, per deployment (strongest first).

    ``sun_required``: every tag must give a fresh, valid SUN (NTAG 424 DNA); others are
    refused. ``signature``: a tag with SUN keys must give a valid SUN, any other tag a
    valid NXP originality signature. ``uid_only``: a SUN tag is still checked, other tags
    are accepted on their UID (a copy cannot be told apart: for a transition only).
    """

    SUN_REQUIRED = "sun_required"
    SIGNATURE = "signature"
    UID_ONLY = "uid_only"


class SunVerdict(StrEnum):
    """What checking a tag's SUN URL found (agent offline, then the centre again)."""

    OK = "ok"
    REPLAY = "replay"  # the counter is not above the last one accepted: a copied URL
    BAD_MAC = "bad_mac"  # the SDMMAC does not match: tampered, or another tag's URL
    UID_MISMATCH = "uid_mismatch"  # PICC data names another UID than the one read
    MALFORMED = "malformed"  # not a SUN URL of ours
    NO_KEYS = "no_keys"  # the checker holds no SUN keys for this UID


# --- errors ------------------------------------------------------------------------------


class SunError(ValueError):
    """A SUN URL that does not verify; ``reason`` is a stable code, ``detail`` says more."""

    reason: ClassVar[str] = "sun_error"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.detail = detail


class SunMalformed(SunError):
    """Not a SUN URL of the configured shape (missing, repeated or non-hex parameters)."""

    reason = "malformed"


class SunBadMac(SunError):
    """The SDMMAC does not match: forged, altered, or the wrong file-read key."""

    reason = "bad_mac"


class SunWrongTag(SunError):
    """The PICC data does not decrypt to a valid tag byte: wrong key, or not our tag."""

    reason = "wrong_tag"


class SunUidMismatch(SunError):
    """An authentic URL, but from another tag than the one expected."""

    reason = "uid_mismatch"


class SunReplay(SunError):
    """The read counter is not above the last one accepted: a copied or replayed URL."""

    reason = "replay"


# --- data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagKeys:
    """The two SDM keys of one tag: K_SDMMetaRead (PICC data) and K_SDMFileRead (MAC, ENC)."""

    meta_read: bytes = field(repr=False)
    file_read: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("meta_read", "file_read"):
            if len(getattr(self, name)) != KEY_LENGTH:
                raise ValueError(f"TagKeys.{name} must be {KEY_LENGTH} bytes")


@dataclass(frozen=True)
class SunReading:
    """What a verified SUN URL says: which tag, its read counter, the decrypted file data."""

    uid: bytes
    counter: int
    file_data: bytes | None = None


@dataclass(frozen=True)
class SunTemplate:
    """Which query parameters carry what; each role accepts any of its names.

    The MAC input is the URL text from ``mac_input_offset`` (a character index into the
    URL string) up to the MAC value; without an offset it starts at the encrypted file
    data when there is some (the AN12196 §3.4.4.2.2 layout) and is empty otherwise.
    """

    picc: tuple[str, ...] = ("e", "picc_data")
    mac: tuple[str, ...] = ("c", "cmac")
    enc: tuple[str, ...] = ("enc",)
    uid: tuple[str, ...] = ("uid",)
    ctr: tuple[str, ...] = ("ctr",)
    mac_input_offset: int | None = None


DEFAULT_TEMPLATE = SunTemplate()
KeySource = TagKeys | Callable[[bytes], TagKeys]


@dataclass(frozen=True)
class _Param:
    value: str
    start: int  # index of the value's first character in the URL


# --- primitives --------------------------------------------------------------------------


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B / RFC 4493), 16 bytes."""
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def truncate_mac(full: bytes) -> bytes:
    """NXP's MACt: the 8 odd-indexed bytes (1, 3, ..., 15) of a 16-byte CMAC."""
    return full[1::2]


def _aes_block(key: bytes, block: bytes) -> bytes:
    # ECB on a single block: SDM derives an IV and CMAC subkeys this way
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def _cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    context = cipher.decryptor() if decrypt else cipher.encryptor()
    return context.update(data) + context.finalize()


def _session_vector(prefix: bytes, uid: bytes, counter: int) -> bytes:
    return (prefix + uid + counter.to_bytes(COUNTER_LENGTH, "little")).ljust(_BLOCK, b"\x00")


def sdm_session_keys(file_read_key: bytes, uid: bytes, counter: int) -> tuple[bytes, bytes]:
    """(K_SesSDMFileReadENC, K_SesSDMFileReadMAC) from SV1 and SV2 (AN12196 §3.3)."""
    return (aes_cmac(file_read_key, _session_vector(SV1_PREFIX, uid, counter)),
            aes_cmac(file_read_key, _session_vector(SV2_PREFIX, uid, counter)))


def sdm_mac(file_read_key: bytes, uid: bytes, counter: int, mac_input: bytes = b"") -> bytes:
    """The 8-byte SDMMAC a tag mirrors for this UID, counter and MAC input."""
    _, mac_key = sdm_session_keys(file_read_key, uid, counter)
    return truncate_mac(aes_cmac(mac_key, mac_input))


def decrypt_picc_data(meta_read_key: bytes, encrypted: bytes) -> tuple[bytes, int]:
    """(UID, SDMReadCtr) from 16 bytes of encrypted PICC data; :class:`SunWrongTag` if invalid."""
    plain = _cbc(meta_read_key, bytes(_BLOCK), encrypted, decrypt=True)
    if plain[0] != PICC_DATA_TAG:
        raise SunWrongTag(
            f"PICC data decrypts to tag byte {plain[0]:02X}, not {PICC_DATA_TAG:02X}: "
            "wrong SDMMetaRead key, or not this deployment's tag")
    uid = plain[1 : 1 + UID_LENGTH]
    counter = int.from_bytes(plain[1 + UID_LENGTH : 1 + UID_LENGTH + COUNTER_LENGTH], "little")
    return uid, counter


def decrypt_file_data(file_read_key: bytes, uid: bytes, counter: int, encrypted: bytes) -> bytes:
    """SDMENCFileData in the clear (AN12196 §3.4.3): CBC, IV from the counter."""
    enc_key, _ = sdm_session_keys(file_read_key, uid, counter)
    iv = _aes_block(enc_key, counter.to_bytes(COUNTER_LENGTH, "little").ljust(_BLOCK, b"\x00"))
    return _cbc(enc_key, iv, encrypted, decrypt=True)


def _cmac_subkeys(key: bytes) -> tuple[bytes, bytes]:
    def double(block: bytes) -> bytes:
        value = int.from_bytes(block, "big") << 1
        if value >> 128:
            value = (value & ((1 << 128) - 1)) ^ 0x87
        return value.to_bytes(_BLOCK, "big")

    k1 = double(_aes_block(key, bytes(_BLOCK)))
    return k1, double(k1)


def diversify(master: bytes, uid: bytes, *, application_id: bytes = NDEF_APPLICATION_DF_NAME,
              system_identifier: bytes = b"") -> bytes:
    """A per-tag AES-128 key from a master key (NXP AN10922 §2.2).

    The diversification input M = UID || application_id || system_identifier (1 to 31
    bytes) is prefixed with the constant ``01`` and, when shorter than 32 bytes, padded
    with ``80 00 ..`` to 32 bytes; the last block is XORed with CMAC subkey K2 when padded,
    K1 when not, and the result is the last block of AES-CBC with IV 0. Use a distinct
    ``system_identifier`` per key number so one tag's keys differ from each other.
    """
    if len(master) != KEY_LENGTH:
        raise ValueError(f"the master key must be {KEY_LENGTH} bytes")
    m = bytes(uid) + bytes(application_id) + bytes(system_identifier)
    if not 1 <= len(m) <= 2 * _BLOCK - 1:
        raise ValueError(f"AN10922 takes 1 to 31 bytes of diversification input, not {len(m)}")
    k1, k2 = _cmac_subkeys(master)
    d = bytes([AN10922_AES128]) + m
    subkey = k1 if len(d) == 2 * _BLOCK else k2
    d = (d + b"\x80").ljust(2 * _BLOCK, b"\x00") if len(d) < 2 * _BLOCK else d
    last = bytes(a ^ b for a, b in zip(d[_BLOCK:], subkey, strict=True))
    return _cbc(master, bytes(_BLOCK), d[:_BLOCK] + last, decrypt=False)[_BLOCK:]


# The NDEF application's key numbers as nyckelfri provisions them (AN12196 §6 layout).
KEY_APP_MASTER = 0  # changes keys and file settings
KEY_SDM_FILE_READ = 1  # K_SDMFileRead: the SDMMAC (and encrypted file data)
KEY_SDM_META_READ = 2  # K_SDMMetaRead: the encrypted PICC data (UID and counter)
KEY_COUNT = 5  # keys 3 and 4 are unused but changed from the factory default all the same


def tag_key_set(master: bytes, uid: bytes) -> list[bytes]:
    """The five keys of one tag, each diversified from ``master`` (AN10922) with its key
    number as system identifier: knowing one tag's keys tells nothing of another's."""
    if len(uid) != UID_LENGTH:
        raise ValueError(f"an NTAG 424 DNA UID is {UID_LENGTH} bytes, not {len(uid)}")
    return [diversify(master, uid, system_identifier=bytes([n])) for n in range(KEY_COUNT)]


def sun_keys(key_set: list[bytes]) -> TagKeys:
    """The two keys a SUN verifier needs, out of a tag's five."""
    return TagKeys(meta_read=key_set[KEY_SDM_META_READ], file_read=key_set[KEY_SDM_FILE_READ])


# --- the URL -----------------------------------------------------------------------------


def _query(url: str) -> dict[str, list[_Param]]:
    question = url.find("?")
    if question < 0:
        raise SunMalformed("the URL has no query string")
    end = url.find("#", question)
    end = len(url) if end < 0 else end
    params: dict[str, list[_Param]] = {}
    position = question + 1
    for part in url[question + 1 : end].split("&"):
        name, equals, value = part.partition("=")
        if equals:
            params.setdefault(name, []).append(_Param(value, position + len(name) + 1))
        position += len(part) + 1
    return params


def _one(params: dict[str, list[_Param]], names: tuple[str, ...], role: str) -> _Param | None:
    found = [p for name in names for p in params.get(name, [])]
    if len(found) > 1:
        raise SunMalformed(f"the {role} parameter ({'/'.join(names)}) appears {len(found)} times")
    return found[0] if found else None


def _hex(param: _Param, role: str, length: int | None = None) -> bytes:
    value = param.value
    if length is not None and len(value) != length:
        raise SunMalformed(f"{role} must be {length} hex digits, not {len(value)}")
    if not value or len(value) % 2 or not set(value) <= _HEX_DIGITS:
        raise SunMalformed(f"{role} is not an even number of hex digits")
    return bytes.fromhex(value)


def _mac_input(url: str, template: SunTemplate, mac: _Param, enc: _Param | None) -> bytes:
    if template.mac_input_offset is not None:
        start = template.mac_input_offset
    elif enc is not None:
        start = enc.start
    else:
        return b""
    if not 0 <= start <= mac.start:
        raise SunMalformed(f"the MAC input would start at {start}, after the MAC at {mac.start}")
    try:
        return url[start : mac.start].encode("utf-8")
    except UnicodeEncodeError:
        raise SunMalformed("the MAC input is not encodable text") from None


def verify_sun(url: str, keys: KeySource, *, template: SunTemplate = DEFAULT_TEMPLATE,
               meta_read: bytes | None = None, expected_uid: bytes | None = None) -> SunReading:
    """Verify one SUN URL and return what it says, or raise a :class:`SunError`.

    ``keys`` is either the tag's :class:`TagKeys` or ``keys_for(uid) -> TagKeys`` (a
    ``LookupError`` from it means the tag is unknown: :class:`SunWrongTag`). With a
    ``keys_for`` and encrypted PICC data, pass ``meta_read``: the UID is only known after
    decrypting with it. The read counter is NOT checked here: see :func:`check_counter`.
    """
    params = _query(url)
    mac = _one(params, template.mac, "MAC")
    picc = _one(params, template.picc, "PICC data")
    uid_param = _one(params, template.uid, "UID")
    ctr_param = _one(params, template.ctr, "counter")
    enc = _one(params, template.enc, "file data")
    if mac is None:
        raise SunMalformed(f"no MAC parameter ({'/'.join(template.mac)})")
    mac_value = _hex(mac, "the MAC", 16)
    enc_value = None if enc is None else _hex(enc, "the encrypted file data")
    if enc_value is not None and len(enc_value) % _BLOCK:
        raise SunMalformed("the encrypted file data is not a whole number of AES blocks")
    mac_input = _mac_input(url, template, mac, enc)
    if picc is not None:
        if uid_param is not None or ctr_param is not None:
            raise SunMalformed("both encrypted PICC data and a plain UID/counter")
        encrypted = _hex(picc, "the PICC data", 32)
        meta_key = keys.meta_read if isinstance(keys, TagKeys) else meta_read
        if meta_key is None:
            raise ValueError("verify_sun needs meta_read to decrypt PICC data with keys_for")
        uid, counter = decrypt_picc_data(meta_key, encrypted)
    elif uid_param is not None and ctr_param is not None:
        uid = _hex(uid_param, "the UID", 2 * UID_LENGTH)
        counter = int.from_bytes(_hex(ctr_param, "the counter", 2 * COUNTER_LENGTH), "big")
    else:
        raise SunMalformed("neither encrypted PICC data nor both a UID and a counter")
    if isinstance(keys, TagKeys):
        file_key = keys.file_read
    else:
        try:
            file_key = keys(uid).file_read
        except LookupError:
            raise SunWrongTag(f"no keys are known for UID {uid.hex().upper()}") from None
    expected_mac = sdm_mac(file_key, uid, counter, mac_input)
    if not hmac.compare_digest(expected_mac, mac_value):
        raise SunBadMac(f"the SDMMAC does not match for UID {uid.hex().upper()}")
    if expected_uid is not None and not hmac.compare_digest(bytes(expected_uid), uid):
        raise SunUidMismatch(
            f"UID {uid.hex().upper()} is not the expected {bytes(expected_uid).hex().upper()}")
    file_data = None if enc_value is None else decrypt_file_data(file_key, uid, counter, enc_value)
    return SunReading(uid=uid, counter=counter, file_data=file_data)


def check_counter(reading: SunReading, last_accepted: int | None) -> None:
    """Raise :class:`SunReplay` unless the counter is above the last one accepted."""
    if last_accepted is not None and reading.counter <= last_accepted:
        raise SunReplay(
            f"read counter {reading.counter} of UID {reading.uid.hex().upper()} is not above "
            f"the last accepted {last_accepted}")
