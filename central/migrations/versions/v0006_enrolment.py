"""One-time enrolment codes: a field device joins with a code instead of a pasted token.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in central.db as of this revision.
AwareTime = sa.DateTime(timezone=True)
NAME = 64


def upgrade() -> None:
    op.create_table(
        "enrolment_codes",
        sa.Column("device", sa.String(NAME), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", AwareTime, nullable=False),
        sa.Column("expires_at", AwareTime, nullable=False),
        sa.Column("used_at", AwareTime, nullable=True),
        sa.ForeignKeyConstraint(["device"], ["devices.name"],
                                name=op.f("fk_enrolment_codes_device_devices")),
        sa.PrimaryKeyConstraint("device", name=op.f("pk_enrolment_codes")),
    )


def downgrade() -> None:
    op.drop_table("enrolment_codes")
