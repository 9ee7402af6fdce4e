"""The web's tables on :data:`central.db.metadata` (migration 0007).

``web_credentials``: one password per principal (a device of a routine role or an
admin), as a scrypt hash with its salt and parameters. ``web_sessions``: server-side
sessions; only a hash of the cookie's token is kept, with the session's CSRF token.
"""

from __future__ import annotations

import sqlalchemy as sa

from central.db import UTCDateTime, metadata

NAME = 64  # devices.name

web_credentials = sa.Table(
    "web_credentials", metadata,
    sa.Column("principal", sa.String(NAME), sa.ForeignKey("devices.name"), primary_key=True),
    # "scrypt$n$r$p$salt_hex$hash_hex": the parameters travel with the hash
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

web_sessions = sa.Table(
    "web_sessions", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 hex of the cookie
    sa.Column("principal", sa.String(NAME), sa.ForeignKey("devices.name"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index(None, "principal"),
)
