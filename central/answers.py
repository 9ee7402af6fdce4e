"""The answers of the routine's API and CLI: one shape whichever way a script asks.

Pydantic models of what the routine's services return (:mod:`central.services`), and the
request bodies of its HTTP API. ``nyckelfri-central ... --json`` prints the same documents
the HTTP API answers (:mod:`central.http.routes_routine`); neither the CLI nor the web
pages import the HTTP package for them.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, fields
from datetime import date, datetime
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Self,
    get_args,
    get_origin,
    get_type_hints,
)

from pydantic import ConfigDict, Field

from central.cases.alerts import Alert
from central.cases.proofs import LockVerification, checkpoints_of
from central.cases.reports import ClientStatus, PendingInstall, Removal, VisitMethods
from central.cases.values import (
    Booking,
    Case,
    CaseStep,
    DocumentationText,
    Implementation,
    ImplementationKind,
    InboxMessage,
    Job,
    KeyReceipt,
    KeySet,
    KeyUse,
    Tag,
)
from central.services.binder import JobAtTheDoor
from central.services.keys import KeysOverview
from routine import texts
from routine.flows import FACTS, Action, Flow, machine
from routine.keys import KeyUnit
from sync.protocol import Answer, AwareDatetime, FitterJob, Model

# --- request and answer models ---------------------------------------------------------------

Text = Annotated[str, Field(min_length=1, max_length=128)]
Note = Annotated[str, Field(max_length=2000)]


class Out(Answer):
    """An answer part built from the routine store's values (by attribute)."""

    model_config = ConfigDict(extra="ignore", frozen=True, from_attributes=True)


class ValueOut(Out):
    """The answer of one of the routine store's frozen values, with the same fields.

    A subclass names the dataclass in ``__value__`` and gets its fields, in order and
    without defaults (all required in the schema, as the store always sets them); fields
    it annotates itself replace one of the same name in place (a nested value's own answer
    model), or follow (a property of the value, such as ``open``).
    """

    __value__: ClassVar[type | None] = None

    if TYPE_CHECKING:  # the fields come from __value__, out of a type checker's sight
        def __getattr__(self, name: str) -> Any: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        value = cls.__dict__.get("__value__")
        if value is not None:
            hints = get_type_hints(value)
            own = inspect.get_annotations(cls)
            cls.__annotations__ = {**{f.name: _listed(hints[f.name]) for f in fields(value)},
                                   **own}
        super().__init_subclass__(**kwargs)


def _listed(hint: Any) -> Any:
    """``tuple[X, ...]`` (a frozen value's sequence) as ``list[X]``, as the answers have it."""
    args = get_args(hint)
    if get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return list.__class_getitem__(args[0])
    return hint


class ActionOut(ValueOut):
    """An action allowed now: who takes it, with which answers (none: a plain step)."""

    __value__ = Action


class StepOut(ValueOut):
    """One row of a case's audit trail."""

    __value__ = CaseStep


class CaseOut(Out):
    id: int
    flow: Flow
    flow_title_sv: str
    client_ref: str
    state: str
    state_description: str
    open: bool
    outcome: str | None
    provider_unit: str | None
    assessor_unit: str | None
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    file_moved_to_home_care: bool
    alarm_stays: bool
    note: str | None
    steps: list[StepOut]  # the audit trail, oldest first
    allowed: list[ActionOut]  # what may be done now (nothing once closed)

    @classmethod
    def of(cls, case: Case) -> Self:
        data = {k: v for k, v in asdict(case).items() if k != "steps"}
        return cls.model_validate({
            **data, "flow_title_sv": case.flow.title_sv, "open": case.open,
            "state_description": machine(case.flow).states[case.state].description,
            "steps": [StepOut.model_validate(s) for s in case.steps],
            "allowed": [ActionOut.model_validate(a) for a in case.allowed],
        })


class CaseAnswer(Answer):
    case: CaseOut
    server_time: datetime


class CaseList(Answer):
    cases: list[CaseOut]
    server_time: datetime


class StepAnswer(Answer):
    """The step taken, and the case after it (with what is allowed next)."""

    step: StepOut
    case: CaseOut
    server_time: datetime


class OpenCase(Model):
    flow: Flow
    client_ref: Text
    provider_unit: Text | None = Field(
        None, description="2a: the provider the order goes to; 2b: default the client's "
                          "home-care provider")
    assessor_unit: Text | None = Field(
        None, description="Only for an admin opening 2a/2b; an assessor's own unit is used")
    note: Note | None = None


class TakeAction(Model):
    action: Text
    answer: Text | None = Field(None, description="The answer of a question; none for a step")
    note: Note | None = None
    checks: list[Text] = Field(
        [], max_length=len(FACTS),
        description="On-site checkpoints ticked (knob_labelled_with_key_number, "
                    "door_restored_with_original_knob, job_marked_done); the other facts "
                    "are read from the centre's data")


class DocumentationOut(Out):
    text: str  # verbatim, to paste into the case system
    field: str  # where: "Personuppgifter, övrig information"
    case_id: int
    step_seq: int
    seed: str
    who: str
    at: datetime


class DocumentationAnswer(Answer):
    client_ref: str
    system: str  # the case system the texts go into (Lifecare)
    texts: list[DocumentationOut]
    server_time: datetime


class ImplementationOut(ValueOut):
    __value__ = Implementation
    running: bool


class ImplementationAnswer(Answer):
    implementation: ImplementationOut
    server_time: datetime


class ImplementationList(Answer):
    client_ref: str
    implementations: list[ImplementationOut]
    server_time: datetime


class StartImplementation(Model):
    kind: ImplementationKind
    unit: Text
    started_on: date | None = Field(None, description="Default: today (the centre's calendar)")


class EndImplementation(Model):
    ended_on: date | None = Field(None, description="Default: today (the centre's calendar)")


class MessageOut(ValueOut):
    __value__ = InboxMessage


class InboxList(Answer):
    messages: list[MessageOut]
    server_time: datetime


class MessageAnswer(Answer):
    message: MessageOut
    server_time: datetime


class BookingOut(ValueOut):
    __value__ = Booking


class JobOut(ValueOut):
    __value__ = Job
    booking: BookingOut | None
    open: bool


class JobList(Answer):
    jobs: list[JobOut]
    server_time: datetime


class JobAnswer(Answer):
    job: JobOut
    server_time: datetime


class Book(Model):
    fitter: Text
    start: AwareDatetime
    end: AwareDatetime
    note: Note | None = None


class BookingAnswer(Answer):
    booking: BookingOut
    server_time: datetime


class Schedule(Answer):
    bookings: list[BookingOut]
    server_time: datetime


class KeySetOut(ValueOut):
    __value__ = KeySet
    bound: bool


class KeySetAnswer(Answer):
    key_set: KeySetOut
    server_time: datetime


class KeysAnswer(Answer):
    """The sets held (bound in the key register) and the sets the routine requires."""

    client_ref: str
    held: list[KeySetOut]
    returned: list[KeySetOut]
    required: dict[KeyUnit, int]
    missing: dict[KeyUnit, int]  # required, not held
    server_time: datetime


class RegisterKeys(Model):
    unit: KeyUnit
    key_number: Annotated[str, Field(min_length=1, max_length=64)]
    holder: Text | None = Field(None, description="The provider unit holding home-care keys; "
                                                  "default the principal's or the client's")


class ReturnKeys(Model):
    unit: KeyUnit
    signed_by: Text = Field(description="Who signed the key receipt (nyckelkvittens)")
    holder: Text | None = None


class ReceiptOut(ValueOut):
    __value__ = KeyReceipt


class ReceiptAnswer(Answer):
    receipt: ReceiptOut
    server_time: datetime


class UnboundAnswer(Answer):
    key_number: str
    unbound: bool  # no client has it bound in the key register (the 2b.9 check)
    server_time: datetime


class EmergencyKeyUse(Model):
    unit: KeyUnit
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    lock_available: bool = Field(True, description="False: the digital lock was unavailable")


class KeyUseOut(ValueOut):
    __value__ = KeyUse


class KeyUseAnswer(Answer):
    key_use: KeyUseOut
    server_time: datetime


class IssueTag(Model):
    uid: Annotated[str, Field(min_length=1, max_length=40)]
    client_ref: Text
    provider_unit: Text


class TagOut(ValueOut):
    __value__ = Tag


class TagAnswer(Answer):
    tag: TagOut
    server_time: datetime


class AddStock(Model):
    count: Annotated[int, Field(ge=1, le=100_000)]


class TagStock(Answer):
    provider_unit: str
    count: int
    server_time: datetime


class BindLock(Model):
    client_ref: Text


class LockAnswer(Answer):
    serial: str
    client_ref: str | None  # None: unbound
    server_time: datetime


class AlertOut(ValueOut):
    __value__ = Alert


class AlertList(Answer):
    today: date
    alerts: list[AlertOut]
    server_time: datetime


class PendingInstallOut(ValueOut):
    __value__ = PendingInstall


class PendingInstalls(Answer):
    today: date
    installs: list[PendingInstallOut]
    server_time: datetime


class RemovalOut(ValueOut):
    __value__ = Removal


class Removals(Answer):
    today: date
    removals: list[RemovalOut]
    server_time: datetime


class ClientStatusOut(ValueOut):
    __value__ = ClientStatus
    tags: list[TagOut]
    key_sets: list[KeySetOut]


class ClientStatuses(Answer):
    clients: list[ClientStatusOut]
    server_time: datetime


class VisitMethodsOut(ValueOut):
    __value__ = VisitMethods


class VisitsByMethod(Answer):
    start: date | None
    end: date | None
    clients: list[VisitMethodsOut]
    server_time: datetime


class LockVerificationOut(ValueOut):
    """The centre's verdict on one lock verification (the lock's key material stays put)."""

    __value__ = LockVerification


class LockVerifications(Answer):
    verifications: list[LockVerificationOut]
    server_time: datetime


# --- building answers (shared with the CLI) ---------------------------------------------------


def case_out(case: Case) -> CaseOut:
    return CaseOut.of(case)


def step_out(step: CaseStep) -> StepOut:
    return StepOut.model_validate(step)


def documentation_answer(client_ref: str, found: list[DocumentationText],
                         now: datetime) -> DocumentationAnswer:
    return DocumentationAnswer(client_ref=client_ref, system=texts.CASE_SYSTEM,
                               texts=[DocumentationOut.model_validate(d) for d in found],
                               server_time=now)


def keys_answer(found: KeysOverview, now: datetime) -> KeysAnswer:
    """The client's key sets held and returned, against the sets the routine requires."""
    return KeysAnswer(client_ref=found.client_ref,
                      held=[KeySetOut.model_validate(s) for s in found.held],
                      returned=[KeySetOut.model_validate(s) for s in found.returned],
                      required=found.required, missing=found.missing, server_time=now)


def fitter_jobs(found: list[JobAtTheDoor]) -> list[FitterJob]:
    """Jobs as the fitter's agent takes them to the door."""
    return [FitterJob(job_id=f.job.id, case_id=f.job.case_id, kind=f.job.kind.value,
                         client_ref=f.job.client_ref, lock_serial=f.lock_serial,
                         key_numbers=f.key_numbers,
                         booked_start=f.job.booking.start if f.job.booking else None,
                         booked_end=f.job.booking.end if f.job.booking else None,
                         status=("done" if f.job.done_at is not None
                                 else "booked" if f.job.booking is not None else "open"),
                         checkpoints=list(checkpoints_of(f.job.kind)), done=f.done)
            for f in found]
