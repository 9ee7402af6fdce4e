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
  installed is refused with "take the tag down" and recorded;
- a tag is only believed as far as the deployment's tag policy asks
  (:class:`sync.protocol.TagPolicy`): an NTAG 424 DNA whose SUN keys this agent holds
  must give a valid SUN URL with a read counter above the last one accepted here
  (a copied tag or a replayed URL cannot), whatever the policy; other tags need an NXP
  originality signature under ``signature`` and are refused under ``sun_required``.

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
from urllib.parse import parse_qs, urlsplit

from agent.clock import Clock, Stamp
from agent.store import Store, Visit, new_id
from drivers.nfc.authenticity import GENUINE_NXP, signer
from drivers.nfc.base import Feedback, Tap
from routine import sun
from routine.sun import MAX_SUN_URL, SunVerdict, TagPolicy

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
    NOT_SECURED = "not_secured"  # policy sun_required, and this tag has no SUN
    SUN_MISSING = "sun_missing"  # a SUN tag that gave no SUN URL
    SUN_BAD_MAC = "sun_bad_mac"
    SUN_UID_MISMATCH = "sun_uid_mismatch"
    SUN_REPLAY = "sun_replay"


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
        "this tag has no valid NXP originality signature (a copy, or not an NXP tag); "
        "do not use it, report it to your coordinator"
    ),
    Refusal.NOT_SECURED: (
        "this deployment accepts only secured tags (NTAG 424 DNA) and this one is not; "
        "register the visit another way and report the tag to your coordinator"
    ),
    Refusal.SUN_MISSING: (
        "this secured tag gave no secure code (reset or replaced?); do not use it, "
        "report it to your coordinator"
    ),
    Refusal.SUN_BAD_MAC: (
        "this tag's secure code is not valid (a copy or a tampered tag?); do not use it, "
        "report it to your coordinator"
    ),
    Refusal.SUN_UID_MISMATCH: (
        "this tag's secure code belongs to another tag (a copy?); do not use it, "
        "report it to your coordinator"
    ),
    Refusal.SUN_REPLAY: (
        "this tag's secure code was already used (a copied tag or URL?); do not use it, "
        "report it to your coordinator"
    ),
}

_SUN_REFUSALS = {
    SunVerdict.MALFORMED: Refusal.SUN_BAD_MAC,  # SUN parameters that do not decrypt
    SunVerdict.BAD_MAC: Refusal.SUN_BAD_MAC,
    SunVerdict.UID_MISMATCH: Refusal.SUN_UID_MISMATCH,
    SunVerdict.REPLAY: Refusal.SUN_REPLAY,
}


@dataclass(frozen=True)
class SunResult:
    """What the tap's SUN URL said, checked before the transaction (AES work, ~0.1 ms);
    the counter is compared with the last accepted one inside it."""

    url: str | None
    verdict: SunVerdict
    counter: int | None = None
    detail: str = ""
    missing: bool = False  # no SUN parameters at all (not: SUN parameters that are wrong)

    @property
    def refusal(self) -> Refusal:
        return Refusal.SUN_MISSING if self.missing else _SUN_REFUSALS[self.verdict]

    def as_data(self) -> dict[str, Any] | None:
        """``data["sun"]`` of the tap's event (sync.protocol.SunCheck), None without URL."""
        if self.url is None:
            return None
        return {"url": self.url[:MAX_SUN_URL], "counter": self.counter,
                "verdict": str(self.verdict)}


def check_sun(tap: Tap, meta_read: bytes, file_read: bytes) -> SunResult:
    """Verify the SUN URL of a tap from a tag whose SDM keys we hold (no counter check)."""
    urls = [r.uri for r in tap.ndef if r.uri]
    if not urls:
        return SunResult(None, SunVerdict.MALFORMED, detail="no URL on the tag", missing=True)
    url = urls[0]
    names = set(parse_qs(urlsplit(url).query, keep_blank_values=True))
    template = sun.DEFAULT_TEMPLATE
    if not names & {*template.picc, *template.mac, *template.uid, *template.ctr}:
        return SunResult(url, SunVerdict.MALFORMED, detail="a URL without SUN parameters",
                         missing=True)
    keys = sun.TagKeys(meta_read=meta_read, file_read=file_read)
    try:
        reading = sun.verify_sun(url, keys, expected_uid=bytes.fromhex(tap.uid))
    except sun.SunBadMac as exc:
        return SunResult(url, SunVerdict.BAD_MAC, detail=str(exc))
    except sun.SunUidMismatch as exc:
        return SunResult(url, SunVerdict.UID_MISMATCH, detail=str(exc))
    except sun.SunError as exc:
        return SunResult(url, SunVerdict.MALFORMED, detail=str(exc))
    return SunResult(url, SunVerdict.OK, counter=reading.counter)


@dataclass(frozen=True)
class Settings:
    repeat_window_s: float = DEFAULT_REPEAT_WINDOW_S
    max_visit_s: float = DEFAULT_MAX_VISIT_S
    sign_in_ttl_s: float = DEFAULT_SIGN_IN_TTL_S
    personal_staff_ref: str | None = None  # set when the device belongs to one person
    # Keys whose NTAG21x originality signatures we accept, by name (recorded with
    # each event so the centre can flag unverified tags).
    trusted_tag_keys: tuple[tuple[str, str], ...] = tuple(GENUINE_NXP.items())
    # Refuse tags without a valid signature (the legacy switch: policy ``signature``
    # when neither the configuration nor the centre names a policy).
    require_genuine_tags: bool = False
    # The tag policy, overriding the centre's (None: the centre's, as last pulled).
    tag_policy: TagPolicy | None = None


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
        # Verify the originality signature (pure-Python ECDSA, ~0.5 ms) and the SUN URL
        # before taking the write lock; the calls inside the transaction hit the cache.
        self._signer(tap)
        keys = self.store.sun_keys_for(tap.uid) if tap.problem is None else None
        result = None if keys is None else check_sun(tap, keys[1], keys[2])
        with self.store.transaction() as conn:
            decision = self._decide(conn, tap, stamp, result)
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

    def policy(self) -> TagPolicy:
        """The tag policy in force: configuration, else the centre's, else the legacy
        switch (``signature`` with require_genuine_tags, ``uid_only`` without)."""
        if self.settings.tag_policy is not None:
            return self.settings.tag_policy
        pulled = self.store.tag_policy()
        if pulled:
            try:
                return TagPolicy(pulled)
            except ValueError:  # a newer centre's policy: the strictest we know
                log.warning("unknown tag policy %r from the centre; using sun_required", pulled)
                return TagPolicy.SUN_REQUIRED
        return TagPolicy.SIGNATURE if self.settings.require_genuine_tags else TagPolicy.UID_ONLY

    def _decide(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp,
                result: SunResult | None) -> Decision:
        if tap.problem is not None:
            detail = f"{tap.problem}: {tap.problem_detail}" if tap.problem_detail else tap.problem
            return self._refuse(conn, tap, stamp, Refusal.UNREADABLE, extra=str(detail))
        badge = self.store.staff_for_badge(tap.uid)
        if result is not None:  # a SUN tag: its SUN is the proof, whatever the policy
            counter = result.counter
            if result.verdict is SunVerdict.OK and counter is not None:
                last = self.store.last_sun_counter(conn, tap.uid)
                if last is not None and counter <= last:
                    result = SunResult(result.url, SunVerdict.REPLAY, counter,
                                       f"read counter {counter} is not above the last "
                                       f"accepted {last}")
                else:  # in this transaction: the counter is used up with the decision
                    self.store.accept_sun_counter(conn, tap.uid, counter, stamp.wall_iso)
            if result.verdict is not SunVerdict.OK:
                return self._refuse(conn, tap, stamp, result.refusal,
                                    extra=result.detail, sun_result=result)
        else:
            policy = self.policy()
            if badge is None and policy is TagPolicy.SUN_REQUIRED:
                found = self.store.client_for_tag(tap.uid)
                return self._refuse(conn, tap, stamp, Refusal.NOT_SECURED,
                                    client_ref=found[0].ref if found else None)
            if policy is not TagPolicy.UID_ONLY and self._signer(tap) is None:
                return self._refuse(conn, tap, stamp, Refusal.NOT_GENUINE)
        if badge is not None:
            return self._sign_in(conn, tap, stamp, badge.staff_ref, badge.display_name)
        found = self.store.client_for_tag(tap.uid)
        if found is None:
            return self._refuse(conn, tap, stamp, Refusal.UNKNOWN_TAG, sun_result=result)
        client, active = found
        if not active:
            return self._refuse(conn, tap, stamp, Refusal.TAG_INACTIVE, client_ref=client.ref,
                                sun_result=result)
        if client.lock_status == "installed":
            return self._refuse(conn, tap, stamp, Refusal.LOCK_INSTALLED, client_ref=client.ref,
                                sun_result=result)
        staff_ref = self._current_staff(stamp)
        if staff_ref is None:
            return self._refuse(conn, tap, stamp, Refusal.NO_STAFF, client_ref=client.ref,
                                sun_result=result)
        return self._visit_tap(conn, tap, stamp, client.ref, staff_ref, result)

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
                   staff_ref: str, result: SunResult | None) -> Decision:
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
            return self._depart(conn, tap, stamp, open_here, tuple(closed), result)
        return self._arrive(conn, tap, stamp, client_ref, staff_ref, tuple(closed), result)

    def _arrive(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp, client_ref: str,
                staff_ref: str, closed: tuple[str, ...], result: SunResult | None) -> Decision:
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
            **_sun_data(result),
        })
        note = f" (closed {len(closed)} visit(s) without departure)" if closed else ""
        return Decision(Outcome.ARRIVAL, Feedback.REGISTERED,
                        f"arrival at {client_ref} by {staff_ref}{note}", tap.uid, stamp.wall_iso,
                        client_ref=client_ref, staff_ref=staff_ref, visit_id=visit_id,
                        closed_missing=closed, event_id=event_id)

    def _depart(self, conn: sqlite3.Connection, tap: Tap, stamp: Stamp, visit: Visit,
                closed: tuple[str, ...], result: SunResult | None) -> Decision:
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
            "tag_signer": self._signer(tap), "method": "nfc_tag", **_sun_data(result),
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
                extra: str = "", sun_result: SunResult | None = None) -> Decision:
        advice = REFUSAL_ADVICE[refusal]
        if extra:
            advice = f"{advice} ({extra})"
        event_id = self.store.add_event(conn, "tap.refused", stamp, {
            "uid": tap.uid, "reason": str(refusal), "detail": extra, "client_ref": client_ref,
            "staff_ref": staff_ref or self._current_staff(stamp), "reader": tap.reader,
            "product": tap.product, "signature": tap.signature, "tag_signer": self._signer(tap),
            **_sun_data(sun_result),
        })
        return Decision(Outcome.REFUSED, Feedback.REFUSED, f"refused: {advice}", tap.uid,
                        stamp.wall_iso, client_ref=client_ref, staff_ref=staff_ref,
                        refusal=refusal, event_id=event_id)


def _sun_data(result: SunResult | None) -> dict[str, Any]:
    data = None if result is None else result.as_data()
    return {} if data is None else {"sun": data}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _tap_outcome(decision: Decision) -> str:
    if decision.outcome in (Outcome.ARRIVAL, Outcome.DEPARTURE, Outcome.SIGNED_IN):
        return "registered"
    return str(decision.outcome)
