"""The reader driver: paths, every way opening fails, reading tags, the worker thread."""

from __future__ import annotations

import errno
import os
import threading
import time
import tty

import pytest

from drivers.nfc.base import Feedback, ReaderOpenError, ReadProblem
from drivers.nfc.reader import (
    NfcpyReader,
    _os_error,
    check_path,
    open_frontend,
    usb_readers_denied,
    usb_readers_held_by_kernel,
)
from drivers.sim.pn532 import Pn532Emulator
from drivers.sim.tags import TagFaults
from drivers.sim.udp_tag import UdpTagServer, build_tag

URI = "https://nyckelfri.example/t/K-1"


@pytest.mark.parametrize(
    ("path", "advice"),
    [
        ("nfc0", "Use one of"),
        ("serial:/dev/ttyS0", "serial:/dev/DEVICE:pn532"),
        ("serial:ttyS0:pn532", "serial:/dev/DEVICE:pn532"),
        ("udp:localhost:x", "Write udp:HOST:PORT"),
    ],
)
def test_malformed_paths_are_refused_before_touching_hardware(path, advice):
    with pytest.raises(ReaderOpenError, match=advice):
        check_path(path)


def test_usb_on_a_machine_without_reader_names_a_fix():
    # Here: no libusb-1.0 or no /dev/bus/usb or no reader, depending on the machine.
    with pytest.raises(ReaderOpenError) as info:
        open_frontend("usb")
    err = info.value
    assert str(err).startswith("No NFC reader at usb: ")
    assert err.advice and err.advice[0].isupper()


@pytest.mark.parametrize(
    ("code", "reason", "advice"),
    [
        (errno.EACCES, "permission denied", "udev"),
        (errno.EBUSY, "held by another driver", "pn533_usb"),
        (errno.ENODEV, "no such device", "plugged in"),
    ],
)
def test_os_errors_map_to_advice(code, reason, advice):
    err = _os_error("usb:054c:06c3", OSError(code, os.strerror(code)))
    assert reason in err.reason and advice in err.advice


def _fake_usb(root, name, vid, pid, driver=None, bus=1, dev=5):
    d = root / name
    d.mkdir(parents=True)
    (d / "idVendor").write_text(f"{vid:04x}\n")
    (d / "idProduct").write_text(f"{pid:04x}\n")
    (d / "busnum").write_text(f"{bus}\n")
    (d / "devnum").write_text(f"{dev}\n")
    if driver:
        intf = root / f"{name}:1.0"
        intf.mkdir()
        (root / "drivers" / driver).mkdir(parents=True)
        (intf / "driver").symlink_to(root / "drivers" / driver)
        # sysfs lists interfaces as siblings; the glob looks below the device too
        (d / f"{name}:1.0").symlink_to(intf)


def test_reader_held_by_kernel_driver_is_named(tmp_path):
    sysfs = tmp_path / "sys"
    _fake_usb(sysfs, "1-1", 0x054C, 0x06C3, driver="port100")
    _fake_usb(sysfs, "1-2", 0x1D6B, 0x0002)  # a hub: not a reader
    held = usb_readers_held_by_kernel(sysfs)
    assert [drv for _, drv in held] == ["port100"] and "RC-S380" in held[0][0]


def test_reader_without_permission_is_named(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can open any device node; permission errors need a normal user")
    sysfs, devfs = tmp_path / "sys", tmp_path / "dev"
    _fake_usb(sysfs, "1-1", 0x072F, 0x2200, bus=1, dev=7)
    (devfs / "001").mkdir(parents=True)
    node = devfs / "001" / "007"
    node.write_text("")
    node.chmod(0)
    assert usb_readers_denied(sysfs, str(devfs)) == [f"ACR122U at {node}"]


def test_serial_port_without_pn532_is_a_clear_error():
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(ReaderOpenError, match="no PN532 answered"):
            open_frontend(f"serial:{os.ttyname(slave)}:pn532")
    finally:
        os.close(master)
        os.close(slave)


class Recorder:
    """Collects what a reader reports; the handler returns a fixed verdict."""

    def __init__(self, verdict=Feedback.REGISTERED, fail=False):
        self.taps, self.releases, self.states, self.given = [], [], [], []
        self.verdict, self.fail = verdict, fail
        self.changed = threading.Condition()

    def on_tap(self, tap):
        with self.changed:
            self.taps.append(tap)
            self.changed.notify_all()
        if self.fail:
            raise RuntimeError("store unavailable")
        return self.verdict

    def on_release(self, uid):
        with self.changed:
            self.releases.append(uid)
            self.changed.notify_all()

    def on_status(self, state, detail):
        with self.changed:
            self.states.append(state)
            self.changed.notify_all()

    def feedback(self, device):
        recorder = self

        class Sink:
            def give(self, feedback, device):
                recorder.given.append(feedback)

        return Sink()

    def wait(self, predicate, timeout=10.0):
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), (self.taps, self.states)


def make_reader(path, rec, **kw):
    return NfcpyReader(path, rec.on_tap, on_release=rec.on_release, on_status=rec.on_status,
                       feedback_factory=rec.feedback, **kw)


def test_tap_read_release_and_feedback_over_udp():
    rec = Recorder()
    with UdpTagServer() as field:
        reader = make_reader(field.path, rec)
        reader.start()
        try:
            field.present(build_tag("04A1B2C3D4E5F6", "NTAG216", uri=URI, text="Ytterdörr"), 0.5)
            rec.wait(lambda: rec.releases)
        finally:
            reader.stop()
    [tap] = rec.taps
    assert (tap.uid, tap.product, tap.problem) == ("04A1B2C3D4E5F6", "NXP NTAG216", None)
    assert tap.ndef[0].uri == URI and tap.ndef[1].text == "Ytterdörr"
    assert tap.signature and len(tap.signature) == 64 and tap.detected_ns > 0
    assert rec.given == [Feedback.REGISTERED] and rec.releases == ["04A1B2C3D4E5F6"]
    assert not reader.running


def test_type4_tag_is_read():
    rec = Recorder()
    with UdpTagServer() as field:
        reader = make_reader(field.path, rec)
        reader.start()
        try:
            field.present(build_tag("04C1C2C3C4C5C6", uri=URI, tag_type=4), 0.5)
            rec.wait(lambda: rec.taps)
        finally:
            reader.stop()
    assert rec.taps[0].tag_type == "Type4Tag" and rec.taps[0].ndef[0].uri == URI


def test_handler_failure_gives_refused_feedback_and_the_reader_goes_on():
    rec = Recorder(fail=True)
    with UdpTagServer() as field:
        reader = make_reader(field.path, rec)
        reader.start()
        try:
            for _ in range(2):
                field.present(build_tag("04A1B2C3D4E5F6", "NTAG215"), 0.4)
                n = len(rec.releases)
                rec.wait(lambda n=n: len(rec.releases) > n)
        finally:
            reader.stop()
    assert rec.given == [Feedback.REFUSED, Feedback.REFUSED]


@pytest.mark.parametrize(
    ("faults", "problem"),
    [(TagFaults(garbage_ndef=True), ReadProblem.GARBAGE_NDEF),
     (TagFaults(truncate_reads=True), ReadProblem.TRUNCATED),
     (TagFaults(mute_after=3), ReadProblem.REMOVED_MID_READ)],
)
def test_read_problems_are_reported_on_the_pn532_path(faults, problem):
    rec = Recorder()
    with Pn532Emulator() as emulator:
        reader = make_reader(emulator.reader_path, rec)
        reader.start()
        try:
            emulator.present(build_tag("04A1B2C3D4E5F6", "NTAG215", uri=URI, faults=faults), 0.5)
            rec.wait(lambda: rec.taps)
        finally:
            reader.stop()
    assert rec.taps[0].problem is problem and rec.taps[0].problem_detail


def test_unplugged_reader_is_reopened_when_it_comes_back():
    """A PN532 whose serial device vanishes, and comes back (on a new pty)."""
    rec = Recorder()
    first = Pn532Emulator()
    current = {"path": first.reader_path}
    reader = make_reader(first.reader_path, rec,
                         frontend_factory=lambda _path: open_frontend(current["path"]))
    reader.start()
    second = None
    try:
        rec.wait(lambda: "open" in rec.states)
        first.present(build_tag("04A1B2C3D4E5F6", "NTAG215"), 0.4)
        rec.wait(lambda: len(rec.taps) == 1)
        first.close()  # unplugged
        rec.wait(lambda: "down" in rec.states)
        time.sleep(0.5)  # a few failed reopen attempts while nothing is there
        second = Pn532Emulator()
        current["path"] = second.reader_path  # plugged back in
        rec.wait(lambda: rec.states.count("open") == 2, timeout=15)
        second.present(build_tag("04D1D2D3D4D5D6", "NTAG215"), 0.4)
        rec.wait(lambda: len(rec.taps) == 2)
    finally:
        reader.stop()
        first.close()
        if second:
            second.close()
    assert [t.uid for t in rec.taps] == ["04A1B2C3D4E5F6", "04D1D2D3D4D5D6"]


def test_stop_is_prompt_with_no_tag():
    rec = Recorder()
    with UdpTagServer() as field:
        reader = make_reader(field.path, rec)
        reader.start()
        rec.wait(lambda: "open" in rec.states)
        time.sleep(0.3)
        started = time.monotonic()
        reader.stop()
        took = time.monotonic() - started
    assert not reader.running
    # nfcpy's udp poll waits up to 1 s for an answer; stop waits for that poll
    assert took < 5, took
