"""End to end: a real `nyckelfri agent run` process, nfcpy's real drivers, simulated tags."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from agent.service import PID_NAME
from agent.store import Store
from drivers.sim.pn532 import Pn532Emulator
from drivers.sim.tags import TagFaults
from drivers.sim.udp_tag import UdpTagServer, build_tag
from tests.conftest import BADGE_ANNA, CLIENT_TAG, REFERENCE
from tests.e2e.harness import AgentProcess, import_reference, run_cli, tap

pytestmark = pytest.mark.slow

URI = "https://nyckelfri.example/t/K-1"


def badge():
    return build_tag(BADGE_ANNA + "000000", "NTAG213")


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    import_reference(d, {**REFERENCE, "staff": [
        {"badge_uid": BADGE_ANNA + "000000", "staff_ref": "P-anna", "display_name": "Anna"},
    ]})
    return d


def test_udp_tap_shows_up_in_visits_json(data_dir):
    with UdpTagServer() as field:
        agent = AgentProcess(data_dir, [field.path])
        try:
            assert tap(field, badge(), agent)["outcome"] == "signed_in"
            arrival = tap(field, build_tag(CLIENT_TAG, "NTAG215", uri=URI), agent)
            assert arrival["outcome"] == "arrival" and arrival["client_ref"] == "K-1"
            # the visit is readable by another process while the agent runs (WAL)
            visits = json.loads(run_cli("visits", "--json", data_dir=data_dir).stdout)
            assert [(v["client_ref"], v["staff_ref"], v["status"]) for v in visits] == [
                ("K-1", "P-anna", "open")]
            status = json.loads(run_cli("agent", "status", "--json", data_dir=data_dir).stdout)
            assert status["running"]["readers"][field.path]["state"] == "open"
        finally:
            assert agent.stop() == 0  # SIGTERM: clean stop
    assert not (data_dir / PID_NAME).exists()
    with Store.in_dir(data_dir) as store:
        events = {e.event_id: e for e in store.pending_events()}
        assert arrival["event_id"] in events
        assert events[arrival["event_id"]].payload["data"]["visit_id"] == arrival["visit_id"]


def test_pn532_on_a_pty_registers_through_nfcpys_pn532_driver(data_dir):
    with Pn532Emulator() as reader:
        agent = AgentProcess(data_dir, [f"serial:{reader.path}:pn532"])
        try:
            assert tap(reader, badge(), agent)["outcome"] == "signed_in"
            arrival = tap(reader, build_tag(CLIENT_TAG, "NTAG215", uri=URI), agent)
            assert arrival["outcome"] == "arrival"
        finally:
            assert agent.stop() == 0
    with Store.in_dir(data_dir) as store:
        [visit] = store.visits()
        assert visit.id == arrival["visit_id"] and visit.tag_uid == CLIENT_TAG


@pytest.mark.parametrize(
    ("faults", "detail"),
    [
        (TagFaults(garbage_ndef=True), "garbage_ndef"),
        (TagFaults(truncate_reads=True), "truncated"),
        (TagFaults(mute_after=3), "removed_mid_read"),
    ],
    ids=["garbage-ndef", "truncated-read", "removed-mid-read"],
)
def test_bad_tags_are_refused_and_the_agent_keeps_working(data_dir, faults, detail):
    # The bad tag has its own UID: a tag held on is read (and refused) again, and
    # those later verdicts may come after the good tag is presented; telling them
    # apart by UID, not by waiting, keeps the test independent of the machine's pace.
    bad_uid = "04BAD0000000A1"
    with UdpTagServer() as field:
        agent = AgentProcess(data_dir, [field.path], "--personal-staff", "P-anna")
        try:
            bad = tap(field, build_tag(bad_uid, "NTAG215", uri=URI, faults=faults), agent)
            assert bad["uid"] == bad_uid
            assert bad["outcome"] == "refused" and bad["refusal"] == "unreadable"
            assert detail in bad["message"] and "tap again" in bad["message"]
            # Held until the verdict, as staff hold a tag until the beep: nfcpy may
            # still be re-selecting the bad tag by its UID when the good one arrives
            # (the udp driver waits 0.5 s per try), longer than a brisk tap.
            field.present(build_tag(CLIENT_TAG, "NTAG215", uri=URI))
            good = agent.next_decision()
            while good["uid"] == bad_uid:  # each re-read of the bad tag is recorded
                assert good["refusal"] == "unreadable", good
                good = agent.next_decision()
            field.remove()
            assert good["uid"] == CLIENT_TAG and good["outcome"] == "arrival", good
            assert agent.proc.poll() is None
        finally:
            agent.stop()


def test_kill_9_mid_burst_loses_no_acknowledged_tap(data_dir):
    clients = [f"K-b{i}" for i in range(40)]
    uids = [f"04BB{i:010X}" for i in range(40)]
    import_reference(data_dir, {
        "clients": [{"ref": c, "lock_status": "pending"} for c in clients],
        "tags": [{"uid": u, "client_ref": c} for u, c in zip(uids, clients, strict=True)],
    })
    acknowledged: list[dict] = []
    with UdpTagServer() as field:
        agent = AgentProcess(data_dir, [field.path], "--personal-staff", "P-anna")
        stop = threading.Event()

        def burst():
            for uid in uids:
                if stop.is_set():
                    return
                field.present(build_tag(uid, "NTAG215"), 0.4)
                time.sleep(0.45)

        presenter = threading.Thread(target=burst, daemon=True)
        presenter.start()
        try:
            while len(acknowledged) < 8:
                acknowledged.append(agent.next_decision())
            time.sleep(0.37)  # somewhere inside the next tap's read/commit
            agent.proc.send_signal(signal.SIGKILL)
            agent.proc.wait(10)
        finally:
            stop.set()
            presenter.join(30)
            agent.kill()
        # lines already written before the kill were acknowledged too
        while not agent.decisions.empty():
            acknowledged.append(agent.decisions.get())
    assert len(acknowledged) >= 8
    with Store.in_dir(data_dir) as store:
        outbox = {e.event_id for e in store.pending_events(10_000)}
        visits = {v.id for v in store.visits()}
        for decision in acknowledged:
            assert decision["event_id"] in outbox, decision
            assert decision["visit_id"] in visits, decision
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # the agent starts again on the same store and goes on registering
    with UdpTagServer() as field:
        agent = AgentProcess(data_dir, [field.path], "--personal-staff", "P-anna")
        try:
            again = tap(field, build_tag(uids[-1], "NTAG215"), agent)
            assert again["outcome"] in ("arrival", "departure")
        finally:
            assert agent.stop() == 0
