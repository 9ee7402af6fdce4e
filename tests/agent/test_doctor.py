"""`nyckelfri doctor`: every check provoked into its fault and shown healthy.

Each test builds the files a check reads in a throwaway tree (:func:`tree`): sysfs,
/dev, /proc, udev and systemd folders. Readers are nfcpy's real PN532 driver on the
emulator's pty; the centre is the real one on loopback; the agent is a real process.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from agent.clock import Stamp
from agent.config import AgentConfig
from agent.doctor import (
    Check,
    Paths,
    Status,
    UserIds,
    check_agent,
    check_bluetooth_adapter,
    check_bluetoothd,
    check_centre,
    check_clock_sync,
    check_disk,
    check_kernel_drivers,
    check_libusb,
    check_node_access,
    check_outbox,
    check_pn532,
    check_serial_console,
    check_serial_port,
    check_service_unit,
    check_service_user,
    check_udev_rules,
    check_usb_reader,
    doctor_command,
    grants_rw,
    load_doctor_config,
    make_doctor_command,
    reader_checks,
    render,
    user_ids,
)
from agent.store import Store
from central.api import create_app
from central.server import run_in_thread
from central.store import CentralStore
from drivers.nfc import devices
from drivers.sim.pn532 import Pn532Emulator

REPO = Path(__file__).resolve().parents[2]
SHIPPED_UNIT = REPO / "udev" / "nyckelfri-agent.service"
RC_S380 = (0x054C, 0x06C1)


def tree(root: Path) -> Paths:
    """Paths for a machine that lives under ``root``; folders are made on demand."""
    return Paths(
        sysfs_usb=root / "sys/bus/usb/devices",
        bluetooth=root / "sys/class/bluetooth",
        proc=root / "proc",
        proc_cmdline=root / "proc/cmdline",
        dev=root / "dev",
        udev_rules=root / "etc/udev/rules.d",
        modprobe_d=root / "etc/modprobe.d",
        timesync=root / "run/systemd/timesync",
        systemd_dirs=(root / "etc/systemd/system", root / "run/systemd/generator"),
        unit_file=root / "etc/systemd/system/nyckelfri-agent.service",
        agent_env=root / "etc/nyckelfri/agent.env",
        dbus_system_socket=root / "run/dbus/system_bus_socket",
        timedatectl=str(root / "bin/timedatectl"),
    )


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return tree(tmp_path / "root")


@pytest.fixture
def nobody() -> UserIds:
    """An unprivileged user that exists here (root may open anything)."""
    user = user_ids("nobody")
    assert user is not None and user.uid != 0
    return user


def plug_usb(paths: Paths, vid_pid: tuple[int, int] = RC_S380, *, name: str = "1-1",
             bus: int = 1, dev: int = 7, driver: str | None = None) -> Path:
    """A USB device as sysfs and devtmpfs show it; returns its /dev/bus/usb node."""
    d = paths.sysfs_usb / name
    write(d / "idVendor", f"{vid_pid[0]:04x}\n")
    write(d / "idProduct", f"{vid_pid[1]:04x}\n")
    write(d / "busnum", f"{bus}\n")
    write(d / "devnum", f"{dev}\n")
    if driver:
        drivers = paths.sysfs_usb.parent / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        intf = d / f"{name}:1.0"
        intf.mkdir()
        (intf / "driver").symlink_to(drivers)
    return write(paths.dev / "bus/usb" / f"{bus:03d}" / f"{dev:03d}")


def node(path: Path, mode: int, uid: int = 0, gid: int = 0) -> Path:
    write(path)
    os.chown(path, uid, gid)
    path.chmod(mode)
    return path


# --- config and the installed unit ----------------------------------------------------------


def test_config_reads_agent_env_over_agent_toml_as_the_unit_does(tmp_path: Path,
                                                                 paths: Paths) -> None:
    data = tmp_path / "data"
    write(data / "agent.toml", 'readers = ["usb"]\ndevice_id = "pi-7"\n')
    write(paths.agent_env, "# set by the installer\nNYCKELFRI_READER=tty:AMA0:pn532,usb\n")
    write(paths.unit_file, f"[Service]\nExecStart=/usr/local/bin/nyckelfri agent run "
                           f"--data-dir {data}\n")
    check, config = load_doctor_config(paths, data_dir=None, config_file=None, env={})
    assert check.status is Status.OK
    assert config.data_dir == data  # from the unit's ExecStart
    assert config.readers == ("tty:AMA0:pn532", "usb")  # agent.env (env) beats agent.toml
    assert config.device_id == "pi-7"
    _, config = load_doctor_config(paths, data_dir=None, config_file=None,
                                   env={"NYCKELFRI_READER": "udp:127.0.0.1:9"})
    assert config.readers == ("udp:127.0.0.1:9",)  # the caller's environment beats the file


def test_a_broken_config_fails_and_the_other_checks_still_run(tmp_path: Path,
                                                             paths: Paths) -> None:
    write(tmp_path / "data" / "agent.toml", 'repeat_window_s = "soon"\n')
    check, config = load_doctor_config(paths, data_dir=tmp_path / "data", config_file=None,
                                       env={})
    assert check.status is Status.FAIL and "repeat_window_s" in check.detail
    assert config.data_dir == tmp_path / "data"


def test_the_shipped_unit_passes_no_reader_and_an_old_one_is_named(paths: Paths) -> None:
    assert check_service_unit(paths).status is Status.SKIP
    write(paths.unit_file, SHIPPED_UNIT.read_text())
    assert check_service_unit(paths).status is Status.OK
    write(paths.unit_file, "[Service]\nEnvironment=NYCKELFRI_READER=usb\nExecStart=/usr/local/"
                           "bin/nyckelfri agent run --reader ${NYCKELFRI_READER} --data-dir "
                           "/var/lib/nyckelfri\n")
    old = check_service_unit(paths)
    assert old.status is Status.WARN
    assert "--reader" in old.detail and "NYCKELFRI_READER" in old.detail
    assert "nyckelfri agent install" in old.fix


# --- USB readers ----------------------------------------------------------------------------


def test_no_usb_reader_and_one_plugged_in(paths: Paths) -> None:
    missing = check_usb_reader("usb", paths)
    assert missing.status is Status.FAIL and "lsusb" in missing.fix
    plug_usb(paths, (0x1D6B, 0x0002), name="usb1")  # a root hub: not a reader
    assert check_usb_reader("usb", paths).status is Status.FAIL
    plug_usb(paths)
    found = check_usb_reader("usb", paths)
    assert found.status is Status.OK and "RC-S380" in found.detail
    assert check_usb_reader("usb:054c:06c1", paths).status is Status.OK
    assert check_usb_reader("usb:072f:2200", paths).status is Status.FAIL  # not that model
    assert check_usb_reader("usb:001:007", paths).status is Status.OK
    assert check_usb_reader("usb:001:008", paths).status is Status.FAIL


def test_a_reader_held_by_port100_is_named_with_the_blacklist(paths: Paths) -> None:
    plug_usb(paths)
    assert check_kernel_drivers(paths, agent_running=False).status is Status.OK
    paths.sysfs_usb.joinpath("1-1").rename(paths.sysfs_usb / "gone")
    plug_usb(paths, name="1-2", driver="port100")
    held = check_kernel_drivers(paths, agent_running=False)
    assert held.status is Status.FAIL and "port100" in held.detail
    assert held.fix.startswith("Install the blacklist") and "rmmod" in held.fix
    write(paths.modprobe_d / devices.MODPROBE_BLACKLIST_NAME, "blacklist port100\n")
    assert check_kernel_drivers(paths, agent_running=False).fix.startswith("Unload")


def test_a_reader_claimed_through_usbfs_is_fine_only_for_a_running_agent(paths: Paths) -> None:
    plug_usb(paths, (0x072F, 0x2200), driver="usbfs")  # ACR122U
    claimed = check_kernel_drivers(paths, agent_running=False)
    assert claimed.status is Status.WARN and "pcscd" in claimed.fix
    assert check_kernel_drivers(paths, agent_running=True).status is Status.OK


def test_libusb_missing_and_loading() -> None:
    missing = check_libusb(["libnyckelfri-no-such-lib.so.0"], find_name="nyckelfri-no-such")
    assert missing.status is Status.FAIL and missing.fix == "sudo apt install libusb-1.0-0"
    libc = "libc.so.6"  # any library the loader can load stands in for libusb-1.0
    assert check_libusb([libc], find_name=None).status is Status.OK


def test_libusb_check_agrees_with_usb1s_own_loader() -> None:
    """Canary: the doctor looks where libusb1 looks (usb1._libusb1's file names)."""
    import usb1

    try:
        usb1.loadLibrary()
    except OSError:
        loads = False
    else:
        loads = True
    assert (check_libusb().status is Status.OK) is loads


# --- permissions ----------------------------------------------------------------------------


def test_udev_rules_missing_stale_and_current(paths: Paths) -> None:
    assert check_udev_rules(paths, usb_configured=True).status is Status.FAIL
    assert check_udev_rules(paths, usb_configured=False).status is Status.WARN
    rules = write(paths.udev_rules / devices.UDEV_RULES_NAME, "# an old version\n")
    assert check_udev_rules(paths, usb_configured=True).status is Status.WARN
    rules.write_text(devices.render_udev_rules())
    assert check_udev_rules(paths, usb_configured=True).status is Status.OK


def test_service_user_missing_and_present() -> None:
    missing, user = check_service_user("nyckelfri-no-such-user")
    assert missing.status is Status.FAIL and user is None
    assert "nyckelfri agent install" in missing.fix
    present, user = check_service_user("nobody")
    assert present.status is Status.OK and user is not None


def test_usb_node_mode_and_group_decide_for_the_service_user(paths: Paths,
                                                             nobody: UserIds) -> None:
    reader = plug_usb(paths)
    node(reader, 0o660)  # root:root, as without the udev rule
    denied = check_node_access("access usb", reader, nobody, serial=False)
    assert denied.status is Status.FAIL and "udevadm trigger" in denied.fix
    os.chown(reader, 0, next(iter(nobody.gids)))  # what the rule does for group nyckelfri
    assert check_node_access("access usb", reader, nobody, serial=False).status is Status.OK


def test_serial_node_in_dialout_the_user_is_not_in(paths: Paths, nobody: UserIds) -> None:
    port = node(paths.dev / "ttyAMA0", 0o660, gid=grp.getgrnam("dialout").gr_gid)
    check = check_node_access("access tty:AMA0:pn532", port, nobody, serial=True)
    assert check.status is Status.WARN  # the unit's SupplementaryGroups=dialout covers it
    assert check.fix == "sudo usermod -aG dialout nobody"
    os.chown(port, 0, grp.getgrnam("tty").gr_gid)
    port.chmod(0o620)  # what agetty makes of a port it holds
    held = check_node_access("access tty:AMA0:pn532", port, nobody, serial=True)
    assert held.status is Status.FAIL and "console" in held.fix
    os.chown(port, nobody.uid, 0)
    port.chmod(0o600)
    assert check_node_access("access", port, nobody, serial=True).status is Status.OK


def test_the_owner_class_applies_before_the_group_class(tmp_path: Path,
                                                        nobody: UserIds) -> None:
    gid = next(iter(nobody.gids))
    st = node(tmp_path / "n", 0o060, uid=nobody.uid, gid=gid).stat()
    assert not grants_rw(st, nobody)  # group rw, but the owner (nobody) has no rights
    assert grants_rw(st, replace(nobody, uid=0))


# --- serial ports ---------------------------------------------------------------------------


def test_serial_port_missing_present_and_globbed(paths: Paths) -> None:
    missing, found = check_serial_port("tty:AMA0:pn532", paths)
    assert missing.status is Status.FAIL and found is None
    assert missing.detail == f"no such serial port {paths.dev / 'ttyAMA0'}"
    assert "miniuart-bt" in missing.fix
    write(paths.dev / "ttyAMA0")
    present, found = check_serial_port("tty:AMA0:pn532", paths)
    assert present.status is Status.OK and found == paths.dev / "ttyAMA0"
    assert check_serial_port("tty:AMA:pn532", paths)[0].status is Status.SKIP


def test_a_kernel_console_on_the_port(paths: Paths) -> None:
    port = write(paths.dev / "ttyAMA0")
    write(paths.proc_cmdline, "console=serial0,115200 console=tty1 root=PARTUUID=1 rootwait\n")
    (paths.dev / "serial0").symlink_to("ttyAMA0")
    console = check_serial_console("tty:AMA0:pn532", port, paths)
    assert console.status is Status.FAIL and "console=ttyAMA0" in console.detail
    assert "cmdline.txt" in console.fix and "serial-getty@ttyAMA0" in console.fix
    (paths.dev / "serial0").unlink()
    (paths.dev / "serial0").symlink_to("ttyAMA10")  # a Pi 5: serial0 is the debug UART
    assert check_serial_console("tty:AMA0:pn532", port, paths).status is Status.OK


def test_a_serial_getty_unit_or_process_on_the_port(paths: Paths) -> None:
    port = write(paths.dev / "ttyAMA0")
    write(paths.proc_cmdline, "console=tty1\n")
    write(paths.proc / "1" / "comm", "systemd\n")
    write(paths.proc / "1" / "cmdline", "/sbin/init\0")
    assert check_serial_console("tty:AMA0:pn532", port, paths).status is Status.OK
    wants = paths.systemd_dirs[0] / "getty.target.wants"
    wants.mkdir(parents=True)
    (wants / "serial-getty@ttyAMA0.service").symlink_to("/lib/systemd/system/serial-getty@"
                                                         ".service")
    unit = check_serial_console("tty:AMA0:pn532", port, paths)
    assert unit.status is Status.FAIL and "serial-getty@ttyAMA0.service" in unit.detail
    (wants / "serial-getty@ttyAMA0.service").unlink()
    write(paths.proc / "612" / "comm", "agetty\n")
    write(paths.proc / "612" / "cmdline",
          "/sbin/agetty\0-o\0-p -- \\u\0--keep-baud\0115200,57600\0ttyAMA0\0vt220\0")
    process = check_serial_console("tty:AMA0:pn532", port, paths)
    assert process.status is Status.FAIL and "agetty (pid 612)" in process.detail


def test_a_pn532_that_answers_and_one_that_does_not(paths: Paths) -> None:
    port = paths.dev / "ttyAMA0"
    port.parent.mkdir(parents=True)
    with Pn532Emulator() as emulator:
        port.symlink_to(emulator.path)
        answers = check_pn532("tty:AMA0:pn532", port, None)
        assert answers.status is Status.OK and "PN532" in answers.detail
    master, slave = os.openpty()  # the port, with nothing wired to it
    try:
        port.unlink()
        port.symlink_to(os.ttyname(slave))
        silent = check_pn532("tty:AMA0:pn532", port, None)
    finally:
        os.close(master)
        os.close(slave)
    assert silent.status is Status.FAIL and silent.detail.startswith("no PN532 answered")
    assert all(hint in silent.fix for hint in ("HSU", "crossed", "console", "115200"))


def test_a_running_agent_answers_for_the_pn532_it_holds(paths: Paths) -> None:
    port = paths.dev / "ttyAMA0"  # not opened: the agent has it
    running = {"pid": 42, "readers": {"tty:AMA0:pn532": {"state": "open", "detail": "PN532"}}}
    assert check_pn532("tty:AMA0:pn532", port, running).status is Status.OK
    running["readers"]["tty:AMA0:pn532"] = {"state": "down", "detail": "no PN532 answered"}
    down = check_pn532("tty:AMA0:pn532", port, running)
    assert down.status is Status.FAIL and "no PN532 answered" in down.detail


def test_reader_checks_for_a_serial_reader_in_order(paths: Paths) -> None:
    config = replace(AgentConfig(), readers=("tty:AMA0:pn532",))
    names = [c.name for c in reader_checks(config, paths, service_user="nobody",
                                           running=None)]
    assert names == ["udev rules", "service user", "serial port tty:AMA0:pn532"]
    with Pn532Emulator() as emulator:
        (paths.dev).mkdir(parents=True)
        (paths.dev / "ttyAMA0").symlink_to(emulator.path)
        checks = reader_checks(config, paths, service_user="nobody", running=None)
    assert [c.name for c in checks][2:] == [
        "serial port tty:AMA0:pn532", "access tty:AMA0:pn532",
        "serial console tty:AMA0:pn532", "pn532 tty:AMA0:pn532"]
    assert checks[-1].status is Status.OK


def test_a_malformed_reader_path_fails_by_name(paths: Paths) -> None:
    config = replace(AgentConfig(), readers=("udp:localhost:x",))
    (check,) = reader_checks(config, paths, service_user="nobody", running=None)
    assert check.status is Status.FAIL and "UDP port" in check.detail


# --- Bluetooth ------------------------------------------------------------------------------


def test_bluetooth_adapter_missing_present_and_not_needed(paths: Paths) -> None:
    visits = AgentConfig()
    assert check_bluetooth_adapter(visits, paths).status is Status.WARN
    fitter = replace(visits, fitter="montor-1")
    missing = check_bluetooth_adapter(fitter, paths)
    assert missing.status is Status.FAIL and "miniuart-bt" in missing.fix
    (paths.bluetooth / "hci0").mkdir(parents=True)
    assert check_bluetooth_adapter(fitter, paths).status is Status.OK
    sim = replace(fitter, ble_backend="sim")
    assert check_bluetooth_adapter(sim, paths).status is Status.SKIP


def test_bluetoothd_needs_the_system_bus_and_its_process(paths: Paths) -> None:
    fitter = replace(AgentConfig(), fitter="montor-1")
    no_bus = check_bluetoothd(fitter, paths)
    assert no_bus.status is Status.FAIL and "D-Bus" in no_bus.detail
    write(paths.dbus_system_socket)
    write(paths.proc / "7" / "comm", "dbus-daemon\n")
    write(paths.proc / "7" / "cmdline", "/usr/bin/dbus-daemon\0--system\0")
    down = check_bluetoothd(fitter, paths)
    assert down.status is Status.FAIL and "systemctl enable --now bluetooth" in down.fix
    assert check_bluetoothd(AgentConfig(), paths).status is Status.WARN  # not a fitter's
    write(paths.proc / "88" / "comm", "bluetoothd\n")
    write(paths.proc / "88" / "cmdline", "/usr/libexec/bluetooth/bluetoothd\0")
    assert check_bluetoothd(fitter, paths).status is Status.OK


# --- the centre and the clock ---------------------------------------------------------------


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The real centre on loopback; ``shift`` moves its clock against this machine's."""
    shift = {"seconds": 0.0}
    folder = tmp_path_factory.mktemp("centre")
    store = CentralStore.open(str(folder / "centre.db"), clock=lambda: datetime.now(UTC)
                              + timedelta(seconds=shift["seconds"]))
    try:
        token = store.add_device("pi-doctor")
        with run_in_thread(create_app(store)) as (_server, _thread, url):
            yield SimpleNamespace(url=url, token=token, shift=shift)
    finally:
        store.close()


def online(centre: SimpleNamespace, **changes: object) -> AgentConfig:
    base = replace(AgentConfig(), device_id="pi-doctor", centre_url=centre.url,
                   token=centre.token)
    return replace(base, **changes)  # type: ignore[arg-type]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_centre_that_answers_accepts_the_token_and_agrees_on_time(centre) -> None:
    checks = by_name(check_centre(online(centre)))
    assert [c.status for c in checks.values()] == [Status.OK] * 3, checks
    assert "from the centre's clock" in checks["clock offset"].detail


def test_a_centre_that_refuses_the_token(centre) -> None:
    checks = by_name(check_centre(online(centre, token="not-the-token")))
    assert checks["centre"].status is Status.OK
    assert checks["token"].status is Status.FAIL and "HTTP 401" in checks["token"].detail
    assert "nyckelfri-central device add" in checks["token"].fix


def test_a_centre_whose_clock_is_an_hour_away(centre) -> None:
    centre.shift["seconds"] = -3600.0
    try:
        checks = by_name(check_centre(online(centre)))
    finally:
        centre.shift["seconds"] = 0.0
    offset = checks["clock offset"]
    assert offset.status is Status.FAIL and "+3600 s off" in offset.detail


def test_a_centre_nobody_listens_for() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = replace(AgentConfig(), centre_url=f"http://127.0.0.1:{port}", token="t")
    checks = by_name(check_centre(config))
    assert checks["centre"].status is Status.FAIL and "cannot reach" in checks["centre"].detail
    assert checks["token"].status is Status.SKIP
    assert checks["clock offset"].status is Status.SKIP


def test_no_centre_configured_skips_the_centre() -> None:
    assert {c.status for c in check_centre(AgentConfig())} == {Status.SKIP}


def test_clock_sync_from_timesyncd(paths: Paths) -> None:
    paths.timesync.mkdir(parents=True)
    unsynced = check_clock_sync(paths)
    assert unsynced.status is Status.WARN and "timesync-status" in unsynced.fix
    write(paths.timesync / "synchronized")
    assert check_clock_sync(paths).status is Status.OK


@pytest.mark.parametrize(("answer", "status"), [("yes", Status.OK), ("no", Status.WARN)])
def test_clock_sync_from_timedatectl(paths: Paths, answer: str, status: Status) -> None:
    assert check_clock_sync(paths).status is Status.SKIP  # neither is there
    script = write(Path(paths.timedatectl), f"#!/bin/sh\necho {answer}\n")
    script.chmod(0o755)
    assert check_clock_sync(paths).status is status


# --- the data dir ---------------------------------------------------------------------------


def test_disk_full_nearly_full_and_fine(tmp_path: Path) -> None:
    huge = 1 << 62
    assert check_disk(tmp_path / "not-yet", fail_bytes=huge).status is Status.FAIL
    assert check_disk(tmp_path, warn_bytes=huge, fail_bytes=0).status is Status.WARN
    assert check_disk(tmp_path, warn_fraction=0, warn_bytes=0, fail_bytes=0).status is Status.OK


def add_pending(data: Path, at: datetime) -> None:
    with Store.in_dir(data, device_id="pi-doctor") as store, store.transaction() as conn:
        store.add_event(conn, "visit_arrival", Stamp(at, 1, "boot", True), {})


def test_outbox_backlog_and_its_age(tmp_path: Path) -> None:
    config = replace(AgentConfig(), data_dir=tmp_path / "data", device_id="pi-doctor")
    assert check_outbox(config).status is Status.SKIP
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    add_pending(config.data_dir, now - timedelta(minutes=5))
    fresh = check_outbox(config, now=now)
    assert fresh.status is Status.OK and "1 event(s) waiting, the oldest for 5 min" in fresh.detail
    add_pending(config.data_dir, now - timedelta(hours=3))  # the oldest is the first sent
    late = check_outbox(config, now=now + timedelta(hours=2))
    assert late.status is Status.WARN and "centre_url" in late.fix
    many = check_outbox(config, now=now, warn_pending=1)
    assert many.status is Status.WARN


# --- the command ----------------------------------------------------------------------------


def test_the_command_is_healthy_on_a_machine_without_hardware_to_check(tmp_path: Path,
                                                                        paths: Paths) -> None:
    write(paths.timesync / "synchronized")
    cfg = write(tmp_path / "agent.toml", 'readers = ["udp:127.0.0.1:9"]\nble_backend = "sim"\n')
    result = CliRunner().invoke(make_doctor_command(paths),
                                ["--json", "--config", str(cfg), "--data-dir", str(tmp_path)])
    checks = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in checks)
    assert {c["status"] for c in checks} <= {"ok", "warn", "skip"}


def test_the_command_fails_and_prints_the_fix(tmp_path: Path, paths: Paths) -> None:
    result = CliRunner().invoke(make_doctor_command(paths), ["--data-dir", str(tmp_path)],
                                env={"NYCKELFRI_READER": "tty:AMA0:pn532"})
    assert result.exit_code == 1
    lines = result.output.splitlines()
    at = lines.index(f"FAIL  serial port tty:AMA0:pn532: no such serial port "
                     f"{paths.dev / 'ttyAMA0'}")
    assert lines[at + 1].startswith("      fix: Enable the UART")
    assert lines[-1].endswith("skipped") and "failed" in lines[-1]


def test_the_command_documents_its_exit_codes() -> None:
    assert doctor_command.name == "doctor"
    result = CliRunner().invoke(doctor_command, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Exit code 0 when no check failed, 1 when any check failed" in text
    assert "do not fail" in text and "--json" in text


def test_render_puts_the_fix_under_each_fault() -> None:
    text = render([Check("a", Status.OK, "fine", "never shown"),
                   Check("b", Status.FAIL, "broken", "mend it"),
                   Check("c", Status.SKIP, "n/a")])
    assert text.splitlines() == ["OK    a: fine", "FAIL  b: broken", "      fix: mend it",
                                 "SKIP  c: n/a", "1 failed, 0 warning(s), 1 ok, 1 skipped"]


# --- the agent waits for its reader (a real process) ----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("reader", "reason"), [
    ("tty:AMA97:pn532", "no such serial port /dev/ttyAMA97"),
    ("usb:001:099", "No NFC reader at usb:001:099"),
])
def test_an_agent_without_its_reader_keeps_running_and_says_why(tmp_path: Path, reader: str,
                                                                reason: str) -> None:
    data = tmp_path / "data"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "agent", "run", "--no-feedback", "--reader", reader,
         "--data-dir", str(data)], stderr=subprocess.PIPE, text=True)
    try:
        assert agent.stderr is not None
        said = []
        for line in agent.stderr:  # the worker says it waits once the agent runs
            said.append(line)
            if "waits for the reader" in line:
                break
        assert agent.poll() is None, "".join(said)
        assert reason in said[-1]
        status = subprocess.run(
            [sys.executable, "-m", "agent", "agent", "status", "--json", "--data-dir",
             str(data)], capture_output=True, text=True, timeout=60, check=True)
        running = json.loads(status.stdout)["running"]
        assert running["pid"] == agent.pid
        state = running["readers"][reader]
        assert state["state"] == "down" and reason in state["detail"]
        assert "waits for the reader" in state["detail"]
        doctor = check_agent(running, replace(AgentConfig(), data_dir=data))
        assert doctor.status is Status.OK and f"{reader} down" in doctor.detail
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        assert "agent stopped" in agent.stderr.read()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
    assert not (data / "agent.pid").exists()


def test_service_user_lookup_matches_pwd() -> None:
    user = user_ids("nobody")
    assert user is not None and user.uid == pwd.getpwnam("nobody").pw_uid
