"""Passwords of the web's principals: set (for the CLI) and checked (for the sign-in).

A principal is an enrolled device of the centre (``CentralStore.add_device``) in one of
the routine's roles or an admin; a field agent's ``device`` role signs in with its token,
never a password. Passwords are kept as scrypt hashes (``hashlib.scrypt``) with a random
salt and the parameters stored beside the hash, so the parameters can be raised later
without invalidating what is stored.

``nyckelfri-central principal password NAME`` is meant to call :func:`set_password`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from central.errors import CentralError, UnknownDevice
from central.store import CentralStore, DeviceInfo
from central.web.db import web_credentials, web_sessions

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # scrypt reads it all: a bound keeps a sign-in cheap
WEB_ROLES = ("admin", "assessor", "provider", "alarm_admin", "fitter")


@dataclass(frozen=True)
class Scrypt:
    """scrypt's cost parameters: 16 MiB and ~50 ms per hash on a small server."""

    n: int = 2**14
    r: int = 8
    p: int = 1
    salt_bytes: int = 16
    key_bytes: int = 32


DEFAULT = Scrypt()
_DUMMY_SALT = bytes(16)


class AccountError(CentralError):
    """A password that cannot be set for this principal; the message says why."""


def hash_password(password: str, params: Scrypt = DEFAULT) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex) of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(params.salt_bytes)
    digest = _scrypt(password, salt, params.n, params.r, params.p, params.key_bytes)
    return f"scrypt${params.n}${params.r}${params.p}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time compare)."""
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        salt, digest = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, salt, int(n), int(r), int(p), len(digest))
    except ValueError:
        return False
    return hmac.compare_digest(computed, digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r,
                          p=p, dklen=length, maxmem=256 * r * n + 1024 * 1024)


def set_password(store: CentralStore, name: str, password: str) -> None:
    """Set (or replace) the web password of principal ``name``; ends its sessions.

    Refused with :class:`AccountError` (or :class:`~central.errors.UnknownDevice`) for a
    principal that is not enrolled, is revoked, or is a field device, and for a
    password shorter than :data:`MIN_PASSWORD` characters.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters; choose a "
                           "longer one (a few words make a good one)")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")
    if password.strip() != password:
        raise AccountError("a password neither starts nor ends with a space")
    principal = principal_named(store, name)
    if principal is None:
        raise UnknownDevice(f"no principal named {name!r} is enrolled; enrol it first with "
                            "its role and unit ('nyckelfri-central device add NAME --role "
                            "ROLE --unit UNIT')")
    if principal.revoked:
        raise AccountError(f"principal {name} was revoked at "
                           f"{principal.revoked_at.isoformat() if principal.revoked_at else ''}"
                           "; enrol it again under a new name")
    if principal.role not in WEB_ROLES:
        raise AccountError(f"{name} is a {principal.role} (a field agent signs in with its "
                           f"token); web passwords are for: {', '.join(WEB_ROLES)}")
    stored = hash_password(password)
    now = store.now()
    c = web_credentials.c
    with store._write() as conn:
        updated = conn.execute(sa.update(web_credentials).where(c.principal == name)
                               .values(password_hash=stored, updated_at=now)).rowcount
        if not updated:
            conn.execute(sa.insert(web_credentials).values(
                principal=name, password_hash=stored, updated_at=now))
        conn.execute(sa.delete(web_sessions).where(web_sessions.c.principal == name))


def check_password(store: CentralStore, name: str, password: str) -> DeviceInfo | None:
    """The principal if ``name`` and ``password`` match a live web principal, else None.

    Takes about as long for an unknown name as for a wrong password.
    """
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return None
    c = web_credentials.c
    with store._read() as conn:
        stored = conn.execute(sa.select(c.password_hash)
                              .where(c.principal == name)).scalar()
    if stored is None:
        _scrypt(password, _DUMMY_SALT, DEFAULT.n, DEFAULT.r, DEFAULT.p, DEFAULT.key_bytes)
        return None
    if not password_matches(password, stored):
        return None
    principal = principal_named(store, name)
    if principal is None or principal.revoked or principal.role not in WEB_ROLES:
        return None
    return principal


def principal_named(store: CentralStore, name: str) -> DeviceInfo | None:
    """The enrolled device ``name`` (revoked ones too), or None."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    with store._read() as conn:
        try:
            return store.device_on(conn, name)
        except UnknownDevice:
            return None
