"""Implementations, the key register, NFC tags and their stock; the schema migration.

On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from alembic import command

from central import db
from central.cases.errors import (
    AccessDenied,
    CaseConflict,
    ImplementationConflict,
    KeyNumberBound,
    NoKeysBound,
    TagNotIssuable,
    TagStockEmpty,
    UnknownRecord,
)
from central.cases.store import RoutineStore
from central.cases.values import ImplementationKind
from central.errors import ReferenceDataError
from central.store import CentralStore
from routine.flows import Flow
from routine.keys import KeyPolicy, KeyRuleError, KeyUnit
from routine.tags import TagError, TagState
from sync.protocol import ReferenceKind
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import ALARM, NORD, SYD, Do, World

HOME, ALARM_SVC = ImplementationKind.HOME_CARE, ImplementationKind.SAFETY_ALARM
NIGHT_HELP = ImplementationKind.NIGHT_HELP
TAG, TAG2 = "04:aa:00:00:00:00:01", "04AA0000000002"


@pytest.fixture
def world(central_store: CentralStore, central_clock: SteppingClock) -> World:
    return World(central_store, central_clock)


def _reference(world: World, kind: ReferenceKind, key: str) -> dict[str, object] | None:
    items, _, _ = world.central.reference_since(0, 1000)
    found = [i.data for i in items if i.kind == kind and i.key == key and not i.deleted]
    return found[-1] if found else None


def _active(world: World, uid: str) -> object:
    tag = _reference(world, ReferenceKind.TAG, uid)
    assert tag is not None
    return tag["active"]


# --- implementations -------------------------------------------------------------------------


def test_implementations_run_one_per_kind_and_end(world: World) -> None:
    client = world.client("K-IMPL")
    started = world.rs.implementations.start(client, HOME, NORD, date(2026, 11, 2),
                                            world.provider)
    assert started.running and started.unit == NORD
    with pytest.raises(ImplementationConflict, match="already has a running home_care"):
        world.rs.implementations.start(client, HOME, NORD, date(2026, 11, 3), world.provider)
    with pytest.raises(ImplementationConflict, match="no running safety_alarm"):
        world.rs.implementations.end(client, ALARM_SVC, date(2026, 11, 3), world.alarm_admin)
    with pytest.raises(CaseConflict, match="before it started"):
        world.rs.implementations.end(client, HOME, date(2026, 11, 1), world.provider)
    with pytest.raises(ValueError):
        world.rs.implementations.start(client, "cleaning", NORD, date(2026, 11, 2),
                                      world.provider)
    ended = world.rs.implementations.end(client, HOME, date(2026, 11, 20), world.provider)
    assert (ended.ended_on, ended.ended_by, ended.running) == (date(2026, 11, 20),
                                                               "utforare-nord", False)
    again = world.rs.implementations.start(client, HOME, NORD, date(2026, 11, 25),
                                          world.provider)
    assert [i.id for i in world.rs.implementations.of_client(client,
                                                             actor=world.admin)] == [started.id,
                                                                                     again.id]


def test_when_every_service_ends_the_tags_come_down(world: World) -> None:
    client = world.client("K-SLUT")
    world.services(client, HOME, NIGHT_HELP)
    world.rs.tags.add_stock(NORD, 1, world.provider)
    world.rs.tags.issue(TAG, client, NORD, world.provider)
    world.rs.implementations.end(client, HOME, world.central.today(), world.provider)
    assert world.rs.tags.get(TAG,
                             actor=world.admin).state is TagState.ISSUED  # night help still visits
    world.rs.implementations.end(client, NIGHT_HELP, world.central.today(), world.alarm_admin)
    assert world.rs.tags.get(TAG, actor=world.admin).state is TagState.DUE_DOWN


# --- the key register ----------------------------------------------------------------------


def test_key_numbers_are_unique_while_bound(world: World) -> None:
    a, b = world.client("K-A"), world.client("K-B")
    world.services(a, HOME)
    keys = world.rs.keys.register(a, KeyUnit.HOME_CARE_PROVIDER, " 4711 ", world.provider)
    assert (keys.key_number, keys.holder, keys.bound) == ("4711", NORD, True)
    with pytest.raises(KeyNumberBound, match="bound to client K-A"):
        world.rs.keys.register(b, KeyUnit.ALARM_GROUP, "4711", world.alarm_admin)
    assert not world.rs.keys.unbound("4711", actor=world.admin)
    with pytest.raises(KeyRuleError, match="signed_by"):
        world.rs.keys.return_keys(a, KeyUnit.HOME_CARE_PROVIDER, " ", world.provider)
    receipt = world.rs.keys.return_keys(a, KeyUnit.HOME_CARE_PROVIDER, "Brukare A", world.provider)
    assert (receipt.key_numbers, receipt.returned_by) == (("4711",), "utforare-nord")
    assert world.rs.keys.unbound("4711", actor=world.admin)
    [returned] = world.rs.keys.sets(a, actor=world.admin)
    assert (returned.bound, returned.receipt_id) == (False, receipt.id)
    with pytest.raises(NoKeysBound):
        world.rs.keys.return_keys(a, KeyUnit.HOME_CARE_PROVIDER, "Brukare A", world.provider)
    rebound = world.rs.keys.register(b, KeyUnit.ALARM_GROUP, "4711", world.alarm_admin)
    assert rebound.holder == ALARM and world.rs.keys.sets(b, bound_only=True,
                                                          actor=world.admin) == [rebound]
    night = world.rs.keys.register(b, KeyUnit.NIGHT_GROUP, "4712", world.alarm_admin)
    assert night.holder == "nattgruppen"


def test_required_key_sets_follow_section_4(world: World) -> None:
    client = world.client("K-4")
    world.services(client, HOME, ALARM_SVC)
    assert world.rs.keys.required(client, actor=world.admin) == {
        KeyUnit.HOME_CARE_PROVIDER: 1, KeyUnit.ALARM_GROUP: 1, KeyUnit.NIGHT_GROUP: 0}
    assert world.rs.keys.required(client, other_agreement=True, actor=world.admin)[
        KeyUnit.HOME_CARE_PROVIDER] == 0
    case = world.open(Flow.INSTALL_ASSESSED, client)
    for do in (Do("assessor", "send_order"), Do("provider", "lock_already_installed", "no"),
               Do("provider", "code_lock", "yes")):
        world.take(case, do)
    assert world.rs.keys.required(client,
                                  actor=world.admin)[KeyUnit.HOME_CARE_PROVIDER] == 1  # "both"
    only_alarm = KeyPolicy(code_lock_sets="alarm_only")
    assert world.rs.keys.required(client, policy=only_alarm,
                                  actor=world.admin)[KeyUnit.HOME_CARE_PROVIDER] == 0
    world.services(client, NIGHT_HELP)
    assert world.rs.keys.required(client, actor=world.admin)[KeyUnit.NIGHT_GROUP] == 1


# --- NFC tags ------------------------------------------------------------------------------


def test_tags_only_for_a_pending_or_impossible_lock_and_from_stock(world: World) -> None:
    pending, installed = world.client("K-P"), world.client("K-I", "installed")
    impossible, declined = world.client("K-X", "impossible"), world.client("K-N", "none")
    with pytest.raises(TagStockEmpty, match="hemtjanst-nord has no NFC tags"):
        world.rs.tags.issue(TAG, pending, NORD, world.provider)
    assert world.rs.tags.add_stock(NORD, 2, world.provider) == 2
    with pytest.raises(TagNotIssuable, match="'installed'"):
        world.rs.tags.issue(TAG, installed, NORD, world.provider)
    with pytest.raises(TagNotIssuable, match="'none'"):
        world.rs.tags.issue(TAG, declined, NORD, world.provider)
    with pytest.raises(TagNotIssuable, match="not in the reference data"):
        world.rs.tags.issue(TAG, "K-UNKNOWN", NORD, world.provider)
    with pytest.raises(ReferenceDataError, match="bytes"):
        world.rs.tags.issue("04AA", pending, NORD, world.provider)
    assert world.rs.tags.stock(NORD, actor=world.admin) == 2  # refusals take nothing

    tag = world.rs.tags.issue(TAG, pending, NORD, world.provider)
    assert (tag.uid, tag.state, tag.client_ref) == ("04AA0000000001", TagState.ISSUED, pending)
    assert _reference(world, ReferenceKind.TAG, tag.uid) == {
        "uid": tag.uid, "client_ref": pending, "active": True}
    with pytest.raises(TagNotIssuable, match="already issued"):
        world.rs.tags.issue(TAG, impossible, NORD, world.provider)
    world.rs.tags.issue(TAG2, impossible, NORD, world.provider)
    assert world.rs.tags.stock(NORD, actor=world.admin) == 0
    with pytest.raises(TagStockEmpty):
        world.rs.tags.issue("04AA0000000003", pending, NORD, world.provider)
    assert world.rs.tags.stock("hemtjanst-syd", actor=world.admin) == 0

    lenient = RoutineStore(world.central, tag_when_no_lock_by_choice=True)
    world.rs.tags.add_stock(NORD, 1, world.provider)
    assert lenient.tags.issue("04AA0000000004", declined, NORD, world.provider).client_ref == (
        declined)


def test_a_tag_comes_down_only_once_the_lock_is_installed(world: World) -> None:
    client = world.client("K-NER")
    world.rs.tags.add_stock(NORD, 2, world.provider)
    world.rs.tags.issue(TAG, client, NORD, world.provider)
    with pytest.raises(TagError, match="take_down"):
        world.rs.tags.taken_down(TAG, world.provider)
    # Another unit's tag is answered as a missing one (no answer tells which exist).
    for uid in ("04AA0000000001", "04AA00000000FF"):  # TAG, and one never issued
        with pytest.raises(UnknownRecord, match=f"no NFC tag {uid} was issued to {SYD}"):
            world.rs.tags.lost(uid, world.other_provider)
    with pytest.raises(AccessDenied, match="no part in the routine"):
        world.rs.tags.lost(TAG, world.agent)
    case = world.open(Flow.INSTALL_ASSESSED, client)
    for do in (Do("assessor", "send_order"), Do("provider", "lock_already_installed", "yes")):
        world.take(case, do)
    assert world.lock_status(client) == "installed"
    assert world.rs.tags.get(TAG, actor=world.admin).state is TagState.DUE_DOWN
    assert _active(world, "04AA0000000001") is True
    down = world.rs.tags.taken_down(TAG, world.provider)
    assert (down.state, down.updated_by) == (TagState.TAKEN_DOWN, "utforare-nord")
    assert _active(world, "04AA0000000001") is False
    with pytest.raises(TagError):
        world.rs.tags.lost(TAG, world.provider)


def test_a_lost_tag_is_withdrawn(world: World) -> None:
    client = world.client("K-BORTA")
    world.rs.tags.add_stock(NORD, 1, world.provider)
    world.rs.tags.issue(TAG, client, NORD, world.provider)
    assert world.rs.tags.lost(TAG, world.provider).state is TagState.LOST
    assert _active(world, "04AA0000000001") is False


# --- the lock records agents sync ----------------------------------------------------------


def test_binding_a_lock_is_reference_data(world: World) -> None:
    world.rs.locks.bind("PH-77", "K-77", world.fitter)
    assert _reference(world, ReferenceKind.LOCK, "PH-77") == {
        "serial": "PH-77", "client_ref": "K-77", "state": "installed"}
    world.rs.locks.unbind("PH-77", world.alarm_admin)
    assert _reference(world, ReferenceKind.LOCK, "PH-77") == {
        "serial": "PH-77", "client_ref": None, "state": "removed"}


# --- the migration -------------------------------------------------------------------------


def test_migration_0002_goes_down_and_up_again(database_url: str) -> None:
    engine = db.create_engine(db.database_url(database_url))
    try:
        db.upgrade(engine)
        for target in ("0001", "head"):
            with db.write_transaction(engine) as conn:
                step = command.downgrade if target == "0001" else command.upgrade
                step(db.alembic_config(conn), target)
            tables = set(sa.inspect(engine).get_table_names())
            columns = {c["name"] for c in sa.inspect(engine).get_columns("devices")}
            if target == "0001":
                assert "case_steps" not in tables and "unit" not in columns
            else:
                assert {"case_steps", "binder_jobs", "key_sets"} <= tables and "unit" in columns
        with engine.connect() as conn:
            assert db.current_revision(conn) == db.head_revision() == "0007"
    finally:
        engine.dispose()
