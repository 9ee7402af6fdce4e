"""nfcpy readers opened by path, one worker thread each.

Paths (``nyckelfri agent run --reader PATH``):

==============================  ==============================================
``usb`` / ``usb:VID:PID``       first supported USB reader / a given model
``usb:BUS:DEV``                 one USB device by bus and address
``tty:AMA0:pn532``              PN532 on a serial port nfcpy knows (ttyAMA0,
                                ttyS0, ttyUSB0, ...)
``serial:/dev/X:pn532``         PN532 on any serial device path nfcpy's own
                                regex rejects: ``/dev/serial0`` on a Raspberry
                                Pi, a pseudo-terminal (``/dev/pts/N``) from
                                ``nyckelfri sim pn532``
``udp:HOST:PORT``               nfcpy's RF-over-UDP driver (``nyckelfri sim tag``)
==============================  ==============================================

Every way opening can fail ends in one :class:`ReaderOpenError` whose message
names the fix. A reader that is not there when the worker starts
(:meth:`NfcpyReader.try_open`), or that disappears while running, is reported
down and reopened, with backoff, when it comes back; taps are never lost because
nothing is acknowledged before the agent's handler has made it durable.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ndef
import nfc
import nfc.clf
import nfc.clf.pn532
import nfc.clf.transport
import nfc.tag
import nfc.tag.tt2

from drivers.nfc.base import (
    Feedback,
    NdefRecordInfo,
    NfcError,
    ReaderLostError,
    ReaderOpenError,
    ReadProblem,
    ReleaseHandler,
    Tap,
    TapHandler,
)

log = logging.getLogger(__name__)

# Pause between nfcpy's polls for a tag (nfcpy's default): 100 ms keeps a tap
# feeling instant; the RF field is off in between.
POLL_INTERVAL_S = 0.1
# Between attempts to reopen a reader that went away (unplugged, power glitch):
# fast enough that a re-plugged reader is back before the next visit, slow
# enough not to spin on a reader that is gone for good.
REOPEN_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
# Failing sense loops in a row before we treat the reader as gone.
MAX_CONSECUTIVE_ERRORS = 3
# Home-care tags are NFC-A (NTAG21x, NTAG 424 DNA, Type 4): polling only 106A
# avoids nfcpy also trying NFC-B and NFC-F on every cycle, each of which costs up
# to a second on the udp driver and a needless RF burst on real hardware.
TARGETS = ("106A",)
# udp: a refused datagram means no tag simulator is running; look again this often.
UDP_IDLE_WAIT_S = 0.2

UDEV_HINT = "see udev/README.md"
PATH_FORMS = (
    "usb, usb:VID:PID, usb:BUS:DEV, tty:AMA0:pn532, serial:/dev/serial0:pn532, udp:HOST:PORT"
)
# Why a PN532 on a serial port stays silent, in the order they happen in the field.
# nfcpy always starts talking at 115200 baud (the PN532's power-on HSU speed) and
# then switches the chip to a higher one; a PN532 left at that higher speed by an
# agent that was killed answers nothing at 115200 until its power is cut.
PN532_ADVICE = (
    "Check that the PN532 board is in HSU (high-speed UART) mode, not I2C or SPI; that "
    "TX and RX are crossed (PN532 TX to the Pi's RX, GPIO15); that no serial console or "
    "getty uses the port; and that the PN532 talks at its power-on 115200 baud (cut its "
    f"power once if an agent was killed while it ran faster); {UDEV_HINT}"
)
# nfcpy's exact serial ports (tty:PORT:DRIVER -> /dev/ttyPORT); other names it globs.
_EXACT_TTY_PORT = re.compile(r"^(S|ACM|AMA|USB)\d+$")

FrontendFactory = Callable[[str], Any]


# --- opening ---------------------------------------------------------------------------


def check_path(path: str) -> str:
    """Reject a path no driver understands, before touching any hardware."""
    kind = path.split(":", 1)[0]
    if kind not in ("usb", "tty", "udp", "serial"):
        raise ReaderOpenError(path, "unknown reader path", f"Use one of: {PATH_FORMS}")
    if kind == "serial":
        parts = path.split(":")
        if len(parts) != 3 or not parts[1].startswith("/") or parts[2] != "pn532":
            raise ReaderOpenError(
                path, "malformed serial path", "Write it as serial:/dev/DEVICE:pn532"
            )
    if kind == "udp":
        parts = path.split(":")
        if len(parts) > 2 and parts[2] and not parts[2].isdigit():
            raise ReaderOpenError(path, "the UDP port is not a number", "Write udp:HOST:PORT")
    return kind


def serial_port_node(path: str, dev: Path = Path("/dev")) -> Path | None:
    """The device node a serial reader path names, or None (not serial, or a glob).

    ``tty:AMA0:pn532`` -> ``/dev/ttyAMA0`` (nfcpy's own naming); ``serial:/dev/X:pn532``
    -> ``/dev/X``. ``dev`` re-roots ``tty:`` paths (the doctor's tests use a tree).
    """
    parts = path.split(":")
    if parts[0] == "serial" and len(parts) == 3:
        return Path(parts[1])
    if parts[0] == "tty" and len(parts) >= 2 and parts[1]:
        port = parts[1]
        if _EXACT_TTY_PORT.match(port):
            return dev / f"tty{port}"
        if re.fullmatch(r"(S|ACM|AMA|USB)", port):
            return None  # nfcpy tries every ttyAMA*, ttyUSB*, ...
        return dev / port
    return None


def missing_port_advice(node: Path) -> str:
    name = node.name
    if name.startswith(("ttyUSB", "ttyACM")):
        return f"Plug in the USB-serial adapter (ls /dev/ttyUSB* /dev/ttyACM*); {UDEV_HINT}"
    return ("Enable the UART in /boot/firmware/config.txt and reboot (Pi 1, 2, Zero: "
            "enable_uart=1; Pi 3, 4, Zero W: enable_uart=1, and dtoverlay=miniuart-bt for "
            "ttyAMA0; Pi 5: dtparam=uart0=on for ttyAMA0), or name a port that exists; "
            f"{UDEV_HINT} section 3")


def open_frontend(path: str) -> nfc.ContactlessFrontend:
    """Open an nfcpy ContactlessFrontend on ``path`` or raise ReaderOpenError with advice."""
    kind = check_path(path)
    if kind == "serial":
        return open_serial_pn532(path.split(":")[1], path)
    if kind == "tty":
        node = serial_port_node(path)
        if node is not None and not node.exists():
            # nfcpy finds no such port and says only "no reader"; say which port.
            raise ReaderOpenError(path, f"no such serial port {node}", missing_port_advice(node))
    clf = nfc.ContactlessFrontend()
    try:
        opened = clf.open(path)
    except FileNotFoundError as exc:
        # nfcpy's usb transport without the libusb-1.0 system library.
        raise ReaderOpenError(
            path, f"the libusb-1.0 system library is missing ({exc})",
            "Install it: sudo apt-get install libusb-1.0-0",
        ) from exc
    except OSError as exc:
        if kind == "tty" and _is_pn532(path) and exc.errno in _SILENT_ERRNOS:
            # nfcpy's pn532.init: no ACK in time (ETIMEDOUT) or not a PN532's (ENODEV).
            raise _pn532_silent(path, exc) from exc
        raise _os_error(path, exc) from exc
    except Exception as exc:
        # usb1 raises its own errors (USBErrorOther without /dev/bus/usb, ...).
        if type(exc).__module__.startswith("usb1"):
            raise ReaderOpenError(
                path, f"USB is not accessible ({type(exc).__name__}: {exc})",
                "Check that /dev/bus/usb exists (in a container: pass the USB bus through)",
            ) from exc
        raise
    if not opened:
        raise _not_found(path)
    return clf


# What nfcpy's PN532 init raises when nothing, or not a PN532, answers.
_SILENT_ERRNOS = (errno.ETIMEDOUT, errno.ENODEV, errno.EIO)


def _is_pn532(path: str) -> bool:
    return path.rsplit(":", 1)[-1] == "pn532"


def _pn532_silent(path: str, exc: OSError) -> ReaderOpenError:
    why = "no answer" if exc.errno == errno.ETIMEDOUT else "an answer that is not a PN532's"
    return ReaderOpenError(path, f"no PN532 answered on this port ({why})", PN532_ADVICE)


def open_serial_pn532(device_path: str, path: str | None = None) -> nfc.ContactlessFrontend:
    """Open nfcpy's PN532 driver on any serial device (``/dev/serial0``, a pty, ...).

    nfcpy's own ``tty:`` regex refuses such names, but its driver does not need it.
    A symlink is resolved first, so that ``/dev/serial0`` -> ``/dev/ttyS0`` gets nfcpy's
    Raspberry Pi rule (the mini UART stays at 115200 baud instead of being raised).
    """
    path = path or f"serial:{device_path}:pn532"
    if not os.path.exists(device_path):
        raise ReaderOpenError(path, f"no such serial port {device_path}",
                              missing_port_advice(Path(device_path)))
    try:
        tty = nfc.clf.transport.TTY(os.path.realpath(device_path))
    except (OSError, termios.error) as exc:  # pyserial's SerialException is an OSError
        if isinstance(exc, OSError) and exc.errno == errno.EACCES:
            raise _os_error(path, exc) from exc
        raise ReaderOpenError(path, f"cannot open the serial port ({exc})",
                              f"Check permissions (dialout group); {UDEV_HINT}") from exc
    try:
        device = nfc.clf.pn532.init(tty)
    except OSError as exc:
        tty.close()
        if exc.errno in (*_SILENT_ERRNOS, None):
            raise _pn532_silent(path, exc) from exc
        raise _os_error(path, exc) from exc
    except Exception:
        tty.close()
        raise
    device._path = device_path
    clf = nfc.ContactlessFrontend()
    clf.device = device
    return clf


def _os_error(path: str, exc: OSError) -> ReaderOpenError:
    if exc.errno == errno.EACCES:
        return ReaderOpenError(
            path, "permission denied",
            f"Add the agent's user to the reader's group with the udev rule; {UDEV_HINT}",
        )
    if exc.errno == errno.EBUSY:
        return ReaderOpenError(
            path, "the reader is held by another driver",
            "Blacklist the kernel modules pn533_usb, pn533, nfc and port100 (and stop pcscd "
            f"for an ACR122U), then re-plug the reader; {UDEV_HINT}",
        )
    if exc.errno == errno.ENODEV:
        return ReaderOpenError(path, "no such device", "Check that the reader is plugged in")
    if exc.errno == errno.ETIMEDOUT:
        return ReaderOpenError(path, "the reader did not answer in time",
                               f"Re-plug the reader (a powered hub helps on a Pi); {UDEV_HINT}")
    return ReaderOpenError(path, f"{exc.strerror or exc}",
                           f"Check the reader and its path; {UDEV_HINT}")


def _not_found(path: str) -> ReaderOpenError:
    if path.startswith("usb"):
        held = usb_readers_held_by_kernel()
        if held:
            names = ", ".join(f"{name} (driver {drv})" for name, drv in held)
            return ReaderOpenError(
                path, f"reader found but held by a kernel driver: {names}",
                "Blacklist pn533_usb, pn533, nfc and port100, then re-plug the reader; "
                + UDEV_HINT,
            )
        denied = usb_readers_denied()
        if denied:
            return ReaderOpenError(
                path, f"permission denied on {', '.join(denied)}",
                f"Install the udev rule and add the agent's user to its group; {UDEV_HINT}",
            )
        return ReaderOpenError(path, "no supported USB reader is plugged in",
                               "Plug in a reader (e.g. Sony RC-S380, SCL3711, ACR122U)")
    if path.startswith("tty"):
        node = serial_port_node(path)
        if node is not None:
            # nfcpy drops a node whose tcgetattr fails: there is no UART behind it.
            return ReaderOpenError(path, f"{node} is not a working serial port",
                                   missing_port_advice(node))
        advice = PN532_ADVICE if _is_pn532(path) else (
            f"Check the port name, that enable_uart=1 and no serial console uses it; {UDEV_HINT}")
        return ReaderOpenError(path, "no reader answered on any of those serial ports", advice)
    return ReaderOpenError(path, "no reader available", f"Check the path; forms: {PATH_FORMS}")


SYSFS_USB = Path("/sys/bus/usb/devices")


def _sysfs_usb_devices(sysfs: Path) -> list[tuple[Path, int, int]]:
    found: list[tuple[Path, int, int]] = []
    if not sysfs.is_dir():
        return found
    for dev in sysfs.iterdir():
        try:
            vid = int((dev / "idVendor").read_text(), 16)
            pid = int((dev / "idProduct").read_text(), 16)
        except (OSError, ValueError):
            continue
        found.append((dev, vid, pid))
    return found


def _known_reader(vid: int, pid: int) -> str | None:
    from drivers.nfc.devices import lookup

    reader = lookup(vid, pid)
    return None if reader is None else reader.name


def usb_readers_held_by_kernel(sysfs: Path = SYSFS_USB) -> list[tuple[str, str]]:
    """Supported readers whose interface a kernel driver (pn533_usb, port100) claimed."""
    held = []
    for dev, vid, pid in _sysfs_usb_devices(sysfs):
        name = _known_reader(vid, pid)
        if name is None:
            continue
        for intf in dev.glob(f"{dev.name}:*"):
            driver = intf / "driver"
            if driver.is_symlink():
                held.append((name, os.path.basename(os.readlink(driver))))
    return held


def usb_reader_nodes(sysfs: Path = SYSFS_USB, devfs: str = "/dev/bus/usb",
                     ) -> list[tuple[str, int, int, Path]]:
    """Supported readers plugged in: (name, vendor id, product id, /dev/bus/usb node)."""
    found = []
    for dev, vid, pid in _sysfs_usb_devices(sysfs):
        name = _known_reader(vid, pid)
        if name is None:
            continue
        try:
            bus = int((dev / "busnum").read_text())
            num = int((dev / "devnum").read_text())
        except (OSError, ValueError):
            continue
        found.append((name, vid, pid, Path(f"{devfs}/{bus:03d}/{num:03d}")))
    return found


def usb_readers_denied(sysfs: Path = SYSFS_USB, devfs: str = "/dev/bus/usb") -> list[str]:
    """Supported readers whose /dev/bus/usb node this process cannot open."""
    return [
        f"{name} at {node}"
        for name, _vid, _pid, node in usb_reader_nodes(sysfs, devfs)
        if node.exists() and not os.access(node, os.R_OK | os.W_OK)
    ]


# --- reading a tag ---------------------------------------------------------------------


def _record_info(record: Any) -> NdefRecordInfo:
    text = getattr(record, "text", None) if isinstance(record, ndef.TextRecord) else None
    uri = getattr(record, "iri", None) if isinstance(record, ndef.UriRecord) else None
    payload = bytes(getattr(record, "data", b""))
    return NdefRecordInfo(type=record.type, name=record.name, text=text, uri=uri,
                          payload_hex=payload[:64].hex())


def read_tag(tag: Any, reader_path: str, detected_ns: int) -> Tap:
    """Everything the agent needs from a tag, read while it is in the field.

    Never raises for a bad tag: a problem is reported in ``Tap.problem``.
    """
    uid = bytes(tag.identifier).hex().upper()
    product = str(getattr(tag, "product", "") or tag.type)
    base: dict[str, Any] = {"reader": reader_path, "uid": uid, "product": product,
                            "tag_type": str(tag.type), "detected_ns": detected_ns}
    try:
        signature = _signature(tag)
        records, problem, detail = _read_ndef(tag)
    except (nfc.tag.TagCommandError, nfc.clf.CommunicationError) as exc:
        records, signature = (), None
        problem, detail = _classify_read_error(tag, exc)
    except Exception as exc:  # noqa: BLE001 - a tag must never crash the reader
        log.warning("unexpected error reading %s on %s: %r", uid, reader_path, exc)
        records, signature = (), None
        problem, detail = ReadProblem.TRUNCATED, f"unexpected {type(exc).__name__}: {exc}"
    return Tap(**base, ndef=records, problem=problem, problem_detail=detail,
               signature=signature)


def _signature(tag: Any) -> str | None:
    sig = getattr(tag, "signature", None)
    if not sig:
        return None
    sig = bytes(sig)
    return None if not any(sig) else sig.hex().upper()


def _read_ndef(tag: Any) -> tuple[tuple[NdefRecordInfo, ...], ReadProblem | None, str]:
    ndef_obj = tag.ndef
    if ndef_obj is None:
        # nfcpy turns read errors into "no NDEF"; find out which it was.
        return (), *_probe_without_ndef(tag)
    octets = bytes(ndef_obj.octets)
    if not octets:
        return (), None, ""
    try:
        records = tuple(_record_info(r) for r in ndef.message_decoder(octets, errors="strict"))
    except ndef.DecodeError as exc:
        return (), ReadProblem.GARBAGE_NDEF, f"NDEF message does not decode: {exc}"
    return records, None, ""


def _probe_without_ndef(tag: Any) -> tuple[ReadProblem | None, str]:
    if not isinstance(tag, nfc.tag.tt2.Type2Tag):
        return (None, "") if tag.is_present else (ReadProblem.REMOVED_MID_READ, "tag left")
    try:
        header = tag.read(0)  # pages 0-3: UID, lock bytes, capability container
    except nfc.tag.TagCommandError as exc:
        return _classify_read_error(tag, exc)
    if header[12] == 0xE1:
        # Formatted for NDEF, yet nfcpy could not read the message: a partial read.
        return ReadProblem.TRUNCATED, "the NDEF area could not be read completely"
    return None, ""  # a blank tag: identified by UID alone


def _classify_read_error(tag: Any, exc: Exception) -> tuple[ReadProblem, str]:
    # A tag that answered, but with the wrong amount of data, is still there:
    # nfcpy's own presence check would fail on it too, so decide by the error.
    errno_ = getattr(exc, "errno", None)
    if isinstance(exc, nfc.tag.TagCommandError) and errno_ not in (
        nfc.tag.TIMEOUT_ERROR, nfc.tag.RECEIVE_ERROR, None,
    ):
        return ReadProblem.TRUNCATED, f"the tag answered incompletely ({exc})"
    try:
        present = bool(tag.is_present)
    except Exception:  # noqa: BLE001 - the presence check itself may fail on a gone tag
        present = False
    if not present:
        return ReadProblem.REMOVED_MID_READ, f"the tag left the field while being read ({exc})"
    return ReadProblem.TRUNCATED, f"the tag answered incompletely ({exc})"


# --- the worker ------------------------------------------------------------------------


def _backoff(attempt: int) -> float:
    return REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)]


def _down_detail(exc: NfcError) -> str:
    """What a reader that is down says in the log and in `nyckelfri agent status`."""
    if isinstance(exc, ReaderOpenError):
        return (f"{str(exc).rstrip('.')}. The agent keeps running and waits for the reader "
                f"(retrying every {REOPEN_BACKOFF_S[-1]:g} s at most).")
    return str(exc)


class NfcpyReader:
    """One nfcpy reader served by one worker thread.

    ``on_tap`` runs in the worker thread and must return only once the tap is
    durable; its :class:`Feedback` is then given through ``feedback``.
    """

    def __init__(
        self,
        path: str,
        on_tap: TapHandler,
        *,
        on_release: ReleaseHandler | None = None,
        on_status: Callable[[str, str], None] | None = None,
        frontend_factory: FrontendFactory = open_frontend,
        feedback_factory: Callable[[Any], Any] | None = None,
        boottime_ns: Callable[[], int] | None = None,
    ) -> None:
        check_path(path)
        self.path = path
        self.on_tap = on_tap
        self.on_release = on_release
        self.on_status = on_status or (lambda state, detail: None)
        self.frontend_factory = frontend_factory
        self.feedback_factory = feedback_factory
        self.boottime_ns = boottime_ns or (lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clf: Any = None
        self._feedback: Any = None
        self.opened = threading.Event()
        self.taps = 0
        self.last_error: NfcError | None = None
        self._unopened: ReaderOpenError | None = None  # try_open failed; worker retries

    # lifecycle

    def open(self) -> None:
        """Open the reader now (in the caller's thread), raising ReaderOpenError."""
        self._clf = self.frontend_factory(self.path)
        self._feedback = self._make_feedback(self._clf)
        self.opened.set()
        self.on_status("open", str(getattr(self._clf, "device", "") or self.path))
        log.info("reader %s open: %s", self.path, self._clf)

    def try_open(self) -> ReaderOpenError | None:
        """Open now if the reader is there; else report it down and return why.

        Nothing is raised: the worker (:meth:`start`) keeps reopening with backoff, so an
        agent started before its reader is plugged in (or its UART set up) waits for it.
        """
        try:
            self.open()
        except ReaderOpenError as exc:
            self._unopened = self.last_error = exc
            self.on_status("down", _down_detail(exc))
            return exc
        return None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"reader {self.path}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("reader %s did not stop within %.1f s", self.path, timeout)
        self._close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # worker

    def _run(self) -> None:
        attempt = 0
        if self._unopened is not None:
            # Said here, not in try_open: the line tells that the worker now waits.
            log.error("%s", _down_detail(self._unopened))
            attempt = 1
        while not self._stop.is_set():
            if self._clf is None:
                if attempt and self._stop.wait(_backoff(attempt - 1)):
                    break
                try:
                    self.open()
                    attempt = 0
                except ReaderOpenError as exc:
                    self._report_down(exc, attempt)
                    attempt += 1
                    continue
            try:
                self._serve()
            except ReaderLostError as exc:
                self._report_down(exc, attempt)
                self._close()
            except Exception as exc:
                # Whatever a driver throws, the worker must not die silently: report,
                # close and reopen, like an unplugged reader.
                log.exception("reader %s failed unexpectedly; reopening", self.path)
                self._report_down(ReaderLostError(f"reader {self.path} failed: {exc!r}; "
                                                  "reopening"), attempt)
                self._close()
                self._stop.wait(REOPEN_BACKOFF_S[0])

    def _report_down(self, exc: NfcError, attempt: int) -> None:
        if attempt == 0 or str(exc) != str(self.last_error):
            detail = _down_detail(exc)
            log.error("%s", detail)
            self.on_status("down", detail)
        self.last_error = exc
        self.opened.clear()

    def _serve(self) -> None:
        errors = 0
        options = {
            "on-connect": self._on_connect,
            "on-release": self._on_release,
            "beep-on-connect": False,  # feedback follows validation, not detection
            "interval": POLL_INTERVAL_S,
            # nfcpy checks `terminate` only between sense rounds of `iterations`
            # polls each; one poll per round keeps SIGTERM prompt.
            "iterations": 1,
            "targets": TARGETS,
        }
        while not self._stop.is_set():
            try:
                result = self._clf.connect(rdwr=dict(options), terminate=self._stop.is_set)
            except (OSError, termios.error) as exc:
                # A serial reader that vanished raises termios.error from pyserial's
                # flush, which nfcpy does not catch (it is not an OSError).
                raise ReaderLostError(f"reader {self.path} went away ({exc}); reopening") from exc
            except nfc.clf.CommunicationError as exc:
                result, detail = False, str(exc)
            else:
                detail = "the reader stopped answering"
            if result is not False or self._stop.is_set():
                errors = 0
                continue
            # nfcpy's connect() swallows IOError (reader unplugged, UDP peer gone) into
            # False. A few in a row mean the reader is gone: reopen it.
            errors += 1
            if self.path.startswith("udp"):
                # No tag simulator listening: that is an empty field, not a lost reader.
                if errors == 1:
                    log.warning("reader %s: nothing listening there yet (no simulated tag)",
                                self.path)
                self._stop.wait(UDP_IDLE_WAIT_S)
                continue
            if errors >= MAX_CONSECUTIVE_ERRORS:
                raise ReaderLostError(f"reader {self.path}: {detail}; reopening")
            self._stop.wait(REOPEN_BACKOFF_S[0])

    def _on_connect(self, tag: Any) -> bool:
        detected = self.boottime_ns()
        tap = read_tag(tag, self.path, detected)
        self.taps += 1
        try:
            verdict = self.on_tap(tap)
        except Exception:
            # The handler could not make the tap durable: say so loudly, never beep green.
            log.exception("tap %s on %s could not be registered", tap.uid, self.path)
            verdict = Feedback.REFUSED
        self._give(verdict)
        return True  # keep the tag until it leaves the field, then on-release

    def _on_release(self, tag: Any) -> bool:
        if self.on_release is not None:
            try:
                self.on_release(bytes(tag.identifier).hex().upper())
            except Exception:
                log.exception("release handler failed on %s", self.path)
        return True

    def _give(self, verdict: Feedback) -> None:
        if self._feedback is None:
            return
        try:
            self._feedback.give(verdict, getattr(self._clf, "device", None))
        except Exception:
            log.warning("feedback failed on %s", self.path, exc_info=True)

    def _make_feedback(self, clf: Any) -> Any:
        if self.feedback_factory is None:
            return None
        return self.feedback_factory(getattr(clf, "device", None))

    def _close(self) -> None:
        clf, self._clf = self._clf, None
        if clf is not None:
            try:
                clf.close()
            except Exception:
                log.debug("closing %s failed", self.path, exc_info=True)
