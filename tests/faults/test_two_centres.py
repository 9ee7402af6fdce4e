"""Scale: two centre processes on one PostgreSQL take concurrent pushes, nothing lost
or doubled, even when the same events reach both processes at the same moment."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from agent.clock import FixedClock
from agent.store import Store
from central.store import CentralStore
from sync.client import SyncClient
from tests.central.conftest import fresh_pg_database

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
DEVICES = 6
EVENTS_PER_DEVICE = 400
BATCH = 50
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_centre(dsn: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "central", "--database", dsn, "serve",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("centre did not start")


def buffered(path, device: str) -> tuple[Store, list[str]]:
    store = Store(path, device_id=device)
    clock = FixedClock(T0, synced=True, boot_id=f"boot-{device}")
    ids = []
    with store.transaction() as conn:
        for i in range(EVENTS_PER_DEVICE):
            clock.advance(3)
            ids.append(store.add_event(conn, "visit.arrived", clock.now(), {
                "visit_id": f"{i:032x}", "client_ref": f"K-{i % 50}", "staff_ref": device,
                "tag_uid": "04A1B2C3D4E5F6", "method": "nfc_tag"}))
    return store, ids


def test_two_centre_processes_on_one_postgresql(tmp_path):
    with fresh_pg_database() as dsn:
        setup = CentralStore.open(dsn)  # migrate once, enrol the devices
        tokens = {f"agent-{i}": setup.add_device(f"agent-{i}") for i in range(DEVICES)}
        centres = [start_centre(dsn) for _ in range(2)]
        errors: list[BaseException] = []
        try:
            agents = {d: buffered(tmp_path / f"{d}.db", d) for d in tokens}

            def push(device: str, url: str) -> None:
                store, _ = agents[device]
                clock = FixedClock(T0, synced=True, boot_id=f"boot-{device}")
                try:
                    with SyncClient(url, tokens[device], device, store, store, clock,
                                    anchors=store, batch_size=BATCH, clock_samples=1,
                                    wall_clock=lambda: clock.wall) as client:
                        client.push_all()
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

            # every agent pushes its backlog to BOTH processes at once: the same
            # events race through two processes into one database
            threads = [threading.Thread(target=push, args=(d, url))
                       for d in tokens for _, url in centres]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert not errors, errors
            for device, (store, ids) in agents.items():
                held = [e["event_id"] for e in setup.events(device=device, limit=10_000)]
                assert sorted(held) == sorted(ids), device
                assert store.pending_count() == 0
                store.close()
            assert setup.event_count() == DEVICES * EVENTS_PER_DEVICE
        finally:
            for proc, _ in centres:
                proc.terminate()
                proc.wait(15)
            setup.close()
