"""``nyckelfri agent install`` in a throwaway root: the files, idempotence, uninstall."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.install import render_unit, unit_template
from drivers.nfc.devices import render_modprobe_blacklist, render_udev_rules

ROOT_FILES = {
    "etc/udev/rules.d/99-nyckelfri-nfc.rules": render_udev_rules(),
    "etc/modprobe.d/blacklist-nyckelfri-nfc.conf": render_modprobe_blacklist(),
}
UNIT = "etc/systemd/system/nyckelfri-agent.service"


def install(root: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "agent", "agent", "install", "--root",
                           str(root), "--json", *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_install_writes_rules_blacklist_and_a_unit_running_this_nyckelfri(tmp_path):
    result = install(tmp_path)
    for name, text in ROOT_FILES.items():
        assert (tmp_path / name).read_text() == text
    unit = (tmp_path / UNIT).read_text()
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    command = exec_start.removeprefix("ExecStart=").split()
    assert Path(command[0]).name == "nyckelfri" and Path(command[0]).is_file()
    assert command[1:] == ["agent", "run", "--data-dir", "/var/lib/nyckelfri"]
    assert (tmp_path / "var/lib/nyckelfri").is_dir() and (tmp_path / "etc/nyckelfri").is_dir()
    planned = [step["command"] for step in result["steps"] if step["command"]]
    assert ["udevadm", "control", "--reload-rules"] in planned
    assert ["systemctl", "enable", "nyckelfri-agent.service"] in planned
    assert not result["live"] and not any(s["done"] for s in result["steps"] if s["command"])


def test_a_second_install_changes_nothing_and_uninstall_removes_it(tmp_path):
    install(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = install(tmp_path)
    assert not any(s["what"].startswith(("wrote", "made")) for s in again["steps"])
    assert ["udevadm", "control", "--reload-rules"] not in [s["command"] for s in again["steps"]]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    removed = install(tmp_path, "--uninstall")
    assert not (tmp_path / UNIT).exists()
    assert not any((tmp_path / name).exists() for name in ROOT_FILES)
    assert (tmp_path / "var/lib/nyckelfri").is_dir()  # buffered events are never removed
    assert any("kept" in s["what"] for s in removed["steps"])


def test_dry_run_writes_nothing(tmp_path):
    result = install(tmp_path, "--dry-run")
    assert not any(tmp_path.rglob("*.rules")) and not (tmp_path / UNIT).exists()
    assert any(s["what"].startswith("wrote") for s in result["steps"])


def test_the_shipped_unit_is_the_one_in_udev():
    repo = Path(__file__).resolve().parents[2]
    assert unit_template() == (repo / "udev" / "nyckelfri-agent.service").read_text()
    assert "ExecStart=/opt/x/bin/nyckelfri agent run" in render_unit("/opt/x/bin/nyckelfri")
