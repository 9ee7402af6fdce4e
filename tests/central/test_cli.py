"""The nyckelfri-central CLI through click's runner, on SQLite and PostgreSQL: help, exit
codes, --json, errors with advice; and ``serve`` as a real process stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from central.cli import EXIT_DATA, EXIT_DATABASE, EXIT_USAGE, main
from central.server import DATABASE_ENV
from central.store import DEFAULT_DAY_ZONE, CentralStore
from sync.protocol import Event

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_PG = "postgresql://nyckelfri@127.0.0.1:9/nowhere"  # the discard port refuses
SERVE_START_TIMEOUT_S = 30.0
SERVE_STOP_TIMEOUT_S = 20.0


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()
                 ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner, database_url: str):
    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--database", database_url, *args])
    return invoke


def visit_events(device: str, arrived: datetime) -> list[Event]:
    who = {"visit_id": "v-1", "client_ref": "K-1", "staff_ref": "P-anna"}
    common: dict[str, Any] = {"device_id": device, "boottime_ns": 1, "boot_id": "b",
                              "clock_synced": True}
    return [Event(event_id=uuid.uuid4().hex, kind="visit.arrived", at=arrived,
                  data={**who, "tag_uid": "04A1B2C3D4E5F6"}, **common),
            Event(event_id=uuid.uuid4().hex, kind="visit.departed",
                  at=arrived + timedelta(minutes=20), data=who, **common)]


@pytest.mark.parametrize("path", [p for p, _ in all_commands(main)], ids=" ".join)
def test_every_command_has_help(runner: CliRunner, path: tuple[str, ...]) -> None:
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd = dict(all_commands(main))[path]
    assert cmd.help and len(cmd.help.strip()) > 10, f"{' '.join(path)} lacks help text"


def test_main_help_names_the_database_option(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and DATABASE_ENV in result.output


# --- devices -------------------------------------------------------------------------------


def test_device_add_prints_the_token_once(cli, database_url: str) -> None:
    added = cli("device", "add", "agent-1")
    assert added.exit_code == 0, added.output
    token = added.stdout.strip().splitlines()[-1]
    assert "will not be shown again" in added.stderr
    with CentralStore.open(database_url) as store:
        assert store.authenticate(token).name == "agent-1"
    listed = cli("device", "list")
    assert listed.exit_code == 0 and "agent-1" in listed.output
    assert token not in listed.output
    listed_json = cli("device", "list", "--json")
    assert token not in listed_json.output
    [row] = json.loads(listed_json.output)
    assert (row["name"], row["role"], row["revoked_at"]) == ("agent-1", "device", None)


def test_device_add_json_and_admin(cli) -> None:
    result = cli("device", "add", "office", "--admin", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["name"], data["role"]) == ("office", "admin")
    assert len(data["token"]) >= 40 and "not be shown again" in data["warning"]


def test_device_errors_exit_5_with_reason(cli) -> None:
    assert cli("device", "add", "agent-1").exit_code == 0
    again = cli("device", "add", "agent-1")
    assert again.exit_code == EXIT_DATA and "already enrolled" in again.output
    bad = cli("device", "add", "no spaces allowed")
    assert bad.exit_code == EXIT_DATA and "not usable" in bad.output
    unknown = cli("device", "revoke", "agent-404")
    assert unknown.exit_code == EXIT_DATA and "agent-404" in unknown.output
    assert "Traceback" not in again.output + bad.output + unknown.output


def test_device_revoke_shows_in_the_list(cli) -> None:
    cli("device", "add", "agent-1")
    revoked = cli("device", "revoke", "agent-1")
    assert revoked.exit_code == 0 and "revoked agent-1" in revoked.output
    [row] = json.loads(cli("device", "list", "--json").output)
    assert row["revoked_at"] is not None
    assert "revoked" in cli("device", "list").output


def test_database_from_the_environment(runner: CliRunner, database_url: str) -> None:
    result = runner.invoke(main, ["device", "add", "agent-9"],
                           env={DATABASE_ENV: database_url})
    assert result.exit_code == 0, result.output
    with CentralStore.open(database_url) as store:
        assert [d.name for d in store.list_devices()] == ["agent-9"]


# --- reference data ------------------------------------------------------------------------

REFERENCE = {"clients": [{"ref": "K-1"}, {"ref": "K-2", "lock_status": "impossible"}],
             "tags": [{"uid": "04A1B2C3D4E5F6", "client_ref": "K-1"}]}


def test_reference_import_list_set_delete(cli, tmp_path: Path) -> None:
    file = tmp_path / "reference.json"
    file.write_text(json.dumps(REFERENCE))
    imported = cli("reference", "import", str(file), "--json")
    assert imported.exit_code == 0, imported.output
    counts = json.loads(imported.output)
    assert (counts["clients"], counts["tags"]) == (2, 1)

    listed = json.loads(cli("reference", "list", "--json").output)
    assert [(i["kind"], i["key"]) for i in listed["items"]] == [
        ("client", "K-1"), ("client", "K-2"), ("tag", "04A1B2C3D4E5F6")]
    cursor = listed["cursor"]

    changed = cli("reference", "set", "client", "K-1", "--data", '{"lock_status": "installed"}')
    assert changed.exit_code == 0, changed.output
    deleted = cli("reference", "delete", "tag", "04A1B2C3D4E5F6")
    assert deleted.exit_code == 0, deleted.output
    since = json.loads(cli("reference", "list", "--since", str(cursor), "--json").output)
    assert [(i["key"], i["deleted"]) for i in since["items"]] == [
        ("K-1", False), ("04A1B2C3D4E5F6", True)]
    assert "installed" in cli("reference", "list").output


def test_reference_import_of_a_bad_file_exits_5_with_the_reason(cli, tmp_path: Path) -> None:
    file = tmp_path / "reference.json"
    file.write_text('{"tags": [{"uid": "xyz", "client_ref": "K-1"}]}')
    result = cli("reference", "import", str(file))
    assert result.exit_code == EXIT_DATA
    assert "not hex" in result.output and "nothing was imported" in result.output
    file.write_text("{not json")
    result = cli("reference", "import", str(file))
    assert result.exit_code == EXIT_DATA and "is not JSON" in result.output
    file.write_text("[1, 2]")
    result = cli("reference", "import", str(file))
    assert result.exit_code == EXIT_DATA and "not an object" in result.output
    result = cli("reference", "import", str(tmp_path / "missing.json"))
    assert result.exit_code == EXIT_DATA and "cannot read" in result.output
    assert "Traceback" not in result.output
    assert json.loads(cli("reference", "list", "--json").output)["items"] == []


def test_reference_usage_errors_exit_2(cli) -> None:
    assert cli("reference", "set", "planet", "x", "--data", "{}").exit_code == EXIT_USAGE
    not_json = cli("reference", "set", "client", "K-1", "--data", "{nope")
    assert not_json.exit_code == EXIT_USAGE and "not JSON" in not_json.output
    missing = cli("reference", "delete", "client", "K-404")
    assert missing.exit_code == EXIT_DATA and "K-404" in missing.output


# --- visits and events ---------------------------------------------------------------------


def test_visits_and_events_json(cli, central_store: CentralStore) -> None:
    central_store.add_device("agent-1")
    [device] = central_store.list_devices()
    arrived = datetime.now(UTC).replace(microsecond=0)
    central_store.ingest(device, visit_events("agent-1", arrived), None)

    result = cli("visits", "--json")
    assert result.exit_code == 0, result.output
    [visit] = json.loads(result.output)
    assert (visit["visit_id"], visit["status"], visit["client_ref"]) == ("v-1", "closed", "K-1")
    assert datetime.fromisoformat(visit["arrived_at"]) == arrived

    today = json.loads(cli("visits", "--day", "today", "--json", "--client", "K-1").output)
    if arrived.astimezone(ZoneInfo(DEFAULT_DAY_ZONE)).date() == datetime.now(
            ZoneInfo(DEFAULT_DAY_ZONE)).date():  # not across midnight while testing
        assert [v["visit_id"] for v in today] == ["v-1"]
    assert json.loads(cli("visits", "--staff", "P-bo", "--json").output) == []
    assert "closed" in cli("visits").output

    events = json.loads(cli("events", "--device", "agent-1", "--kind", "visit.departed",
                            "--json").output)
    assert [e["kind"] for e in events] == ["visit.departed"]
    assert len(json.loads(cli("events", "--limit", "1", "--json").output)) == 1
    assert "visit.arrived" in cli("events").output


def test_bad_day_is_a_usage_error(cli) -> None:
    result = cli("visits", "--day", "2026-13-01")
    assert result.exit_code == EXIT_USAGE and "YYYY-MM-DD" in result.output


# --- database and server errors --------------------------------------------------------------


def test_unreachable_database_exits_6_with_advice(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--database", UNREACHABLE_PG, "device", "list"])
    assert result.exit_code == EXIT_DATABASE
    assert "unavailable" in result.output and "PostgreSQL is running" in result.output
    assert "Traceback" not in result.output
    debug = runner.invoke(main, ["--database", UNREACHABLE_PG, "--debug", "device", "list"])
    assert debug.exit_code != 0 and debug.exception is not None  # the traceback is kept


def test_migrate_upgrades_the_schema(cli) -> None:
    result = cli("migrate")
    assert result.exit_code == 0, result.output
    assert "is current" in result.output
    assert json.loads(cli("migrate", "--json").output)["schema"] == "current"


def test_serve_needs_both_tls_files(cli, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    result = cli("serve", "--tls-cert", str(cert))
    assert result.exit_code == EXIT_DATA and "--tls-key" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + SERVE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"the centre did not answer at {url} within {SERVE_START_TIMEOUT_S} s")


def test_serve_runs_until_sigterm_and_stops_cleanly(database_url: str) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "central", "--database", database_url, "serve", "--port",
         str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=SERVE_STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "centre stopped" in stderr
