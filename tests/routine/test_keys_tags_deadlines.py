"""routine.keys (section 4), routine.tags (section 5) and routine.deadlines: pure rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routine import deadlines, tags
from routine.deadlines import (
    Alert,
    AlertKind,
    RemovalLevel,
    Severity,
    keys_not_returned_alert,
    last_end,
    lock_pending_alert,
    low_battery_alert,
    no_visit_alert,
    pending_age,
    pending_overdue,
    pending_target_date,
    physical_key_alert,
    removal_alert,
    removal_due,
    removal_warning,
    tag_after_install_alert,
)
from routine.flows import RoutineError
from routine.keys import (
    KeyPolicy,
    KeyReceipt,
    KeyRuleError,
    KeyUnit,
    KeyUseReason,
    Service,
    classify_key_use,
    keys_due_back,
    required_key_sets,
    services_of,
    unreturned,
)
from routine.tags import TagError, TagEvent, TagState, TapVerdict

HC, AL, NG = KeyUnit.HOME_CARE_PROVIDER, KeyUnit.ALARM_GROUP, KeyUnit.NIGHT_GROUP
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

# --- key sets ------------------------------------------------------------------------------


def sets(**kw):
    args = {"has_home_care": False, "has_safety_alarm": False, "opens_door_themself": False,
            "other_agreement": False, "code_lock": False, "night_help": False} | kw
    return required_key_sets(**args)


def test_two_sets_with_home_care_and_alarm_one_with_an_exception():
    assert sets(has_home_care=True, has_safety_alarm=True) == {HC: 1, AL: 1, NG: 0}
    assert sets(has_home_care=True, has_safety_alarm=True, opens_door_themself=True) == {
        HC: 0, AL: 1, NG: 0}
    assert sets(has_home_care=True, has_safety_alarm=True, other_agreement=True) == {
        HC: 0, AL: 1, NG: 0}


def test_the_code_lock_exception_is_a_setting_defaulting_to_both_sets():
    assert KeyPolicy().code_lock_sets == "both"
    assert sets(has_home_care=True, has_safety_alarm=True, code_lock=True) == {
        HC: 1, AL: 1, NG: 0}
    assert sets(has_home_care=True, has_safety_alarm=True, code_lock=True,
                policy=KeyPolicy(code_lock_sets="alarm_only")) == {HC: 0, AL: 1, NG: 0}
    # the exception only ever reduces the two sets of a client with both services
    assert sets(has_home_care=True, code_lock=True,
                policy=KeyPolicy(code_lock_sets="alarm_only")) == {HC: 1, AL: 0, NG: 0}


def test_night_help_brings_the_night_groups_set_or_shares_the_alarm_groups():
    assert sets(has_safety_alarm=True, night_help=True) == {HC: 0, AL: 1, NG: 1}
    assert sets(has_safety_alarm=True, night_help=True,
                policy=KeyPolicy(night_group_own_set=False)) == {HC: 0, AL: 1, NG: 0}
    assert sets(night_help=True, policy=KeyPolicy(night_group_own_set=False)) == {
        HC: 0, AL: 1, NG: 0}


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
       st.booleans(), st.sampled_from(["both", "alarm_only"]), st.booleans())
def test_key_sets_follow_the_services(hc, alarm, opens, other, code, night, code_sets, own):
    policy = KeyPolicy(code_lock_sets=code_sets, night_group_own_set=own)
    s = required_key_sets(hc, alarm, opens, other, code, night, policy)
    assert set(s) == set(KeyUnit) and all(n in (0, 1) for n in s.values())
    assert s[HC] <= hc and s[AL] <= (alarm or night) and s[NG] <= night
    if hc and not alarm:
        assert s[HC] == 1  # home care only: the provider holds its keys (4.3)
    if alarm:
        assert s[AL] == 1  # the alarm's set is never given up
    if hc and alarm and not (opens or other or code):
        assert s[HC] + s[AL] == 2
    if code_sets == "both" and not (opens or other):
        assert s[HC] == hc


# --- key use -------------------------------------------------------------------------------


@pytest.mark.parametrize(("installed", "available", "emergency", "reason"), [
    (False, False, False, KeyUseReason.NO_DIGITAL_LOCK),
    (False, True, True, KeyUseReason.NO_DIGITAL_LOCK),
    (True, True, True, KeyUseReason.EMERGENCY),
    (True, False, True, KeyUseReason.EMERGENCY),
    (True, False, False, KeyUseReason.LOCK_UNAVAILABLE),
    (True, True, False, KeyUseReason.LOCK_WORKS),
])
def test_a_physical_key_only_without_a_lock_in_an_emergency_or_with_the_lock_down(
        installed, available, emergency, reason):
    use = classify_key_use("K-1", HC, installed, available, emergency, note="no answer")
    assert use.reason is reason
    assert use.justified == (reason is not KeyUseReason.LOCK_WORKS)
    alert = physical_key_alert(use)
    assert (alert is None) == use.justified
    if alert:
        assert alert.kind is AlertKind.PHYSICAL_KEY_USED_WHERE_LOCK_WORKS
        assert alert.subject == "K-1" and "digital locks are used first" in alert.message


def test_an_emergency_needs_a_note_and_own_keys_come_first():
    with pytest.raises(KeyRuleError, match="needs a note") as err:
        classify_key_use("K-1", AL, True, True, emergency=True)
    assert isinstance(err.value, RoutineError)
    assert classify_key_use("K-1", AL, True, True, True, note="fall alarm").own_keys
    assert not classify_key_use("K-1", AL, True, True, True, holder=HC, note="x").own_keys


# --- returning keys ------------------------------------------------------------------------


def receipt(unit=AL, sets=1, **kw):
    fields = {"client_ref": "K-1", "unit": unit, "key_number": "N-204",
              "returned_on": date(2026, 3, 10), "signed_by": "fitter-7", "sets": sets} | kw
    return KeyReceipt(**fields)


def test_a_key_receipt_names_the_key_and_who_signed():
    assert receipt().key_number == "N-204"
    for missing in ("client_ref", "key_number", "signed_by"):
        with pytest.raises(KeyRuleError, match=missing):
            receipt(**{missing: " "})
    with pytest.raises(KeyRuleError, match="at least one set"):
        receipt(sets=0)


def test_the_keys_of_units_whose_services_all_ended_go_back():
    held = {HC: 1, AL: 1, NG: 1}
    assert keys_due_back(held, running=[Service.SAFETY_ALARM, Service.NIGHT_HELP]) == {HC: 1}
    assert keys_due_back(held, running=[Service.HOME_CARE]) == {AL: 1, NG: 1}
    assert keys_due_back(held, running=[]) == held
    shared = KeyPolicy(night_group_own_set=False)
    assert services_of(AL, shared) == {Service.SAFETY_ALARM, Service.NIGHT_HELP}
    assert keys_due_back({HC: 1, AL: 1}, [Service.NIGHT_HELP], shared) == {HC: 1}
    assert keys_due_back({HC: 0, AL: 1}, [], shared) == {AL: 1}


def test_unreturned_sets_are_the_due_ones_without_a_receipt():
    due = {HC: 1, AL: 1}
    assert unreturned(due, []) == due
    assert unreturned(due, [receipt(AL)]) == {HC: 1}
    assert unreturned(due, [receipt(AL), receipt(HC)]) == {}
    assert unreturned({AL: 2}, [receipt(AL)]) == {AL: 1}
    assert unreturned(due, [receipt(NG)]) == due


def test_keys_not_returned_alert_after_the_grace_days():
    ended = date(2026, 3, 2)
    due = {HC: 1, AL: 1}
    assert keys_not_returned_alert("K-1", ended, date(2026, 3, 16), due, []) is None
    alert = keys_not_returned_alert("K-1", ended, date(2026, 3, 17), due, [receipt(AL)])
    assert alert is not None and alert.kind is AlertKind.KEYS_NOT_RETURNED
    assert "home_care_provider (1 set)" in alert.message and "alarm_group" not in alert.message
    assert alert.due == date(2026, 3, 16)
    assert keys_not_returned_alert("K-1", ended, date(2026, 4, 1), due,
                                   [receipt(AL), receipt(HC)]) is None


def test_unit_names_in_swedish():
    assert [u.name_sv for u in KeyUnit] == ["Hemtjänstutförare", "Larmgruppen", "Nattgruppen"]


# --- NFC tags ------------------------------------------------------------------------------


def test_a_tag_from_issue_to_taken_down():
    state = TagState.ISSUED
    for event, after in [(TagEvent.PUT_UP, TagState.IN_USE),
                         (TagEvent.LOCK_INSTALLED, TagState.DUE_DOWN),
                         (TagEvent.TAKE_DOWN, TagState.TAKEN_DOWN)]:
        state = tags.next_state(state, event)
        assert state is after
    assert tags.allowed_events(TagState.TAKEN_DOWN) == []


def test_a_wrong_tag_event_names_the_state_and_the_allowed_events():
    with pytest.raises(TagError) as err:
        tags.next_state(TagState.IN_USE, TagEvent.TAKE_DOWN)
    assert str(err.value) == ("tag in_use: 'take_down' is not allowed; allowed: "
                              "lock_installed, services_ended, lost")
    assert (err.value.state, err.value.action) == ("in_use", "take_down")
    assert isinstance(err.value, RoutineError)
    with pytest.raises(TagError, match=r"allowed: nothing \(the tag is done\)"):
        tags.next_state(TagState.LOST, TagEvent.PUT_UP)


@given(st.lists(st.sampled_from(list(TagEvent)), max_size=12))
def test_any_events_keep_the_lifecycle(events):
    state = TagState.ISSUED
    for event in events:
        try:
            after = tags.next_state(state, event)
        except TagError:
            assert event not in tags.allowed_events(state)
            continue
        assert state not in tags.FINAL
        if after is TagState.TAKEN_DOWN:
            assert state is TagState.DUE_DOWN  # only a tag due down is taken down
        state = after


@pytest.mark.parametrize(("status", "needed"), [
    ("pending", True), ("impossible", True), ("installed", False), ("none", True)])
def test_which_clients_use_a_tag(status, needed):
    assert tags.needs_tag(status) is needed
    if status == "none":
        assert tags.needs_tag(status, no_lock_by_choice=False) is False


def test_taps_register_until_the_lock_is_installed():
    assert tags.tap_verdict(TagState.ISSUED, False) is TapVerdict.REGISTER
    assert tags.state_after_tap(TagState.ISSUED) is TagState.IN_USE
    assert tags.state_after_tap(TagState.IN_USE) is TagState.IN_USE
    for state in TagState:
        assert tags.tap_verdict(state, True) is TapVerdict.REFUSE_LOCK_INSTALLED
    for state in (TagState.DUE_DOWN, TagState.TAKEN_DOWN, TagState.LOST):
        assert tags.tap_verdict(state, False) is TapVerdict.REFUSE_NOT_IN_USE


def test_a_tap_after_install_is_judged_on_its_own_time():
    installed = T0
    assert tags.tap_after_install_is_alert(T0 + timedelta(minutes=1), installed)
    assert tags.tap_after_install_is_alert(T0, installed)
    assert not tags.tap_after_install_is_alert(T0 - timedelta(hours=20), installed)  # synced late
    assert not tags.tap_after_install_is_alert(T0, None)
    alert = tag_after_install_alert("K-3", T0 + timedelta(days=1), installed)
    assert alert is not None and alert.kind is AlertKind.TAG_USED_AFTER_INSTALL
    assert "take the tag down" in alert.message
    assert tag_after_install_alert("K-3", T0 - timedelta(days=1), installed) is None


def test_tag_stock_reorder_level():
    assert tags.reorder_level(3, 2) == 6 + tags.TAG_SAFETY_STOCK
    assert tags.reorder_level(2.5, 1.5, safety_stock=0) == 4
    assert tags.needs_reorder(16, 16) and not tags.needs_reorder(17, 16)
    with pytest.raises(ValueError, match="cannot be negative"):
        tags.reorder_level(-1, 2)


# --- lock pending: about 5 working days ----------------------------------------------------


def test_pending_age_counts_working_days_over_midsummer():
    ordered = date(2026, 6, 17)  # Wednesday before Midsummer Eve
    assert pending_age(ordered, ordered) == 0
    assert pending_age(ordered, date(2026, 6, 19)) == 1  # Thu 18; Midsummer Eve is off
    assert pending_target_date(ordered) == date(2026, 6, 25)  # 18, 22, 23, 24, 25
    assert pending_age(ordered, date(2026, 6, 25)) == 5
    assert not pending_overdue(ordered, date(2026, 6, 25))
    assert pending_overdue(ordered, date(2026, 6, 26))
    assert not pending_overdue(ordered, date(2026, 6, 26), target=6)
    with pytest.raises(ValueError, match="before the lock was requested"):
        pending_age(ordered, date(2026, 6, 16))


def test_lock_pending_alert():
    ordered = date(2026, 6, 17)
    assert lock_pending_alert("K-1", ordered, date(2026, 6, 25)) is None
    alert = lock_pending_alert("K-1", ordered, date(2026, 6, 29))
    assert alert is not None
    assert alert == Alert(AlertKind.LOCK_PENDING_OVERDUE, "K-1", alert.message, date(2026, 6, 25))
    assert "after 7 working days (target 5)" in alert.message
    assert alert.severity is Severity.WARNING


# --- removal within 14 days ----------------------------------------------------------------


def test_removal_is_due_14_calendar_days_after_the_last_end():
    assert deadlines.REMOVAL_WITHIN_DAYS == 14
    assert removal_due(date(2026, 12, 20)) == date(2027, 1, 3)  # holidays do not count
    assert last_end([date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 5)]) == date(2026, 3, 9)
    with pytest.raises(ValueError, match="has not started"):
        last_end([])


@pytest.mark.parametrize(("today", "level"), [
    (date(2026, 3, 2), RemovalLevel.OK),
    (date(2026, 3, 10), RemovalLevel.OK),
    (date(2026, 3, 11), RemovalLevel.WARNING),  # 5 days left
    (date(2026, 3, 16), RemovalLevel.WARNING),  # the due day itself
    (date(2026, 3, 17), RemovalLevel.OVERDUE),
])
def test_removal_warning_levels(today, level):
    assert removal_warning(date(2026, 3, 2), today) is level


def test_removal_warning_days_are_a_parameter_and_alerts_follow_the_level():
    ended = date(2026, 3, 2)
    assert removal_warning(ended, date(2026, 3, 11), warn_days=2) is RemovalLevel.OK
    assert removal_alert("K-1", ended, date(2026, 3, 10)) is None
    soon = removal_alert("K-1", ended, date(2026, 3, 14))
    assert soon is not None and soon.kind is AlertKind.REMOVAL_DUE_SOON
    assert "(2 days left)" in soon.message and soon.due == date(2026, 3, 16)
    late = removal_alert("K-1", ended, date(2026, 3, 17))
    assert late is not None and late.kind is AlertKind.REMOVAL_OVERDUE
    assert late.severity is Severity.CRITICAL


# --- visits and locks ----------------------------------------------------------------------


def test_no_visit_registered_is_a_safety_alert():
    start = T0 - timedelta(days=3)
    assert no_visit_alert("K-1", False, None, start, T0) is None
    assert no_visit_alert("K-1", True, T0 - timedelta(hours=23), start, T0) is None
    alert = no_visit_alert("K-1", True, T0 - timedelta(hours=25), start, T0)
    assert alert is not None and alert.kind is AlertKind.NO_VISIT_REGISTERED
    assert alert.severity is Severity.CRITICAL and "last visit 2026-11-29 07:00" in alert.message
    never = no_visit_alert("K-1", True, None, start, T0)
    assert never is not None and "no visit yet" in never.message
    assert no_visit_alert("K-1", True, None, start, T0, max_gap=timedelta(days=7)) is None


def test_low_lock_battery():
    assert low_battery_alert("PH-1", 21) is None
    alert = low_battery_alert("PH-1", 20)
    assert alert is not None and alert.kind is AlertKind.LOW_LOCK_BATTERY
    assert alert.subject == "PH-1"
    assert low_battery_alert("PH-1", 30, threshold=30) is not None


def test_every_alert_kind_has_a_severity():
    assert set(deadlines.SEVERITY) == set(AlertKind)
    assert {k.value for k in AlertKind} == {
        "lock_pending_overdue", "removal_due_soon", "removal_overdue", "keys_not_returned",
        "no_visit_registered", "tag_used_after_install", "physical_key_used_where_lock_works",
        "low_lock_battery"}
