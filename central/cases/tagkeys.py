"""The master keys of SUN tags, by version, and the per-tag keys diversified from them.

Every NTAG 424 DNA's five keys are :func:`routine.sun.tag_key_set` of one master key and
its UID (NXP AN10922), so the centre stores no per-tag key: only master keys, each a
numbered version (``tag_master_keys``). The first is made on first need (16 bytes of
``os.urandom``); :func:`rotate` adds the next, which new provisioning uses from then on,
while each tag keeps the version it was provisioned with (``nfc_tags.key_version``)
until it is provisioned again.

A master key never leaves this module's callers: no answer, log line or ``repr``
carries one. Agents get the two SDM keys of their own unit's tags only
(:func:`sdm_keys`), which tell nothing of another tag's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db as central_db
from central.cases import db as t
from central.cases.errors import CaseConflict, UnknownRecord
from central.cases.values import Value
from routine import sun
from routine.tags import FINAL

log = logging.getLogger(__name__)

MASTER_KEY_BYTES = sun.KEY_LENGTH  # AES-128
FACTORY_VERSION = 0  # an NTAG 424 DNA fresh from the factory: five all-zero keys
FACTORY_KEYS = tuple(bytes(sun.KEY_LENGTH) for _ in range(sun.KEY_COUNT))


@dataclass(frozen=True)
class KeyVersion(Value):
    """One master key version, as administrators see it (never the key)."""

    version: int
    created_at: datetime
    tags: int  # SUN tags provisioned with it (any state)
    active_tags: int  # of those, tags not taken down or lost
    pending: int  # provisionings handed out with it, not yet confirmed
    newest: bool  # the version new provisioning uses


def newest(conn: Connection, now: datetime) -> int:
    """The newest master key version, made (version 1) if there is none yet."""
    version = _max_version(conn)
    if version is not None:
        return version
    stmt = central_db.dialect_insert(conn, t.tag_master_keys).values(
        version=1, key=os.urandom(MASTER_KEY_BYTES), created_at=now)
    conn.execute(stmt.on_conflict_do_nothing(index_elements=["version"]))
    log.info("tag master key version 1 created")
    return 1


def rotate(conn: Connection, now: datetime) -> int:
    """Add the next master key version; returns it. New provisioning uses it from now on."""
    version = (_max_version(conn) or 0) + 1
    stmt = (central_db.dialect_insert(conn, t.tag_master_keys)
            .values(version=version, key=os.urandom(MASTER_KEY_BYTES), created_at=now)
            .on_conflict_do_nothing(index_elements=["version"])
            .returning(t.tag_master_keys.c.version))
    if conn.execute(stmt).first() is None:
        raise CaseConflict(f"master key version {version} was just made by another process; "
                           "list the versions ('tag-keys list') before rotating again")
    log.info("tag master key version %d created; new provisioning uses it", version)
    return version


def masters(conn: Connection, versions: set[int]) -> dict[int, bytes]:
    """The master keys of ``versions`` (UnknownRecord if one is missing)."""
    if not versions:
        return {}
    m = t.tag_master_keys.c
    found = {row.version: bytes(row.key) for row in conn.execute(
        sa.select(m.version, m.key).where(m.version.in_(sorted(versions))))}
    missing = versions - found.keys()
    if missing:
        raise UnknownRecord(f"no tag master key version {sorted(missing)}: the centre's key "
                            "table is incomplete; restore it from the backup")
    return found


def key_set(conn: Connection, version: int, uid: str) -> tuple[bytes, ...]:
    """The five keys of tag ``uid`` (14 hex digits) at master key ``version`` (0: factory)."""
    if version == FACTORY_VERSION:
        return FACTORY_KEYS
    return tuple(sun.tag_key_set(masters(conn, {version})[version], bytes.fromhex(uid)))


def sdm_keys(master: bytes, uid: str) -> sun.TagKeys:
    """K_SDMMetaRead and K_SDMFileRead of tag ``uid``: what a SUN verifier needs."""
    return sun.sun_keys(sun.tag_key_set(master, bytes.fromhex(uid)))


def versions(conn: Connection) -> list[KeyVersion]:
    """Every master key version, oldest first, with how many tags use it."""
    m, g, p = t.tag_master_keys.c, t.nfc_tags.c, t.tag_provisionings.c
    final = [s.value for s in FINAL]
    tags: dict[int, int] = dict(conn.execute(sa.select(g.key_version, sa.func.count())
                             .where(g.key_version.is_not(None)).group_by(g.key_version)).all())
    active: dict[int, int] = dict(conn.execute(sa.select(g.key_version, sa.func.count())
                               .where(g.key_version.is_not(None), g.state.not_in(final))
                               .group_by(g.key_version)).all())
    pending: dict[int, int] = dict(conn.execute(sa.select(p.key_version, sa.func.count())
                                .group_by(p.key_version)).all())
    rows = conn.execute(sa.select(m.version, m.created_at).order_by(m.version)).all()
    top = rows[-1].version if rows else None
    return [KeyVersion(version=r.version, created_at=r.created_at,
                       tags=int(tags.get(r.version, 0)),
                       active_tags=int(active.get(r.version, 0)),
                       pending=int(pending.get(r.version, 0)), newest=r.version == top)
            for r in rows]


def _max_version(conn: Connection) -> int | None:
    value: int | None = conn.execute(sa.select(sa.func.max(t.tag_master_keys.c.version))).scalar()
    return value
