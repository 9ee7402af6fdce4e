"""Enrolled devices and principals: enrolment, tokens, revocation, sender refusals.

A principal (an agent, an administrator, or one of the routine's roles) is a row in
``devices`` with a token of which only a hash is kept (:data:`TOKEN_BYTES` random bytes:
unguessable, so a fast hash is enough). :class:`Devices` is the part of the centre's
store (:class:`central.store.CentralStore`) that enrols, authenticates and revokes them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from central import db
from central.errors import (
    CentralError,
    DeviceExists,
    Forbidden,
    Unauthorized,
    UnknownDevice,
)
from central.storable import bad_text
from central.store_base import StoreBase, jsonable
from sync.protocol import DeviceName

log = logging.getLogger(__name__)

ROLES = ("device", "admin", "assessor", "provider", "alarm_admin", "fitter")
# The routine's roles (routine.flows.Role): a principal in one of them belongs to a unit
# (a provider's "hemtjanst-nord", "larmgruppen", a "bestallarenhet"), and the routine
# store (central.cases) lets it act only on that unit's cases, jobs and keys.
UNIT_ROLES = ("assessor", "provider", "alarm_admin", "fitter")
MAX_UNIT_LENGTH = 64  # devices.unit
# 32 random bytes (256 bits): unguessable, so a fast hash (not a password hash) is
# enough to keep a stolen database from yielding usable tokens.
TOKEN_BYTES = 32
# authenticate() records last_seen_at at most this often per device: a write on
# every request would put every read behind SQLite's single writer.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Day filters follow the municipality's calendar, not UTC: a visit at 00:30 local

_DEVICE_NAME: pydantic.TypeAdapter[str] = pydantic.TypeAdapter(DeviceName)


@dataclass(frozen=True)
class DeviceInfo:
    """An enrolled device (agent or administrator). The token is never part of it."""

    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    events: int  # events stored from this device
    unit: str | None = None  # the principal's unit; always set for the routine's roles
    fitter: str | None = None  # the fitter a device is enrolled to (central.senders)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def as_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class SenderRefusal:
    """Events of one kind refused from one device for one reason (central.senders)."""

    device: str
    kind: str
    reason: str
    count: int
    first_at: datetime
    last_at: datetime


class Devices(StoreBase):
    """Enrolment, authentication and revocation of devices and principals."""

    def add_device(self, name: str, role: str = "device", unit: str | None = None,
                   fitter: str | None = None) -> str:
        """Enrol a device; returns its token, which is shown this once and never stored.

        ``role`` is one of :data:`ROLES`; the routine's roles (:data:`UNIT_ROLES`) need
        the ``unit`` the principal works for, the others may name one. ``fitter`` binds
        a device (role ``device``) to an enrolled fitter: its agent then sends that
        fitter's lock verifications and checkpoints, and nothing else
        (:mod:`central.senders`).
        """
        _check_device(name, role, unit)
        if fitter is not None and role != "device":
            raise CentralError(f"only a device (an agent) is enrolled to a fitter, not a {role}; "
                               "enrol the fitter's agent with 'device add NAME --fitter FITTER'")
        token = secrets.token_urlsafe(TOKEN_BYTES)
        row = {"name": name, "role": role, "unit": unit, "token_hash": token_hash(token),
               "created_at": self.now(), "event_count": 0, "fitter": fitter}
        try:
            with self._write() as conn:
                if _device_row(conn, name) is not None:
                    raise _device_exists(name)
                if fitter is not None:
                    _check_fitter(conn, fitter)
                conn.execute(sa.insert(db.devices).values(row))
        except IntegrityError:  # enrolled by another process between check and insert
            raise _device_exists(name) from None
        log.info("enrolled device %s as %s%s%s", name, role, f" of {unit}" if unit else "",
                 f" for fitter {fitter}" if fitter else "")
        return token

    def revoke_device(self, name: str) -> None:
        """Refuse the device's token from now on. Its events stay. Idempotent."""
        with self._write() as conn:
            result = conn.execute(
                sa.update(db.devices)
                .where(db.devices.c.name == name, db.devices.c.revoked_at.is_(None))
                .values(revoked_at=self.now())
            )
            if result.rowcount == 0 and _device_row(conn, name) is None:
                raise UnknownDevice(
                    f"no device named {name!r} is enrolled; list the enrolled devices to "
                    "check the spelling"
                )
        log.info("revoked device %s", name)

    def list_devices(self) -> list[DeviceInfo]:
        with self._read() as conn:
            rows = conn.execute(sa.select(db.devices).order_by(db.devices.c.name)).all()
        return [_device_info(r) for r in rows]

    def device_on(self, conn: Connection, name: str) -> DeviceInfo:
        """The enrolled device ``name``, read on ``conn`` (UnknownDevice if none)."""
        row = _device_row(conn, name)
        if row is None:
            raise UnknownDevice(f"no device named {name!r} is enrolled")
        return _device_info(row)

    def sender_refusals(self, device: str | None = None) -> list[SenderRefusal]:
        """Counts of events refused by :mod:`central.senders`, per device, kind and reason."""
        r = db.sender_refusals.c
        query = sa.select(db.sender_refusals).order_by(r.device, r.kind, r.reason)
        if device is not None:
            query = query.where(r.device == device)
        with self._read() as conn:
            return [SenderRefusal(**row._mapping) for row in conn.execute(query)]

    def authenticate(self, token: str | None) -> DeviceInfo:
        """The device a token belongs to; raises Unauthorized or Forbidden."""
        if not token:
            raise Unauthorized(
                "no device token given; enrol the device at the centre and configure the "
                "token shown at enrolment"
            )
        digest = token_hash(token)
        with self._read() as conn:
            row = conn.execute(
                sa.select(db.devices).where(db.devices.c.token_hash == digest)
            ).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            raise Unauthorized(
                "unknown device token; check the configured token, or enrol the device "
                "again to get a new one"
            )
        if row.revoked_at is not None:
            raise Forbidden(
                f"device {row.name} was revoked at {row.revoked_at.isoformat()}; an "
                "administrator must enrol it again (under a new name) before it may sync"
            )
        return self._seen(_device_info(row))

    def _seen(self, device: DeviceInfo) -> DeviceInfo:
        now = self.now()
        last = device.last_seen_at
        if last is not None and now - last < LAST_SEEN_RESOLUTION:
            return device
        with self._write() as conn:
            conn.execute(sa.update(db.devices).where(db.devices.c.name == device.name)
                         .values(last_seen_at=now))
        return replace(device, last_seen_at=now)


# --- devices -----------------------------------------------------------------------------


def _check_device(name: str, role: str, unit: str | None) -> None:
    try:
        _DEVICE_NAME.validate_python(name)
    except pydantic.ValidationError:
        raise CentralError(
            f"device name {name!r} is not usable: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (agents send it as their device_id)"
        ) from None
    if role not in ROLES:
        raise CentralError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if unit is None:
        if role in UNIT_ROLES:
            raise CentralError(
                f"a {role} works for a unit: give the unit (e.g. hemtjanst-nord, "
                "larmgruppen, bestallarenhet)"
            )
        return
    check_unit(unit)


def check_unit(unit: str) -> str:
    """``unit`` if it can name a principal's unit, else CentralError saying what is wrong."""
    if (not isinstance(unit, str) or not unit.strip() or unit != unit.strip()
            or len(unit) > MAX_UNIT_LENGTH or bad_text(unit)):
        raise CentralError(
            f"unit {unit!r} is not usable: 1-{MAX_UNIT_LENGTH} characters without leading or "
            "trailing spaces"
        )
    return unit


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _device_row(conn: Connection, name: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(db.devices).where(db.devices.c.name == name)).first()


def _device_exists(name: str) -> DeviceExists:
    return DeviceExists(
        f"a device named {name!r} is already enrolled (or was, and was revoked: its events "
        "keep the name); choose another name"
    )


def _device_info(row: sa.Row[Any]) -> DeviceInfo:
    return DeviceInfo(name=row.name, role=row.role, created_at=row.created_at,
                      revoked_at=row.revoked_at, last_seen_at=row.last_seen_at,
                      events=int(row.event_count), unit=row.unit, fitter=row.fitter)


def _check_fitter(conn: Connection, fitter: str) -> None:
    row = _device_row(conn, fitter)
    if row is None or row.revoked_at is not None or row.role != "fitter":
        raise CentralError(
            f"no enrolled fitter named {fitter!r}: enrol the fitter first ('principal add "
            f"{fitter} --role fitter --unit UNIT'), then the fitter's agent with --fitter")


def claim_device(conn: Connection, name: str, now: datetime) -> None:
    """Lock the device's row for this transaction (and note it was seen)."""
    result = conn.execute(
        sa.update(db.devices)
        .where(db.devices.c.name == name, db.devices.c.revoked_at.is_(None))
        .values(last_seen_at=now)
    )
    if result.rowcount == 0:
        raise Forbidden(
            f"device {name} is revoked or not enrolled; an administrator must enrol it "
            "before it may sync"
        )


