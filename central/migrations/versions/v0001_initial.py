"""The central store's first schema: devices, events, clock anchors, visits, reference data.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in central.db as of this revision (a migration must
# not change when the models do later).
AwareTime = sa.DateTime(timezone=True)
BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _device_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["device"], ["devices.name"],
                                   name=op.f(f"fk_{table}_device_devices"))


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", AwareTime, nullable=False),
        sa.Column("revoked_at", AwareTime, nullable=True),
        sa.Column("last_seen_at", AwareTime, nullable=True),
        sa.Column("event_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_devices")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_devices_token_hash")),
    )
    op.create_table(
        "events",
        sa.Column("seq", BigSerial, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("visit_id", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("device_at", AwareTime, nullable=False),
        sa.Column("boottime_ns", sa.BigInteger(), nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("clock_synced", sa.Boolean(), nullable=False),
        sa.Column("best_at", AwareTime, nullable=False),
        sa.Column("quality", sa.String(16), nullable=False),
        sa.Column("received_at", AwareTime, nullable=False),
        _device_fk("events"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_events_event_id")),
    )
    for columns in (["device", "kind"], ["device", "visit_id"], ["device", "boot_id"]):
        op.create_index(op.f("ix_events_" + "_".join(columns)), "events", columns)
    op.create_table(
        "anchors",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("boottime_ns", sa.BigInteger(), nullable=False),
        sa.Column("server_time", AwareTime, nullable=False),
        sa.Column("rtt_ns", sa.BigInteger(), nullable=False),
        sa.Column("received_at", AwareTime, nullable=False),
        _device_fk("anchors"),
        sa.PrimaryKeyConstraint("device", "boot_id", name=op.f("pk_anchors")),
    )
    op.create_table(
        "visits",
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("visit_id", sa.Text(), nullable=False),
        sa.Column("client_ref", sa.Text(), nullable=False),
        sa.Column("staff_ref", sa.Text(), nullable=False),
        sa.Column("tag_uid", sa.Text(), nullable=True),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("arrived_at", AwareTime, nullable=True),
        sa.Column("arrived_quality", sa.String(16), nullable=True),
        sa.Column("departed_at", AwareTime, nullable=True),
        sa.Column("departed_quality", sa.String(16), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("visit_at", AwareTime, nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        _device_fk("visits"),
        sa.PrimaryKeyConstraint("device", "visit_id", name=op.f("pk_visits")),
    )
    for columns in (["visit_at"], ["client_ref", "visit_at"], ["staff_ref", "visit_at"]):
        op.create_index(op.f("ix_visits_" + "_".join(columns)), "visits", columns)
    op.create_table(
        "reference_items",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name=op.f("pk_reference_items")),
        sa.UniqueConstraint("version", name=op.f("uq_reference_items_version")),
    )
    counter = op.create_table(
        "reference_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_counter")),
    )
    # The single counter row writers lock (central.db.COUNTER_ROW); no version yet.
    op.bulk_insert(counter, [{"id": 1, "version": 0}])


def downgrade() -> None:
    for table in ("reference_counter", "reference_items", "visits", "anchors", "events",
                  "devices"):
        op.drop_table(table)
