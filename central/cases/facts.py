"""The facts a routine step requires (routine.flows.FACTS), from the centre's data.

Most are read from the data, never taken on someone's word: whether keys exist
(the key register), whether every implementation has ended, whether a lock is
bound to the client (the lock records of the reference data), whether the alarm
keys went back with a receipt, whether the key numbers are unbound. The rest are
what a fitter sees and does at the door, which no data shows: the knob labelled
with the key number, the door restored with the original knob, the job marked done
in the binder (the store marks it done with the step). The fitter ticks those.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central.cases import db as t
from central.cases import refdata, rows
from central.cases.errors import CaseConflict
from routine.flows import FACTS, Flow
from routine.keys import KeyUnit

#: Ticked by the one who takes the step (the fitter's on-site checkpoints).
CONFIRMED: frozenset[str] = frozenset({
    "knob_labelled_with_key_number", "door_restored_with_original_knob", "job_marked_done",
})

ALARM_KEY_UNITS = (KeyUnit.ALARM_GROUP.value, KeyUnit.NIGHT_GROUP.value)


def _keys_bound(conn: Connection, client: str, units: Collection[str],
                holder: str | None = None) -> bool:
    k = t.key_sets.c
    query = sa.select(k.id).where(k.client_ref == client, k.returned_at.is_(None),
                                  k.key_unit.in_(list(units)))
    if holder is not None:
        query = query.where(k.holder == holder)
    return conn.execute(query.limit(1)).first() is not None


def _keys_exist(conn: Connection, case: rows.Row) -> bool:
    """2a: the provider holds a key set (2a.3, needed at 2a.7); 3a: the alarm group does."""
    if Flow(case.flow) is Flow.INSTALL_ASSESSED:
        return _keys_bound(conn, case.client_ref, (KeyUnit.HOME_CARE_PROVIDER.value,),
                           case.provider_unit)
    return _keys_bound(conn, case.client_ref, ALARM_KEY_UNITS)


def _all_ended(conn: Connection, case: rows.Row) -> bool:
    """No implementation of the client runs (home care, safety alarm, night help)."""
    return not rows.running_kinds(rows.implementations_of(conn, case.client_ref))


def _lock_bound(conn: Connection, case: rows.Row) -> bool:
    return bool(refdata.locks_bound_to(conn, case.client_ref))


def _lock_unbound(conn: Connection, case: rows.Row) -> bool:
    return not _lock_bound(conn, case)


def _alarm_keys_back(conn: Connection, case: rows.Row) -> bool:
    """2b.8: no alarm or night group key set is still bound (each went back on a receipt)."""
    return not _keys_bound(conn, case.client_ref, ALARM_KEY_UNITS)


def _no_key_bound(conn: Connection, case: rows.Row) -> bool:
    """2b.9: no key number in the register is bound to the client any more (4.5: every
    service has ended by now, so every unit's keys are back)."""
    return not _keys_bound(conn, case.client_ref, [u.value for u in KeyUnit])


DERIVED: Mapping[str, Callable[[Connection, rows.Row], bool]] = {
    "keys_exist": _keys_exist,
    "all_implementations_ended": _all_ended,
    "lock_bound_to_client": _lock_bound,
    "lock_unbound_in_lock_system": _lock_unbound,
    "lock_serial_unbound": _lock_unbound,
    "keys_returned_receipt_signed": _alarm_keys_back,
    "key_number_unbound": _no_key_bound,
}

WHERE_FROM: Mapping[str, str] = {
    "keys_exist": "register the key set with its key number in the key register",
    "all_implementations_ended": "end every implementation of the client",
    "lock_bound_to_client": "bind the lock to the client (bind_lock)",
    "lock_unbound_in_lock_system": "unbind the lock from the client (unbind_lock)",
    "lock_serial_unbound": "unbind the lock from the client (unbind_lock)",
    "keys_returned_receipt_signed": "return the alarm keys against a signed receipt "
                                    "(return_keys)",
    "key_number_unbound": "return every key set still bound to the client (return_keys)",
}


def checked(checks: Collection[str]) -> frozenset[str]:
    """The checkpoints an actor ticks, validated: only those no data can show."""
    given = frozenset(checks)
    for name in sorted(given):
        if name in DERIVED:
            raise CaseConflict(
                f"{name} is not ticked by hand: the centre reads it from its data; "
                f"{WHERE_FROM[name]}, then take the step again"
            )
        if name not in CONFIRMED:
            raise CaseConflict(
                f"unknown checkpoint {name!r}; tick among: {', '.join(sorted(CONFIRMED))}"
            )
    return given


def facts(conn: Connection, case: rows.Row, required: Collection[str],
          ticked: Collection[str]) -> dict[str, bool]:
    """The ``required`` facts for the case: read from the data, or ticked."""
    return {name: (DERIVED[name](conn, case) if name in DERIVED else name in ticked)
            for name in required if name in FACTS}
