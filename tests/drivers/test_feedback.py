"""ACR122U LED/buzzer feedback: exact bytes, errors swallowed, sink chosen by class."""

from __future__ import annotations

import logging
import struct

import nfc.clf
import pytest
from nfc.clf import acr122, pn533

from drivers.nfc.base import Feedback
from drivers.nfc.feedback import (
    Acr122Feedback,
    FeedbackSink,
    NullFeedback,
    feedback_for,
)

OK_REPLY = bytes.fromhex("9002")  # SW1 90 = done, SW2 = LED state (green on)
ALL_OFF = bytes.fromhex("FF00400C0400000000")

# P2 AE = green blinks, green on in T1, then idle green; 200 ms on + beep, 100 ms off, once.
REGISTERED = bytes.fromhex("FF0040AE0402010101")
# P2 5E = red blinks, red on in T1, then idle green; 200/200 ms, three times, beep in T1.
REFUSED = bytes.fromhex("FF00405E0402020301")
# P2 FE = both blink (amber), both on in T1, then idle green; 200 ms on, 100 ms off, silent.
IGNORED = bytes.fromhex("FF0040FE0402010100")


class RecordingCcid:
    """Records every ccid_xfr_block call; answers as an ACR122U does, or raises."""

    def __init__(self, reply: bytes = OK_REPLY, error: Exception | None = None) -> None:
        self.reply = reply
        self.error = error
        self.calls: list[tuple[bytes, float]] = []

    def ccid_xfr_block(self, data: bytearray, timeout: float = 0.1) -> bytes:
        self.calls.append((bytes(data), timeout))
        if self.error is not None:
            raise self.error
        return self.reply


class RecordingUsbTransport:
    """Stands in for nfcpy's transport.USB below the real acr122.Chipset."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.read_timeouts: list[int] = []

    def write(self, frame: bytearray) -> None:
        self.written.append(bytes(frame))

    def read(self, timeout: int) -> bytearray:
        self.read_timeouts.append(timeout)
        # RDR_to_PC_DataBlock: 80, length (LE), slot, seq, status, error, chain, data
        return bytearray(struct.pack("<BI5B", 0x80, len(OK_REPLY), 0, 0, 0, 0, 0) + OK_REPLY)


def real_acr122_device(transport: object) -> acr122.Device:
    """nfcpy's own ACR122 Device and Chipset classes, without opening USB."""
    chipset = acr122.Chipset.__new__(acr122.Chipset)
    chipset.transport = transport
    device = acr122.Device.__new__(acr122.Device)
    device.chipset = chipset
    return device


@pytest.mark.parametrize(
    ("feedback", "blink", "timeout"),
    [
        (Feedback.REGISTERED, REGISTERED, 0.5),
        (Feedback.REFUSED, REFUSED, 1.4),
        (Feedback.IGNORED, IGNORED, 0.5),
    ],
)
def test_pattern_bytes(feedback: Feedback, blink: bytes, timeout: float) -> None:
    ccid = RecordingCcid()
    Acr122Feedback().give(feedback, ccid)
    assert [data for data, _ in ccid.calls] == [ALL_OFF, blink]
    assert [t for _, t in ccid.calls] == [pytest.approx(0.2), pytest.approx(timeout)]


def test_patterns_are_distinct() -> None:
    assert len({REGISTERED, REFUSED, IGNORED}) == 3


def test_goes_through_nfcpys_real_ccid_xfr_block() -> None:
    transport = RecordingUsbTransport()
    Acr122Feedback().give(Feedback.REGISTERED, real_acr122_device(transport))
    escape = [
        struct.pack("<BI5B", 0x6F, len(apdu), 0, 0, 0, 0, 0) + apdu
        for apdu in (ALL_OFF, REGISTERED)
    ]
    assert transport.written == escape
    assert transport.read_timeouts == [200, 500]


def test_accepts_a_frontend_holding_the_device() -> None:
    transport = RecordingUsbTransport()
    clf = nfc.clf.ContactlessFrontend()
    clf.device = real_acr122_device(transport)
    Acr122Feedback().give(Feedback.IGNORED, clf)
    assert transport.written[-1].endswith(IGNORED)


def test_raising_transfer_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    ccid = RecordingCcid(error=OSError(5, "Input/output error"))
    with caplog.at_level(logging.WARNING, logger="drivers.nfc.feedback"):
        Acr122Feedback().give(Feedback.REFUSED, ccid)
    assert len(ccid.calls) == 1  # stops at the first failure
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "refused" in record.getMessage()
    assert "Input/output error" in record.getMessage()


def test_error_status_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    ccid = RecordingCcid(reply=bytes.fromhex("6300"))
    with caplog.at_level(logging.WARNING, logger="drivers.nfc.feedback"):
        Acr122Feedback().give(Feedback.REGISTERED, ccid)
    assert len(ccid.calls) == 1
    assert "6300" in caplog.records[0].getMessage()


def closed_acr122_device() -> acr122.Device:
    """What nfcpy leaves behind after close(): the chipset is gone."""
    device = acr122.Device.__new__(acr122.Device)
    device.chipset = None
    return device


@pytest.mark.parametrize(
    "device", [None, object(), closed_acr122_device()], ids=["none", "object", "closed"]
)
def test_no_transfer_is_logged_not_raised(device: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="drivers.nfc.feedback"):
        Acr122Feedback().give(Feedback.REGISTERED, device)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_null_feedback_does_nothing() -> None:
    ccid = RecordingCcid()
    NullFeedback().give(Feedback.REFUSED, ccid)
    assert ccid.calls == []


def test_feedback_for_picks_acr122_by_nfcpy_class() -> None:
    device = real_acr122_device(RecordingUsbTransport())
    assert isinstance(device, acr122.Device)
    assert isinstance(feedback_for(device), Acr122Feedback)
    assert isinstance(feedback_for(device.chipset), Acr122Feedback)
    clf = nfc.clf.ContactlessFrontend()
    clf.device = device
    assert isinstance(feedback_for(clf), Acr122Feedback)


@pytest.mark.parametrize(
    "device",
    [
        None,
        RecordingCcid(),  # has ccid_xfr_block but is not nfcpy's ACR122
        pn533.Device.__new__(pn533.Device),
        nfc.clf.ContactlessFrontend(),  # no device open
    ],
    ids=["none", "duck", "pn533", "empty-frontend"],
)
def test_feedback_for_other_devices_is_null(device: object) -> None:
    assert isinstance(feedback_for(device), NullFeedback)


def test_sinks_satisfy_the_protocol() -> None:
    sinks: list[FeedbackSink] = [Acr122Feedback(), NullFeedback()]
    assert all(callable(sink.give) for sink in sinks)
