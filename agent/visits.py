"""Visit registration from NFC taps (routine section 5).

While a client's digital lock is pending or cannot be fitted, staff register
arrival and departure by tapping the NFC tag at the client's door. The rules:

- staff sign in by tapping their badge (or the device is personal to one person);
- the first tap of a staff member at a client's tag is the arrival, the next the
  departure; several staff can be at one client at once;
- a repeat tap within a short window is ignored, with feedback;
- a tap at another client while a visit is open closes that visit as
  "departure missing"; so does a visit left open past a limit;
- unknown tags are refused and recorded; a tag of a client whose lock is
  installed is refused with "take the tag down" and recorded.

Each decision is ONE store transaction: the visit row, the tap log and the
outbox event commit together, before the reader gives any feedback.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.clock import Clock, Stamp
from agent.store import Store, Visit, new_id
from drivers.nfc.authenticity import GENUINE_NXP, signer
from drivers.nfc.base import Feedback, Tap

log = logging.getLogger(__name__)

# A person often taps twice when the first beep is slow to come; a real departure
# never follows an arrival within this many seconds.
DEFAULT_REPEAT_WINDOW_S = 30.0
# Home-care visits are short; a visit open longer than this lost its departure.
DEFAULT_MAX_VISIT_S = 4 * 3600.0
# A badge sign-in on a shared device lasts one shift at most.
DEFAULT_SIGN_IN_TTL_S = 12 * 3600.0


class Outcome(enum.StrEnum):
    SIGNED_IN = "signed_in"
    ARRIVAL = "arrival"
    DEPARTURE = "departure"
    IGNORED = "ignored"
    REFUSED = "refused"


class Refusal(enum.StrEnum):
    UNREADABLE = "unreadable"
    UNKNOWN_TAG = "unknown_tag"
    TAG_INACTIVE = "tag_inactive"
    LOCK_INSTALLED = "lock_installed"
    NO_STAFF = "no_staff_signed_in"
    NOT_DEVICE_OWNER = "not_device_owner"
    NOT_GENUINE = "not_genuine"


REFUSAL_ADVICE: dict[Refusal, str] = {
    Refusal.UNREADABLE: "the tag could not be read; hold it still against the reader and tap again",
    Refusal.UNKNOWN_TAG: "this tag is not registered to any client; report it to your coordinator",
    Refusal.TAG_INACTIVE: "this tag has been withdrawn; report it to your coordinator",
    Refusal.LOCK_INSTALLED: (
        "the client's digital lock is installed: take the tag down and register with the lock"
    ),
    Refusal.NO_STAFF: "tap your staff badge first to sign in",
    Refusal.NOT_DEVICE_OWNER: "this device is personal to another staff member",
    Refusal.NOT_GENUINE: (
        "this tag has no valid originality signature (a copy?); do not use it, report it"
    ),
}


@dataclass(frozen=True)
class Settings:
    repeat_window_s: float = DEFAULT_REPEAT_WINDOW_S
    max_visit_s: float = DEFAULT_MAX_VISIT_S
    sign_in_ttl_s: float = DEFAULT_SIGN_IN_TTL_S
    personal_staff_ref: str | None = None  # set when the device belongs to one person
    # Keys whose NTAG21x originality signatures we accept, by name (recorded with
    # each event so the centre can flag unverified tags).
    trusted_tag_keys: tuple[tuple[str, str], ...] = tuple(GENUINE_NXP.items())
    # Refuse tags without a valid signature. Only when every tag in use is NTAG21x.
    require_genuine_tags: bool = False


@dataclass(frozen=True)
class Decision:
    """What the agent made of a tap, after it is durable."""

    outcome: Outcome
    feedback: Feedback
    message: str
    uid: str
    at: str
    client_ref: str | None = None
    staff_ref: str | None = None
    visit_id: str | None = None
    refusal: Refusal | None = None
    closed_missing: tuple[str, ...] = field(default=())
    event_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": str(self.outcome),
            "feedback": str(self.feedback),
            "message": self.message,
            "uid": self.uid,
            "at": self.at,
            "client_ref": self.client_ref,
            "staff_ref": self.staff_ref,
            "visit_id": self.visit_id,
            "refusal": str(self.refusal) if self.refusal else None,
            "closed_missing": list(self.closed_missing),
            "event_id": self.event_id,
        }


def elapsed_s(then_at: str, then_boottime_ns: int | None, then_boot_id: str | None,
              now: Stamp) -> float:
    """Seconds between a stored moment and now: by CLOCK_BOOTTIME in the same boot
    (immune to wall-clock jumps), by wall clock across a reboot."""
    if then_boot_id == now.boot_id and then_boottime_ns is not None:
        return (now.boottime_ns - then_boottime_ns) / 1e9
    return (now.wall - datetime.fromisoformat(then_at)).total_seconds()


class Registrar:
    """Turns taps into visit changes. Safe to call from several reader threads."""

    def __init__(self, store: Store, clock: Clock, settings: Settings | None = None) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings or Settings()

    # --- entry point -----------------------------------------------------------------

    def handle(self, tap: Tap) -> Decision:
        stamp = self.clock.now()
        # Verify the originality signature (pure-Python ECDSA, ~0.5 ms) before taking
        # the write lock; the calls inside the transaction then hit the cache.
        self._signer(tap)
        with self.store.transaction() as conn:
            decision = self._decide(conn, tap, stamp)
            self.store.log_tap(
                conn, uid=tap.uid, reader=tap.reader, product=tap.product, stamp=stamp,
                outcome=_tap_outcome(decision), reason=decision.refusal or str(decision.outcome),
                signature=tap.signature, staff_ref=decision.staff_ref,
            )
        # Only now, after COMMIT returned, is the tap durable and may be acknowledged.
        log.info("tap %s on %s: %s", tap.uid, tap.reader, decision.message)
        return decision

    def close_overdue(self) -> list[str]:
        """Close visits open past the limit as "departure missing". Returns their ids."""
        stamp = self.clock.now()
        with self.store.transaction() as conn:
            return self._close_overdue(conn, stamp, staff_ref=None)

    # --- rules -----------------------------------------------------------------------

    def _decide(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp) -> Decision:
        if tap.problem is not None:
            detail = f"{tap.problem}: {tap.problem_detail}" if tap.problem_detail else tap.problem
            return self._refuse(conn, tap, stamp, Refusal.UNREADABLE, extra=str(detail))
        if self.settings.require_genuine_tags and self._signer(tap) is None:
            return self._refuse(conn, tap, stamp, Refusal.NOT_GENUINE)
        badge = self.store.staff_for_badge(tap.uid)
        if badge is not None:
            return self._sign_in(conn, tap, stamp, badge.staff_ref, badge.display_name)
        found = self.store.client_for_tag(tap.uid)
        if found is None:
            return self._refuse(conn, tap, stamp, Refusal.UNKNOWN_TAG)
        client, active = found
        if not active:
            return self._refuse(conn, tap, stamp, Refusal.TAG_INACTIVE, client_ref=client.ref)
        if client.lock_status == "installed":
            return self._refuse(conn, tap, stamp, Refusal.LOCK_INSTALLED, client_ref=client.ref)
        staff_ref = self._current_staff(stamp)
        if staff_ref is None:
            return self._refuse(conn, tap, stamp, Refusal.NO_STAFF, client_ref=client.ref)
        return self._visit_tap(conn, tap, stamp, client.ref, staff_ref)

    def _signer(self, tap: Tap) -> str | None:
        return signer(tap.uid, tap.signature, dict(self.settings.trusted_tag_keys))

    def _current_staff(self, stamp: Stamp) -> str | None:
        if self.settings.personal_staff_ref:
            return self.settings.personal_staff_ref
        row = self.store.current_sign_in()
        if row is None:
            return None
        age = elapsed_s(row["at"], row["boottime_ns"], row["boot_id"], stamp)
        return row["staff_ref"] if age <= self.settings.sign_in_ttl_s else None

    def _sign_in(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp, staff_ref: str,
                 name: str) -> Decision:
        personal = self.settings.personal_staff_ref
        if personal and personal != staff_ref:
            return self._refuse(conn, tap, stamp, Refusal.NOT_DEVICE_OWNER, staff_ref=staff_ref)
        conn.execute(
            "INSERT INTO sign_ins(id, staff_ref, badge_uid, at, boottime_ns, boot_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (new_id(), staff_ref, tap.uid, stamp.wall_iso, stamp.boottime_ns, stamp.boot_id),
        )
        event_id = self.store.add_event(conn, "staff.signed_in", stamp, {
            "staff_ref": staff_ref, "badge_uid": tap.uid, "reader": tap.reader,
        })
        who = name or staff_ref
        return Decision(Outcome.SIGNED_IN, Feedback.REGISTERED, f"signed in: {who}", tap.uid,
                        stamp.wall_iso, staff_ref=staff_ref, event_id=event_id)

    def _visit_tap(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp, client_ref: str,
                   staff_ref: str) -> Decision:
        last = self.store.last_registration(tap.uid, staff_ref)
        if last is not None:
            age = elapsed_s(last["at"], last["boottime_ns"], last["boot_id"], stamp)
            if 0 <= age < self.settings.repeat_window_s:
                return Decision(
                    Outcome.IGNORED, Feedback.IGNORED,
                    f"already registered {age:.0f} s ago; nothing changed", tap.uid,
                    stamp.wall_iso, client_ref=client_ref, staff_ref=staff_ref,
                )
        closed = self._close_overdue(conn, stamp, staff_ref=staff_ref)
        open_here: Visit | None = None
        for visit in self.store.open_visits(staff_ref):
            if visit.client_ref == client_ref:
                open_here = visit
            else:
                closed.append(self._close_missing(conn, visit, stamp, "tap_at_other_client",
                                                  other_client_ref=client_ref))
        if open_here is not None:
            return self._depart(conn, tap, stamp, open_here, tuple(closed))
        return self._arrive(conn, tap, stamp, client_ref, staff_ref, tuple(closed))

    def _arrive(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp, client_ref: str,
                staff_ref: str, closed: tuple[str, ...]) -> Decision:
        visit_id = new_id()
        conn.execute(
            "INSERT INTO visits(id, client_ref, staff_ref, tag_uid, arrived_at, "
            "arrived_boottime_ns, arrived_boot_id, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'open')",
            (visit_id, client_ref, staff_ref, tap.uid, stamp.wall_iso, stamp.boottime_ns,
             stamp.boot_id),
        )
        event_id = self.store.add_event(conn, "visit.arrived", stamp, {
            "visit_id": visit_id, "client_ref": client_ref, "staff_ref": staff_ref,
            "tag_uid": tap.uid, "reader": tap.reader, "product": tap.product,
            "signature": tap.signature, "tag_signer": self._signer(tap), "method": "nfc_tag",
        })
        note = f" (closed {len(closed)} visit(s) without departure)" if closed else ""
        return Decision(Outcome.ARRIVAL, Feedback.REGISTERED,
                        f"arrival at {client_ref} by {staff_ref}{note}", tap.uid, stamp.wall_iso,
                        client_ref=client_ref, staff_ref=staff_ref, visit_id=visit_id,
                        closed_missing=closed, event_id=event_id)

    def _depart(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp, visit: Visit,
                closed: tuple[str, ...]) -> Decision:
        conn.execute(
            "UPDATE visits SET departed_at = ?, departed_boottime_ns = ?, status = 'closed', "
            "close_reason = 'departed' WHERE id = ?",
            (stamp.wall_iso, stamp.boottime_ns, visit.id),
        )
        duration = elapsed_s(visit.arrived_at, visit.arrived_boottime_ns, visit.arrived_boot_id,
                             stamp)
        event_id = self.store.add_event(conn, "visit.departed", stamp, {
            "visit_id": visit.id, "client_ref": visit.client_ref, "staff_ref": visit.staff_ref,
            "tag_uid": tap.uid, "reader": tap.reader, "arrived_at": visit.arrived_at,
            "duration_s": round(duration, 3), "signature": tap.signature,
            "tag_signer": self._signer(tap), "method": "nfc_tag",
        })
        return Decision(Outcome.DEPARTURE, Feedback.REGISTERED,
                        f"departure from {visit.client_ref} by {visit.staff_ref} after "
                        f"{_duration(duration)}", tap.uid, stamp.wall_iso,
                        client_ref=visit.client_ref, staff_ref=visit.staff_ref,
                        visit_id=visit.id, closed_missing=closed, event_id=event_id)

    def _close_overdue(self, conn: sqlite3.Connection, stamp: Stamp,
                       staff_ref: str | None) -> list[str]:
        closed = []
        for visit in self.store.open_visits(staff_ref):
            age = elapsed_s(visit.arrived_at, visit.arrived_boottime_ns, visit.arrived_boot_id,
                            stamp)
            if age > self.settings.max_visit_s:
                closed.append(self._close_missing(conn, visit, stamp, "open_too_long"))
        return closed

    def _close_missing(self, conn: sqlite3.Connection, visit: Visit, stamp: Stamp, reason: str,
                       other_client_ref: str | None = None) -> str:
        conn.execute(
            "UPDATE visits SET status = 'departure_missing', close_reason = ? WHERE id = ?",
            (reason, visit.id),
        )
        self.store.add_event(conn, "visit.departure_missing", stamp, {
            "visit_id": visit.id, "client_ref": visit.client_ref, "staff_ref": visit.staff_ref,
            "arrived_at": visit.arrived_at, "reason": reason,
            "noticed_at_client_ref": other_client_ref,
        })
        log.warning("visit %s at %s by %s closed without departure (%s)", visit.id,
                    visit.client_ref, visit.staff_ref, reason)
        return visit.id

    def _refuse(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp, refusal: Refusal, *,
                client_ref: str | None = None, staff_ref: str | None = None,
                extra: str = "") -> Decision:
        advice = REFUSAL_ADVICE[refusal]
        if extra:
            advice = f"{advice} ({extra})"
        event_id = self.store.add_event(conn, "tap.refused", stamp, {
            "uid": tap.uid, "reason": str(refusal), "detail": extra, "client_ref": client_ref,
            "staff_ref": staff_ref or self._current_staff(stamp), "reader": tap.reader,
            "product": tap.product, "signature": tap.signature, "tag_signer": self._signer(tap),
        })
        return Decision(Outcome.REFUSED, Feedback.REFUSED, f"refused: {advice}", tap.uid,
                        stamp.wall_iso, client_ref=client_ref, staff_ref=staff_ref,
                        refusal=refusal, event_id=event_id)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _tap_outcome(decision: Decision) -> str:
    if decision.outcome in (Outcome.ARRIVAL, Outcome.DEPARTURE, Outcome.SIGNED_IN):
        return "registered"
    return str(decision.outcome)
