"""Who may send what (central.senders), over real HTTP on SQLite and PostgreSQL.

Every row of the table is pushed by every kind of sender: a field device, a fitter's
device (in its own fitter's name and in another's), and each principal role. What the
table refuses is rejected with its reason, stored nowhere and counted; nobody but the
device enrolled to a fitter advances a case or files a proof in that fitter's name.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from central import senders
from central.cli import main
from central.http.app import create_app
from central.server import run_in_thread
from central.store import CentralStore
from sync.protocol import JOB_CHECKPOINT, LOCK_VERIFICATION, PROTOCOL_HEADER, PushResponse
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import World
from tests.central.test_lock_proofs import SECRET, install_job, proof, tick

HTTP_TIMEOUT_S = 30.0
FIELD_KINDS = {k for k, who in senders.MAY_SEND.items() if senders.Sender.FIELD_DEVICE in who}
FITTER_KINDS = {k for k, who in senders.MAY_SEND.items()
                if senders.Sender.FITTER_DEVICE in who}
# Every principal role, by the World's name for it.
PRINCIPALS = ("admin", "assessor", "provider", "alarm_admin", "fitter")


@dataclass
class Centre:
    world: World
    http: httpx.Client

    def push(self, who: str, events: list[dict[str, Any]]) -> PushResponse:
        response = self.http.post(
            "/v1/events", json={"protocol": 1, "device_id": who, "events": events},
            headers=self.auth(who))
        assert response.status_code == 200, response.text
        return PushResponse.model_validate(response.json())

    def auth(self, who: str) -> dict[str, str]:
        return {PROTOCOL_HEADER: "1", "Authorization": f"Bearer {self.world.tokens[who]}"}


@pytest.fixture
def centre(central_store: CentralStore, central_clock: SteppingClock) -> Iterator[Centre]:
    world = World(central_store, central_clock)
    world.other_fitter_agent = world.enrol("montor-2-pi", "device",
                                           fitter=world.other_fitter.name)
    with run_in_thread(create_app(central_store, routine=world.rs)) as (_s, _t, url), \
            httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
        yield Centre(world, http)


def one_of_each(device: str, fitter: str) -> dict[str, dict[str, Any]]:
    """An event of every kind the table names, from ``device``, in ``fitter``'s name."""
    visit = {"visit_id": uuid.uuid4().hex, "client_ref": "K-1", "staff_ref": "P-anna",
             "tag_uid": "04A1B2C3D4E5F6", "method": "nfc_tag"}
    data: dict[str, dict[str, Any]] = {
        senders.STAFF_SIGNED_IN: {"staff_ref": "P-anna"},
        "visit.arrived": visit, "visit.departed": visit,
        "visit.departure_missing": visit,
        senders.TAP_REFUSED: {"uid": "04A1B2C3D4E5F6", "reason": "unknown_tag"},
        LOCK_VERIFICATION: {"fitter": fitter, "expected_serial": "PH-1",
                            "expected_client": "K-1", "error": "lock not found"},
        JOB_CHECKPOINT: {"job_id": 99_999, "fitter": fitter, "checkpoint": "job_marked_done"},
    }
    assert set(data) == set(senders.MAY_SEND), "a row of the table is not tested"
    return {kind: {"event_id": uuid.uuid4().hex, "kind": kind, "device_id": device,
                   "at": "2026-11-30T07:30:00+00:00", "boottime_ns": 1, "boot_id": "b-1",
                   "clock_synced": True, "data": d} for kind, d in data.items()}


# (sender, the fitter named in its events, the kinds it may send)
SENDERS = [
    ("agent", "montor-1", FIELD_KINDS),
    ("fitter_agent", "montor-1", FITTER_KINDS),  # its own fitter
    ("fitter_agent", "montor-2", set()),  # another fitter's name
    *[(who, "montor-1", set()) for who in PRINCIPALS],
]


@pytest.mark.parametrize(("who", "fitter", "allowed"), SENDERS,
                         ids=[f"{w}-as-{f}" for w, f, _ in SENDERS])
def test_every_row_of_the_table_for_every_sender(centre: Centre, who: str, fitter: str,
                                                 allowed: set[str]) -> None:
    world = centre.world
    name = getattr(world, who).name
    events = one_of_each(name, fitter)
    answer = centre.push(name, list(events.values()))
    stored = {kind for kind, e in events.items() if e["event_id"] in answer.stored}
    assert stored == allowed
    reasons = {r.event_id: r.reason for r in answer.rejected}
    assert set(reasons) == {e["event_id"] for k, e in events.items() if k not in allowed}
    for kind, e in events.items():
        held = world.central.events(device=name, kind=kind)
        assert [h["event_id"] for h in held] == ([e["event_id"]] if kind in allowed else [])
    # Refusals are counted per device, kind and reason, and shown with the devices.
    refused = {(r.kind, r.reason): r.count for r in world.central.sender_refusals(name)}
    assert sum(refused.values()) == len(events) - len(allowed)
    assert {kind for kind, _ in refused} == set(events) - allowed
    if who in PRINCIPALS:
        assert set(refused.values()) == {1}
        assert {reason for _, reason in refused} == {senders.Reason.PRINCIPAL}
        assert all("principals do not push" in r for r in reasons.values())
    elif fitter == "montor-2":
        assert refused[LOCK_VERIFICATION, senders.Reason.OTHER_FITTER] == 1
        assert "enrolled to fitter montor-1" in reasons[events[JOB_CHECKPOINT]["event_id"]]
    # Pushed again, nothing more is stored and the refusals count twice.
    again = centre.push(name, list(events.values()))
    assert set(again.stored) == set(answer.stored)
    assert sum(r.count for r in world.central.sender_refusals(name)) == 2 * len(reasons)


def test_no_principal_pushes_a_visit_or_pulls_reference_data(centre: Centre) -> None:
    world = centre.world
    for who in PRINCIPALS:
        name = getattr(world, who).name
        arrived = one_of_each(name, "montor-1")["visit.arrived"]
        answer = centre.push(name, [arrived])
        assert answer.stored == [] and len(answer.rejected) == 1
        response = centre.http.get("/v1/reference", headers=centre.auth(name))
        assert response.status_code == 403, response.text
        assert "principal" in response.json()["detail"]
        assert response.json()["advice"]
    assert world.central.visits() == []
    for device in ("agent", "fitter_agent"):
        response = centre.http.get("/v1/reference", headers=centre.auth(getattr(world,
                                                                                device).name))
        assert response.status_code == 200, response.text


def _as(events: list[Any], device: str) -> list[dict[str, Any]]:
    return [e.model_copy(update={"device_id": device}).model_dump(mode="json")
            for e in events]


def test_only_the_fitters_device_advances_a_case_or_files_a_proof(centre: Centre) -> None:
    world = centre.world
    client = "K-TRUST"
    case_id, job_id = install_job(world, client)
    world.rs.locks.enrol("PH-TRUST", SECRET, world.alarm_admin)
    seen = proof(world, "PH-TRUST", bound=True, client=client, job_id=job_id)
    batch = [seen, tick(world, job_id, "lock_bound_to_client", verification=seen.event_id),
             tick(world, job_id, "knob_labelled_with_key_number"),
             tick(world, job_id, "job_marked_done")]
    # A field device, a provider, an assessor, the other principals and another fitter's
    # device all send the whole job in montor-1's name: none of it is stored or applied.
    for who in ("agent", "provider", "assessor", "alarm_admin", "admin", "fitter",
                "other_fitter_agent"):
        name = getattr(world, who).name
        forged = [{**e, "event_id": uuid.uuid4().hex} for e in _as(batch, name)]
        answer = centre.push(name, forged)
        assert answer.stored == [], who
        assert len(answer.rejected) == len(batch), who
    assert world.rs.cases.get(case_id, actor=world.admin).state == "installation_booked"
    assert world.rs.locks.verifications(world.alarm_admin) == []
    assert world.rs.binder.checkpoints(job_id, actor=world.admin) == []
    assert world.central.events(kind=JOB_CHECKPOINT) == []
    assert world.central.pending_applications() == []

    # The device enrolled to montor-1 does it, and the case advances once.
    answer = centre.push(world.fitter_agent.name, _as(batch, world.fitter_agent.name))
    assert answer.rejected == [] and len(answer.stored) == len(batch)
    case = world.rs.cases.get(case_id, actor=world.admin)
    assert case.state == "installed"
    assert case.steps[-1].actor == world.fitter.name
    assert [v.verdict for v in world.rs.locks.verifications(world.alarm_admin)] == ["verified"]

    runner = CliRunner()
    listed = runner.invoke(main, ["--database", _database(world), "device", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {d["name"]: d for d in json.loads(listed.output)}
    assert by_name["montor-1-pi"]["fitter"] == "montor-1"
    assert by_name["montor-1-pi"]["refused"] == 0
    assert by_name["agent-1"]["refused"] == len(batch)
    assert {r["reason"] for r in by_name["utforare-nord"]["refusals"]} == {
        senders.Reason.PRINCIPAL}
    human = runner.invoke(main, ["--database", _database(world), "device", "list"])
    assert "refused from montor-2-pi" in human.output, human.output


def _database(world: World) -> str:
    url = world.central._engine.url
    return (url.database or "") if url.get_backend_name() == "sqlite" else \
        url.render_as_string(hide_password=False)


def test_enrolling_a_device_to_a_fitter(central_store: CentralStore,
                                        central_clock: SteppingClock) -> None:
    from central.errors import CentralError

    world = World(central_store, central_clock)
    with pytest.raises(CentralError, match="no enrolled fitter named 'utforare-nord'"):
        central_store.add_device("pi-x", fitter=world.provider.name)
    with pytest.raises(CentralError, match="no enrolled fitter named 'nobody'"):
        central_store.add_device("pi-y", fitter="nobody")
    with pytest.raises(CentralError, match="only a device"):
        central_store.add_device("boss", "admin", fitter=world.fitter.name)
    runner = CliRunner()
    db = _database(world)
    made = runner.invoke(main, ["--database", db, "device", "add", "pi-z", "--fitter",
                                world.fitter.name, "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["fitter"] == world.fitter.name
    wrong = runner.invoke(main, ["--database", db, "device", "add", "pi-w", "--fitter",
                                 "nobody"])
    assert wrong.exit_code != 0 and "enrol the fitter first" in wrong.output
    assert {d.name: d.fitter for d in central_store.list_devices()}["pi-z"] == "montor-1"
