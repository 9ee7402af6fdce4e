"""The routine's tables, on the centre's one :data:`central.db.metadata` (migration 0002).

Everything here is derived from nothing else: cases and their append-only steps,
implementations, the "Digitala LÅS" inbox, the binder and the shared schedule, the
key register, key receipts, key uses, NFC tags and the tag stock. The clients' lock
status and the tags agents use stay in the reference data (``reference_items``),
written in the same transaction as the step that changes them.

"At most one live row" rules (one running implementation per client and kind, one
open case per client and flow, a key number bound to one client, one live booking
per job) are partial unique indexes, which SQLite and PostgreSQL both enforce, so
they hold across processes without a lock.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from central.db import BigSerial, UTCDateTime, metadata

REF = 128  # client references and keys (routine.reference.MAX_KEY_LENGTH)
NAME = 64  # principal names (devices.name) and units (devices.unit)
SHORT = 32  # enum values: flows, states, actions, answers, kinds


def _live(column: sa.Column[Any]) -> dict[str, Any]:
    """The ``WHERE`` of a partial index over the rows where ``column`` IS NULL."""
    where = column.is_(None)
    return {"sqlite_where": where, "postgresql_where": where}


implementations = sa.Table(
    "implementations", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("kind", sa.String(SHORT), nullable=False),  # home_care|safety_alarm|night_help
    sa.Column("unit", sa.String(NAME), nullable=False),
    sa.Column("started_on", sa.Date(), nullable=False),
    sa.Column("ended_on", sa.Date(), nullable=True),
    sa.Column("started_by", sa.String(NAME), nullable=False),
    sa.Column("ended_by", sa.String(NAME), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)
sa.Index("ix_implementations_running", implementations.c.client_ref, implementations.c.kind,
         unique=True, **_live(implementations.c.ended_on))

cases = sa.Table(
    "cases", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(4), nullable=False),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("state", sa.String(SHORT), nullable=False),
    sa.Column("provider_unit", sa.String(NAME), nullable=True),
    sa.Column("assessor_unit", sa.String(NAME), nullable=True),
    sa.Column("opened_by", sa.String(NAME), nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("closed_at", UTCDateTime(), nullable=True),
    sa.Column("outcome", sa.String(SHORT), nullable=True),
    sa.Column("file_moved_to_home_care", sa.Boolean(), nullable=False),
    sa.Column("alarm_stays", sa.Boolean(), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Index(None, "client_ref"),
)
sa.Index("ix_cases_open", cases.c.client_ref, cases.c.flow, unique=True,
         **_live(cases.c.closed_at))

# The audit trail: one row per step, written once and never updated or deleted (a
# trigger of migration 0002 refuses both on each backend).
case_steps = sa.Table(
    "case_steps", metadata,
    sa.Column("seq", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("from_state", sa.String(SHORT), nullable=False),
    sa.Column("action", sa.String(SHORT), nullable=False),
    sa.Column("answer", sa.String(SHORT), nullable=True),
    sa.Column("to_state", sa.String(SHORT), nullable=False),
    sa.Column("seed", sa.String(SHORT), nullable=False),  # the seed step: "2a.3"
    sa.Column("actor", sa.String(NAME), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # the actor's role (admin acts as any)
    sa.Column("acting_as", sa.String(16), nullable=False),  # the routine's role of the step
    sa.Column("unit", sa.String(NAME), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("documentation", sa.Text(), nullable=True),
    sa.Column("effects", sa.JSON(), nullable=False),  # [routine.flows.Effect values]
    sa.Column("checks", sa.JSON(), nullable=False),  # {fact: bool} the step was taken with
    sa.Column("note", sa.Text(), nullable=True),
    sa.Index(None, "case_id", "seq"),
)

inbox_messages = sa.Table(
    "inbox_messages", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # install | removal
    sa.Column("keys_exist", sa.Boolean(), nullable=True),  # install requests say (2a.4)
    sa.Column("from_unit", sa.String(NAME), nullable=True),
    sa.Column("sent_by", sa.String(NAME), nullable=False),
    sa.Column("sent_at", UTCDateTime(), nullable=False),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("handled_at", UTCDateTime(), nullable=True),
    sa.Column("handled_by", sa.String(NAME), nullable=True),
    sa.Index(None, "handled_at"),
)

binder_jobs = sa.Table(
    "binder_jobs", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # install | removal
    sa.Column("unit", sa.String(NAME), nullable=False),  # the alarm group whose fitters do it
    sa.Column("created_by", sa.String(NAME), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("due_on", sa.Date(), nullable=True),  # removals: 14 days after the last end
    sa.Column("done_at", UTCDateTime(), nullable=True),
    sa.Column("done_by", sa.String(NAME), nullable=True),
    sa.Index(None, "done_at"),
    sa.Index(None, "case_id"),
)

# The alarm group's shared schedule: a calendar per fitter. Booking a job again
# (a moved appointment) cancels its live booking and adds the new one.
bookings = sa.Table(
    "bookings", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("binder_jobs.id"), nullable=False),
    sa.Column("fitter", sa.String(NAME), sa.ForeignKey("devices.name"), nullable=False),
    sa.Column("start_at", UTCDateTime(), nullable=False),
    sa.Column("end_at", UTCDateTime(), nullable=False),
    sa.Column("booked_by", sa.String(NAME), nullable=False),
    sa.Column("booked_at", UTCDateTime(), nullable=False),
    sa.Column("cancelled_at", UTCDateTime(), nullable=True),
    sa.Index(None, "fitter", "start_at"),
)
sa.Index("ix_bookings_live", bookings.c.job_id, unique=True, **_live(bookings.c.cancelled_at))

# The key register (Axsor): a set of physical keys, by key number, bound to a client
# until it is returned (with a receipt).
key_sets = sa.Table(
    "key_sets", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("key_unit", sa.String(SHORT), nullable=False),  # routine.keys.KeyUnit
    sa.Column("holder", sa.String(NAME), nullable=False),  # the unit that holds the set
    sa.Column("key_number", sa.String(NAME), nullable=False),
    sa.Column("registered_by", sa.String(NAME), nullable=False),
    sa.Column("registered_at", UTCDateTime(), nullable=False),
    sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id"), nullable=True),
    sa.Column("returned_at", UTCDateTime(), nullable=True),
    sa.Column("receipt_id", sa.BigInteger(), sa.ForeignKey("key_receipts.id"), nullable=True),
    sa.Index(None, "client_ref"),
)
sa.Index("ix_key_sets_bound", key_sets.c.key_number, unique=True, **_live(key_sets.c.returned_at))

key_receipts = sa.Table(
    "key_receipts", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("key_unit", sa.String(SHORT), nullable=False),
    sa.Column("holder", sa.String(NAME), nullable=False),
    sa.Column("key_numbers", sa.JSON(), nullable=False),
    sa.Column("signed_by", sa.Text(), nullable=False),
    sa.Column("returned_by", sa.String(NAME), nullable=False),
    sa.Column("returned_at", UTCDateTime(), nullable=False),
    sa.Column("case_id", sa.BigInteger(), sa.ForeignKey("cases.id"), nullable=True),
    sa.Index(None, "client_ref"),
)

key_uses = sa.Table(
    "key_uses", metadata,
    sa.Column("id", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("key_unit", sa.String(SHORT), nullable=False),
    sa.Column("reason", sa.String(SHORT), nullable=False),  # routine.keys.KeyUseReason
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("lock_status", sa.String(16), nullable=True),  # the client's, at the time
    sa.Column("used_by", sa.String(NAME), nullable=False),
    sa.Column("unit", sa.String(NAME), nullable=True),
    sa.Column("used_at", UTCDateTime(), nullable=False),
    sa.Index(None, "used_at"),
)

nfc_tags = sa.Table(
    "nfc_tags", metadata,
    sa.Column("uid", sa.String(SHORT), primary_key=True),  # normalised NFC-A UID
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("provider_unit", sa.String(NAME), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # routine.tags.TagState
    sa.Column("issued_by", sa.String(NAME), nullable=False),
    sa.Column("issued_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("updated_by", sa.String(NAME), nullable=False),
    # The master key version its SUN keys are diversified from (migration 0005), set when
    # its provisioning is confirmed; NULL: not a SUN tag (no NTAG 424 DNA keys here).
    sa.Column("key_version", sa.Integer(), sa.ForeignKey("tag_master_keys.version"),
              nullable=True),
    sa.Index(None, "client_ref"),
)

tag_stock = sa.Table(
    "tag_stock", metadata,
    sa.Column("provider_unit", sa.String(NAME), primary_key=True),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# --- lock proofs (migration 0003) ----------------------------------------------------------

# A lock's secret lives only here, never in an API answer nor at an agent. Stored as
# given; in production it is to be encrypted at rest (envelope encryption with a KMS key).
lock_secrets = sa.Table(
    "lock_secrets", metadata,
    sa.Column("serial", sa.String(REF), primary_key=True),
    sa.Column("secret", sa.LargeBinary(), nullable=False),
    sa.Column("enrolled_at", UTCDateTime(), nullable=False),
    sa.Column("enrolled_by", sa.String(NAME), nullable=False),
)

# One row per stored lock.verification event: the centre's verdict on its proof.
lock_verifications = sa.Table(
    "lock_verifications", metadata,
    sa.Column("event_id", sa.String(32), primary_key=True),
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
    sa.Column("read_at", UTCDateTime(), nullable=False),  # the event's best time
    sa.Column("verified_at", UTCDateTime(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Index(None, "serial"),
    sa.Index(None, "job_id"),
)

# One row per stored job.checkpoint event: applied, or refused with the reason.
job_checkpoints = sa.Table(
    "job_checkpoints", metadata,
    sa.Column("event_id", sa.String(32), primary_key=True),
    sa.Column("ordinal", sa.BigInteger(), nullable=False),  # processing order
    sa.Column("device", sa.String(NAME), nullable=False),
    sa.Column("job_id", sa.BigInteger(), nullable=True),
    sa.Column("fitter", sa.String(NAME), nullable=True),
    sa.Column("checkpoint", sa.String(NAME), nullable=True),
    sa.Column("verification_event_id", sa.String(32), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # applied | refused
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Index(None, "job_id"),
)

# --- NTAG 424 DNA SUN (migration 0005) -------------------------------------------------------

# The master keys every SUN tag's keys are diversified from (routine.sun.tag_key_set): they
# live only here, never in an API answer, a log line nor at an agent. Stored as made (16
# random bytes); in production encrypt at rest, as lock_secrets. New provisioning uses
# the newest version; a tag keeps its version (nfc_tags.key_version) until re-provisioned.
tag_master_keys = sa.Table(
    "tag_master_keys", metadata,
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("key", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# The last SUN read counter accepted per tag, across every agent: a counter is accepted
# once, only when above this (routine.sun.check_counter), so a copied URL is caught.
sun_counters = sa.Table(
    "sun_counters", metadata,
    sa.Column("uid", sa.String(SHORT), primary_key=True),
    sa.Column("counter", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# A provisioning handed out and not yet confirmed: its key version stays the same until
# the tag's URL is confirmed (a rerun after a cut gets the same new keys).
tag_provisionings = sa.Table(
    "tag_provisionings", metadata,
    sa.Column("uid", sa.String(SHORT), primary_key=True),
    sa.Column("client_ref", sa.String(REF), nullable=False),
    sa.Column("provider_unit", sa.String(NAME), nullable=False),
    sa.Column("key_version", sa.Integer(), sa.ForeignKey("tag_master_keys.version"),
              nullable=False),
    sa.Column("requested_by", sa.String(NAME), nullable=False),
    sa.Column("requested_at", UTCDateTime(), nullable=False),
)

# The centre's check of each stored tap event that carried a SUN URL or an agent's
# refusal of a tag as not genuine, written in the event's ingest transaction. Text for
# what comes from event data (the centre does not bound it).
sun_checks = sa.Table(
    "sun_checks", metadata,
    sa.Column("event_id", sa.String(32), sa.ForeignKey("events.event_id"), primary_key=True),
    sa.Column("device", sa.String(NAME), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("uid", sa.Text(), nullable=True),  # normalised; None: no usable UID sent
    sa.Column("client_ref", sa.Text(), nullable=True),
    sa.Column("key_version", sa.Integer(), nullable=True),
    sa.Column("counter", sa.BigInteger(), nullable=True),  # as the centre decrypted it
    sa.Column("last_counter", sa.BigInteger(), nullable=True),  # the one a replay was under
    sa.Column("verdict", sa.String(SHORT), nullable=True),  # the centre's; None: no SUN sent
    sa.Column("agent_verdict", sa.String(SHORT), nullable=True),
    sa.Column("refusal", sa.Text(), nullable=True),  # tap.refused's reason
    sa.Column("suspect", sa.Boolean(), nullable=False),  # raises tag_copy_suspected
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),  # the event's best time
    sa.Column("checked_at", UTCDateTime(), nullable=False),
    sa.Index(None, "uid"),
    sa.Index(None, "suspect", "checked_at"),
)
