"""The nyckelfri CLI through click's runner: help, exit codes, --json, clear errors."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from agent.cli import EXIT_DATA, EXIT_HARDWARE, main
from tests.conftest import REFERENCE


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.parametrize("path", [p for p, _ in all_commands(main)], ids=" ".join)
def test_every_command_has_help(runner, path):
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd = dict(all_commands(main))[path]
    assert cmd.help and len(cmd.help.strip()) > 10, f"{' '.join(path)} lacks help text"


def test_import_reference_then_status_and_visits_json(runner, tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(REFERENCE))
    data = str(tmp_path / "data")
    result = runner.invoke(main, ["agent", "import-reference", str(ref), "--data-dir", data,
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"clients": 3, "tags": 3, "staff": 2}
    status = json.loads(runner.invoke(main, ["agent", "status", "--data-dir", data,
                                             "--json"]).output)
    assert status["running"] is None and status["reference"]["tags"] == 3
    assert status["outbox"]["pending"] == 0
    visits = runner.invoke(main, ["visits", "--data-dir", data, "--json", "--day", "today"])
    assert visits.exit_code == 0 and json.loads(visits.output) == []


def test_bad_reference_file_exits_with_data_error(runner, tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text('{"tags": [{"uid": "xyz", "client_ref": "K"}]}')
    result = runner.invoke(main, ["agent", "import-reference", str(ref), "--data-dir",
                                  str(tmp_path / "d")])
    assert result.exit_code == EXIT_DATA
    assert "not hex" in result.output and "nothing was imported" in result.output
    ref.write_text("{not json")
    result = runner.invoke(main, ["agent", "import-reference", str(ref), "--data-dir",
                                  str(tmp_path / "d")])
    assert result.exit_code == EXIT_DATA and "is not JSON" in result.output


@pytest.mark.parametrize(
    ("reader", "advice"),
    [("bluetooth:0", "Use one of"), ("serial:ttyS0", "serial:/dev/DEVICE:pn532"),
     ("udp:localhost:notaport", "UDP port")],
)
def test_bad_reader_path_is_a_hardware_error_with_advice(runner, tmp_path, reader, advice):
    result = runner.invoke(main, ["agent", "run", "--reader", reader, "--data-dir",
                                  str(tmp_path / "d")])
    assert result.exit_code == EXIT_HARDWARE, result.output
    assert advice in result.output and "Traceback" not in result.output


def test_config_file_and_env_errors_are_clear(runner, tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('repeat_window_s = "soon"\n')
    result = runner.invoke(main, ["agent", "status", "--config", str(cfg), "--data-dir",
                                  str(tmp_path)])
    assert result.exit_code == EXIT_DATA and "repeat_window_s" in result.output
    cfg.write_text("colour = 'red'\n")
    result = runner.invoke(main, ["agent", "status", "--config", str(cfg)])
    assert result.exit_code == EXIT_DATA and "unknown setting" in result.output
    result = runner.invoke(main, ["agent", "status", "--data-dir", str(tmp_path / "other")],
                           env={"NYCKELFRI_MAX_VISIT_S": "-3"})
    assert result.exit_code == EXIT_DATA and "environment" in result.output


def test_bad_day_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(main, ["visits", "--day", "yesterday-ish", "--data-dir",
                                  str(tmp_path)])
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output


def test_a_command_needing_the_centre_names_the_extra_to_install():
    """On a field agent installed without nyckelfri[central], the demo says what to do."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['fastapi'] = None  # as if not installed\n"
            "from agent.cli import main; main(['demo'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 5, done.stderr
    assert "pip install 'nyckelfri[central]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_doctor_is_a_nyckelfri_command_with_its_exit_code(tmp_path):
    """Through the CLI's lazy wrapper: options pass through, JSON out, exit 1 on a fault."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "agent", "doctor", "--json", "--data-dir",
                           str(tmp_path), "--service-user", "nyckelfri-no-such-user"],
                          capture_output=True, text=True, timeout=60, check=False)
    checks = json.loads(done.stdout)
    by_name = {c["name"]: c for c in checks}
    assert by_name["service user"]["status"] == "fail"
    assert done.returncode == 1
    helped = subprocess.run([sys.executable, "-m", "agent", "doctor", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0 and "--service-user" in helped.stdout
