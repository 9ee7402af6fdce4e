"""Who may do what (role AND unit), the audit trail, and the shared schedule.

On SQLite and PostgreSQL; the concurrent double booking runs on both (two threads,
two connections: exactly one of them gets the fitter's time).
"""

from __future__ import annotations

import ast
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from central import db
from central.cases import db as tables
from central.cases.errors import AccessDenied, CaseError, DoubleBooking, UnknownRecord
from central.cases.store import RoutineStore
from central.cases.values import ImplementationKind, Principal
from central.errors import CentralError
from central.store import CentralStore
from routine.flows import Flow, NotAllowed, machine
from routine.keys import KeyUnit
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import ALARM, NORD, SYD, Do, World

CASES_PACKAGE = Path(__file__).resolve().parents[2] / "central" / "cases"
SERVICES_PACKAGE = CASES_PACKAGE.parent / "services"


@pytest.fixture
def world(central_store: CentralStore, central_clock: SteppingClock) -> World:
    return World(central_store, central_clock)


def _to_install_job(world: World, client: str) -> int:
    """A 3a case with an install job in the binder; returns the job's id."""
    world.client(client)
    case = world.open(Flow.INSTALL_ALARM_ONLY, client)
    for do in (Do("alarm_admin", "receive_request"),
               Do("alarm_admin", "confirm_keys", before=World.alarm_keys),
               Do("alarm_admin", "code_lock", "no"),
               Do("alarm_admin", "lock_already_installed", "no"),
               Do("alarm_admin", "decide_lock", "yes")):
        world.take(case, do)
    return next(j.id for j in world.rs.binder.jobs(world.alarm_admin) if j.case_id == case.id)


def _ordered(world: World, client: str = "K-ACC") -> int:
    case = world.open(Flow.INSTALL_ASSESSED, world.client(client))
    world.rs.cases.act(case.id, "send_order", None, world.assessor)
    return case.id


# --- principals ------------------------------------------------------------------------------


def test_principals_carry_their_unit(world: World) -> None:
    devices = {d.name: d for d in world.central.list_devices()}
    assert (devices["utforare-nord"].role, devices["utforare-nord"].unit) == ("provider", NORD)
    assert devices["admin-1"].unit is None
    assert devices["montor-1"].as_dict()["unit"] == ALARM
    assert world.rs.principals.get("montor-1") == Principal("montor-1", "fitter", ALARM)
    with pytest.raises(CentralError, match="works for a unit"):
        world.central.add_device("utforare-x", "provider")
    with pytest.raises(CentralError, match="not usable"):
        world.central.add_device("utforare-y", "provider", " padded ")
    with pytest.raises(CentralError, match="role"):
        world.central.add_device("boss", "chief", "x")
    world.central.revoke_device("montor-2")
    with pytest.raises(UnknownRecord):
        world.rs.principals.get("montor-2")


# --- role and unit -------------------------------------------------------------------------


def test_only_assessors_open_2a_and_2b_only_alarm_admins_3a_and_3b(world: World) -> None:
    client = world.client("K-OPEN")
    for who in (world.provider, world.alarm_admin, world.fitter, world.agent):
        with pytest.raises(AccessDenied):
            world.rs.cases.open(Flow.INSTALL_ASSESSED, client, who, provider_unit=NORD)
    for who in (world.assessor, world.provider, world.fitter, world.night_admin):
        with pytest.raises(AccessDenied):
            world.rs.cases.open(Flow.INSTALL_ALARM_ONLY, client, who)
    case = world.rs.cases.open(Flow.INSTALL_ASSESSED, client, world.assessor, provider_unit=NORD)
    assert (case.assessor_unit, case.provider_unit) == ("bestallarenhet-1", NORD)
    world.rs.cases.open(Flow.INSTALL_ALARM_ONLY, client, world.alarm_admin)


def test_a_step_for_another_role_is_access_denied(world: World) -> None:
    case_id = _ordered(world)
    for who in (world.alarm_admin, world.fitter, world.assessor):
        with pytest.raises(AccessDenied) as denied:
            world.rs.cases.act(case_id, "lock_already_installed", "no", who)
        assert "for the provider" in denied.value.reason
        assert "lock_already_installed by provider" in denied.value.reason  # allowed there
    with pytest.raises(AccessDenied, match="no part in the routine"):
        world.rs.cases.act(case_id, "lock_already_installed", "no", world.agent)
    assert world.rs.cases.get(case_id, actor=world.admin).state == "ordered"
    assert len(world.rs.cases.get(case_id,
                                  actor=world.admin).steps) == 1  # nothing recorded: refused


def test_a_provider_acts_only_on_cases_of_its_own_unit(world: World) -> None:
    case_id = _ordered(world)
    # Another unit's case is answered as a missing one: same error, same message shape.
    for some_id in (case_id, 99_999):
        with pytest.raises(UnknownRecord, match=f"no case {some_id} among those provider "
                           f"utforare-syd of {SYD} may see"):
            world.rs.cases.act(some_id, "lock_already_installed", "no", world.other_provider)
        with pytest.raises(UnknownRecord, match=f"no case {some_id} among"):
            world.rs.cases.get(some_id, actor=world.other_provider)
        with pytest.raises(AccessDenied, match="no part in the routine"):
            world.rs.cases.get(some_id, actor=world.agent)
    assert world.rs.cases.find(actor=world.other_provider) == []
    assert [c.id for c in world.rs.cases.find(actor=world.provider)] == [case_id]
    world.rs.cases.act(case_id, "lock_already_installed", "no", world.provider)


def test_an_assessor_acts_only_on_its_own_units_cases(world: World) -> None:
    case_id = _ordered(world)
    for do in (("lock_already_installed", "no"), ("code_lock", "no"),
               ("home_care_only_opens_door", "no"), ("client_refuses", "yes")):
        world.rs.cases.act(case_id, *do, world.provider)
    with pytest.raises(UnknownRecord, match=f"no case {case_id} among those assessor"):
        world.rs.cases.act(case_id, "assessor_decision", "install", world.other_assessor)
    assert world.rs.cases.find(actor=world.other_assessor) == []
    world.rs.cases.act(case_id, "assessor_decision", "install", world.assessor)
    alarm_case = world.open(Flow.INSTALL_ALARM_ONLY, "K-ACC")
    with pytest.raises(UnknownRecord, match=f"no case {alarm_case.id} among"):
        world.rs.cases.get(alarm_case.id, actor=world.assessor)
    assert [c.flow for c in world.rs.cases.find(actor=world.assessor)] == [Flow.INSTALL_ASSESSED]


def test_the_alarm_groups_work_is_the_alarm_groups(world: World) -> None:
    job_id = _to_install_job(world, "K-JOB")
    for who in (world.provider, world.assessor, world.night_admin, world.agent):
        with pytest.raises(AccessDenied):
            world.rs.binder.jobs(who)
        with pytest.raises(AccessDenied):
            world.rs.inbox.messages(who)
    stranger = world.enrol("montor-natt", "fitter", "nattgruppen")
    with pytest.raises(AccessDenied, match="alarm group"):
        world.rs.binder.jobs(stranger)
    with pytest.raises(AccessDenied):
        world.rs.schedule.book(job_id, stranger.name, *world.slot(), stranger)
    with pytest.raises(UnknownRecord, match="no fitter named 'montor-natt'"):
        world.rs.schedule.book(job_id, stranger.name, *world.slot(), world.admin)
    with pytest.raises(AccessDenied, match="only for themself"):
        world.rs.schedule.book(job_id, world.fitter.name, *world.slot(), world.other_fitter)
    with pytest.raises(AccessDenied, match="is for: fitter"):  # the routine: fitters book
        world.rs.schedule.book(job_id, world.fitter.name, *world.slot(), world.alarm_admin)
    assert world.rs.schedule.bookings(actor=world.admin) == []
    world.rs.schedule.book(job_id, world.fitter.name, *world.slot(), world.fitter)
    assert [j.id for j in world.rs.binder.jobs(world.fitter, fitter=world.fitter.name)] == [job_id]


def test_units_keep_their_own_keys_and_implementations(world: World) -> None:
    client = world.client("K-KEYS")
    with pytest.raises(AccessDenied):
        world.rs.implementations.start(client, ImplementationKind.HOME_CARE, NORD,
                                      date(2026, 11, 2), world.other_provider)
    with pytest.raises(AccessDenied):
        world.rs.implementations.start(client, ImplementationKind.SAFETY_ALARM, ALARM,
                                      date(2026, 11, 2), world.provider)
    world.services(client, ImplementationKind.HOME_CARE, ImplementationKind.SAFETY_ALARM)
    with pytest.raises(AccessDenied):
        world.rs.keys.register(client, KeyUnit.ALARM_GROUP, "N-1", world.provider)
    with pytest.raises(AccessDenied):
        world.rs.keys.register(client, KeyUnit.HOME_CARE_PROVIDER, "N-1", world.alarm_admin,
                                  holder=NORD)
    world.rs.keys.register(client, KeyUnit.HOME_CARE_PROVIDER, "N-1", world.provider)
    with pytest.raises(AccessDenied):
        world.rs.keys.return_keys(client, KeyUnit.HOME_CARE_PROVIDER, "Brukare",
                                  world.other_provider,
                             holder=NORD)
    with pytest.raises(AccessDenied):
        world.rs.tags.add_stock(NORD, 3, world.other_provider)
    with pytest.raises(AccessDenied):
        world.rs.tags.issue("04A1B2C3", client, NORD, world.other_provider)


# --- the audit trail -----------------------------------------------------------------------


def _writes_to(path: Path, table: str) -> list[str]:
    """UPDATE/DELETE statements on ``table`` in a module: sa.update(x.table),
    sa.delete(x.table), x.table.update()/.delete(), or SQL text naming them."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            target = node.args[0] if node.args else node.func.value
            if name in ("update", "delete") and table in ast.unparse(target):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)[:80]}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = " ".join(node.value.upper().split())
            if f"UPDATE {table.upper()}" in text or f"DELETE FROM {table.upper()}" in text:
                found.append(f"{path.name}:{node.lineno} {node.value[:80]}")
    return found


def test_no_code_path_updates_or_deletes_the_audit_trail() -> None:
    modules = sorted([*CASES_PACKAGE.glob("*.py"), *SERVICES_PACKAGE.glob("*.py")])
    assert SERVICES_PACKAGE / "cases.py" in modules
    assert [w for path in modules for w in _writes_to(path, "case_steps")] == []
    # the scanner does see such writes (it would catch one added later)
    assert _writes_to(SERVICES_PACKAGE / "cases.py", "cases")
    assert _writes_to(CASES_PACKAGE / "effects.py", "nfc_tags")


def test_the_database_refuses_to_change_the_audit_trail(world: World,
                                                        database_url: str) -> None:
    case_id = _ordered(world)
    engine = db.create_engine(db.database_url(database_url))
    try:
        for statement in (sa.update(tables.case_steps).values(actor="someone else"),
                          sa.delete(tables.case_steps)):
            with pytest.raises(sa.exc.DatabaseError, match="append-only"), \
                    engine.begin() as conn:
                conn.execute(statement)
    finally:
        engine.dispose()
    assert [s.actor for s in world.rs.cases.get(case_id,
                                                actor=world.admin).steps] == ["handlaggare-1"]


def test_the_audit_trail_is_complete_and_in_order(world: World) -> None:
    client = world.client("K-AUDIT")
    case = world.open(Flow.INSTALL_ASSESSED, client)
    taken = [("assessor", "send_order", None), ("provider", "lock_already_installed", "no"),
             ("provider", "code_lock", "no"), ("provider", "home_care_only_opens_door", "yes"),
             ("provider", "declines_lock", "yes")]
    times = []
    for who, action, answer in taken:
        world.clock.advance(60)
        times.append(world.clock.at)
        with pytest.raises(NotAllowed):  # refused attempts leave no trace
            world.rs.cases.act(case.id, "put_install_job", None, world.alarm_admin)
        world.rs.cases.act(case.id, action, answer, getattr(world, who), note=f"by {who}")
    steps = world.rs.cases.get(case.id, actor=world.admin).steps
    assert [(s.action, s.answer) for s in steps] == [(a, b) for _, a, b in taken]
    assert [s.at for s in steps] == times
    assert [s.seq for s in steps] == sorted({s.seq for s in steps})
    assert steps[0].from_state == machine(Flow.INSTALL_ASSESSED).start
    assert all(a.to_state == b.from_state for a, b in itertools.pairwise(steps))
    assert steps[-1].to_state == world.rs.cases.get(case.id,
                                                    actor=world.admin).state == "no_lock_opens_door"
    people = [getattr(world, who) for who, _, _ in taken]
    assert [(s.actor, s.role, s.unit) for s in steps] == [(p.name, p.role, p.unit)
                                                          for p in people]
    assert [s.note for s in steps] == [f"by {who}" for who, _, _ in taken]
    assert [s.seed for s in steps] == ["2a.1-2a.2", "2a.3", "2a.3", "2a.3", "2a.3"]
    assert steps[-1].effects == ("document", "case_closed")


def test_a_failed_effect_leaves_no_step(world: World) -> None:
    """3a.3 records the keys; with the key set returned meanwhile the step fails whole."""
    client = world.client("K-ATOMIC")
    case = world.open(Flow.INSTALL_ALARM_ONLY, client)
    world.take(case, Do("alarm_admin", "receive_request"))
    world.take(case, Do("alarm_admin", "confirm_keys", before=World.alarm_keys))
    world.take(case, Do("alarm_admin", "code_lock", "no"))
    world.rs.keys.return_keys(client, KeyUnit.ALARM_GROUP, "Brukare", world.alarm_admin)
    with pytest.raises(CaseError, match="no key set of the alarm group"):
        world.rs.cases.act(case.id, "lock_already_installed", "yes", world.alarm_admin)
    after = world.rs.cases.get(case.id, actor=world.admin)
    assert (after.state, len(after.steps)) == ("installed_check", 3)
    assert world.lock_status(client) == "pending"


def test_routine_names_fit_the_audit_columns() -> None:
    for flow in Flow:
        m = machine(flow)
        names = [*m.states, *m.actions, *(a for act in m.actions.values() for a in act.answers),
                 *(t.seed for t in m.transitions()),
                 *(s.outcome for s in m.states.values() if s.outcome)]
        assert max(len(n) for n in names) <= tables.SHORT, flow


# --- the shared schedule -------------------------------------------------------------------


def test_double_booking_of_a_fitter_is_refused(world: World) -> None:
    first, second = _to_install_job(world, "K-A"), _to_install_job(world, "K-B")
    start = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
    booked = world.rs.schedule.book(first, world.fitter.name, start, start + timedelta(hours=2),
                           world.fitter)
    with pytest.raises(DoubleBooking) as clash:
        world.rs.schedule.book(second, world.fitter.name, start + timedelta(hours=1),
                      start + timedelta(hours=3), world.fitter)
    assert clash.value.clash == booked
    assert "job " + str(first) in str(clash.value) and "K-A" in str(clash.value)
    assert world.rs.cases.get(world.rs.binder.job(second, actor=world.admin).case_id,
                              actor=world.admin).state == "install_job_in_binder"
    # back to back is no clash; another fitter may take the same hour
    world.rs.schedule.book(second, world.fitter.name, start + timedelta(hours=2),
                  start + timedelta(hours=3), world.fitter)
    third = _to_install_job(world, "K-C")
    world.rs.schedule.book(third, world.other_fitter.name, start, start + timedelta(hours=2),
                  world.other_fitter)
    # moving a booking to overlap itself is fine: the old time is given up
    moved = world.rs.schedule.book(first, world.fitter.name, start + timedelta(minutes=30),
                          start + timedelta(hours=2), world.fitter)
    later = world.rs.binder.job(second, actor=world.admin).booking
    assert later is not None
    assert [b.id for b in world.rs.schedule.bookings(fitter=world.fitter.name,
                                                     actor=world.admin)] == [moved.id, later.id]
    assert [b.fitter for b in world.rs.schedule.bookings(day=date(2026, 12, 8),
                                                         actor=world.admin)] == [
        world.other_fitter.name, world.fitter.name, world.fitter.name]
    assert world.rs.schedule.bookings(day=date(2026, 12, 9), actor=world.admin) == []
    assert [j.id for j in world.rs.binder.for_fitter(world.admin, world.fitter.name)] == [first,
                                                                                          second]
    with pytest.raises(CaseError, match="ends after it starts"):
        world.rs.schedule.book(third, world.other_fitter.name, start, start, world.other_fitter)


def test_concurrent_bookings_of_one_fitter_exactly_one_wins(
        database_url: str, central_clock: SteppingClock) -> None:
    """Two processes' worth of stores (own engines), two threads, the same hour."""
    stores = [CentralStore.open(database_url, clock=central_clock) for _ in range(2)]
    try:
        world = World(stores[0], central_clock)
        jobs = [_to_install_job(world, f"K-RACE-{i}") for i in range(2)]
        routines = [RoutineStore(s) for s in stores]
        start = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)
        barrier = threading.Barrier(2)

        def book(i: int) -> str:
            barrier.wait()
            try:
                routines[i].schedule.book(jobs[i], world.fitter.name, start,
                                          start + timedelta(hours=1),
                                 world.fitter)
            except DoubleBooking:
                return "refused"
            return "booked"

        for _ in range(3):
            with ThreadPoolExecutor(2) as pool:
                results = sorted(pool.map(book, range(2)))
            assert results == ["booked", "refused"]
            assert len(world.rs.schedule.bookings(fitter=world.fitter.name, day=start.date(),
                                                  actor=world.admin)) == 1
            start += timedelta(days=1)  # the winner's job moves: the next round is fresh
    finally:
        for s in stores:
            s.close()


def test_ending_another_units_implementation_looks_like_none_running(world: World) -> None:
    from central.cases.errors import ImplementationConflict
    from central.cases.values import ImplementationKind

    client = world.client("K-END")
    world.services(client, ImplementationKind.HOME_CARE)  # run by NORD
    for some in (client, world.client("K-NONE")):
        with pytest.raises(ImplementationConflict, match="no running home_care"):
            world.rs.implementations.end(some, ImplementationKind.HOME_CARE,
                                        world.clock.at.date(), world.other_provider)
    with pytest.raises(AccessDenied, match="no part in the routine"):
        world.rs.implementations.end(client, ImplementationKind.HOME_CARE,
                                    world.clock.at.date(), world.agent)
    ended = world.rs.implementations.end(client, ImplementationKind.HOME_CARE,
                                        world.clock.at.date(), world.provider)
    assert ended.ended_on == world.clock.at.date()
