"""End to end: an NTAG 424 DNA provisioned with `nyckelfri tag provision`, tapped at a
running agent offline, copies refused there, flagged at the centre, counters durable.

Real processes throughout: `python -m central ... serve` on a SQLite file, the
`nyckelfri` CLI, `nyckelfri agent run` reading nfcpy's udp driver, the simulated NTAG
424 DNA (drivers.sim.ntag424) with its SDM counter kept across taps and restarts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from agent.store import Store
from central.cases import suncheck
from central.cases.store import RoutineStore
from central.store import CentralStore
from drivers.sim.ntag424 import Ntag424Sim, Ntag424Tag
from drivers.sim.tags import Ntag21x, Type4Tag, ndef_bytes, sign_uid
from drivers.sim.udp_tag import UdpTagServer
from sync.protocol import PROTOCOL_HEADER
from tests.central.test_sun_authority import PI_1, PI_2, PROVIDER, enrol
from tests.e2e.harness import AgentProcess, run_cli, tap

pytestmark = pytest.mark.slow

UID = "04C767F2066180"
CLIENT = "K-1"  # pending lock, home care by the provider's unit (test_sun_authority)
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def centre_process(database: Path, port: int) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "central", "--database", str(database),
                             "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the centre did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def nyckelfri(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, data_dir=data_dir)


def copy_alerts(url: str, token: str) -> list[dict]:
    answer = httpx.get(f"{url}/v1/alerts", headers={
        PROTOCOL_HEADER: "1", "Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return [a for a in answer.json()["alerts"] if a["kind"] == "tag_copy_suspected"]


def events(data_dir: Path) -> list[dict]:
    with Store.in_dir(data_dir) as store:
        return [e.payload for e in store.pending_events(1000)]


def test_provision_tap_and_refuse_copies_offline_then_flag_them_at_the_centre(tmp_path):
    database = tmp_path / "centre.db"
    with CentralStore.open(str(database)) as store:
        tokens = enrol(store, RoutineStore(store))
    port = free_port()
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    (data_dir / "agent.toml").write_text(
        f'device_id = "{PI_1}"\ncentre_url = "http://127.0.0.1:{port}"\n'
        f'token = "{tokens[PI_1]}"\nrepeat_window_s = 0.001\n')
    chip = Ntag424Sim(bytes.fromhex(UID))  # one physical tag, kept across every tap

    with UdpTagServer() as field:
        # 1. provision it through the CLI over nfcpy's udp driver; the agent pulls keys
        with centre_process(database, port) as url:
            field.present(Ntag424Tag(chip))
            done = nyckelfri("tag", "provision", "--reader", field.path, "--client", CLIENT,
                             "--token", tokens[PROVIDER], "--json", data_dir=data_dir)
            field.remove()
            assert done.returncode == 0, done.stderr
            provisioned = json.loads(done.stdout)
            assert provisioned["uid"] == UID and provisioned["key_version"] == 1
            synced = nyckelfri("sync", "--json", data_dir=data_dir)
            assert synced.returncode == 0, synced.stderr
            assert json.loads(synced.stdout)["tag_keys"] == 1

        # 2. the centre is down: taps are decided offline
        agent = AgentProcess(data_dir, [field.path], "--personal-staff", "P-anna")
        try:
            arrival = tap(field, Ntag424Tag(chip), agent)
            assert arrival["outcome"] == "arrival", arrival
            [arrived] = [e for e in events(data_dir) if e["kind"] == "visit.arrived"]
            captured = arrived["data"]["sun"]["url"]
            assert arrived["data"]["sun"]["verdict"] == "ok"

            replay = tap(field, Type4Tag(bytes.fromhex(UID), ndef_bytes(uri=captured)), agent)
            assert replay["refusal"] == "sun_replay", replay
            signature = sign_uid(bytes.fromhex(UID))  # the real tag's static proof, copied
            magic = Ntag21x(bytes.fromhex(UID), "NTAG215",
                            ndef_bytes(uri="https://nyckelfri.example/t/K-1"), signature)
            copy = tap(field, magic, agent)
            assert copy["refusal"] == "sun_missing", copy
            flipped = captured[:-1] + ("0" if captured[-1] != "0" else "1")
            tampered = tap(field, Type4Tag(bytes.fromhex(UID), ndef_bytes(uri=flipped)), agent)
            assert tampered["refusal"] == "sun_bad_mac", tampered

            departure = tap(field, Ntag424Tag(chip), agent)
            assert departure["outcome"] == "departure", departure
        finally:
            assert agent.stop() == 0

        # 3. the agent restarts: its counter still refuses the captured URL
        agent = AgentProcess(data_dir, [field.path], "--personal-staff", "P-anna")
        try:
            again = tap(field, Type4Tag(bytes.fromhex(UID), ndef_bytes(uri=captured)), agent)
            assert again["refusal"] == "sun_replay", again
        finally:
            assert agent.stop() == 0

    [departed] = [e for e in events(data_dir) if e["kind"] == "visit.departed"]
    last = departed["data"]["sun"]["counter"]
    assert last > arrived["data"]["sun"]["counter"]

    # 4. the centre comes back: the refusals are flagged, the counter is the tag's last
    with centre_process(database, port) as url:
        synced = nyckelfri("sync", "--json", data_dir=data_dir)
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["rejected"] == 0
        [alert] = copy_alerts(url, tokens[PROVIDER])
        # the two replays, the copy (no SUN) and the tampered MAC, from this agent
        assert (alert["subject"], alert["client_ref"], alert["device"]) == (UID, CLIENT, PI_1)
        assert alert["verdict"] == "bad_mac, malformed, replay"
        assert "4 read(s)" in alert["detail"] and "may be copied" in alert["detail"]

    # 5. the centre restarts too: a second agent replaying the URL is flagged there
    with centre_process(database, port) as url:
        event = {
            "event_id": os.urandom(16).hex(), "kind": "visit.arrived", "device_id": PI_2,
            "at": arrived["at"], "boottime_ns": 1, "boot_id": "boot-pi-2", "clock_synced": True,
            "data": {"visit_id": os.urandom(16).hex(), "client_ref": CLIENT,
                     "staff_ref": "P-bo", "tag_uid": UID, "method": "nfc_tag",
                     "sun": {"url": captured, "counter": arrived["data"]["sun"]["counter"],
                             "verdict": "ok"}},
        }
        answer = httpx.post(f"{url}/v1/events", json={"device_id": PI_2, "events": [event]},
                            headers={PROTOCOL_HEADER: "1",
                                     "Authorization": f"Bearer {tokens[PI_2]}"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["stored"] == [event["event_id"]]
        by_device = {a["device"]: a for a in copy_alerts(url, tokens[PROVIDER])}
        assert set(by_device) == {PI_1, PI_2}
        assert by_device[PI_2]["verdict"] == "replay"
    # the centre's counter is the last genuine read's, as the agent's is
    with CentralStore.open(str(database)) as store, store._read() as conn:
        assert suncheck.last_counter(conn, UID) == last
    with Store.in_dir(data_dir) as agent_store:
        assert agent_store.sun_counters() == {UID: last}
