"""``nyckelfri agent enrol CODE`` against a real centre on loopback: the code from
``nyckelfri-central device add --url``, the token file (0600), agent.toml, the first pull,
and every way it can go wrong."""

from __future__ import annotations

import json
import stat
import tomllib

import httpx
import pytest
from click.testing import CliRunner

from agent.config import load_config
from central.api import create_app
from central.cli import main as central_main
from central.server import run_in_thread
from central.store import CentralStore
from sync.protocol import PROTOCOL_HEADER, enrolment_code
from tests.e2e.harness import run_cli

DEVICE = "pi-hemtjanst-07"
REFERENCE = {"clients": [{"ref": "K-1", "lock_status": "pending"}],
             "tags": [{"uid": "04A1B2C3D4E5F6", "client_ref": "K-1"}]}


@pytest.fixture
def centre(tmp_path):
    database = str(tmp_path / "centre.db")
    store = CentralStore.open(database)
    store.import_reference(REFERENCE)
    try:
        with run_in_thread(create_app(store)) as (_server, _thread, url):
            yield database, url
    finally:
        store.close()


def device_add(database: str, *args: str) -> dict:
    result = CliRunner().invoke(central_main, ["--database", database, "device", "add", *args,
                                               "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def works(url: str, token: str) -> int:
    return httpx.get(f"{url}/v1/reference", headers={
        PROTOCOL_HEADER: "1", "Authorization": f"Bearer {token}"}, timeout=10).status_code


def test_enrol_stores_the_token_privately_writes_the_config_and_pulls(centre, tmp_path):
    database, url = centre
    added = device_add(database, DEVICE, "--unit", "hemtjanst-nord", "--url", url)
    code = added["enrolment_code"]
    assert code.startswith("nyk1.") and added["token"] not in code
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    (data_dir / "agent.toml").write_text('readers = ["usb"]\ntoken = "stale"\n')
    done = run_cli("agent", "enrol", code, "--json", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["device_id"] == DEVICE and report["reference_items"] == 2
    token_file = data_dir / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    settings = tomllib.loads((data_dir / "agent.toml").read_text())
    assert settings == {"readers": ["usb"], "device_id": DEVICE, "centre_url": url,
                        "token_file": str(token_file)}  # the stale inline token is gone
    config = load_config(env={"NYCKELFRI_DATA_DIR": str(data_dir)})
    assert config.device_id == DEVICE and config.readers == ("usb",)
    new_token = config.sync_token()
    assert works(url, new_token) == 200
    assert works(url, added["token"]) == 401  # whoever redeemed the code is the device now
    # the reference data is already on the device: the first tap works offline
    status = run_cli("agent", "status", "--json", data_dir=data_dir)
    assert json.loads(status.stdout)["reference"]["tags"] == 1, status.stdout


def test_a_code_works_once_and_a_new_one_replaces_it(centre, tmp_path):
    database, url = centre
    code = device_add(database, DEVICE, "--url", url)["enrolment_code"]
    assert run_cli("agent", "enrol", code, data_dir=tmp_path / "a").returncode == 0
    again = run_cli("agent", "enrol", code, data_dir=tmp_path / "b")
    assert again.returncode == 5
    assert "not valid: already used" in again.stderr and "enrol-code" in again.stderr
    fresh = CliRunner().invoke(central_main, ["--database", database, "device", "enrol-code",
                                              DEVICE, "--url", url, "--json"])
    assert fresh.exit_code == 0, fresh.output
    newer = json.loads(fresh.stdout)["enrolment_code"]
    older = CliRunner().invoke(central_main, ["--database", database, "device", "enrol-code",
                                              DEVICE, "--url", url, "--json"])
    assert run_cli("agent", "enrol", newer, data_dir=tmp_path / "c").returncode == 5
    assert run_cli("agent", "enrol", json.loads(older.stdout)["enrolment_code"],
                   data_dir=tmp_path / "c").returncode == 0


def test_a_damaged_or_foreign_code_is_refused_with_advice(centre, tmp_path):
    database, url = centre
    code = device_add(database, DEVICE, "--url", url)["enrolment_code"]
    damaged = run_cli("agent", "enrol", code[:-3], data_dir=tmp_path / "a")
    assert damaged.returncode == 5 and "damaged" in damaged.stderr
    token = run_cli("agent", "enrol", "abc123", data_dir=tmp_path / "a")
    assert token.returncode == 5 and "starts with 'nyk1.'" in token.stderr
    guessed = enrolment_code(url, DEVICE, "not-the-secret")
    refused = run_cli("agent", "enrol", guessed, data_dir=tmp_path / "a")
    assert refused.returncode == 5 and "not valid" in refused.stderr
    assert not (tmp_path / "a" / "token").exists()
    # the real code still works after the failed attempts
    assert run_cli("agent", "enrol", code, data_dir=tmp_path / "a").returncode == 0


def test_an_unreachable_centre_is_exit_6_and_the_code_stays_good(centre, tmp_path):
    database, url = centre
    secret_code = device_add(database, DEVICE, "--url", url)["enrolment_code"]
    import base64
    body = json.loads(base64.urlsafe_b64decode(secret_code[5:] + "=" * (-len(secret_code[5:]) % 4)))
    dead = enrolment_code("http://127.0.0.1:1", DEVICE, body["s"])
    done = run_cli("agent", "enrol", dead, data_dir=tmp_path / "a")
    assert done.returncode == 6 and "cannot reach the centre" in done.stderr
    assert run_cli("agent", "enrol", secret_code, data_dir=tmp_path / "a").returncode == 0


def test_codes_are_for_field_devices_in_use(centre):
    database, url = centre
    result = CliRunner().invoke(central_main, ["--database", database, "device", "add",
                                               "office", "--admin", "--url", url])
    assert result.exit_code != 0 and "enrolment codes are for field devices" in result.output
    unknown = CliRunner().invoke(central_main, ["--database", database, "device",
                                                "enrol-code", "nobody", "--url", url])
    assert unknown.exit_code != 0 and "no device named 'nobody'" in unknown.output


