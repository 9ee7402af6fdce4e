"""NTAG 424 DNA SUN at the centre: master key versions, a key version per tag, the last
accepted read counter per tag, provisionings awaiting confirmation, the centre's check
of each tap's SUN, and the centre's settings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in central.db as of this revision.
AwareTime = sa.DateTime(timezone=True)
REF, NAME, SHORT = 128, 64, 32


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    op.create_table(
        "centre_settings",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_centre_settings")),
    )
    op.create_table(
        "tag_master_keys",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        # Stored as made; in production encrypt at rest (envelope encryption, a KMS key).
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", AwareTime, nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_tag_master_keys")),
    )
    with op.batch_alter_table("nfc_tags") as batch:
        batch.add_column(sa.Column("key_version", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_nfc_tags_key_version_tag_master_keys"),
                                 "tag_master_keys", ["key_version"], ["version"])
    op.create_table(
        "sun_counters",
        sa.Column("uid", sa.String(SHORT), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_sun_counters")),
    )
    op.create_table(
        "tag_provisionings",
        sa.Column("uid", sa.String(SHORT), nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("provider_unit", sa.String(NAME), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(NAME), nullable=False),
        sa.Column("requested_at", AwareTime, nullable=False),
        sa.ForeignKeyConstraint(["key_version"], ["tag_master_keys.version"],
                                name=op.f("fk_tag_provisionings_key_version_tag_master_keys")),
        sa.PrimaryKeyConstraint("uid", name=op.f("pk_tag_provisionings")),
    )
    op.create_table(
        "sun_checks",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("device", sa.String(NAME), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("uid", sa.Text(), nullable=True),
        sa.Column("client_ref", sa.Text(), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=True),
        sa.Column("counter", sa.BigInteger(), nullable=True),
        sa.Column("last_counter", sa.BigInteger(), nullable=True),
        sa.Column("verdict", sa.String(SHORT), nullable=True),
        sa.Column("agent_verdict", sa.String(SHORT), nullable=True),
        sa.Column("refusal", sa.Text(), nullable=True),
        sa.Column("suspect", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", AwareTime, nullable=False),
        sa.Column("checked_at", AwareTime, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.event_id"],
                                name=op.f("fk_sun_checks_event_id_events")),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_sun_checks")),
    )
    _index("sun_checks", "uid")
    _index("sun_checks", "suspect", "checked_at")


def downgrade() -> None:
    for table in ("sun_checks", "tag_provisionings", "sun_counters"):
        op.drop_table(table)
    with op.batch_alter_table("nfc_tags") as batch:
        batch.drop_constraint(op.f("fk_nfc_tags_key_version_tag_master_keys"),
                              type_="foreignkey")
        batch.drop_column("key_version")
    op.drop_table("tag_master_keys")
    op.drop_table("centre_settings")
