"""The wire protocol between field agents and the centre, shared by both ends.

Versioned: every request says which protocol version it speaks
(``X-Nyckelfri-Protocol`` header, and ``protocol`` in bodies); the centre answers
426 with advice when it does not speak it. Version 1 is this module.

Endpoints (all JSON; the centre's clock is in every answer as ``server_time``):

- ``GET  /v1/clock``                    -> :class:`ClockResponse`
- ``POST /v1/events``   :class:`PushRequest` -> :class:`PushResponse`
- ``GET  /v1/reference?since=CURSOR&limit=N`` -> :class:`ReferencePage`
- ``GET  /v1/tag-keys``                 -> :class:`TagKeysPage` (SUN keys of the device's
  unit's tags, and the deployment's tag policy)
- ``POST /v1/tags/{uid}/provision``   :class:`ProvisionRequest` -> :class:`ProvisionKeys`
- ``POST /v1/tags/{uid}/provisioned`` :class:`ProvisionedRequest` -> :class:`ProvisionedAnswer`

Events are delivered at least once and applied at most once: the centre keys
them by ``event_id`` and answers with exactly the ids it holds durably.
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# The tag policy and SUN verdicts are the routine's words (pure enums, cheap to import
# on the agent's tap path); the protocol carries them.
from routine.sun import MAX_SUN_URL, SunVerdict, TagPolicy

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
PROTOCOL_HEADER = "X-Nyckelfri-Protocol"

# A batch fits comfortably in one request body (an event is ~0.5 KiB of JSON).
MAX_BATCH = 500
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_REFERENCE_PAGE = 1000

_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must carry a timezone (UTC offset)")
    return value


def _hex_id(value: str) -> str:
    if not _HEX_ID.match(value):
        raise ValueError("must be 32 lower-case hex digits (a UUID without dashes)")
    return value


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
EventId = Annotated[str, AfterValidator(_hex_id)]
DeviceName = Annotated[str, AfterValidator(_name)]


class Model(BaseModel):
    """Requests: strict, unknown fields are an error the sender must hear about."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Answer(BaseModel):
    """Answers: a newer centre may add fields; an older agent ignores them."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Event(Model):
    """One thing that happened on an agent (the outbox row's payload)."""

    event_id: EventId
    kind: str = Field(min_length=1, max_length=64)
    device_id: DeviceName
    at: AwareDatetime  # the device's wall clock
    boottime_ns: int = Field(ge=0)  # CLOCK_BOOTTIME on the device
    boot_id: str = Field(min_length=1, max_length=64)
    clock_synced: bool
    data: dict[str, Any]


class ClockSample(Model):
    """A round trip to the centre: this boot's CLOCK_BOOTTIME at the middle of the
    round trip corresponds to the centre's ``server_time``."""

    boot_id: str = Field(min_length=1, max_length=64)
    boottime_ns: int = Field(ge=0)
    server_time: AwareDatetime
    rtt_ns: int = Field(ge=0)


class PushRequest(Model):
    protocol: Literal[1] = 1
    device_id: DeviceName
    clock: ClockSample | None = None
    events: list[Event] = Field(max_length=MAX_BATCH)


class Rejection(Answer):
    event_id: str
    reason: str


class PushResponse(Answer):
    protocol: int = PROTOCOL_VERSION
    stored: list[str]  # every id of the batch now durably held (new or already there)
    rejected: list[Rejection] = []
    server_time: AwareDatetime


class ClockResponse(Answer):
    protocol: int = PROTOCOL_VERSION
    server_time: AwareDatetime


class ReferenceKind(StrEnum):
    CLIENT = "client"
    TAG = "tag"
    STAFF = "staff"
    LOCK = "lock"


class ReferenceItem(Answer):
    """One changed reference record. ``deleted`` items are to be removed."""

    kind: ReferenceKind
    key: str
    version: int
    deleted: bool = False
    data: dict[str, Any] = {}


class ReferencePage(Answer):
    protocol: int = PROTOCOL_VERSION
    items: list[ReferenceItem]
    cursor: int  # pass as ``since`` next time
    more: bool  # another page is waiting
    server_time: AwareDatetime


# --- NTAG 424 DNA SUN (issue 9) ------------------------------------------------------------


_KEY_HEX = re.compile(r"^[0-9a-f]{32}$")
_UID_HEX = re.compile(r"^[0-9A-F]{14}$")


def _key_hex(value: str) -> str:
    if not _KEY_HEX.match(value):
        raise ValueError("must be an AES-128 key: 32 lower-case hex digits")
    return value


def _uid_hex(value: str) -> str:
    if not _UID_HEX.match(value):
        raise ValueError("must be a 7-byte NFC-A UID: 14 upper-case hex digits")
    return value


KeyHex = Annotated[str, AfterValidator(_key_hex)]
UidHex = Annotated[str, AfterValidator(_uid_hex)]


class SunCheck(Model):
    """Carried in tap events (``data["sun"]``) of tags with SUN: the URL exactly as read,
    the counter it gave (None when it could not be decrypted) and the agent's verdict."""

    url: str = Field(min_length=1, max_length=MAX_SUN_URL)
    counter: int | None = Field(default=None, ge=0, le=0xFFFFFF)
    verdict: SunVerdict


class SunTagKeys(Answer):
    """One tag's SDM keys, diversified at the centre: K_SDMMetaRead and K_SDMFileRead."""

    uid: UidHex
    key_version: int = Field(ge=1)
    meta_read: KeyHex
    file_read: KeyHex


class TagKeysPage(Answer):
    """The whole set for the asking device's unit: the agent replaces what it held."""

    protocol: int = PROTOCOL_VERSION
    policy: TagPolicy
    tags: list[SunTagKeys]
    server_time: AwareDatetime


class ProvisionRequest(Model):
    client_ref: str = Field(min_length=1, max_length=64)


class ProvisionKeys(Answer):
    """What to write to one NTAG 424 DNA: its five new keys (key numbers 0-4), the keys it
    holds now (factory zeros, or an earlier key version's when re-provisioning) and the
    URL the SUN parameters are appended to."""

    uid: UidHex
    client_ref: str
    key_version: int = Field(ge=1)
    keys: list[KeyHex] = Field(min_length=5, max_length=5)
    current_keys: list[KeyHex] = Field(min_length=5, max_length=5)
    current_key_version: int = Field(ge=0)  # 0: factory default keys
    url_base: str = Field(min_length=8, max_length=200)


class ProvisionedRequest(Model):
    sun_url: str = Field(min_length=1, max_length=MAX_SUN_URL)


class ProvisionedAnswer(Answer):
    uid: UidHex
    client_ref: str
    key_version: int
    counter: int
    server_time: AwareDatetime


# --- enrolment (issue 10) ---------------------------------------------------------------

ENROLMENT_CODE_PREFIX = "nyk1."


def enrolment_code(centre_url: str, device_id: str, secret: str) -> str:
    """The text of a one-time enrolment code: ``nyk1.`` + base64url of the centre's URL,
    the device's name and the secret (``nyckelfri agent enrol CODE`` reads it)."""
    import base64
    import json

    body = json.dumps({"u": centre_url, "d": device_id, "s": secret}, separators=(",", ":"))
    return ENROLMENT_CODE_PREFIX + base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def read_enrolment_code(text: str) -> tuple[str, str, str]:
    """(centre URL, device id, secret) of an enrolment code; ValueError naming what is
    wrong ("prefix" when it is not one at all, "damaged" when it does not decode)."""
    import base64
    import binascii
    import json

    text = "".join(text.split())  # a code copied over two lines still works
    if not text.startswith(ENROLMENT_CODE_PREFIX):
        raise ValueError("prefix")
    raw = text[len(ENROLMENT_CODE_PREFIX):]
    try:
        body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return str(body["u"]), str(body["d"]), str(body["s"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("damaged") from None


class EnrolRequest(Model):
    """The one-time part of an enrolment code (``passcode``), for the device it names."""

    device_id: DeviceName
    passcode: str = Field(min_length=1, max_length=128)


class EnrolAnswer(Answer):
    device_id: str
    token: str
    server_time: AwareDatetime


class ProblemDetail(Answer):
    """Every 4xx/5xx answer: what happened and what to do."""

    error: str
    detail: str
    advice: str = ""
    server_time: AwareDatetime | None = None


def version_problem(version: int) -> str:
    """The advice for a peer speaking a protocol version we do not."""
    newest = max(SUPPORTED_VERSIONS)
    if version > newest:
        return (f"the agent speaks protocol {version}, newer than this centre ({newest}); "
                "upgrade the centre")
    return (f"the agent speaks protocol {version}, older than this centre supports "
            f"({', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}); upgrade the agent")


# --- fitters: jobs from the binder and lock proofs -----------------------------------

LOCK_VERIFICATION = "lock.verification"  # event kind: one on-site verification of a lock
JOB_CHECKPOINT = "job.checkpoint"  # event kind: a fitter's tick on a binder job

CHECKPOINTS_INSTALL = ("lock_bound_to_client", "knob_labelled_with_key_number",
                       "job_marked_done")
CHECKPOINTS_REMOVAL = ("lock_unbound_from_client", "door_restored_with_original_knob",
                       "keys_returned_receipt_signed", "job_marked_done")


class LockVerificationData(Model):
    """``data`` of a ``lock.verification`` event: what the agent read and recorded.

    The agent never holds the lock's secret: the centre recomputes the MAC over
    (nonce, serial, binding, bound client) and accepts the proof only if it matches.
    """

    job_id: int | None = None
    fitter: str = Field(min_length=1, max_length=64)
    expected_serial: str = Field(min_length=1, max_length=64)
    expected_client: str = Field(max_length=64)
    serial: str | None = None
    firmware: str | None = None
    battery_percent: int | None = Field(default=None, ge=0, le=100)
    rssi: int | None = None
    bound_client: str | None = None
    bound: bool | None = None
    binding_counter: int | None = Field(default=None, ge=0)
    nonce_hex: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    response_hex: str | None = Field(default=None, pattern=r"^[0-9a-f]{2,64}$")
    serial_matches: bool = False
    client_matches: bool = False
    proximity_ok: bool = False
    battery_ok: bool = False
    error: str | None = None


class JobCheckpointData(Model):
    """``data`` of a ``job.checkpoint`` event: the fitter ticked a checkpoint on site."""

    job_id: int
    fitter: str = Field(min_length=1, max_length=64)
    checkpoint: str = Field(min_length=1, max_length=64)
    verification_event_id: EventId | None = None  # the proof behind lock (un)bound ticks
    signed_by: str | None = Field(default=None, max_length=128)  # key receipt signature


class FitterJob(Answer):
    """A binder job as a fitter's agent pulls it (no personal data: references only)."""

    job_id: int
    case_id: int
    kind: Literal["install", "removal"]
    client_ref: str
    lock_serial: str | None = None
    key_numbers: list[str] = []
    booked_start: datetime | None = None
    booked_end: datetime | None = None
    status: str
    checkpoints: list[str] = []  # what the fitter ticks, in order
    done: list[str] = []  # ticked already


class JobsPage(Answer):
    protocol: int = PROTOCOL_VERSION
    jobs: list[FitterJob]
    server_time: AwareDatetime


# The lock proof as the centre checks it. The same construction lives, written on its
# own, on the lock's side (drivers/ble/profile.py: the simulated lock's firmware);
# tests pin both to the same vectors (docs/lock-profile.md).
LOCK_PROOF_VERSION = 1
LOCK_MAC_LEN = 16


def lock_proof_message(nonce: bytes, serial: str, bound: bool, counter: int, client_ref: str,
                       *, version: int = LOCK_PROOF_VERSION) -> bytes:
    serial_bytes = serial.encode("ascii")
    ref_bytes = client_ref.encode("ascii")
    return b"".join((
        bytes([version]), nonce, bytes([len(serial_bytes)]), serial_bytes,
        bytes([int(bound)]), counter.to_bytes(4, "little"),
        bytes([len(ref_bytes)]), ref_bytes,
    ))


def verify_lock_proof(secret: bytes, nonce: bytes, serial: str, bound: bool, counter: int,
                      client_ref: str, response: bytes) -> bool:
    """True when ``response`` (version byte + MAC, as the lock sent it) proves ``secret``."""
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.cmac import CMAC

    if len(response) != 1 + LOCK_MAC_LEN or response[0] != LOCK_PROOF_VERSION:
        return False
    cmac = CMAC(algorithms.AES(secret))
    cmac.update(lock_proof_message(nonce, serial, bound, counter, client_ref,
                                   version=response[0]))
    return hmac.compare_digest(cmac.finalize()[:LOCK_MAC_LEN], response[1:])
