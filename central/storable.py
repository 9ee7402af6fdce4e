"""What the centre's databases can hold as sent: checks for hostile or broken data.

Pydantic accepts things a database cannot store faithfully, or at all: NUL
characters (PostgreSQL text and JSONB refuse them), lone surrogates (not valid
UTF-8), NaN and Infinity (not JSON), times that overflow when converted to UTC,
counts beyond a signed 64-bit column, and JSON nested deep enough to exhaust a
stack. Each check answers *why* a value cannot be stored, or ``None``; the store
turns the answer into a per-event rejection or an error, never a failed
transaction.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sync.protocol import ClockSample, Event

# JSON nested deeper than this in event or reference data is refused: no record of
# ours nests more than a few levels, and deep nesting only serves to exhaust stacks.
MAX_DATA_DEPTH = 32
# Times the store can hold and convert without overflow (device clocks after a flat
# RTC battery say 1970 or 2000: well inside).
EARLIEST_TIME = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
MAX_INT64 = 2**63 - 1  # BIGINT columns (boottime_ns, rtt_ns)


def bad_text(text: str) -> str | None:
    """Why ``text`` cannot be stored, or ``None``."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def _bad_scalar(value: object) -> str | None:
    if isinstance(value, str):
        return bad_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "contains NaN or Infinity (not JSON)"
    return None


def unstorable_json(value: object) -> str | None:
    """Why a JSON value cannot be stored faithfully (both databases), or ``None``.

    Iterative, so that depth cannot exhaust the stack.
    """
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DATA_DEPTH:
            return f"nests deeper than {MAX_DATA_DEPTH} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                if reason := bad_text(str(key)):
                    return f"a key {reason}"
                pending.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)
        elif reason := _bad_scalar(item):
            return reason
    return None


def bad_time(at: datetime) -> str | None:
    """Why ``at`` cannot be stored (outside what converts to UTC safely), or ``None``."""
    try:
        inside = EARLIEST_TIME <= at.astimezone(UTC) < LATEST_TIME
    except (OverflowError, ValueError):
        inside = False
    return None if inside else f"time outside {EARLIEST_TIME.year}-{LATEST_TIME.year}"


def _bad_count(value: int) -> str | None:
    return "exceeds 64 bits" if value > MAX_INT64 else None


def unstorable_event(event: Event) -> str | None:
    """Why the store could not hold this event as sent (``"FIELD reason"``), or ``None``."""
    checks = (
        ("kind", bad_text(event.kind)),
        ("boot_id", bad_text(event.boot_id)),
        ("at", bad_time(event.at)),
        ("boottime_ns", _bad_count(event.boottime_ns)),
        ("data", unstorable_json(event.data)),
    )
    for field, reason in checks:
        if reason:
            return f"{field} {reason}"
    return None


def unstorable_clock(clock: ClockSample) -> str | None:
    """Why the store could not keep this clock sample as an anchor, or ``None``."""
    return (bad_text(clock.boot_id) or bad_time(clock.server_time)
            or ("a count exceeds 64 bits"
                if max(clock.boottime_ns, clock.rtt_ns) > MAX_INT64 else None))
