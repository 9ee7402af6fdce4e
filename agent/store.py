"""The agent's local store: reference data, visits, the tap log and the outbox.

One SQLite file in WAL mode with ``synchronous=FULL``: a commit that returned has
reached the disk, so a tap acknowledged to the person at the door survives a
power cut or ``kill -9``. Every change a tap causes is ONE transaction: the visit
row, the tap log row and the outbox event commit together or not at all.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` are
applied in order at open and never drop buffered data.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from agent.clock import Stamp
from routine import reference
from routine.timekeeping import Anchor

if TYPE_CHECKING:  # the store needs no sync code, only the shape of a reference item
    from sync.protocol import FitterJob, ReferenceItem, SunTagKeys

log = logging.getLogger(__name__)

DB_NAME = "agent.db"
# A reader thread and the sync thread may both want the file; wait this long for
# the other's transaction rather than failing a tap.
BUSY_TIMEOUT_S = 10.0

REFERENCE_CURSOR_KEY = "reference_cursor"
TAG_POLICY_KEY = "tag_policy"  # the deployment's tag policy, as the centre last said


class StoreError(Exception):
    """Root of the store's errors; the message says what to do."""


class ReferenceDataError(StoreError, reference.ReferenceDataError):
    """An import file that does not hold valid reference data (:mod:`routine.reference`).

    Also a :class:`routine.reference.ReferenceDataError` (a ``ValueError``).
    """


# The sections of the agent's import file: locks reach the agent from the centre only.
IMPORT_SECTIONS = ("clients", "tags", "staff")


def new_id() -> str:
    return uuid.uuid4().hex


# --- schema -------------------------------------------------------------------------


def _v1_core(db: sqlite_utils.Database) -> None:
    db["clients"].create(  # type: ignore[union-attr]
        {"ref": str, "display_name": str, "lock_status": str, "updated_at": str}, pk="ref"
    )
    db["tags"].create(  # type: ignore[union-attr]
        {"uid": str, "client_ref": str, "active": int, "updated_at": str},
        pk="uid",
        foreign_keys=[("client_ref", "clients", "ref")],
    )
    db["staff"].create(  # type: ignore[union-attr]
        {"badge_uid": str, "staff_ref": str, "display_name": str, "active": int}, pk="badge_uid"
    )
    db["visits"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "client_ref": str,
            "staff_ref": str,
            "tag_uid": str,
            "arrived_at": str,
            "arrived_boottime_ns": int,
            "arrived_boot_id": str,
            "departed_at": str,
            "departed_boottime_ns": int,
            "status": str,  # open | closed | departure_missing
            "close_reason": str,
        },
        pk="id",
    )
    db["visits"].create_index(["staff_ref", "status"])  # type: ignore[union-attr]
    db["visits"].create_index(["arrived_at"])  # type: ignore[union-attr]
    db["sign_ins"].create(  # type: ignore[union-attr]
        {"id": str, "staff_ref": str, "badge_uid": str, "at": str, "boottime_ns": int,
         "boot_id": str},
        pk="id",
    )
    db["outbox"].create(  # type: ignore[union-attr]
        {
            "seq": int,
            "event_id": str,
            "kind": str,
            "payload": str,
            "created_at": str,
            "sent_at": str,
        },
        pk="seq",
    )
    db.execute("CREATE UNIQUE INDEX outbox_event_id ON outbox(event_id)")
    db.execute("CREATE INDEX outbox_pending ON outbox(sent_at, seq)")


def _v2_tap_log(db: sqlite_utils.Database) -> None:
    # Every tap, including refused and ignored ones, for `nyckelfri agent status`
    # and for support: "the reader beeped red at 08:12, why?".
    db["taps"].create(  # type: ignore[union-attr]
        {
            "id": str,
            "uid": str,
            "reader": str,
            "product": str,
            "at": str,
            "boottime_ns": int,
            "boot_id": str,
            "staff_ref": str,
            "outcome": str,
            "reason": str,
            "signature": str,
        },
        pk="id",
    )
    db["taps"].create_index(["uid", "staff_ref", "at"])  # type: ignore[union-attr]


def _v3_sync(db: sqlite_utils.Database) -> None:
    # Sync with the centre: the reference feed's cursor (meta), digital locks as
    # reference data, the best clock anchor of each boot, and events the centre
    # refused, set aside for a person instead of blocking the outbox.
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE locks (serial TEXT PRIMARY KEY, client_ref TEXT, state TEXT, "
               "updated_at TEXT)")
    db.execute("CREATE INDEX locks_client_ref ON locks(client_ref)")
    db.execute("CREATE TABLE clock_anchors (boot_id TEXT PRIMARY KEY, "
               "boottime_ns INTEGER NOT NULL, server_time TEXT NOT NULL, "
               "rtt_ns INTEGER NOT NULL, saved_at TEXT NOT NULL)")
    db.execute("ALTER TABLE outbox ADD COLUMN rejected_reason TEXT")
    db.execute("ALTER TABLE outbox ADD COLUMN rejected_at TEXT")
    # What the sync reads every round: unsent, not set aside, oldest first.
    db.execute("CREATE INDEX outbox_unsent ON outbox(seq) "
               "WHERE sent_at IS NULL AND rejected_reason IS NULL")


def _v4_fitter_jobs(db: sqlite_utils.Database) -> None:
    # Fitters: the binder jobs pulled from the centre (the whole sync.protocol.FitterJob
    # as JSON, replaced on every pull) and the checkpoints ticked here, kept locally so
    # the order rules hold offline before the centre has heard of the ticks.
    db.execute("CREATE TABLE jobs (job_id INTEGER PRIMARY KEY, payload TEXT NOT NULL, "
               "pulled_at TEXT NOT NULL)")
    db.execute("CREATE TABLE job_checkpoints (job_id INTEGER NOT NULL, "
               "checkpoint TEXT NOT NULL, event_id TEXT NOT NULL UNIQUE, "
               "fitter TEXT NOT NULL, verification_event_id TEXT, signed_by TEXT, "
               "ticked_at TEXT NOT NULL, PRIMARY KEY (job_id, checkpoint))")


def _v5_sun(db: sqlite_utils.Database) -> None:
    # NTAG 424 DNA SUN: the two SDM keys of each tag of this device's unit (pulled from
    # the centre, replaced whole on every pull; never the tag's master key) and the last
    # read counter accepted per tag, which is what refuses a replayed URL offline. The
    # counters are this agent's own record: they are never lowered nor deleted by a pull.
    db.execute("CREATE TABLE sun_keys (uid TEXT PRIMARY KEY, key_version INTEGER NOT NULL, "
               "meta_read TEXT NOT NULL, file_read TEXT NOT NULL)")
    db.execute("CREATE TABLE sun_counters (uid TEXT PRIMARY KEY, counter INTEGER NOT NULL, "
               "at TEXT NOT NULL)")


MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _v1_core, _v2_tap_log, _v3_sync, _v4_fitter_jobs, _v5_sun,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target``; each step in its own transaction. Returns the version."""
    db = sqlite_utils.Database(conn)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store schema version {version} is newer than this agent understands "
            f"({SCHEMA_VERSION}); upgrade nyckelfri instead of downgrading"
        )
    for number in range(version, target):
        step = MIGRATIONS[number]
        log.info("migrating store schema %d -> %d (%s)", number, number + 1, step.__name__)
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, target)


# --- values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    ref: str
    display_name: str
    lock_status: str


@dataclass(frozen=True)
class StaffMember:
    staff_ref: str
    display_name: str
    badge_uid: str


@dataclass(frozen=True)
class Visit:
    id: str
    client_ref: str
    staff_ref: str
    tag_uid: str
    arrived_at: str
    arrived_boottime_ns: int
    arrived_boot_id: str
    departed_at: str | None
    departed_boottime_ns: int | None
    status: str
    close_reason: str | None


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    event_id: str
    kind: str
    payload: dict[str, Any]
    created_at: str


def event_payload(
    kind: str, stamp: Stamp, device_id: str, data: dict[str, Any], event_id: str
) -> dict[str, Any]:
    """The envelope every event carries: identity, the four time fields, the data."""
    return {
        "event_id": event_id,
        "kind": kind,
        "device_id": device_id,
        "at": stamp.wall_iso,
        "boottime_ns": stamp.boottime_ns,
        "boot_id": stamp.boot_id,
        "clock_synced": stamp.clock_synced,
        "data": data,
    }


# --- the store ---------------------------------------------------------------------------


class Store:
    """The agent's SQLite file. Thread-safe: one connection behind a lock."""

    def __init__(self, path: Path | str, *, device_id: str = "agent") -> None:
        self.path = Path(path)
        self.device_id = device_id
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the agent's store at {self.path}: {exc}; "
                "check that --data-dir exists and is writable by the agent's user"
            ) from exc
        self.conn = conn
        self.conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        try:
            # WAL: readers (CLI) never block the reader thread's commits.
            # synchronous=FULL: in WAL mode NORMAL may lose the last commits on power
            # loss; an acknowledged tap must not be lost, so we pay one fsync per commit.
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=OFF")  # reference data may arrive in any order
            self.schema_version = migrate(self.conn)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(
                f"{self.path} is not a usable agent store ({exc}); move it aside and "
                "start again: buffered events in it must be recovered by hand"
            ) from exc
        self.db = sqlite_utils.Database(self.conn)

    @classmethod
    def in_dir(cls, data_dir: Path | str, *, device_id: str = "agent") -> Store:
        return cls(Path(data_dir) / DB_NAME, device_id=device_id)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction; commits on success, rolls back on any error."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # --- outbox ---------------------------------------------------------------------

    def add_event(
        self, conn: sqlite3.Connection, kind: str, stamp: Stamp, data: dict[str, Any]
    ) -> str:
        """Append an event inside the caller's transaction. Returns its id."""
        event_id = new_id()
        payload = event_payload(kind, stamp, self.device_id, data, event_id)
        conn.execute(
            "INSERT INTO outbox(event_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
            (event_id, kind, json.dumps(payload, separators=(",", ":")), stamp.wall_iso),
        )
        return event_id

    def pending_events(self, limit: int = 500) -> list[OutboxEvent]:
        """Events to send, oldest first; events the centre rejected are not pending."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT seq, event_id, kind, payload, created_at FROM outbox "
                "WHERE sent_at IS NULL AND rejected_reason IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxEvent(r["seq"], r["event_id"], r["kind"], json.loads(r["payload"]),
                        r["created_at"])
            for r in rows
        ]

    def mark_sent(self, event_ids: Sequence[str], sent_at: str) -> int:
        """Mark events the centre acknowledged. Unknown ids are ignored."""
        with self.transaction() as conn:
            cur = conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE event_id = ? AND sent_at IS NULL",
                [(sent_at, eid) for eid in event_ids],
            )
            return cur.rowcount

    def pending_count(self) -> int:
        with self._lock:
            return int(self.conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND rejected_reason IS NULL"
            ).fetchone()[0])

    def mark_rejected(self, event_id: str, reason: str) -> None:
        """Set aside an event the centre refused for good: kept (for a person to look
        at, see :meth:`rejected_events`), but no longer pending."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET rejected_reason = ?, rejected_at = ? "
                "WHERE event_id = ? AND sent_at IS NULL",
                (reason or "rejected", _utc_now(), event_id),
            )

    def rejected_events(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT event_id, kind, created_at, rejected_reason, rejected_at FROM outbox "
                "WHERE sent_at IS NULL AND rejected_reason IS NOT NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(r) for r in rows]

    def rejected_count(self) -> int:
        with self._lock:
            return int(self.conn.execute(
                "SELECT COUNT(*) FROM outbox "
                "WHERE sent_at IS NULL AND rejected_reason IS NOT NULL"
            ).fetchone()[0])

    def requeue_rejected(self, event_ids: Sequence[str]) -> int:
        """Make rejected events pending again (after the cause was fixed at the centre)."""
        with self.transaction() as conn:
            cur = conn.executemany(
                "UPDATE outbox SET rejected_reason = NULL, rejected_at = NULL "
                "WHERE event_id = ? AND sent_at IS NULL",
                [(eid,) for eid in event_ids],
            )
            return cur.rowcount

    def outbox_counts(self) -> dict[str, int]:
        """total = sent + pending + rejected (see :meth:`rejected_count`)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT COUNT(*) AS total, COUNT(sent_at) AS sent, "
                "COUNT(CASE WHEN sent_at IS NULL THEN rejected_reason END) AS rejected "
                "FROM outbox"
            ).fetchone()
        pending = row["total"] - row["sent"] - row["rejected"]
        return {"total": row["total"], "sent": row["sent"], "pending": pending}

    # --- sync with the centre -----------------------------------------------------------

    def reference_cursor(self) -> int:
        """How far the centre's reference feed has been applied (0: never)."""
        with self._lock:
            return int(self._meta(self.conn, REFERENCE_CURSOR_KEY) or 0)

    def apply_reference(self, items: Sequence[ReferenceItem], cursor: int) -> None:
        """Apply one page of the centre's reference feed and its cursor in ONE transaction.

        An item the agent cannot use is logged and skipped rather than blocking the feed.
        A page older than what is applied (another sync got further) is skipped whole.
        """
        rows = [_reference_row(item) for item in items]
        at = _utc_now()
        with self.transaction() as conn:
            current = int(self._meta(conn, REFERENCE_CURSOR_KEY) or 0)
            if cursor < current:
                log.info("reference page up to %d skipped: %d already applied", cursor, current)
                return
            for row in rows:
                if row is not None:
                    _apply_reference_row(conn, row, at)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value", (REFERENCE_CURSOR_KEY, str(cursor)),
            )

    # --- NTAG 424 DNA SUN ----------------------------------------------------------------

    def replace_tag_keys(self, policy: str, tags: Sequence[SunTagKeys]) -> None:
        """The centre's current SUN keys for this device's unit, and the deployment's tag
        policy, replace what was held (a tag moved to another unit, or re-keyed, loses its
        old keys here). The accepted counters stay."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM sun_keys")
            conn.executemany(
                "INSERT INTO sun_keys(uid, key_version, meta_read, file_read) "
                "VALUES (?, ?, ?, ?)",
                [(t.uid, t.key_version, t.meta_read, t.file_read) for t in tags],
            )
            conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value", (TAG_POLICY_KEY, policy),
            )

    def sun_keys_for(self, uid: str) -> tuple[int, bytes, bytes] | None:
        """(key version, K_SDMMetaRead, K_SDMFileRead) of a SUN tag, or None."""
        with self._lock:
            row = self.conn.execute(
                "SELECT key_version, meta_read, file_read FROM sun_keys WHERE uid = ?", (uid,),
            ).fetchone()
        if row is None:
            return None
        return row["key_version"], bytes.fromhex(row["meta_read"]), bytes.fromhex(
            row["file_read"])

    def sun_key_count(self) -> int:
        with self._lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM sun_keys").fetchone()[0])

    def tag_policy(self) -> str | None:
        """The tag policy the centre last gave, or None (never pulled)."""
        with self._lock:
            return self._meta(self.conn, TAG_POLICY_KEY)

    @staticmethod
    def last_sun_counter(conn: sqlite3.Connection, uid: str) -> int | None:
        row = conn.execute("SELECT counter FROM sun_counters WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def accept_sun_counter(conn: sqlite3.Connection, uid: str, counter: int, at: str) -> None:
        """Record ``counter`` as the last accepted for ``uid``, in the caller's transaction
        (with the tap's decision). Never lowers it."""
        conn.execute(
            "INSERT INTO sun_counters(uid, counter, at) VALUES (?, ?, ?) ON CONFLICT(uid) "
            "DO UPDATE SET counter = excluded.counter, at = excluded.at "
            "WHERE excluded.counter > sun_counters.counter", (uid, counter, at),
        )

    def sun_counters(self) -> dict[str, int]:
        with self._lock:
            return {r["uid"]: int(r["counter"]) for r in self.conn.execute(
                "SELECT uid, counter FROM sun_counters")}

    def locks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.conn.execute(
                "SELECT serial, client_ref, state, updated_at FROM locks ORDER BY serial")]

    def save_anchor(self, anchor: Anchor) -> None:
        """Keep the anchor of its boot with the shortest round trip."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO clock_anchors(boot_id, boottime_ns, server_time, rtt_ns, saved_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(boot_id) DO UPDATE SET "
                "boottime_ns = excluded.boottime_ns, server_time = excluded.server_time, "
                "rtt_ns = excluded.rtt_ns, saved_at = excluded.saved_at "
                "WHERE excluded.rtt_ns < clock_anchors.rtt_ns",
                (anchor.boot_id, anchor.boottime_ns, anchor.server_time.isoformat(),
                 anchor.rtt_ns, _utc_now()),
            )

    def anchor(self, boot_id: str) -> Anchor | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT boot_id, boottime_ns, server_time, rtt_ns FROM clock_anchors "
                "WHERE boot_id = ?", (boot_id,),
            ).fetchone()
        if row is None:
            return None
        return Anchor(row["boot_id"], row["boottime_ns"],
                      datetime.fromisoformat(row["server_time"]), row["rtt_ns"])

    # --- fitter jobs ------------------------------------------------------------------

    def replace_jobs(self, jobs: Sequence[FitterJob]) -> None:
        """The centre's current list of this fitter's jobs replaces the pulled ones.

        Checkpoints ticked here stay (``job_checkpoints``): they are the fitter's record.
        """
        at = _utc_now()
        with self.transaction() as conn:
            conn.execute("DELETE FROM jobs")
            conn.executemany(
                "INSERT INTO jobs(job_id, payload, pulled_at) VALUES (?, ?, ?)",
                [(job.job_id, job.model_dump_json(), at) for job in jobs],
            )

    def jobs(self) -> list[FitterJob]:
        """The pulled jobs, by booked start then id."""
        from sync.protocol import FitterJob

        with self._lock:
            rows = self.conn.execute("SELECT payload FROM jobs ORDER BY job_id").fetchall()
        jobs = [FitterJob.model_validate_json(r["payload"]) for r in rows]
        return sorted(jobs, key=lambda j: (j.booked_start is None,
                                           j.booked_start.isoformat() if j.booked_start
                                           else "", j.job_id))

    def job(self, job_id: int) -> FitterJob | None:
        from sync.protocol import FitterJob

        with self._lock:
            row = self.conn.execute("SELECT payload FROM jobs WHERE job_id = ?",
                                    (job_id,)).fetchone()
        return None if row is None else FitterJob.model_validate_json(row["payload"])

    def record_checkpoint(
        self, conn: sqlite3.Connection, job_id: int, checkpoint: str, event_id: str, *,
        fitter: str, ticked_at: str, verification_event_id: str | None = None,
        signed_by: str | None = None,
    ) -> None:
        """Note a ticked checkpoint inside the caller's transaction (with its event)."""
        conn.execute(
            "INSERT INTO job_checkpoints(job_id, checkpoint, event_id, fitter, "
            "verification_event_id, signed_by, ticked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job_id, checkpoint, event_id, fitter, verification_event_id, signed_by, ticked_at),
        )

    def job_checkpoints(self, job_id: int) -> list[dict[str, Any]]:
        """The checkpoints ticked on this agent for ``job_id``, in the order ticked."""
        with self._lock:
            return [dict(r) for r in self.conn.execute(
                "SELECT job_id, checkpoint, event_id, fitter, verification_event_id, "
                "signed_by, ticked_at FROM job_checkpoints WHERE job_id = ? ORDER BY rowid",
                (job_id,))]

    def lock_verifications(self, job_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded ``lock.verification`` events (for ``job_id``), oldest first:
        ``event_id``, ``at`` and the event's ``data``. Sent ones included."""
        sql = "SELECT event_id, payload FROM outbox WHERE kind = 'lock.verification'"
        params: tuple[Any, ...] = ()
        if job_id is not None:
            sql += " AND json_extract(payload, '$.data.job_id') = ?"
            params = (job_id,)
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY seq", params).fetchall()
        found = []
        for row in rows:
            payload = json.loads(row["payload"])
            found.append({"event_id": row["event_id"], "at": payload.get("at"),
                          "data": payload.get("data", {})})
        return found

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # --- reference data --------------------------------------------------------------

    def client_for_tag(self, uid: str) -> tuple[Client, bool] | None:
        """The client a tag belongs to and whether the tag is active, or None."""
        with self._lock:
            row = self.conn.execute(
                "SELECT c.ref, c.display_name, c.lock_status, t.active FROM tags t "
                "LEFT JOIN clients c ON c.ref = t.client_ref WHERE t.uid = ?",
                (uid,),
            ).fetchone()
        if row is None or row["ref"] is None:
            return None
        client = Client(row["ref"], row["display_name"] or "", row["lock_status"] or "pending")
        return client, bool(row["active"])

    def staff_for_badge(self, uid: str) -> StaffMember | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT staff_ref, display_name, badge_uid FROM staff "
                "WHERE badge_uid = ? AND active = 1",
                (uid,),
            ).fetchone()
        if row is None:
            return None
        return StaffMember(row["staff_ref"], row["display_name"] or "", row["badge_uid"])

    def staff_by_ref(self, staff_ref: str) -> StaffMember | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT staff_ref, display_name, badge_uid FROM staff WHERE staff_ref = ? "
                "ORDER BY active DESC LIMIT 1",
                (staff_ref,),
            ).fetchone()
        if row is None:
            return None
        return StaffMember(row["staff_ref"], row["display_name"] or "", row["badge_uid"])

    def import_reference(self, data: dict[str, Any], updated_at: str) -> dict[str, int]:
        """Upsert clients, tags and staff badges from a parsed reference file.

        Validates everything before writing anything: a bad file changes nothing.
        """
        clients, tags, staff = _validate_reference(data)
        # Plain SQL, not sqlite-utils' upsert_all: that one commits on its own
        # (``with conn:``) and would split this import into several transactions.
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO clients(ref, display_name, lock_status, updated_at) "
                "VALUES (:ref, :display_name, :lock_status, :updated_at) ON CONFLICT(ref) DO "
                "UPDATE SET display_name = excluded.display_name, "
                "lock_status = excluded.lock_status, updated_at = excluded.updated_at",
                [{**c, "updated_at": updated_at} for c in clients],
            )
            conn.executemany(
                "INSERT INTO tags(uid, client_ref, active, updated_at) "
                "VALUES (:uid, :client_ref, :active, :updated_at) ON CONFLICT(uid) DO "
                "UPDATE SET client_ref = excluded.client_ref, active = excluded.active, "
                "updated_at = excluded.updated_at",
                [{**t, "updated_at": updated_at} for t in tags],
            )
            conn.executemany(
                "INSERT INTO staff(badge_uid, staff_ref, display_name, active) "
                "VALUES (:badge_uid, :staff_ref, :display_name, :active) ON CONFLICT(badge_uid) "
                "DO UPDATE SET staff_ref = excluded.staff_ref, "
                "display_name = excluded.display_name, active = excluded.active",
                staff,
            )
        return {"clients": len(clients), "tags": len(tags), "staff": len(staff)}

    def reference_counts(self) -> dict[str, int]:
        with self._lock:
            return {
                name: self.conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]  # noqa: S608
                for name in ("clients", "tags", "staff")
            }

    # --- visits -------------------------------------------------------------------------

    def open_visits(self, staff_ref: str | None = None) -> list[Visit]:
        sql = "SELECT * FROM visits WHERE status = 'open'"
        args: tuple[Any, ...] = ()
        if staff_ref is not None:
            sql += " AND staff_ref = ?"
            args = (staff_ref,)
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY arrived_at", args).fetchall()
        return [_visit(r) for r in rows]

    def last_registration(self, uid: str, staff_ref: str) -> sqlite3.Row | None:
        """The newest registered tap of this staff member on this tag (for debouncing)."""
        with self._lock:
            return self.conn.execute(
                "SELECT at, boottime_ns, boot_id FROM taps WHERE uid = ? AND staff_ref = ? "
                "AND outcome = 'registered' ORDER BY at DESC, rowid DESC LIMIT 1",
                (uid, staff_ref),
            ).fetchone()

    def visits(
        self,
        *,
        day: str | None = None,
        client_ref: str | None = None,
        staff_ref: str | None = None,
        limit: int | None = None,
    ) -> list[Visit]:
        clauses, args = [], []
        if day:
            clauses.append("substr(arrived_at, 1, 10) = ?")
            args.append(day)
        if client_ref:
            clauses.append("client_ref = ?")
            args.append(client_ref)
        if staff_ref:
            clauses.append("staff_ref = ?")
            args.append(staff_ref)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = f"SELECT * FROM visits{where} ORDER BY arrived_at, id"  # noqa: S608
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [_visit(r) for r in self.conn.execute(sql, args).fetchall()]

    def current_sign_in(self) -> sqlite3.Row | None:
        with self._lock:
            return self.conn.execute(
                "SELECT * FROM sign_ins ORDER BY at DESC, rowid DESC LIMIT 1"
            ).fetchone()

    def recent_taps(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT * FROM taps ORDER BY at DESC, rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(r) for r in rows]

    def log_tap(
        self,
        conn: sqlite3.Connection,
        *,
        uid: str,
        reader: str,
        product: str,
        stamp: Stamp,
        outcome: str,
        reason: str,
        signature: str | None,
        staff_ref: str | None,
    ) -> None:
        conn.execute(
            "INSERT INTO taps(id, uid, reader, product, at, boottime_ns, boot_id, staff_ref, "
            "outcome, reason, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id(), uid, reader, product, stamp.wall_iso, stamp.boottime_ns, stamp.boot_id,
             staff_ref, outcome, reason, signature),
        )


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- reference items from the centre ------------------------------------------------------

# kind -> table; its primary key column is the kind's key field (routine.reference)
_REFERENCE_TABLES = {
    reference.CLIENT: "clients",
    reference.TAG: "tags",
    reference.STAFF: "staff",
    reference.LOCK: "locks",
}


@dataclass(frozen=True)
class _ReferenceRow:
    table: str
    pk: str
    key: str
    values: dict[str, Any] | None  # None: delete


def _reference_row(item: ReferenceItem) -> _ReferenceRow | None:
    """The row a centre's item becomes, validated like an import; None (logged) if unusable."""
    kind = str(item.kind)
    where = f"reference item {kind} {item.key!r}"
    try:
        if kind not in _REFERENCE_TABLES:
            raise ReferenceDataError(f"unknown kind; expected one of "
                                     f"{', '.join(_REFERENCE_TABLES)}")
        table, pk = _REFERENCE_TABLES[kind], reference.KEY_FIELDS[kind]
        key = reference.normalise_key(kind, item.key, where)
        if item.deleted:
            return _ReferenceRow(table, pk, key, None)
        _, values = reference.validate_record(kind, {**item.data, pk: key}, where)
        values.pop(pk)
        return _ReferenceRow(table, pk, key, values)
    except reference.ReferenceDataError as exc:
        log.error("%s skipped: %s; the centre sent data this agent cannot use", where, exc)
        return None


def _apply_reference_row(conn: sqlite3.Connection, row: _ReferenceRow, at: str) -> None:
    # Table and column names come from _REFERENCE_TABLES and the validators, never from
    # the centre; the values are bound parameters.
    if row.values is None:
        conn.execute(f"DELETE FROM {row.table} WHERE {row.pk} = ?", (row.key,))  # noqa: S608
        return
    values = dict(row.values)
    if row.table != "staff":  # the staff table has no updated_at column
        values["updated_at"] = at
    columns = [row.pk, *values]
    updates = ", ".join(f"{c} = excluded.{c}" for c in values)
    conn.execute(
        f"INSERT INTO {row.table}({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT({row.pk}) DO UPDATE SET {updates}",
        (row.key, *values.values()),
    )


def _visit(row: sqlite3.Row) -> Visit:
    return Visit(
        id=row["id"],
        client_ref=row["client_ref"],
        staff_ref=row["staff_ref"],
        tag_uid=row["tag_uid"],
        arrived_at=row["arrived_at"],
        arrived_boottime_ns=row["arrived_boottime_ns"],
        arrived_boot_id=row["arrived_boot_id"],
        departed_at=row["departed_at"],
        departed_boottime_ns=row["departed_boottime_ns"],
        status=row["status"],
        close_reason=row["close_reason"],
    )


def _validate_reference(
    data: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The clients, tags and staff of an import file, validated by the routine's rules."""
    try:
        records = reference.validate_reference(data, IMPORT_SECTIONS)
    except reference.ReferenceDataError as exc:
        raise ReferenceDataError(str(exc)) from None
    by_kind: dict[str, list[dict[str, Any]]] = {reference.CLIENT: [], reference.TAG: [],
                                                reference.STAFF: []}
    for record in records:
        by_kind[record.kind].append(record.data)
    return by_kind[reference.CLIENT], by_kind[reference.TAG], by_kind[reference.STAFF]
