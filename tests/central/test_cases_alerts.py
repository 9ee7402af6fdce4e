"""Alerts appear and clear where the routine puts them; the reports. SQLite and PostgreSQL.

Time moves with the injectable centre clock (``central_clock``); working days follow
the Swedish calendar (an order the day before Midsummer Eve waits longer).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from central.cases.alerts import Alert
from central.cases.values import ImplementationKind
from central.store import CentralStore
from routine.deadlines import AlertKind, RemovalLevel, Severity
from routine.flows import Flow
from routine.keys import KeyRuleError, KeyUnit
from routine.tags import TagState
from sync.protocol import Event
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import (
    INSTALL_CHECKS,
    NORD,
    REMOVAL_CHECKS,
    Do,
    World,
)

HOME, ALARM_SVC = ImplementationKind.HOME_CARE, ImplementationKind.SAFETY_ALARM
TAG = "04AA0000000001"


@pytest.fixture
def world(central_store: CentralStore, central_clock: SteppingClock) -> World:
    return World(central_store, central_clock)


def kinds(alerts: list[Alert], kind: AlertKind) -> list[Alert]:
    return [a for a in alerts if a.kind is kind]


def at(day: date, hour: int = 8) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def _request_2a(world: World, client: str) -> int:
    """A 2a case up to the request in the Digitala LÅS inbox (2a.4); its id."""
    case = world.open(Flow.INSTALL_ASSESSED, client)
    for do in (Do("assessor", "send_order"), Do("provider", "lock_already_installed", "no"),
               Do("provider", "code_lock", "no"),
               Do("provider", "home_care_only_opens_door", "no"),
               Do("provider", "client_refuses", "no"),
               Do("provider", "request_lock", "keys_exist", before=World.provider_keys)):
        world.take(case, do)
    return case.id


def _install(world: World, case_id: int) -> None:
    case = world.rs.cases.get(case_id, actor=world.admin)
    for do in (Do("alarm_admin", "put_install_job"), Do("fitter", "book_installation"),
               Do("fitter", "install_lock", checks=INSTALL_CHECKS, before=World.bind)):
        world.take(case, do)


# --- lock pending (section 5) ---------------------------------------------------------------


def test_lock_pending_beyond_5_working_days_midsummer(world: World) -> None:
    world.clock.at = at(date(2026, 6, 18))  # Thursday; Friday 19 June is Midsummer Eve
    client = world.client("K-MIDSOMMAR")
    case_id = _request_2a(world, client)

    # Fri 26 June is only the 5th working day (Midsummer Eve is off): within target
    assert kinds(world.rs.alerts.current(today=date(2026, 6, 26), actor=world.admin),
                 AlertKind.LOCK_PENDING_OVERDUE) == []
    [pending] = world.rs.reports.pending_installs(today=date(2026, 6, 26), actor=world.admin)
    assert (pending.case_id, pending.age_working_days, pending.overdue) == (case_id, 5, False)
    assert pending.target_on == date(2026, 6, 26)

    world.clock.at = at(date(2026, 6, 29))  # Monday: the 6th working day
    [alert] = kinds(world.rs.alerts.current(actor=world.admin), AlertKind.LOCK_PENDING_OVERDUE)
    assert (alert.client_ref, alert.case_id, alert.severity) == (client, case_id,
                                                                 Severity.WARNING)
    assert alert.since == at(date(2026, 6, 18))  # from the inbox message (2a.4)
    assert alert.due == date(2026, 6, 26) and "6 working days" in alert.detail
    assert world.rs.reports.pending_installs(actor=world.admin)[0].overdue

    _install(world, case_id)
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.LOCK_PENDING_OVERDUE) == []
    assert world.rs.reports.pending_installs(actor=world.admin) == []


def test_3a_lock_pending_counts_from_the_install_job(world: World) -> None:
    world.clock.at = at(date(2026, 12, 22))  # Tuesday before Christmas Eve
    client = world.client("K-JUL")
    case = world.open(Flow.INSTALL_ALARM_ONLY, client)
    for do in (Do("alarm_admin", "receive_request"),
               Do("alarm_admin", "confirm_keys", before=World.alarm_keys),
               Do("alarm_admin", "code_lock", "no"),
               Do("alarm_admin", "lock_already_installed", "no"),
               Do("alarm_admin", "decide_lock", "yes")):
        world.take(case, do)
    # working days after the job: 23 Dec, (Christmas Eve and Day off) 28, 29, 30, (New
    # Year's Eve and Day off, a weekend) 4 Jan 2027: the 5th; 5 Jan the 6th
    assert kinds(world.rs.alerts.current(today=date(2027, 1, 4), actor=world.admin),
                 AlertKind.LOCK_PENDING_OVERDUE) == []
    [alert] = kinds(world.rs.alerts.current(today=date(2027, 1, 5), actor=world.admin),
                    AlertKind.LOCK_PENDING_OVERDUE)
    job = world.rs.binder.jobs(world.alarm_admin)[0]
    assert (alert.case_id, alert.job_id) == (case.id, job.id)


# --- removal within 14 days ----------------------------------------------------------------


def test_removal_due_soon_overdue_and_cleared_by_the_removal(world: World) -> None:
    client = world.installed("K-REMOVE", HOME)
    ended = world.central.today()  # 2026-11-30
    world.rs.implementations.end(client, HOME, ended, world.provider)
    assert kinds(world.rs.alerts.current(today=ended + timedelta(days=8), actor=world.admin),
                 AlertKind.REMOVAL_DUE_SOON) == []
    [soon] = world.rs.alerts.current(today=ended + timedelta(days=9),
                                     actor=world.admin)  # 5 days left
    assert (soon.kind, soon.severity, soon.due) == (AlertKind.REMOVAL_DUE_SOON, Severity.INFO,
                                                    date(2026, 12, 14))
    assert kinds(world.rs.alerts.current(today=date(2026, 12, 14), actor=world.admin),
                 AlertKind.REMOVAL_DUE_SOON)
    [late] = kinds(world.rs.alerts.current(today=date(2026, 12, 15), actor=world.admin),
                   AlertKind.REMOVAL_OVERDUE)
    assert (late.client_ref, late.severity, late.job_id) == (client, Severity.CRITICAL, None)

    case = world.rs.cases.open(Flow.REMOVE_ASSESSED, client, world.assessor, provider_unit=NORD)
    for do in (Do("assessor", "send_cancellation"), Do("provider", "end_implementation"),
               Do("provider", "client_has_lock", "yes"),
               Do("alarm_admin", "alarm_decision", "no_alarm"),
               Do("alarm_admin", "put_removal_job")):
        world.take(case, do)
    job = world.rs.binder.jobs(world.alarm_admin)[0]
    assert job.due_on == date(2026, 12, 14)
    [late] = kinds(world.rs.alerts.current(today=date(2026, 12, 15), actor=world.admin),
                   AlertKind.REMOVAL_OVERDUE)
    assert (late.case_id, late.job_id) == (case.id, job.id)
    [removal] = world.rs.reports.removals(today=date(2026, 12, 15), actor=world.admin)
    assert (removal.job_id, removal.due_on, removal.days_left, removal.level) == (
        job.id, date(2026, 12, 14), -1, RemovalLevel.OVERDUE)

    for do in (Do("fitter", "book_removal"),
               Do("fitter", "remove_lock", checks=REMOVAL_CHECKS,
                  before=World.unbind_and_return_alarm_keys)):
        world.take(case, do)
    left = {a.kind for a in world.rs.alerts.current(today=date(2026, 12, 15), actor=world.admin)}
    assert left == {AlertKind.KEYS_NOT_RETURNED}  # the provider's keys are still out
    assert world.rs.reports.removals(today=date(2026, 12, 15), actor=world.admin) == []


def test_a_new_service_stops_the_removal_clock(world: World) -> None:
    client = world.installed("K-BACK", HOME)
    world.rs.implementations.end(client, HOME, date(2026, 11, 10), world.provider)
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.REMOVAL_OVERDUE)
    world.rs.implementations.start(client, HOME, NORD, date(2026, 11, 30), world.provider)
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.REMOVAL_OVERDUE) == []


# --- keys back when services end -----------------------------------------------------------


def test_keys_not_returned_after_the_services_ended(world: World) -> None:
    client = world.installed("K-NYCKEL", HOME, ALARM_SVC)
    ended = world.central.today()
    world.rs.implementations.end(client, HOME, ended, world.provider)
    assert kinds(world.rs.alerts.current(today=ended + timedelta(days=14), actor=world.admin),
                 AlertKind.KEYS_NOT_RETURNED) == []
    [alert] = kinds(world.rs.alerts.current(today=ended + timedelta(days=15), actor=world.admin),
                    AlertKind.KEYS_NOT_RETURNED)
    # only the provider's set is due: the safety alarm still runs, its keys stay
    assert "home_care_provider" in alert.detail and "alarm_group" not in alert.detail
    receipt = world.rs.keys.return_keys(client, KeyUnit.HOME_CARE_PROVIDER, "Brukare A",
                                   world.provider)
    assert receipt.signed_by == "Brukare A" and receipt.holder == NORD
    assert kinds(world.rs.alerts.current(today=ended + timedelta(days=15), actor=world.admin),
                 AlertKind.KEYS_NOT_RETURNED) == []


# --- no visit registered: a safety alert ---------------------------------------------------


def test_no_visit_registered_within_the_configured_time(world: World) -> None:
    client = world.client("K-BESOK")
    today = world.central.today()  # Monday 30 Nov; 08:00 UTC is 09:00 in Stockholm
    world.rs.implementations.start(client, HOME, NORD, today, world.provider)
    world.rs.implementations.start("K-LARM", ALARM_SVC, "larmgruppen", today, world.alarm_admin)
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.NO_VISIT_REGISTERED) == []

    world.clock.at = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # 25.5 h after local midnight
    [alert] = kinds(world.rs.alerts.current(actor=world.admin), AlertKind.NO_VISIT_REGISTERED)
    assert (alert.client_ref, alert.severity) == (client, Severity.CRITICAL)
    assert alert.since == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # the service's start
    assert kinds(world.rs.alerts.current(no_visit_hours=48, actor=world.admin),
                 AlertKind.NO_VISIT_REGISTERED) == []

    world.visit(client, datetime(2026, 12, 1, 0, 15, tzinfo=UTC), method="lock", tag_uid=None)
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.NO_VISIT_REGISTERED) == []
    world.clock.at = datetime(2026, 12, 2, 0, 20, tzinfo=UTC)
    [again] = kinds(world.rs.alerts.current(actor=world.admin), AlertKind.NO_VISIT_REGISTERED)
    assert again.since == datetime(2026, 12, 1, 0, 15, tzinfo=UTC)  # the last visit
    world.rs.implementations.end(client, HOME, world.central.today(), world.provider)
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.NO_VISIT_REGISTERED) == []


# --- tags after the installation -----------------------------------------------------------


def test_tag_used_after_install_until_it_is_taken_down(world: World) -> None:
    client = world.client("K-ETIKETT")
    world.rs.tags.add_stock(NORD, 1, world.provider)
    world.rs.tags.issue(TAG, client, NORD, world.provider)
    case_id = _request_2a(world, client)
    world.clock.advance(3600)
    world.visit(client, world.clock.at - timedelta(minutes=30), tag_uid=TAG)  # before: fine
    assert world.rs.tags.get(TAG, actor=world.admin).state is TagState.IN_USE
    _install(world, case_id)
    installed_at = world.clock.at
    assert world.rs.tags.get(TAG, actor=world.admin).state is TagState.DUE_DOWN
    # a tap made before the installation, delivered after it, is no alert
    world.ingest("tap.refused", installed_at - timedelta(minutes=5), uid=TAG,
                 reason="lock_installed", client_ref=client, staff_ref="P-anna")
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.TAG_USED_AFTER_INSTALL) == []

    world.clock.advance(7200)
    tapped = installed_at + timedelta(hours=1)
    world.ingest("tap.refused", tapped, uid=TAG, reason="lock_installed", client_ref=client,
                 staff_ref="P-anna")
    world.ingest("tap.refused", tapped, uid=TAG, reason="unknown_tag", client_ref=client)
    [alert] = kinds(world.rs.alerts.current(actor=world.admin), AlertKind.TAG_USED_AFTER_INSTALL)
    assert (alert.client_ref, alert.since, alert.severity) == (client, tapped, Severity.WARNING)
    assert TAG in alert.detail

    world.rs.tags.taken_down(TAG, world.provider)
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.TAG_USED_AFTER_INSTALL) == []


def test_a_visit_registered_by_tag_after_install_is_an_alert(world: World) -> None:
    client = world.installed("K-SENT", HOME)  # installed by import: the case installs again
    case = world.open(Flow.INSTALL_ASSESSED, client)
    for do in (Do("assessor", "send_order"), Do("provider", "lock_already_installed", "yes")):
        world.take(case, do)
    world.clock.advance(600)
    world.visit(client, world.clock.at, tag_uid="04BB0000000002")
    [alert] = kinds(world.rs.alerts.current(actor=world.admin), AlertKind.TAG_USED_AFTER_INSTALL)
    assert alert.since == world.clock.at


# --- physical keys where the lock works ----------------------------------------------------


def test_physical_key_used_where_the_lock_works(world: World) -> None:
    client = world.installed("K-LAS", HOME, ALARM_SVC)
    other = world.client("K-UTAN")
    world.services(other, HOME)
    with pytest.raises(KeyRuleError, match="note"):
        world.rs.keys.record_emergency_use(client, KeyUnit.ALARM_GROUP, "  ", world.alarm_admin)
    world.rs.keys.record_use(other, KeyUnit.HOME_CARE_PROVIDER, world.provider)  # no lock
    emergency = world.rs.keys.record_emergency_use(client, KeyUnit.ALARM_GROUP,
                                                  "fall; lock did not answer", world.alarm_admin,
                                                  lock_available=False)
    assert emergency.reason == "emergency" and emergency.lock_installed
    [alert] = kinds(world.rs.alerts.current(actor=world.admin),
                    AlertKind.PHYSICAL_KEY_USED_WHERE_LOCK_WORKS)
    assert (alert.client_ref, alert.severity) == (client, Severity.INFO)
    world.clock.advance(3600)
    world.rs.keys.record_use(client, KeyUnit.HOME_CARE_PROVIDER, world.provider)
    alerts = kinds(world.rs.alerts.current(actor=world.admin),
                   AlertKind.PHYSICAL_KEY_USED_WHERE_LOCK_WORKS)
    assert [a.severity for a in alerts] == [Severity.WARNING, Severity.INFO]
    assert "lock_works" in alerts[0].detail
    world.clock.advance(8 * 86_400)
    assert kinds(world.rs.alerts.current(actor=world.admin),
                 AlertKind.PHYSICAL_KEY_USED_WHERE_LOCK_WORKS) == []
    assert [u.reason for u in world.rs.keys.uses(client, actor=world.admin)] == ["emergency",
                                                                                 "lock_works"]


# --- lock batteries ------------------------------------------------------------------------


def test_low_lock_battery_needs_a_verified_proof(world: World) -> None:
    # A bare lock.* reading proves nothing: low_lock_battery comes from verified
    # lock.verification events only (tests/central/test_lock_proofs.py).
    # (an unknown kind is not even stored: central.senders)
    event = Event(event_id=uuid.uuid4().hex, kind="lock.verified", device_id=world.agent.name,
                  at=world.clock.at, boottime_ns=0, boot_id="boot-a", clock_synced=True,
                  data={"lock_serial": "PH-9", "battery_percent": 15, "client_ref": "K-9"})
    [rejected] = world.central.ingest(world.agent, [event], None).rejected
    assert "unknown to this centre" in rejected.reason
    assert kinds(world.rs.alerts.current(actor=world.admin), AlertKind.LOW_LOCK_BATTERY) == []


# --- reports -------------------------------------------------------------------------------


def test_tag_and_key_status_per_client(world: World) -> None:
    client = world.installed("K-STATUS", HOME, ALARM_SVC)
    [status] = world.rs.reports.client_status(client, actor=world.admin)
    assert status.lock_status == "installed"
    assert status.services == (HOME, ALARM_SVC)
    assert {s.unit for s in status.key_sets} == {KeyUnit.HOME_CARE_PROVIDER,
                                                 KeyUnit.ALARM_GROUP}
    assert status.required_sets == {KeyUnit.HOME_CARE_PROVIDER: 1, KeyUnit.ALARM_GROUP: 1,
                                    KeyUnit.NIGHT_GROUP: 0}
    assert (status.missing_sets, status.extra_sets) == ({}, {})

    pending = world.client("K-VANTAR")
    world.services(pending, HOME, ALARM_SVC)
    world.rs.tags.add_stock(NORD, 2, world.provider)
    world.rs.tags.issue(TAG, pending, NORD, world.provider)
    case = world.open(Flow.INSTALL_ASSESSED, pending)
    for do in (Do("assessor", "send_order"), Do("provider", "lock_already_installed", "no"),
               Do("provider", "code_lock", "no"),
               Do("provider", "home_care_only_opens_door", "yes")):
        world.take(case, do)
    world.alarm_keys(pending)
    [status] = world.rs.reports.client_status(pending, actor=world.admin)
    assert [(t.uid, t.state) for t in status.tags] == [(TAG, TagState.ISSUED)]
    # opens the door themself: one set, the alarm's (4.1)
    assert status.required_sets[KeyUnit.HOME_CARE_PROVIDER] == 0
    assert status.missing_sets == {}
    everyone = {s.client_ref for s in world.rs.reports.client_status(actor=world.admin)}
    assert {client, pending} <= everyone
    assert status.as_dict()["required_sets"]["alarm_group"] == 1


def test_visits_per_client_by_registration_method(world: World) -> None:
    day = world.central.today()
    for client, method, hours in (("K-1", "nfc_tag", 1), ("K-1", "nfc_tag", 3),
                                  ("K-1", "lock", 5), ("K-2", "lock", 2), ("K-2", "lock", 30)):
        world.visit(client, at(day, 0) + timedelta(hours=hours), method=method,
                    tag_uid=TAG if method == "nfc_tag" else None)
    report = {r.client_ref: (r.by_method,
                             r.total) for r in world.rs.reports.visits_by_method(actor=world.admin)}
    assert report == {"K-1": ({"lock": 1, "nfc_tag": 2}, 3), "K-2": ({"lock": 2}, 2)}
    that_day = {r.client_ref: r.by_method for r in
                world.rs.reports.visits_by_method(start=day, end=day, actor=world.admin)}
    assert that_day == {"K-1": {"lock": 1, "nfc_tag": 2}, "K-2": {"lock": 1}}
