"""A simulated NXP NTAG 424 DNA: the tag side of ISO 7816-4 APDUs, EV2 and SDM.

Written apart from :mod:`drivers.nfc.ntag424` (it imports nothing of it) so the reader
driver and this model check each other; both are pinned to NXP's published examples.

What it models (NT4H2421Gx, AN12196):

* the NDEF application (DF name D2760000850101) with its three files: 01 / E103 the
  capability container, 02 / E104 the 256-byte NDEF file, 03 / E105 a 128-byte
  proprietary file, with factory access rights and CommModes;
* ISOSelectFile, ISOReadBinary and ISOUpdateBinary (plain, free access only, or a key in
  a session when the file is in CommMode.Plain);
* GetVersion, AuthenticateEV2First (wrong key: 91 AE), EV2 secure messaging with
  CmdCtr (plain commands in a session count too, §9.1.8), GetCardUID, ChangeKey (only
  under key 0, for every key: §10.6.1; CRC32 and XOR rule), GetFileSettings,
  ChangeFileSettings with SDM, ReadData, WriteData and GetFileCounters; an error ends
  the session, as on the tag;
* Secure Dynamic Messaging (NT4H2421Gx §9.3.1, §9.3.3-9.3.4): in not-authenticated
  state the first read command (ISOReadBinary or ReadData) of the NDEF file after any
  other command, or after an activation (:meth:`Ntag424Sim.new_activation`), raises
  SDMReadCtr by one and the tag mirrors UID and counter (plain or as encrypted PICC
  data with fresh random padding), SDMENCFileData and the SDMMAC into what is read;
  further reads of the same type in a row see the same image (a reader may read in
  chunks). Authenticated reads return the static file data, with no mirroring and no
  count. ChangeFileSettings that enables SDM resets SDMReadCtr to 0 (NXP's NX
  middleware examples read this as "every ChangeFileSettings with SDM on"; so does the
  simulator).

:class:`Ntag424Tag` puts the chip in an RF field: the ISO-DEP front of
:class:`drivers.sim.tags.Type4Tag` (RATS/ATS, I-blocks, chaining, DESELECT) with every
APDU going to an :class:`Ntag424Sim`, and every activation calling
:meth:`Ntag424Sim.new_activation`, so nfcpy's ``udp`` driver and the PN532 emulator
serve it like any other tag and the read counter moves once per tap.

Not modelled: LRP, AuthenticateEV2NonFirst, GetVersion under a session (answered plain),
the read counter limit (stored, not enforced), TagTamper, originality signature, random
UID, response chaining with 91 AF for long ReadData answers, the failed-authentication
counter and its delay (91 AD). Unverified: whether ISO commands in a session advance
CmdCtr on the chip (here they do not, nor in the reader driver).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from drivers.sim.tags import SimError, TagFaults, Type4Tag

NDEF_DF_NAME = bytes.fromhex("d2760000850101")
BLOCK = 16
FREE, NEVER = 0xE, 0xF
ISO_OK, ISO_WRONG_LENGTH = b"\x90\x00", b"\x67\x00"
ISO_SECURITY = b"\x69\x82"  # security status not satisfied
ISO_NO_EF = b"\x69\x86"  # command not allowed: no current EF
ISO_NOT_FOUND, ISO_P1P2 = b"\x6a\x82", b"\x6a\x86"
ISO_NO_SPACE, ISO_OFFSET = b"\x6a\x84", b"\x6b\x00"
ISO_INS, ISO_CLA = b"\x6d\x00", b"\x6e\x00"
OK, MORE = 0x00, 0xAF  # native status bytes after 91
ILLEGAL_COMMAND, INTEGRITY, NO_SUCH_KEY, LENGTH = 0x1C, 0x1E, 0x40, 0x7E
PERMISSION, PARAMETER, AUTHENTICATION, BOUNDARY, FILE_NOT_FOUND = 0x9D, 0x9E, 0xAE, 0xBE, 0xF0
HARDWARE_VERSION = bytes.fromhex("04040230001105")  # NXP, NTAG, 50 pF, 30h.00, 416 B, ISO
SOFTWARE_VERSION = bytes.fromhex("04040201021105")
PRODUCTION = bytes.fromhex("ba5e0000" "00" "2523")  # batch, fab key, week, year (invented)
CC_CONTENT = bytes.fromhex("001720010000ff0406e10401000000" "0506e10500808283")


class NativeError(Exception):
    """A native command fails with status 91 ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"91 {code:02X}")
        self.code = code


# --- crypto ------------------------------------------------------------------------------


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _mact(key: bytes, data: bytes) -> bytes:
    return bytes(_cmac(key, data)[i] for i in range(1, 16, 2))


def _block(key: bytes, block: bytes) -> bytes:
    """AES of one block: how EV2 and SDM derive their IVs (ECB on one block is CBC with IV 0)."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def _cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    context = cipher.decryptor() if decrypt else cipher.encryptor()
    return context.update(data) + context.finalize()


def _padded(data: bytes) -> bytes:
    return data + b"\x80" + bytes(BLOCK - 1 - len(data) % BLOCK)


def _unpadded(data: bytes) -> bytes:
    end = len(data) - 1
    while end >= 0 and data[end] == 0 and len(data) - end < BLOCK:
        end -= 1
    if end < 0 or data[end] != 0x80:
        raise NativeError(INTEGRITY)
    return data[:end]


def _crc32_register(data: bytes) -> bytes:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc.to_bytes(4, "little")



# --- state -------------------------------------------------------------------------------


@dataclass
class _Sdm:
    uid: bool
    ctr: bool
    limit: bool
    enc: bool
    meta_read: int
    file_read: int
    ctr_ret: int
    offsets: dict[str, int]


@dataclass
class _File:
    file_id: int
    data: bytearray
    comm_mode: int
    read: int
    write: int
    read_write: int
    change: int
    sdm: _Sdm | None = None

    def settings(self) -> bytes:
        """FileOption || AccessRights || SDM part, as ChangeFileSettings sends them."""
        rights = self.read << 12 | self.write << 8 | self.read_write << 4 | self.change
        out = bytes([(0x40 if self.sdm else 0) | self.comm_mode]) + rights.to_bytes(2, "little")
        sdm = self.sdm
        if sdm is None:
            return out
        options = sdm.uid << 7 | sdm.ctr << 6 | sdm.limit << 5 | sdm.enc << 4 | 1
        sdm_rights = sdm.meta_read << 12 | sdm.file_read << 8 | 0xF0 | sdm.ctr_ret
        out += bytes([options]) + sdm_rights.to_bytes(2, "little")
        for name in _SDM_FIELDS:
            if name in sdm.offsets:
                out += sdm.offsets[name].to_bytes(3, "little")
        return out


_SDM_FIELDS = ("uid", "ctr", "picc", "mac_input", "enc", "enc_length", "mac", "limit")


def _parse_settings(file: _File, raw: bytes) -> _File:
    """A file with the settings of ``raw`` applied, or 91 9E / 91 7E."""
    if len(raw) < 3 or raw[0] & 0xBC or raw[0] & 0x03 == 0x02:
        raise NativeError(LENGTH if len(raw) < 3 else PARAMETER)
    rights = int.from_bytes(raw[1:3], "little")
    new = _File(file.file_id, file.data, raw[0] & 0x03, rights >> 12, rights >> 8 & 0xF,
                rights >> 4 & 0xF, rights & 0xF)
    if not raw[0] & 0x40:
        if len(raw) != 3:
            raise NativeError(LENGTH)
        return new
    if file.file_id != 0xE104 or len(raw) < 6 or raw[3] & 0x0F != 0x01:
        raise NativeError(PARAMETER if len(raw) >= 6 else LENGTH)
    options, sdm_rights = raw[3], int.from_bytes(raw[4:6], "little")
    sdm = _Sdm(uid=bool(options & 0x80), ctr=bool(options & 0x40), limit=bool(options & 0x20),
               enc=bool(options & 0x10), meta_read=sdm_rights >> 12,
               file_read=sdm_rights >> 8 & 0xF, ctr_ret=sdm_rights & 0xF, offsets={})
    names = []
    if sdm.meta_read == FREE:
        names += (["uid"] if sdm.uid else []) + (["ctr"] if sdm.ctr else [])
    elif sdm.meta_read != NEVER:
        names.append("picc")
    if sdm.file_read != NEVER:
        names += ["mac_input"] + (["enc", "enc_length"] if sdm.enc else []) + ["mac"]
    names += ["limit"] if sdm.limit else []
    if len(raw) != 6 + 3 * len(names):
        raise NativeError(LENGTH)
    for index, name in enumerate(names):
        sdm.offsets[name] = int.from_bytes(raw[6 + 3 * index : 9 + 3 * index], "little")
    _check_sdm(sdm, len(file.data))
    new.sdm = sdm
    return new


def _check_sdm(sdm: _Sdm, size: int) -> None:
    o = sdm.offsets
    fits = {"uid": 14, "ctr": 6, "picc": 32, "mac": 16}
    bad = any(name in o and o[name] + width > size for name, width in fits.items())
    bad |= any(key > 4 and key not in (FREE, NEVER)
               for key in (sdm.meta_read, sdm.file_read, sdm.ctr_ret))
    bad |= sdm.file_read == FREE  # SDMFileRead is a key or NEVER
    if sdm.file_read != NEVER:
        bad |= o["mac_input"] > o["mac"]
    if sdm.enc:
        bad |= not (sdm.uid and sdm.ctr and sdm.meta_read <= 4 and sdm.file_read <= 4)
        bad |= o.get("enc_length", 0) % 32 != 0 or o.get("enc_length", 0) == 0
        bad |= not o.get("mac_input", 0) <= o.get("enc", 0) <= o.get("enc", 0) + o.get(
            "enc_length", 0) <= o.get("mac", 0)
    if bad:
        raise NativeError(PARAMETER)


def _factory_files() -> dict[int, _File]:
    return {
        1: _File(0xE103, bytearray(CC_CONTENT.ljust(32, b"\x00")), 0x00, FREE, 0, 0, 0),
        2: _File(0xE104, bytearray(256), 0x00, FREE, FREE, FREE, 0),
        3: _File(0xE105, bytearray(128), 0x03, 2, 3, 3, 0),
    }


@dataclass
class _Session:
    key_no: int
    ti: bytes
    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    counter: int = 0

    def iv(self, label: bytes, counter: int) -> bytes:
        block = label + self.ti + counter.to_bytes(2, "little") + bytes(8)
        return _block(self.enc, block)

    def check_mac(self, command: int, body: bytes) -> bytes:
        """The body without its MACt, after checking it (91 1E when it is wrong)."""
        if len(body) < 8:
            raise NativeError(LENGTH)
        message = bytes([command]) + self.counter.to_bytes(2, "little") + self.ti + body[:-8]
        if _mact(self.mac, message) != body[-8:]:
            raise NativeError(INTEGRITY)
        return body[:-8]

    def decrypt(self, data: bytes) -> bytes:
        if not data or len(data) % BLOCK:
            raise NativeError(LENGTH)
        iv = self.iv(b"\xa5\x5a", self.counter)
        return _unpadded(_cbc(self.enc, iv, data, decrypt=True))

    def answer(self, data: bytes, mode: int) -> bytes:
        """The answer data in CommMode ``mode`` (0 plain, 1 MAC, 3 full); CmdCtr moves on."""
        self.counter += 1
        if mode == 0:
            return data
        if mode == 3 and data:
            data = _cbc(self.enc, self.iv(b"\x5a\xa5", self.counter), _padded(data))
        message = bytes([OK]) + self.counter.to_bytes(2, "little") + self.ti + data
        return data + _mact(self.mac, message)


# --- the tag -----------------------------------------------------------------------------


class Ntag424Sim:
    """An NTAG 424 DNA that answers command APDUs, factory-fresh unless told otherwise."""

    def __init__(self, uid: bytes, keys: list[bytes] | None = None, *,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        if len(uid) != 7:
            raise ValueError("an NTAG 424 DNA has a 7-byte UID")
        keys = [bytes(16)] * 5 if keys is None else [bytes(k) for k in keys]
        if len(keys) != 5 or any(len(k) != 16 for k in keys):
            raise ValueError("an NTAG 424 DNA has five 16-byte AES keys")
        self.uid = bytes(uid)
        self.keys = keys
        self.key_versions = [0] * 5
        self.files = _factory_files()
        self.sdm_read_counter = 0
        self._random = random
        self.new_activation()

    # state

    def new_activation(self) -> None:
        """Field on: PICC level selected, no session, the next NDEF read counts."""
        self._app = False
        self._file: int | None = None
        self._session: _Session | None = None
        self._pending: tuple[str, Any] | None = None
        self._armed = True
        self._image: bytes | None = None
        self._last_read: tuple[int, int] | None = None  # (INS, file) of the last command

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid.hex(), "keys": [k.hex() for k in self.keys],
            "key_versions": list(self.key_versions), "sdm_read_counter": self.sdm_read_counter,
            "files": {str(no): {"data": bytes(f.data).hex(), "settings": f.settings().hex()}
                      for no, f in self.files.items()},
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any], *,
                  random: Callable[[int], bytes] = os.urandom) -> Ntag424Sim:
        tag = cls(bytes.fromhex(state["uid"]), [bytes.fromhex(k) for k in state["keys"]],
                  random=random)
        tag.key_versions = [int(v) for v in state["key_versions"]]
        tag.sdm_read_counter = int(state["sdm_read_counter"])
        for no, saved in state["files"].items():
            file = tag.files[int(no)]
            file.data[:] = bytes.fromhex(saved["data"])
            tag.files[int(no)] = _parse_settings(file, bytes.fromhex(saved["settings"]))
        return tag

    # APDUs

    def process_apdu(self, apdu: bytes) -> bytes:
        """Answer one command APDU (data || status word)."""
        apdu = bytes(apdu)
        read = self._read_target(apdu)
        if read is None or read != self._last_read:
            self._armed, self._image = True, None  # §9.3.1: another command came in between
        answer = self._process(apdu)
        self._last_read = read if answer[-2:] in (ISO_OK, b"\x91\x00") else None
        return answer

    def _read_target(self, apdu: bytes) -> tuple[int, int] | None:
        """(INS, file number) when ``apdu`` is a read command, else None."""
        if apdu[:2] == b"\x00\xb0":
            return (0xB0, -1 if self._file is None else self._file)
        if apdu[:2] == b"\x90\xad" and len(apdu) > 5:
            return (0xAD, apdu[5])
        return None

    def _process(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return ISO_WRONG_LENGTH
        if apdu[0] == 0x90:
            return self._native(apdu)
        self._pending = None
        if apdu[0] != 0x00:
            return ISO_CLA
        parsed = _split(apdu)
        if parsed is None:
            return ISO_WRONG_LENGTH
        data, le = parsed
        handler = {0xA4: self._select, 0xB0: self._read_binary, 0xD6: self._update_binary}.get(
            apdu[1])
        return ISO_INS if handler is None else handler(apdu[2], apdu[3], data, le)

    def _select(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p2 not in (0x00, 0x0C):
            return ISO_P1P2
        if p1 == 0x04:
            if data != NDEF_DF_NAME:
                return ISO_NOT_FOUND
            self._app, self._file, self._session = True, None, None
            return ISO_OK
        if p1 not in (0x00, 0x02) or len(data) != 2:
            return ISO_P1P2
        fid = int.from_bytes(data, "big")
        if fid == 0x3F00:
            self._app, self._file, self._session = False, None, None
            return ISO_OK
        found = [no for no, f in self.files.items() if f.file_id == fid]
        if not self._app or not found:
            return ISO_NOT_FOUND
        self._file = found[0]
        return ISO_OK

    def _iso_allowed(self, file: _File, rights: tuple[int, int]) -> bool:
        if FREE in rights:
            return True
        session = self._session
        return session is not None and session.key_no in rights and file.comm_mode == 0

    def _read_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if self._file is None:
            return ISO_NO_EF
        file = self.files[self._file]
        if p1 & 0x80 or data or le is None:
            return ISO_P1P2 if p1 & 0x80 else ISO_WRONG_LENGTH
        if not self._iso_allowed(file, (file.read, file.read_write)):
            return ISO_SECURITY
        offset = p1 << 8 | p2
        if offset >= len(file.data):
            return ISO_OFFSET
        return self._content(self._file)[offset : offset + le] + ISO_OK

    def _update_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if self._file is None:
            return ISO_NO_EF
        file = self.files[self._file]
        if p1 & 0x80 or not data:
            return ISO_P1P2 if p1 & 0x80 else ISO_WRONG_LENGTH
        if not self._iso_allowed(file, (file.write, file.read_write)):
            return ISO_SECURITY
        offset = p1 << 8 | p2
        if offset + len(data) > len(file.data):
            return ISO_NO_SPACE
        file.data[offset : offset + len(data)] = data
        self._image = None
        return ISO_OK

    def _content(self, file_no: int) -> bytes:
        """What a read of the file returns: the SDM image of the NDEF file, else its data.

        Authenticated, the tag returns the static data: no mirroring, no count (§9.3.1,
        §9.3.3).
        """
        file = self.files[file_no]
        if file_no != 2 or file.sdm is None or self._session is not None:
            return bytes(file.data)
        if self._armed or self._image is None:
            if self._armed:
                self.sdm_read_counter = min(self.sdm_read_counter + 1, 0xFFFFFF)
            self._armed = False
            self._image = self._mirror(file, file.sdm)
        return self._image

    def _mirror(self, file: _File, sdm: _Sdm) -> bytes:
        image, o = bytearray(file.data), sdm.offsets
        ctr = self.sdm_read_counter.to_bytes(3, "little")

        def put(offset: int, raw: bytes) -> None:
            image[offset : offset + 2 * len(raw)] = raw.hex().upper().encode()

        if sdm.meta_read == FREE:
            if sdm.uid:
                put(o["uid"], self.uid)
            if sdm.ctr:
                put(o["ctr"], ctr[::-1])  # plain mirror: most significant byte first
        elif sdm.meta_read != NEVER:
            tag = (0x80 | 0x07) * sdm.uid | 0x40 * sdm.ctr
            picc = bytes([tag]) + self.uid * sdm.uid + ctr * sdm.ctr
            picc += self._random(BLOCK - len(picc))
            key = self.keys[sdm.meta_read]
            put(o["picc"], _cbc(key, bytes(BLOCK), picc))
        if sdm.file_read != NEVER:
            context = (self.uid * sdm.uid + ctr * sdm.ctr).ljust(10, b"\x00")
            key = self.keys[sdm.file_read]
            if sdm.enc:
                enc_key = _cmac(key, bytes.fromhex("c33c00010080") + context)
                iv = _block(enc_key, ctr + bytes(13))
                plain = bytes(file.data[o["enc"] : o["enc"] + o["enc_length"] // 2])
                put(o["enc"], _cbc(enc_key, iv, plain))
            mac_key = _cmac(key, bytes.fromhex("3cc300010080") + context)
            put(o["mac"], _mact(mac_key, bytes(image[o["mac_input"] : o["mac"]])))
        return bytes(image)

    # native commands

    def _native(self, apdu: bytes) -> bytes:
        parsed = _split(apdu)
        if parsed is None or apdu[2:4] != b"\x00\x00" or parsed[1] is None:
            self._pending = self._session = None
            return ISO_WRONG_LENGTH
        pending, self._pending = self._pending, None
        try:
            data, more = self._dispatch(apdu[1], parsed[0], pending)
        except NativeError as error:
            self._session = None
            return bytes([0x91, error.code])
        return data + bytes([0x91, MORE if more else OK])

    def _dispatch(self, command: int, data: bytes,
                  pending: tuple[str, Any] | None) -> tuple[bytes, bool]:
        if command == 0xAF:
            if pending is None:
                raise NativeError(ILLEGAL_COMMAND)
            kind, value = pending
            return self._version(value) if kind == "version" else self._auth_part2(value, data)
        if command == 0x60:
            if data:
                raise NativeError(LENGTH)
            return self._version(0)
        if not self._app:
            raise NativeError(PERMISSION)
        handlers: dict[int, Callable[[bytes], bytes]] = {
            0xC4: self._change_key, 0xF5: self._get_file_settings,
            0x5F: self._change_file_settings, 0x8D: self._write_data, 0xAD: self._read_data,
            0xF6: self._get_file_counters, 0x51: self._get_card_uid,
        }
        if command == 0x71:
            return self._auth_part1(data), True
        if command not in handlers:
            raise NativeError(ILLEGAL_COMMAND)
        return handlers[command](data), False

    def _version(self, part: int) -> tuple[bytes, bool]:
        frames = (HARDWARE_VERSION, SOFTWARE_VERSION, self.uid + PRODUCTION)
        if part < 2:
            self._pending = ("version", part + 1)
        return frames[part], part < 2

    def _auth_part1(self, data: bytes) -> bytes:
        self._session = None
        if len(data) < 2 or len(data) != 2 + data[1]:
            raise NativeError(LENGTH)
        if data[0] > 4:
            raise NativeError(NO_SUCH_KEY)
        rnd_b = self._random(BLOCK)
        self._pending = ("auth", (data[0], rnd_b))
        return _cbc(self.keys[data[0]], bytes(BLOCK), rnd_b)

    def _auth_part2(self, value: tuple[int, bytes], data: bytes) -> tuple[bytes, bool]:
        key_no, rnd_b = value
        key = self.keys[key_no]
        if len(data) != 2 * BLOCK:
            raise NativeError(LENGTH)
        plain = _cbc(key, bytes(BLOCK), data, decrypt=True)
        rnd_a = plain[:BLOCK]
        if plain[BLOCK:] != rnd_b[1:] + rnd_b[:1]:
            raise NativeError(AUTHENTICATION)
        ti = self._random(4)
        sv = (b"\x00\x01\x00\x80" + rnd_a[0:2]
              + bytes(x ^ y for x, y in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
              + rnd_b[6:] + rnd_a[8:])
        self._session = _Session(key_no, ti, _cmac(key, b"\xa5\x5a" + sv),
                                 _cmac(key, b"\x5a\xa5" + sv))
        answer = ti + rnd_a[1:] + rnd_a[:1] + bytes(12)  # PDcap2, PCDcap2: all zero
        return _cbc(key, bytes(BLOCK), answer), False

    def _need_session(self) -> _Session:
        if self._session is None:
            raise NativeError(AUTHENTICATION)
        return self._session

    def _file_no(self, number: int) -> _File:
        if number not in self.files:
            raise NativeError(FILE_NOT_FOUND)
        return self.files[number]

    def _change_key(self, data: bytes) -> bytes:
        session = self._need_session()
        body = session.check_mac(0xC4, data)
        if not body:
            raise NativeError(LENGTH)
        key_no, plain = body[0], session.decrypt(body[1:])
        if key_no > 4:
            raise NativeError(NO_SUCH_KEY)
        if session.key_no != 0:  # every key, its own too, needs the AppMasterKey (§10.6.1)
            raise NativeError(AUTHENTICATION)
        if key_no == 0:
            if len(plain) != 17:
                raise NativeError(LENGTH)
            self.keys[key_no], self.key_versions[key_no] = plain[:16], plain[16]
            self._session = None  # the session's key is gone; the answer carries no MAC
            return b""
        if len(plain) != 21:
            raise NativeError(LENGTH)
        new = bytes(a ^ b for a, b in zip(plain[:16], self.keys[key_no], strict=True))
        if _crc32_register(new) != plain[17:21]:
            raise NativeError(INTEGRITY)
        self.keys[key_no], self.key_versions[key_no] = new, plain[16]
        return session.answer(b"", 1)

    def _get_card_uid(self, data: bytes) -> bytes:
        session = self._need_session()
        if session.check_mac(0x51, data):
            raise NativeError(LENGTH)
        return session.answer(self.uid, 3)

    def _get_file_settings(self, data: bytes) -> bytes:
        session = self._session
        body = data if session is None else session.check_mac(0xF5, data)
        if len(body) != 1:
            raise NativeError(LENGTH)
        file = self._file_no(body[0])
        settings = file.settings()
        answer = b"\x00" + settings[:3] + len(file.data).to_bytes(3, "little") + settings[3:]
        return answer if session is None else session.answer(answer, 1)

    def _change_file_settings(self, data: bytes) -> bytes:
        session = self._need_session()
        body = session.check_mac(0x5F, data)
        if not body:
            raise NativeError(LENGTH)
        file = self._file_no(body[0])
        if file.change == NEVER or file.change not in (FREE, session.key_no):
            raise NativeError(PERMISSION)
        self.files[body[0]] = changed = _parse_settings(file, session.decrypt(body[1:]))
        if changed.sdm is not None:
            self.sdm_read_counter = 0  # §9.3.1: reset when enabling SDM
        self._image = None
        return session.answer(b"", 1)

    def _mode(self, file: _File, rights: tuple[int, int]) -> int:
        """The CommMode of a data command: the file's with a granted key, plain if free."""
        session = self._session
        if session is not None and session.key_no in rights:
            return file.comm_mode
        if FREE in rights:
            return 0
        raise NativeError(AUTHENTICATION if session is None else PERMISSION)

    def _reply(self, data: bytes, mode: int) -> bytes:
        return data if self._session is None else self._session.answer(data, mode)

    def _write_data(self, data: bytes) -> bytes:
        if len(data) < 7:
            raise NativeError(LENGTH)
        file = self._file_no(data[0])
        mode = self._mode(file, (file.write, file.read_write))
        header, body = data[:7], data[7:]
        if mode:
            session = self._need_session()
            body = session.check_mac(0x8D, data)[7:]
            body = session.decrypt(body) if mode == 3 else body
        offset, length = _offset_length(header)
        if length != len(body) or not length:
            raise NativeError(LENGTH)
        if offset + length > len(file.data):
            raise NativeError(BOUNDARY)
        file.data[offset : offset + length] = body
        self._image = None
        return self._reply(b"", mode)

    def _read_data(self, data: bytes) -> bytes:
        file = self._file_no(data[0]) if data else None
        if file is None:
            raise NativeError(LENGTH)
        mode = self._mode(file, (file.read, file.read_write))
        header = data if mode == 0 else self._need_session().check_mac(0xAD, data)
        if len(header) != 7:
            raise NativeError(LENGTH)
        offset, length = _offset_length(header)
        length = length or len(file.data) - offset
        if offset + length > len(file.data) or length <= 0:
            raise NativeError(BOUNDARY)
        return self._reply(self._content(data[0])[offset : offset + length], mode)

    def _get_file_counters(self, data: bytes) -> bytes:
        file = self._file_no(data[0]) if data else None
        if file is None or file.sdm is None:
            raise NativeError(LENGTH if file is None else PERMISSION)
        ret = file.sdm.ctr_ret
        if ret == NEVER:
            raise NativeError(PERMISSION)
        session = self._session
        if ret == FREE:
            body, mode = data, 0
        elif session is None:
            raise NativeError(AUTHENTICATION)
        elif session.key_no != ret:
            raise NativeError(PERMISSION)
        else:
            body, mode = session.check_mac(0xF6, data), 3
        if len(body) != 1:
            raise NativeError(LENGTH)
        return self._reply(self.sdm_read_counter.to_bytes(3, "little") + b"\x00\x00", mode)


def _split(apdu: bytes) -> tuple[bytes, int | None] | None:
    """(data, Le) of a short command APDU; None when its lengths are inconsistent."""
    body = apdu[4:]
    if not body:
        return b"", None
    if len(body) == 1:
        return b"", body[0] or 256
    lc, rest = body[0], body[1:]
    if lc == 0 or len(rest) not in (lc, lc + 1):
        return None
    return rest[:lc], ((rest[lc] or 256) if len(rest) > lc else None)


def _offset_length(header: bytes) -> tuple[int, int]:
    """Offset and Length of a ReadData/WriteData header (FileNo || Offset || Length)."""
    return int.from_bytes(header[1:4], "little"), int.from_bytes(header[4:7], "little")


# --- in the field ------------------------------------------------------------------------

# The chip's ATS is 06 77 77 71 02 80: FSCI 7 (128-byte frames), TA 77h, TB 71h (FWI 7,
# 38.7 ms frame waiting time, SFGI 1), TC 02h, historical byte 80h. The simulator keeps
# everything but FWI, which it raises to 10 (309 ms): a reply travels through two Python
# threads (and a UDP socket or a pty), and on a loaded machine 38.7 ms is missed now and
# then, which nfcpy answers with ISO-DEP retransmissions. A mute tag is still given up on
# within about 1.3 s.
NTAG424_ATS = bytes.fromhex("067777A10280")


class _ChipApplication:
    """:class:`Ntag424Sim` as the APDU application of an ISO-DEP front."""

    def __init__(self, chip: Ntag424Sim) -> None:
        self.chip = chip

    def process(self, apdu: bytes) -> bytes:
        return self.chip.process_apdu(apdu)

    def reset(self) -> None:
        self.chip.new_activation()

    def ndef_octets(self) -> bytes:
        data = self.chip.files[2].data
        return bytes(data[2 : 2 + int.from_bytes(data[0:2], "big")])


class Ntag424Tag(Type4Tag):
    """An NTAG 424 DNA in an RF field: :class:`Type4Tag`'s ISO-DEP front, ``chip`` behind.

    The chip holds everything that survives a tap (keys, files, SDMReadCtr); keep it and
    wrap it anew (e.g. with other ``faults``) to go on with the same tag. ``faults``:
    ``mute_after`` as on every simulated tag; ``garbage_ndef`` and ``truncate_reads`` are
    refused (write garbage into the chip's NDEF file instead).
    """

    ats = NTAG424_ATS

    def __init__(self, chip: Ntag424Sim, faults: TagFaults | None = None) -> None:
        if faults is not None and faults.garbage_ndef:
            raise SimError("garbage_ndef is not modelled for an NTAG 424 DNA: use "
                           "Ntag424Tag.factory(uid, ndef=tags.GARBAGE_NDEF) instead")
        self.chip = chip
        super().__init__(chip.uid, faults=faults, application=_ChipApplication(chip))

    @classmethod
    def factory(cls, uid: bytes, ndef: bytes = b"", faults: TagFaults | None = None, *,
                random: Callable[[int], bytes] = os.urandom) -> Ntag424Tag:
        """A factory-fresh tag (all-zero keys, plain NDEF file), optionally with a plain
        NDEF message already written, as a tag programmed before SUN was set up."""
        try:
            chip = Ntag424Sim(uid, random=random)
        except ValueError as error:
            raise SimError(str(error)) from error
        if len(ndef) > len(chip.files[2].data) - 2:
            raise SimError(f"an NDEF message of {len(ndef)} bytes does not fit the 256-byte "
                           "NDEF file (2 bytes hold its length)")
        chip.files[2].data[0 : 2 + len(ndef)] = len(ndef).to_bytes(2, "big") + ndef
        return cls(chip, faults)

    @property
    def product(self) -> str:
        return "NTAG424"

