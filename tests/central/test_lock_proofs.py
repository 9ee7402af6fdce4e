"""Lock proofs at the centre: verdicts on lock.verification events, fitters' checkpoints
applied to cases, low battery from verified readings, the secret never leaving the centre.

Genuine lock responses come from the simulated lock's firmware (drivers.ble.profile),
written apart from the centre's check (sync.protocol.verify_lock_proof).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest
from fastapi.testclient import TestClient

from central.cases.alerts import Alert
from central.cases.values import ImplementationKind
from central.http.app import create_app
from central.store import CentralStore, DeviceInfo
from drivers.ble.profile import BindingState, compute_mac, encode_response
from routine.deadlines import AlertKind
from routine.flows import Flow
from routine.keys import KeyUnit
from routine.tags import TagState
from sync.protocol import JOB_CHECKPOINT, LOCK_VERIFICATION, PROTOCOL_HEADER, Event
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import ALARM, NORD, Do, World

SECRET = bytes(range(16))
OTHER_SECRET = bytes(range(16, 32))
TAG = "04A1B2C3D4E5F6"
FIRST_AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def world(central_store: CentralStore, central_clock: SteppingClock) -> World:
    return World(central_store, central_clock)


def _event(device: DeviceInfo, kind: str, data: dict[str, Any]) -> Event:
    return Event(event_id=uuid.uuid4().hex, kind=kind, device_id=device.name,
                 at=FIRST_AT, boottime_ns=0, boot_id="boot-f", clock_synced=True, data=data)




def proof(world: World, serial: str, *, bound: bool, client: str, job_id: int | None,
          secret: bytes = SECRET, counter: int = 3, battery: int = 80,
          forged: bool = False) -> Event:
    """A lock.verification event with a genuine response (or a forged one)."""
    nonce = os.urandom(16)
    ref = client if bound else ""
    mac = compute_mac(secret, nonce, serial, BindingState(bound, counter), ref)
    if forged:
        mac = bytes(16)
    return _event(world.fitter_agent, LOCK_VERIFICATION, {
        "job_id": job_id, "fitter": world.fitter.name, "expected_serial": serial,
        "expected_client": client, "serial": serial, "firmware": "1.0",
        "battery_percent": battery, "rssi": -55, "bound_client": ref or None,
        "bound": bound, "binding_counter": counter, "nonce_hex": nonce.hex(),
        "response_hex": encode_response(mac).hex(), "serial_matches": True,
        "client_matches": bound, "proximity_ok": True, "battery_ok": battery > 20})


def tick(world: World, job_id: int, checkpoint: str, *, verification: str | None = None,
         signed_by: str | None = None) -> Event:
    data: dict[str, Any] = {"job_id": job_id, "fitter": world.fitter.name,
                            "checkpoint": checkpoint}
    if verification is not None:
        data["verification_event_id"] = verification
    if signed_by is not None:
        data["signed_by"] = signed_by
    return _event(world.fitter_agent, JOB_CHECKPOINT, data)


def push(world: World, *events: Event) -> None:
    result = world.central.ingest(world.fitter_agent, list(events), None)
    assert sorted(result.stored) == sorted(e.event_id for e in events), result


def low_battery(world: World) -> list[Alert]:
    return [a for a in world.rs.alerts.current(actor=world.admin)
            if a.kind is AlertKind.LOW_LOCK_BATTERY]


def outcomes(world: World, job_id: int) -> list[tuple[str | None, str, str | None]]:
    return [(c.checkpoint, c.outcome, c.reason) for c in world.rs.binder.checkpoints(job_id,
                                                                                     actor=world.admin)]


def install_job(world: World, client: str) -> tuple[int, int]:
    """A 2a case up to its install job booked for the fitter: (case id, job id)."""
    world.client(client)
    world.services(client)
    world.rs.tags.add_stock(NORD, 1, world.provider)
    world.rs.tags.issue(TAG, client, NORD, world.provider)
    case = world.open(Flow.INSTALL_ASSESSED, client)
    for do in (Do("assessor", "send_order"), Do("provider", "lock_already_installed", "no"),
               Do("provider", "code_lock", "no"),
               Do("provider", "home_care_only_opens_door", "no"),
               Do("provider", "client_refuses", "no"),
               Do("provider", "request_lock", "keys_exist", before=World.provider_keys),
               Do("alarm_admin", "put_install_job"), Do("fitter", "book_installation")):
        world.take(case, do)
    [job] = [j for j in world.rs.binder.jobs(world.alarm_admin) if j.case_id == case.id]
    return case.id, job.id


def removal_job(world: World, client: str) -> tuple[int, int]:
    """A 3b case of a client with an installed lock up to its removal job, booked."""
    world.installed(client, ImplementationKind.SAFETY_ALARM)
    case = world.open(Flow.REMOVE_ALARM_ONLY, client)
    for do in (Do("alarm_admin", "receive_end_request"),
               Do("alarm_admin", "home_care_continues", "no"),
               Do("alarm_admin", "lock_installed", "yes"),
               Do("alarm_admin", "end_alarm_implementation"),
               Do("alarm_admin", "put_removal_job"), Do("fitter", "book_removal")):
        world.take(case, do)
    [job] = [j for j in world.rs.binder.jobs(world.alarm_admin) if j.case_id == case.id]
    return case.id, job.id


# --- installation ----------------------------------------------------------------------------


def test_install_job_walked_to_done_by_checkpoint_events(world: World) -> None:
    client = "K-PROOF"
    case_id, job_id = install_job(world, client)
    world.rs.locks.enrol("PH-100", SECRET, world.alarm_admin)
    seen = proof(world, "PH-100", bound=True, client=client, job_id=job_id)
    events = [seen, tick(world, job_id, "lock_bound_to_client", verification=seen.event_id),
              tick(world, job_id, "knob_labelled_with_key_number"),
              tick(world, job_id, "job_marked_done")]
    push(world, *events)

    [v] = world.rs.locks.verifications(world.alarm_admin, serial="PH-100")
    assert (v.verdict, v.bound, v.bound_client, v.job_id) == ("verified", True, client, job_id)
    assert outcomes(world, job_id) == [("lock_bound_to_client", "applied", None),
                                       ("knob_labelled_with_key_number", "applied", None),
                                       ("job_marked_done", "applied", None)]
    case = world.rs.cases.get(case_id, actor=world.admin)
    assert case.state == "installed"
    assert case.steps[-1].actor == world.fitter.name
    assert world.rs.binder.job(job_id, actor=world.admin).done_at is not None
    assert world.lock_status(client) == "installed"
    assert world.rs.tags.get(TAG, actor=world.admin).state is TagState.DUE_DOWN

    # Replaying the whole batch changes nothing.
    steps = len(case.steps)
    push(world, *events)
    assert len(world.rs.cases.get(case_id, actor=world.admin).steps) == steps
    assert len(world.rs.locks.verifications(world.alarm_admin)) == 1
    assert len(outcomes(world, job_id)) == 3
    assert len(world.central.events(kind=JOB_CHECKPOINT)) == 3


def test_forged_proof_is_refused_and_the_case_stays(world: World) -> None:
    case_id, job_id = install_job(world, "K-FORGED")
    world.rs.locks.enrol("PH-101", SECRET, world.alarm_admin)
    forged = proof(world, "PH-101", bound=True, client="K-FORGED", job_id=job_id, forged=True)
    wrong_key = proof(world, "PH-101", bound=True, client="K-FORGED", job_id=job_id,
                      secret=OTHER_SECRET)
    push(world, forged, wrong_key,
         tick(world, job_id, "lock_bound_to_client", verification=forged.event_id),
         tick(world, job_id, "knob_labelled_with_key_number"),
         tick(world, job_id, "job_marked_done"))
    assert [v.verdict for v in world.rs.locks.verifications(world.alarm_admin)] == [
        "forged", "forged"]
    [bound, knob, done] = outcomes(world, job_id)
    assert bound[:2] == ("lock_bound_to_client", "refused") and "forged" in str(bound[2])
    assert knob[1] == done[1] == "refused" and "lock_bound_to_client first" in str(knob[2])
    assert world.rs.cases.get(case_id, actor=world.admin).state == "installation_booked"
    assert world.rs.binder.job(job_id, actor=world.admin).done_at is None
    assert world.rs.tags.get(TAG, actor=world.admin).state is TagState.ISSUED


def test_lock_bound_to_another_client_is_refused(world: World) -> None:
    case_id, job_id = install_job(world, "K-RIGHT")
    world.rs.locks.enrol("PH-102", SECRET, world.alarm_admin)
    other = proof(world, "PH-102", bound=True, client="K-OTHER", job_id=job_id)
    unbound = proof(world, "PH-102", bound=False, client="K-RIGHT", job_id=job_id)
    push(world, other, unbound,
         tick(world, job_id, "lock_bound_to_client", verification=other.event_id),
         tick(world, job_id, "lock_bound_to_client", verification=unbound.event_id))
    [first, second] = outcomes(world, job_id)
    assert first[1] == "refused" and "K-OTHER" in str(first[2])
    assert second[1] == "refused" and "unbound" in str(second[2])
    assert world.rs.cases.get(case_id, actor=world.admin).state == "installation_booked"


def test_unknown_lock_and_missing_proof(world: World) -> None:
    _, job_id = install_job(world, "K-UNKNOWN")
    unknown = proof(world, "PH-NOPE", bound=True, client="K-UNKNOWN", job_id=job_id)
    bare = _event(world.fitter_agent, LOCK_VERIFICATION, {
        "job_id": job_id, "fitter": world.fitter.name, "expected_serial": "PH-NOPE",
        "expected_client": "K-UNKNOWN", "error": "lock not found"})
    invalid = _event(world.fitter_agent, LOCK_VERIFICATION, {"fitter": world.fitter.name,
                                                       "nonsense": True})
    push(world, unknown, bare, invalid,
         tick(world, job_id, "lock_bound_to_client", verification=unknown.event_id))
    verdicts = {v.event_id: v.verdict for v in world.rs.locks.verifications(world.alarm_admin)}
    assert verdicts == {unknown.event_id: "unknown_lock", bare.event_id: "no_proof",
                        invalid.event_id: "invalid"}
    [(_, outcome, reason)] = outcomes(world, job_id)
    assert outcome == "refused" and "unknown_lock" in str(reason)


def test_checkpoints_of_another_fitter_or_unknown_job_are_refused(world: World) -> None:
    _, job_id = install_job(world, "K-WHO")
    wrong = _event(world.fitter_agent, JOB_CHECKPOINT, {
        "job_id": job_id, "fitter": "montor-2", "checkpoint": "job_marked_done"})
    nameless = _event(world.fitter_agent, JOB_CHECKPOINT, {"job": "x"})
    result = world.central.ingest(world.fitter_agent, [wrong, nameless], None)
    assert result.stored == []
    assert {r.event_id for r in result.rejected} == {wrong.event_id, nameless.event_id}
    assert all("enrolled to fitter montor-1" in r.reason for r in result.rejected)
    missing = tick(world, 99_999, "job_marked_done")
    bad = _event(world.fitter_agent, JOB_CHECKPOINT, {"job": "x", "fitter": "montor-1"})
    push(world, missing, bad)
    assert outcomes(world, 99_999) == [("job_marked_done", "refused",
                                        "no job 99999 in the binder")]
    assert [c.outcome for c in world.rs.binder.checkpoints(job_id, actor=world.admin)] == []
    assert len(world.central.events(kind=JOB_CHECKPOINT)) == 2


# --- removal ---------------------------------------------------------------------------------


def test_removal_job_walked_to_removed_with_a_key_receipt(world: World) -> None:
    client = "K-REMOVE"
    case_id, job_id = removal_job(world, client)
    world.rs.locks.enrol(f"PH-{client}", SECRET, world.admin)
    still_bound = proof(world, f"PH-{client}", bound=True, client=client, job_id=job_id)
    unbound = proof(world, f"PH-{client}", bound=False, client=client, job_id=job_id,
                    counter=4)
    push(world, still_bound, unbound,
         tick(world, job_id, "lock_unbound_from_client", verification=still_bound.event_id),
         tick(world, job_id, "lock_unbound_from_client", verification=unbound.event_id),
         tick(world, job_id, "door_restored_with_original_knob"),
         tick(world, job_id, "keys_returned_receipt_signed", signed_by="Brukare A"),
         tick(world, job_id, "job_marked_done"))
    assert [o[1] for o in outcomes(world, job_id)] == [
        "refused", "applied", "applied", "applied", "applied"]
    assert world.rs.cases.get(case_id, actor=world.admin).state == "lock_removed"
    [receipt] = world.rs.keys.receipts(client, actor=world.admin)
    assert (receipt.signed_by, receipt.unit, receipt.case_id) == (
        "Brukare A", KeyUnit.ALARM_GROUP, case_id)
    for action in ("check_key_register", "check_lock_system"):
        world.rs.cases.act(case_id, action, None, world.alarm_admin)
    assert world.rs.cases.get(case_id, actor=world.admin).state == "removed"
    assert world.lock_status(client) == "none"


# --- low battery -----------------------------------------------------------------------------


def test_low_battery_from_verified_readings_only(world: World) -> None:
    world.rs.locks.enrol("PH-LOW", SECRET, world.alarm_admin)
    push(world, proof(world, "PH-LOW", bound=True, client="K-9", job_id=None, battery=12,
                      forged=True))
    assert low_battery(world) == []
    push(world, proof(world, "PH-LOW", bound=True, client="K-9", job_id=None, battery=12))
    [alert] = low_battery(world)
    assert (alert.subject, alert.client_ref) == ("PH-LOW", "K-9")
    world.clock.advance(3600)
    later = proof(world, "PH-LOW", bound=True, client="K-9", job_id=None, battery=95)
    push(world, later.model_copy(update={"at": FIRST_AT + timedelta(hours=1)}))
    assert low_battery(world) == []


# --- the API and the secret ------------------------------------------------------------------


@pytest.fixture
def http(world: World) -> Iterator[TestClient]:
    with TestClient(create_app(world.central, routine=world.rs)) as client:
        yield client


def test_jobs_and_verifications_over_http_never_show_the_secret(world: World,
                                                                http: TestClient) -> None:
    fitter_token = world.central.add_device("montor-http", "fitter", ALARM)
    admin_token = world.central.add_device("larm-http", "alarm_admin", ALARM)
    agent_token = world.central.add_device("montor-http-pi", fitter="montor-http")
    world.fitter = world.central.authenticate(fitter_token)
    world.fitter_agent = world.central.authenticate(agent_token)
    client = "K-HTTP"
    _, job_id = install_job(world, client)
    world.rs.locks.enrol("PH-HTTP", SECRET, world.alarm_admin)
    seen = proof(world, "PH-HTTP", bound=True, client=client, job_id=job_id)
    push(world, seen, tick(world, job_id, "lock_bound_to_client", verification=seen.event_id))

    def get(token: str, path: str, **params: Any) -> Any:
        response = http.get(path, params=params, headers={
            PROTOCOL_HEADER: "1", "Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        return response.json()

    page = get(fitter_token, "/v1/jobs")
    assert get(agent_token, "/v1/jobs") == {**page, "server_time": ANY}  # the fitter's agent
    [job] = page["jobs"]
    assert (job["job_id"], job["kind"], job["client_ref"], job["lock_serial"]) == (
        job_id, "install", client, "PH-HTTP")
    assert job["checkpoints"] == ["lock_bound_to_client", "knob_labelled_with_key_number",
                                  "job_marked_done"]
    assert job["done"] == ["lock_bound_to_client"] and job["status"] == "booked"
    found = get(admin_token, "/v1/lock-verifications", serial="PH-HTTP", job=job_id)
    assert [v["verdict"] for v in found["verifications"]] == ["verified"]
    assert get(admin_token, "/v1/lock-verifications", serial="PH-NONE")["verifications"] == []
    refused = http.get("/v1/lock-verifications", headers={
        PROTOCOL_HEADER: "1", "Authorization": f"Bearer {fitter_token}"})
    assert refused.status_code == 403
    openapi = http.get("/openapi.json").text
    for text in (json.dumps(page), json.dumps(found), openapi):
        assert SECRET.hex() not in text and "secret" not in text.lower()


def test_enrol_lock_needs_an_administrator_and_16_bytes(world: World) -> None:
    from central.cases.errors import AccessDenied
    from central.errors import CentralError

    with pytest.raises(AccessDenied):
        world.rs.locks.enrol("PH-X", SECRET, world.fitter)
    with pytest.raises(CentralError, match="16 bytes"):
        world.rs.locks.enrol("PH-X", b"short", world.alarm_admin)
    world.rs.locks.enrol("PH-X", SECRET, world.admin)
    assert world.rs.locks.enrolled("PH-X", actor=world.admin)


def test_cli_enrols_and_lists_verdicts(world: World, database_url: str) -> None:
    from click.testing import CliRunner

    from central.cli import main

    runner = CliRunner()
    base = ["--database", database_url, "--as", world.alarm_admin.name]
    generated = runner.invoke(main, [*base, "lock", "enrol", "PH-CLI", "--generate", "--json"])
    assert generated.exit_code == 0, generated.output
    secret = bytes.fromhex(json.loads(generated.output)["secret_hex"])
    given = runner.invoke(main, [*base, "lock", "enrol", "PH-CLI2", "--secret", SECRET.hex()])
    assert given.exit_code == 0 and SECRET.hex() not in given.output, given.output
    push(world, proof(world, "PH-CLI", bound=True, client="K-1", job_id=None, secret=secret))
    listed = runner.invoke(main, [*base, "lock", "verifications", "--serial", "PH-CLI",
                                  "--json"])
    assert listed.exit_code == 0, listed.output
    assert [v["verdict"] for v in json.loads(listed.output)["verifications"]] == ["verified"]
    human = runner.invoke(main, [*base, "lock", "verifications"])
    assert "verified" in human.output and secret.hex() not in human.output
    usage = runner.invoke(main, [*base, "lock", "enrol", "PH-CLI3"])
    assert usage.exit_code != 0

