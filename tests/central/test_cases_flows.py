"""Every branch of 2a, 2b, 3a and 3b walked through the routine store, on SQLite and PostgreSQL.

One test per branch, named after the seed step where the branch turns; the branch
table is checked to take every transition of every flow. Each walk asserts the
final state, the verbatim documentation texts exactly where the routine puts them
(and nowhere else), the client's lock status agents will sync, and what the
branch leaves in the inbox, the binder, the key register and the tags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from central.cases.values import Case, ImplementationKind, JobKind
from central.store import CentralStore
from routine import texts
from routine.deadlines import removal_due
from routine.flows import Flow, Role, machine
from routine.keys import KeyUnit
from routine.tags import TagState
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import (
    INSTALL_CHECKS,
    NORD,
    REMOVAL_CHECKS,
    Branch,
    Do,
    World,
)

HOME, ALARM_SVC = ImplementationKind.HOME_CARE, ImplementationKind.SAFETY_ALARM


@pytest.fixture
def world(central_store: CentralStore, central_clock: SteppingClock) -> World:
    return World(central_store, central_clock)


# --- the tails the flows share -----------------------------------------------------------------


def _bind(w: World, client: str) -> None:
    w.bind(client)


def _install_tail(first: str = "book_installation") -> tuple[Do, ...]:
    """Book, book again (a moved appointment), install with the fitter's checkpoints."""
    return (Do("fitter", first), Do("fitter", "book_installation"),
            Do("fitter", "install_lock", checks=INSTALL_CHECKS, before=_bind))


def _removal_tail() -> tuple[Do, ...]:
    return (Do("alarm_admin", "put_removal_job"), Do("fitter", "book_removal"),
            Do("fitter", "book_removal"),
            Do("fitter", "remove_lock", checks=REMOVAL_CHECKS,
               before=World.unbind_and_return_alarm_keys),
            Do("alarm_admin", "check_key_register", before=World.return_provider_keys),
            Do("alarm_admin", "check_lock_system"))


ORDER = (Do("assessor", "send_order"),)
TO_CODE_LOCK = (*ORDER, Do("provider", "lock_already_installed", "no"))
TO_OPENS_DOOR = (*TO_CODE_LOCK, Do("provider", "code_lock", "no"))
TO_REFUSAL = (*TO_OPENS_DOOR, Do("provider", "home_care_only_opens_door", "no"))
REQUEST_WITH_KEYS = Do("provider", "request_lock", "keys_exist", before=World.provider_keys)
PUT_INSTALL_JOB = Do("alarm_admin", "put_install_job")

CANCEL = (Do("assessor", "send_cancellation"), Do("provider", "end_implementation"))
REMOVAL_REQUESTED = (*CANCEL, Do("provider", "client_has_lock", "yes"))

RECEIVE = (Do("alarm_admin", "receive_request"),
           Do("alarm_admin", "confirm_keys", before=World.alarm_keys))
TO_INSTALLED_CHECK = (*RECEIVE, Do("alarm_admin", "code_lock", "no"))
TO_ASSESSING = (*TO_INSTALLED_CHECK, Do("alarm_admin", "lock_already_installed", "no"))

END_REQUESTED = (Do("alarm_admin", "receive_end_request"),)


def _keys_and_bind(w: World, client: str) -> None:
    """2a.7: the keys are with the provider by the time the fitter comes."""
    w.provider_keys(client)
    w.bind(client)


def _services(*kinds: ImplementationKind) -> Callable[[World, str], None]:
    def given(w: World, client: str) -> None:
        w.services(client, *kinds)
    return given


def _pending(w: World, client: str) -> None:
    """A client known to the agents (lock pending) with a tag up meanwhile (section 5)."""
    w.client(client, "pending")
    w.services(client, HOME)
    w.rs.tags.add_stock(NORD, 5, w.provider)
    w.rs.tags.issue("04:00:00:00:00:00:" + f"{len(client):02X}", client, NORD, w.provider)


def _with_home_care_and_alarm(w: World, client: str) -> None:
    w.installed(client, HOME, ALARM_SVC)


def _with_home_care_only(w: World, client: str) -> None:
    w.installed(client, HOME)


def _with_alarm_only(w: World, client: str) -> None:
    w.installed(client, ALARM_SVC)


# --- what a branch leaves behind ------------------------------------------------------------


def _installed_through_the_binder(keys_in_request: bool) -> Callable[[World, Case], None]:
    def then(w: World, case: Case) -> None:
        [message] = w.rs.inbox.messages(w.alarm_admin, include_handled=True)
        assert (message.case_id, message.kind, message.keys_exist) == (
            case.id, JobKind.INSTALL, keys_in_request)
        assert message.handled_by == w.alarm_admin.name  # taken from the inbox (2a.5)
        assert w.rs.inbox.messages(w.alarm_admin) == []
        [job] = w.rs.binder.jobs(w.alarm_admin, open_only=False)
        assert (job.kind, job.done_by) == (JobKind.INSTALL, w.fitter.name)
        assert job.booking is not None and job.booking.fitter == w.fitter.name
        assert w.rs.schedule.bookings(fitter=w.fitter.name,
                                      actor=w.admin) == [job.booking]  # moved, not doubled
        assert [t.state for t in w.rs.tags.find(case.client_ref,
                                                actor=w.admin)] == [TagState.DUE_DOWN]
    return then


def _no_job(w: World, case: Case) -> None:
    assert w.rs.binder.jobs(w.alarm_admin, open_only=False) == []
    assert w.rs.inbox.messages(w.alarm_admin, include_handled=True) == []


def _alarm_stays(w: World, case: Case) -> None:
    assert case.alarm_stays and not case.file_moved_to_home_care
    [message] = w.rs.inbox.messages(w.alarm_admin, include_handled=True)
    assert (message.kind, message.keys_exist, message.handled_by) == (
        JobKind.REMOVAL, None, w.alarm_admin.name)
    running = w.rs.implementations.of_client(case.client_ref, actor=w.admin)
    assert [i.kind for i in running if i.running] == [ALARM_SVC]
    assert w.rs.binder.jobs(w.alarm_admin, open_only=False) == []


def _removed(w: World, case: Case) -> None:
    impls = w.rs.implementations.of_client(case.client_ref, actor=w.admin)
    assert impls and not any(i.running for i in impls)
    [job] = w.rs.binder.jobs(w.alarm_admin, open_only=False)
    last = max(i.ended_on for i in impls if i.ended_on)
    assert (job.kind, job.due_on, job.done_by) == (JobKind.REMOVAL, removal_due(last),
                                                   w.fitter.name)
    assert w.rs.keys.sets(case.client_ref, bound_only=True, actor=w.admin) == []
    receipts = w.rs.keys.receipts(case.client_ref, actor=w.admin)
    assert [r.case_id for r in receipts if r.unit is KeyUnit.ALARM_GROUP] in ([], [case.id])


def _file_moved(w: World, case: Case) -> None:
    assert case.file_moved_to_home_care and not case.alarm_stays
    assert w.rs.binder.jobs(w.alarm_admin, open_only=False) == []


def _keys_registered(w: World, case: Case) -> None:
    [keys] = w.rs.keys.sets(case.client_ref, actor=w.admin)
    assert (keys.unit, keys.case_id) == (KeyUnit.ALARM_GROUP, case.id)


# --- the branches ----------------------------------------------------------------------------

BRANCHES: dict[str, Branch] = {
    # 2a. Installation, assessed services
    "2a.3_lock_already_installed": Branch(
        Flow.INSTALL_ASSESSED, (*ORDER, Do("provider", "lock_already_installed", "yes")),
        "already_installed", lock_status="installed", then=_no_job),
    "2a.3_code_lock_documented": Branch(
        Flow.INSTALL_ASSESSED, (*TO_CODE_LOCK, Do("provider", "code_lock", "yes")),
        "no_lock_code_lock", (texts.CODE_LOCK,), lock_status="impossible", then=_no_job),
    "2a.3_opens_door_themself_declines_documented": Branch(
        Flow.INSTALL_ASSESSED,
        (*TO_OPENS_DOOR, Do("provider", "home_care_only_opens_door", "yes"),
         Do("provider", "declines_lock", "yes")),
        "no_lock_opens_door", (texts.OPENS_DOOR_THEMSELF,), lock_status="none", then=_no_job),
    "2a.3_opens_door_themself_accepts_lock_2a.4_to_2a.8": Branch(
        Flow.INSTALL_ASSESSED,
        (*TO_OPENS_DOOR, Do("provider", "home_care_only_opens_door", "yes"),
         Do("provider", "declines_lock", "no"), REQUEST_WITH_KEYS, PUT_INSTALL_JOB,
         *_install_tail()),
        "installed", lock_status="installed", given=_pending,
        then=_installed_through_the_binder(True)),
    "2a.3_client_refuses_assessor_agrees_no_lock_documented": Branch(
        Flow.INSTALL_ASSESSED,
        (*TO_REFUSAL, Do("provider", "client_refuses", "yes"),
         Do("assessor", "assessor_decision", "no_lock")),
        "no_lock_agreed", (texts.AGREED_WITH_ASSESSOR,), lock_status="none", then=_no_job),
    "2a.3_client_refuses_assessor_decides_install_2a.4_keys_missing": Branch(
        Flow.INSTALL_ASSESSED,
        (*TO_REFUSAL, Do("provider", "client_refuses", "yes"),
         Do("assessor", "assessor_decision", "install"),
         Do("provider", "request_lock", "keys_missing"), PUT_INSTALL_JOB,
         Do("fitter", "book_installation"),
         Do("fitter", "install_lock", checks=INSTALL_CHECKS, before=_keys_and_bind)),
        "installed", lock_status="installed", given=_pending,
        then=_installed_through_the_binder(False)),
    "2a.3_checkpoints_pass_2a.4_to_2a.8_installed": Branch(
        Flow.INSTALL_ASSESSED,
        (*TO_REFUSAL, Do("provider", "client_refuses", "no"), REQUEST_WITH_KEYS,
         PUT_INSTALL_JOB, *_install_tail()),
        "installed", lock_status="installed", given=_pending,
        then=_installed_through_the_binder(True)),
    # 2b. Removal, assessed services
    "2b.4_no_lock_installed": Branch(
        Flow.REMOVE_ASSESSED, (*CANCEL, Do("provider", "client_has_lock", "no")),
        "no_lock", given=_services(HOME, ALARM_SVC), then=_no_job),
    "2b.5_alarm_stays_lock_stays": Branch(
        Flow.REMOVE_ASSESSED, (*REMOVAL_REQUESTED, Do("alarm_admin", "alarm_decision", "stays")),
        "lock_stays", lock_status="installed", given=_with_home_care_and_alarm,
        then=_alarm_stays),
    "2b.5_alarm_ends_2b.6_to_2b.11_removed": Branch(
        Flow.REMOVE_ASSESSED,
        (*REMOVAL_REQUESTED, Do("alarm_admin", "alarm_decision", "ends"),
         Do("alarm_admin", "end_alarm_implementation"), *_removal_tail()),
        "removed", lock_status="none", given=_with_home_care_and_alarm, then=_removed),
    "2b.5_no_alarm_2b.6_to_2b.11_removed": Branch(
        Flow.REMOVE_ASSESSED,
        (*REMOVAL_REQUESTED, Do("alarm_admin", "alarm_decision", "no_alarm"), *_removal_tail()),
        "removed", lock_status="none", given=_with_home_care_only, then=_removed),
    # 3a. Installation, safety alarm only
    "3a.3_code_lock_no_lock": Branch(
        Flow.INSTALL_ALARM_ONLY, (*RECEIVE, Do("alarm_admin", "code_lock", "yes")),
        "no_lock_code_lock", lock_status="impossible"),
    "3a.3_lock_already_installed_keys_registered": Branch(
        Flow.INSTALL_ALARM_ONLY,
        (*TO_INSTALLED_CHECK, Do("alarm_admin", "lock_already_installed", "yes")),
        "already_installed", lock_status="installed", then=_keys_registered),
    "3a.4_no_lock_decided_keys_registered": Branch(
        Flow.INSTALL_ALARM_ONLY, (*TO_ASSESSING, Do("alarm_admin", "decide_lock", "no")),
        "no_lock_decided", lock_status="none", then=_keys_registered),
    "3a.4_lock_decided_3a.5_to_3a.7_installed": Branch(
        Flow.INSTALL_ALARM_ONLY,
        (*TO_ASSESSING, Do("alarm_admin", "decide_lock", "yes"), *_install_tail()),
        "installed", lock_status="installed", then=_keys_registered),
    # 3b. Removal, safety alarm only
    "3b.2_home_care_continues_file_moves": Branch(
        Flow.REMOVE_ALARM_ONLY, (*END_REQUESTED, Do("alarm_admin", "home_care_continues", "yes")),
        "file_moved", lock_status="installed", given=_with_home_care_and_alarm,
        then=_file_moved),
    "3b.2_no_lock_installed": Branch(
        Flow.REMOVE_ALARM_ONLY,
        (*END_REQUESTED, Do("alarm_admin", "home_care_continues", "no"),
         Do("alarm_admin", "lock_installed", "no")),
        "no_lock", given=_services(ALARM_SVC), then=_no_job),
    "3b.2_lock_installed_3b.3_to_3b.9_removed": Branch(
        Flow.REMOVE_ALARM_ONLY,
        (*END_REQUESTED, Do("alarm_admin", "home_care_continues", "no"),
         Do("alarm_admin", "lock_installed", "yes"),
         Do("alarm_admin", "end_alarm_implementation"), *_removal_tail()),
        "removed", lock_status="none", given=_with_alarm_only, then=_removed),
}


@pytest.mark.parametrize("name", list(BRANCHES))
def test_branch(world: World, name: str) -> None:
    branch = BRANCHES[name]
    client = f"K-{name}"
    if branch.given is not None:
        branch.given(world, client)
    before = world.lock_status(client)
    case = world.open(branch.flow, client)
    for do in branch.steps:
        world.take(case, do)
    case = world.rs.cases.get(case.id, actor=world.admin)

    assert (case.state, case.open) == (branch.outcome, False)
    assert case.outcome == machine(branch.flow).states[branch.outcome].outcome
    assert [s.action for s in case.steps] == [d.action for d in branch.steps]
    docs = world.rs.cases.documentation(client, actor=world.admin)
    assert [d.text for d in docs] == list(branch.documentation)
    for doc in docs:  # where the routine puts it: the provider's 2a.3 step, that field
        step = next(s for s in case.steps if s.seq == doc.step_seq)
        assert (doc.case_id, doc.seed, doc.who, doc.field) == (
            case.id, "2a.3", step.actor, "Personuppgifter, övrig information")
        assert step.documentation == doc.text and "document" in step.effects
    assert all(s.documentation is None for s in case.steps
               if s.seq not in {d.step_seq for d in docs})
    assert world.lock_status(client) == (branch.lock_status or before)
    if branch.then is not None:
        branch.then(world, case)


# --- the table takes every transition ----------------------------------------------------------


def _transitions_taken(branch: Branch) -> Iterator[tuple[str, str, str | None]]:
    m = machine(branch.flow)
    state = m.start
    everything = dict.fromkeys(
        [f for t in m.transitions() for f in t.requires], True)
    for do in branch.steps:
        step = m.apply(state, do.action, do.answer, m.actions[do.action].role, everything)
        yield (state, do.action, do.answer)
        state = step.to_state
    assert state == branch.outcome


@pytest.mark.parametrize("flow", list(Flow))
def test_the_branches_take_every_transition_of_the_flow(flow: Flow) -> None:
    taken = {t for b in BRANCHES.values() if b.flow is flow for t in _transitions_taken(b)}
    every = {(t.state, t.action, t.answer) for t in machine(flow).transitions()}
    assert every - taken == set()
    outcomes = {b.outcome for b in BRANCHES.values() if b.flow is flow}
    assert outcomes == {s.name for s in machine(flow).states.values() if s.terminal}


# --- what the branches must not do ---------------------------------------------------------


def test_2a_7_the_fitter_needs_keys_a_bound_lock_and_every_checkpoint(world: World) -> None:
    from routine.flows import UnmetRequirement

    client = world.client("K-2A7")
    case = world.open(Flow.INSTALL_ASSESSED, client)
    for do in (*TO_REFUSAL, Do("provider", "client_refuses", "no"),
               Do("provider", "request_lock", "keys_missing"), PUT_INSTALL_JOB,
               Do("fitter", "book_installation")):
        world.take(case, do)
    with pytest.raises(UnmetRequirement) as missing:
        world.rs.cases.act(case.id, "install_lock", None, world.fitter, checks=INSTALL_CHECKS)
    assert set(missing.value.unmet) == {"keys_exist", "lock_bound_to_client"}
    assert "install_lock" in str(missing.value)
    world.provider_keys(client)
    world.bind(client)
    with pytest.raises(UnmetRequirement) as unticked:
        world.rs.cases.act(case.id, "install_lock", None, world.fitter,
                     checks=("job_marked_done",))
    assert unticked.value.unmet == ("knob_labelled_with_key_number",)
    step = world.rs.cases.act(case.id, "install_lock", None, world.fitter, checks=INSTALL_CHECKS)
    assert step.checks == {"keys_exist": True, "lock_bound_to_client": True,
                           "knob_labelled_with_key_number": True, "job_marked_done": True}
    assert step.acting_as is Role.FITTER


def test_3a_2_cannot_proceed_before_keys_exist(world: World) -> None:
    from routine.flows import UnmetRequirement

    case = world.open(Flow.INSTALL_ALARM_ONLY, "K-3A2")
    world.rs.cases.act(case.id, "receive_request", None, world.alarm_admin)
    for _ in range(2):  # asking again changes nothing until the keys are registered
        with pytest.raises(UnmetRequirement, match="keys_exist"):
            world.rs.cases.act(case.id, "confirm_keys", None, world.alarm_admin)
        assert world.rs.cases.get(case.id, actor=world.admin).state == "awaiting_keys"
    world.provider_keys("K-3A2")  # a provider's set is not the alarm group's
    with pytest.raises(UnmetRequirement, match="keys_exist"):
        world.rs.cases.act(case.id, "confirm_keys", None, world.alarm_admin)
    world.alarm_keys("K-3A2")
    world.rs.cases.act(case.id, "confirm_keys", None, world.alarm_admin)
    assert world.rs.cases.get(case.id, actor=world.admin).state == "code_lock_check"


def test_2b_6_removal_only_when_every_implementation_has_ended(world: World) -> None:
    from routine.flows import UnmetRequirement

    client = world.installed("K-2B6", HOME, ALARM_SVC, ImplementationKind.NIGHT_HELP)
    case = world.open(Flow.REMOVE_ASSESSED, client)
    assert case.provider_unit == NORD  # the provider of the running home care
    for do in (*REMOVAL_REQUESTED, Do("alarm_admin", "alarm_decision", "ends"),
               Do("alarm_admin", "end_alarm_implementation")):
        world.take(case, do)
    running = [i.kind for i in world.rs.implementations.of_client(client,
                                                                  actor=world.admin) if i.running]
    assert running == [ImplementationKind.NIGHT_HELP]
    with pytest.raises(UnmetRequirement, match="all_implementations_ended"):
        world.rs.cases.act(case.id, "put_removal_job", None, world.alarm_admin)
    assert world.rs.binder.jobs(world.alarm_admin) == []
    world.clock.advance(86_400)
    world.rs.implementations.end(client, ImplementationKind.NIGHT_HELP, world.central.today(),
                                world.alarm_admin)
    world.rs.cases.act(case.id, "put_removal_job", None, world.alarm_admin)
    [job] = world.rs.binder.jobs(world.alarm_admin)
    assert job.due_on == removal_due(world.central.today())  # 14 days from the LAST end


def test_2b_9_key_register_checked_only_once_every_key_number_is_unbound(world: World) -> None:
    from routine.flows import UnmetRequirement

    client = world.installed("K-2B9", HOME)
    case = world.open(Flow.REMOVE_ASSESSED, client)
    for do in (*REMOVAL_REQUESTED, Do("alarm_admin", "alarm_decision", "no_alarm"),
               *_removal_tail()[:4]):
        world.take(case, do)
    [provider_set] = world.rs.keys.sets(client, bound_only=True, actor=world.admin)
    assert not world.rs.keys.unbound(provider_set.key_number, actor=world.admin)
    with pytest.raises(UnmetRequirement, match="key_number_unbound"):
        world.rs.cases.act(case.id, "check_key_register", None, world.alarm_admin)
    world.return_provider_keys(client)
    assert world.rs.keys.unbound(provider_set.key_number, actor=world.admin)
    world.rs.cases.act(case.id, "check_key_register", None, world.alarm_admin)


def test_2b_8_the_fitter_cannot_tick_what_the_data_shows(world: World) -> None:
    from central.cases.errors import CaseConflict
    from routine.flows import UnmetRequirement

    client = world.installed("K-2B8", ALARM_SVC)
    case = world.open(Flow.REMOVE_ALARM_ONLY, client)
    for do in (*END_REQUESTED, Do("alarm_admin", "home_care_continues", "no"),
               Do("alarm_admin", "lock_installed", "yes"),
               Do("alarm_admin", "end_alarm_implementation"), *_removal_tail()[:3]):
        world.take(case, do)
    with pytest.raises(CaseConflict, match="keys_returned_receipt_signed is not ticked"):
        world.rs.cases.act(case.id, "remove_lock", None, world.fitter,
                     checks=(*REMOVAL_CHECKS, "keys_returned_receipt_signed"))
    with pytest.raises(CaseConflict, match="unknown checkpoint"):
        world.rs.cases.act(case.id, "remove_lock", None, world.fitter, checks=("looks_fine",))
    with pytest.raises(UnmetRequirement) as unmet:
        world.rs.cases.act(case.id, "remove_lock", None, world.fitter, checks=REMOVAL_CHECKS)
    assert set(unmet.value.unmet) == {"lock_unbound_in_lock_system",
                                      "keys_returned_receipt_signed"}


def test_booking_steps_go_through_the_schedule(world: World) -> None:
    from central.cases.errors import CaseConflict

    client = world.client("K-BOOK")
    case = world.open(Flow.INSTALL_ALARM_ONLY, client)
    for do in (*TO_ASSESSING, Do("alarm_admin", "decide_lock", "yes")):
        world.take(case, do)
    with pytest.raises(CaseConflict, match="book"):
        world.rs.cases.act(case.id, "book_installation", None, world.fitter)
    assert world.rs.schedule.bookings(actor=world.admin) == []
    assert world.rs.cases.get(case.id, actor=world.admin).state == "install_job_in_binder"


def test_routine_errors_pass_through_with_state_and_allowed_actions(world: World) -> None:
    from routine.flows import NotAllowed

    case = world.open(Flow.INSTALL_ASSESSED, world.client("K-ERR"))
    with pytest.raises(NotAllowed) as wrong:
        world.rs.cases.act(case.id, "code_lock", "yes", world.provider)
    assert wrong.value.state == "new"
    assert [a.name for a in wrong.value.allowed] == ["send_order"]
    assert "send_order by assessor" in str(wrong.value)
    world.rs.cases.act(case.id, "send_order", None, world.assessor)
    with pytest.raises(NotAllowed, match=r"takes yes\|no"):
        world.rs.cases.act(case.id, "lock_already_installed", "maybe", world.provider)
    world.rs.cases.act(case.id, "lock_already_installed", "yes", world.provider)
    with pytest.raises(NotAllowed, match="closed"):
        world.rs.cases.act(case.id, "code_lock", "no", world.provider)


def test_one_open_case_per_client_and_flow(world: World) -> None:
    from central.cases.errors import CaseConflict

    client = world.client("K-ONE")
    first = world.open(Flow.INSTALL_ASSESSED, client)
    with pytest.raises(CaseConflict, match=f"case {first.id}"):
        world.open(Flow.INSTALL_ASSESSED, client)
    world.open(Flow.INSTALL_ALARM_ONLY, client)  # another flow may run beside it
    world.rs.cases.act(first.id, "send_order", None, world.assessor)
    world.rs.cases.act(first.id, "lock_already_installed", "yes", world.provider)
    again = world.open(Flow.INSTALL_ASSESSED, client)  # closed: a new order may come
    assert again.id != first.id and again.state == "new"


def test_an_admin_may_walk_a_case_and_is_recorded_as_itself(world: World) -> None:
    client = world.client("K-ADM")
    case = world.rs.cases.open(Flow.INSTALL_ASSESSED, client, world.admin, provider_unit=NORD,
                              assessor_unit="bestallarenhet-1")
    for action, answer in (("send_order", None), ("lock_already_installed", "no"),
                           ("code_lock", "yes")):
        world.rs.cases.act(case.id, action, answer, world.admin)
    steps = world.rs.cases.get(case.id, actor=world.admin).steps
    assert [(s.actor, s.role, s.acting_as) for s in steps] == [
        ("admin-1", "admin", Role.ASSESSOR), ("admin-1", "admin", Role.PROVIDER),
        ("admin-1", "admin", Role.PROVIDER)]
    [doc] = world.rs.cases.documentation(client, actor=world.admin)
    assert (doc.text, doc.who) == (texts.CODE_LOCK, "admin-1")
