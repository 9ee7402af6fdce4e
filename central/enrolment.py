"""One-time enrolment codes: how a field device gets its token without anyone pasting it.

``nyckelfri-central device add NAME --url URL`` (or ``device enrol-code NAME --url URL``
for a device already enrolled) makes a code: the centre's URL, the device's name and a
random secret, valid for one redemption within ``valid_for`` (24 h by default). Only a
hash of the secret is stored. ``POST /v1/enrol`` with the name and the secret issues the
device a NEW token (the one printed at ``device add``, if any, stops working: whoever
holds the code is the device from now on) and marks the code used, in one transaction.
A used, expired, superseded or unknown code gets the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from central import db
from central.errors import CentralError, UnknownDevice

if TYPE_CHECKING:
    from central.store import CentralStore

log = logging.getLogger(__name__)

DEFAULT_VALID_FOR = timedelta(hours=24)
SECRET_BYTES = 16


class EnrolmentRefused(CentralError):
    """The code cannot be redeemed (used, expired, superseded, unknown, device revoked)."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_code(store: CentralStore, name: str,
                valid_for: timedelta = DEFAULT_VALID_FOR) -> str:
    """A new one-time secret for device ``name`` (replacing any earlier code of it)."""
    if valid_for <= timedelta(0):
        raise CentralError("an enrolment code must be valid for some time (e.g. 24 h)")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    now = store.now()
    with store._write() as conn:
        device = conn.execute(sa.select(db.devices.c.role, db.devices.c.revoked_at)
                              .where(db.devices.c.name == name)).first()
        if device is None:
            raise UnknownDevice(f"no device named {name!r} is enrolled; add it first with "
                                "'nyckelfri-central device add NAME'")
        if device.revoked_at is not None or device.role != "device":
            raise CentralError(f"{name} is {'revoked' if device.revoked_at else 'a ' + device.role}"
                               ": enrolment codes are for field devices in use")
        conn.execute(sa.delete(db.enrolment_codes).where(db.enrolment_codes.c.device == name))
        conn.execute(sa.insert(db.enrolment_codes).values(
            device=name, secret_hash=_hash(secret), created_at=now, expires_at=now + valid_for,
            used_at=None))
    log.info("enrolment code for %s, valid until %s", name, now + valid_for)
    return secret


def redeem(store: CentralStore, name: str, secret: str) -> str:
    """The device's new token for a valid code; :class:`EnrolmentRefused` otherwise."""
    from central.store_devices import TOKEN_BYTES, token_hash

    refused = EnrolmentRefused(
        f"the enrolment code for {name!r} is not valid: already used, expired, replaced by a "
        "newer one, or never made")
    now = store.now()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with store._write() as conn:
        c = db.enrolment_codes.c
        row = conn.execute(sa.select(c.secret_hash, c.expires_at, c.used_at)
                           .where(c.device == name)).first()
        if (row is None or row.used_at is not None or row.expires_at <= now
                or not hmac.compare_digest(row.secret_hash, _hash(secret))):
            raise refused
        device = conn.execute(sa.select(db.devices.c.revoked_at)
                              .where(db.devices.c.name == name)).first()
        if device is None or device.revoked_at is not None:
            raise refused
        used = conn.execute(sa.update(db.enrolment_codes)
                            .where(c.device == name, c.used_at.is_(None))
                            .values(used_at=now))
        if used.rowcount != 1:  # redeemed by a concurrent request
            raise refused
        conn.execute(sa.update(db.devices).where(db.devices.c.name == name)
                     .values(token_hash=token_hash(token)))
    log.info("device %s enrolled with its code; a new token was issued", name)
    return token
