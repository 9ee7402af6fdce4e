"""The routine at the centre: principals' units, cases with their audit trail, implementations,
the "Digitala LÅS" inbox, binder jobs and the shared schedule, the key register, NFC tags.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# The routine's tables live on central.db.metadata (central/cases/db.py); importing them
# here registers them wherever the migrations are loaded, so the schema comparison and
# autogenerate see the whole schema. The DDL below is a frozen copy, as in 0001.
import central.cases.db  # noqa: F401

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AwareTime = sa.DateTime(timezone=True)
BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
REF, NAME, SHORT = 128, 64, 32

APPEND_ONLY = "case_steps is append-only: the audit trail is never changed or deleted"
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER case_steps_no_update BEFORE UPDATE ON case_steps "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
    "CREATE TRIGGER case_steps_no_delete BEFORE DELETE ON case_steps "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
)
_PG_TRIGGERS = (
    "CREATE FUNCTION case_steps_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$",
    "CREATE TRIGGER case_steps_no_change BEFORE UPDATE OR DELETE ON case_steps "
    "FOR EACH ROW EXECUTE FUNCTION case_steps_append_only()",
    "CREATE TRIGGER case_steps_no_truncate BEFORE TRUNCATE ON case_steps "
    "FOR EACH STATEMENT EXECUTE FUNCTION case_steps_append_only()",
)


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{table}"))


def _fk(table: str, column: str, target: str, key: str = "id") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.{key}"],
                                   name=op.f(f"fk_{table}_{column}_{target}"))


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def _live_index(name: str, table: str, columns: list[str], null_column: str) -> None:
    """A unique index over the rows where ``null_column`` IS NULL (both backends)."""
    where = sa.text(f"{null_column} IS NULL")
    op.create_index(op.f(name), table, columns, unique=True, sqlite_where=where,
                    postgresql_where=where)


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("unit", sa.String(NAME), nullable=True))
    _implementations()
    _cases()
    _inbox_and_binder()
    _keys()
    _tags()
    for statement in (_PG_TRIGGERS if op.get_bind().dialect.name == "postgresql"
                      else _SQLITE_TRIGGERS):
        op.execute(statement)


def _implementations() -> None:
    op.create_table(
        "implementations",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("kind", sa.String(SHORT), nullable=False),
        sa.Column("unit", sa.String(NAME), nullable=False),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("started_by", sa.String(NAME), nullable=False),
        sa.Column("ended_by", sa.String(NAME), nullable=True),
        sa.Column("updated_at", AwareTime, nullable=False),
        _pk("implementations", "id"),
    )
    _live_index("ix_implementations_running", "implementations", ["client_ref", "kind"],
                "ended_on")


def _cases() -> None:
    op.create_table(
        "cases",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(4), nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("state", sa.String(SHORT), nullable=False),
        sa.Column("provider_unit", sa.String(NAME), nullable=True),
        sa.Column("assessor_unit", sa.String(NAME), nullable=True),
        sa.Column("opened_by", sa.String(NAME), nullable=False),
        sa.Column("opened_at", AwareTime, nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        sa.Column("closed_at", AwareTime, nullable=True),
        sa.Column("outcome", sa.String(SHORT), nullable=True),
        sa.Column("file_moved_to_home_care", sa.Boolean(), nullable=False),
        sa.Column("alarm_stays", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _pk("cases", "id"),
    )
    _index("cases", "client_ref")
    _live_index("ix_cases_open", "cases", ["client_ref", "flow"], "closed_at")
    op.create_table(
        "case_steps",
        sa.Column("seq", BigSerial, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.String(SHORT), nullable=False),
        sa.Column("action", sa.String(SHORT), nullable=False),
        sa.Column("answer", sa.String(SHORT), nullable=True),
        sa.Column("to_state", sa.String(SHORT), nullable=False),
        sa.Column("seed", sa.String(SHORT), nullable=False),
        sa.Column("actor", sa.String(NAME), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("acting_as", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(NAME), nullable=True),
        sa.Column("at", AwareTime, nullable=False),
        sa.Column("documentation", sa.Text(), nullable=True),
        sa.Column("effects", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _fk("case_steps", "case_id", "cases"),
        _pk("case_steps", "seq"),
    )
    _index("case_steps", "case_id", "seq")


def _inbox_and_binder() -> None:
    op.create_table(
        "inbox_messages",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("keys_exist", sa.Boolean(), nullable=True),
        sa.Column("from_unit", sa.String(NAME), nullable=True),
        sa.Column("sent_by", sa.String(NAME), nullable=False),
        sa.Column("sent_at", AwareTime, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("handled_at", AwareTime, nullable=True),
        sa.Column("handled_by", sa.String(NAME), nullable=True),
        _fk("inbox_messages", "case_id", "cases"),
        _pk("inbox_messages", "id"),
    )
    _index("inbox_messages", "handled_at")
    op.create_table(
        "binder_jobs",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(NAME), nullable=False),
        sa.Column("created_by", sa.String(NAME), nullable=False),
        sa.Column("created_at", AwareTime, nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("done_at", AwareTime, nullable=True),
        sa.Column("done_by", sa.String(NAME), nullable=True),
        _fk("binder_jobs", "case_id", "cases"),
        _pk("binder_jobs", "id"),
    )
    _index("binder_jobs", "done_at")
    _index("binder_jobs", "case_id")
    op.create_table(
        "bookings",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("fitter", sa.String(NAME), nullable=False),
        sa.Column("start_at", AwareTime, nullable=False),
        sa.Column("end_at", AwareTime, nullable=False),
        sa.Column("booked_by", sa.String(NAME), nullable=False),
        sa.Column("booked_at", AwareTime, nullable=False),
        sa.Column("cancelled_at", AwareTime, nullable=True),
        _fk("bookings", "job_id", "binder_jobs"),
        _fk("bookings", "fitter", "devices", "name"),
        _pk("bookings", "id"),
    )
    _index("bookings", "fitter", "start_at")
    _live_index("ix_bookings_live", "bookings", ["job_id"], "cancelled_at")


def _keys() -> None:
    op.create_table(
        "key_receipts",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("key_unit", sa.String(SHORT), nullable=False),
        sa.Column("holder", sa.String(NAME), nullable=False),
        sa.Column("key_numbers", sa.JSON(), nullable=False),
        sa.Column("signed_by", sa.Text(), nullable=False),
        sa.Column("returned_by", sa.String(NAME), nullable=False),
        sa.Column("returned_at", AwareTime, nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        _fk("key_receipts", "case_id", "cases"),
        _pk("key_receipts", "id"),
    )
    _index("key_receipts", "client_ref")
    op.create_table(
        "key_sets",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("key_unit", sa.String(SHORT), nullable=False),
        sa.Column("holder", sa.String(NAME), nullable=False),
        sa.Column("key_number", sa.String(NAME), nullable=False),
        sa.Column("registered_by", sa.String(NAME), nullable=False),
        sa.Column("registered_at", AwareTime, nullable=False),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("returned_at", AwareTime, nullable=True),
        sa.Column("receipt_id", sa.BigInteger(), nullable=True),
        _fk("key_sets", "case_id", "cases"),
        _fk("key_sets", "receipt_id", "key_receipts"),
        _pk("key_sets", "id"),
    )
    _index("key_sets", "client_ref")
    _live_index("ix_key_sets_bound", "key_sets", ["key_number"], "returned_at")
    op.create_table(
        "key_uses",
        sa.Column("id", BigSerial, autoincrement=True, nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("key_unit", sa.String(SHORT), nullable=False),
        sa.Column("reason", sa.String(SHORT), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("lock_status", sa.String(16), nullable=True),
        sa.Column("used_by", sa.String(NAME), nullable=False),
        sa.Column("unit", sa.String(NAME), nullable=True),
        sa.Column("used_at", AwareTime, nullable=False),
        _pk("key_uses", "id"),
    )
    _index("key_uses", "used_at")


def _tags() -> None:
    op.create_table(
        "nfc_tags",
        sa.Column("uid", sa.String(SHORT), nullable=False),
        sa.Column("client_ref", sa.String(REF), nullable=False),
        sa.Column("provider_unit", sa.String(NAME), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("issued_by", sa.String(NAME), nullable=False),
        sa.Column("issued_at", AwareTime, nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        sa.Column("updated_by", sa.String(NAME), nullable=False),
        _pk("nfc_tags", "uid"),
    )
    _index("nfc_tags", "client_ref")
    op.create_table(
        "tag_stock",
        sa.Column("provider_unit", sa.String(NAME), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("updated_at", AwareTime, nullable=False),
        _pk("tag_stock", "provider_unit"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS case_steps_no_change ON case_steps")
        op.execute("DROP TRIGGER IF EXISTS case_steps_no_truncate ON case_steps")
        op.execute("DROP FUNCTION IF EXISTS case_steps_append_only()")
    for table in ("tag_stock", "nfc_tags", "key_uses", "key_sets", "key_receipts", "bookings",
                  "binder_jobs", "inbox_messages", "case_steps", "cases", "implementations"):
        op.drop_table(table)  # SQLite drops a table's triggers with it
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("unit")
