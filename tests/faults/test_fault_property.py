"""For any interleaving of network faults, the centre ends with exactly the agent's
events, once each; on SQLite and on PostgreSQL, over real HTTP on loopback."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import FixedClock
from agent.store import Store
from central.api import create_app
from central.server import run_in_thread
from central.store import CentralStore
from sync.client import FullJitterBackoff, SyncClient
from sync.errors import SyncError
from tests.central.conftest import database_url  # noqa: F401 - the fixture, sqlite + postgresql
from tests.faults.proxy import Fault, FaultProxy

T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
MAX_ROUNDS = 40  # each round consumes at least one planned fault; plans are shorter
_names = itertools.count()


@pytest.fixture
def live_centre(database_url):  # noqa: F811
    store = CentralStore.open(database_url)
    with run_in_thread(create_app(store)) as (server, _thread, _url):
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield store, (host, port)
    store.close()


def buffered_agent(path, device: str, count: int) -> tuple[Store, list[str]]:
    store = Store(path, device_id=device)
    clock = FixedClock(T0, synced=False, boot_id=f"boot-{device}")
    ids = []
    with store.transaction() as conn:
        for i in range(count):
            clock.advance(7)
            ids.append(store.add_event(conn, "visit.arrived", clock.now(), {
                "visit_id": f"{i:032x}", "client_ref": f"K-{i}", "staff_ref": "P-1",
                "tag_uid": "04A1B2C3D4E5F6", "method": "nfc_tag"}))
    return store, ids


faults = st.lists(st.sampled_from(list(Fault)), max_size=10)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=faults, count=st.integers(1, 30), batch=st.integers(1, 8),
       seed=st.integers(0, 2**16))
def test_any_interleaving_of_faults_ends_with_every_event_once(
        live_centre, tmp_path_factory, plan, count, batch, seed):
    centre, address = live_centre
    device = f"agent-{next(_names)}"
    token = centre.add_device(device)
    store, ids = buffered_agent(tmp_path_factory.mktemp("agent") / "agent.db", device, count)
    clock = FixedClock(T0, synced=False, boot_id=f"boot-{device}")
    with FaultProxy(address, plan, slow_s=0.02) as proxy, SyncClient(
        proxy.url, token, device, store, store, clock, anchors=store, batch_size=batch,
        max_attempts=2, sleep=lambda s: None, clock_samples=1,
        wait=FullJitterBackoff(rng=random.Random(seed)), wall_clock=lambda: clock.wall,
    ) as client:
        for _ in range(MAX_ROUNDS):
            try:
                client.sync_once()
            except SyncError:
                continue  # the agent tries again at its next round
            if store.pending_count() == 0 and not proxy.plan:
                break
    held = [e["event_id"] for e in centre.events(device=device, limit=10_000)]
    assert sorted(held) == sorted(ids), f"plan {plan}: centre holds {len(held)} of {len(ids)}"
    assert store.pending_count() == 0 and store.outbox_counts()["sent"] == count
    store.close()
