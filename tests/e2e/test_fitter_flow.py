"""A fitter walks an install job and a removal job from the binder with `nyckelfri` alone,
against a simulated lock (bleak on bumble); the centre verifies the proofs and advances
the cases. A wrong lock, a wrong binding and a forged response are each caught and named."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent.cli import EXIT_HARDWARE, EXIT_REFUSED, main
from central.api import create_app
from central.server import run_in_thread
from routine.flows import Flow  # noqa: F401 - documents which flows the helpers walk
from tests.central.conftest import central_clock, central_store, database_url  # noqa: F401
from tests.central.test_cases_world import World
from tests.central.test_lock_proofs import install_job, removal_job

pytestmark = pytest.mark.slow

SECRET = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


class TokenWorld(World):
    """The routine's cast, keeping each principal's token (shown once at enrolment)."""

    def enrol(self, name, role, unit=None, *, fitter=None):
        if not hasattr(self, "tokens"):
            self.tokens = {}
        token = self.central.add_device(name, role, unit, fitter=fitter)
        self.tokens[name] = token
        return self.central.authenticate(token)


@pytest.fixture
def world(central_store, central_clock):  # noqa: F811
    return TokenWorld(central_store, central_clock)


@pytest.fixture
def centre(world):
    with run_in_thread(create_app(world.central, routine=world.rs)) as (_s, _t, url):
        yield url


def agent_dir(tmp_path, world, url):
    data = tmp_path / "agent"
    data.mkdir()
    # The fitter's own agent: a device enrolled to the fitter (device add NAME --fitter).
    fitter, device = world.fitter.name, world.fitter_agent.name
    (data / "agent.toml").write_text(
        f'device_id = "{device}"\nfitter = "{fitter}"\ncentre_url = "{url}"\n'
        f'token = "{world.tokens[device]}"\nble_backend = "sim"\n')
    return data


def nyckelfri(data, *args):
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data)])
    return result


def sim_lock(data, serial, client, *extra):
    r = nyckelfri(data, "sim", "lock", "--serial", serial, "--secret", SECRET.hex(),
                  "--client", client, *extra)
    assert r.exit_code == 0, r.output


def sync(data):
    r = nyckelfri(data, "sync", "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def job_ids(data):
    r = nyckelfri(data, "job", "list", "--json")
    assert r.exit_code == 0, r.output
    return {j["job_id"]: j for j in json.loads(r.output)["jobs"]}


def verify(data, serial, client, job):
    return nyckelfri(data, "lock", "verify", "--serial", serial, "--client", client, "--job",
                     str(job), "--json")


def tick(data, job, checkpoint, *extra):
    return nyckelfri(data, "job", "tick", str(job), checkpoint, *extra)


def test_install_and_removal_walked_with_nyckelfri_alone(world, centre, tmp_path):
    install_case, install = install_job(world, "K-INST")
    removal_case, removal = removal_job(world, "K-REM")
    world.rs.locks.enrol("PH-K-INST", SECRET, world.alarm_admin)
    world.rs.locks.enrol("PH-K-REM", SECRET, world.alarm_admin)
    data = agent_dir(tmp_path, world, centre)
    sync(data)
    jobs = job_ids(data)
    assert {install, removal} <= set(jobs)
    assert jobs[install]["checkpoints"][0] == "lock_bound_to_client"

    # installation: the fitter proves the lock is bound to the client, then ticks
    sim_lock(data, "PH-K-INST", "K-INST")
    r = verify(data, "PH-K-INST", "K-INST", install)
    assert r.exit_code == 0, r.output
    for checkpoint in ("lock_bound_to_client", "knob_labelled_with_key_number",
                       "job_marked_done"):
        assert tick(data, install, checkpoint).exit_code == 0
    # removal: the lock proves it is unbound; keys handed back against a signature
    sim_lock(data, "PH-K-REM", "")
    r = verify(data, "PH-K-REM", "K-REM", removal)
    assert r.exit_code == 0, r.output
    for checkpoint, extra in (("lock_unbound_from_client", ()),
                              ("door_restored_with_original_knob", ()),
                              ("keys_returned_receipt_signed", ("--signed-by", "Brukare B")),
                              ("job_marked_done", ())):
        r = tick(data, removal, checkpoint, *extra)
        assert r.exit_code == 0, r.output
    sync(data)  # offline until now: the centre verifies the proofs on arrival

    verdicts = {v.serial: v.verdict for v in world.rs.locks.verifications(world.alarm_admin)}
    assert verdicts == {"PH-K-INST": "verified", "PH-K-REM": "verified"}
    assert world.rs.cases.get(install_case, actor=world.admin).state == "installed"
    assert world.lock_status("K-INST") == "installed"
    assert world.rs.cases.get(removal_case, actor=world.admin).state == "lock_removed"
    assert [r.signed_by for r in world.rs.keys.receipts("K-REM",
                                                        actor=world.admin)] == ["Brukare B"]


def test_wrong_lock_wrong_binding_and_forgery_are_caught_and_named(world, centre, tmp_path):
    _case, job = install_job(world, "K-INST")
    world.rs.locks.enrol("PH-K-INST", SECRET, world.alarm_admin)
    data = agent_dir(tmp_path, world, centre)
    sync(data)

    # a wrong lock: nothing answering to the job's serial is in range
    sim_lock(data, "PH-OTHER", "K-INST")
    r = verify(data, "PH-K-INST", "K-INST", job)
    assert r.exit_code == EXIT_HARDWARE and "PH-K-INST" in r.output

    # a wrong binding: the right lock, bound to another client
    sim_lock(data, "PH-K-INST", "K-ELSE")
    r = verify(data, "PH-K-INST", "K-INST", job)
    assert r.exit_code == EXIT_REFUSED and "K-ELSE" in r.output
    r = tick(data, job, "lock_bound_to_client")
    assert r.exit_code == EXIT_REFUSED

    # a forged response: on site it looks right; the centre, holding the secret, names it
    sim_lock(data, "PH-K-INST", "K-INST", "--fault", "wrong_mac")
    r = verify(data, "PH-K-INST", "K-INST", job)
    assert r.exit_code == 0, r.output
    assert tick(data, job, "lock_bound_to_client").exit_code == 0
    sync(data)
    verdicts = [v.verdict for v in world.rs.locks.verifications(world.alarm_admin)]
    assert "forged" in verdicts
    assert world.rs.cases.get(_case, actor=world.admin).state != "installed"
    assert world.lock_status("K-INST") != "installed"
