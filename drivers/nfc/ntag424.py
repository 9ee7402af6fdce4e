"""NXP NTAG 424 DNA, reader side: native commands, EV2 secure messaging, SDM provisioning.

Everything travels through one injected ``transceive(apdu) -> response`` callable
(nfcpy's ``Type4Tag.transceive`` on a real or ``udp`` reader, or a simulator's
``process_apdu`` in-process), so this module does no I/O of its own.

* Native commands are ISO/IEC 7816-4 wrapped (NT4H2421Gx §10.1): CLA ``90``, INS = the
  command code, P1 P2 ``00 00``, Lc and data when there are any, Le ``00``; the answer
  ends in ``91 xx`` (``91 00`` OK, ``91 AF`` more frames, ``91 AE`` authentication
  error, ...). ISO commands (SELECT, READ/UPDATE BINARY) answer ``90 00`` or ``6x xx``.
* ``AuthenticateEV2First`` (AN12196 §6.6) proves both sides hold the AES key and yields
  the transaction identifier TI and the session keys SesAuthENCKey / SesAuthMACKey
  (CMAC of SV1 / SV2 built from RndA and RndB, NT4H2421Gx §9.1.7).
* Secure messaging (NT4H2421Gx §9.1.9-9.1.10): in CommMode.MAC a command carries
  MACt = odd bytes of CMAC(SesAuthMACKey, Cmd || CmdCtr || TI || header || data) and the
  answer MACt over (status || CmdCtr+1 || TI || data); CommMode.FULL also encrypts the
  data with AES-CBC, padded ``80 00 ..``, IV = E(SesAuthENCKey, ``A5 5A`` || TI || CmdCtr
  || zeros) for commands and ``5A A5`` for answers. CmdCtr counts every command of the
  session.
* :func:`sdm_url` builds an NDEF URL template with zero placeholders and the file
  offsets ``ChangeFileSettings`` needs to make the tag mirror PICC data and SDMMAC there.

GetVersion is sent before authenticating only: under a session the tag MACs it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import ndef
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

Transceive = Callable[[bytes], bytes]

KEY_LENGTH = 16
KEY_COUNT = 5  # application keys 0 (AppMasterKey) to 4
NDEF_APPLICATION = bytes.fromhex("d2760000850101")  # ISO DF name of the NDEF application
CC_FILE_ID, NDEF_FILE_ID, PROPRIETARY_FILE_ID = 0xE103, 0xE104, 0xE105
CC_FILE, NDEF_FILE, PROPRIETARY_FILE = 0x01, 0x02, 0x03  # native file numbers
NDEF_FILE_SIZE = 256
FREE = 0xE  # access condition: free access
NEVER = 0xF  # access condition: no access

CMD_AUTHENTICATE_EV2_FIRST = 0x71
CMD_ADDITIONAL_FRAME = 0xAF
CMD_GET_VERSION = 0x60
CMD_GET_CARD_UID = 0x51
CMD_CHANGE_KEY = 0xC4
CMD_GET_FILE_SETTINGS = 0xF5
CMD_CHANGE_FILE_SETTINGS = 0x5F
CMD_GET_FILE_COUNTERS = 0xF6
CMD_READ_DATA = 0xAD
CMD_WRITE_DATA = 0x8D

SW_OK, SW_ISO_OK, SW_MORE = 0x9100, 0x9000, 0x91AF
STATUS_NAMES: dict[int, str] = {
    0x9100: "OPERATION_OK", 0x91AF: "ADDITIONAL_FRAME", 0x910C: "NO_CHANGES",
    0x910E: "OUT_OF_EEPROM", 0x911C: "ILLEGAL_COMMAND_CODE", 0x911E: "INTEGRITY_ERROR",
    0x9140: "NO_SUCH_KEY", 0x917E: "LENGTH_ERROR", 0x919D: "PERMISSION_DENIED",
    0x919E: "PARAMETER_ERROR", 0x91AD: "AUTHENTICATION_DELAY", 0x91AE: "AUTHENTICATION_ERROR",
    0x91BE: "BOUNDARY_ERROR", 0x91CA: "COMMAND_ABORTED", 0x91EE: "MEMORY_ERROR",
    0x91F0: "FILE_NOT_FOUND", 0x9000: "OK", 0x6700: "WRONG_LENGTH",
    0x6982: "SECURITY_STATUS_NOT_SATISFIED", 0x6985: "CONDITIONS_OF_USE_NOT_SATISFIED",
    0x6A80: "INCORRECT_DATA", 0x6A82: "FILE_NOT_FOUND", 0x6A86: "INCORRECT_P1_P2",
    0x6B00: "WRONG_PARAMETERS_OFFSET", 0x6D00: "INS_NOT_SUPPORTED", 0x6E00: "CLA_NOT_SUPPORTED",
}
_BLOCK = 16
_CHUNK = 128  # data bytes per ReadData/WriteData: fits a short APDU in every CommMode


# --- errors ------------------------------------------------------------------------------


class Ntag424Error(Exception):
    """Root of this driver's errors."""


class Ntag424StatusError(Ntag424Error):
    """The tag refused a command; ``status`` is the 2-byte status word, e.g. ``0x91AE``."""

    def __init__(self, command: str, status: int) -> None:
        self.command = command
        self.status = status
        self.status_name = STATUS_NAMES.get(status, "UNKNOWN_STATUS")
        super().__init__(f"{command}: tag answered {status >> 8:02X} {status & 0xFF:02X} "
                         f"{self.status_name}")


class Ntag424AuthenticationError(Ntag424StatusError):
    """91 AE: wrong key, or the command needs an authentication it does not have."""


class Ntag424PermissionDenied(Ntag424StatusError):
    """91 9D: the access rights forbid this command."""


class Ntag424LengthError(Ntag424StatusError):
    """91 7E: the command's length is wrong."""


class Ntag424IntegrityError(Ntag424Error):
    """The tag's answer fails a check: its MAC, its RndA, its padding or its length."""


_STATUS_ERRORS: dict[int, type[Ntag424StatusError]] = {
    0x91AE: Ntag424AuthenticationError, 0x919D: Ntag424PermissionDenied,
    0x917E: Ntag424LengthError,
}


def status_error(command: str, status: int) -> Ntag424StatusError:
    """The exception for a refused command, of the class its status names."""
    return _STATUS_ERRORS.get(status, Ntag424StatusError)(command, status)


# --- cryptographic primitives ------------------------------------------------------------


def aes_cmac(key: bytes, message: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def mac_t(key: bytes, message: bytes) -> bytes:
    """MACt: the odd-indexed bytes 1, 3, ..., 15 of AES-CMAC (NT4H2421Gx §9.1.3)."""
    return aes_cmac(key, message)[1::2]


def _ecb(key: bytes, block: bytes) -> bytes:
    # ECB on a single block: how EV2 derives its IVs
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 padding method 2: ``80`` then zeros, always at least one byte."""
    return (data + b"\x80").ljust(-(-(len(data) + 1) // _BLOCK) * _BLOCK, b"\x00")


def unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not data or len(data) % _BLOCK or not stripped.endswith(b"\x80") \
            or len(data) - len(stripped) >= _BLOCK:
        raise Ntag424IntegrityError("the decrypted answer is not padded 80 00 ..")
    return stripped[:-1]


def ev2_session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """(SesAuthENCKey, SesAuthMACKey) from AuthenticateEV2First's randoms (§9.1.7).

    SV = label || ``00 01 00 80`` || RndA[15..14] || (RndA[13..8] XOR RndB[15..10]) ||
    RndB[9..0] || RndA[7..0], byte 15 being the first one sent; label ``A5 5A`` for
    ENC, ``5A A5`` for MAC.
    """
    mixed = bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
    context = bytes.fromhex("00010080") + rnd_a[0:2] + mixed + rnd_b[6:16] + rnd_a[8:16]
    return aes_cmac(key, b"\xa5\x5a" + context), aes_cmac(key, b"\x5a\xa5" + context)


def crc32_nk(data: bytes) -> bytes:
    """ChangeKey's CRC32NK: the IEEE 802.3 CRC register, not complemented, LSB first."""
    return (zlib.crc32(data) ^ 0xFFFFFFFF).to_bytes(4, "little")


def rotate_left(data: bytes) -> bytes:
    return data[1:] + data[:1]


# --- APDUs -------------------------------------------------------------------------------


def native_apdu(command: int, data: bytes = b"") -> bytes:
    """An ISO/IEC 7816-4 wrapped native command: 90 INS 00 00 [Lc data] 00."""
    if len(data) > 0xFF:
        raise ValueError(f"{len(data)} data bytes do not fit a short APDU")
    body = bytes([len(data)]) + data if data else b""
    return bytes([0x90, command, 0x00, 0x00]) + body + b"\x00"


def split_status(response: bytes) -> tuple[bytes, int]:
    if len(response) < 2:
        raise Ntag424IntegrityError(f"an answer of {len(response)} bytes has no status word")
    return response[:-2], int.from_bytes(response[-2:], "big")


class CommMode(IntEnum):
    """How a command's data travels (NT4H2421Gx §9.1.9); the value is the FileOption bits."""

    PLAIN = 0x00
    MAC = 0x01
    FULL = 0x03


@dataclass
class Session:
    """An EV2 secure-messaging session: who authenticated, TI, keys and CmdCtr."""

    key_no: int
    ti: bytes
    enc_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    counter: int = 0

    def _iv(self, label: bytes, counter: int) -> bytes:
        return _ecb(self.enc_key, label + self.ti + counter.to_bytes(2, "little") + bytes(8))

    def command_iv(self) -> bytes:
        return self._iv(b"\xa5\x5a", self.counter)

    def response_iv(self) -> bytes:
        return self._iv(b"\x5a\xa5", self.counter + 1)

    def protect(self, command: int, header: bytes, data: bytes, mode: CommMode) -> bytes:
        """The command's data field (header || data || MACt) in this CommMode."""
        if mode is CommMode.PLAIN:
            return header + data
        if mode is CommMode.FULL and data:
            data = cbc_encrypt(self.enc_key, self.command_iv(), pad(data))
        counter = self.counter.to_bytes(2, "little")
        return header + data + mac_t(self.mac_key,
                                     bytes([command]) + counter + self.ti + header + data)

    def unprotect(self, status: int, body: bytes, mode: CommMode) -> bytes:
        """Check and open a successful answer; CmdCtr moves on to the next command."""
        if mode is not CommMode.PLAIN:
            if len(body) < 8:
                raise Ntag424IntegrityError("the answer is too short to carry a MAC")
            body, mac = body[:-8], body[-8:]
            counter = (self.counter + 1).to_bytes(2, "little")
            if mac_t(self.mac_key, bytes([status & 0xFF]) + counter + self.ti + body) != mac:
                raise Ntag424IntegrityError("the answer's MAC does not verify")
            if mode is CommMode.FULL and body:
                body = unpad(cbc_decrypt(self.enc_key, self.response_iv(), body))
        self.counter += 1
        return body


# --- file settings -----------------------------------------------------------------------


@dataclass(frozen=True)
class AccessRights:
    """Who may read, write, read-and-write and change a file: key 0-4, FREE or NEVER."""

    read: int = FREE
    write: int = FREE
    read_write: int = FREE
    change: int = 0

    def encode(self) -> bytes:
        value = self.read << 12 | self.write << 8 | self.read_write << 4 | self.change
        return value.to_bytes(2, "little")

    @classmethod
    def decode(cls, raw: bytes) -> AccessRights:
        value = int.from_bytes(raw, "little")
        return cls(value >> 12 & 0xF, value >> 8 & 0xF, value >> 4 & 0xF, value & 0xF)


@dataclass(frozen=True)
class SdmSettings:
    """Secure Dynamic Messaging of a file (NT4H2421Gx §10.7.1, ChangeFileSettings).

    ``meta_read`` is the key encrypting PICC data (FREE: UID and counter mirrored in
    plain at ``uid_offset`` / ``ctr_offset``; NEVER: none); ``file_read`` the key of
    SDMMAC and SDMENCFileData (NEVER: no MAC); ``ctr_ret`` who may GetFileCounters.
    Offsets count bytes from the start of the file (NLEN included).
    """

    uid_mirror: bool = True
    ctr_mirror: bool = True
    meta_read: int = 2
    file_read: int = 1
    ctr_ret: int = NEVER
    uid_offset: int | None = None
    ctr_offset: int | None = None
    picc_data_offset: int | None = None
    mac_input_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None
    mac_offset: int | None = None
    ctr_limit: int | None = None

    def encode(self) -> bytes:
        enc = self.enc_offset is not None
        options = (0x80 * self.uid_mirror | 0x40 * self.ctr_mirror
                   | 0x20 * (self.ctr_limit is not None) | 0x10 * enc | 0x01)
        rights = self.meta_read << 12 | self.file_read << 8 | 0xF0 | self.ctr_ret
        fields: list[int | None] = []
        if self.meta_read == FREE:
            fields += [self.uid_offset] if self.uid_mirror else []
            fields += [self.ctr_offset] if self.ctr_mirror else []
        elif self.meta_read != NEVER:
            fields.append(self.picc_data_offset)
        if self.file_read != NEVER:
            fields.append(self.mac_input_offset)
            fields += [self.enc_offset, self.enc_length] if enc else []
            fields.append(self.mac_offset)
        fields += [self.ctr_limit] if self.ctr_limit is not None else []
        if any(value is None for value in fields):
            raise ValueError(f"SDM settings lack an offset they need: {self}")
        return bytes([options]) + rights.to_bytes(2, "little") + b"".join(
            value.to_bytes(3, "little") for value in fields if value is not None)

    @classmethod
    def decode(cls, raw: bytes) -> tuple[SdmSettings, int]:
        """The settings and how many bytes of ``raw`` they took."""
        if len(raw) < 3:
            raise Ntag424IntegrityError("SDM settings are truncated")
        options, rights = raw[0], int.from_bytes(raw[1:3], "little")
        meta_read, file_read, ctr_ret = rights >> 12, rights >> 8 & 0xF, rights & 0xF
        uid_mirror, ctr_mirror = bool(options & 0x80), bool(options & 0x40)
        position = 3

        def take() -> int:
            nonlocal position
            if position + 3 > len(raw):
                raise Ntag424IntegrityError("SDM settings are truncated")
            position += 3
            return int.from_bytes(raw[position - 3 : position], "little")

        values: dict[str, int | None] = {}
        if meta_read == FREE:
            values["uid_offset"] = take() if uid_mirror else None
            values["ctr_offset"] = take() if ctr_mirror else None
        elif meta_read != NEVER:
            values["picc_data_offset"] = take()
        if file_read != NEVER:
            values["mac_input_offset"] = take()
            if options & 0x10:
                values["enc_offset"], values["enc_length"] = take(), take()
            values["mac_offset"] = take()
        if options & 0x20:
            values["ctr_limit"] = take()
        settings = cls(uid_mirror=uid_mirror, ctr_mirror=ctr_mirror, meta_read=meta_read,
                       file_read=file_read, ctr_ret=ctr_ret, **values)
        return settings, position


@dataclass(frozen=True)
class FileSettings:
    """A file's CommMode, access rights, size (read only) and SDM settings."""

    comm_mode: CommMode = CommMode.PLAIN
    access: AccessRights = AccessRights()
    sdm: SdmSettings | None = None
    size: int | None = None
    file_type: int = 0x00  # StandardData

    def encode(self) -> bytes:
        """The data field of ChangeFileSettings (after FileNo)."""
        option = (0x40 if self.sdm is not None else 0x00) | self.comm_mode
        return bytes([option]) + self.access.encode() + (
            self.sdm.encode() if self.sdm is not None else b"")

    @classmethod
    def decode(cls, raw: bytes) -> FileSettings:
        """The answer of GetFileSettings."""
        if len(raw) < 7:
            raise Ntag424IntegrityError(f"file settings of {len(raw)} bytes are truncated")
        try:
            comm_mode = CommMode(raw[1] & 0x03)
        except ValueError:
            raise Ntag424IntegrityError(f"unknown CommMode in FileOption {raw[1]:02X}") from None
        sdm, used = (SdmSettings.decode(raw[7:]) if raw[1] & 0x40 else (None, 0))
        if 7 + used != len(raw):
            raise Ntag424IntegrityError("file settings carry unexpected trailing bytes")
        return cls(comm_mode=comm_mode, access=AccessRights.decode(raw[2:4]), sdm=sdm,
                   size=int.from_bytes(raw[4:7], "little"), file_type=raw[0])


@dataclass(frozen=True)
class Version:
    """GetVersion's three parts: hardware, software, then UID and production data."""

    hardware: bytes
    software: bytes
    production: bytes

    @property
    def uid(self) -> bytes:
        return self.production[0:7]

    @property
    def batch(self) -> bytes:
        return self.production[7:12]

    @property
    def is_ntag424(self) -> bool:
        """NXP (vendor 04), NTAG (type 04), major version 30h: an NTAG 424 DNA (TT)."""
        return self.hardware[0] == 0x04 and self.hardware[1] == 0x04 and self.hardware[3] == 0x30

    @property
    def product(self) -> str:
        if not self.is_ntag424:
            return f"unknown ({self.hardware.hex().upper()})"
        return "NTAG 424 DNA TagTamper" if self.hardware[2] == 0x08 else "NTAG 424 DNA"


# --- the URL template --------------------------------------------------------------------


@dataclass(frozen=True)
class SdmUrl:
    """An NDEF URL template and where in the NDEF file the tag mirrors what."""

    url: str
    ndef_file: bytes  # NLEN (2 bytes, big-endian) || NDEF message
    mac_offset: int
    mac_input_offset: int
    picc_data_offset: int | None = None
    uid_offset: int | None = None
    ctr_offset: int | None = None
    enc_offset: int | None = None
    enc_length: int | None = None

    def sdm_settings(self, *, meta_read: int = 2, file_read: int = 1,
                     ctr_ret: int = NEVER) -> SdmSettings:
        """The SDM settings that make the tag fill this template."""
        plain = self.picc_data_offset is None
        return SdmSettings(
            meta_read=FREE if plain else meta_read, file_read=file_read, ctr_ret=ctr_ret,
            uid_offset=self.uid_offset, ctr_offset=self.ctr_offset,
            picc_data_offset=self.picc_data_offset, mac_input_offset=self.mac_input_offset,
            enc_offset=self.enc_offset, enc_length=self.enc_length, mac_offset=self.mac_offset)


def sdm_url(base: str, *, mac: str = "c", picc: str | None = "e", uid: str | None = None,
            ctr: str | None = None, enc: str | None = None, enc_data: bytes = b"") -> SdmUrl:
    """A SUN URL template: ``base?e=<32 zeros>&c=<16 zeros>`` and its SDM offsets.

    With ``uid``/``ctr`` names (and ``picc=None``) the UID and counter are mirrored in
    plain instead. With ``enc`` a parameter of ``2 * len(enc_data)`` hex digits carries
    ``enc_data`` encrypted (its length a multiple of 16); the MAC then covers the URL
    text from that parameter's value up to the MAC, else the MAC input is empty.
    """
    if not base.isascii() or "#" in base:
        raise ValueError("the base URL must be ASCII and carry no fragment")
    plain = uid is not None and ctr is not None
    if (picc is not None) == plain or (uid is None) != (ctr is None):
        raise ValueError("give either picc, or both uid and ctr")
    if enc is not None and (plain or not enc_data or len(enc_data) % _BLOCK):
        raise ValueError("enc needs encrypted PICC data and enc_data of a multiple of 16 bytes")
    names = [name for name in (picc, uid, ctr, enc, mac) if name is not None]
    if len(set(names)) != len(names) or not all(
            n and n.isascii() and n.replace("_", "").replace("-", "").isalnum() for n in names):
        raise ValueError("parameter names must be distinct and made of letters, digits, _ or -")
    parts: list[tuple[str, int]] = []
    if picc is not None:
        parts.append((picc, 32))
    elif uid is not None and ctr is not None:
        parts += [(uid, 14), (ctr, 6)]
    if enc is not None:
        parts.append((enc, 2 * len(enc_data)))
    parts.append((mac, 16))
    starts: dict[str, int] = {}
    url, separator = base, "&" if "?" in base else "?"
    for name, digits in parts:
        url += f"{separator}{name}="
        starts[name] = len(url)
        url += "0" * digits
        separator = "&"
    record = ndef.UriRecord(url)
    message = b"".join(ndef.message_encoder([record]))
    ndef_file = bytearray(len(message).to_bytes(2, "big") + message)
    if len(ndef_file) > NDEF_FILE_SIZE:
        raise ValueError(f"the template needs {len(ndef_file)} bytes; the NDEF file has 256")
    shift = len(ndef_file) - len(url)  # the URL (less its abbreviated prefix) ends the file

    def at(name: str | None) -> int | None:
        return None if name is None else starts[name] + shift

    enc_offset = at(enc)
    if enc_offset is not None:
        ndef_file[enc_offset : enc_offset + len(enc_data)] = enc_data
    mac_offset = at(mac)
    assert mac_offset is not None
    return SdmUrl(url=url, ndef_file=bytes(ndef_file), mac_offset=mac_offset,
                  mac_input_offset=mac_offset if enc_offset is None else enc_offset,
                  picc_data_offset=at(picc), uid_offset=at(uid), ctr_offset=at(ctr),
                  enc_offset=enc_offset, enc_length=None if enc is None else 2 * len(enc_data))


def ndef_uri(message: bytes) -> str:
    """The URI of the first record of an NDEF message (as the tag stores it)."""
    try:
        records = list(ndef.message_decoder(message))
    except ndef.DecodeError as error:
        raise Ntag424Error(f"the NDEF message does not decode: {error}") from None
    if not records or not isinstance(records[0], ndef.UriRecord):
        raise Ntag424Error("the NDEF message does not start with a URI record")
    return str(records[0].iri)


# --- the driver --------------------------------------------------------------------------


class Ntag424:
    """Commands to one NTAG 424 DNA over ``transceive``; holds the EV2 session if any."""

    def __init__(self, transceive: Transceive, *,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self._transceive = transceive
        self._random = random
        self.session: Session | None = None

    # ISO/IEC 7816-4 commands

    def _iso(self, name: str, apdu: bytes) -> bytes:
        data, status = split_status(bytes(self._transceive(apdu)))
        if status != SW_ISO_OK:
            raise status_error(name, status)
        return data

    def select_application(self) -> None:
        """ISOSelectFile of the NDEF application by DF name; ends any session."""
        self.session = None
        self._iso("ISOSelectFile", bytes.fromhex("00a4040c07") + NDEF_APPLICATION)

    def select_file(self, file_id: int) -> None:
        """ISOSelectFile of an elementary file by its ID (E103 CC, E104 NDEF)."""
        self._iso("ISOSelectFile", bytes.fromhex("00a4000c02") + file_id.to_bytes(2, "big"))

    def iso_read_binary(self, offset: int, length: int) -> bytes:
        if not 0 <= offset <= 0x7FFF or not 1 <= length <= 256:
            raise ValueError("ISOReadBinary takes an offset below 8000h and 1 to 256 bytes")
        return self._iso("ISOReadBinary", bytes([0x00, 0xB0, offset >> 8, offset & 0xFF,
                                                  length & 0xFF]))

    def iso_update_binary(self, offset: int, data: bytes) -> None:
        for start in range(0, len(data), _CHUNK):
            chunk, at = data[start : start + _CHUNK], offset + start
            self._iso("ISOUpdateBinary",
                      bytes([0x00, 0xD6, at >> 8, at & 0xFF, len(chunk)]) + chunk)

    def read_ndef(self) -> bytes:
        """The NDEF message, read as a phone does: select, NLEN, then the message."""
        self.select_application()
        self.select_file(NDEF_FILE_ID)
        length = int.from_bytes(self.iso_read_binary(0, 2), "big")
        message = b""
        while len(message) < length:
            chunk = self.iso_read_binary(2 + len(message), min(_CHUNK, length - len(message)))
            if not chunk:
                raise Ntag424IntegrityError("ISOReadBinary returned no data")
            message += chunk
        return message[:length]

    def read_url(self) -> str:
        return ndef_uri(self.read_ndef())

    # native commands

    def _exchange(self, name: str, apdu: bytes) -> tuple[bytes, int]:
        data, status = split_status(bytes(self._transceive(apdu)))
        if status not in (SW_OK, SW_MORE):
            self.session = None  # an error ends the tag's session too
            raise status_error(name, status)
        return data, status

    def _command(self, name: str, command: int, header: bytes = b"", data: bytes = b"",
                 mode: CommMode = CommMode.PLAIN) -> bytes:
        session = self.session
        if session is None:
            if mode is not CommMode.PLAIN:
                raise Ntag424Error(f"{name} in CommMode.{mode.name} needs an authentication")
            body, status = self._exchange(name, native_apdu(command, header + data))
        else:
            apdu = native_apdu(command, session.protect(command, header, data, mode))
            body, status = self._exchange(name, apdu)
        if status != SW_OK:
            raise Ntag424IntegrityError(f"{name}: unexpected additional frame")
        return body if session is None else session.unprotect(status, body, mode)

    def get_version(self) -> Version:
        """GetVersion (60h, three frames): product and UID. Call it before authenticating."""
        if self.session is not None:
            raise Ntag424Error("GetVersion is only supported before authenticating")
        parts: list[bytes] = []
        apdu = native_apdu(CMD_GET_VERSION)
        for expected in (SW_MORE, SW_MORE, SW_OK):
            data, status = self._exchange("GetVersion", apdu)
            if status != expected:
                raise Ntag424IntegrityError("GetVersion: unexpected number of frames")
            parts.append(data)
            apdu = native_apdu(CMD_ADDITIONAL_FRAME)
        if len(parts[0]) != 7 or len(parts[1]) != 7 or len(parts[2]) not in (14, 15):
            raise Ntag424IntegrityError("GetVersion: frames of unexpected length")
        return Version(parts[0], parts[1], parts[2])

    def get_card_uid(self) -> bytes:
        """GetCardUID (51h, CommMode.FULL): the real UID, also when random IDs are on."""
        uid = self._command("GetCardUID", CMD_GET_CARD_UID, mode=CommMode.FULL)
        if len(uid) != 7:
            raise Ntag424IntegrityError(f"GetCardUID: {len(uid)} bytes, not 7")
        return uid

    def authenticate(self, key_no: int, key: bytes) -> Session:
        """AuthenticateEV2First with key ``key_no``; the new session replaces any old one."""
        if not 0 <= key_no < KEY_COUNT or len(key) != KEY_LENGTH:
            raise ValueError("authenticate takes a key number 0-4 and a 16-byte key")
        self.session = None
        name = f"AuthenticateEV2First(key {key_no})"
        data, status = self._exchange(
            name, native_apdu(CMD_AUTHENTICATE_EV2_FIRST, bytes([key_no, 0x00])))
        if status != SW_MORE or len(data) != _BLOCK:
            raise Ntag424IntegrityError(f"{name}: no encrypted RndB in the first answer")
        rnd_b = cbc_decrypt(key, bytes(_BLOCK), data)
        rnd_a = self._random(_BLOCK)
        token = cbc_encrypt(key, bytes(_BLOCK), rnd_a + rotate_left(rnd_b))
        data, status = self._exchange(name, native_apdu(CMD_ADDITIONAL_FRAME, token))
        if status != SW_OK or len(data) != 2 * _BLOCK:
            raise Ntag424IntegrityError(f"{name}: the second answer is not 32 bytes")
        plain = cbc_decrypt(key, bytes(_BLOCK), data)
        if plain[4:20] != rotate_left(rnd_a):
            raise Ntag424IntegrityError(f"{name}: the tag did not return our RndA")
        enc_key, mac_key = ev2_session_keys(key, rnd_a, rnd_b)
        self.session = Session(key_no=key_no, ti=plain[0:4], enc_key=enc_key, mac_key=mac_key)
        return self.session

    def change_key(self, key_no: int, new_key: bytes, *, old_key: bytes | None = None,
                   version: int = 0) -> None:
        """ChangeKey (C4h, CommMode.FULL).

        Changing the key the session authenticated with sends NewKey || KeyVer and ends
        the session; any other key (the session must be key 0's) sends (NewKey XOR
        OldKey) || KeyVer || CRC32NK(NewKey), so ``old_key`` is needed.
        """
        session = self.session
        if session is None:
            raise Ntag424Error("ChangeKey needs an authentication with key 0")
        if not 0 <= key_no < KEY_COUNT or len(new_key) != KEY_LENGTH:
            raise ValueError("change_key takes a key number 0-4 and a 16-byte key")
        if key_no == session.key_no:
            data = new_key + bytes([version])
        else:
            if old_key is None or len(old_key) != KEY_LENGTH:
                raise ValueError(f"changing key {key_no} needs its current 16-byte key")
            xored = bytes(a ^ b for a, b in zip(new_key, old_key, strict=True))
            data = xored + bytes([version]) + crc32_nk(new_key)
        name = f"ChangeKey(key {key_no})"
        apdu = native_apdu(CMD_CHANGE_KEY, session.protect(
            CMD_CHANGE_KEY, bytes([key_no]), data, CommMode.FULL))
        body, status = self._exchange(name, apdu)
        if key_no == session.key_no:
            self.session = None  # the key of the session is gone; the answer has no MAC
            if body or status != SW_OK:
                raise Ntag424IntegrityError(f"{name}: unexpected answer")
            return
        if status != SW_OK:
            raise Ntag424IntegrityError(f"{name}: unexpected additional frame")
        session.unprotect(status, body, CommMode.MAC)

    def get_file_settings(self, file_no: int) -> FileSettings:
        """GetFileSettings (F5h), MACed under a session."""
        mode = CommMode.PLAIN if self.session is None else CommMode.MAC
        return FileSettings.decode(self._command(
            "GetFileSettings", CMD_GET_FILE_SETTINGS, bytes([file_no]), mode=mode))

    def change_file_settings(self, file_no: int, settings: FileSettings) -> None:
        """ChangeFileSettings (5Fh, CommMode.FULL): needs the file's Change key."""
        self._command("ChangeFileSettings", CMD_CHANGE_FILE_SETTINGS, bytes([file_no]),
                      settings.encode(), CommMode.FULL)

    def write_data(self, file_no: int, offset: int, data: bytes,
                   mode: CommMode = CommMode.PLAIN) -> None:
        """WriteData (8Dh) in the file's CommMode, in chunks of 128 bytes."""
        for start in range(0, len(data), _CHUNK):
            chunk = data[start : start + _CHUNK]
            header = bytes([file_no]) + (offset + start).to_bytes(3, "little") \
                + len(chunk).to_bytes(3, "little")
            self._command("WriteData", CMD_WRITE_DATA, header, chunk, mode)

    def read_data(self, file_no: int, offset: int, length: int,
                  mode: CommMode = CommMode.PLAIN) -> bytes:
        """ReadData (ADh) in the file's CommMode, in chunks of 128 bytes."""
        data = b""
        while len(data) < length:
            size = min(_CHUNK, length - len(data))
            header = bytes([file_no]) + (offset + len(data)).to_bytes(3, "little") \
                + size.to_bytes(3, "little")
            chunk = self._command("ReadData", CMD_READ_DATA, header, mode=mode)
            if len(chunk) != size:
                raise Ntag424IntegrityError(f"ReadData: {len(chunk)} bytes, not {size}")
            data += chunk
        return data

    def get_file_counters(self, file_no: int = NDEF_FILE,
                          mode: CommMode = CommMode.FULL) -> int:
        """GetFileCounters (F6h): the SDM read counter (FULL with the SDMCtrRet key)."""
        answer = self._command("GetFileCounters", CMD_GET_FILE_COUNTERS, bytes([file_no]),
                               mode=mode)
        if len(answer) != 5:
            raise Ntag424IntegrityError(f"GetFileCounters: {len(answer)} bytes, not 5")
        return int.from_bytes(answer[0:3], "little")


def provisioned_settings(template: SdmUrl, *, meta_read: int = 2, file_read: int = 1,
                         ctr_ret: int = NEVER, write: int = 0) -> FileSettings:
    """NDEF file settings for a SUN deployment: free read, SDM as the template says."""
    return FileSettings(access=AccessRights(read=FREE, write=write, read_write=write, change=0),
                        sdm=template.sdm_settings(meta_read=meta_read, file_read=file_read,
                                                  ctr_ret=ctr_ret))

