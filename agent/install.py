"""``nyckelfri agent install``: make this machine a field agent in one command (as root).

What it does, each step only when needed (running it twice changes nothing the second
time; ``--uninstall`` undoes it):

1. the system group and user ``nyckelfri`` (home /var/lib/nyckelfri, no login shell),
   the user also in ``dialout`` (serial readers) and, when it exists, ``bluetooth``;
2. the udev rules giving the supported readers to that group, and the modprobe
   blacklist keeping the kernel's NFC drivers (pn533_usb, port100, ...) off them; the
   rules are reloaded and those modules unloaded when loaded;
3. /etc/nyckelfri (agent.env lives there) and the state directory;
4. the systemd unit ``nyckelfri-agent.service`` with this installation's ``nyckelfri``
   executable, enabled (started by ``systemctl start`` once enrolled).

``--root DIR`` writes the files under DIR and runs no command (the commands it would run
are listed): for a throwaway root in tests, or to inspect. ``--dry-run`` changes nothing.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from drivers.nfc.devices import (
    DEFAULT_GROUP,
    MODPROBE_BLACKLIST_NAME,
    SERIAL_GROUP,
    UDEV_RULES_NAME,
    blacklisted_modules,
    render_modprobe_blacklist,
    render_udev_rules,
)

USER = DEFAULT_GROUP
UNIT_NAME = "nyckelfri-agent.service"
STATE_DIR = Path("/var/lib/nyckelfri")
CONFIG_DIR = Path("/etc/nyckelfri")
UDEV_DIR = Path("/etc/udev/rules.d")
MODPROBE_DIR = Path("/etc/modprobe.d")
SYSTEMD_DIR = Path("/etc/systemd/system")
# The executable the unit template names; replaced by this installation's.
TEMPLATE_EXECUTABLE = "/usr/local/bin/nyckelfri"
OPTIONAL_GROUPS = ("bluetooth",)  # BlueZ's D-Bus policy lets this group use the adapter


class InstallError(Exception):
    """The installation cannot go on; the message says what to do."""


def unit_template() -> str:
    """The unit as shipped (agent/nyckelfri-agent.service; udev/ has the same text)."""
    return (resources.files("agent") / UNIT_NAME).read_text(encoding="utf-8")


def render_unit(executable: str) -> str:
    return unit_template().replace(TEMPLATE_EXECUTABLE, executable)


def this_executable() -> str:
    """The ``nyckelfri`` of this installation (its venv's, or the one on PATH)."""
    beside = Path(sys.executable).with_name("nyckelfri")
    if beside.is_file():
        return str(beside)
    found = shutil.which("nyckelfri")
    if found is None:
        raise InstallError("cannot find the nyckelfri executable of this installation; run "
                           "the installer as the installed 'nyckelfri agent install'")
    return found


@dataclass
class Step:
    what: str
    done: bool  # False: it was already so (or, with --root / --dry-run, only planned)
    command: tuple[str, ...] = ()


@dataclass
class Plan:
    root: Path | None
    dry_run: bool
    steps: list[Step] = field(default_factory=list)
    runner: Callable[[Sequence[str]], None] | None = None

    @property
    def live(self) -> bool:
        return self.root is None and not self.dry_run

    def path(self, absolute: Path) -> Path:
        return absolute if self.root is None else self.root / absolute.relative_to("/")

    def run(self, what: str, *command: str) -> None:
        if self.live:
            (self.runner or _run)(command)
        self.steps.append(Step(what, self.live, tuple(command)))

    def note(self, what: str) -> None:
        self.steps.append(Step(what, False))

    def write(self, absolute: Path, text: str, mode: int = 0o644) -> bool:
        target = self.path(absolute)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            self.note(f"{absolute} is up to date")
            return False
        if not self.dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.new")
            tmp.write_text(text, encoding="utf-8")
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        self.steps.append(Step(f"wrote {absolute}", not self.dry_run))
        return True

    def remove(self, absolute: Path) -> bool:
        target = self.path(absolute)
        if not target.exists():
            self.note(f"{absolute} is not there")
            return False
        if not self.dry_run:
            target.unlink()
        self.steps.append(Step(f"removed {absolute}", not self.dry_run))
        return True


def _run(command: Sequence[str]) -> None:
    try:
        subprocess.run(list(command), check=True, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise InstallError(f"{command[0]} is not on this machine; nyckelfri agent install "
                           "needs a systemd Linux (Raspberry Pi OS, Debian, Ubuntu)") from None
    except subprocess.CalledProcessError as exc:
        raise InstallError(f"{' '.join(command)} failed ({exc.returncode}): "
                           f"{(exc.stderr or exc.stdout).strip()}") from None


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _user_groups(name: str) -> set[str]:
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return set()
    groups = {g.gr_name for g in grp.getgrall() if name in g.gr_mem}
    groups.add(grp.getgrgid(user.pw_gid).gr_name)
    return groups


def _loaded_modules(proc_modules: Path = Path("/proc/modules")) -> list[str]:
    try:
        loaded = {line.split()[0] for line in proc_modules.read_text().splitlines() if line}
    except OSError:
        return []
    return [m for m in blacklisted_modules() if m in loaded]


def install(*, root: Path | None = None, dry_run: bool = False, executable: str | None = None,
            runner: Callable[[Sequence[str]], None] | None = None) -> Plan:
    """Install (see the module doc); returns what was done and what was already so."""
    plan = Plan(root, dry_run, runner=runner)
    if plan.live and os.geteuid() != 0:
        raise InstallError("nyckelfri agent install changes the system: run it as root "
                           "(sudo nyckelfri agent install)")
    executable = executable or this_executable()
    system_user(plan)
    udev_changed = plan.write(UDEV_DIR / UDEV_RULES_NAME, render_udev_rules())
    plan.write(MODPROBE_DIR / MODPROBE_BLACKLIST_NAME, render_modprobe_blacklist())
    if udev_changed:
        plan.run("reloaded the udev rules", "udevadm", "control", "--reload-rules")
        plan.run("applied them to plugged-in readers", "udevadm", "trigger",
                 "--subsystem-match=usb", "--subsystem-match=tty")
    loaded = _loaded_modules() if root is None else []
    if loaded:
        plan.run(f"unloaded {', '.join(loaded)}", "modprobe", "-r", *loaded)
    for folder, mode in ((CONFIG_DIR, 0o755), (STATE_DIR, 0o750)):
        target = plan.path(folder)
        if target.is_dir():
            plan.note(f"{folder} exists")
        else:
            if not dry_run:
                target.mkdir(parents=True, mode=mode)
            plan.steps.append(Step(f"made {folder}", not dry_run))
    if plan.live:
        plan.run(f"gave {STATE_DIR} to {USER}", "chown", f"{USER}:{USER}", str(STATE_DIR))
    unit_changed = plan.write(SYSTEMD_DIR / UNIT_NAME, render_unit(executable))
    if unit_changed:
        plan.run("reloaded systemd", "systemctl", "daemon-reload")
    plan.run(f"enabled {UNIT_NAME}", "systemctl", "enable", UNIT_NAME)
    return plan


def system_user(plan: Plan) -> None:
    if plan.root is not None:
        plan.note(f"system user {USER}: not made under --root")
        return
    if not _group_exists(USER):
        plan.run(f"made the system group {USER}", "groupadd", "--system", USER)
    else:
        plan.note(f"group {USER} exists")
    wanted = [SERIAL_GROUP, *(g for g in OPTIONAL_GROUPS if _group_exists(g))]
    current = _user_groups(USER)
    if not current:
        plan.run(f"made the system user {USER}", "useradd", "--system", "--gid", USER,
                 "--groups", ",".join(wanted), "--home-dir", str(STATE_DIR), "--no-create-home",
                 "--shell", "/usr/sbin/nologin", USER)
        return
    missing = [g for g in wanted if g not in current]
    if missing:
        plan.run(f"added {USER} to {', '.join(missing)}", "usermod", "--append", "--groups",
                 ",".join(missing), USER)
    else:
        plan.note(f"user {USER} exists, in {', '.join(sorted(current))}")


def uninstall(*, root: Path | None = None, dry_run: bool = False,
              runner: Callable[[Sequence[str]], None] | None = None) -> Plan:
    """Stop and remove the unit, the udev rules and the blacklist. The user, the
    settings in /etc/nyckelfri and the data (buffered events!) stay."""
    plan = Plan(root, dry_run, runner=runner)
    if plan.live and os.geteuid() != 0:
        raise InstallError("run it as root (sudo nyckelfri agent install --uninstall)")
    if plan.path(SYSTEMD_DIR / UNIT_NAME).exists():
        plan.run(f"stopped and disabled {UNIT_NAME}", "systemctl", "disable", "--now", UNIT_NAME)
    if plan.remove(SYSTEMD_DIR / UNIT_NAME):
        plan.run("reloaded systemd", "systemctl", "daemon-reload")
    if plan.remove(UDEV_DIR / UDEV_RULES_NAME):
        plan.run("reloaded the udev rules", "udevadm", "control", "--reload-rules")
    plan.remove(MODPROBE_DIR / MODPROBE_BLACKLIST_NAME)
    plan.note(f"kept: the user {USER}, {CONFIG_DIR} and {STATE_DIR} (buffered events not yet "
              f"synced live there; remove them by hand when they are no longer needed)")
    return plan
