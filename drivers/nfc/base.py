"""What a reader reports, and the small interface every reader implements.

A reader knows only hardware: it turns a tag in its field into a :class:`Tap`,
hands it to the callback the agent gave it, and gives the feedback the agent
decided on. It never imports anything of ours beyond this package.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class NfcError(Exception):
    """Root of every error the NFC drivers raise. The message says what to do."""


class ReaderOpenError(NfcError):
    """The reader could not be opened. ``advice`` names the fix."""

    def __init__(self, path: str, reason: str, advice: str) -> None:
        self.path = path
        self.reason = reason
        self.advice = advice
        super().__init__(f"No NFC reader at {path}: {reason}. {advice}")


class ReaderLostError(NfcError):
    """A reader that was open went away (unplugged, cable, power)."""


@dataclass(frozen=True)
class NdefRecordInfo:
    """One NDEF record, decoded as far as the agent needs it."""

    type: str
    name: str
    text: str | None = None  # text of a well-known Text record
    uri: str | None = None  # URI of a well-known URI record
    payload_hex: str = ""


class ReadProblem(enum.StrEnum):
    """Why a tap could not be read completely. None of these crash the reader."""

    GARBAGE_NDEF = "garbage_ndef"  # NDEF area present but not a valid message
    TRUNCATED = "truncated"  # the tag answered with too little data
    REMOVED_MID_READ = "removed_mid_read"  # the tag left the field while being read
    UNSUPPORTED = "unsupported"  # a tag type we do not register with


@dataclass(frozen=True)
class Tap:
    """A tag that came into a reader's field and was read.

    ``uid`` is upper-case hex. ``product`` is what nfcpy identified (e.g.
    ``"NXP NTAG215"``). ``ndef`` holds the decoded records when the tag carried
    a valid NDEF message. ``problem`` is set when the read was incomplete; the
    agent refuses such taps with a clear message instead of guessing.
    ``signature`` is the NTAG21x originality signature (hex) when the tag has one.
    ``detected_ns`` is CLOCK_BOOTTIME in nanoseconds when nfcpy reported the tag.
    """

    reader: str
    uid: str
    product: str
    tag_type: str
    ndef: tuple[NdefRecordInfo, ...] = ()
    problem: ReadProblem | None = None
    problem_detail: str = ""
    signature: str | None = None
    detected_ns: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class Feedback(enum.StrEnum):
    """What the person at the door should hear/see after the agent decided."""

    REGISTERED = "registered"  # a visit change was stored durably
    IGNORED = "ignored"  # e.g. a repeat tap within the debounce window
    REFUSED = "refused"  # unknown tag, tag that must come down, unreadable


# The agent's callback: called in the reader's thread with each tap, returns the
# feedback to give once the agent has made the tap durable.
TapHandler = Callable[[Tap], Feedback]
ReleaseHandler = Callable[[str], None]


class Reader(Protocol):
    """A running reader. ``start`` spawns its worker thread; ``stop`` ends it."""

    path: str

    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...

    @property
    def running(self) -> bool: ...
