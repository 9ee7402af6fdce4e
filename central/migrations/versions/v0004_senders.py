"""Who may send what: devices enrolled to a fitter, refused events counted, and the
routine's events recorded "to apply" in the ingest transaction.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in central.db as of this revision.
AwareTime = sa.DateTime(timezone=True)
BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NAME = 64


def _device_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["device"], ["devices.name"],
                                   name=op.f(f"fk_{table}_device_devices"))


def upgrade() -> None:
    op.add_column("devices", sa.Column("fitter", sa.String(NAME), nullable=True))
    op.create_table(
        "sender_refusals",
        sa.Column("device", sa.String(NAME), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", AwareTime, nullable=False),
        sa.Column("last_at", AwareTime, nullable=False),
        _device_fk("sender_refusals"),
        sa.PrimaryKeyConstraint("device", "kind", "reason", name=op.f("pk_sender_refusals")),
    )
    op.create_table(
        "pending_applications",
        sa.Column("seq", BigSerial, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("device", sa.String(NAME), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("queued_at", AwareTime, nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", AwareTime, nullable=True),
        _device_fk("pending_applications"),
        sa.ForeignKeyConstraint(["event_id"], ["events.event_id"],
                                name=op.f("fk_pending_applications_event_id_events")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_pending_applications")),
        sa.UniqueConstraint("event_id", name=op.f("uq_pending_applications_event_id")),
    )
    op.create_index(op.f("ix_pending_applications_device_seq"), "pending_applications",
                    ["device", "seq"])


def downgrade() -> None:
    op.drop_table("pending_applications")
    op.drop_table("sender_refusals")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("fitter")
