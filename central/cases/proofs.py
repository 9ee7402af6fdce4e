"""Lock proofs and fitters' checkpoints, from the events their agents push.

A fitter's agent reads a lock on site and pushes a ``lock.verification`` event with
the lock's answer to a fresh challenge (nonce); it never holds the lock's secret.
The centre, the only holder of lock secrets (``lock_secrets``), recomputes the MAC
(:func:`sync.protocol.verify_lock_proof`) and records its verdict per event in
``lock_verifications``: ``verified``, ``forged``, ``unknown_lock``, ``no_proof`` or
``invalid`` (data not a :class:`sync.protocol.LockVerificationData`).

A ``job.checkpoint`` event is the fitter ticking one of the job's checkpoints
(:data:`sync.protocol.CHECKPOINTS_INSTALL` / ``CHECKPOINTS_REMOVAL``, in order). It is
applied to the job's case as the fitter principal, or refused with the reason; either
way it is recorded once in ``job_checkpoints``. A lock (un)bound tick is accepted only
on a verified proof of that binding. ``job_marked_done`` takes the case's step
(``install_lock`` / ``remove_lock``) through :meth:`RoutineStore.act`.

Only a device enrolled to the fitter sends these, in that fitter's name
(:mod:`central.senders`, checked on ingest). Each event is applied once, in ONE
transaction with its record (:mod:`central.applications`): queued by the ingest
transaction, applied right after its COMMIT or by the sweeper after a crash or an
error. A checkpoint's effects (the case's step, lock records, key receipts) run in a
SAVEPOINT: a refused checkpoint leaves none of them, only its ``refused`` record. An
event with a recorded verdict or outcome is never processed again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import applications
from central import db as central_db
from central.cases import access, refdata
from central.cases import db as t
from central.cases.errors import AccessDenied, NoKeysBound, UnknownRecord
from central.cases.facts import ALARM_KEY_UNITS
from central.cases.values import JobKind, Principal
from central.errors import CentralError
from central.storable import bad_text
from central.store import DeviceInfo
from routine.flows import Role, RoutineError
from routine.keys import KeyUnit
from sync.protocol import (
    CHECKPOINTS_INSTALL,
    CHECKPOINTS_REMOVAL,
    JOB_CHECKPOINT,
    LOCK_VERIFICATION,
    Event,
    JobCheckpointData,
    LockVerificationData,
    verify_lock_proof,
)

if TYPE_CHECKING:
    from central.cases.store import RoutineStore

log = logging.getLogger(__name__)

SECRET_BYTES = 16  # AES-128, the lock's CMAC key
VERIFIED, FORGED, UNKNOWN_LOCK, NO_PROOF, INVALID = (
    "verified", "forged", "unknown_lock", "no_proof", "invalid")
APPLIED, REFUSED = "applied", "refused"
APPLIER = "lock_proofs"
KINDS = (LOCK_VERIFICATION, JOB_CHECKPOINT)


@dataclass(frozen=True)
class LockVerification:
    """The centre's verdict on one lock verification (never the secret)."""

    event_id: str
    device: str
    fitter: str | None
    job_id: int | None
    serial: str | None
    bound_client: str | None
    bound: bool | None
    counter: int | None
    battery: int | None
    rssi: int | None
    verdict: str
    read_at: datetime
    verified_at: datetime
    error: str | None


@dataclass(frozen=True)
class Checkpoint:
    event_id: str
    job_id: int | None
    fitter: str | None
    checkpoint: str | None
    outcome: str
    reason: str | None


class Refused(Exception):
    """A checkpoint the centre does not accept; the message is the reason."""


def checkpoints_of(kind: JobKind | str) -> tuple[str, ...]:
    return CHECKPOINTS_INSTALL if JobKind(kind) is JobKind.INSTALL else CHECKPOINTS_REMOVAL


def check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
        raise CentralError(f"a lock secret is {SECRET_BYTES} bytes (AES-128)")
    return secret


# --- reading -----------------------------------------------------------------------------


def verification(conn: Connection, event_id: str) -> LockVerification | None:
    row = conn.execute(sa.select(t.lock_verifications)
                       .where(t.lock_verifications.c.event_id == event_id)).first()
    return _verification(row) if row is not None else None


def verifications(conn: Connection, *, serial: str | None = None,
                  job_id: int | None = None) -> list[LockVerification]:
    v = t.lock_verifications.c
    query = sa.select(t.lock_verifications).order_by(v.read_at, v.event_id)
    if serial is not None:
        query = query.where(v.serial == serial)
    if job_id is not None:
        query = query.where(v.job_id == job_id)
    return [_verification(r) for r in conn.execute(query)]


def _verification(row: sa.Row[Any]) -> LockVerification:
    m = row._mapping
    return LockVerification(**{f: m[f] for f in LockVerification.__dataclass_fields__})


def applied_checkpoints(conn: Connection, job_ids: Sequence[int]) -> dict[int, list[str]]:
    c = t.job_checkpoints.c
    done: dict[int, list[str]] = {}
    if not job_ids:
        return done
    for job_id, name in conn.execute(
            sa.select(c.job_id, c.checkpoint)
            .where(c.job_id.in_(list(job_ids)), c.outcome == APPLIED)
            .order_by(c.ordinal)):
        done.setdefault(job_id, []).append(name)
    return done


def checkpoints(conn: Connection, job_id: int) -> list[Checkpoint]:
    c = t.job_checkpoints.c
    return [Checkpoint(r.event_id, r.job_id, r.fitter, r.checkpoint, r.outcome, r.reason)
            for r in conn.execute(sa.select(t.job_checkpoints).where(c.job_id == job_id)
                                  .order_by(c.ordinal))]


# --- processing --------------------------------------------------------------------------


class LockProofs:
    """The applier: verdicts on lock verifications, checkpoints applied to cases."""

    def __init__(self, routine: RoutineStore) -> None:
        self.routine = routine
        self.central = routine.central

    def apply(self, device: DeviceInfo, event: Event) -> None:
        """Apply one event (on the applying transaction: central.applications)."""
        if event.kind == LOCK_VERIFICATION:
            self.verify(device, event)
        elif event.kind == JOB_CHECKPOINT:
            self.checkpoint(device, event)
        else:
            raise ValueError(f"{event.kind} is not applied by {APPLIER}")

    # --- lock.verification -----------------------------------------------------------

    def verify(self, device: DeviceInfo, event: Event) -> None:
        with self.central._write() as conn:
            if verification(conn, event.event_id) is not None:
                return
            read_at = self._best_at(conn, event)
            values = self._verdict(conn, event)
            conn.execute(sa.insert(t.lock_verifications).values(
                event_id=event.event_id, device=device.name, read_at=read_at,
                verified_at=self.central.now(), **values))
        log.info("lock verification %s from %s: %s", event.event_id, device.name,
                 values["verdict"])

    def _verdict(self, conn: Connection, event: Event) -> dict[str, Any]:
        try:
            data = LockVerificationData.model_validate(event.data)
        except pydantic.ValidationError as exc:
            fitter = event.data.get("fitter")
            return {"fitter": fitter if _text(fitter, 64) else None, "job_id": None,
                    "serial": None, "bound_client": None, "bound": None, "counter": None,
                    "battery": None, "rssi": None, "verdict": INVALID,
                    "error": f"not lock verification data: {exc.error_count()} error(s)"}
        serial = data.serial or data.expected_serial
        values: dict[str, Any] = {
            "fitter": data.fitter if _text(data.fitter, 64) else None,
            "job_id": _small(data.job_id, 63),
            "serial": serial if _text(serial, 128) else None,
            "bound_client": data.bound_client if _text(data.bound_client, 128) else None,
            "bound": data.bound, "counter": data.binding_counter,
            "battery": data.battery_percent, "rssi": _small(data.rssi),
            "error": data.error if _text(data.error, 2000) else None,
        }
        if (data.nonce_hex is None or data.response_hex is None or data.serial is None
                or data.bound is None or data.binding_counter is None):
            return {**values, "verdict": NO_PROOF}
        if values["serial"] is None:
            return {**values, "verdict": INVALID, "error": "serial is not usable text"}
        secret = conn.execute(sa.select(t.lock_secrets.c.secret)
                              .where(t.lock_secrets.c.serial == data.serial)).scalar()
        if secret is None:
            return {**values, "verdict": UNKNOWN_LOCK}
        try:
            ok = verify_lock_proof(bytes(secret), bytes.fromhex(data.nonce_hex), data.serial,
                                   data.bound, data.binding_counter, data.bound_client or "",
                                   bytes.fromhex(data.response_hex))
        except (ValueError, UnicodeError, OverflowError) as exc:
            return {**values, "verdict": FORGED, "error": f"proof not computable: {exc}"}
        return {**values, "verdict": VERIFIED if ok else FORGED}

    def _best_at(self, conn: Connection, event: Event) -> datetime:
        e = central_db.events.c
        best = conn.execute(sa.select(e.best_at).where(e.event_id == event.event_id)).scalar()
        return best if best is not None else self.central.now()

    # --- job.checkpoint ----------------------------------------------------------------

    def checkpoint(self, device: DeviceInfo, event: Event) -> None:
        c = t.job_checkpoints.c
        with self.central._write() as conn:
            if conn.execute(sa.select(c.event_id)
                            .where(c.event_id == event.event_id)).first() is not None:
                return
            data: JobCheckpointData | None = None
            try:
                data = JobCheckpointData.model_validate(event.data)
                # A refusal rolls back whatever the checkpoint had done so far.
                with conn.begin_nested():
                    self._apply(device, data)
                outcome, reason = APPLIED, None
            except pydantic.ValidationError as exc:
                outcome, reason = REFUSED, f"not checkpoint data: {exc.error_count()} error(s)"
            except (Refused, RoutineError, CentralError) as exc:
                outcome, reason = REFUSED, str(exc)
            self._record(conn, device, event, data, outcome, reason)

    def _record(self, conn: Connection, device: DeviceInfo, event: Event,
                data: JobCheckpointData | None, outcome: str, reason: str | None) -> None:
        ordinal = conn.execute(sa.select(sa.func.coalesce(
            sa.func.max(t.job_checkpoints.c.ordinal), 0) + 1)).scalar_one()
        conn.execute(sa.insert(t.job_checkpoints).values(
            event_id=event.event_id, ordinal=ordinal, device=device.name,
            job_id=_small(data.job_id, 63) if data else None,
            fitter=data.fitter if data and _text(data.fitter, 64) else None,
            checkpoint=data.checkpoint if data and _text(data.checkpoint, 64) else None,
            verification_event_id=data.verification_event_id if data else None,
            outcome=outcome, reason=reason, recorded_at=self.central.now()))
        log.info("checkpoint %s from %s: %s%s", event.event_id, device.name, outcome,
                 f" ({reason})" if reason else "")

    def _apply(self, device: DeviceInfo, data: JobCheckpointData) -> None:
        rs = self.routine
        fitter = self._fitter(device, data.fitter)
        try:
            job = rs.binder.job(data.job_id, actor=fitter)
        except UnknownRecord as exc:
            raise Refused(f"no job {data.job_id} in the binder") from exc
        if job.done_at is not None:
            raise Refused(f"job {job.id} is done already")
        if job.booking is None or job.booking.fitter != fitter.name:
            raise Refused(f"job {job.id} is not booked for {fitter.name}")
        order = checkpoints_of(job.kind)
        if data.checkpoint not in order:
            raise Refused(f"{data.checkpoint!r} is no checkpoint of a {job.kind} job; tick "
                          f"among: {', '.join(order)}")
        with rs.central._read() as conn:
            done = applied_checkpoints(conn, [job.id]).get(job.id, [])
        if data.checkpoint in done:
            raise Refused(f"{data.checkpoint} is ticked already on job {job.id}")
        missing = [c for c in order[:order.index(data.checkpoint)] if c not in done]
        if missing:
            raise Refused(f"tick {', '.join(missing)} first (in order: {', '.join(order)})")
        with rs.central._read() as conn:
            bound_serials = refdata.locks_bound_to(conn, job.client_ref)
        name = data.checkpoint
        if name == "lock_bound_to_client":
            proof = self._proof(data, job.id, bound=True, client=job.client_ref)
            if bound_serials and proof.serial not in bound_serials:
                raise Refused(f"lock {proof.serial} is not the job's lock "
                              f"({', '.join(bound_serials)})")
            if not bound_serials:
                rs.locks.bind(str(proof.serial), job.client_ref, fitter)
        elif name == "lock_unbound_from_client":
            proof = self._proof(data, job.id, bound=False, client=None)
            if proof.serial not in bound_serials:
                raise Refused(f"lock {proof.serial} is not bound to client {job.client_ref} "
                              "in the lock records")
            rs.locks.unbind(str(proof.serial), fitter)
        elif name == "keys_returned_receipt_signed":
            self._return_keys(job.client_ref, data.signed_by, fitter)
        elif name == "job_marked_done":
            if job.kind is JobKind.INSTALL:
                rs.cases.act(job.case_id, "install_lock", None, fitter,
                       checks=("knob_labelled_with_key_number", "job_marked_done"))
            else:
                rs.cases.act(job.case_id, "remove_lock", None, fitter,
                       checks=("door_restored_with_original_knob", "job_marked_done"))
        # knob_labelled_with_key_number, door_restored_with_original_knob: ticked on site,
        # applied with the job_marked_done step.

    def _fitter(self, device: DeviceInfo, name: str) -> Principal:
        # central.senders refused it on ingest already; this keeps a queued event from
        # before a re-enrolment from acting in anyone else's name.
        if device.fitter is None or device.fitter != name:
            raise Refused(f"{device.name} is not enrolled to fitter {name}: only a device "
                          f"enrolled to {name} ticks {name}'s checkpoints")
        try:
            fitter = self.routine.principals.get(name)
        except UnknownRecord as exc:
            raise Refused(f"no enrolled fitter named {name!r}") from exc
        if fitter.role != Role.FITTER:
            raise Refused(f"{name} is {fitter.role}, not a fitter")
        return fitter

    def _proof(self, data: JobCheckpointData, job_id: int, *, bound: bool,
               client: str | None) -> LockVerification:
        if data.verification_event_id is None:
            raise Refused(f"{data.checkpoint} needs a lock proof (verification_event_id)")
        with self.central._read() as conn:
            proof = verification(conn, data.verification_event_id)
            if proof is None and applications.is_pending(conn, data.verification_event_id):
                raise applications.NotYet(f"lock verification {data.verification_event_id} "
                                          "is not applied yet")
        if proof is None:
            raise Refused(f"no lock verification {data.verification_event_id} at the centre")
        if proof.verdict != VERIFIED:
            raise Refused(f"lock verification {proof.event_id} is {proof.verdict}, not "
                          "verified")
        if proof.job_id is not None and proof.job_id != job_id:
            raise Refused(f"lock verification {proof.event_id} is for job {proof.job_id}")
        if proof.bound is not bound:
            raise Refused(f"lock {proof.serial} proved {'bound' if proof.bound else 'unbound'}"
                          f", not {'bound' if bound else 'unbound'}")
        if bound and proof.bound_client != client:
            raise Refused(f"lock {proof.serial} is bound to {proof.bound_client!r}, not to the "
                          f"job's client {client}")
        return proof

    def _return_keys(self, client: str, signed_by: str | None, fitter: Principal) -> None:
        if not signed_by or not signed_by.strip():
            raise Refused("keys_returned_receipt_signed needs the receipt's signature "
                          "(signed_by)")
        returned = 0
        for unit in ALARM_KEY_UNITS:
            try:
                self.routine.keys.return_keys(client, KeyUnit(unit), signed_by, fitter)
                returned += 1
            except NoKeysBound:
                continue
            except AccessDenied as exc:
                raise Refused(str(exc)) from exc
        if not returned:
            log.info("client %s: no alarm keys bound; nothing to return", client)


def _text(value: object, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit and not bad_text(value)


def _small(value: int | None, bits: int = 31) -> int | None:
    return value if value is not None and -(2**bits) < value < 2**bits else None


def enrol(conn: Connection, serial: str, secret: bytes, actor: str, now: datetime) -> None:
    """Store the lock's secret (replacing an earlier one: a reprogrammed lock)."""
    s = t.lock_secrets.c
    conn.execute(sa.delete(t.lock_secrets).where(s.serial == serial))
    conn.execute(sa.insert(t.lock_secrets).values(serial=serial, secret=check_secret(secret),
                                                  enrolled_at=now, enrolled_by=actor))


def require_lock_admin(actor: access.Actor, what: str) -> None:
    if not access.is_admin(actor) and actor.role != Role.ALARM_ADMIN:
        raise AccessDenied(f"{access.who(actor)} may not {what}: that is for an admin or an "
                           "alarm administrator")
