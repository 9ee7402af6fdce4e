"""A simulated tag in the field of nfcpy's ``udp`` reader.

nfcpy's ``udp:<host>:<port>`` driver (``nfc/clf/udp.py``) is a real
ContactlessFrontend whose RF frames travel as UDP datagrams, one frame per
datagram, written as ASCII ``"106A <hex>"`` with no CRC. The reader sends
SENS_REQ ``26``, then per cascade level SDD_REQ ``93 20`` / ``95 20`` and
SEL_REQ ``93 70 ...`` / ``95 70 ...``, then tag commands; it polls from a fresh
source port each time and sends ``RFOFF`` when it turns its field off.

:class:`UdpTagServer` plays the ISO/IEC 14443-3 part (states IDLE, READY,
ACTIVE, HALT; anticollision and SELECT) and hands every frame after SELECT to
one :class:`~drivers.sim.tags.SimTag` model. With no tag in the field it keeps
the port bound and stays silent, so the reader simply finds no tag.

Timing: nfcpy gives a Type 2 READ only 5 ms (``tt2.Type2Tag.read``). A reply
that misses it is read as the answer to nfcpy's retry, which shifts every
later answer by one frame; on a very loaded machine a read can then come back
wrong. Real hardware does not have this problem.

Run it on its own for demos and field training::

    serve(54321, build_tag("04A1B2C3D4E5F6", "NTAG215", uri="https://nyckelfri.example/t/K-0042"))

and point a reader at ``udp:127.0.0.1:54321``.
"""

from __future__ import annotations

import enum
import logging
import select
import socket
import threading
import time
from collections.abc import Callable

from drivers.sim.tags import (
    CASCADE_TAG,
    HLTA,
    NTAG_VARIANTS,
    Ntag21x,
    SimError,
    SimTag,
    TagFaults,
    Type4Tag,
    bcc,
    ndef_bytes,
)

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 54321  # nfcpy's own default for a bare "udp" path
BRTY = "106A"  # the only bit rate / technology the simulated tags answer
RFOFF = b"RFOFF"  # nfcpy's udp driver: the reader turned its field off
SENS_REQ = b"\x26"  # REQA: wakes a tag in IDLE
ALL_REQ = b"\x52"  # WUPA: wakes a tag in IDLE or HALT
SEL_CMDS = (0x93, 0x95, 0x97)  # SEL byte of cascade levels 1, 2, 3
NVB_SDD = 0x20  # anticollision with no UID bits known: "send me your UID CLn"
NVB_SEL = 0x70  # select with all 40 bits (4 UID CLn bytes + BCC)
SAK_CASCADE = 0x04  # SAK bit: UID not complete, go to the next cascade level
MAX_DATAGRAM = 1024  # nfcpy's udp driver never sends more in one frame
POLL_INTERVAL = 0.05  # s; how long close() may wait for the server thread to notice
# nfcpy's udp driver waits 1.0 s for the answer to each REQA (sense_tta), where a
# real reader's window is microseconds and it polls again within ~100 ms. A tag
# placed in the field during that wait answers the pending REQA at once, so a
# short simulated tap is seen as quickly as on hardware instead of being missed.
PENDING_REQA_S = 0.9
JOIN_TIMEOUT = 2.0  # s; a server thread that takes longer to stop is logged, not waited on
NTAG424_NAMES = ("NTAG424", "NTAG424DNA")  # build_tag's product names of an NTAG 424 DNA


class _State(enum.Enum):
    """ISO/IEC 14443-3 Type A tag states, as far as the reader can tell them apart."""

    IDLE = "idle"
    READY = "ready"  # answered REQA/WUPA; in anticollision at cascade level `_level`
    ACTIVE = "active"  # selected: frames go to the tag model
    HALT = "halt"  # after HLTA: only WUPA or a field reset wakes it


def cascade_levels(uid: bytes) -> list[bytes]:
    """The four UID CLn bytes for each cascade level (a 7-byte UID has two levels)."""
    if len(uid) == 4:
        return [uid]
    if len(uid) == 7:
        return [bytes([CASCADE_TAG]) + uid[0:3], uid[3:7]]
    if len(uid) == 10:
        return [bytes([CASCADE_TAG]) + uid[0:3], bytes([CASCADE_TAG]) + uid[3:6], uid[6:10]]
    raise SimError(f"a Type A UID is 4, 7 or 10 bytes, not {len(uid)}")


class _Hex:
    """Lazy, shortened hex for log messages (formatted only when logged)."""

    LIMIT = 24  # bytes shown before "..."

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __str__(self) -> str:
        text = self.data[: self.LIMIT].hex()
        return text + "..." if len(self.data) > self.LIMIT else text


class UdpTagServer:
    """Presents one simulated tag to nfcpy readers at ``udp:<host>:<port>``.

    The socket is bound and the server thread started on construction; use it
    as a context manager (or call :meth:`close`). ``port=0`` picks a free port;
    :attr:`port` and :attr:`path` tell which. All methods are thread-safe.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except OSError as error:
            self._sock.close()
            raise SimError(
                f"cannot listen on udp:{host}:{port}: {error}. Is another simulator "
                "using that port? Pick another port, or 0 for any free one."
            ) from error
        self.host, self.port = self._sock.getsockname()[:2]
        self._lock = threading.Lock()
        self._activated = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._tag: SimTag | None = None
        self._deadline: float | None = None
        self._state = _State.IDLE
        self._level = 0
        self._activations = 0
        self._pending_reqa: tuple[float, tuple[str, int]] | None = None
        self._thread = threading.Thread(target=self._run, name=f"sim-tag {self.path}", daemon=True)
        self._thread.start()
        log.info("simulated tag field listening at %s", self.path)

    @property
    def path(self) -> str:
        """The nfcpy device path of this field, e.g. ``udp:127.0.0.1:54321``."""
        return f"udp:{self.host}:{self.port}"

    # Tag in the field -------------------------------------------------------------------

    def present(self, tag: SimTag, seconds: float | None = None) -> None:
        """Put *tag* in the field, for *seconds* (then it stops answering) or until removed."""
        if seconds is not None and seconds <= 0:
            raise SimError(f"a tag is presented for more than 0 seconds, not {seconds}")
        with self._lock:
            tag.reset()
            self._tag = tag
            self._deadline = None if seconds is None else time.monotonic() + seconds
            self._state = _State.IDLE
            late = self._answer_pending_reqa(tag)
        if late is not None:
            self._send(late[0], late[1])
        log.info(
            "tag %s in the field of %s for %s",
            _Hex(tag.uid),
            self.path,
            "as long as needed" if seconds is None else f"{seconds} s",
        )

    def remove(self) -> None:
        """Take the tag out of the field: from now on nothing answers."""
        with self._lock:
            self._remove_locked("removed")

    @property
    def tag_present(self) -> bool:
        with self._lock:
            return self._tag_in_field() is not None

    @property
    def activations(self) -> int:
        """How many times a reader selected the tag (completed anticollision)."""
        with self._lock:
            return self._activations

    def wait_for_activations(self, count: int, timeout: float) -> bool:
        """Block until the tag was selected *count* times in total; False on timeout."""
        with self._activated:
            return self._activated.wait_for(lambda: self._activations >= count, timeout)

    def _remove_locked(self, why: str) -> None:
        if self._tag is not None:
            log.info("tag %s left the field of %s (%s)", _Hex(self._tag.uid), self.path, why)
        self._tag = None
        self._deadline = None
        self._state = _State.IDLE

    def _tag_in_field(self) -> SimTag | None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            self._remove_locked("time is up")
        return self._tag

    # Lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the server thread and release the port. Safe to call twice."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("server thread of %s did not stop within %s s", self.path, JOIN_TIMEOUT)
        self._sock.close()

    def __enter__(self) -> UdpTagServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Server thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], POLL_INTERVAL)
                if not ready:
                    continue
                datagram, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except (OSError, ValueError) as error:  # ValueError: closed by close()
                if not self._stop.is_set():
                    log.error("simulated tag field %s stopped: %s", self.path, error)
                return
            self._serve_datagram(datagram, addr)

    def _answer_pending_reqa(self, tag: SimTag) -> tuple[bytes, tuple[str, int]] | None:
        pending, self._pending_reqa = self._pending_reqa, None
        if pending is None or time.monotonic() - pending[0] > PENDING_REQA_S:
            return None
        reply = self._on_request(tag, SENS_REQ)
        return None if reply is None else (reply, pending[1])

    def _serve_datagram(self, datagram: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self._answer(datagram, addr)
        except Exception:  # a bug in a tag model must not kill the field
            log.exception("simulated tag failed on %r from %s:%s", datagram[:64], *addr)
            return
        if reply:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr: tuple[str, int]) -> None:
        try:
            self._sock.sendto(f"{BRTY} {reply.hex()}".encode("ascii"), addr)
        except OSError as error:  # the reader went away between frame and answer
            log.debug("%s could not answer %s:%s: %s", self.path, addr[0], addr[1], error)

    def _answer(self, datagram: bytes, addr: tuple[str, int]) -> bytes | None:
        if datagram.startswith(RFOFF):
            with self._lock:
                self._pending_reqa = None
                self._field_off()
            return None
        try:
            brty, hexdata = datagram.split()
            frame = bytes.fromhex(hexdata.decode("ascii"))
        except ValueError:
            log.debug("ignoring malformed datagram %r", datagram[:64])
            return None
        if brty.decode("ascii", "replace") != BRTY:
            return None  # Type B / Type F polls: no such tag here
        with self._lock:
            self._pending_reqa = None
            if frame == SENS_REQ and self._tag_in_field() is None:
                self._pending_reqa = (time.monotonic(), addr)
            return self._on_frame(frame)

    def _field_off(self) -> None:
        tag = self._tag_in_field()
        if tag is not None:
            tag.reset()
        self._state = _State.IDLE

    def _on_frame(self, frame: bytes) -> bytes | None:
        tag = self._tag_in_field()
        if tag is None or not frame:
            return None
        if frame in (SENS_REQ, ALL_REQ):
            return self._on_request(tag, frame)
        if self._state is _State.READY:
            return self._on_anticollision(tag, frame)
        if self._state is _State.ACTIVE:
            return self._on_command(tag, frame)
        return None

    def _on_request(self, tag: SimTag, frame: bytes) -> bytes | None:
        if self._state is _State.HALT and frame == SENS_REQ:
            return None
        tag.reset()  # a new activation: the tag starts from IDLE
        self._state, self._level = _State.READY, 0
        return tag.sens_res

    def _on_anticollision(self, tag: SimTag, frame: bytes) -> bytes | None:
        levels = cascade_levels(tag.uid)
        uid_cln = levels[self._level] + bytes([bcc(levels[self._level])])
        if len(frame) >= 2 and frame[0] == SEL_CMDS[self._level]:
            if frame[1:] == bytes([NVB_SDD]):
                return uid_cln
            if frame[1:] == bytes([NVB_SEL]) + uid_cln:
                return self._on_selected(tag, last=self._level == len(levels) - 1)
        self._state = _State.IDLE  # anything unexpected: back to IDLE, mute
        return None

    def _on_selected(self, tag: SimTag, last: bool) -> bytes:
        if not last:
            self._level += 1
            return bytes([SAK_CASCADE])
        self._state = _State.ACTIVE
        self._activations += 1
        self._activated.notify_all()
        log.info(
            "tag %s selected at %s (activation %d)", _Hex(tag.uid), self.path, self._activations
        )
        return bytes([tag.sel_res])

    def _on_command(self, tag: SimTag, frame: bytes) -> bytes | None:
        reply = tag.exchange(frame)
        log.debug(
            "%s tag %s: %s -> %s", self.path, _Hex(tag.uid), _Hex(frame), reply and _Hex(reply)
        )
        if frame == HLTA:
            self._state = _State.HALT
        return reply


# --- For the CLI ---------------------------------------------------------------------------


def build_tag(
    uid_hex: str,
    product: str = "NTAG215",
    uri: str | None = None,
    text: str | None = None,
    raw_ndef_hex: str | None = None,
    faults: TagFaults | None = None,
    *,
    tag_type: int = 2,
    language: str = "sv",
) -> SimTag:
    """Build a simulated tag from command-line style arguments.

    *tag_type* 2 makes an :class:`~drivers.sim.tags.Ntag21x` of *product*
    (``NTAG213``, ``NTAG215`` or ``NTAG216``); 4 makes a
    :class:`~drivers.sim.tags.Type4Tag` (*product* is then ignored). *product*
    ``NTAG424`` makes a factory-fresh NTAG 424 DNA
    (:class:`~drivers.sim.ntag424.Ntag424Tag`: all-zero keys, no SDM; *tag_type* is
    then ignored), its NDEF file empty unless a message is given. The NDEF
    message is either *raw_ndef_hex* or built from *uri* and/or *text*.
    Raises :class:`~drivers.sim.tags.SimError` with a message that names the fix.
    """
    try:
        uid = bytes.fromhex(uid_hex)
    except ValueError as error:
        raise SimError(f"the UID must be hex, like 04A1B2C3D4E5F6: {error}") from error
    if raw_ndef_hex is not None and (uri is not None or text is not None):
        raise SimError("give either a raw NDEF message or a URI/text, not both")
    if raw_ndef_hex is not None:
        try:
            message = bytes.fromhex(raw_ndef_hex)
        except ValueError as error:
            raise SimError(f"the raw NDEF message must be hex: {error}") from error
    else:
        message = ndef_bytes(uri, text, language)
    if product.upper().replace(" ", "") in NTAG424_NAMES:
        from drivers.sim.ntag424 import Ntag424Tag

        return Ntag424Tag.factory(uid, message, faults)
    if tag_type == 4:
        return Type4Tag(uid, message, faults=faults)
    if tag_type != 2:
        raise SimError(f"the simulator makes Type 2 and Type 4 tags, not type {tag_type}")
    variant = NTAG_VARIANTS.get(product.upper())
    if variant is None:
        raise SimError(f"unknown product {product!r}: use one of "
                       f"{', '.join((*NTAG_VARIANTS, 'NTAG424'))}")
    return Ntag21x(uid, variant.name, ndef=message, faults=faults)


def serve(
    port: int,
    tag: SimTag,
    seconds: float | None = None,
    *,
    host: str = DEFAULT_HOST,
    stop: threading.Event | None = None,
    on_ready: Callable[[UdpTagServer], None] | None = None,
) -> int:
    """Present *tag* at ``udp:<host>:<port>`` and block; return how often it was selected.

    Returns after *seconds* (the tag then leaves the field) or when *stop* is
    set; with neither it serves until interrupted (KeyboardInterrupt propagates,
    the port is released). *on_ready* is called with the running server, e.g.
    for the CLI to print :attr:`UdpTagServer.path`. ``port=0`` picks a free port.
    """
    stop = stop or threading.Event()
    with UdpTagServer(host, port) as server:
        server.present(tag, seconds)
        if on_ready is not None:
            on_ready(server)
        stop.wait(seconds)
        server.remove()
        return server.activations
