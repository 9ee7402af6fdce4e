"""The routine over HTTP: cases of flows 2a/2b/3a/3b, documentation texts, implementations,
the "Digitala LÅS" inbox, the binder and shared schedule, keys, NFC tags, locks, alerts and
reports.

Every route acts as the principal behind the bearer token (a
:class:`~central.store.DeviceInfo` with its role and unit); what that principal may do
is the routine store's to decide (:mod:`central.cases.access`), so the API and the CLI
cannot differ. Answers: 403 with the reason when the role or unit does not allow it,
409 with the routine's message (the state and the actions allowed there) when the
routine refuses a step, or the data conflicts (a double booking, a key number still
bound), 404 for an unknown case, job, message or tag, 422 for malformed requests.

The answer models here are also what ``nyckelfri-central ... --json`` prints
(:mod:`central.cli_routine`), so a script sees one shape whichever way it asks.
"""

from __future__ import annotations

from datetime import date
from typing import (
    Annotated,
)

from fastapi import APIRouter, Depends, Path, Query, Request

from central.answers import (
    AddStock,
    AlertList,
    AlertOut,
    BindLock,
    Book,
    BookingAnswer,
    BookingOut,
    CaseAnswer,
    CaseList,
    ClientStatuses,
    ClientStatusOut,
    DocumentationAnswer,
    EmergencyKeyUse,
    EndImplementation,
    ImplementationAnswer,
    ImplementationList,
    ImplementationOut,
    InboxList,
    IssueTag,
    JobAnswer,
    JobList,
    JobOut,
    KeysAnswer,
    KeySetAnswer,
    KeySetOut,
    KeyUseAnswer,
    KeyUseOut,
    LockAnswer,
    LockVerificationOut,
    LockVerifications,
    MessageAnswer,
    MessageOut,
    OpenCase,
    PendingInstallOut,
    PendingInstalls,
    ReceiptAnswer,
    ReceiptOut,
    RegisterKeys,
    RemovalOut,
    Removals,
    ReturnKeys,
    Schedule,
    StartImplementation,
    StepAnswer,
    TagAnswer,
    TagOut,
    TagStock,
    TakeAction,
    UnboundAnswer,
    VisitMethodsOut,
    VisitsByMethod,
    case_out,
    documentation_answer,
    fitter_jobs,
    keys_answer,
    step_out,
)
from central.cases.alerts import Alert
from central.cases.reports import ClientStatus, PendingInstall, Removal, VisitMethods
from central.cases.store import RoutineStore
from central.cases.values import (
    ImplementationKind,
    JobKind,
)
from central.http.dependencies import DeviceDep, StoreDep, require_json
from central.http.middleware import require_protocol
from central.http.problems import AUTHED, WITH_BODY, RoutineProblem, problem_responses
from central.http.routes_admin import Key, Ref
from central.storable import MAX_INT64
from routine.flows import Flow
from sync.protocol import JobsPage

Id = Annotated[int, Path(ge=1, le=MAX_INT64)]


# --- the routes ---------------------------------------------------------------------------------

router = APIRouter(prefix="/v1", dependencies=[Depends(require_protocol)], tags=["routine"])

REFUSED = {**problem_responses(409), 409: {"model": RoutineProblem,
                                           "description": "Refused by the routine, or the "
                                                          "data conflicts"}}
READ = {**AUTHED}
WRITE = {**WITH_BODY, **REFUSED}
ACT = {**AUTHED, **REFUSED}
JSON = [Depends(require_json)]


def get_routine(request: Request) -> RoutineStore:
    """The routine store :func:`~central.http.app.create_app` made."""
    routine: RoutineStore = request.app.state.routine
    return routine


RoutineDep = Annotated[RoutineStore, Depends(get_routine)]


# --- cases ----------------------------------------------------------------------------------


@router.post("/cases", response_model=CaseAnswer, status_code=201, responses=WRITE,
             dependencies=JSON)
def open_case(body: OpenCase, actor: DeviceDep, routine: RoutineDep) -> CaseAnswer:
    """Open a case of flow 2a/2b (an assessor) or 3a/3b (an alarm administrator)."""
    case = routine.cases.open(body.flow, body.client_ref, actor,
                             provider_unit=body.provider_unit,
                             assessor_unit=body.assessor_unit, note=body.note)
    return CaseAnswer(case=case_out(case), server_time=routine.central.now())


@router.get("/cases", response_model=CaseList, responses=READ)
def list_cases(
    actor: DeviceDep, routine: RoutineDep,
    client: Ref = None, flow: Flow | None = None,
    open_: Annotated[bool | None, Query(alias="open", description="true: open cases only")]
    = None,
) -> CaseList:
    """The cases the principal may see (its unit's, or the alarm group's), oldest first."""
    found = routine.cases.find(client_ref=client, flow=flow, open_only=bool(open_), actor=actor)
    if open_ is False:
        found = [c for c in found if not c.open]
    return CaseList(cases=[case_out(c) for c in found], server_time=routine.central.now())


@router.get("/cases/{case_id}", response_model=CaseAnswer, responses=READ)
def show_case(case_id: Id, actor: DeviceDep, routine: RoutineDep) -> CaseAnswer:
    """One case with its audit trail (``steps``) and the actions allowed now (``allowed``)."""
    return CaseAnswer(case=case_out(routine.cases.get(case_id, actor=actor)),
                      server_time=routine.central.now())


@router.post("/cases/{case_id}/actions", response_model=StepAnswer, responses=WRITE,
             dependencies=JSON)
def take_action(case_id: Id, body: TakeAction, actor: DeviceDep,
                routine: RoutineDep) -> StepAnswer:
    """Take the next step of the case: an action with its answer, as the token's principal.

    409 names the state and the actions allowed there when the routine refuses it.
    Booking steps are taken by booking the case's job (``/v1/binder/{job_id}/booking``).
    """
    step = routine.cases.act(case_id, body.action, body.answer, actor, note=body.note,
                       checks=body.checks)
    return StepAnswer(step=step_out(step), case=case_out(routine.cases.get(case_id, actor=actor)),
                      server_time=routine.central.now())


# --- clients: documentation, implementations ---------------------------------------------


@router.get("/clients/{client_ref}/documentation", response_model=DocumentationAnswer,
            responses=READ)
def documentation(client_ref: Key, actor: DeviceDep, routine: RoutineDep) -> DocumentationAnswer:
    """The verbatim texts to paste into the case system for the client, oldest first."""
    found = routine.cases.documentation(client_ref, actor=actor)
    return documentation_answer(client_ref, found, routine.central.now())


@router.get("/clients/{client_ref}/implementations", response_model=ImplementationList,
            responses=READ)
def implementations(client_ref: Key, actor: DeviceDep,
                    routine: RoutineDep) -> ImplementationList:
    """The client's implementations (verkställigheter), running and ended."""
    found = routine.implementations.of_client(client_ref, actor=actor)
    return ImplementationList(
        client_ref=client_ref,
        implementations=[ImplementationOut.model_validate(i) for i in found],
        server_time=routine.central.now())


@router.post("/clients/{client_ref}/implementations", response_model=ImplementationAnswer,
             status_code=201, responses=WRITE, dependencies=JSON)
def start_implementation(client_ref: Key, body: StartImplementation, actor: DeviceDep,
                         store: StoreDep, routine: RoutineDep) -> ImplementationAnswer:
    """Record that a unit delivers a service to the client (home care: its provider)."""
    started = routine.implementations.start(client_ref, body.kind, body.unit,
                                           body.started_on or store.today(), actor)
    return ImplementationAnswer(implementation=ImplementationOut.model_validate(started),
                                server_time=store.now())


@router.post("/clients/{client_ref}/implementations/{kind}/end",
             response_model=ImplementationAnswer, responses=WRITE, dependencies=JSON)
def end_implementation(client_ref: Key, kind: ImplementationKind, body: EndImplementation,
                       actor: DeviceDep, store: StoreDep,
                       routine: RoutineDep) -> ImplementationAnswer:
    """End the client's running implementation of ``kind`` (starts the 14-day clock)."""
    ended = routine.implementations.end(client_ref, kind, body.ended_on or store.today(), actor)
    return ImplementationAnswer(implementation=ImplementationOut.model_validate(ended),
                                server_time=store.now())


# --- the "Digitala LÅS" inbox, the binder, the shared schedule -----------------------------


@router.get("/inbox", response_model=InboxList, responses=READ)
def inbox(actor: DeviceDep, routine: RoutineDep,
          include_handled: bool = False) -> InboxList:
    """The alarm group's "Digitala LÅS" messages (unhandled only, unless asked)."""
    found = routine.inbox.messages(actor, include_handled=include_handled)
    return InboxList(messages=[MessageOut.model_validate(m) for m in found],
                     server_time=routine.central.now())


@router.post("/inbox/{message_id}/handled", response_model=MessageAnswer, responses=ACT)
def handle_message(message_id: Id, actor: DeviceDep, routine: RoutineDep) -> MessageAnswer:
    """Mark a message handled (taking the case's next step does so too)."""
    message = routine.inbox.handle(message_id, actor)
    return MessageAnswer(message=MessageOut.model_validate(message),
                         server_time=routine.central.now())


@router.get("/binder", response_model=JobList, responses=READ)
def binder(
    actor: DeviceDep, routine: RoutineDep, kind: JobKind | None = None,
    open_: Annotated[bool, Query(alias="open", description="false: done jobs too")] = True,
    fitter: Ref = None,
) -> JobList:
    """The fitters' jobs with their bookings, oldest first."""
    found = routine.binder.jobs(actor, kind=kind, open_only=open_, fitter=fitter)
    return JobList(jobs=[JobOut.model_validate(j) for j in found],
                   server_time=routine.central.now())


@router.get("/binder/{job_id}", response_model=JobAnswer, responses=READ)
def job(job_id: Id, actor: DeviceDep, routine: RoutineDep) -> JobAnswer:
    """One job of the binder, with its booking."""
    return JobAnswer(job=JobOut.model_validate(routine.binder.job(job_id, actor=actor)),
                     server_time=routine.central.now())


@router.post("/binder/{job_id}/booking", response_model=BookingAnswer, responses=WRITE,
             dependencies=JSON)
def book(job_id: Id, body: Book, actor: DeviceDep, routine: RoutineDep) -> BookingAnswer:
    """Book the job for a fitter in the shared schedule (the case's booking step); again to
    move it. 409 when the fitter's bookings overlap."""
    booking = routine.schedule.book(job_id, body.fitter, body.start, body.end, actor,
                                    note=body.note)
    return BookingAnswer(booking=BookingOut.model_validate(booking),
                         server_time=routine.central.now())


@router.get("/schedule", response_model=Schedule, responses=READ)
def schedule(actor: DeviceDep, routine: RoutineDep, fitter: Ref = None,
             day: Annotated[date | None, Query(description="local day, YYYY-MM-DD")] = None,
             ) -> Schedule:
    """The alarm group's shared schedule: live bookings by start."""
    found = routine.schedule.bookings(actor=actor, fitter=fitter, day=day)
    return Schedule(bookings=[BookingOut.model_validate(b) for b in found],
                    server_time=routine.central.now())


@router.get("/jobs", response_model=JobsPage, responses=READ)
def jobs(actor: DeviceDep, routine: RoutineDep, fitter: Ref = None) -> JobsPage:
    """A fitter's open jobs by appointment, for the fitter's agent to pull (an alarm
    administrator names the fitter): references only, with the checkpoints to tick and
    those ticked already. The fitter's agent authenticates with the token of a device
    enrolled to the fitter ('device add NAME --fitter FITTER')."""
    return JobsPage(jobs=fitter_jobs(routine.binder.at_the_door(
        routine.binder.for_fitter(actor, fitter), actor=actor)),
                    server_time=routine.central.now())


@router.get("/lock-verifications", response_model=LockVerifications, responses=READ)
def lock_verifications(actor: DeviceDep, routine: RoutineDep,
                       serial: Annotated[str | None, Query(max_length=128)] = None,
                       job: Annotated[int | None, Query(ge=1, le=MAX_INT64)] = None,
                       ) -> LockVerifications:
    """Verdicts on the lock proofs fitters' agents pushed (verified, forged, unknown_lock,
    no_proof, invalid), oldest first. Admin or alarm administrator."""
    found = routine.locks.verifications(actor, serial=serial, job_id=job)
    return LockVerifications(verifications=[LockVerificationOut.model_validate(v)
                                            for v in found],
                             server_time=routine.central.now())


# --- keys ---------------------------------------------------------------------------------


@router.post("/clients/{client_ref}/keys", response_model=KeySetAnswer, status_code=201,
             responses=WRITE, dependencies=JSON)
def register_keys(client_ref: Key, body: RegisterKeys, actor: DeviceDep,
                  routine: RoutineDep) -> KeySetAnswer:
    """Record a set of physical keys with its key number in the key register (Axsor)."""
    key_set = routine.keys.register(client_ref, body.unit, body.key_number, actor,
                                       holder=body.holder)
    return KeySetAnswer(key_set=KeySetOut.model_validate(key_set),
                        server_time=routine.central.now())


@router.get("/clients/{client_ref}/keys", response_model=KeysAnswer, responses=READ)
def keys(client_ref: Key, actor: DeviceDep, routine: RoutineDep) -> KeysAnswer:
    """The key sets held for the client and the sets the routine requires (section 4)."""
    return keys_answer(routine.keys.overview(client_ref, actor=actor), routine.central.now())


@router.post("/clients/{client_ref}/keys/return", response_model=ReceiptAnswer,
             responses=WRITE, dependencies=JSON)
def return_keys(client_ref: Key, body: ReturnKeys, actor: DeviceDep,
                routine: RoutineDep) -> ReceiptAnswer:
    """Hand a unit's key sets back to the client against a signed key receipt."""
    receipt = routine.keys.return_keys(client_ref, body.unit, body.signed_by, actor,
                                  holder=body.holder)
    return ReceiptAnswer(receipt=ReceiptOut.model_validate(receipt),
                         server_time=routine.central.now())


@router.get("/keys/{key_number}/unbound", response_model=UnboundAnswer, responses=READ)
def key_unbound(key_number: Key, actor: DeviceDep, routine: RoutineDep) -> UnboundAnswer:
    """Whether no client has the key number bound in the key register (2b.9, 3b.7)."""
    return UnboundAnswer(key_number=key_number,
                         unbound=routine.keys.unbound(key_number, actor=actor),
                         server_time=routine.central.now())


@router.post("/clients/{client_ref}/emergency-key-use", response_model=KeyUseAnswer,
             status_code=201, responses=WRITE, dependencies=JSON)
def emergency_key_use(client_ref: Key, body: EmergencyKeyUse, actor: DeviceDep,
                      routine: RoutineDep) -> KeyUseAnswer:
    """Record a physical key used in an emergency (4.4), with what happened."""
    use = routine.keys.record_emergency_use(client_ref, body.unit, body.reason, actor,
                                           lock_available=body.lock_available)
    return KeyUseAnswer(key_use=KeyUseOut.model_validate(use), server_time=routine.central.now())


# --- NFC tags and locks ---------------------------------------------------------------------


@router.post("/tags", response_model=TagAnswer, status_code=201, responses=WRITE,
             dependencies=JSON)
def issue_tag(body: IssueTag, actor: DeviceDep, routine: RoutineDep) -> TagAnswer:
    """Issue an NFC tag from the provider's stock to a client waiting for a lock (section 5)."""
    tag = routine.tags.issue(body.uid, body.client_ref, body.provider_unit, actor)
    return TagAnswer(tag=TagOut.model_validate(tag), server_time=routine.central.now())


@router.post("/tags/{uid}/taken-down", response_model=TagAnswer, responses=ACT)
def tag_taken_down(uid: Key, actor: DeviceDep, routine: RoutineDep) -> TagAnswer:
    """Staff took the tag down (the lock is installed); agents stop accepting it."""
    tag = routine.tags.taken_down(uid, actor)
    return TagAnswer(tag=TagOut.model_validate(tag), server_time=routine.central.now())


@router.get("/tag-stock/{unit}", response_model=TagStock, responses=READ)
def tag_stock(unit: Key, actor: DeviceDep, routine: RoutineDep) -> TagStock:
    """How many NFC tags the provider unit has in stock."""
    return TagStock(provider_unit=unit, count=routine.tags.stock(unit, actor=actor),
                    server_time=routine.central.now())


@router.post("/tag-stock/{unit}", response_model=TagStock, responses=WRITE, dependencies=JSON)
def add_tag_stock(unit: Key, body: AddStock, actor: DeviceDep, routine: RoutineDep) -> TagStock:
    """Add tags to the provider unit's stock; answers the stock now."""
    count = routine.tags.add_stock(unit, body.count, actor)
    return TagStock(provider_unit=unit, count=count, server_time=routine.central.now())


@router.post("/locks/{serial}/bind", response_model=LockAnswer, responses=WRITE,
             dependencies=JSON)
def bind_lock(serial: Key, body: BindLock, actor: DeviceDep, routine: RoutineDep) -> LockAnswer:
    """Bind a lock to the client in the lock records (2a.7); agents learn it by sync."""
    routine.locks.bind(serial, body.client_ref, actor)
    return LockAnswer(serial=serial, client_ref=body.client_ref,
                      server_time=routine.central.now())


@router.post("/locks/{serial}/unbind", response_model=LockAnswer, responses=ACT)
def unbind_lock(serial: Key, actor: DeviceDep, routine: RoutineDep) -> LockAnswer:
    """Unbind a lock from its client (2b.8, "frånkopplat brukaren i Phoniro")."""
    routine.locks.unbind(serial, actor)
    return LockAnswer(serial=serial, client_ref=None, server_time=routine.central.now())


# --- alerts and reports ---------------------------------------------------------------------

Day = Annotated[date | None, Query(description="YYYY-MM-DD; default: the centre's today")]


@router.get("/alerts", response_model=AlertList, responses=READ)
def alerts(actor: DeviceDep, routine: RoutineDep, today: Day = None,
           no_visit_hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24) -> AlertList:
    """What someone must act on now, most severe first."""
    day = today or routine.central.today()
    found: list[Alert] = routine.alerts.current(today=day, no_visit_hours=no_visit_hours,
                                                actor=actor)
    return AlertList(today=day, alerts=[AlertOut.model_validate(a) for a in found],
                     server_time=routine.central.now())


@router.get("/reports/pending-installs", response_model=PendingInstalls, responses=READ)
def pending_installs(actor: DeviceDep, routine: RoutineDep, today: Day = None) -> PendingInstalls:
    """Requested installations not yet done, with their age in Swedish working days."""
    day = today or routine.central.today()
    found: list[PendingInstall] = routine.reports.pending_installs(today=day, actor=actor)
    return PendingInstalls(today=day,
                           installs=[PendingInstallOut.model_validate(p) for p in found],
                           server_time=routine.central.now())


@router.get("/reports/removals", response_model=Removals, responses=READ)
def removals(actor: DeviceDep, routine: RoutineDep, today: Day = None) -> Removals:
    """Locks to remove, by due date (14 days after the last implementation ended)."""
    day = today or routine.central.today()
    found: list[Removal] = routine.reports.removals(today=day, actor=actor)
    return Removals(today=day, removals=[RemovalOut.model_validate(r) for r in found],
                    server_time=routine.central.now())


@router.get("/reports/client-status", response_model=ClientStatuses, responses=READ)
def client_status(actor: DeviceDep, routine: RoutineDep, client: Ref = None) -> ClientStatuses:
    """Per client: lock status, running services, NFC tags, key sets held and required."""
    found: list[ClientStatus] = routine.reports.client_status(client, actor=actor)
    return ClientStatuses(clients=[ClientStatusOut.model_validate(c) for c in found],
                          server_time=routine.central.now())


@router.get("/reports/visits-by-method", response_model=VisitsByMethod, responses=READ)
def visits_by_method(
    actor: DeviceDep, routine: RoutineDep,
    start: Annotated[date | None, Query(description="first day, YYYY-MM-DD")] = None,
    end: Annotated[date | None, Query(description="last day, YYYY-MM-DD")] = None,
) -> VisitsByMethod:
    """Visits per client by registration method (NFC tag or lock), days start..end."""
    found: list[VisitMethods] = routine.reports.visits_by_method(start=start, end=end, actor=actor)
    return VisitsByMethod(start=start, end=end,
                          clients=[VisitMethodsOut.model_validate(v) for v in found],
                          server_time=routine.central.now())

