"""Which message each way of failing to open a reader produces, on nfcpy's real paths.

Regressions from the audit of issue 10: a missing UART said "no reader answered"; a PN532
timing out on a ``tty:`` path said "Connection timed out. See see udev/README.md" with
no PN532 advice; an agent whose reader was not there at start exited.
"""

from __future__ import annotations

import errno
import os
import threading
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.nfc.base import Feedback, ReaderOpenError, Tap
from drivers.nfc.reader import (
    PN532_ADVICE,
    NfcpyReader,
    _os_error,
    open_frontend,
    open_serial_pn532,
    serial_port_node,
)
from drivers.sim.pn532 import Pn532Emulator
from drivers.sim.udp_tag import build_tag

PN532_HINTS = ("HSU", "crossed", "console", "115200")


def open_error(path: str) -> ReaderOpenError:
    with pytest.raises(ReaderOpenError) as info:
        open_frontend(path)
    return info.value


# --- serial ports that are not there ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "node", "advice"),
    [
        ("tty:AMA97:pn532", "/dev/ttyAMA97", "dtoverlay=miniuart-bt"),
        ("tty:S97:pn532", "/dev/ttyS97", "enable_uart=1"),
        ("tty:USB97:pn532", "/dev/ttyUSB97", "USB-serial adapter"),
        ("serial:/dev/nyckelfri-no-such-port:pn532", "/dev/nyckelfri-no-such-port",
         "enable_uart"),
    ],
)
def test_a_missing_serial_port_is_named_with_advice(path: str, node: str, advice: str) -> None:
    err = open_error(path)
    assert err.reason == f"no such serial port {node}"
    assert advice in err.advice and "udev/README.md" in err.advice
    assert "no reader answered" not in str(err)


def test_a_node_without_a_uart_behind_it_is_not_a_working_port() -> None:
    # /dev/null exists, but nfcpy's tcgetattr probe drops it: before, "no reader answered".
    err = open_error("tty:null:pn532")
    assert err.reason == "/dev/null is not a working serial port"


def test_serial_port_node_follows_nfcpys_naming(tmp_path: Path) -> None:
    assert serial_port_node("tty:AMA0:pn532") == Path("/dev/ttyAMA0")
    assert serial_port_node("tty:S0:pn532", tmp_path) == tmp_path / "ttyS0"
    assert serial_port_node("tty:serial0:pn532", tmp_path) == tmp_path / "serial0"
    assert serial_port_node("serial:/dev/pts/3:pn532") == Path("/dev/pts/3")
    assert serial_port_node("tty:USB:pn532") is None  # nfcpy globs every ttyUSB*
    assert serial_port_node("usb:054c:06c1") is None


# --- a PN532 that does not answer ---------------------------------------------------------


def test_a_silent_pn532_on_a_tty_path_gets_the_pn532_advice() -> None:
    # nfcpy's own tty: path on /dev/ptmx: a fresh pty master nobody answers on, so
    # nfcpy's pn532.init times out (ETIMEDOUT) exactly as on an unwired UART.
    err = open_error("tty:ptmx:pn532")
    assert err.reason == "no PN532 answered on this port (no answer)"
    assert err.advice == PN532_ADVICE
    assert all(hint in err.advice for hint in PN532_HINTS)
    assert "See see" not in str(err) and "Connection timed out" not in str(err)


@pytest.fixture
def bare_pty() -> Iterator[str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_a_silent_pn532_on_a_serial_path_gets_the_same_advice(bare_pty: str) -> None:
    err = open_error(f"serial:{bare_pty}:pn532")
    assert err.reason.startswith("no PN532 answered") and err.advice == PN532_ADVICE


class LoginConsole:
    """A serial console on the far end of a pty: answers every write with a prompt."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                if not os.read(self.master, 1024):
                    return
                os.write(self.master, b"\r\nraspberrypi login: ")
            except OSError:
                return  # closed

    def close(self) -> None:
        os.close(self.slave)
        os.close(self.master)
        self._thread.join(5)


def test_a_console_answering_instead_of_a_pn532_gets_the_pn532_advice() -> None:
    console = LoginConsole()
    try:
        err = open_error(f"serial:{console.path}:pn532")
    finally:
        console.close()
    assert err.reason == "no PN532 answered on this port (an answer that is not a PN532's)"
    assert "console" in err.advice


def test_a_pn532_behind_a_symlink_is_opened_through_its_real_port(tmp_path: Path) -> None:
    # /dev/serial0 -> ttyS0 on a Pi: nfcpy keeps the mini UART at 115200 only when it
    # sees the real name, so the link is resolved before nfcpy's driver opens it.
    with Pn532Emulator() as emulator:
        link = tmp_path / "serial0"
        link.symlink_to(emulator.path)
        clf = open_serial_pn532(str(link))
        try:
            assert clf.device.chipset.transport.port == emulator.path
            assert clf.device.path == str(link)
        finally:
            clf.close()


# --- other errno values -------------------------------------------------------------------


def test_the_generic_os_error_names_the_readme_once() -> None:
    err = _os_error("usb:054c:06c1", OSError(errno.EPROTO, os.strerror(errno.EPROTO)))
    assert "see see" not in str(err).lower()
    assert err.advice == "Check the reader and its path; see udev/README.md"


def test_a_usb_reader_that_times_out_is_not_called_a_generic_error() -> None:
    err = _os_error("usb:054c:06c1", OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT)))
    assert err.reason == "the reader did not answer in time" and "Re-plug" in err.advice


# --- the worker waits for a reader that is not there --------------------------------------


class Worker:
    """What a reader reports: its states and its taps, with a condition to wait on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.taps: list[Tap] = []
        self.changed = threading.Condition()

    def on_status(self, state: str, detail: str) -> None:
        with self.changed:
            self.seen.append((state, detail))
            self.changed.notify_all()

    def on_tap(self, tap: Tap) -> Feedback:
        with self.changed:
            self.taps.append(tap)
            self.changed.notify_all()
        return Feedback.REGISTERED

    def wait(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), (self.seen, self.taps)


def test_a_reader_missing_at_start_is_waited_for_and_opened_when_it_appears(
        tmp_path: Path) -> None:
    port = tmp_path / "ttyPN532"  # a USB-serial adapter that is not plugged in yet
    worker = Worker()
    reader = NfcpyReader(f"serial:{port}:pn532", worker.on_tap, on_status=worker.on_status)
    error = reader.try_open()
    assert error is not None and error.reason == f"no such serial port {port}"
    state, detail = worker.seen[-1]
    assert state == "down" and "waits for the reader" in detail
    reader.start()
    try:
        with Pn532Emulator() as emulator:
            port.symlink_to(emulator.path)  # plugged in
            worker.wait(lambda: any(s == "open" for s, _ in worker.seen))
            emulator.present(build_tag("04A1B2C3D4E5F6", "NTAG215"), 0.4)
            worker.wait(lambda: bool(worker.taps))
    finally:
        reader.stop()
    assert worker.taps[0].uid == "04A1B2C3D4E5F6"
