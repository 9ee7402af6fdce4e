"""Hardware in the loop, opt-in: a real reader with a real tag on it.

    NYCKELFRI_HW_READER=usb python -m pytest -m hardware tests/hardware
    NYCKELFRI_HW_READER=tty:AMA0:pn532 python -m pytest -m hardware tests/hardware

Put an NFC Forum tag (an NTAG21x sticker as used at clients' doors) on the reader
before starting. Skipped, with the reason, everywhere else.
"""

from __future__ import annotations

import os
import threading

import pytest

from drivers.nfc.base import Feedback
from drivers.nfc.feedback import feedback_for
from drivers.nfc.reader import NfcpyReader, open_frontend

READER = os.environ.get("NYCKELFRI_HW_READER")
TAG_WAIT_S = 20.0  # time for a person to put a tag on the reader

pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not READER, reason="set NYCKELFRI_HW_READER to a reader path to run"),
]


def test_reader_opens_and_closes():
    clf = open_frontend(READER)
    try:
        assert clf.device is not None
    finally:
        clf.close()


def test_a_real_tag_is_read_and_released_with_feedback():
    taps, released = [], threading.Event()

    def on_tap(tap):
        taps.append(tap)
        return Feedback.REGISTERED

    reader = NfcpyReader(READER, on_tap, on_release=lambda uid: released.set(),
                         feedback_factory=feedback_for)
    reader.start()
    try:
        assert released.wait(TAG_WAIT_S * 2), "put a tag on the reader, then take it away"
    finally:
        reader.stop()
    tap = taps[0]
    assert len(bytes.fromhex(tap.uid)) in (4, 7, 10)
    assert tap.problem is None, tap.problem_detail
