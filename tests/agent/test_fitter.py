"""A fitter on site: FitterSession over the real driver on the bumble backend (the
simulated air and a simulated lock) with a real store; checkpoint rules; the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from agent.cli import EXIT_HARDWARE, EXIT_REFUSED, main
from agent.clock import FixedClock
from agent.config import DEFAULT_RSSI_THRESHOLD, ConfigError, load_config
from agent.fitter import (
    FitterError,
    FitterSession,
    SimHost,
    load_sim_locks,
    parse_fault,
    save_sim_lock,
)
from agent.store import Store
from drivers.ble.errors import LockError, WrongLock
from drivers.ble.lock import RSSI_THRESHOLD_DBM, LockDriver, Verification
from drivers.sim.ble_lock import LockConfig, LockFaults, start_lock
from drivers.sim.bleak_bumble import SimulatedAir
from sync.protocol import (
    CHECKPOINTS_INSTALL,
    CHECKPOINTS_REMOVAL,
    JOB_CHECKPOINT,
    LOCK_VERIFICATION,
    Event,
    FitterJob,
    JobCheckpointData,
    LockVerificationData,
    verify_lock_proof,
)

SECRET = bytes.fromhex("5a1e9c0b7d3f48e2a6c4b8d0f2e4a6c8")
SERIAL = "NF-000123"
CLIENT = "K-1"
FITTER = "anna.f"
FAST: dict[str, Any] = {"scan_timeout": 1.0, "rssi_window": 0.2, "connect_timeout": 1.0,
                        "connect_attempts": 2, "gatt_timeout": 2.0, "response_timeout": 0.5}
LIMIT_S = 20.0
INSTALL = FitterJob(job_id=7, case_id=3, kind="install", client_ref=CLIENT, lock_serial=SERIAL,
                    status="booked", checkpoints=list(CHECKPOINTS_INSTALL))
REMOVAL = FitterJob(job_id=9, case_id=4, kind="removal", client_ref=CLIENT, lock_serial=SERIAL,
                    status="booked", checkpoints=list(CHECKPOINTS_REMOVAL))

R = TypeVar("R")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))


@pytest.fixture
def store(tmp_path: Path):
    s = Store.in_dir(tmp_path / "data", device_id="fitter-agent")
    s.replace_jobs([INSTALL, REMOVAL])
    yield s
    s.close()


def lock(**settings: Any) -> LockConfig:
    base: dict[str, Any] = {"serial": SERIAL, "secret": SECRET, "bound_client": CLIENT,
                            "binding_counter": 3}
    return LockConfig(**{**base, **settings})


def on_air(config: LockConfig, work: Callable[[LockDriver], Awaitable[R]]) -> R:
    """``work`` with a driver on a fresh simulated air where ``config``'s lock advertises."""
    async def scenario() -> R:
        async with asyncio.timeout(LIMIT_S), SimulatedAir() as air:
            await start_lock(air, config)
            return await work(LockDriver(air.backend, **FAST))
    return asyncio.run(scenario())


def verify(store: Store, clock: FixedClock, config: LockConfig, *, serial: str = SERIAL,
           client: str = CLIENT, job_id: int | None = None
           ) -> tuple[Verification | LockError, FitterSession]:
    sessions: list[FitterSession] = []

    async def work(driver: LockDriver) -> Verification | LockError:
        session = FitterSession(store, clock, driver, FITTER)
        sessions.append(session)
        try:
            return (await session.averify(serial, client, job_id))[0]
        except LockError as exc:
            return exc
    result = on_air(config, work)
    return result, sessions[0]


def recorded(store: Store) -> list[dict[str, Any]]:
    return [e.payload for e in store.pending_events()]


def only_verification(store: Store) -> LockVerificationData:
    events = recorded(store)
    assert [e["kind"] for e in events] == [LOCK_VERIFICATION]
    Event.model_validate(events[0])  # the envelope the centre accepts
    return LockVerificationData.model_validate(events[0]["data"])


def proof_holds(data: LockVerificationData, secret: bytes = SECRET) -> bool:
    assert data.nonce_hex and data.response_hex and data.serial
    assert data.bound is not None and data.binding_counter is not None
    return verify_lock_proof(secret, bytes.fromhex(data.nonce_hex), data.serial, data.bound,
                             data.binding_counter, data.bound_client or "",
                             bytes.fromhex(data.response_hex))


# --- verification ----------------------------------------------------------------------------


def test_good_verification_records_a_proof_the_centre_accepts(store, clock):
    result, session = verify(store, clock, lock(), job_id=7)
    assert isinstance(result, Verification) and result.ok
    data = only_verification(store)
    assert data.job_id == 7 and data.fitter == FITTER
    assert (data.serial, data.bound_client, data.bound, data.binding_counter) == (
        SERIAL, CLIENT, True, 3)
    assert data.serial_matches and data.client_matches and data.proximity_ok and data.battery_ok
    assert data.error is None and data.nonce_hex == result.nonce_hex
    assert proof_holds(data)
    assert not proof_holds(data, secret=bytes(16))
    assert session.last_event_id == store.pending_events()[0].event_id
    # ... and it backs the install's first checkpoint
    event_id = session.tick(7, "lock_bound_to_client")
    tick = JobCheckpointData.model_validate(recorded(store)[-1]["data"])
    assert recorded(store)[-1]["kind"] == JOB_CHECKPOINT
    assert tick.verification_event_id == session.last_event_id and tick.fitter == FITTER
    assert store.job_checkpoints(7)[0]["event_id"] == event_id


def test_wrong_binding_is_recorded_and_refuses_the_bound_tick(store, clock):
    result, session = verify(store, clock, lock(bound_client="K-2"), job_id=7)
    assert isinstance(result, Verification) and not result.client_matches
    data = only_verification(store)
    assert data.client_matches is False and data.bound_client == "K-2"
    assert proof_holds(data)  # a true proof of the wrong binding
    with pytest.raises(FitterError, match="bound to 'K-2', not the job's client 'K-1'"):
        session.tick(7, "lock_bound_to_client")
    assert len(recorded(store)) == 1 and store.job_checkpoints(7) == []


def test_wrong_lock_is_recorded_as_an_error(store, clock):
    # the neighbour's lock advertises our lock's device tag, its serial says otherwise
    other = lock(serial="NF-000999", faults=LockFaults(advertised_serial=SERIAL))
    result, session = verify(store, clock, other, job_id=7)
    assert isinstance(result, WrongLock)
    data = only_verification(store)
    assert data.serial == "NF-000999" and not data.serial_matches
    assert data.error and "NF-000999" in data.error and data.response_hex is None
    with pytest.raises(FitterError, match="no proof was read"):
        session.tick(7, "lock_bound_to_client")


def test_lock_not_found_is_recorded(store, clock):
    result, _ = verify(store, clock, lock(faults=LockFaults(advertising=False)))
    assert isinstance(result, LockError)
    data = only_verification(store)
    assert data.error and "not seen" in data.error and data.serial is None
    assert data.job_id is None


def test_forged_response_is_recorded_for_the_centre_to_catch(store, clock):
    result, session = verify(store, clock, lock(faults=LockFaults(wrong_mac=True)), job_id=7)
    assert isinstance(result, Verification) and result.ok  # on site it looks fine
    data = only_verification(store)
    assert data.response_hex is not None and not proof_holds(data)  # the centre will refuse
    session.tick(7, "lock_bound_to_client")  # the on-site verdicts cannot see a forgery


def test_request_checked_against_the_job_before_scanning(store, clock):
    session = FitterSession(store, clock, None, FITTER)
    with pytest.raises(FitterError, match="for client 'K-1'"):
        session.verify(SERIAL, "K-9", job_id=7)
    with pytest.raises(FitterError, match="for lock 'NF-000123'"):
        session.verify("NF-000777", CLIENT, job_id=7)
    with pytest.raises(FitterError, match="no job 8"):
        session.verify(SERIAL, CLIENT, job_id=8)
    with pytest.raises(FitterError, match="lock serial"):
        session.verify("has space", CLIENT)
    assert recorded(store) == []


def test_sim_host_runs_world_locks_and_driver_in_one_loop(store, clock):
    session = FitterSession(store, clock, SimHost([lock()], **FAST), FITTER)
    result, event_id = session.verify(SERIAL, CLIENT, 7)  # no event loop here: it makes one
    assert result.ok and recorded(store)[0]["event_id"] == event_id


# --- checkpoints -------------------------------------------------------------------------------


def test_checkpoints_go_in_order_and_the_receipt_needs_a_signature(store, clock):
    result, session = verify(store, clock, lock(bound_client=""), job_id=9)
    assert isinstance(result, Verification) and not result.client_matches
    with pytest.raises(FitterError, match="tick lock_unbound_from_client of job 9 first"):
        session.tick(9, "door_restored_with_original_knob")
    with pytest.raises(FitterError, match="no checkpoint 'knob_labelled"):
        session.tick(9, "knob_labelled_with_key_number")
    session.tick(9, "lock_unbound_from_client")
    with pytest.raises(FitterError, match="ticked already"):
        session.tick(9, "lock_unbound_from_client")
    session.tick(9, "door_restored_with_original_knob")
    with pytest.raises(FitterError, match="--signed-by"):
        session.tick(9, "keys_returned_receipt_signed")
    with pytest.raises(FitterError, match="first"):
        session.tick(9, "job_marked_done")
    session.tick(9, "keys_returned_receipt_signed", signed_by="Karin Andersson")
    session.tick(9, "job_marked_done")
    ticks = [JobCheckpointData.model_validate(e["data"]) for e in recorded(store)
             if e["kind"] == JOB_CHECKPOINT]
    assert [t.checkpoint for t in ticks] == list(CHECKPOINTS_REMOVAL)
    assert ticks[2].signed_by == "Karin Andersson"
    assert session.done(REMOVAL) == list(CHECKPOINTS_REMOVAL)


def test_removal_refuses_a_lock_still_bound(store, clock):
    _, session = verify(store, clock, lock(), job_id=9)
    with pytest.raises(FitterError, match="still bound"):
        session.tick(9, "lock_unbound_from_client")


def test_bound_tick_needs_a_verification_and_honours_the_centres_done(store, clock):
    session = FitterSession(store, clock, None, FITTER)
    with pytest.raises(FitterError, match=r"no lock verification.*lock verify --serial"):
        session.tick(7, "lock_bound_to_client")
    with pytest.raises(FitterError, match="no job 8"):
        session.tick(8, "lock_bound_to_client")
    store.replace_jobs([INSTALL.model_copy(update={"done": ["lock_bound_to_client"]})])
    session.tick(7, "knob_labelled_with_key_number")  # the centre had the first one


# --- configuration and the simulated locks file ---------------------------------------------


def test_config_of_the_fitter(tmp_path):
    assert DEFAULT_RSSI_THRESHOLD == RSSI_THRESHOLD_DBM
    config = load_config(overrides={"data_dir": tmp_path}, env={})
    assert config.ble_backend == "bleak" and config.fitter_name == config.device_id
    assert config.sim_locks_path == tmp_path / "sim-locks.json"
    env = {"NYCKELFRI_BLE_BACKEND": "SIM", "NYCKELFRI_FITTER": "bo",
           "NYCKELFRI_RSSI_THRESHOLD": "-80"}
    config = load_config(overrides={"data_dir": tmp_path}, env=env)
    assert (config.ble_backend, config.fitter_name, config.rssi_threshold) == ("sim", "bo", -80)
    with pytest.raises(ConfigError, match="ble_backend"):
        load_config(overrides={"data_dir": tmp_path}, env={"NYCKELFRI_BLE_BACKEND": "usb"})


def test_sim_locks_file_json_and_toml(tmp_path):
    path = tmp_path / "locks.json"
    save_sim_lock(path, {"serial": SERIAL, "secret": SECRET.hex(), "bound_client": CLIENT,
                         "faults": dict([parse_fault("wrong_mac"),
                                         parse_fault("missing=battery")])})
    save_sim_lock(path, {"serial": SERIAL, "secret": SECRET.hex(), "battery": 10})  # replaces
    (only,) = load_sim_locks(path)
    assert only.battery_percent == 10 and only.bound_client == ""
    toml = tmp_path / "locks.toml"
    toml.write_text(f'[[locks]]\nserial = "{SERIAL}"\nsecret = "{SECRET.hex()}"\n'
                    'faults = {{ notify = false }}\n'.replace("{{", "{").replace("}}", "}"))
    assert not load_sim_locks(toml)[0].faults.notify
    with pytest.raises(ConfigError, match="not valid"):
        save_sim_lock(path, {"serial": SERIAL, "secret": "abcd"})
    assert parse_fault("drop_after_reads=2") == ("drop_after_reads", 2)
    assert load_sim_locks(tmp_path / "none.json") == []


# --- the command line --------------------------------------------------------------------------


@pytest.fixture
def sim_dir(tmp_path: Path) -> Path:
    data = tmp_path / "cli"
    data.mkdir()
    (data / "agent.toml").write_text('ble_backend = "sim"\nfitter = "anna.f"\n'
                                     'device_id = "fitter-agent"\n')
    return data


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"NYCKELFRI_BLE_BACKEND": None})


def test_cli_lock_verify_with_simulated_locks(sim_dir):
    d = str(sim_dir)
    result = cli("sim", "lock", "--serial", SERIAL, "--secret", SECRET.hex(), "--client",
                 CLIENT, "--data-dir", d)
    assert result.exit_code == 0, result.output
    result = cli("lock", "verify", "--serial", SERIAL, "--client", CLIENT, "--data-dir", d)
    assert result.exit_code == 0, result.output
    assert "serial OK" in result.output and "binding OK" in result.output
    assert "proof recorded" in result.output and "the centre verifies it on sync" in result.output

    result = cli("lock", "verify", "--serial", SERIAL, "--client", "K-2", "--data-dir", d,
                 "--json")
    assert result.exit_code == EXIT_REFUSED, result.output
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and answer["verdict"]["binding_ok"] is False
    with Store.in_dir(sim_dir) as store:
        kinds = [e.kind for e in store.pending_events()]
        assert kinds == [LOCK_VERIFICATION, LOCK_VERIFICATION]
        assert store.pending_events()[1].event_id == answer["event_id"]


def test_cli_lock_error_exits_3_with_advice_and_records(sim_dir):
    d = str(sim_dir)
    cli("sim", "lock", "--serial", SERIAL, "--secret", SECRET.hex(), "--client", CLIENT,
        "--fault", "reject_challenge=14", "--data-dir", d)
    result = cli("lock", "verify", "--serial", SERIAL, "--client", CLIENT, "--data-dir", d)
    assert result.exit_code == EXIT_HARDWARE, result.output
    assert "recorded" in result.output
    with Store.in_dir(sim_dir) as store:
        (event,) = store.pending_events()
        assert event.payload["data"]["error"]


def test_cli_jobs_list_and_tick(sim_dir):
    d = str(sim_dir)
    with Store.in_dir(sim_dir) as store:
        store.replace_jobs([INSTALL, REMOVAL])
    result = cli("job", "list", "--data-dir", d, "--json")
    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)["jobs"]
    assert [(j["job_id"], j["next"]) for j in jobs] == [
        (7, "lock_bound_to_client"), (9, "lock_unbound_from_client")]
    result = cli("job", "list", "--data-dir", d)
    assert "job 7 install" in result.output
    result = cli("job", "tick", "7", "lock_bound_to_client", "--data-dir", d)
    assert result.exit_code == EXIT_REFUSED and "lock verify" in result.output
    cli("sim", "lock", "--serial", SERIAL, "--secret", SECRET.hex(), "--client", CLIENT,
        "--data-dir", d)
    result = cli("lock", "verify", "--serial", SERIAL, "--client", CLIENT, "--job", "7",
                 "--data-dir", d)
    assert result.exit_code == 0, result.output
    result = cli("job", "tick", "7", "lock_bound_to_client", "--data-dir", d, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"] == "lock_bound_to_client"
    result = cli("job", "list", "--data-dir", d, "--json")
    assert json.loads(result.stdout)["jobs"][0]["next"] == "knob_labelled_with_key_number"
