"""routine.visits.fold and routine.timekeeping: pure rules, and the agent agrees with them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FixedClock
from agent.store import Store
from agent.visits import Registrar, Settings
from drivers.nfc.base import Tap
from routine.timekeeping import Anchor, Quality, best_anchor, best_time
from routine.visits import VisitEvent, fold

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def ev(kind, minutes, visit="v1", **data):
    return VisitEvent(kind, T0 + timedelta(minutes=minutes),
                      {"visit_id": visit, "client_ref": "K-1", "staff_ref": "P-1", **data},
                      event_id=f"{kind}-{visit}")


def test_fold_is_order_independent_and_ignores_duplicates():
    events = [ev("visit.arrived", 0, tag_uid="04AA", method="nfc_tag"),
              ev("visit.departed", 20)]
    forward = fold(events)
    assert fold(list(reversed(events)) + events) == forward
    v = forward["v1"]
    assert (v.status, v.close_reason, v.tag_uid) == ("closed", "departed", "04AA")
    assert v.departed_at - v.arrived_at == timedelta(minutes=20)


def test_departure_arriving_first_is_incomplete_then_closed():
    assert fold([ev("visit.departed", 20)])["v1"].status == "incomplete"
    assert fold([ev("visit.departed", 20), ev("visit.arrived", 0)])["v1"].status == "closed"


def test_departure_missing_and_later_departure():
    missing = ev("visit.departure_missing", 300, reason="open_too_long")
    assert fold([ev("visit.arrived", 0), missing])["v1"].close_reason == "open_too_long"
    # the tap-out did happen; its event merely arrived after the sweep's
    both = fold([ev("visit.arrived", 0), missing, ev("visit.departed", 30)])["v1"]
    assert both.status == "closed"


def test_other_kinds_are_ignored():
    assert fold([VisitEvent("tap.refused", T0, {"uid": "04"})]) == {}


def test_time_correction_from_an_anchor_in_the_same_boot():
    epoch = datetime(1970, 1, 1, 0, 5, tzinfo=UTC)  # flat RTC battery
    anchor = Anchor("boot-a", boottime_ns=600_000_000_000, server_time=T0)
    at, quality = best_time(epoch, 540_000_000_000, "boot-a", False, anchor)
    assert (at, quality) == (T0 - timedelta(seconds=60), Quality.CORRECTED)
    assert best_time(epoch, 1, "boot-b", False, anchor) == (epoch, Quality.UNVERIFIED)
    assert best_time(T0, 1, "boot-b", True, anchor) == (T0, Quality.SYNCHRONISED)


def test_best_anchor_has_the_shortest_round_trip():
    a = [Anchor("b", 1, T0, rtt_ns=9), Anchor("b", 2, T0, rtt_ns=3), Anchor("c", 3, T0, 1)]
    assert best_anchor(a, "b").rtt_ns == 3 and best_anchor(a, "z") is None


# --- the agent's own visits are exactly what the fold makes of its events ------------

TAGS = ["04000000000001", "04000000000002", "04000000000003"]
BADGES = ["0B000001", "0B000002"]
REF = {
    "clients": [{"ref": f"K-{i}"} for i in range(3)],
    "tags": [{"uid": u, "client_ref": f"K-{i}"} for i, u in enumerate(TAGS)],
    "staff": [{"badge_uid": b, "staff_ref": f"P-{i}"} for i, b in enumerate(BADGES)],
}

steps = st.lists(
    st.tuples(st.sampled_from(TAGS + BADGES + ["04FFFFFFFFFFFF"]),
              st.sampled_from([1, 10, 40, 600, 3 * 3600, 5 * 3600])),
    min_size=1, max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_agent_visits_equal_the_fold_of_its_events(tmp_path_factory, taps):
    store = Store(tmp_path_factory.mktemp("fold") / "agent.db")
    store.import_reference(REF, "t")
    clock = FixedClock(T0)
    reg = Registrar(store, clock, Settings(repeat_window_s=30, max_visit_s=4 * 3600))
    for uid, wait in taps:
        clock.advance(wait)
        reg.handle(Tap("udp:x", uid, "NXP NTAG215", "Type2Tag"))
        if wait > 4 * 3600:
            reg.close_overdue()
    events = [
        VisitEvent(e.kind, datetime.fromisoformat(e.payload["at"]), e.payload["data"], e.event_id)
        for e in store.pending_events(10_000)
    ]
    folded = fold(events)
    local = {v.id: v for v in store.visits()}
    assert set(folded) == set(local)
    for vid, v in local.items():
        f = folded[vid]
        assert (f.status, f.client_ref, f.staff_ref) == (v.status, v.client_ref, v.staff_ref)
        assert f.arrived_at == datetime.fromisoformat(v.arrived_at)
        assert f.departed_at == (datetime.fromisoformat(v.departed_at) if v.departed_at else None)
    store.close()
