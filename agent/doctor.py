"""``nyckelfri doctor``: from a fresh Raspberry Pi to the first registered tap.

Every check is a small function that returns a :class:`Check` (name, status, detail,
fix). Together they walk the path a tap takes: the agent's configuration, each
configured reader (present, not held by a kernel driver, reachable by the service
user, libusb, serial port and console, a PN532 that answers), Bluetooth for the
fitters' lock commands, the centre (reachable, token accepted, clocks agreeing),
the wall clock's sync, the data dir's disk and the outbox backlog, and the
installed systemd unit.

Every file the checks read comes from one :class:`Paths` (real defaults), so a test
provokes each fault in a throwaway tree. Nothing here changes the machine: the only
device the doctor opens is a serial PN532, and only when no running agent holds it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from agent.config import AgentConfig, ConfigError, load_config
from drivers.nfc import devices
from drivers.nfc.base import ReaderOpenError
from drivers.nfc.reader import (
    UDEV_HINT,
    check_path,
    missing_port_advice,
    open_serial_pn532,
    serial_port_node,
    usb_reader_nodes,
    usb_readers_held_by_kernel,
)
from sync.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, ClockResponse

# --- thresholds and names ----------------------------------------------------------------

SERVICE_USER = "nyckelfri"  # the unit's User=, owner of the USB reader nodes' group
UNIT_NAME = "nyckelfri-agent.service"
# The shipped unit adds these groups (SupplementaryGroups=) even when /etc/group does not.
UNIT_SUPPLEMENTARY_GROUPS = ("dialout",)
# Each HTTP call to the centre; a centre that needs longer is as good as down for a tap.
HTTP_TIMEOUT_S = 5.0
# Beyond this the agent's wall clock and the centre's disagree by more than a visit's
# resolution matters (staff times are read to the minute).
CLOCK_MAX_OFFSET_S = 60.0
# Free space for the data dir: warn early, fail when SQLite (WAL, journal) and the
# journal of the system itself are about to run out.
DISK_WARN_FREE_FRACTION = 0.10
DISK_WARN_FREE_BYTES = 1024**3
DISK_FAIL_FREE_BYTES = 100 * 1024**2
# Outbox: more than one push batch waiting, or an event waiting longer than an hour,
# means sync is not getting through (it runs every minute, backing off to ten).
OUTBOX_WARN_PENDING = 500
OUTBOX_WARN_AGE_S = 3600.0
# A `timedatectl show` that takes longer than this is not going to answer.
TIMEDATECTL_TIMEOUT_S = 5.0
GETTY_PROGRAMS = ("agetty", "getty")


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but look at it; does not fail the doctor
    FAIL = "fail"  # stands between this machine and a registered tap
    SKIP = "skip"  # does not apply here (no such reader configured, ...)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {**asdict(self), "status": str(self.status)}


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def _skip(name: str, detail: str) -> Check:
    return Check(name, Status.SKIP, detail)


@dataclass(frozen=True)
class Paths:
    """Everything the checks read. Defaults are the real machine's."""

    sysfs_usb: Path = Path("/sys/bus/usb/devices")
    bluetooth: Path = Path("/sys/class/bluetooth")
    proc: Path = Path("/proc")  # processes: bluetoothd, gettys
    proc_cmdline: Path = Path("/proc/cmdline")  # console= on the kernel command line
    dev: Path = Path("/dev")
    udev_rules: Path = Path("/etc/udev/rules.d")
    modprobe_d: Path = Path("/etc/modprobe.d")
    timesync: Path = Path("/run/systemd/timesync")  # systemd-timesyncd's state
    # systemd's unit folders: serial-getty@ wants, and the installed agent unit
    systemd_dirs: tuple[Path, ...] = (Path("/etc/systemd/system"),
                                      Path("/run/systemd/generator"))
    unit_file: Path = Path("/etc/systemd/system") / UNIT_NAME
    agent_env: Path = Path("/etc/nyckelfri/agent.env")  # the unit's EnvironmentFile=
    dbus_system_socket: Path = Path("/run/dbus/system_bus_socket")
    timedatectl: str = "timedatectl"  # looked up on PATH


# --- configuration -----------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a systemd EnvironmentFile (comments, quotes)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def unit_data_dir(unit_file: Path) -> Path | None:
    """The ``--data-dir`` of the installed unit's ExecStart, if it names one."""
    try:
        text = unit_file.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^ExecStart=.*--data-dir[= ](\S+)", text, re.MULTILINE)
    return Path(match.group(1)) if match else None


def load_doctor_config(paths: Paths, *, data_dir: Path | None, config_file: Path | None,
                       env: Mapping[str, str] | None = None) -> tuple[Check, AgentConfig]:
    """The agent's configuration as the service sees it: the unit's agent.env and data dir."""
    env = dict(os.environ if env is None else env)
    file_env = read_env_file(paths.agent_env)
    merged = {**file_env, **env}  # the caller's environment wins, as for `agent run`
    if data_dir is None and "NYCKELFRI_DATA_DIR" not in merged:
        data_dir = unit_data_dir(paths.unit_file)
    sources = [str(paths.agent_env)] if file_env else []
    try:
        config = load_config(config_file=config_file, overrides={"data_dir": data_dir},
                             env=merged)
    except ConfigError as exc:
        fallback = AgentConfig() if data_dir is None else replace(AgentConfig(),
                                                                  data_dir=data_dir)
        return Check("config", Status.FAIL, str(exc),
                     "Fix the setting named (agent.toml, /etc/nyckelfri/agent.env or the "
                     "NYCKELFRI_* environment); agent/config.py lists every setting"), fallback
    toml = config_file or (config.data_dir / "agent.toml")
    if toml.is_file():
        sources.insert(0, str(toml))
    readers = ", ".join(config.readers) or "usb (default)"
    origin = ", ".join(sources) or "defaults and environment"
    return _ok("config", f"data dir {config.data_dir}; readers {readers}; from {origin}"), config


def configured_readers(config: AgentConfig) -> tuple[str, ...]:
    """The reader paths `nyckelfri agent run` would open (its default: usb)."""
    return config.readers or ("usb",)


# --- USB readers -------------------------------------------------------------------------


def _usb_nodes(path: str, paths: Paths) -> list[tuple[str, int, int, Path]]:
    """The supported readers plugged in that ``path`` (usb, usb:VID:PID, usb:BUS:DEV) names."""
    found = usb_reader_nodes(paths.sysfs_usb, str(paths.dev / "bus" / "usb"))
    parts = path.split(":")
    if len(parts) >= 2 and re.fullmatch(r"[0-9a-fA-F]{4}", parts[1]):
        vid = int(parts[1], 16)
        pid = int(parts[2], 16) if len(parts) > 2 and parts[2] else None
        return [r for r in found if r[1] == vid and (pid is None or r[2] == pid)]
    if len(parts) >= 2 and re.fullmatch(r"\d{3}", parts[1]):
        tail = "/".join(parts[1:3])
        return [r for r in found if str(r[3]).endswith(tail)]
    return found


def check_usb_reader(path: str, paths: Paths) -> Check:
    name = f"reader {path}"
    nodes = _usb_nodes(path, paths)
    if not nodes:
        return Check(name, Status.FAIL, f"no supported USB reader for {path} is plugged in",
                     "Plug in a supported reader (Sony RC-S380 recommended); `lsusb` lists "
                     "what is connected, udev/README.md the supported vendor:product ids")
    listed = ", ".join(f"{rname} ({vid:04x}:{pid:04x}) at {node}"
                       for rname, vid, pid, node in nodes)
    return _ok(name, listed)


def check_kernel_drivers(paths: Paths, *, agent_running: bool) -> Check:
    """A supported reader whose interface Linux's NFC stack (or usbfs) has claimed."""
    name = "kernel drivers"
    held = usb_readers_held_by_kernel(paths.sysfs_usb)
    nfc_modules = set(devices.blacklisted_modules())
    kernel = [(r, d) for r, d in held if d in nfc_modules]
    if kernel:
        names = ", ".join(f"{r} by {d}" for r, d in kernel)
        blacklist = paths.modprobe_d / devices.MODPROBE_BLACKLIST_NAME
        steps = [] if blacklist.is_file() else [
            "Install the blacklist: sudo nyckelfri agent install"]
        steps.append("unload the loaded ones: sudo rmmod "
                     + " ".join(devices.blacklisted_modules()))
        steps.append(f"re-plug the reader; {UDEV_HINT} section 2")
        fix = "; ".join(steps)
        return Check(name, Status.FAIL, f"reader held by a kernel NFC driver: {names}",
                     fix[:1].upper() + fix[1:])
    user = [r for r, d in held if d == "usbfs"]
    if user and not agent_running:
        return Check(name, Status.WARN,
                     f"{', '.join(user)} claimed through usbfs by a program in user space",
                     "Another program has the reader: for an ACR122U that is pcscd (sudo "
                     "systemctl disable --now pcscd.socket pcscd.service); or another nfcpy")
    return _ok(name, "no supported reader is held by pn533_usb, port100 or another driver")


def libusb_candidates() -> tuple[str, ...]:
    """Where libusb1 (``usb1``) looks for libusb-1.0 on Linux, in its order."""
    import usb1

    here = os.path.dirname(usb1.__file__)
    return (os.path.join(here, "libusb-1.0.so.0"), os.path.join(here, "libusb-1.0.so"),
            "libusb-1.0.so.0", "libusb-1.0.so")


def check_libusb(candidates: Sequence[str] | None = None,
                 find_name: str | None = "usb-1.0") -> Check:
    """Load libusb-1.0 the way usb1 does (its file names, then ctypes' search)."""
    names = list(libusb_candidates() if candidates is None else candidates)
    if find_name is not None:
        found = ctypes.util.find_library(find_name)
        if found:
            names.append(found)
    for lib in names:
        try:
            ctypes.CDLL(lib)
        except OSError:
            continue
        return _ok("libusb", f"libusb-1.0 loads ({lib})")
    return Check("libusb", Status.FAIL,
                 f"the libusb-1.0 system library is missing (tried {', '.join(names)}); "
                 "nfcpy cannot open any USB reader without it",
                 "sudo apt install libusb-1.0-0")


# --- permissions -------------------------------------------------------------------------


@dataclass(frozen=True)
class UserIds:
    name: str
    uid: int
    gids: frozenset[int]

    def group_names(self) -> str:
        names = []
        for gid in sorted(self.gids):
            try:
                names.append(grp.getgrgid(gid).gr_name)
            except KeyError:
                names.append(str(gid))
        return ", ".join(names)


def user_ids(name: str) -> UserIds | None:
    """The user's uid and every group it is in (primary and /etc/group), via pwd/grp."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return UserIds(name, entry.pw_uid, frozenset(gids))


def grants_rw(st: os.stat_result, user: UserIds) -> bool:
    """Whether the node's mode, owner and group let ``user`` read and write it.

    Computed, not tried: the doctor usually runs as root, for whom os.access says yes.
    The class that applies is the first that matches (owner, else group, else other).
    """
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        need = stat.S_IRUSR | stat.S_IWUSR
    elif st.st_gid in user.gids:
        need = stat.S_IRGRP | stat.S_IWGRP
    else:
        need = stat.S_IROTH | stat.S_IWOTH
    return st.st_mode & need == need


def _describe(node: Path, st: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{node} is {stat.filemode(st.st_mode)} {owner}:{group}"


def check_udev_rules(paths: Paths, *, usb_configured: bool) -> Check:
    name = "udev rules"
    installed = paths.udev_rules / devices.UDEV_RULES_NAME
    install = "sudo nyckelfri agent install (writes the rules and reloads udev)"
    try:
        text = installed.read_text(encoding="utf-8")
    except OSError:
        status = Status.FAIL if usb_configured else Status.WARN
        why = ("USB reader nodes stay root-only without it" if usb_configured else
               "serial ports keep their distribution defaults")
        return Check(name, status, f"{installed} is missing: {why}", install)
    if text != devices.render_udev_rules():
        return Check(name, Status.WARN, f"{installed} differs from this version's rules",
                     install)
    return _ok(name, f"{installed} is installed and current")


def check_service_user(user_name: str) -> tuple[Check, UserIds | None]:
    name = "service user"
    user = user_ids(user_name)
    if user is None:
        return Check(name, Status.FAIL, f"no user {user_name!r}: the unit runs the agent as it",
                     "sudo nyckelfri agent install (makes the user, the rules and the unit)"
                     ), None
    return _ok(name, f"{user_name} (uid {user.uid}) is in {user.group_names()}"), user


def check_node_access(name: str, node: Path, user: UserIds, *, serial: bool) -> Check:
    try:
        st = node.stat()
    except OSError as exc:
        return Check(name, Status.FAIL, f"{node}: {exc.strerror}",
                     "Run on the host with /dev/bus/usb (in a container: pass the USB bus "
                     "through; in the unit keep PrivateDevices= off)")
    described = _describe(node, st)
    if grants_rw(st, user):
        return _ok(name, f"{described}: {user.name} may read and write it")
    denied = f"{described}: {user.name} (groups {user.group_names()}) may not read and write it"
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = ""
    if serial and group in UNIT_SUPPLEMENTARY_GROUPS and st.st_mode & stat.S_IRWXG >= 0o60:
        return Check(name, Status.WARN,
                     f"{denied}; the unit adds {group} (SupplementaryGroups=), so the "
                     "service can, but `sudo -u nyckelfri python -m nfc` cannot",
                     f"sudo usermod -aG {group} {user.name}")
    if serial and group == "tty":
        fix = ("A console or getty has the port (group tty): see the serial console check; "
               f"after disabling it the udev rule gives it to dialout; {UDEV_HINT}")
    elif serial:
        fix = (f"Install the udev rule (it gives the port to dialout, mode 0660) and "
               f"sudo usermod -aG dialout {user.name}; {UDEV_HINT}")
    else:
        fix = ("Install the udev rule (group nyckelfri, mode 0660), then sudo udevadm "
               "control --reload && sudo udevadm trigger and re-plug the reader; "
               f"{UDEV_HINT} section 2")
    return Check(name, Status.FAIL, denied, fix)


# --- serial ports ------------------------------------------------------------------------


def check_serial_port(path: str, paths: Paths) -> tuple[Check, Path | None]:
    name = f"serial port {path}"
    node = serial_port_node(path, paths.dev)
    if node is None:
        return _skip(name, "nfcpy tries every port of that kind"), None
    if not node.exists():
        return Check(name, Status.FAIL, f"no such serial port {node}",
                     missing_port_advice(node)), None
    real = node.resolve()
    shown = f"{node} -> {real}" if real != node else str(node)
    return _ok(name, f"{shown} exists"), node


def _tty_name(name: str, dev: Path) -> str:
    """``serial0`` -> the ttyXXX it links to (in ``dev``); other names unchanged."""
    link = dev / name
    if link.is_symlink():
        return os.path.basename(os.readlink(link))
    return name


def kernel_consoles(paths: Paths) -> list[str]:
    """The tty names of every ``console=`` on the kernel command line (serial0 resolved)."""
    try:
        words = paths.proc_cmdline.read_text().split()
    except OSError:
        return []
    names = [w.split("=", 1)[1].split(",", 1)[0] for w in words if w.startswith("console=")]
    return [_tty_name(n, paths.dev) for n in names if n]


def processes(proc: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(pid, comm, argv) of every process under ``proc``; vanished ones are skipped."""
    try:
        entries = list(proc.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            argv = [a.decode(errors="replace")
                    for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        yield int(entry.name), comm, argv


def _getty_units(tty: str, paths: Paths) -> list[Path]:
    units = []
    for base in paths.systemd_dirs:
        wants = base / "getty.target.wants"
        if not wants.is_dir():
            continue
        for unit in wants.glob("serial-getty@*.service"):
            target = unit.name.removeprefix("serial-getty@").removesuffix(".service")
            if _tty_name(target, paths.dev) == tty:
                units.append(unit)
    return units


def check_serial_console(path: str, node: Path, paths: Paths) -> Check:
    """The kernel console, an enabled serial-getty@ or a running getty on the reader's port."""
    name = f"serial console {path}"
    tty = node.resolve().name if node.is_symlink() else node.name
    found = []
    if tty in kernel_consoles(paths):
        found.append(f"console={tty} on the kernel command line ({paths.proc_cmdline})")
    found += [f"{unit} is enabled" for unit in _getty_units(tty, paths)]
    for pid, comm, argv in processes(paths.proc):
        if comm in GETTY_PROGRAMS and any(a in (tty, f"/dev/{tty}") for a in argv[1:]):
            found.append(f"{comm} (pid {pid}) runs on it")
    if not found:
        return _ok(name, f"no console or getty uses {tty}")
    return Check(name, Status.FAIL, f"{tty} is a login console: {'; '.join(found)}",
                 "sudo raspi-config: Interface Options, Serial Port, login shell No, hardware "
                 "Yes; or remove console=serial0,115200 from /boot/firmware/cmdline.txt and "
                 f"sudo systemctl disable --now serial-getty@{tty}.service; reboot")


def check_pn532(path: str, node: Path, running: Mapping[str, Any] | None) -> Check:
    """Open nfcpy's PN532 driver on the port (unless the running agent holds it)."""
    name = f"pn532 {path}"
    state = (running or {}).get("readers", {}).get(path)
    if state is not None:
        pid = (running or {}).get("pid")
        if state.get("state") == "open":
            return _ok(name, f"the running agent (pid {pid}) has it open: {state.get('detail')}")
        return Check(name, Status.FAIL,
                     f"the running agent (pid {pid}) reports it {state.get('state')}: "
                     f"{state.get('detail')}",
                     "Fix what it says; the agent reopens the reader by itself")
    try:
        clf = open_serial_pn532(str(node), path)
    except ReaderOpenError as exc:
        return Check(name, Status.FAIL, exc.reason, exc.advice)
    try:
        return _ok(name, f"answers: {clf.device}")
    finally:
        clf.close()


# --- Bluetooth ---------------------------------------------------------------------------


def _bluetooth_severity(config: AgentConfig) -> Status:
    # Only the fitters' `nyckelfri lock` commands need Bluetooth; visits do not.
    return Status.FAIL if config.fitter else Status.WARN


def check_bluetooth_adapter(config: AgentConfig, paths: Paths) -> Check:
    name = "bluetooth adapter"
    if config.ble_backend != "bleak":
        return _skip(name, f"ble_backend is {config.ble_backend!r} (simulated locks)")
    adapters = sorted(p.name for p in paths.bluetooth.glob("hci*")) if paths.bluetooth.is_dir(
    ) else []
    if adapters:
        return _ok(name, ", ".join(adapters))
    return Check(name, _bluetooth_severity(config),
                 f"no Bluetooth adapter in {paths.bluetooth}: `nyckelfri lock` cannot work",
                 "On a Pi 3/4/Zero W do not use dtoverlay=disable-bt (use miniuart-bt to keep "
                 "Bluetooth beside a PN532 on ttyAMA0) and keep hciuart enabled; check "
                 "`rfkill list`; or plug in a USB Bluetooth adapter")


def check_bluetoothd(config: AgentConfig, paths: Paths) -> Check:
    name = "bluetoothd"
    if config.ble_backend != "bleak":
        return _skip(name, f"ble_backend is {config.ble_backend!r} (simulated locks)")
    severity = _bluetooth_severity(config)
    if not paths.dbus_system_socket.exists():
        return Check(name, severity, f"no system D-Bus ({paths.dbus_system_socket}): bleak "
                     "talks to BlueZ over it", "sudo apt install dbus; reboot")
    pids = [pid for pid, comm, _argv in processes(paths.proc) if comm == "bluetoothd"]
    if not pids:
        return Check(name, severity, "bluetoothd (BlueZ) is not running",
                     "sudo apt install bluez && sudo systemctl enable --now bluetooth; "
                     "`journalctl -u bluetooth` says why it stopped")
    return _ok(name, f"running (pid {pids[0]})")


# --- the centre and the clock ------------------------------------------------------------


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and body.get("detail"):
        advice = f" ({body['advice']})" if body.get("advice") else ""
        return f"HTTP {response.status_code}: {body['detail']}{advice}"
    return f"HTTP {response.status_code}"


def check_centre(config: AgentConfig, *, transport: httpx.BaseTransport | None = None,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[Check]:
    """The centre answers GET /v1/clock, accepts the token, and agrees on the time."""
    names = ("centre", "token", "clock offset")
    if not config.centre_url:
        why = "no centre configured (centre_url): the agent keeps everything offline"
        return [_skip(n, why) for n in names]
    headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION), "User-Agent": "nyckelfri-doctor",
               "Accept": "application/json"}
    with httpx.Client(base_url=config.centre_url, timeout=HTTP_TIMEOUT_S, headers=headers,
                      transport=transport, follow_redirects=False) as http:
        centre, clock = _check_clock(config.centre_url, http, wall)
        if centre.status is Status.FAIL:
            return [centre, _skip("token", "the centre did not answer"), clock]
        return [centre, _check_token(config, http), clock]


def _check_clock(url: str, http: httpx.Client, wall: Callable[[], datetime],
                 ) -> tuple[Check, Check]:
    unanswered = _skip("clock offset", "the centre did not answer")
    before = wall()
    try:
        response = http.get("/v1/clock")
    except httpx.HTTPError as exc:
        return Check("centre", Status.FAIL, f"cannot reach {url}: {exc or type(exc).__name__}",
                     "Check the network and centre_url, and that the centre runs "
                     f"(curl {url}/v1/clock)"), unanswered
    after = wall()
    if response.status_code != 200:
        return Check("centre", Status.FAIL, f"{url}/v1/clock answered {_problem(response)}",
                     "Check centre_url (the centre's base URL, no path); an HTTP 426 means "
                     "agent and centre speak different protocol versions: upgrade"), unanswered
    try:
        server_time = ClockResponse.model_validate_json(response.content).server_time
    except ValueError as exc:
        return Check("centre", Status.FAIL, f"{url}/v1/clock is not a nyckelfri centre's "
                     f"clock ({type(exc).__name__})", "Check centre_url"), unanswered
    offset = (server_time - (before + (after - before) / 2)).total_seconds()
    centre = _ok("centre", f"{url} answers (round trip "
                 f"{(after - before).total_seconds() * 1000:.0f} ms)")
    if abs(offset) > CLOCK_MAX_OFFSET_S:
        return centre, Check("clock offset", Status.FAIL,
                             f"this clock is {-offset:+.0f} s off the centre's "
                             f"(more than {CLOCK_MAX_OFFSET_S:g} s)",
                             "Get NTP working (see the clock sync check: timedatectl "
                             "timesync-status); events keep both times, but visits are read "
                             "in wall-clock time")
    return centre, _ok("clock offset", f"{-offset:+.1f} s from the centre's clock")


def _check_token(config: AgentConfig, http: httpx.Client) -> Check:
    try:
        token = config.sync_token()
    except ConfigError as exc:
        return Check("token", Status.FAIL, str(exc),
                     "Put the token from `nyckelfri-central device add NAME` in token_file")
    try:
        response = http.get("/v1/reference", params={"limit": 1},
                            headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return Check("token", Status.FAIL, f"GET /v1/reference failed: {exc}",
                     "Check the network; try again")
    if response.status_code == 200:
        return _ok("token", f"accepted for device {config.device_id}")
    fix = ("Ask the centre's administrator for this device's token (nyckelfri-central "
           "device add NAME, or a new one if it was revoked) and put it in token_file")
    return Check("token", Status.FAIL, f"the centre refuses it: {_problem(response)}", fix)


def check_clock_sync(paths: Paths) -> Check:
    """systemd-timesyncd's flag file, else `timedatectl show -p NTPSynchronized`."""
    name = "clock sync"
    fix = ("Check the network and NTP: timedatectl timesync-status (or chronyc tracking); "
           "until then events are marked clock not synchronised and the centre corrects them")
    if paths.timesync.is_dir():
        if (paths.timesync / "synchronized").exists():
            return _ok(name, "systemd-timesyncd has synchronised the clock")
        return Check(name, Status.WARN, "systemd-timesyncd has not synchronised the clock",
                     fix)
    exe = shutil.which(paths.timedatectl)
    if exe is None:
        return _skip(name, f"neither {paths.timesync} nor timedatectl is there to ask")
    try:
        result = subprocess.run([exe, "show", "-p", "NTPSynchronized", "--value"],
                                capture_output=True, text=True, check=False,
                                timeout=TIMEDATECTL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _skip(name, f"timedatectl did not answer ({exc})")
    answer = result.stdout.strip()
    if result.returncode != 0 or answer not in ("yes", "no"):
        why = " ".join((result.stderr or answer).split())  # one line
        return _skip(name, f"timedatectl cannot tell ({why})")
    if answer == "yes":
        return _ok(name, "timedatectl: NTPSynchronized=yes")
    return Check(name, Status.WARN, "timedatectl: NTPSynchronized=no", fix)


# --- the data dir ------------------------------------------------------------------------


def check_disk(data_dir: Path, *, warn_fraction: float = DISK_WARN_FREE_FRACTION,
               warn_bytes: int = DISK_WARN_FREE_BYTES,
               fail_bytes: int = DISK_FAIL_FREE_BYTES) -> Check:
    name = "disk"
    where = data_dir
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    free_mib = usage.free / 1024**2
    detail = (f"{free_mib:,.0f} MiB free of {usage.total / 1024**2:,.0f} MiB "
              f"({usage.free / usage.total:.0%}) for {data_dir}")
    fix = ("Free space: sudo journalctl --vacuum-size=100M, sudo apt clean; a larger SD card "
           "if it keeps filling")
    if usage.free < fail_bytes:
        return Check(name, Status.FAIL, f"{detail}: the store cannot grow safely", fix)
    if usage.free < warn_bytes or usage.free < warn_fraction * usage.total:
        return Check(name, Status.WARN, f"{detail}: nearly full", fix)
    return _ok(name, detail)


def check_outbox(config: AgentConfig, *, now: datetime | None = None,
                 warn_pending: int = OUTBOX_WARN_PENDING,
                 warn_age_s: float = OUTBOX_WARN_AGE_S) -> Check:
    """Events waiting for the centre: how many, and how old the oldest is."""
    from agent.store import DB_NAME, Store, StoreError

    name = "outbox"
    if not (config.data_dir / DB_NAME).is_file():
        return _skip(name, f"no store in {config.data_dir} yet (nothing recorded)")
    try:
        # Closed at once: SQLite removes the -wal/-shm files it made on the last close.
        with Store.in_dir(config.data_dir, device_id=config.device_id) as store:
            counts = store.outbox_counts()
            oldest = store.pending_events(limit=1)
    except StoreError as exc:
        return Check(name, Status.FAIL, str(exc), "Move the store aside (see the message)")
    pending = counts["pending"]
    if not pending:
        return _ok(name, f"nothing waiting ({counts['sent']} sent)")
    age_s = ((now or datetime.now(UTC)) - datetime.fromisoformat(oldest[0].created_at)
             ).total_seconds()
    detail = f"{pending} event(s) waiting, the oldest for {_duration(age_s)}"
    if pending <= warn_pending and age_s <= warn_age_s:
        return _ok(name, detail)
    fix = ("Configure centre_url and token_file: events stay buffered until then"
           if not config.sync_configured else
           "See the centre and token checks; `nyckelfri sync` shows the centre's answer")
    return Check(name, Status.WARN, f"{detail}: sync is not getting through", fix)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def check_service_unit(paths: Paths) -> Check:
    """An installed unit from before the fix that passed --reader (and overrode agent.toml)."""
    name = "service unit"
    try:
        text = paths.unit_file.read_text(encoding="utf-8")
    except OSError:
        return _skip(name, f"{paths.unit_file} is not installed")
    stale = []
    if re.search(r"^ExecStart=.*--reader", text, re.MULTILINE):
        stale.append("ExecStart passes --reader (one reader only; overrides agent.toml)")
    if re.search(r"^Environment=.*NYCKELFRI_READER=", text, re.MULTILINE):
        stale.append("Environment= sets NYCKELFRI_READER (overrides agent.toml's readers)")
    if stale:
        return Check(name, Status.WARN, f"{paths.unit_file} is an old version: "
                     + "; ".join(stale),
                     "sudo nyckelfri agent install && sudo systemctl restart nyckelfri-agent")
    return _ok(name, f"{paths.unit_file} is installed")


def check_agent(running: Mapping[str, Any] | None, config: AgentConfig) -> Check:
    if running is None:
        return Check("agent", Status.WARN, f"no agent runs on {config.data_dir}",
                     "sudo systemctl enable --now nyckelfri-agent (journalctl -u "
                     "nyckelfri-agent -f shows it); or pass the agent's --data-dir")
    readers = ", ".join(f"{p} {s.get('state')}" for p, s in running.get("readers", {}).items())
    return _ok("agent", f"running (pid {running.get('pid')}); readers: {readers or 'none'}")


# --- all of it ---------------------------------------------------------------------------


def reader_checks(config: AgentConfig, paths: Paths, *, service_user: str,
                  running: Mapping[str, Any] | None) -> list[Check]:
    """Every check about the configured readers, in the order a person fixes them."""
    readers = configured_readers(config)
    checks: list[Check] = []
    kinds = {}
    for path in readers:
        try:
            kinds[path] = check_path(path)
        except ReaderOpenError as exc:
            checks.append(Check(f"reader {path}", Status.FAIL, exc.reason, exc.advice))
    usb = [p for p, k in kinds.items() if k == "usb"]
    serial = [p for p, k in kinds.items() if k in ("tty", "serial")]
    checks += [_skip(f"reader {p}", "simulated reader (nfcpy's udp driver)")
               for p, k in kinds.items() if k == "udp"]
    if not (usb or serial):
        return checks
    if usb:
        checks += [check_usb_reader(p, paths) for p in usb]
        checks.append(check_kernel_drivers(paths, agent_running=running is not None))
        checks.append(check_libusb())
    checks.append(check_udev_rules(paths, usb_configured=bool(usb)))
    user_check, user = check_service_user(service_user)
    checks.append(user_check)
    for path in usb:
        for _name, _vid, _pid, node in _usb_nodes(path, paths):
            checks.append(_access(f"access {path}", node, user, serial=False))
    for path in serial:
        port, port_node = check_serial_port(path, paths)
        checks.append(port)
        if port_node is None:
            continue
        checks.append(_access(f"access {path}", port_node, user, serial=True))
        checks.append(check_serial_console(path, port_node, paths))
        if path.endswith(":pn532"):
            checks.append(check_pn532(path, port_node, running))
    return checks


def _access(name: str, node: Path, user: UserIds | None, *, serial: bool) -> Check:
    if user is None:
        return _skip(name, "no service user to check for")
    return check_node_access(name, node, user, serial=serial)


def run_checks(paths: Paths | None = None, *, data_dir: Path | None = None,
               config_file: Path | None = None, service_user: str = SERVICE_USER,
               env: Mapping[str, str] | None = None,
               transport: httpx.BaseTransport | None = None) -> list[Check]:
    """Every check, in order. ``transport`` is for tests of the centre checks."""
    from agent.service import running_agent

    paths = paths or Paths()
    config_check, config = load_doctor_config(paths, data_dir=data_dir,
                                              config_file=config_file, env=env)
    running = running_agent(config.data_dir)
    checks = [config_check, check_agent(running, config), check_service_unit(paths)]
    checks += reader_checks(config, paths, service_user=service_user, running=running)
    checks += [check_bluetooth_adapter(config, paths), check_bluetoothd(config, paths)]
    checks += check_centre(config, transport=transport)
    checks += [check_clock_sync(paths), check_disk(config.data_dir), check_outbox(config)]
    return checks


def failed(checks: Sequence[Check]) -> bool:
    return any(c.status is Status.FAIL for c in checks)


def render(checks: Sequence[Check]) -> str:
    """One line per check, the fix under each fault, and a count."""
    lines = []
    for check in checks:
        lines.append(f"{check.status.upper():<4}  {check.name}: {check.detail}")
        if check.fix and check.status in (Status.FAIL, Status.WARN):
            lines.append(f"      fix: {check.fix}")
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    lines.append(f"{counts[Status.FAIL]} failed, {counts[Status.WARN]} warning(s), "
                 f"{counts[Status.OK]} ok, {counts[Status.SKIP]} skipped")
    return "\n".join(lines)


# --- the command -------------------------------------------------------------------------


def make_doctor_command(paths: Paths | None = None) -> click.Command:
    """The ``doctor`` command over ``paths`` (tests pass a throwaway tree)."""
    checked = paths or Paths()

    @click.command("doctor")
    @click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="The agent's data dir (default: the installed unit's --data-dir, "
                       "else as for `nyckelfri agent`).")
    @click.option("--config", "config_file",
                  type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="TOML configuration file (default: DATA_DIR/agent.toml).")
    @click.option("--service-user", default=SERVICE_USER, show_default=True,
                  help="The user the agent runs as, whose access to the readers is checked.")
    @click.option("--json", "as_json", is_flag=True, help="Print the checks as a JSON list.")
    @click.pass_context
    def doctor(ctx: click.Context, data_dir: Path | None, config_file: Path | None,
               service_user: str, as_json: bool) -> None:
        """Check this machine from NFC reader to centre; name each fault and its fix.

        Reads the agent's configuration as the service sees it (agent.toml, the
        unit's /etc/nyckelfri/agent.env). Run it with sudo to see every device.

        Exit code 0 when no check failed, 1 when any check failed. Warnings
        (WARN) and skipped checks (SKIP) do not fail.
        """
        checks = run_checks(checked, data_dir=data_dir, config_file=config_file,
                            service_user=service_user)
        if as_json:
            click.echo(json.dumps([c.as_dict() for c in checks], ensure_ascii=False))
        else:
            click.echo(render(checks))
        ctx.exit(1 if failed(checks) else 0)

    return doctor


doctor_command = make_doctor_command()
