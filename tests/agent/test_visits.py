"""Visit registration rules (routine section 5) against a real SQLite store."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.visits import Outcome, Refusal, Registrar, Settings
from drivers.nfc.base import Feedback, ReadProblem, Tap
from tests.conftest import BADGE_ANNA, BADGE_BO, CLIENT_TAG, INSTALLED_TAG, OTHER_CLIENT_TAG


def tap(uid: str, **kw) -> Tap:
    return Tap(reader="udp:127.0.0.1:1", uid=uid, product="NXP NTAG215", tag_type="Type2Tag", **kw)


@pytest.fixture
def reg(store, clock):
    return Registrar(store, clock, Settings(repeat_window_s=30, max_visit_s=3600))


def kinds(store):
    return [e.kind for e in store.pending_events(1000)]


def test_sign_in_then_arrival_then_departure(reg, store, clock):
    d = reg.handle(tap(BADGE_ANNA))
    assert (d.outcome, d.feedback) == (Outcome.SIGNED_IN, Feedback.REGISTERED)
    assert d.staff_ref == "P-anna"
    clock.advance(60)
    arrival = reg.handle(tap(CLIENT_TAG))
    assert arrival.outcome is Outcome.ARRIVAL and arrival.client_ref == "K-1"
    clock.advance(25 * 60)
    departure = reg.handle(tap(CLIENT_TAG))
    assert departure.outcome is Outcome.DEPARTURE and departure.visit_id == arrival.visit_id
    [visit] = store.visits()
    assert visit.status == "closed" and visit.departed_at is not None
    assert kinds(store) == ["staff.signed_in", "visit.arrived", "visit.departed"]
    departed = store.pending_events(10)[-1].payload
    assert departed["data"]["duration_s"] == 25 * 60
    # every event carries the four time fields
    assert {"at", "boottime_ns", "boot_id", "clock_synced", "event_id"} <= set(departed)


def test_repeat_tap_within_window_is_ignored_with_feedback(reg, store, clock):
    reg.handle(tap(BADGE_ANNA))
    reg.handle(tap(CLIENT_TAG))
    clock.advance(5)
    d = reg.handle(tap(CLIENT_TAG))
    assert (d.outcome, d.feedback) == (Outcome.IGNORED, Feedback.IGNORED)
    assert "already registered" in d.message
    assert [v.status for v in store.visits()] == ["open"]
    assert kinds(store) == ["staff.signed_in", "visit.arrived"]  # ignored taps send nothing
    assert store.recent_taps(1)[0]["outcome"] == "ignored"


def test_tap_at_other_client_closes_open_visit_as_departure_missing(reg, store, clock):
    reg.handle(tap(BADGE_ANNA))
    first = reg.handle(tap(CLIENT_TAG))
    clock.advance(600)
    second = reg.handle(tap(OTHER_CLIENT_TAG))
    assert second.outcome is Outcome.ARRIVAL and second.closed_missing == (first.visit_id,)
    by_id = {v.id: v for v in store.visits()}
    assert by_id[first.visit_id].status == "departure_missing"
    assert by_id[first.visit_id].close_reason == "tap_at_other_client"
    assert kinds(store)[-2:] == ["visit.departure_missing", "visit.arrived"]


def test_visit_open_past_limit_is_closed_by_sweep(reg, store, clock):
    reg.handle(tap(BADGE_ANNA))
    d = reg.handle(tap(CLIENT_TAG))
    clock.advance(3599)
    assert reg.close_overdue() == []
    clock.advance(2)
    assert reg.close_overdue() == [d.visit_id]
    assert store.visits()[0].close_reason == "open_too_long"
    # a later tap at the same client is a new arrival, not a departure
    clock.advance(60)
    assert reg.handle(tap(CLIENT_TAG)).outcome is Outcome.ARRIVAL


def test_several_staff_at_one_client(reg, store, clock):
    reg.handle(tap(BADGE_ANNA))
    a = reg.handle(tap(CLIENT_TAG))
    clock.advance(5)
    reg.handle(tap(BADGE_BO))
    b = reg.handle(tap(CLIENT_TAG))  # within Anna's window, but Bo's first tap
    assert b.outcome is Outcome.ARRIVAL and b.staff_ref == "P-bo"
    assert len(store.open_visits()) == 2
    clock.advance(600)
    reg.handle(tap(BADGE_ANNA))
    d = reg.handle(tap(CLIENT_TAG))
    assert d.outcome is Outcome.DEPARTURE and d.visit_id == a.visit_id
    assert [v.staff_ref for v in store.open_visits()] == ["P-bo"]


@pytest.mark.parametrize(
    ("uid", "refusal"),
    [("04FFFFFFFFFFFF", Refusal.UNKNOWN_TAG), (INSTALLED_TAG, Refusal.LOCK_INSTALLED)],
)
def test_refusals_are_recorded_and_sent(reg, store, uid, refusal):
    reg.handle(tap(BADGE_ANNA))
    d = reg.handle(tap(uid))
    assert (d.outcome, d.feedback, d.refusal) == (Outcome.REFUSED, Feedback.REFUSED, refusal)
    event = store.pending_events(10)[-1]
    assert event.kind == "tap.refused" and event.payload["data"]["reason"] == str(refusal)
    assert store.recent_taps(1)[0]["outcome"] == "refused"
    assert store.visits() == []
    if refusal is Refusal.LOCK_INSTALLED:
        assert "take the tag down" in d.message


def test_client_tag_before_sign_in_is_refused(reg):
    d = reg.handle(tap(CLIENT_TAG))
    assert d.refusal is Refusal.NO_STAFF and "badge" in d.message


def test_sign_in_expires(store, clock):
    reg = Registrar(store, clock, Settings(sign_in_ttl_s=3600))
    reg.handle(tap(BADGE_ANNA))
    clock.advance(3601)
    assert reg.handle(tap(CLIENT_TAG)).refusal is Refusal.NO_STAFF


def test_personal_device_needs_no_badge_and_refuses_others(store, clock):
    reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna"))
    assert reg.handle(tap(CLIENT_TAG)).staff_ref == "P-anna"
    assert reg.handle(tap(BADGE_BO)).refusal is Refusal.NOT_DEVICE_OWNER


@pytest.mark.parametrize("problem", list(ReadProblem))
def test_unreadable_tap_is_refused_with_advice(reg, store, problem):
    d = reg.handle(tap(CLIENT_TAG, problem=problem, problem_detail="detail"))
    assert d.refusal is Refusal.UNREADABLE and "tap again" in d.message
    assert store.visits() == []


def test_window_uses_boottime_not_a_jumping_wall_clock(reg, store, clock):
    reg.handle(tap(BADGE_ANNA))
    reg.handle(tap(CLIENT_TAG))
    # NTP steps the wall clock an hour forward; only 5 s really passed.
    clock.boot_ns += 5_000_000_000
    from datetime import timedelta
    clock.wall += timedelta(hours=1)
    assert reg.handle(tap(CLIENT_TAG)).outcome is Outcome.IGNORED


def test_decision_is_one_transaction(reg, store, clock, monkeypatch):
    """If writing the outbox event fails, neither the visit nor the tap log is written."""
    reg.handle(tap(BADGE_ANNA))
    before = (len(store.visits()), len(store.recent_taps(100)), store.outbox_counts()["total"])

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "add_event", broken)
    with pytest.raises(RuntimeError):
        reg.handle(tap(CLIENT_TAG))
    after = (len(store.visits()), len(store.recent_taps(100)), store.outbox_counts()["total"])
    assert before == after


def test_settings_are_frozen_values():
    s = Settings()
    assert replace(s, repeat_window_s=1).repeat_window_s == 1


def _signed(uid: str) -> str:
    from drivers.sim.tags import sign_uid

    return sign_uid(bytes.fromhex(uid)).hex().upper()


def test_genuine_signature_is_recorded_and_a_forgery_refused_when_required(store, clock):
    from drivers.sim.tags import SIM_PUBLIC_KEY_HEX

    keys = (("sim", SIM_PUBLIC_KEY_HEX),)
    reg = Registrar(store, clock, Settings(personal_staff_ref="P-anna", trusted_tag_keys=keys,
                                           require_genuine_tags=True))
    ok = reg.handle(tap(CLIENT_TAG, signature=_signed(CLIENT_TAG)))
    assert ok.outcome is Outcome.ARRIVAL
    assert store.pending_events(10)[-1].payload["data"]["tag_signer"] == "sim"
    clock.advance(60)
    # a clone: same UID, the signature of another tag (replayed) or none at all
    for forged in (_signed(OTHER_CLIENT_TAG), None):
        d = reg.handle(tap(CLIENT_TAG, signature=forged))
        assert d.refusal is Refusal.NOT_GENUINE and "copy" in d.message
    assert [v.status for v in store.visits()] == ["open"]


def test_unverified_tags_are_accepted_but_marked_when_not_required(reg, store):
    reg.handle(tap(BADGE_ANNA))
    reg.handle(tap(CLIENT_TAG, signature=_signed(CLIENT_TAG)))  # sim key not trusted
    assert store.pending_events(10)[-1].payload["data"]["tag_signer"] is None
