"""The routine's events are applied once, in one transaction, durably
(central.applications), on SQLite and PostgreSQL: an apply that fails, a centre
killed (SIGKILL) between ingest and apply, two sweepers at once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.applications import Sweeper
from central.services.cases import Cases
from central.store import CentralStore
from sync.protocol import PROTOCOL_HEADER, Event
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import World
from tests.central.test_lock_proofs import SECRET, install_job, proof, tick

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0


@pytest.fixture
def world(central_store: CentralStore, central_clock: SteppingClock) -> World:
    return World(central_store, central_clock)


def install_batch(world: World, client: str) -> tuple[int, int, list[Event]]:
    """An install job booked for montor-1 and the batch its agent sends for it."""
    case_id, job_id = install_job(world, client)
    world.rs.locks.enrol(f"PH-{client}", SECRET, world.alarm_admin)
    seen = proof(world, f"PH-{client}", bound=True, client=client, job_id=job_id)
    return case_id, job_id, [
        seen, tick(world, job_id, "lock_bound_to_client", verification=seen.event_id),
        tick(world, job_id, "knob_labelled_with_key_number"),
        tick(world, job_id, "job_marked_done")]


def installs(world: World, case_id: int) -> int:
    return sum(s.action == "install_lock" for s in world.rs.cases.get(case_id,
                                                                      actor=world.admin).steps)


def assert_installed_once(world: World, case_id: int, job_id: int) -> None:
    case = world.rs.cases.get(case_id, actor=world.admin)
    assert case.state == "installed"
    assert installs(world, case_id) == 1
    assert [c.outcome for c in world.rs.binder.checkpoints(job_id,
                                                           actor=world.admin)] == ["applied"] * 3
    assert [v.verdict for v in world.rs.locks.verifications(world.alarm_admin)] == ["verified"]
    assert world.central.pending_applications() == []


def test_an_apply_that_fails_once_leaves_nothing_half_done(world: World,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    case_id, job_id, batch = install_batch(world, "K-ONCE")
    real_act = Cases.act
    failures = []

    def act_then_fail(self: Cases, *args: Any, **kwargs: Any) -> Any:
        step = real_act(self, *args, **kwargs)  # the step and its effects are written...
        if not failures:
            failures.append(step)
            raise RuntimeError("disk on fire")  # ...then the application fails
        return step

    monkeypatch.setattr(Cases, "act", act_then_fail)
    stored = world.central.ingest(world.fitter_agent, batch, None)
    assert stored.stored == [e.event_id for e in batch]  # stored whatever apply does

    # The step ran and was rolled back with everything of that application.
    assert len(failures) == 1
    assert world.rs.cases.get(case_id, actor=world.admin).state == "installation_booked"
    assert installs(world, case_id) == 0
    assert [c.checkpoint for c in world.rs.binder.checkpoints(job_id, actor=world.admin)] == [
        "lock_bound_to_client", "knob_labelled_with_key_number"]
    assert world.rs.binder.job(job_id, actor=world.admin).done_at is None
    [left] = world.central.pending_applications()
    assert left.event_id == batch[-1].event_id
    assert left.attempts == 1 and "RuntimeError: disk on fire" in str(left.last_error)

    # The sweeper applies it, once; sweeping and redelivering again change nothing.
    result = Sweeper(world.central).sweep()
    assert result is not None and (result.applied, result.failed) == (1, 0)
    assert_installed_once(world, case_id, job_id)
    again = Sweeper(world.central).sweep()
    assert again is not None and (again.applied, again.failed, again.waiting) == (0, 0, 0)
    assert world.central.ingest(world.fitter_agent, batch, None).stored == [
        e.event_id for e in batch]
    assert_installed_once(world, case_id, job_id)


def test_a_devices_later_events_wait_behind_its_failing_one(world: World,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    case_id, job_id, batch = install_batch(world, "K-ORDER")
    proofs = world.rs.proofs
    real_verify = proofs.verify
    monkeypatch.setattr(proofs, "verify", lambda *a: (_ for _ in ()).throw(
        ConnectionError("lock service down")))
    world.central.ingest(world.fitter_agent, batch, None)
    pending = world.central.pending_applications()
    assert [p.event_id for p in pending] == [e.event_id for e in batch]  # none skipped ahead
    assert [p.attempts for p in pending] == [1, 0, 0, 0]
    assert world.rs.binder.checkpoints(job_id, actor=world.admin) == []
    monkeypatch.setattr(proofs, "verify", real_verify)
    result = world.central.apply_pending()
    assert (result.applied, result.failed, result.waiting) == (4, 0, 0)
    assert_installed_once(world, case_id, job_id)


def test_two_sweepers_at_once_apply_each_event_once(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    case_id, job_id, batch = install_batch(world, "K-RACE")
    proofs = world.rs.proofs
    real_apply = proofs.apply
    monkeypatch.setattr(proofs, "apply", lambda *a: (_ for _ in ()).throw(
        TimeoutError("not now")))
    # The applier is looked up at registration: register the failing one for the ingest.
    world.central.add_applier("lock_proofs", ("lock.verification", "job.checkpoint"),
                              proofs.apply)
    world.central.ingest(world.fitter_agent, batch, None)
    assert len(world.central.pending_applications()) == 4
    world.central.add_applier("lock_proofs", ("lock.verification", "job.checkpoint"),
                              real_apply)
    start = threading.Barrier(3)
    results = []

    def sweep() -> None:
        start.wait()
        results.append(world.central.apply_pending())

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r.applied for r in results) >= 4 and all(r.failed == 0 for r in results)
    assert_installed_once(world, case_id, job_id)


# --- a centre killed between ingest and apply --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def _start(processes: list[subprocess.Popen[bytes]],
           argv: Callable[[int], list[str]]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python ARGV(port)`` and wait until it answers /v1/clock."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, *argv(port)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    processes.append(proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert proc.poll() is None, f"the centre exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/v1/clock", headers={PROTOCOL_HEADER: "1"},
                         timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the centre did not start"
        time.sleep(0.05)


def _push(url: str, token: str, device: str, batch: list[Event]) -> httpx.Response:
    body = {"protocol": 1, "device_id": device,
            "events": [e.model_dump(mode="json") for e in batch]}
    return httpx.post(f"{url}/v1/events", json=body, timeout=HTTP_TIMEOUT_S,
                      headers={PROTOCOL_HEADER: "1", "Authorization": f"Bearer {token}"})


def _database(world: World) -> str:
    url = world.central._engine.url
    return (url.database or "") if url.get_backend_name() == "sqlite" else \
        url.render_as_string(hide_password=False)


@pytest.mark.slow
def test_a_centre_killed_between_ingest_and_apply_applies_at_restart(
        world: World, processes: list[subprocess.Popen[bytes]]) -> None:
    case_id, job_id, batch = install_batch(world, "K-KILL")
    database = _database(world)
    token, device = world.tokens[world.fitter_agent.name], world.fitter_agent.name

    dying, url = _start(processes, lambda port: [
        "-m", "tests.central.dying_centre", database, str(port)])
    with pytest.raises(httpx.TransportError):  # the answer never comes: the agent retries
        _push(url, token, device, batch)
    assert dying.wait(30) == -signal.SIGKILL
    # The events are stored and recorded as to apply; nothing of them is applied.
    assert len(world.central.events(kind="job.checkpoint")) == 3
    assert [p.event_id for p in world.central.pending_applications()] == [
        e.event_id for e in batch]
    assert world.rs.cases.get(case_id, actor=world.admin).state == "installation_booked"
    assert world.rs.locks.verifications(world.alarm_admin) == []

    # The real centre's start-up sweep applies them before it serves.
    centre, url = _start(processes, lambda port: [
        "-m", "central", "--database", database, "serve", "--port", str(port)])
    assert_installed_once(world, case_id, job_id)
    # The agent's retry of the cut-off push changes nothing.
    again = _push(url, token, device, batch)
    assert again.status_code == 200, again.text
    assert sorted(again.json()["stored"]) == sorted(e.event_id for e in batch)
    assert_installed_once(world, case_id, job_id)
    centre.send_signal(signal.SIGTERM)
    assert centre.wait(30) == 0


def test_the_cli_shows_what_is_pending_and_applies_it(world: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from central.cli import main

    case_id, job_id, batch = install_batch(world, "K-CLI")
    proofs = world.rs.proofs
    monkeypatch.setattr(proofs, "checkpoint", lambda *a: (_ for _ in ()).throw(
        OSError("no space left on device")))
    world.central.ingest(world.fitter_agent, batch, None)
    monkeypatch.undo()
    runner, base = CliRunner(), ["--database", _database(world), "pending"]
    shown = runner.invoke(main, [*base, "--json"])
    assert shown.exit_code == 0, shown.output
    [first, *rest] = json.loads(shown.output)["pending"]
    assert first["kind"] == "job.checkpoint" and first["attempts"] == 1
    assert "no space left on device" in first["last_error"] and len(rest) == 2
    human = runner.invoke(main, base)
    assert "1 attempt(s), last: OSError: no space left on device" in human.output
    applied = runner.invoke(main, [*base, "--apply"])
    assert applied.exit_code == 0, applied.output
    assert "applied 3, failed 0, waiting 0" in applied.output
    assert "nothing pending" in applied.output
    assert_installed_once(world, case_id, job_id)
