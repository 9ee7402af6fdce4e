"""docs/pi.md's three commands on this machine: install (in a throwaway root), enrol
with a real centre's one-time code, run the unit's own ExecStart; a simulated tap is
registered and synced."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.api import create_app
from central.cli import main as central_main
from central.server import run_in_thread
from central.store import CentralStore
from drivers.sim.udp_tag import UdpTagServer, build_tag

pytestmark = pytest.mark.slow

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "pi.md"
DEVICE = "pi-hemtjanst-07"
BADGE, TAG = "040A0B0C0D0E0F", "04A1B2C3D4E5F6"
REFERENCE = {
    "clients": [{"ref": "K-1042", "lock_status": "pending"}],
    "tags": [{"uid": TAG, "client_ref": "K-1042"}],
    "staff": [{"badge_uid": BADGE, "staff_ref": "P-17", "display_name": "Anna"}],
}
SYNCED_WITHIN_S = 30.0


def guide_commands() -> list[list[str]]:
    text = GUIDE.read_text()
    block = re.search(r"<!-- pi-guide-commands -->\n```sh\n(.*?)```", text, re.S)
    assert block, "docs/pi.md lost its marked command block"
    return [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]


def nyckelfri(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_install_enrol_run_registers_and_syncs_a_tap(tmp_path):
    install, enrol, start = guide_commands()
    assert install[1:] == ["/opt/nyckelfri/bin/nyckelfri", "agent", "install"]
    assert enrol[1:4] == ["/opt/nyckelfri/bin/nyckelfri", "agent", "enrol"]
    assert start == ["sudo", "systemctl", "start", "nyckelfri-agent"]
    root, data_dir = tmp_path / "root", tmp_path / "state"

    # 1. install (this machine is no Pi: in a throwaway root)
    done = nyckelfri(*install[2:], "--root", str(root))
    assert done.returncode == 0, done.stderr
    unit = (root / "etc/systemd/system/nyckelfri-agent.service").read_text()
    exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))

    database = str(tmp_path / "centre.db")
    centre = CentralStore.open(database)
    try:
        centre.import_reference(REFERENCE)
        with run_in_thread(create_app(centre)) as (_s, _t, url), UdpTagServer() as field:
            added = CliRunner().invoke(central_main, [
                "--database", database, "device", "add", DEVICE, "--url", url, "--json"])
            assert added.exit_code == 0, added.output
            code = json.loads(added.stdout)["enrolment_code"]

            # 2. enrol, as the guide says, into the state directory
            args = [code if a == "CODE" else a for a in enrol[4:]]
            args = [str(data_dir) if a == "/var/lib/nyckelfri" else a for a in args]
            done = nyckelfri("agent", "enrol", *args)
            assert done.returncode == 0, done.stderr
            assert "reference data pulled: 3 item(s)" in done.stdout

            # 3. run: the unit's own command line, its settings as agent.env gives them:
            # the simulated reader, and trust in the simulator's signatures (the centre's
            # policy, pulled at enrolment, is "signature": tags must prove they are NXP's)
            command = [str(data_dir) if a == "/var/lib/nyckelfri" else a for a in exec_start]
            assert Path(command[0]).is_file(), command
            env = {**os.environ, "NYCKELFRI_READER": field.path, "NYCKELFRI_TRUST_SIM_TAGS": "1"}
            agent = subprocess.Popen(command, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                for uid in (BADGE, TAG):
                    # Held until the agent reads it: the agent may still be starting (a loaded
                    # machine), and a tag taken away unread is no tap.
                    before = field.activations
                    field.present(build_tag(uid, "NTAG215"))
                    assert field.wait_for_activations(before + 1, SYNCED_WITHIN_S), (
                        f"the agent never read tag {uid} (exit code {agent.poll()})")
                    time.sleep(0.7)
                    field.remove()
                deadline = time.monotonic() + SYNCED_WITHIN_S
                while not centre.visits() and time.monotonic() < deadline:
                    assert agent.poll() is None, agent.stderr.read().decode()
                    time.sleep(0.2)
                visits = centre.visits()
                if not visits:
                    agent.send_signal(signal.SIGTERM)
                    agent.wait(20)
                    status = nyckelfri("agent", "status", "--json", "--data-dir", str(data_dir))
                    pytest.fail(f"no visit at the centre; agent: {agent.stderr.read().decode()}"
                                f"\nstatus: {status.stdout}")
                [visit] = visits
                assert (visit.client_ref, visit.staff_ref, visit.device) == (
                    "K-1042", "P-17", DEVICE)
            finally:
                agent.send_signal(signal.SIGTERM)
                assert agent.wait(20) == 0
    finally:
        centre.close()
