"""The routine's time limits, and the alerts computed from plain facts.

- Section 5: "det kan dröja upp till cirka 5 arbetsdagar innan det blir installerat":
  a target to report on, counted in Swedish working days (:mod:`routine.calendar`)
  from the day the lock was requested (2a.4 message to Digitala LÅS; 3a.4 the
  administrator's decision) to today: :func:`pending_age`, :func:`pending_overdue`.
- 2b.5 / 3b.3: ended implementations show in the lock system for 14 days, so the
  lock must be removed within 14 *calendar* days of the end: removed on or before
  ``removal_due(ended_on) == ended_on + 14 days``. Removal needs every implementation
  ended, so the clock that counts is the last one's end (:func:`last_end`).

Every alert is a pure function of plain inputs that returns an :class:`Alert` or
None; the centre decides when to evaluate them and where to show them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from routine import calendar
from routine.keys import KeyReceipt, KeyUnit, PhysicalKeyUse, unreturned
from routine.tags import tap_after_install_is_alert

#: Section 5, "upp till cirka 5 arbetsdagar": a target, reported on, not a hard limit.
LOCK_PENDING_TARGET_WORKING_DAYS: Final = 5
#: 2b.5 / 3b.3: calendar days from an implementation's end; the lock system shows ended
#: implementations for 14 days.
REMOVAL_WITHIN_DAYS: Final = 14
#: Warn this many calendar days before the removal is due: even over a weekend that
#: leaves three working days to book a fitter.
REMOVAL_WARN_DAYS: Final = 5
#: Keys due back when services end (4.5); the seed gives no limit, so the removal's
#: 14 days are used: by then the lock, if any, is off and its keys are back too.
KEY_RETURN_WITHIN_DAYS: Final = 14
#: An active service with no visit registered for this long is a safety alert. Most
#: clients with home care have at least a daily visit; set it per client from the
#: planned visits where they are sparser.
NO_VISIT_MAX_GAP: Final = timedelta(hours=24)
#: Battery level (percent, BLE Battery Level 0x2A19) at or below which a lock needs new
#: batteries: thumb-turn locks run weeks from there, time enough to book a visit.
LOW_BATTERY_PERCENT: Final = 20


class RemovalLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    OVERDUE = "overdue"


class AlertKind(StrEnum):
    LOCK_PENDING_OVERDUE = "lock_pending_overdue"
    REMOVAL_DUE_SOON = "removal_due_soon"
    REMOVAL_OVERDUE = "removal_overdue"
    KEYS_NOT_RETURNED = "keys_not_returned"
    NO_VISIT_REGISTERED = "no_visit_registered"  # a safety alert
    TAG_USED_AFTER_INSTALL = "tag_used_after_install"
    PHYSICAL_KEY_USED_WHERE_LOCK_WORKS = "physical_key_used_where_lock_works"
    LOW_LOCK_BATTERY = "low_lock_battery"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"  # someone's safety or the routine's hard limit


SEVERITY: Final[Mapping[AlertKind, Severity]] = MappingProxyType({
    AlertKind.LOCK_PENDING_OVERDUE: Severity.WARNING,
    AlertKind.REMOVAL_DUE_SOON: Severity.INFO,
    AlertKind.REMOVAL_OVERDUE: Severity.CRITICAL,
    AlertKind.KEYS_NOT_RETURNED: Severity.WARNING,
    AlertKind.NO_VISIT_REGISTERED: Severity.CRITICAL,
    AlertKind.TAG_USED_AFTER_INSTALL: Severity.WARNING,
    AlertKind.PHYSICAL_KEY_USED_WHERE_LOCK_WORKS: Severity.WARNING,
    AlertKind.LOW_LOCK_BATTERY: Severity.WARNING,
})


@dataclass(frozen=True)
class Alert:
    """Something someone must act on; ``subject`` is a client reference or a lock serial."""

    kind: AlertKind
    subject: str
    message: str  # English, says what to do
    due: date | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]


# --- lock pending (section 5) --------------------------------------------------------------


def pending_age(ordered_on: date, today: date) -> int:
    """Working days the lock has been pending: after ``ordered_on``, up to ``today``."""
    if today < ordered_on:
        raise ValueError(f"today {today} is before the lock was requested ({ordered_on})")
    return calendar.working_days_between(ordered_on, today)


def pending_overdue(ordered_on: date, today: date,
                    target: int = LOCK_PENDING_TARGET_WORKING_DAYS) -> bool:
    """Pending longer than the target ("upp till cirka 5 arbetsdagar")."""
    return pending_age(ordered_on, today) > target


def pending_target_date(ordered_on: date, target: int = LOCK_PENDING_TARGET_WORKING_DAYS) -> date:
    """The last day the lock is within the target."""
    return calendar.add_working_days(ordered_on, target)


def lock_pending_alert(client_ref: str, ordered_on: date, today: date,
                       target: int = LOCK_PENDING_TARGET_WORKING_DAYS) -> Alert | None:
    if not pending_overdue(ordered_on, today, target):
        return None
    age = pending_age(ordered_on, today)
    return Alert(AlertKind.LOCK_PENDING_OVERDUE, client_ref,
                 f"lock requested {ordered_on} still not installed after {age} working days "
                 f"(target {target}): check the binder job and the fitter's booking",
                 pending_target_date(ordered_on, target))


# --- removal within 14 days (2b.5, 3b.3) ---------------------------------------------------


def last_end(ended_on: Iterable[date]) -> date:
    """The end that starts the removal clock: the last implementation's, as all must end."""
    dates = list(ended_on)
    if not dates:
        raise ValueError("no implementation has ended: the removal clock has not started")
    return max(dates)


def removal_due(ended_on: date) -> date:
    """The last day to remove the lock: 14 calendar days after the implementation ended."""
    return ended_on + timedelta(days=REMOVAL_WITHIN_DAYS)


def removal_warning(ended_on: date, today: date,
                    warn_days: int = REMOVAL_WARN_DAYS) -> RemovalLevel:
    """OVERDUE after the due day; WARNING from ``warn_days`` before it; else OK."""
    due = removal_due(ended_on)
    if today > due:
        return RemovalLevel.OVERDUE
    if (due - today).days <= warn_days:
        return RemovalLevel.WARNING
    return RemovalLevel.OK


def removal_alert(client_ref: str, ended_on: date, today: date,
                  warn_days: int = REMOVAL_WARN_DAYS) -> Alert | None:
    """For a lock still on the door after its last implementation ended on ``ended_on``."""
    level = removal_warning(ended_on, today, warn_days)
    due = removal_due(ended_on)
    if level is RemovalLevel.OVERDUE:
        return Alert(AlertKind.REMOVAL_OVERDUE, client_ref,
                     f"lock removal was due {due} (14 days after the implementation ended "
                     f"{ended_on}); the lock system no longer shows the implementation: "
                     "remove the lock and unbind it by hand", due)
    if level is RemovalLevel.WARNING:
        return Alert(AlertKind.REMOVAL_DUE_SOON, client_ref,
                     f"lock removal due {due} ({(due - today).days} days left): make sure a "
                     "fitter is booked", due)
    return None


# --- keys (section 4) ----------------------------------------------------------------------


def keys_not_returned_alert(client_ref: str, ended_on: date, today: date,
                            due_back: Mapping[KeyUnit, int], receipts: Iterable[KeyReceipt],
                            within_days: int = KEY_RETURN_WITHIN_DAYS) -> Alert | None:
    """Keys due back since services ended ``ended_on`` (keys.keys_due_back) with no receipt."""
    due = ended_on + timedelta(days=within_days)
    left = unreturned(due_back, receipts)
    if today <= due or not left:
        return None
    units = ", ".join(f"{u.value} ({n} set{'s' if n > 1 else ''})" for u, n in left.items())
    return Alert(AlertKind.KEYS_NOT_RETURNED, client_ref,
                 f"keys not returned to the client since services ended {ended_on}: {units}; "
                 "the holding unit returns them and gets the key receipt signed", due)


def physical_key_alert(use: PhysicalKeyUse) -> Alert | None:
    """A physical key used where the digital lock was installed and working."""
    if use.justified:
        return None
    return Alert(AlertKind.PHYSICAL_KEY_USED_WHERE_LOCK_WORKS, use.client_ref,
                 f"{use.unit.value} used a physical key although the digital lock works: "
                 "digital locks are used first; keys only without a lock or in an emergency")


# --- visits and tags (section 5) -----------------------------------------------------------


def no_visit_alert(client_ref: str, service_active: bool, last_visit_at: datetime | None,
                   service_started_at: datetime, now: datetime,
                   max_gap: timedelta = NO_VISIT_MAX_GAP) -> Alert | None:
    """An active service with no visit registered within ``max_gap``: check on the client."""
    if not service_active:
        return None
    since = last_visit_at or service_started_at
    if now - since <= max_gap:
        return None
    what = f"last visit {last_visit_at:%Y-%m-%d %H:%M}" if last_visit_at else "no visit yet"
    return Alert(AlertKind.NO_VISIT_REGISTERED, client_ref,
                 f"no visit registered for {now - since} ({what}): make sure the client has "
                 "been visited, then that visits are registered (tag, lock)")


def tag_after_install_alert(client_ref: str, tapped_at: datetime,
                            lock_installed_at: datetime | None) -> Alert | None:
    if not tap_after_install_is_alert(tapped_at, lock_installed_at):
        return None
    return Alert(AlertKind.TAG_USED_AFTER_INSTALL, client_ref,
                 "NFC tag tapped after the client's lock was installed: take the tag down "
                 "and register visits with the lock")


# --- locks ---------------------------------------------------------------------------------


def low_battery_alert(lock_serial: str, battery_percent: int,
                      threshold: int = LOW_BATTERY_PERCENT) -> Alert | None:
    if battery_percent > threshold:
        return None
    return Alert(AlertKind.LOW_LOCK_BATTERY, lock_serial,
                 f"lock battery at {battery_percent}% (alert at {threshold}%): book a battery "
                 "change before the lock stops")
