"""The agent's background sync: its own thread and store, woken by taps, never in a tap's way."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace

import httpx
import pytest

from agent.config import AgentConfig
from agent.service import SYNC_MAX_BACKOFF_S, AgentService, SyncWorker, running_agent
from drivers.nfc.base import Feedback, Tap
from sync.client import SyncClient
from sync.errors import CentreUnreachable
from tests.conftest import BADGE_ANNA, CLIENT_TAG, REFERENCE
from tests.sync.conftest import FakeCentre

WAIT_S = 5.0  # generous bound for a thread to react in these tests


def wait_for(predicate, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


class ScriptedClient:
    """Stands in for SyncClient: records rounds, fails while told to."""

    device_id = "test-agent"

    def __init__(self):
        self.rounds: list[float] = []
        self.fail = False
        self.closed = False

    def sync_once(self, progress=None):
        self.rounds.append(time.monotonic())
        if self.fail:
            raise CentreUnreachable("down", attempts=1)
        from sync.client import PushReport, SyncReport
        from sync.protocol import ClockSample
        from tests.sync.conftest import SERVER_START

        sample = ClockSample(boot_id="b", boottime_ns=1, server_time=SERVER_START, rtt_ns=1)
        return SyncReport(PushReport(), 0, sample, 0.0, 0.0)

    def close(self):
        self.closed = True


def worker(client, interval_s=3600.0, **kw):
    options = {"debounce_s": 0.05, "first_delay_s": 0.05, "rng": random.Random(1), **kw}
    return SyncWorker(client, interval_s, **options)


def test_first_round_soon_then_taps_wake_it_debounced():
    client = ScriptedClient()
    w = worker(client)
    w.start()
    try:
        assert wait_for(lambda: len(client.rounds) == 1)
        for _ in range(5):  # a burst of taps
            w.kick()
        assert wait_for(lambda: len(client.rounds) == 2)
        time.sleep(0.2)
        assert len(client.rounds) == 2  # one round for the whole burst
    finally:
        assert w.stop()


def test_taps_do_not_cut_a_failure_backoff_short():
    client = ScriptedClient()
    client.fail = True
    w = worker(client, interval_s=30.0)
    w.start()
    try:
        assert wait_for(lambda: len(client.rounds) == 1)
        for _ in range(10):
            w.kick()
            time.sleep(0.02)
        assert len(client.rounds) == 1 and w.failures == 1
    finally:
        assert w.stop()


def test_backoff_doubles_to_its_cap_with_jitter():
    w = worker(ScriptedClient(), interval_s=60.0)
    waits = []
    for failures in range(0, 8):
        w.failures = failures
        waits.append(w._next_wait())
    assert 54 <= waits[0] <= 66 and 54 <= waits[1] <= 66
    assert 108 <= waits[2] <= 132 and 216 <= waits[3] <= 264
    assert all(w <= SYNC_MAX_BACKOFF_S * 1.1 for w in waits)
    assert waits[-1] >= SYNC_MAX_BACKOFF_S * 0.9


def test_stop_is_prompt_while_idle():
    client = ScriptedClient()
    w = worker(client, first_delay_s=3600.0)
    w.start()
    started = time.monotonic()
    assert w.stop() and time.monotonic() - started < 1.0
    assert client.rounds == []


# --- in the agent service -------------------------------------------------------------------


def tap(uid):
    return Tap(reader="udp:127.0.0.1:1", uid=uid, product="NXP NTAG215", tag_type="Type2Tag")


@pytest.fixture
def service_with_centre(tmp_path, clock):
    centre = FakeCentre(clock)
    gate = threading.Event()
    gate.set()
    inside = threading.Event()

    def handler(request):
        inside.set()
        assert gate.wait(WAIT_S), "the test never released the centre"
        return centre.handler(request)

    def factory(store, cancel):
        return SyncClient("http://centre.test", "secret-token", "test-agent", store, store,
                          clock, anchors=store, transport=httpx.MockTransport(handler),
                          cancel=cancel, wall_clock=lambda: clock.wall)

    config = replace(AgentConfig(), data_dir=tmp_path / "data", device_id="test-agent",
                     feedback=False)
    service = AgentService(config, emit=lambda d: None, clock=clock, sync_client_factory=factory)
    service.store.import_reference(REFERENCE, "2026-11-30T07:00:00+00:00")
    assert service.sync is not None
    service.sync.debounce_s = 0.05
    service.sync.first_delay_s = 3600.0  # only taps wake it in these tests
    stop = threading.Event()
    runner = threading.Thread(target=service.run_until, args=(stop,), daemon=True)
    runner.start()
    yield service, centre, gate, inside
    gate.set()
    stop.set()
    runner.join(10)
    assert not runner.is_alive()


def test_taps_reach_the_centre_through_the_background_thread(service_with_centre, tmp_path):
    service, centre, _, _ = service_with_centre
    service.on_tap(tap(BADGE_ANNA))
    service.on_tap(tap(CLIENT_TAG))
    assert wait_for(lambda: len(centre.events) == 2)
    assert wait_for(lambda: service.store.pending_count() == 0)
    assert [e["kind"] for e in centre.events.values()] == ["staff.signed_in", "visit.arrived"]
    assert wait_for(lambda: (running_agent(tmp_path / "data") or {}).get("sync", {}).get("last"))
    state = running_agent(tmp_path / "data")
    assert state["sync"]["last"]["ok"] is True


def test_a_tap_never_waits_for_a_stuck_centre(service_with_centre):
    service, centre, gate, inside = service_with_centre
    gate.clear()  # the centre (or the network) hangs
    service.on_tap(tap(BADGE_ANNA))
    assert inside.wait(WAIT_S)  # the sync thread is inside a request that does not return
    started = time.monotonic()
    feedback = service.on_tap(tap(CLIENT_TAG))
    assert time.monotonic() - started < 0.5
    assert feedback == Feedback.REGISTERED and len(service.store.open_visits()) == 1
    gate.set()
    assert wait_for(lambda: len(centre.events) == 2)


def test_no_centre_configured_means_no_sync_thread(tmp_path):
    service = AgentService(replace(AgentConfig(), data_dir=tmp_path, device_id="a"), print)
    try:
        assert service.sync is None
    finally:
        service.shutdown()
