"""Lock proofs: lock secrets (centre only), verdicts on lock verifications, fitters'
job checkpoints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import central.cases.db  # noqa: F401  (registers the tables on central.db.metadata)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AwareTime = sa.DateTime(timezone=True)
REF, NAME, SHORT = 128, 64, 32


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def upgrade() -> None:
    op.create_table(
        "lock_secrets",
        sa.Column("serial", sa.String(REF), nullable=False),
        # Stored as given; in production encrypt at rest (envelope encryption, a KMS key).
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("enrolled_at", AwareTime, nullable=False),
        sa.Column("enrolled_by", sa.String(NAME), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_lock_secrets")),
    )
    op.create_table(
        "lock_verifications",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("device", sa.String(NAME), nullable=False),
        sa.Column("fitter", sa.String(NAME), nullable=True),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("serial", sa.String(REF), nullable=True),
        sa.Column("bound_client", sa.String(REF), nullable=True),
        sa.Column("bound", sa.Boolean(), nullable=True),
        sa.Column("counter", sa.BigInteger(), nullable=True),
        sa.Column("battery", sa.Integer(), nullable=True),
        sa.Column("rssi", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(SHORT), nullable=False),
        sa.Column("read_at", AwareTime, nullable=False),
        sa.Column("verified_at", AwareTime, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_lock_verifications")),
    )
    _index("lock_verifications", "serial")
    _index("lock_verifications", "job_id")
    op.create_table(
        "job_checkpoints",
        sa.Column("event_id", sa.String(32), nullable=False),
        sa.Column("ordinal", sa.BigInteger(), nullable=False),
        sa.Column("device", sa.String(NAME), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("fitter", sa.String(NAME), nullable=True),
        sa.Column("checkpoint", sa.String(NAME), nullable=True),
        sa.Column("verification_event_id", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_at", AwareTime, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_job_checkpoints")),
    )
    _index("job_checkpoints", "job_id")


def downgrade() -> None:
    for table in ("job_checkpoints", "lock_verifications", "lock_secrets"):
        op.drop_table(table)
