"""Server-side sessions of the web: a random cookie token, only its hash in the database.

A session lives while it is used: each request moves its idle expiry
(:data:`IDLE`) forward, never past :data:`LONGEST` after sign-in. A revoked principal's
sessions end at its next request. Each session carries its own CSRF token
(synchronizer token), which every POST form sends back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from central.store import CentralStore, DeviceInfo
from central.web import accounts
from central.web.db import web_sessions

IDLE = timedelta(hours=8)
LONGEST = timedelta(hours=12)
TOUCH_RESOLUTION = timedelta(minutes=1)  # at most one write per session and minute
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Session:
    principal: DeviceInfo
    csrf: str
    token_hash: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def start(store: CentralStore, principal: DeviceInfo) -> str:
    """A new session for ``principal``; returns the cookie's token (shown once)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = store.now()
    with store._write() as conn:
        conn.execute(sa.delete(web_sessions).where(web_sessions.c.expires_at <= now))
        conn.execute(sa.insert(web_sessions).values(
            token_hash=token_hash(token), principal=principal.name,
            csrf_token=secrets.token_urlsafe(TOKEN_BYTES), created_at=now, last_seen_at=now,
            expires_at=now + IDLE))
    return token


def find(store: CentralStore, token: str | None) -> Session | None:
    """The live session of ``token`` (its idle expiry moved on), or None."""
    if not token or len(token) > 128:
        return None
    digest = token_hash(token)
    s = web_sessions.c
    with store._read() as conn:
        row = conn.execute(sa.select(web_sessions).where(s.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = store.now()
    principal = accounts.principal_named(store, row.principal)
    if (row.expires_at <= now or principal is None or principal.revoked
            or principal.role not in accounts.WEB_ROLES):
        end(store, token)
        return None
    if now - row.last_seen_at >= TOUCH_RESOLUTION:
        with store._write() as conn:
            conn.execute(sa.update(web_sessions).where(s.token_hash == digest).values(
                last_seen_at=now, expires_at=min(now + IDLE, row.created_at + LONGEST)))
    return Session(principal, row.csrf_token, digest)


def end(store: CentralStore, token: str | None) -> None:
    """End the session of ``token`` (nothing if there is none)."""
    if not token:
        return
    with store._write() as conn:
        conn.execute(sa.delete(web_sessions)
                     .where(web_sessions.c.token_hash == token_hash(token)))
