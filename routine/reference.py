"""Reference data as the routine defines it: clients, their NFC tags, staff badges, locks.

The one definition of what a valid reference record is, used by the agent's store
(import files, the centre's feed) and the centre's store (imports, single records).
Pure rules, no I/O: a record in, its normalised form out, or :class:`ReferenceDataError`
with the place and what to correct.

Records, by kind (the key field first):

- ``client``: ``ref``, ``display_name`` (optional), ``lock_status`` (one of
  :data:`LOCK_STATUSES`, default ``pending``)
- ``tag``: ``uid`` (NFC-A UID), ``client_ref``, ``active`` (default true)
- ``staff``: ``badge_uid`` (NFC-A UID), ``staff_ref``, ``display_name``, ``active``
- ``lock``: ``serial``, ``client_ref`` (optional), ``state``

UIDs are normalised to upper-case hex without separators (``04:a1:b2:..`` ->
``04A1B2..``) and must have 4, 7 or 10 bytes (single, double, triple size UIDs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

CLIENT = "client"
TAG = "tag"
STAFF = "staff"
LOCK = "lock"
KINDS = (CLIENT, TAG, STAFF, LOCK)

# Where the client's digital lock stands (routine: pending until fitted, impossible
# where none can be fitted, installed, or none wanted).
LOCK_STATUSES = ("pending", "impossible", "installed", "none")
UID_BYTES = (4, 7, 10)  # NFC-A UIDs are single, double or triple size
MAX_KEY_LENGTH = 128  # keys and references; the centre's reference_items.key holds this many

# A reference document's sections and the kind of their records.
SECTIONS: dict[str, str] = {"clients": CLIENT, "tags": TAG, "staff": STAFF, "locks": LOCK}
KEY_FIELDS: dict[str, str] = {CLIENT: "ref", TAG: "uid", STAFF: "badge_uid", LOCK: "serial"}


class ReferenceDataError(ValueError):
    """Reference data that does not validate; the message names the place and the fix."""


class Record(NamedTuple):
    """One validated reference record: its kind, its (normalised) key, its fields."""

    kind: str
    key: str
    data: dict[str, Any]


# --- documents -----------------------------------------------------------------------------


def validate_reference(data: Any, sections: Iterable[str] = tuple(SECTIONS)) -> list[Record]:
    """Check a whole reference document; its records in document order.

    ``sections`` are the sections the caller accepts (the agent's import file has no
    ``locks``). A key given twice in one section is an error: which one was meant?
    """
    allowed = tuple(sections)
    if not isinstance(data, dict):
        raise ReferenceDataError(f"reference data must be an object with {', '.join(allowed)}")
    unknown = set(data) - set(allowed)
    if unknown:
        raise ReferenceDataError(
            f"unknown sections {sorted(unknown, key=str)}; expected {', '.join(allowed)}"
        )
    records: list[Record] = []
    for section in allowed:
        records += _section(section, data.get(section, []))
    return records


def _section(section: str, items: Any) -> list[Record]:
    if not isinstance(items, list):
        raise ReferenceDataError(f"{section} must be a list of objects")
    kind = SECTIONS[section]
    seen: dict[str, int] = {}
    records = []
    for i, item in enumerate(items):
        where = f"{section}[{i}]"
        key, fields = validate_record(kind, item, where)
        if key in seen:
            raise ReferenceDataError(
                f"{where}: {KEY_FIELDS[kind]} {key} also in {section}[{seen[key]}]; "
                "keep one of them"
            )
        seen[key] = i
        records.append(Record(kind, key, fields))
    return records


# --- records -------------------------------------------------------------------------------


def check_kind(kind: str) -> str:
    """``kind`` if it is a reference kind, else ReferenceDataError."""
    if kind not in KINDS:
        raise ReferenceDataError(f"unknown reference kind {kind!r}; one of {', '.join(KINDS)}")
    return str(kind)


def validate_record(kind: str, item: Any, where: str) -> tuple[str, dict[str, Any]]:
    """(key, normalised record) of one record of ``kind``; ``where`` names it in errors."""
    check_kind(kind)
    if not isinstance(item, dict):
        raise ReferenceDataError(f"{where}: must be an object")
    record = _VALIDATORS[kind](item, where)
    return record[KEY_FIELDS[kind]], record


def normalise_key(kind: str, key: str, where: str | None = None) -> str:
    """A record's key as stored: UIDs normalised, other keys stripped and checked."""
    kind = check_kind(kind)
    where = where or f"{kind} {key}"
    if kind in (TAG, STAFF):
        return normalise_uid(key, where)
    return required_str({"key": key}, "key", where)


def _client(item: dict[str, Any], where: str) -> dict[str, Any]:
    status = item.get("lock_status", "pending")
    if status not in LOCK_STATUSES:
        raise ReferenceDataError(
            f"{where}: lock_status {status!r} is not one of {', '.join(LOCK_STATUSES)}"
        )
    return {"ref": required_str(item, "ref", where),
            "display_name": optional_str(item, "display_name", where), "lock_status": status}


def _tag(item: dict[str, Any], where: str) -> dict[str, Any]:
    return {"uid": normalise_uid(item.get("uid"), where),
            "client_ref": required_str(item, "client_ref", where),
            "active": flag(item, "active", where)}


def _staff(item: dict[str, Any], where: str) -> dict[str, Any]:
    return {"badge_uid": normalise_uid(item.get("badge_uid"), where),
            "staff_ref": required_str(item, "staff_ref", where),
            "display_name": optional_str(item, "display_name", where),
            "active": flag(item, "active", where)}


def _lock(item: dict[str, Any], where: str) -> dict[str, Any]:
    client_ref = item.get("client_ref")
    return {"serial": required_str(item, "serial", where),
            "client_ref": None if client_ref is None else required_str(item, "client_ref", where),
            "state": required_str(item, "state", where)}


_VALIDATORS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    CLIENT: _client, TAG: _tag, STAFF: _staff, LOCK: _lock,
}


# --- fields --------------------------------------------------------------------------------


def normalise_uid(value: Any, where: str) -> str:
    """An NFC-A UID as upper-case hex without separators; 4, 7 or 10 bytes."""
    if not isinstance(value, str):
        raise ReferenceDataError(f"{where}: uid must be a hex string, got {value!r}")
    uid = value.replace(":", "").replace(" ", "").upper()
    try:
        raw = bytes.fromhex(uid)
    except ValueError:
        raise ReferenceDataError(f"{where}: uid {value!r} is not hex") from None
    if len(raw) not in UID_BYTES:
        raise ReferenceDataError(
            f"{where}: uid {value!r} has {len(raw)} bytes; NFC-A UIDs have 4, 7 or 10"
        )
    return uid


def required_str(item: dict[str, Any], field: str, where: str) -> str:
    """A non-empty string of at most :data:`MAX_KEY_LENGTH` characters, stripped."""
    value = item.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ReferenceDataError(f"{where}: '{field}' is required and must be a non-empty string")
    value = value.strip()
    if len(value) > MAX_KEY_LENGTH:
        raise ReferenceDataError(f"{where}: '{field}' is longer than {MAX_KEY_LENGTH} characters")
    return value


def optional_str(item: dict[str, Any], field: str, where: str) -> str:
    """A string, ``""`` when missing or null."""
    value = item.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReferenceDataError(f"{where}: '{field}' must be a string")
    return value


def flag(item: dict[str, Any], field: str, where: str) -> bool:
    """A boolean (0 and 1 accepted), true when missing."""
    value = item.get(field, True)
    if not isinstance(value, bool | int):
        raise ReferenceDataError(f"{where}: '{field}' must be true or false")
    return bool(value)
