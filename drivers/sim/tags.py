"""Simulated NFC tags: pure models of what a tag answers, with no I/O.

A model sees one command frame at a time, after ISO/IEC 14443-3 anticollision
and SELECT (which the transport handles: :mod:`drivers.sim.udp_tag` for nfcpy's
``udp`` driver, the PN532 emulator for nfcpy's ``tty`` driver), and returns the
response frame, both without CRC_A. ``None`` means the tag stays mute, as a
real one does after an unsupported command, a HALT, or when it has left the
field.

Two models:

* :class:`Ntag21x`: NXP NTAG213/215/216 (NFC Forum Type 2) with the datasheet's
  memory map and the commands nfcpy uses: READ, FAST_READ, WRITE, GET_VERSION,
  READ_SIG. Lock bits are stored but not enforced; PWD_AUTH is not modelled.
* :class:`Type4Tag`: an ISO-DEP (ISO/IEC 14443-4) tag with the NFC Forum Type 4
  NDEF application (mapping version 2.0), in the style of an NTAG 424 DNA
  without its secure messaging. Its ISO-DEP front takes any
  :class:`ApduApplication`: :class:`drivers.sim.ntag424.Ntag424Tag` puts a whole
  NTAG 424 DNA (:class:`~drivers.sim.ntag424.Ntag424Sim`) behind it.

Originality signatures are real ECDSA secp128r1 signatures over the 7-byte UID,
made with a fixed simulator key that is published here on purpose
(:data:`SIM_PUBLIC_KEY_HEX`). They verify with that key and never with NXP's,
so a simulated tag can never pass as a genuine NXP chip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import reduce
from operator import xor
from typing import Any, Literal, Protocol

import ecdsa
import ndef as ndeflib
from ecdsa.util import sigencode_string


class SimError(ValueError):
    """Root of the simulator's errors: a tag or server that cannot be built as asked."""


class SimTag(Protocol):
    """What every simulated tag offers a transport (UDP server, PN532 emulator)."""

    uid: bytes  # 7-byte UID; first byte 0x04 (NXP) for the NXP models
    sens_res: bytes  # ATQA as transmitted over the air, least significant byte first
    sel_res: int  # final SAK (Type 2: 0x00, Type 4: 0x20)

    def exchange(self, frame: bytes) -> bytes | None:
        """Answer one command frame (no CRC); ``None`` when the tag stays mute."""
        ...

    def reset(self) -> None:
        """Field off or re-select: leave HALT/ISO-DEP state and count commands anew."""
        ...


# --- ISO/IEC 14443-3 -------------------------------------------------------------------

CASCADE_TAG = 0x88  # CT byte that prefixes a cascade level; never a valid UID0
UID_LENGTH = 7  # double-size UID, as on every NTAG21x and NTAG 424 DNA
HLTA = b"\x50\x00"  # HALT command: the tag is mute until the field is reset


def bcc(data: bytes) -> int:
    """Block check character: XOR of the bytes (ISO/IEC 14443-3 anticollision)."""
    return reduce(xor, data, 0)


def _check_uid(uid: bytes) -> bytes:
    uid = bytes(uid)
    if len(uid) != UID_LENGTH:
        raise SimError(f"a simulated tag needs a {UID_LENGTH}-byte UID, got {len(uid)} bytes")
    if uid[0] == CASCADE_TAG:
        raise SimError("UID byte 0 must not be 0x88 (the cascade tag); NXP UIDs start with 04")
    return uid


# --- Originality signature --------------------------------------------------------------

# The simulator's signing key: the ASCII bytes of "nyckelfri sim tg" as the secret
# exponent. It is public on purpose, so anyone can make a tag the agent would accept
# when configured with SIM_PUBLIC_KEY_HEX: trust that key in tests and demos only.
SIM_PRIVATE_KEY_HEX = "6e79636b656c6672692073696d207467"
# Uncompressed public point (04 || X || Y) of that key on secp128r1, for agent config.
SIM_PUBLIC_KEY_HEX = "04D4820D129415A6744B449F95A922CC57486849D811CF4F10A6051BDF9309D693"
# NXP's public key for NTAG21x originality signatures (see /work/shared/docs/nfc.md).
NXP_NTAG21X_PUBLIC_KEY_HEX = "04494E1A386D3D3CFE3DC10E5DE68A499B1C202DB5B132393E89ED19FE5BE8BC61"
SIGNATURE_LENGTH = 32  # r || s, 16 bytes each on secp128r1


def sim_signing_key() -> ecdsa.SigningKey:
    """The fixed, published secp128r1 key that signs every simulated tag's UID."""
    secret = int(SIM_PRIVATE_KEY_HEX, 16)
    return ecdsa.SigningKey.from_secret_exponent(secret, curve=ecdsa.SECP128r1)


def sign_uid(uid: bytes, key: ecdsa.SigningKey | None = None) -> bytes:
    """Sign the raw UID the way NXP signs NTAG21x UIDs: ECDSA, no hash, r || s.

    The UID itself is the digest. Signing is deterministic (RFC 6979; SHA-256
    only derives the nonce), so a given UID always gets the same 32 bytes, as a
    real tag's factory-programmed signature is fixed.
    """
    key = key or sim_signing_key()
    return bytes(
        key.sign_digest_deterministic(
            bytes(uid), hashfunc=hashlib.sha256, sigencode=sigencode_string
        )
    )


# --- NDEF --------------------------------------------------------------------------------


def encode_records(records: Iterable[Any]) -> bytes:
    """Encode ndeflib records (``ndef.UriRecord``, ``ndef.TextRecord``...) as one message."""
    return b"".join(ndeflib.message_encoder(list(records)))


def ndef_bytes(uri: str | None = None, text: str | None = None, language: str = "sv") -> bytes:
    """An NDEF message with a URI record and/or a Text record, in that order.

    For example ``ndef_bytes("https://nyckelfri.example/t/K-0042", "Ytterdörr")``.
    With neither argument the message is empty (``b""``).
    """
    records: list[Any] = []
    if uri is not None:
        records.append(ndeflib.UriRecord(uri))
    if text is not None:
        records.append(ndeflib.TextRecord(text, language))
    return encode_records(records)


# A message nfcpy reads whole but no NDEF parser accepts: the first record header
# (MB|ME|SR) carries TNF 7, which is reserved, so ndeflib raises DecodeError in its
# 'strict' and 'relax' modes alike (nfcpy's Tag.NDEF.records uses 'relax').
GARBAGE_NDEF = bytes.fromhex("d7 01 04 55 de ad be ef")


@dataclass(frozen=True)
class TagFaults:
    """Deterministic misbehaviour of a simulated tag.

    ``garbage_ndef``: the NDEF area holds :data:`GARBAGE_NDEF` with consistent
    length fields, so a reader reads it completely and then fails to parse it.
    ``truncate_reads``: READ and FAST_READ answer with fewer bytes than asked
    (Type 2 only). ``mute_after``: after that many command frames since the last
    :meth:`SimTag.reset` the tag answers nothing, as if pulled away mid-read; it
    answers again after the next reset (field off, re-select), like a tag held at
    the edge of the field. A tag that leaves for good is the transport's job
    (``UdpTagServer.present(tag, seconds)``).
    """

    garbage_ndef: bool = False
    truncate_reads: bool = False
    mute_after: int | None = None


class _CommandCounter:
    """Counts command frames since the last reset and says when the tag goes mute."""

    def __init__(self, mute_after: int | None) -> None:
        if mute_after is not None and mute_after < 0:
            raise SimError(f"mute_after must be 0 or more, got {mute_after}")
        self._mute_after = mute_after
        self._count = 0

    def reset(self) -> None:
        self._count = 0

    def next_is_mute(self) -> bool:
        self._count += 1
        return self._mute_after is not None and self._count > self._mute_after


# --- NTAG213/215/216 (NFC Forum Type 2) ------------------------------------------------

NtagVariantName = Literal["NTAG213", "NTAG215", "NTAG216"]

PAGE_SIZE = 4
READ_PAGES = 4  # READ returns four pages, 16 bytes
FIRST_USER_PAGE = 4  # pages 0-3 hold UID, BCC, static lock bytes and the CC
CONFIG_PAGE_COUNT = 5  # dynamic lock, CFG0, CFG1, PWD, PACK at the end of memory
CMD_READ = 0x30  # 4 pages from an address
CMD_FAST_READ = 0x3A  # pages from a start to an end address
CMD_WRITE = 0xA2  # one page
CMD_GET_VERSION = 0x60  # product identification
CMD_READ_SIG = 0x3C  # originality signature
ACK = b"\x0a"  # 4-bit ACK of WRITE; nfcpy's tt2.write expects exactly 0x0A
NAK_INVALID_ARGUMENT = b"\x00"  # 4-bit NAK 0h: page address out of range
INTERNAL_BYTE = 0x48  # page 2 byte 1 on NTAG21x as delivered
CC_MAGIC = 0xE1  # NDEF capability container magic number
CC_VERSION = 0x10  # NDEF mapping version 1.0
CC_ACCESS_OPEN = 0x00  # read and write access without restriction
NDEF_TLV = 0x03
TERMINATOR_TLV = 0xFE
SHORT_TLV_MAX = 0xFE  # longer NDEF messages need the 3-byte TLV length form
# Factory contents of the configuration pages (NTAG213/215/216 datasheet):
DYNAMIC_LOCK_FACTORY = bytes.fromhex("000000bd")
CFG0_FACTORY = bytes.fromhex("040000ff")  # STRG_MOD_EN set, AUTH0 = FFh: no password
CFG1_FACTORY = bytes.fromhex("00000000")
PWD_FACTORY = bytes.fromhex("ffffffff")  # never readable: READ returns 00h here


@dataclass(frozen=True)
class NtagVariant:
    """One NTAG21x product: its GET_VERSION answer and its memory size."""

    name: NtagVariantName
    version: bytes  # GET_VERSION response, matched by nfcpy's tt2_nxp.VERSION_MAP
    pages: int  # total pages, 0 .. pages-1
    cc_size: int  # CC byte 2: NDEF data area size / 8

    @property
    def dynamic_lock_page(self) -> int:
        return self.pages - CONFIG_PAGE_COUNT

    @property
    def pwd_page(self) -> int:
        return self.pages - 2

    @property
    def data_area_size(self) -> int:
        return self.cc_size * 8


NTAG_VARIANTS: dict[str, NtagVariant] = {
    v.name: v
    for v in (
        NtagVariant("NTAG213", bytes.fromhex("0004040201000f03"), pages=45, cc_size=0x12),
        NtagVariant("NTAG215", bytes.fromhex("0004040201001103"), pages=135, cc_size=0x3E),
        NtagVariant("NTAG216", bytes.fromhex("0004040201001303"), pages=231, cc_size=0x6D),
    )
}


def _ndef_tlv(message: bytes) -> bytes:
    if len(message) <= SHORT_TLV_MAX:
        return bytes([NDEF_TLV, len(message)]) + message
    return bytes([NDEF_TLV, 0xFF]) + len(message).to_bytes(2, "big") + message


def _parse_ndef_tlv(area: bytes) -> bytes | None:
    if not area or area[0] != NDEF_TLV:
        return None
    if area[1] == 0xFF:
        length = int.from_bytes(area[2:4], "big")
        return bytes(area[4 : 4 + length])
    return bytes(area[2 : 2 + area[1]])


class Ntag21x:
    """An NXP NTAG213, NTAG215 or NTAG216 with the datasheet's memory map.

    ``ndef`` is the NDEF message (see :func:`ndef_bytes`); it is stored as an
    NDEF TLV at page 4 followed by a terminator TLV. ``signature`` defaults to
    :func:`sign_uid` with the simulator key; pass 32 zero bytes for a chip
    without one.
    """

    sens_res = b"\x44\x00"  # ATQA 0044h: double-size UID, as every NTAG21x
    sel_res = 0x00  # SAK: Type 2 Tag, no ISO-DEP

    def __init__(
        self,
        uid: bytes,
        variant: NtagVariantName = "NTAG215",
        ndef: bytes | None = None,
        signature: bytes | None = None,
        faults: TagFaults | None = None,
    ) -> None:
        if variant not in NTAG_VARIANTS:
            raise SimError(f"unknown NTAG variant {variant!r}: use one of {sorted(NTAG_VARIANTS)}")
        self.uid = _check_uid(uid)
        self.variant = NTAG_VARIANTS[variant]
        self.faults = faults or TagFaults()
        self.signature = self._check_signature(signature)
        self._counter = _CommandCounter(self.faults.mute_after)
        self._halted = False
        message = GARBAGE_NDEF if self.faults.garbage_ndef else (ndef or b"")
        self._memory = self._initial_memory(message)
        self._commands: dict[int, Callable[[bytes], bytes | None]] = {
            CMD_READ: self._read,
            CMD_FAST_READ: self._fast_read,
            CMD_WRITE: self._write,
            CMD_GET_VERSION: self._get_version,
            CMD_READ_SIG: self._read_sig,
        }

    @classmethod
    def with_ndef_message(
        cls, uid: bytes, variant: NtagVariantName, records: Iterable[Any], **kwargs: Any
    ) -> Ntag21x:
        """A tag holding the given ndeflib records as its NDEF message."""
        return cls(uid, variant, ndef=encode_records(records), **kwargs)

    @property
    def product(self) -> str:
        return self.variant.name

    def _check_signature(self, signature: bytes | None) -> bytes:
        if signature is None:
            return sign_uid(self.uid)
        if len(signature) != SIGNATURE_LENGTH:
            raise SimError(
                f"an NTAG21x signature is {SIGNATURE_LENGTH} bytes, got {len(signature)}"
            )
        return bytes(signature)

    def _initial_memory(self, message: bytes) -> bytearray:
        v = self.variant
        memory = bytearray(v.pages * PAGE_SIZE)
        uid = self.uid
        memory[0:4] = bytes([uid[0], uid[1], uid[2], bcc(bytes([CASCADE_TAG]) + uid[0:3])])
        memory[4:8] = uid[3:7]
        memory[8:12] = bytes([bcc(uid[3:7]), INTERNAL_BYTE, 0x00, 0x00])
        memory[12:16] = bytes([CC_MAGIC, CC_VERSION, v.cc_size, CC_ACCESS_OPEN])
        tlv = _ndef_tlv(message)
        if len(tlv) > v.data_area_size:
            raise SimError(
                f"an NDEF message of {len(message)} bytes does not fit an {v.name} "
                f"({v.data_area_size} bytes of NDEF area including the TLV header)"
            )
        if len(tlv) < v.data_area_size:
            tlv += bytes([TERMINATOR_TLV])
        start = FIRST_USER_PAGE * PAGE_SIZE
        memory[start : start + len(tlv)] = tlv
        for page, content in (
            (v.dynamic_lock_page, DYNAMIC_LOCK_FACTORY),
            (v.dynamic_lock_page + 1, CFG0_FACTORY),
            (v.dynamic_lock_page + 2, CFG1_FACTORY),
            (v.pwd_page, PWD_FACTORY),
        ):
            memory[page * PAGE_SIZE : (page + 1) * PAGE_SIZE] = content
        return memory

    # SimTag interface ------------------------------------------------------------------

    def exchange(self, frame: bytes) -> bytes | None:
        if self._counter.next_is_mute() or self._halted or not frame:
            return None
        if bytes(frame) == HLTA:
            self._halted = True
            return None
        handler = self._commands.get(frame[0])
        # An unsupported command (e.g. nfcpy's Ultralight C probe 1A 00) leaves a
        # real NTAG mute and back in IDLE; nfcpy re-selects it.
        return handler(bytes(frame)) if handler else None

    def reset(self) -> None:
        self._halted = False
        self._counter.reset()

    # Inspection ---------------------------------------------------------------------------

    @property
    def memory(self) -> bytes:
        """A copy of the whole memory, page 0 first (PWD/PACK as stored)."""
        return bytes(self._memory)

    def ndef_octets(self) -> bytes | None:
        """The NDEF message in the TLV at page 4, or None when there is none."""
        v = self.variant
        start = FIRST_USER_PAGE * PAGE_SIZE
        return _parse_ndef_tlv(bytes(self._memory[start : start + v.data_area_size]))

    # Commands --------------------------------------------------------------------------

    def _page(self, page: int) -> bytes:
        if page >= self.variant.pwd_page:  # PWD and PACK always read as 00h
            return bytes(PAGE_SIZE)
        return bytes(self._memory[page * PAGE_SIZE : (page + 1) * PAGE_SIZE])

    def _cut(self, data: bytes) -> bytes:
        # Half the answer: a READ gives 8 bytes, neither the 16 nfcpy checks for
        # nor a 1-byte NAK, so nfcpy sees an invalid response.
        return data[: len(data) // 2] if self.faults.truncate_reads else data

    def _read(self, frame: bytes) -> bytes:
        if len(frame) != 2 or frame[1] >= self.variant.pages:
            return NAK_INVALID_ARGUMENT
        # Reading past the last page rolls over to page 0 (datasheet, READ).
        pages = [(frame[1] + i) % self.variant.pages for i in range(READ_PAGES)]
        return self._cut(b"".join(self._page(p) for p in pages))

    def _fast_read(self, frame: bytes) -> bytes:
        if len(frame) != 3 or not frame[1] <= frame[2] < self.variant.pages:
            return NAK_INVALID_ARGUMENT
        return self._cut(b"".join(self._page(p) for p in range(frame[1], frame[2] + 1)))

    def _write(self, frame: bytes) -> bytes:
        if len(frame) != 2 + PAGE_SIZE or not 2 <= frame[1] < self.variant.pages:
            return NAK_INVALID_ARGUMENT  # pages 0 and 1 (UID) are read-only
        page, data = frame[1], frame[2:]
        at = page * PAGE_SIZE
        old = self._memory[at : at + PAGE_SIZE]
        if page == 2:  # only the static lock bytes are writable, and only bits to 1
            data = bytes([old[0], old[1], old[2] | data[2], old[3] | data[3]])
        elif page == 3:  # the CC is one-time programmable: bits go to 1, never back
            data = bytes(a | b for a, b in zip(old, data, strict=True))
        self._memory[at : at + PAGE_SIZE] = data
        return ACK

    def _get_version(self, frame: bytes) -> bytes | None:
        return self.variant.version if len(frame) == 1 else None

    def _read_sig(self, frame: bytes) -> bytes:
        if len(frame) != 2 or frame[1] != 0x00:  # address is RFU and must be 00h
            return NAK_INVALID_ARGUMENT
        return self.signature


# --- Type 4 Tag: NDEF application over ISO-DEP -------------------------------------------

NDEF_AID = bytes.fromhex("d2760000850101")  # NDEF Tag Application, mapping version 2.0
CC_FILE_ID = bytes.fromhex("e103")
NDEF_FILE_ID = bytes.fromhex("e104")
NDEF_FILE_SIZE = 256  # as on an NTAG 424 DNA; 2 bytes of it are NLEN
MAX_LE = 0x0100  # largest Le of a short APDU; nfcpy refuses more (send_apdu ValueError)
MAX_LC = 0x00FF  # largest Lc of a short APDU
CC_FILE = (
    bytes.fromhex("000f20")  # CCLEN 15, mapping version 2.0
    + MAX_LE.to_bytes(2, "big")
    + MAX_LC.to_bytes(2, "big")
    + bytes.fromhex("0406")  # NDEF File Control TLV, 6 bytes
    + NDEF_FILE_ID
    + NDEF_FILE_SIZE.to_bytes(2, "big")
    + bytes.fromhex("0000")  # read and write access granted
)

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_SECURITY_NOT_SATISFIED = b"\x69\x82"
SW_NO_CURRENT_EF = b"\x69\x86"
SW_NOT_FOUND = b"\x6a\x82"
SW_NOT_ENOUGH_MEMORY = b"\x6a\x84"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_OFFSET_OUTSIDE_EF = b"\x6b\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_UPDATE_BINARY = 0xD6
SELECT_BY_NAME = 0x04
SELECT_BY_FID = 0x00

RATS = 0xE0
# ATS: TL=6; T0=78h: TA, TB, TC follow, FSCI 8 (256-byte frames); TA=77h: bit rates;
# TB=81h: FWI 8 (77 ms frame waiting time; roomy for a UDP round trip through two
# Python threads, while a mute tag still times out quickly), SFGI 1; TC=02h; one
# historical byte 80h.
ATS = bytes.fromhex("067877810280")
FSD_TABLE = (16, 24, 32, 40, 48, 64, 96, 128, 256)  # index: FSDI from RATS
FRAME_OVERHEAD = 3  # PCB + CRC_A: the part of a frame that is not INF
PCB_I_MASK, PCB_I = 0xE2, 0x02  # I-block 000x xx1x
PCB_R_MASK, PCB_R = 0xE6, 0xA2  # R-block 101x x01x
PCB_DESELECT = 0xC2  # S(DESELECT) without CID
PCB_CHAINING = 0x10  # I-block: more follows; R-block: NAK
PCB_CID_NAD = 0x0C  # CID/NAD following: not modelled (nfcpy never sends them)
PCB_BLOCK_NUMBER = 0x01


@dataclass(frozen=True)
class _Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None


def _parse_apdu(apdu: bytes) -> _Apdu | None:
    """Split a short command APDU (cases 1-4); None when the lengths are inconsistent."""
    if len(apdu) < 4:
        return None
    body = apdu[4:]
    data, le = b"", None
    if len(body) == 1:
        le = body[0] or 256
    elif body:
        lc = body[0]
        data = body[1 : 1 + lc]
        rest = body[1 + lc :]
        if len(data) != lc or lc == 0 or len(rest) > 1:
            return None
        le = (rest[0] or 256) if rest else None
    return _Apdu(apdu[0], apdu[1], apdu[2], apdu[3], bytes(data), le)


class ApduApplication(Protocol):
    """What sits behind an ISO-DEP front: one command APDU in, the response APDU out."""

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU (response data || status word)."""
        ...

    def reset(self) -> None:
        """A new activation (field off/on, re-select): forget selections and sessions."""
        ...

    def ndef_octets(self) -> bytes:
        """The NDEF message as stored (for tests and demos; not what a read returns)."""
        ...


class _NdefApplication:
    """The NFC Forum Type 4 NDEF application: CC file, NDEF file, ISO 7816-4 APDUs."""

    def __init__(self, message: bytes) -> None:
        if len(message) > NDEF_FILE_SIZE - 2:
            raise SimError(
                f"an NDEF message of {len(message)} bytes does not fit the "
                f"{NDEF_FILE_SIZE}-byte NDEF file (2 bytes hold its length)"
            )
        ndef_file = bytearray(NDEF_FILE_SIZE)
        ndef_file[0:2] = len(message).to_bytes(2, "big")
        ndef_file[2 : 2 + len(message)] = message
        self.files: dict[bytes, bytearray] = {
            CC_FILE_ID: bytearray(CC_FILE),
            NDEF_FILE_ID: ndef_file,
        }
        self.reset()

    def reset(self) -> None:
        self._app_selected = False
        self._file: bytes | None = None

    def ndef_octets(self) -> bytes:
        content = self.files[NDEF_FILE_ID]
        return bytes(content[2 : 2 + int.from_bytes(content[0:2], "big")])

    def process(self, raw: bytes) -> bytes:
        apdu = _parse_apdu(raw)
        if apdu is None:
            return SW_WRONG_LENGTH
        if apdu.cla != 0x00:
            return SW_CLA_NOT_SUPPORTED
        if apdu.ins == INS_SELECT:
            return self._select(apdu)
        if apdu.ins == INS_READ_BINARY:
            return self._read_binary(apdu)
        if apdu.ins == INS_UPDATE_BINARY:
            return self._update_binary(apdu)
        return SW_INS_NOT_SUPPORTED

    def _select(self, apdu: _Apdu) -> bytes:
        if apdu.p1 == SELECT_BY_NAME:
            self._app_selected = apdu.data == NDEF_AID
            self._file = None
            return SW_OK if self._app_selected else SW_NOT_FOUND
        if apdu.p1 == SELECT_BY_FID:
            if not self._app_selected or apdu.data not in self.files:
                return SW_NOT_FOUND
            self._file = apdu.data
            return SW_OK
        return SW_WRONG_P1P2

    def _offset(self, apdu: _Apdu) -> int | None:
        if apdu.p1 & 0x80:  # short EF identifier addressing: not modelled
            return None
        return (apdu.p1 << 8) | apdu.p2

    def _read_binary(self, apdu: _Apdu) -> bytes:
        if self._file is None:
            return SW_NO_CURRENT_EF
        content = self.files[self._file]
        offset = self._offset(apdu)
        if offset is None:
            return SW_WRONG_P1P2
        if apdu.le is None:
            return SW_WRONG_LENGTH
        if offset >= len(content):  # also stops a reader looping on empty answers
            return SW_OFFSET_OUTSIDE_EF
        return bytes(content[offset : offset + apdu.le]) + SW_OK

    def _update_binary(self, apdu: _Apdu) -> bytes:
        if self._file is None:
            return SW_NO_CURRENT_EF
        if self._file != NDEF_FILE_ID:
            return SW_SECURITY_NOT_SATISFIED  # the CC file is read-only
        content = self.files[self._file]
        offset = self._offset(apdu)
        if offset is None:
            return SW_WRONG_P1P2
        if offset + len(apdu.data) > len(content):
            return SW_NOT_ENOUGH_MEMORY
        content[offset : offset + len(apdu.data)] = apdu.data
        return SW_OK


class Type4Tag:
    """An ISO-DEP tag (ISO/IEC 14443-4, Type A) carrying the NFC Forum NDEF application.

    Activation is RATS -> ATS; then I-blocks with block-number toggling and
    chaining both ways, R(ACK)/R(NAK) answered per ISO/IEC 14443-4 rules 11-13,
    and S(DESELECT), after which the tag is mute until :meth:`reset`. Faults:
    ``garbage_ndef`` and ``mute_after`` are modelled; ``truncate_reads`` is not
    (a short READ BINARY answer is legal on Type 4 and nfcpy just reads on).

    ``application`` replaces the plain NDEF application (``ndef`` and
    ``garbage_ndef`` are then the application's business).
    """

    sens_res = b"\x44\x03"  # ATQA 0344h as on an NTAG 424 DNA: double-size UID
    sel_res = 0x20  # SAK: ISO/IEC 14443-4 compliant
    ats = ATS

    def __init__(self, uid: bytes, ndef: bytes = b"", faults: TagFaults | None = None, *,
                 application: ApduApplication | None = None) -> None:
        self.uid = _check_uid(uid)
        self.faults = faults or TagFaults()
        if self.faults.truncate_reads:
            raise SimError("truncate_reads is modelled for Type 2 tags only")
        if application is not None and (ndef or self.faults.garbage_ndef):
            raise SimError("give either an application or an NDEF message, not both")
        self._app: ApduApplication = application or _NdefApplication(
            GARBAGE_NDEF if self.faults.garbage_ndef else ndef)
        self._counter = _CommandCounter(self.faults.mute_after)
        self.reset()

    def reset(self) -> None:
        self._counter.reset()
        self._app.reset()
        self._halted = False
        self._dep_active = False
        self._block = 1  # ISO/IEC 14443-4: the PICC block number starts at 1
        self._fsd = FSD_TABLE[0]
        self._rx_chain = b""
        self._tx_pending = b""
        self._last_block = b""

    def ndef_octets(self) -> bytes:
        """The NDEF message in the NDEF file (NLEN bytes after the 2-byte NLEN)."""
        return self._app.ndef_octets()

    def exchange(self, frame: bytes) -> bytes | None:
        if self._counter.next_is_mute() or self._halted or not frame:
            return None
        frame = bytes(frame)
        if not self._dep_active:
            return self._before_rats(frame)
        pcb = frame[0]
        if pcb & PCB_CID_NAD:
            return None
        if pcb & PCB_I_MASK == PCB_I:
            return self._on_i_block(pcb, frame[1:])
        if pcb & PCB_R_MASK == PCB_R:
            return self._on_r_block(pcb)
        if pcb == PCB_DESELECT and len(frame) == 1:
            self._halted = True
            return frame
        return None

    def _before_rats(self, frame: bytes) -> bytes | None:
        if frame == HLTA:
            self._halted = True
            return None
        if len(frame) != 2 or frame[0] != RATS:
            return None
        self._fsd = FSD_TABLE[min(frame[1] >> 4, len(FSD_TABLE) - 1)]
        self._dep_active = True
        return self.ats

    def _send(self, block: bytes) -> bytes:
        self._last_block = block
        return block

    def _on_i_block(self, pcb: int, inf: bytes) -> bytes:
        self._block ^= 1  # rule D: toggle on every I-block received
        if pcb & PCB_CHAINING:
            self._rx_chain += inf
            return self._send(bytes([PCB_R | self._block]))
        apdu, self._rx_chain = self._rx_chain + inf, b""
        self._tx_pending = self._app.process(apdu)
        return self._next_chunk()

    def _next_chunk(self) -> bytes:
        size = self._fsd - FRAME_OVERHEAD
        chunk, self._tx_pending = self._tx_pending[:size], self._tx_pending[size:]
        pcb = PCB_I | self._block | (PCB_CHAINING if self._tx_pending else 0)
        return self._send(bytes([pcb]) + chunk)

    def _on_r_block(self, pcb: int) -> bytes | None:
        if (pcb & PCB_BLOCK_NUMBER) == self._block:
            return self._last_block or None  # rule 11: re-send the last block
        if pcb & PCB_CHAINING:  # R(NAK), other number: rule 12, answer R(ACK)
            return self._send(bytes([PCB_R | self._block]))
        if self._tx_pending:  # R(ACK), other number, while chaining: rule 13
            self._block ^= 1
            return self._next_chunk()
        return None
