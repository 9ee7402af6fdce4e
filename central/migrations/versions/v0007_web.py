"""The web's sign-in: principals' passwords and server-side sessions (central.web.db).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.web.db  # noqa: F401  (registers the tables on central.db.metadata)

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in central.db as of this revision.
AwareTime = sa.DateTime(timezone=True)
NAME = 64


def upgrade() -> None:
    op.create_table(
        "web_credentials",
        sa.Column("principal", sa.String(NAME), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        sa.ForeignKeyConstraint(["principal"], ["devices.name"],
                                name=op.f("fk_web_credentials_principal_devices")),
        sa.PrimaryKeyConstraint("principal", name=op.f("pk_web_credentials")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("principal", sa.String(NAME), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", AwareTime, nullable=False),
        sa.Column("last_seen_at", AwareTime, nullable=False),
        sa.Column("expires_at", AwareTime, nullable=False),
        sa.ForeignKeyConstraint(["principal"], ["devices.name"],
                                name=op.f("fk_web_sessions_principal_devices")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index(op.f("ix_web_sessions_principal"), "web_sessions", ["principal"])


def downgrade() -> None:
    op.drop_index(op.f("ix_web_sessions_principal"), table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("web_credentials")
