"""End to end over loopback HTTP: a real agent store, the sync client, the real centre.

The centre (central.api.create_app over central.store.CentralStore on SQLite) runs
in uvicorn in a thread on 127.0.0.1:0; tests/faults/proxy.py sits between where
the network must fail (a connection cut after the centre committed, a duplicate,
a 500 after commit, a refused connection).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import replace

import pytest
import uvicorn
from click.testing import CliRunner

from agent.cli import EXIT_DATA, EXIT_NETWORK, main
from agent.config import AgentConfig
from agent.service import AgentService, build_sync_client
from agent.store import Store
from agent.visits import Registrar, Settings
from central.api import create_app
from central.store import CentralStore
from drivers.nfc.base import Tap
from sync.client import FullJitterBackoff, SyncClient
from sync.errors import Forbidden, Unauthorized
from tests.conftest import BADGE_ANNA, CLIENT_TAG, REFERENCE
from tests.faults.proxy import Fault, FaultProxy

START_TIMEOUT_S = 15.0
DEVICE = "test-agent"

CENTRE_REFERENCE = {
    **REFERENCE,
    "clients": [*REFERENCE["clients"], {"ref": "K-9", "lock_status": "installed"}],
    "tags": [*REFERENCE["tags"], {"uid": "04999999999999", "client_ref": "K-9"}],
    "locks": [{"serial": "LK-0009", "client_ref": "K-9", "state": "installed"}],
}


def held(centre) -> list[str]:
    """The ids the centre holds for the device, sorted (each must appear once)."""
    return sorted(e["event_id"] for e in centre.events())


class Centre:
    def __init__(self, store: CentralStore, server: uvicorn.Server, thread: threading.Thread):
        self.store = store
        self.server = server
        self.thread = thread
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.address = (host, port)
        self.url = f"http://{host}:{port}"
        self.token = store.add_device(DEVICE)

    def events(self) -> list[dict]:
        return self.store.events(device=DEVICE)


@pytest.fixture
def centre(tmp_path):
    store = CentralStore.open(str(tmp_path / "central.db"))
    store.import_reference(CENTRE_REFERENCE)
    config = uvicorn.Config(create_app(store), host="127.0.0.1", port=0, log_level="warning",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="centre", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive(), "the centre's server thread died while starting"
        assert time.monotonic() < deadline, "the centre did not start"
        time.sleep(0.01)
    yield Centre(store, server, thread)
    server.should_exit = True
    thread.join(START_TIMEOUT_S)
    store.close()


def tap(uid):
    return Tap(reader="udp:127.0.0.1:1", uid=uid, product="NXP NTAG215", tag_type="Type2Tag")


def visit_taps(store, clock) -> list[str]:
    """Sign in, arrive, depart: three real events in the agent's outbox."""
    reg = Registrar(store, clock, Settings(repeat_window_s=30))
    ids = [reg.handle(tap(BADGE_ANNA)).event_id]
    clock.advance(60)
    ids.append(reg.handle(tap(CLIENT_TAG)).event_id)
    clock.advance(20 * 60)
    ids.append(reg.handle(tap(CLIENT_TAG)).event_id)
    return ids


def client_for(url, token, store, clock, **kw) -> SyncClient:
    options = {"anchors": store, "sleep": lambda s: None, "wall_clock": lambda: clock.wall,
               "wait": FullJitterBackoff(rng=random.Random(3)), **kw}
    return SyncClient(url, token, DEVICE, store, store, clock, **options)


def test_events_arrive_once_reference_is_pulled_clock_is_stored(centre, store, clock):
    ids = visit_taps(store, clock)
    with client_for(centre.url, centre.token, store, clock) as client:
        report = client.sync_once()
        assert (report.push.sent, report.push.stored, report.push.rejected) == (3, 3, [])
        assert held(centre) == sorted(ids)
        assert store.pending_count() == 0 and store.outbox_counts()["sent"] == 3
        # reference: the centre's records, with their cursor
        assert report.reference_items == 11
        assert store.client_for_tag("04999999999999")[0].lock_status == "installed"
        assert [lk["serial"] for lk in store.locks()] == ["LK-0009"]
        assert store.reference_cursor() == 11
        # clock: the boot's best sample is stored and was handed to the centre
        anchor = store.anchor(clock.boot_id)
        assert anchor is not None and anchor.rtt_ns == report.clock.rtt_ns
        # the centre's clock is the real one; the agent's is steered to 2026
        assert abs(report.offset_s) > 0
        # a second round sends nothing and changes nothing
        again = client.sync_once()
        assert (again.push.sent, again.reference_items) == (0, 0)
    assert len(centre.events()) == 3
    visits = centre.store.visits()
    assert [(v.client_ref, v.status) for v in visits] == [("K-1", "closed")]


def test_reference_changes_arrive_on_the_next_pull(centre, store, clock):
    with client_for(centre.url, centre.token, store, clock) as client:
        client.pull_reference()
        from sync.protocol import ReferenceKind

        centre.store.upsert_reference(ReferenceKind.CLIENT, "K-1", {"lock_status": "installed"})
        centre.store.delete_reference(ReferenceKind.LOCK, "LK-0009")
        assert client.pull_reference() == 2
    assert store.client_for_tag(CLIENT_TAG)[0].lock_status == "installed"
    assert store.locks() == []


@pytest.mark.parametrize("fault", [Fault.CUT_AFTER_COMMIT, Fault.ERROR_500_AFTER_COMMIT,
                                   Fault.DUPLICATE, Fault.ERROR_500, Fault.REFUSE])
def test_network_faults_on_the_push_lose_nothing_and_double_nothing(centre, store, clock,
                                                                    fault):
    ids = visit_taps(store, clock)
    with FaultProxy(centre.address, [Fault.PASS, fault]) as proxy, \
            client_for(proxy.url, centre.token, store, clock, clock_samples=1) as client:
        report = client.sync_once()
    posts = [line for f, line in proxy.seen if line.startswith("POST")]
    # DUPLICATE delivers one request twice; REFUSE closes before the request is read
    assert len(posts) == (1 if fault in (Fault.DUPLICATE, Fault.REFUSE) else 2)
    assert fault in [f for f, _ in proxy.seen]
    assert held(centre) == sorted(ids)  # once each
    assert report.push.stored == 3 and store.pending_count() == 0


def test_a_centre_that_stays_down_keeps_everything_for_later(centre, store, clock):
    ids = visit_taps(store, clock)
    from sync.errors import CentreUnreachable

    with FaultProxy(centre.address, [Fault.PASS] + [Fault.CUT_AFTER_COMMIT] * 3) as proxy, \
            client_for(proxy.url, centre.token, store, clock, clock_samples=1,
                       max_attempts=3) as client:
        with pytest.raises(CentreUnreachable, match="Nothing is lost"):
            client.sync_once()
        assert store.pending_count() == 3  # the centre has them, the agent does not know
        client.sync_once()  # the centre is back: the same events, acknowledged now
    assert held(centre) == sorted(ids) and store.pending_count() == 0


def test_wrong_or_revoked_token_is_refused_with_the_centres_advice(centre, store, clock):
    visit_taps(store, clock)
    with client_for(centre.url, "not-a-token", store, clock) as client, \
            pytest.raises(Unauthorized, match="device add"):
        client.sync_once()
    centre.store.revoke_device(DEVICE)
    with client_for(centre.url, centre.token, store, clock) as client, \
            pytest.raises(Forbidden, match="revoked"):
        client.sync_once()
    assert store.pending_count() == 3 and centre.events() == []


def test_events_of_another_device_are_rejected_and_set_aside(centre, tmp_path, clock):
    # a store whose events name another device (a renamed agent): the centre refuses
    # them for good; they are set aside, the rest flows
    with Store.in_dir(tmp_path / "other", device_id="old-name") as other:
        with other.transaction() as conn:
            foreign = other.add_event(conn, "staff.signed_in", clock.now(), {})
        other.device_id = DEVICE
        with other.transaction() as conn:
            own = other.add_event(conn, "staff.signed_in", clock.now(), {})
        with client_for(centre.url, centre.token, other, clock) as client:
            report = client.push_all()
        assert [r.event_id for r in report.rejected] == [foreign]
        assert "old-name" in other.rejected_events()[0]["rejected_reason"]
        assert other.pending_count() == 0
    assert held(centre) == [own]


# --- the CLI and the running agent ------------------------------------------------------------


def test_cli_sync_json_and_progress(centre, tmp_path, clock):
    data = tmp_path / "cli"
    with Store.in_dir(data, device_id=DEVICE) as store, store.transaction() as conn:
        for i in range(1200):  # a backlog of several batches
            store.add_event(conn, "staff.signed_in", clock.now(), {"n": i})
    env = {"NYCKELFRI_DEVICE_ID": DEVICE, "NYCKELFRI_TOKEN": centre.token}
    result = CliRunner().invoke(main, ["sync", "--centre", centre.url, "--data-dir", str(data),
                                       "--json"], env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["pushed"], summary["stored"], summary["rejected"]) == (1200, 1200, 0)
    assert summary["reference_items"] == 11
    assert centre.store.event_count() == 1200
    result = CliRunner().invoke(main, ["sync", "--centre", centre.url, "--data-dir", str(data)],
                                env=env)
    assert result.exit_code == 0
    assert result.stdout.startswith("pushed 0, stored 0, rejected 0, reference items 0, "
                                    "clock offset ")


def test_cli_sync_shows_a_progress_bar_for_a_big_backlog(centre, tmp_path, clock):
    data = tmp_path / "cli"
    with Store.in_dir(data, device_id=DEVICE) as store, store.transaction() as conn:
        for i in range(700):
            store.add_event(conn, "staff.signed_in", clock.now(), {"n": i})
    result = CliRunner().invoke(main, ["sync", "--centre", centre.url, "--token", centre.token,
                                       "--data-dir", str(data)],
                                env={"NYCKELFRI_DEVICE_ID": DEVICE})
    assert result.exit_code == 0, result.output
    assert "pushing events" in result.stderr
    assert "stored 700" in result.stdout


def test_cli_sync_exit_codes(centre, tmp_path):
    data = str(tmp_path / "cli")
    env = {"NYCKELFRI_DEVICE_ID": DEVICE, "NYCKELFRI_SYNC_MAX_ATTEMPTS": "1"}
    bad = CliRunner().invoke(main, ["sync", "--centre", centre.url, "--token", "wrong",
                                    "--data-dir", data], env=env)
    assert bad.exit_code == EXIT_DATA and "device add" in bad.output
    with FaultProxy(centre.address, [Fault.REFUSE] * 5) as proxy:
        down = CliRunner().invoke(main, ["sync", "--centre", proxy.url, "--token",
                                         centre.token, "--data-dir", data], env=env)
    assert down.exit_code == EXIT_NETWORK and "Nothing is lost" in down.output
    assert "Traceback" not in down.output
    none = CliRunner().invoke(main, ["sync", "--data-dir", data],
                              env={**env, "NYCKELFRI_CENTRE_URL": ""})
    assert none.exit_code == EXIT_DATA and "--centre" in none.output


def test_running_agent_syncs_taps_in_the_background(centre, tmp_path, clock):
    config = replace(AgentConfig(), data_dir=tmp_path / "agent", device_id=DEVICE,
                     feedback=False, centre_url=centre.url, token=centre.token)
    service = AgentService(config, emit=lambda d: None, clock=clock)
    service.store.import_reference(REFERENCE, "2026-11-30T07:00:00+00:00")
    assert service.sync is not None
    service.sync.debounce_s = 0.05
    stop = threading.Event()
    runner = threading.Thread(target=service.run_until, args=(stop,), daemon=True)
    runner.start()
    try:
        service.on_tap(tap(BADGE_ANNA))
        service.on_tap(tap(CLIENT_TAG))
        deadline = time.monotonic() + 10
        while len(centre.events()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(e["kind"] for e in centre.events()) == ["staff.signed_in",
                                                              "visit.arrived"]
    finally:
        stop.set()  # what SIGTERM does
        runner.join(10)
    assert not runner.is_alive()
    with Store.in_dir(config.data_dir) as store:
        assert store.pending_count() == 0
        assert store.anchor(clock.boot_id) is not None


def test_build_sync_client_reads_the_token_file(centre, tmp_path, store, clock):
    token_file = tmp_path / "token"
    token_file.write_text(centre.token + "\n")
    config = replace(AgentConfig(), device_id=DEVICE, centre_url=centre.url,
                     token_file=token_file)
    with build_sync_client(config, store, clock) as client:
        assert client.measure_clock().boot_id == clock.boot_id
        client.push_all()
