"""Clock stamps for events: wall clock, CLOCK_BOOTTIME, boot id, and sync state.

Every event the agent records carries all four (architecture.md, "Data that must
never be lost or doubled"), so the centre can correct a wrong wall clock later
from an offset measured in the same boot.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
# The kernel's view of NTP sync: adjtimex's STA_UNSYNC bit. Read through
# timedatectl-free means; psutil does not expose it, so we read /proc-less via ctypes.
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5  # adjtimex return value when the clock is not synchronised


@dataclass(frozen=True)
class Stamp:
    """When something happened, in every form the centre needs."""

    wall: datetime  # timezone-aware UTC
    boottime_ns: int  # CLOCK_BOOTTIME: monotonic, counts suspend, reset at boot
    boot_id: str
    clock_synced: bool  # the kernel said the wall clock was NTP-synchronised

    @property
    def wall_iso(self) -> str:
        return self.wall.isoformat(timespec="microseconds")


class Clock(Protocol):
    def now(self) -> Stamp: ...

    def boottime_ns(self) -> int: ...


def read_boot_id() -> str:
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        # Not Linux: a per-process id is the honest fallback (offsets then hold
        # only for this process's life).
        return "process-" + uuid.uuid4().hex


def kernel_clock_synced() -> bool:
    """True when the kernel reports the wall clock as synchronised (adjtimex)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

        class Timex(ctypes.Structure):
            _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 204)]

        tx = Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return state not in (-1, _TIME_ERROR)


class SystemClock:
    """The machine's clocks. Sync state is re-read at most every few seconds."""

    SYNC_RECHECK_S = 5.0  # adjtimex is cheap, but a tap burst needs no fresh answer each time

    def __init__(self) -> None:
        self.boot_id = read_boot_id()
        self._synced = kernel_clock_synced()
        self._synced_at = time.monotonic()

    def boottime_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def now(self) -> Stamp:
        mono = time.monotonic()
        if mono - self._synced_at > self.SYNC_RECHECK_S:
            self._synced = kernel_clock_synced()
            self._synced_at = mono
        return Stamp(
            wall=datetime.now(UTC),
            boottime_ns=self.boottime_ns(),
            boot_id=self.boot_id,
            clock_synced=self._synced,
        )


class FixedClock:
    """A clock a test or a demo steers by hand; boottime advances with wall time."""

    def __init__(self, start: datetime, *, synced: bool = True, boot_id: str = "test-boot") -> None:
        self.wall = start
        self.boot_ns = 1_000_000_000
        self.synced = synced
        self.boot_id = boot_id

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.wall += timedelta(seconds=seconds)
        self.boot_ns += int(seconds * 1e9)

    def boottime_ns(self) -> int:
        return self.boot_ns

    def now(self) -> Stamp:
        return Stamp(self.wall, self.boot_ns, self.boot_id, self.synced)
