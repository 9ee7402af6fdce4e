"""Reader feedback (LED, buzzer) once the agent has decided what a tap meant.

Only the ACS ACR122U has an LED and buzzer nfcpy can reach; every other reader
gets :class:`NullFeedback` (the agent prints its own console line). Feedback
must never lose a tap: a failure to blink is logged at warning, never raised.

Give feedback from the reader's worker thread (inside nfcpy's ``on-connect``),
never from another thread: the ACR122U's CCID pipe is not thread-safe. Open the
frontend with ``'beep-on-connect': False`` so the only beep a person hears is
the one that follows the decision; nfcpy resets the LED to green when the tag
leaves, which is also where our patterns end.

ACR122U "Bi-Color LED and Buzzer Control" pseudo-APDU (ACR122U API, also in
nfcpy's ``nfc/clf/acr122.py``)::

    FF 00 40 P2 04 T1 T2 REP BUZ

P2 (LED state control), bit by bit:
    0 final red on          1 final green on
    2 red state mask        3 green state mask    (1 = apply the final state)
    4 initial red blink on  5 initial green blink on  (state during T1)
    6 red blink mask        7 green blink mask    (1 = the LED blinks)
T1: duration of the initial blink state, T2: of the toggled state, both in
100 ms units. REP: number of T1+T2 cycles. BUZ: 00 silent, 01 buzzer during
T1, 02 during T2, 03 during both. The reader answers ``90 <led state>`` only
after the blinking ends, so the transfer timeout covers the whole pattern.
An LED whose blink mask is clear keeps its current state while the other
blinks; each pattern therefore first switches both LEDs off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, cast

from .base import Feedback, NfcError

log = logging.getLogger(__name__)

# --- APDU header: class FF, INS 00, P1 40 (LED/buzzer control), Lc 04 -------
APDU_HEADER = bytes((0xFF, 0x00, 0x40))
APDU_DATA_LENGTH = 0x04  # T1, T2, REP, BUZ

# --- P2 bits ----------------------------------------------------------------
FINAL_RED_ON = 0x01
FINAL_GREEN_ON = 0x02
RED_STATE_MASK = 0x04  # apply FINAL_RED_ON (or off) after the blinking
GREEN_STATE_MASK = 0x08
BLINK_RED_ON_IN_T1 = 0x10
BLINK_GREEN_ON_IN_T1 = 0x20
RED_BLINKS = 0x40
GREEN_BLINKS = 0x80

# Idle: green only, red off. nfcpy sets the same state (FF00400E...) on init
# and when a tag leaves, so every pattern ends where nfcpy expects the LED.
P2_IDLE_GREEN = RED_STATE_MASK | GREEN_STATE_MASK | FINAL_GREEN_ON  # 0x0E
# Both LEDs off now, no blinking (the bytes nfcpy sends on close).
P2_ALL_OFF = RED_STATE_MASK | GREEN_STATE_MASK  # 0x0C

# --- BUZ ------------------------------------------------------------------------
BUZZER_OFF = 0x00
BUZZER_IN_T1 = 0x01  # beep while the LED shows its initial (lit) state

TICK_S = 0.1  # T1 and T2 are counted in 100 ms ticks
# The reader replies after the pattern ends; allow USB round trip and firmware
# latency on a busy Raspberry Pi on top (nfcpy allows 100 ms for its own beep).
REPLY_MARGIN_S = 0.2
STATUS_OK = 0x90  # SW1 of a successful LED/buzzer command; 63 00 is failure


class CcidTransfer(Protocol):
    """What nfcpy's ``nfc.clf.acr122.Chipset`` offers: one CCID escape block."""

    def ccid_xfr_block(self, data: bytearray, timeout: float = ...) -> bytes: ...


class FeedbackSink(Protocol):
    """Shows a decision on the reader. Never raises."""

    def give(self, feedback: Feedback, device: object | None) -> None: ...


@dataclass(frozen=True)
class Acr122Command:
    """One LED/buzzer pseudo-APDU: P2 plus the four data bytes."""

    p2: int
    t1: int = 0  # 100 ms ticks in the initial blink state
    t2: int = 0  # 100 ms ticks in the toggled state
    repeat: int = 0
    buzzer: int = BUZZER_OFF

    def apdu(self) -> bytes:
        data = (self.t1, self.t2, self.repeat, self.buzzer)
        return APDU_HEADER + bytes((self.p2, APDU_DATA_LENGTH, *data))

    def timeout(self) -> float:
        """Seconds to wait for the reply: the whole pattern plus a margin."""
        return self.repeat * (self.t1 + self.t2) * TICK_S + REPLY_MARGIN_S


ALL_OFF = Acr122Command(P2_ALL_OFF)

# REGISTERED: one green flash of 200 ms with a 200 ms beep, 100 ms dark, then
# idle green. Short and friendly: the visit is stored.
REGISTERED_BLINK = Acr122Command(
    P2_IDLE_GREEN | GREEN_BLINKS | BLINK_GREEN_ON_IN_T1,
    t1=2,
    t2=1,
    repeat=1,
    buzzer=BUZZER_IN_T1,
)
# REFUSED: three red flashes of 200 ms, each with a beep, 200 ms apart. Longer
# and harsher than success, so nobody mistakes it for a registration.
REFUSED_BLINK = Acr122Command(
    P2_IDLE_GREEN | RED_BLINKS | BLINK_RED_ON_IN_T1,
    t1=2,
    t2=2,
    repeat=3,
    buzzer=BUZZER_IN_T1,
)
# IGNORED: one silent amber (red + green) flash of 200 ms: "seen, nothing done"
# (e.g. a repeat tap inside the debounce window).
IGNORED_BLINK = Acr122Command(
    P2_IDLE_GREEN | RED_BLINKS | GREEN_BLINKS | BLINK_RED_ON_IN_T1 | BLINK_GREEN_ON_IN_T1,
    t1=2,
    t2=1,
    repeat=1,
    buzzer=BUZZER_OFF,
)

ACR122_PATTERNS: Mapping[Feedback, tuple[Acr122Command, ...]] = {
    Feedback.REGISTERED: (ALL_OFF, REGISTERED_BLINK),
    Feedback.REFUSED: (ALL_OFF, REFUSED_BLINK),
    Feedback.IGNORED: (ALL_OFF, IGNORED_BLINK),
}


class FeedbackError(NfcError):
    """Internal: the reader did not take a command. Never leaves this module."""


class NullFeedback:
    """For readers without LED or buzzer: does nothing."""

    def give(self, feedback: Feedback, device: object | None) -> None:
        log.debug("no reader feedback for %s on %r", feedback, device)


class Acr122Feedback:
    """Blinks and beeps an ACR122U through nfcpy's ``Chipset.ccid_xfr_block``.

    ``device`` may be nfcpy's ACR122 ``Device``, its ``Chipset``, a
    ``ContactlessFrontend`` holding one, or anything with ``ccid_xfr_block``.
    """

    def __init__(
        self, patterns: Mapping[Feedback, tuple[Acr122Command, ...]] = ACR122_PATTERNS
    ) -> None:
        self._patterns = patterns

    def give(self, feedback: Feedback, device: object | None) -> None:
        transfer = _ccid_transfer(device)
        if transfer is None:
            log.warning("no ACR122U to give %s feedback on (%r)", feedback, device)
            return
        try:
            for command in self._patterns.get(feedback, ()):
                _send(transfer, command)
        except Exception as error:  # noqa: BLE001 - feedback must never lose a tap
            log.warning("ACR122U %s feedback failed on %r: %r", feedback, device, error)


def _send(transfer: CcidTransfer, command: Acr122Command) -> None:
    apdu = command.apdu()
    log.debug("ACR122U LED/buzzer %s", apdu.hex())
    reply = transfer.ccid_xfr_block(bytearray(apdu), timeout=command.timeout())
    if not reply or reply[0] != STATUS_OK:
        raise FeedbackError(f"reader answered {bytes(reply or b'').hex() or 'nothing'}")


def _ccid_transfer(device: object | None) -> CcidTransfer | None:
    """The object with ``ccid_xfr_block``: the chipset of a device or frontend."""
    for candidate in (device, getattr(device, "chipset", None), _chipset_of_frontend(device)):
        if callable(getattr(candidate, "ccid_xfr_block", None)):
            return cast(CcidTransfer, candidate)
    return None


def _chipset_of_frontend(frontend: object | None) -> object | None:
    return getattr(getattr(frontend, "device", None), "chipset", None)


def _is_acr122(device: object | None) -> bool:
    from nfc.clf import ContactlessFrontend, acr122

    if isinstance(device, ContactlessFrontend):
        device = device.device
    return isinstance(device, acr122.Device | acr122.Chipset)


def feedback_for(device: object | None) -> FeedbackSink:
    """The sink for an nfcpy device (or frontend): ACR122U, else nothing."""
    if _is_acr122(device):
        return Acr122Feedback()
    return NullFeedback()
