"""Pulling reference data page by page, and measuring the clock."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from agent.clock import FixedClock
from sync.errors import CentreUnreachable, ProtocolMismatch
from sync.protocol import ReferenceItem
from tests.sync.conftest import SERVER_START, add_events


def item(kind, key, version, deleted=False, **data):
    return ReferenceItem(kind=kind, key=key, version=version, deleted=deleted, data=data)


FEED = [
    item("client", "K-9", 11, display_name="", lock_status="pending"),
    item("tag", "04:99:99:99:99:99:99", 12, client_ref="K-9", active=True),
    item("staff", "0A0B0C0F", 13, staff_ref="P-cay", display_name="Cay", active=True),
    item("lock", "LK-0001", 14, client_ref="K-9", state="installed"),
    item("client", "K-9", 15, display_name="", lock_status="installed"),
    item("tag", "04A1B2C3D4E5F6", 16, deleted=True),
]


def test_pull_pages_until_no_more_and_keeps_the_cursor(make_client, centre, store):
    centre.reference = FEED
    centre.page_size = 4
    assert make_client().pull_reference() == 6
    sinces = [r.url.params["since"] for r in centre.requests]
    assert sinces == ["0", "14"]
    assert store.reference_cursor() == 16
    client, active = store.client_for_tag("04999999999999")
    assert client.ref == "K-9" and client.lock_status == "installed" and active
    assert store.staff_for_badge("0A0B0C0F").display_name == "Cay"
    assert store.locks() == [{"serial": "LK-0001", "client_ref": "K-9", "state": "installed",
                              "updated_at": store.locks()[0]["updated_at"]}]
    assert store.client_for_tag("04A1B2C3D4E5F6") is None  # deleted
    # nothing new: one request, nothing written
    centre.requests.clear()
    assert make_client().pull_reference() == 0 and len(centre.requests) == 1


def test_a_lost_page_resumes_from_the_last_applied_cursor(make_client, centre, store):
    centre.reference = FEED
    centre.page_size = 3
    centre.faults.extend([None] + [httpx.ConnectError("gone")] * 5)
    with pytest.raises(CentreUnreachable):
        make_client().pull_reference()
    assert store.reference_cursor() == 13  # the first page, applied whole with its cursor
    assert store.staff_for_badge("0A0B0C0F") is not None and store.locks() == []
    centre.requests.clear()
    assert make_client().pull_reference() == 3
    assert centre.requests[0].url.params["since"] == "13"


def test_a_cursor_that_goes_backwards_is_reported(make_client, centre, store):
    centre.reference = FEED[:2]
    make_client().pull_reference()
    centre.faults.append(httpx.Response(200, json={
        "items": [], "cursor": 3, "more": False, "server_time": SERVER_START.isoformat()}))
    with pytest.raises(ProtocolMismatch, match="restored from a backup"):
        make_client().pull_reference()
    assert store.reference_cursor() == 12


def test_clock_sample_is_taken_at_the_middle_of_the_round_trip(make_client, centre, clock):
    centre.latency_s = 0.050
    before = clock.boot_ns
    sample = make_client().measure_clock()
    assert sample.rtt_ns == 50_000_000
    assert sample.boottime_ns == before + 25_000_000
    assert sample.server_time == SERVER_START + timedelta(seconds=1)
    assert sample.boot_id == "test-boot"


def test_best_sample_of_the_boot_survives_a_restart(make_client, centre, store, clock):
    centre.latency_s = 0.030
    first = make_client()
    best = first.measure_clock()
    assert store.anchor("test-boot").rtt_ns == 30_000_000
    centre.latency_s = 0.300
    again = make_client()  # the agent restarted, same boot
    assert again.best_sample() == best
    again.measure_clock()
    assert again.best_sample() == best and store.anchor("test-boot").rtt_ns == 30_000_000
    centre.latency_s = 0.010
    better = again.measure_clock()
    assert again.best_sample() == better and store.anchor("test-boot").rtt_ns == 10_000_000


def test_a_new_boot_does_not_use_the_old_boots_anchor(make_client, centre, store, clock):
    make_client().measure_clock()
    rebooted = FixedClock(clock.wall, boot_id="next-boot")
    client = make_client()
    client.clock = rebooted
    assert client.best_sample() is None


def test_several_samples_keep_the_shortest(make_client, centre, clock):
    latencies = iter([0.080, 0.020, 0.050])
    original = centre.handler

    def varying(request):
        centre.latency_s = next(latencies)
        return original(request)

    client = make_client(clock_samples=3, transport=httpx.MockTransport(varying))
    assert client.measure_clock().rtt_ns == 20_000_000


def test_sync_once_reports_counts_offset_and_duration(make_client, centre, store, clock):
    add_events(store, clock, 3)
    centre.reference = FEED[:2]
    centre.latency_s = 0.010
    report = make_client().sync_once()
    summary = report.as_dict()
    assert (summary["pushed"], summary["stored"], summary["rejected"],
            summary["reference_items"]) == (3, 3, 0, 2)
    # the centre runs 5 s (+1 s per request in the fake) ahead of the agent's wall clock
    assert report.offset_s == pytest.approx(6.0 - 0.005, abs=1e-6)
    assert report.duration_s == pytest.approx(0.030)
    assert summary["clock_rtt_ms"] == 10.0
