"""What the routine store hands out: frozen values, each with ``as_dict()`` for JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from routine import texts
from routine.flows import Action, Flow, Role, machine
from routine.keys import KeyUnit, KeyUseReason
from routine.tags import TagState


class ImplementationKind(StrEnum):
    """A service being delivered (verkställighet); matches routine.keys.Service."""

    HOME_CARE = "home_care"
    SAFETY_ALARM = "safety_alarm"
    NIGHT_HELP = "night_help"


class JobKind(StrEnum):
    INSTALL = "install"
    REMOVAL = "removal"


def jsonable(value: Any) -> Any:
    """Dates and times as ISO text, enum keys as their values: ready for ``json.dumps``."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class Value:
    """A frozen dataclass value with ``as_dict()`` (JSON-ready)."""

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = jsonable(asdict(self))  # type: ignore[call-overload]
        return result


@dataclass(frozen=True)
class Principal(Value):
    """Who acts: a name, a role (central.store.ROLES) and a unit.

    :class:`central.store.DeviceInfo` (what the API authenticates) has the same three
    attributes and may be passed wherever a principal is asked for.
    """

    name: str
    role: str
    unit: str | None = None


@dataclass(frozen=True)
class Implementation(Value):
    id: int
    client_ref: str
    kind: ImplementationKind
    unit: str
    started_on: date
    ended_on: date | None
    started_by: str
    ended_by: str | None

    @property
    def running(self) -> bool:
        return self.ended_on is None


@dataclass(frozen=True)
class CaseStep(Value):
    """One row of the audit trail: a step of the routine, who took it, when, with what."""

    seq: int
    case_id: int
    from_state: str
    action: str
    answer: str | None
    to_state: str
    seed: str  # the seed step carried out: "2a.3"
    actor: str
    role: str  # the actor's role; "admin" may take any role's step
    acting_as: Role  # the routine's role of the step
    unit: str | None
    at: datetime
    documentation: str | None
    effects: tuple[str, ...]
    checks: dict[str, bool]  # the facts the step was taken with
    note: str | None


@dataclass(frozen=True)
class Case(Value):
    id: int
    flow: Flow
    client_ref: str
    state: str
    provider_unit: str | None
    assessor_unit: str | None
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    outcome: str | None
    file_moved_to_home_care: bool
    alarm_stays: bool
    note: str | None
    steps: tuple[CaseStep, ...] = ()

    @property
    def open(self) -> bool:
        return self.closed_at is None

    @property
    def allowed(self) -> list[Action]:
        """What may be done next (nothing once closed), with each action's role and answers."""
        return machine(self.flow).allowed(self.state)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["allowed"] = [{"action": a.name, "role": a.role.value, "answers": list(a.answers),
                            "text": a.text, "seed": a.seed} for a in self.allowed]
        return data


@dataclass(frozen=True)
class DocumentationText(Value):
    """A text to paste into the case system (Lifecare), where the routine puts it."""

    client_ref: str
    text: str
    case_id: int
    step_seq: int
    seed: str
    who: str
    at: datetime
    field: str = texts.DOCUMENTATION_FIELD  # "Personuppgifter, övrig information"


@dataclass(frozen=True)
class InboxMessage(Value):
    """A message in the alarm group's "Digitala LÅS" inbox (2a.4 install, 2b.4 removal)."""

    id: int
    case_id: int
    client_ref: str
    kind: JobKind
    keys_exist: bool | None  # install requests say whether physical keys exist (2a.4)
    from_unit: str | None
    sent_by: str
    sent_at: datetime
    note: str | None
    handled_at: datetime | None
    handled_by: str | None


@dataclass(frozen=True)
class Booking(Value):
    """A fitter's appointment with the client, in the alarm group's shared schedule."""

    id: int
    job_id: int
    case_id: int
    client_ref: str
    kind: JobKind
    fitter: str
    start: datetime
    end: datetime
    booked_by: str
    booked_at: datetime


@dataclass(frozen=True)
class Job(Value):
    """A job in the binder for the alarm group's fitters."""

    id: int
    case_id: int
    client_ref: str
    kind: JobKind
    unit: str
    created_by: str
    created_at: datetime
    due_on: date | None  # removals: within 14 days of the last implementation's end
    done_at: datetime | None
    done_by: str | None
    booking: Booking | None

    @property
    def open(self) -> bool:
        return self.done_at is None


@dataclass(frozen=True)
class KeySet(Value):
    """A set of physical keys in the key register (Axsor), bound until returned."""

    id: int
    client_ref: str
    unit: KeyUnit
    holder: str  # the unit holding it: a provider unit, the alarm group, the night group
    key_number: str
    registered_by: str
    registered_at: datetime
    case_id: int | None
    returned_at: datetime | None
    receipt_id: int | None

    @property
    def bound(self) -> bool:
        return self.returned_at is None


@dataclass(frozen=True)
class KeyReceipt(Value):
    """A signed key receipt (nyckelkvittens): key sets handed back to the client."""

    id: int
    client_ref: str
    unit: KeyUnit
    holder: str
    key_numbers: tuple[str, ...]
    signed_by: str
    returned_by: str
    returned_at: datetime
    case_id: int | None


@dataclass(frozen=True)
class KeyUse(Value):
    """A physical key used at a client, with the routine's reason (routine.keys)."""

    id: int
    client_ref: str
    unit: KeyUnit
    reason: KeyUseReason
    note: str
    lock_status: str | None
    used_by: str
    used_at: datetime

    @property
    def lock_installed(self) -> bool:
        return self.lock_status == "installed"


@dataclass(frozen=True)
class Tag(Value):
    """An NFC tag issued to a client; ``state`` is IN_USE once a visit registered by it."""

    uid: str
    client_ref: str
    provider_unit: str
    state: TagState
    issued_by: str
    issued_at: datetime
    updated_at: datetime
    updated_by: str
    key_version: int | None = None  # SUN master key version; None: not a SUN tag
