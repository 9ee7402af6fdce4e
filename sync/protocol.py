"""The wire protocol between field agents and the centre, shared by both ends.

Versioned: every request says which protocol version it speaks
(``X-Nyckelfri-Protocol`` header, and ``protocol`` in bodies); the centre answers
426 with advice when it does not speak it. Version 1 is this module.

Endpoints (all JSON; the centre's clock is in every answer as ``server_time``):

- ``GET  /v1/clock``                    -> :class:`ClockResponse`
- ``POST /v1/events``   :class:`PushRequest` -> :class:`PushResponse`
- ``GET  /v1/reference?since=CURSOR&limit=N`` -> :class:`ReferencePage`

Events are delivered at least once and applied at most once: the centre keys
them by ``event_id`` and answers with exactly the ids it holds durably.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
