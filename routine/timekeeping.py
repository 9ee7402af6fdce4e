"""Which time to believe for an event (architecture.md, "Data that must never be lost").

Every event carries the device's wall clock, its CLOCK_BOOTTIME, the boot id and
whether the wall clock was NTP-synchronised. A sync round trip gives a
:class:`Anchor`: this boot's CLOCK_BOOTTIME at the middle of the round trip
matched the centre's clock. CLOCK_BOOTTIME never jumps within a boot, so any
event of that boot can be placed exactly on the centre's clock, however wrong
the device's wall clock was (1970 after a flat RTC battery, a day off, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Quality(StrEnum):
    SYNCHRONISED = "synchronised"
    CORRECTED = "corrected"
    UNVERIFIED = "unverified"


@dataclass(frozen=True)
class Anchor:
    boot_id: str
    boottime_ns: int
    server_time: datetime
    rtt_ns: int = 0


def best_time(device_at: datetime, boottime_ns: int, boot_id: str, clock_synced: bool,
              anchor: Anchor | None) -> tuple[datetime, Quality]:
    """The time to use for an event, and how it was obtained.

    Preference: an NTP-synchronised device clock (exact, and free of the
    oscillator drift that builds up over a long boot); else an anchor from the
    same boot (exact up to half the round trip plus drift); else the device's
    unverified word.
    """
    if clock_synced:
        return device_at, Quality.SYNCHRONISED
    if anchor is not None and anchor.boot_id == boot_id:
        delta = timedelta(microseconds=(boottime_ns - anchor.boottime_ns) / 1000)
        return anchor.server_time + delta, Quality.CORRECTED
    return device_at, Quality.UNVERIFIED


def best_anchor(anchors: list[Anchor], boot_id: str) -> Anchor | None:
    """The most precise anchor of a boot: the one with the shortest round trip."""
    same = [a for a in anchors if a.boot_id == boot_id]
    return min(same, key=lambda a: a.rtt_ns) if same else None
