"""The centre checks every tap's SUN again: across all agents, in the ingest transaction.

An agent verifies an NTAG 424 DNA's SUN URL offline and accepts a read counter above
the last one *it* accepted; a URL copied from the tag, or a copy of the tag, tapped on
another agent passes there. The centre holds the counter across every agent
(``sun_counters``) and checks each stored tap event once, in the transaction that
stores it (:meth:`central.store.CentralStore.add_ingest_check`), so the check is as
durable as the event and never runs twice.

What is read from an event's ``data`` (``agent.visits``):

- ``visit.arrived`` / ``visit.departed``: ``tag_uid``, ``client_ref``, ``sun``;
- ``tap.refused``: ``uid``, ``client_ref``, ``reason``, ``sun``;
- ``sun``: a :class:`sync.protocol.SunCheck` (``url``, ``counter``, ``verdict``).

The URL is verified with the keys of the tag's confirmed key version
(``nfc_tags.key_version``; :func:`routine.sun.verify_sun` with the UID the event names).
A valid one with a counter above the last accepted advances it; a bad MAC, a URL that
is not ours, another tag's URL, or a counter not above the last one is *suspect*, and
so is a ``tap.refused`` whose ``reason`` says the agent found the tag not genuine
(:data:`SUSPECT_REFUSALS`), whatever the centre found. Suspects never advance the counter
and raise the ``tag_copy_suspected`` alert (:mod:`central.cases.alerts`); the event
itself is stored as sent: nothing is lost. Events without either behave as before.
One row per checked event in ``sun_checks`` keeps the verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db as central_db
from central.cases import db as t
from central.cases import refdata, tagkeys
from central.errors import CentralError
from central.store import DeviceInfo
from routine import sun
from routine.sun import SunVerdict
from sync.protocol import Event, SunCheck

log = logging.getLogger(__name__)

CHECKER = "sun_checks"
TAP_REFUSED = "tap.refused"
#: The tap events' kinds and the field of ``data`` naming the tag's UID.
UID_FIELDS = {"visit.arrived": "tag_uid", "visit.departed": "tag_uid", TAP_REFUSED: "uid"}
KINDS = frozenset(UID_FIELDS)
#: An agent's refusals that say the tag is not the genuine one (agent.visits.Refusal):
#: a missing signature, a bad, foreign or replayed SUN, or no SUN at all from a SUN tag
#: (what a copy of its UID on a "magic" tag gives).
SUSPECT_REFUSALS = frozenset({"not_genuine", "sun_replay", "sun_bad_mac", "sun_uid_mismatch",
                              "sun_missing"})
#: The centre's own findings that are suspect.
SUSPECT_VERDICTS = frozenset({SunVerdict.REPLAY, SunVerdict.BAD_MAC, SunVerdict.UID_MISMATCH,
                              SunVerdict.MALFORMED})
MAX_SHORT = 32  # sun_checks.agent_verdict; a refusal longer than this is not one we know
MAX_DETAIL = 500
IN_CHUNK = 500  # ids per IN (...): far below SQLite's bound-parameter limit

_SUN_CHECK: pydantic.TypeAdapter[SunCheck] = pydantic.TypeAdapter(SunCheck)


@dataclass(frozen=True)
class _Tap:
    event: Event
    uid: str | None  # normalised 7-byte NFC-A UID, None when the event names none usable
    client_ref: str | None
    sun: SunCheck | None
    sun_unreadable: bool  # data["sun"] was sent but is no SunCheck
    refusal: str | None


@dataclass(frozen=True)
class _Verdict:
    verdict: SunVerdict | None  # None: no SUN to check (a refusal alone)
    counter: int | None = None
    last: int | None = None
    key_version: int | None = None
    detail: str = ""


def check_taps(conn: Connection, device: DeviceInfo, events: Sequence[Event],
               now: datetime) -> None:
    """The ingest check (:data:`CHECKER`): judge the batch's new tap events, advance
    counters of valid reads, record a ``sun_checks`` row for each event judged."""
    taps = [tap for e in events if (tap := _tap(e)) is not None]
    if not taps:
        return
    best = _best_times(conn, [tap.event.event_id for tap in taps])
    tags = _sun_tags(conn, {tap.uid for tap in taps if tap.uid is not None})
    masters = tagkeys.masters(conn, {v for _, v in tags.values()})
    rows = []
    # Counters in UID order (batches that share tags take the rows' locks in one order),
    # each UID's reads in batch order (sorted() is stable): the same result either way.
    for tap in sorted(taps, key=lambda tap: tap.uid or ""):
        judged = _judge(conn, tap, tags, masters, now)
        suspect = judged.verdict in SUSPECT_VERDICTS or tap.refusal in SUSPECT_REFUSALS
        client = tags[tap.uid][0] if tap.uid in tags else tap.client_ref
        rows.append({
            "event_id": tap.event.event_id, "device": device.name, "kind": tap.event.kind,
            "uid": tap.uid, "client_ref": client, "key_version": judged.key_version,
            "counter": judged.counter, "last_counter": judged.last,
            "verdict": str(judged.verdict) if judged.verdict else None,
            "agent_verdict": str(tap.sun.verdict) if tap.sun else None,
            "refusal": tap.refusal, "suspect": suspect,
            "detail": judged.detail[:MAX_DETAIL] or None,
            "at": best.get(tap.event.event_id, now), "checked_at": now})
        if suspect:
            log.warning("tap %s of device %s on tag %s: suspect (centre: %s, agent: %s%s)",
                        tap.event.event_id, device.name, tap.uid, judged.verdict or "-",
                        tap.sun.verdict if tap.sun else "-",
                        f", refused {tap.refusal}" if tap.refusal else "")
    conn.execute(sa.insert(t.sun_checks), rows)


def _tap(event: Event) -> _Tap | None:
    """What the check reads of a tap event, or None when there is nothing to check."""
    data = event.data
    refusal = data.get("reason") if event.kind == TAP_REFUSED else None
    refusal = refusal if isinstance(refusal, str) and len(refusal) <= MAX_SHORT else None
    raw = data.get("sun")
    if raw is None and refusal not in SUSPECT_REFUSALS:
        return None
    parsed: SunCheck | None = None
    if raw is not None:
        try:
            parsed = _SUN_CHECK.validate_python(raw)
        except pydantic.ValidationError:
            parsed = None
    client = data.get("client_ref")
    return _Tap(event=event, uid=_uid(data.get(UID_FIELDS[event.kind])),
                client_ref=client if isinstance(client, str) else None, sun=parsed,
                sun_unreadable=raw is not None and parsed is None, refusal=refusal)


def _uid(value: Any) -> str | None:
    try:
        uid = refdata.tag_uid(value)
    except CentralError:
        return None
    return uid if len(uid) == 2 * sun.UID_LENGTH else None


def _judge(conn: Connection, tap: _Tap, tags: dict[str, tuple[str, int]],
           masters: dict[int, bytes], now: datetime) -> _Verdict:
    if tap.sun is None:
        if tap.sun_unreadable:
            return _Verdict(SunVerdict.MALFORMED, detail="data.sun is not a SUN check "
                                                         "(url, counter, verdict)")
        return _Verdict(None)
    if tap.uid is None:
        return _Verdict(SunVerdict.MALFORMED, detail="the event names no 7-byte tag UID")
    if tap.uid not in tags:
        return _Verdict(SunVerdict.NO_KEYS, detail="the centre holds no SUN keys for this tag")
    version = tags[tap.uid][1]
    keys = tagkeys.sdm_keys(masters[version], tap.uid)
    try:
        reading = sun.verify_sun(tap.sun.url, keys, expected_uid=bytes.fromhex(tap.uid))
    except sun.SunBadMac as exc:
        return _Verdict(SunVerdict.BAD_MAC, key_version=version, detail=exc.detail)
    except sun.SunUidMismatch as exc:
        return _Verdict(SunVerdict.UID_MISMATCH, key_version=version, detail=exc.detail)
    except ValueError as exc:  # SunMalformed, SunWrongTag: not a URL of this tag's keys
        return _Verdict(SunVerdict.MALFORMED, key_version=version, detail=str(exc))
    if advance(conn, tap.uid, reading.counter, now):
        return _Verdict(SunVerdict.OK, reading.counter, key_version=version)
    last = last_counter(conn, tap.uid)
    return _Verdict(SunVerdict.REPLAY, reading.counter, last, version,
                    f"read counter {reading.counter} is not above the last accepted {last}")


# --- counters ----------------------------------------------------------------------------


def advance(conn: Connection, uid: str, counter: int, now: datetime) -> bool:
    """Take ``counter`` as the tag's last accepted one if it is above the present one
    (or there is none); False if not. One statement: it locks the counter's row, so two
    processes checking the same tag take turns and only one can accept a counter."""
    c = t.sun_counters.c
    stmt = central_db.dialect_insert(conn, t.sun_counters).values(uid=uid, counter=counter,
                                                                  updated_at=now)
    accepting = stmt.on_conflict_do_update(
        index_elements=["uid"],
        set_={"counter": stmt.excluded["counter"], "updated_at": stmt.excluded["updated_at"]},
        where=c.counter < stmt.excluded["counter"],
    ).returning(c.uid)
    return conn.execute(accepting).first() is not None


def set_counter(conn: Connection, uid: str, counter: int, now: datetime) -> None:
    """Start the tag's counter over at ``counter`` (new keys after provisioning)."""
    stmt = central_db.dialect_insert(conn, t.sun_counters).values(uid=uid, counter=counter,
                                                                  updated_at=now)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["uid"],
        set_={"counter": stmt.excluded["counter"], "updated_at": stmt.excluded["updated_at"]}))


def last_counter(conn: Connection, uid: str) -> int | None:
    c = t.sun_counters.c
    value: int | None = conn.execute(sa.select(c.counter).where(c.uid == uid)).scalar()
    return value


# --- reading -----------------------------------------------------------------------------


def _best_times(conn: Connection, event_ids: Iterable[str]) -> dict[str, datetime]:
    e = central_db.events.c
    ordered = sorted(set(event_ids))
    found: dict[str, datetime] = {}
    for i in range(0, len(ordered), IN_CHUNK):
        chunk = ordered[i:i + IN_CHUNK]
        found.update(dict(conn.execute(sa.select(e.event_id, e.best_at)
                                       .where(e.event_id.in_(chunk))).all()))
    return found


def _sun_tags(conn: Connection, uids: set[str]) -> dict[str, tuple[str, int]]:
    """UID -> (client, key version) of those tags with SUN keys at the centre."""
    g = t.nfc_tags.c
    ordered = sorted(uids)
    found: dict[str, tuple[str, int]] = {}
    for i in range(0, len(ordered), IN_CHUNK):
        for uid, client, version in conn.execute(
                sa.select(g.uid, g.client_ref, g.key_version)
                .where(g.uid.in_(ordered[i:i + IN_CHUNK]), g.key_version.is_not(None))):
            found[uid] = (client, version)
    return found


@dataclass(frozen=True)
class SuspectRead:
    """A tap the centre found suspect (one ``sun_checks`` row)."""

    event_id: str
    device: str
    kind: str
    uid: str | None
    client_ref: str | None
    verdict: str | None
    agent_verdict: str | None
    refusal: str | None
    counter: int | None
    last_counter: int | None
    detail: str | None
    at: datetime
    checked_at: datetime

    @property
    def reason(self) -> str:
        """The centre's verdict when it is the suspect part, else the agent's refusal."""
        if self.verdict in SUSPECT_VERDICTS:
            return str(self.verdict)
        return f"agent refused: {self.refusal}" if self.refusal else "suspect"


def suspects(conn: Connection, checked_after: datetime) -> list[SuspectRead]:
    """Suspect reads the centre checked after ``checked_after``, oldest tap first."""
    c = t.sun_checks.c
    query = (sa.select(t.sun_checks)
             .where(c.suspect.is_(True), c.checked_at > checked_after)
             .order_by(c.at, c.event_id))
    fields = SuspectRead.__dataclass_fields__
    return [SuspectRead(**{f: row._mapping[f] for f in fields}) for row in conn.execute(query)]


def checks(conn: Connection, *, uid: str | None = None) -> list[dict[str, Any]]:
    """The centre's checks (every ``sun_checks`` row), for administration and tests."""
    c = t.sun_checks.c
    query = sa.select(t.sun_checks).order_by(c.checked_at, c.at, c.event_id)
    if uid is not None:
        query = query.where(c.uid == uid)
    return [dict(row._mapping) for row in conn.execute(query)]
