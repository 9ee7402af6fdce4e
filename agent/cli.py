"""The ``nyckelfri`` command line: thin commands over the agent's library.

Exit codes: 0 ok, 2 usage error, 3 hardware error (reader, Bluetooth, lock), 4
refusal (a tag that was read but refused or unreadable, a lock verdict that
failed, a fitter's tick refused), 5 data or configuration error (also a
centre refusing the agent: token, enrolment, protocol version), 6 the centre
could not be reached (nothing is lost; try again later).
Tracebacks only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from agent.config import AgentConfig, ConfigError, load_config
from agent.errors import FitterError
from agent.store import ReferenceDataError, Store, StoreError
from agent.visits import Decision
from drivers.ble.errors import LockError
from drivers.nfc.base import NfcError
from sync.errors import CentreUnreachable, SyncError

EXIT_HARDWARE = 3
EXIT_REFUSED = 4
EXIT_DATA = 5
EXIT_NETWORK = 6

log = logging.getLogger(__name__)

# Packages of the optional parts (pyproject.toml's extras): a command that needs one
# says which extra to install instead of dying on an ImportError.
_EXTRA_OF = {
    **dict.fromkeys(("fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "holidays",
                     "starlette"), "central"),
    "bumble": "sim",
}


class CliError(click.ClickException):
    """A failure with advice; ``exit_code`` is the process's exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class


@contextmanager
def errors_to_exit(debug: bool) -> Iterator[None]:
    """Map the library's error roots to exit codes with their advice."""
    try:
        yield
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None or debug:
            raise
        raise CliError(f"this needs nyckelfri's {extra} part, which is not installed here "
                       f"({exc.name} is missing): pip install 'nyckelfri[{extra}]' (or "
                       "'nyckelfri[all]'); a field agent does without it", EXIT_DATA) from exc
    except (NfcError, LockError, FitterError, StoreError, ConfigError, SyncError) as exc:
        if debug:
            raise
        if isinstance(exc, NfcError | LockError):
            code = EXIT_HARDWARE
        elif isinstance(exc, FitterError):
            code = EXIT_REFUSED
        elif isinstance(exc, CentreUnreachable):
            code = EXIT_NETWORK
        else:
            code = EXIT_DATA
        raise CliError(str(exc), code) from exc


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import nfc  # noqa: F401 - importing nfc sets its logger to INFO; override after

    # nfcpy logs every swallowed IOError at error level; our reader reports what
    # matters with advice, so keep nfcpy quiet unless debugging.
    logging.getLogger("nfc").setLevel(logging.DEBUG if debug else logging.CRITICAL)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Verbose logging and full tracebacks.")
@click.version_option(package_name="nyckelfri")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """nyckelfri: keyless home care. The field agent's command line.

    Staff register visits by tapping NFC tags while a client's digital lock is
    pending or cannot be fitted; everything is buffered offline in SQLite.
    """
    ctx.obj = {"debug": debug}
    _setup_logging(debug)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj and ctx.find_root().obj.get("debug"))


data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Folder of the agent's store (default: $NYCKELFRI_DATA_DIR or "
         "~/.local/state/nyckelfri).",
)
config_option = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="TOML configuration file (default: DATA_DIR/agent.toml when present).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _config(ctx: click.Context, config_file: Path | None, **overrides: Any) -> AgentConfig:
    with errors_to_exit(_debug(ctx)):
        return load_config(config_file=config_file, overrides=overrides)


def _open_store(ctx: click.Context, config: AgentConfig) -> Store:
    with errors_to_exit(_debug(ctx)):
        return Store.in_dir(config.data_dir, device_id=config.device_id)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))


def decision_line(decision: Decision) -> str:
    at = datetime.fromisoformat(decision.at).astimezone().strftime("%H:%M:%S")
    return f"{at} {decision.feedback.upper():<10} {decision.uid} {decision.message}"


# --- agent ------------------------------------------------------------------------------


@main.group()
def agent() -> None:
    """Run the field agent and look after its store."""


@agent.command("run")
@click.option("--reader", "readers", multiple=True, metavar="PATH",
              help="Reader path, repeatable: usb, usb:VID:PID, tty:AMA0:pn532, "
                   "serial:/dev/serial0:pn532, udp:HOST:PORT. Default: from config, else usb.")
@data_dir_option
@config_option
@click.option("--device-id", default=None,
              help="This agent's name at the centre (default: hostname).")
@click.option("--personal-staff", "personal_staff_ref", default=None, metavar="STAFF_REF",
              help="The device belongs to this staff member: no badge sign-in needed.")
@click.option("--no-feedback", is_flag=True, help="No LED/buzzer feedback on the reader.")
@click.option("--require-genuine-tags", is_flag=True, default=None,
              help="Refuse tags without a valid NXP originality signature (copies).")
@json_option
@click.pass_context
def agent_run(ctx: click.Context, readers: tuple[str, ...], data_dir: Path | None,
              config_file: Path | None, device_id: str | None, personal_staff_ref: str | None,
              no_feedback: bool, require_genuine_tags: bool | None, as_json: bool) -> None:
    """Register taps until stopped (SIGTERM or Ctrl-C).

    Prints one line per registered, refused or ignored tap once it is durable.
    """
    from agent.service import AgentService

    config = _config(ctx, config_file, data_dir=data_dir, readers=readers, device_id=device_id,
                     personal_staff_ref=personal_staff_ref,
                     feedback=False if no_feedback else None,
                     require_genuine_tags=require_genuine_tags or None)
    paths = config.readers or ("usb",)

    def emit(decision: Decision) -> None:
        if as_json:
            _emit_json(decision.as_dict())
        else:
            click.echo(decision_line(decision))
        sys.stdout.flush()

    stop = threading.Event()
    with errors_to_exit(_debug(ctx)):
        service = AgentService(config, emit)
        service.build_readers(paths)
        try:
            service.open_readers()
        except NfcError:
            service.shutdown()
            raise
    _install_stop_handlers(stop)
    click.echo(f"nyckelfri agent {config.device_id}: store {service.store.path}, readers "
               f"{', '.join(paths)}; stop with Ctrl-C", err=True)
    click.echo(_sync_line(config), err=True)
    service.run_until(stop)
    click.echo("agent stopped", err=True)


def _sync_line(config: AgentConfig) -> str:
    if config.sync_configured:
        return (f"syncing with {config.centre_url} every {config.sync_interval_s:g} s and "
                "after taps")
    if config.centre_url:
        return (f"NOT syncing: centre_url is {config.centre_url} but no token is configured "
                "(token_file or token in agent.toml, NYCKELFRI_TOKEN); events stay buffered")
    return "not syncing: no centre configured (centre_url); events stay buffered"


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@agent.command("status")
@data_dir_option
@config_option
@json_option
@click.pass_context
def agent_status(ctx: click.Context, data_dir: Path | None, config_file: Path | None,
                 as_json: bool) -> None:
    """Whether the agent runs, its readers, store, outbox and open visits."""
    from agent.service import running_agent

    config = _config(ctx, config_file, data_dir=data_dir)
    with _open_store(ctx, config) as store:
        sign_in = store.current_sign_in()
        status: dict[str, Any] = {
            "device_id": config.device_id,
            "store": str(store.path),
            "schema_version": store.schema_version,
            "running": running_agent(config.data_dir),
            "outbox": {**store.outbox_counts(), "rejected": store.rejected_count()},
            "rejected_events": store.rejected_events(5),
            "reference_cursor": store.reference_cursor(),
            "centre": config.centre_url,
            "reference": store.reference_counts(),
            "open_visits": [v.__dict__ for v in store.open_visits()],
            "signed_in": dict(sign_in) if sign_in else None,
            "recent_taps": store.recent_taps(5),
        }
    if as_json:
        _emit_json(status)
        return
    running = status["running"]
    click.echo(f"agent {config.device_id}: "
               + (f"running (pid {running['pid']})" if running else "not running"))
    if running:
        for path, st in running.get("readers", {}).items():
            click.echo(f"  reader {path}: {st['state']} {st['detail']}")
    click.echo(f"store {status['store']} (schema v{status['schema_version']})")
    ob = status["outbox"]
    click.echo(f"outbox: {ob['pending']} pending, {ob['sent']} sent, "
               f"{ob['rejected']} rejected by the centre")
    for ev in status["rejected_events"]:
        click.echo(f"  rejected {ev['event_id']} {ev['kind']} ({ev['created_at'][:19]}): "
                   f"{ev['rejected_reason']}")
    sync_state = (running or {}).get("sync") or {}
    last = sync_state.get("last")
    if not config.centre_url:
        click.echo("sync: no centre configured (centre_url)")
    elif last:
        outcome = "ok" if last["ok"] else f"failed ({last['error']})"
        click.echo(f"sync: {config.centre_url}, last round {outcome} at {last['at']}")
    else:
        click.echo(f"sync: {config.centre_url}")
    ref = status["reference"]
    click.echo(f"reference: {ref['clients']} clients, {ref['tags']} tags, {ref['staff']} badges")
    click.echo(f"signed in: {sign_in['staff_ref'] if sign_in else 'nobody'}")
    click.echo(f"open visits: {len(status['open_visits'])}")
    for v in status["open_visits"]:
        click.echo(f"  {v['client_ref']} by {v['staff_ref']} since {v['arrived_at']}")


@agent.command("enrol")
@click.argument("code")
@data_dir_option
@config_option
@json_option
@click.pass_context
def agent_enrol(ctx: click.Context, code: str, data_dir: Path | None, config_file: Path | None,
                as_json: bool) -> None:
    """Join the centre with the one-time CODE from 'nyckelfri-central device add NAME'.

    Stores the device's token in DATA_DIR/token (mode 0600), writes centre_url,
    device_id and token_file into agent.toml (keeping its other settings) and pulls the
    reference data once. Exit code 5 when the centre refuses the code (used, expired,
    unknown), 6 when it cannot be reached; running it again is safe.
    """
    from agent.clock import SystemClock
    from agent.enrol import EnrolError, enrol
    from agent.service import build_sync_client

    config = _config(ctx, config_file, data_dir=data_dir)
    try:
        enrolled = enrol(code, config.data_dir, config_file=config_file)
    except EnrolError as exc:
        raise CliError(str(exc), EXIT_NETWORK if exc.unreachable else EXIT_DATA) from exc
    config = _config(ctx, enrolled.config_file, data_dir=config.data_dir)
    with (_open_store(ctx, config) as store, errors_to_exit(_debug(ctx)),
          build_sync_client(config, store, SystemClock()) as client):
        report = client.sync_once()
    summary = {"device_id": enrolled.device_id, "centre_url": enrolled.centre_url,
               "token_file": str(enrolled.token_file), "config": str(enrolled.config_file),
               "reference_items": report.reference_items, "tag_keys": report.tag_keys}
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"enrolled as {enrolled.device_id} with {enrolled.centre_url}; token in "
               f"{enrolled.token_file} (0600), settings in {enrolled.config_file}")
    click.echo(f"reference data pulled: {report.reference_items} item(s)")
    click.echo("next: start the agent ('systemctl start nyckelfri-agent' once installed with "
               "'nyckelfri agent install', or 'nyckelfri agent run --reader usb'), then tap a "
               "tag; 'nyckelfri doctor' checks reader, clock and centre")


@agent.command("install")
@click.option("--uninstall", is_flag=True,
              help="Stop and remove the unit, udev rules and blacklist (user and data stay).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the files under this folder and run no command (a throwaway root).")
@click.option("--dry-run", is_flag=True, help="Only say what would be done.")
@json_option
@click.pass_context
def agent_install(ctx: click.Context, uninstall: bool, root: Path | None, dry_run: bool,
                  as_json: bool) -> None:
    """Make this machine a field agent (as root): user, udev rules, blacklist, systemd unit.

    Idempotent: a second run changes nothing. Then: 'nyckelfri agent enrol CODE
    --data-dir /var/lib/nyckelfri' and 'systemctl start nyckelfri-agent'.
    """
    from agent.install import InstallError, install
    from agent.install import uninstall as remove

    try:
        plan = (remove(root=root, dry_run=dry_run) if uninstall
                else install(root=root, dry_run=dry_run))
    except InstallError as exc:
        raise CliError(str(exc), EXIT_DATA) from exc
    if as_json:
        _emit_json({"steps": [{"what": s.what, "done": s.done, "command": list(s.command)}
                              for s in plan.steps], "live": plan.live})
        return
    for step in plan.steps:
        mark = "done" if step.done else ("plan" if step.command and not plan.live else "  ok")
        click.echo(f"[{mark}] {step.what}" + (f"   ({' '.join(step.command)})"
                                              if step.command and not plan.live else ""))
    if not uninstall and plan.live:
        click.echo("next: nyckelfri agent enrol CODE --data-dir /var/lib/nyckelfri, then "
                   "systemctl start nyckelfri-agent; nyckelfri doctor checks the machine")


@agent.command("import-reference")
@click.argument("file", type=click.File("r"))
@data_dir_option
@config_option
@json_option
@click.pass_context
def agent_import_reference(ctx: click.Context, file: Any, data_dir: Path | None,
                           config_file: Path | None, as_json: bool) -> None:
    """Load clients, tags and staff badges from a JSON FILE ('-' for stdin).

    \b
    {"clients": [{"ref": "K-1042", "display_name": "", "lock_status": "pending"}],
     "tags":    [{"uid": "04A1B2C3D4E5F6", "client_ref": "K-1042"}],
     "staff":   [{"badge_uid": "0A0B0C0D", "staff_ref": "P-17", "display_name": "Anna"}]}

    lock_status is pending, impossible, installed or none. Until sync exists
    this is how reference data reaches the agent. A bad file changes nothing.
    """
    try:
        data = json.load(file)
    except json.JSONDecodeError as exc:
        raise CliError(f"{file.name} is not JSON: {exc}", EXIT_DATA) from exc
    config = _config(ctx, config_file, data_dir=data_dir)
    with _open_store(ctx, config) as store:
        try:
            counts = store.import_reference(data, datetime.now(UTC).isoformat())
        except ReferenceDataError as exc:
            raise CliError(f"{file.name}: {exc}; nothing was imported", EXIT_DATA) from exc
    if as_json:
        _emit_json(counts)
    else:
        click.echo(f"imported {counts['clients']} clients, {counts['tags']} tags, "
                   f"{counts['staff']} staff badges")


# --- sync -------------------------------------------------------------------------------


@main.command("sync")
@click.option("--centre", "centre_url", default=None, metavar="URL",
              help="The centre's address, e.g. https://centre.example:8700 (default: "
                   "centre_url in agent.toml or $NYCKELFRI_CENTRE_URL).")
@click.option("--token", default=None, metavar="TOKEN",
              help="Bearer token for the centre (default: token/token_file in agent.toml, "
                   "$NYCKELFRI_TOKEN). Prefer the file or the variable: a command line is "
                   "visible to other users.")
@data_dir_option
@config_option
@json_option
@click.pass_context
def sync_cmd(ctx: click.Context, centre_url: str | None, token: str | None,
             data_dir: Path | None, config_file: Path | None, as_json: bool) -> None:
    """Sync with the centre now: push the outbox, pull reference data, measure the clock.

    With ``fitter`` configured it also pulls the fitter's jobs (see ``job list``).

    Safe to run while the agent runs, and to interrupt: events are marked sent only
    once the centre holds them, and the centre keeps each event once. Exit code 6
    when the centre cannot be reached, 5 when it refuses the agent.
    """
    from agent.clock import SystemClock
    from agent.service import build_sync_client

    config = _config(ctx, config_file, data_dir=data_dir, centre_url=centre_url, token=token)
    with _open_store(ctx, config) as store, errors_to_exit(_debug(ctx)):
        if not config.centre_url:
            raise ConfigError("no centre to sync with: give --centre URL, or set centre_url "
                              "in agent.toml or NYCKELFRI_CENTRE_URL")
        # A fitter's agent (``fitter`` set) also pulls its jobs from the binder.
        jobs = store if config.fitter else None
        with build_sync_client(config, store, SystemClock(), jobs=jobs) as client, \
                _progress(store.pending_count(), client.batch_size, as_json) as progress:
            report = client.sync_once(progress)
    summary = report.as_dict()
    if as_json:
        _emit_json(summary)
    else:
        click.echo(f"pushed {summary['pushed']}, stored {summary['stored']}, rejected "
                   f"{summary['rejected']}, reference items {summary['reference_items']}, "
                   f"clock offset {report.offset_s:+.3f} s")
    if report.push.rejected:
        click.echo(f"{len(report.push.rejected)} event(s) rejected by the centre were set "
                   "aside (not sent again); see 'nyckelfri agent status'", err=True)


@contextmanager
def _progress(backlog: int, batch_size: int,
              quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr when the backlog needs more than one batch."""
    if quiet or backlog <= batch_size:
        yield None
        return
    with click.progressbar(length=backlog, label="pushing events",
                           file=sys.stderr) as bar:
        shown = 0

        def update(done: int, total: int) -> None:
            nonlocal shown
            bar.length = max(bar.length or 0, total)
            bar.update(done - shown)
            shown = done

        yield update


# --- visits -----------------------------------------------------------------------------


def _day(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "today":
        return date.today().isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not YYYY-MM-DD or 'today'") from None


@main.command("visits")
@click.option("--day", default=None, help="Only visits that started this day (YYYY-MM-DD, UTC, "
                                          "or 'today').")
@click.option("--client", "client_ref", default=None, help="Only this client's visits.")
@click.option("--staff", "staff_ref", default=None, help="Only this staff member's visits.")
@data_dir_option
@config_option
@json_option
@click.pass_context
def visits_cmd(ctx: click.Context, day: str | None, client_ref: str | None,
               staff_ref: str | None, data_dir: Path | None, config_file: Path | None,
               as_json: bool) -> None:
    """Visits registered on this agent."""
    config = _config(ctx, config_file, data_dir=data_dir)
    with _open_store(ctx, config) as store:
        rows = store.visits(day=_day(day), client_ref=client_ref, staff_ref=staff_ref)
    if as_json:
        _emit_json([v.__dict__ for v in rows])
        return
    if not rows:
        click.echo("no visits")
        return
    click.echo(f"{'client':<12} {'staff':<10} {'arrived':<20} {'departed':<20} status")
    for v in rows:
        click.echo(f"{v.client_ref:<12} {v.staff_ref:<10} {v.arrived_at[:19]:<20} "
                   f"{(v.departed_at or '-')[:19]:<20} {v.status}")


# --- tag --------------------------------------------------------------------------------


@main.group()
def tag() -> None:
    """Work with NFC tags directly."""


@tag.command("read")
@click.option("--reader", "reader_path", default="usb", show_default=True, metavar="PATH",
              help="Reader path (see 'agent run --help').")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for a tag.")
@json_option
@click.pass_context
def tag_read(ctx: click.Context, reader_path: str, timeout: float, as_json: bool) -> None:
    """Wait for one tag and print what the agent would read from it."""
    from drivers.nfc.reader import open_frontend, read_tag

    with errors_to_exit(_debug(ctx)):
        clf = open_frontend(reader_path)
    taps: list[Any] = []
    deadline = time.monotonic() + timeout

    def on_connect(t: Any) -> bool:
        taps.append(read_tag(t, reader_path, time.clock_gettime_ns(time.CLOCK_BOOTTIME)))
        return False

    try:
        clf.connect(rdwr={"on-connect": on_connect, "beep-on-connect": False},
                    terminate=lambda: bool(taps) or time.monotonic() > deadline)
    finally:
        clf.close()
    if not taps:
        raise CliError(f"no tag within {timeout:.0f} s on {reader_path}", EXIT_REFUSED)
    tap_ = taps[0]
    info = {
        "uid": tap_.uid, "product": tap_.product, "type": tap_.tag_type,
        "signature": tap_.signature,
        "ndef": [r.__dict__ for r in tap_.ndef],
        "problem": str(tap_.problem) if tap_.problem else None,
        "problem_detail": tap_.problem_detail,
    }
    if as_json:
        _emit_json(info)
    else:
        click.echo(f"uid {tap_.uid}  {tap_.product} ({tap_.tag_type})")
        for r in tap_.ndef:
            click.echo(f"  ndef {r.type}: {r.uri or r.text or r.payload_hex}")
        if tap_.problem:
            click.echo(f"  problem: {tap_.problem}: {tap_.problem_detail}")
    if tap_.problem:
        sys.exit(EXIT_REFUSED)


@tag.command("provision")
@click.option("--reader", "reader_path", default=None, metavar="PATH",
              help="Reader path (see 'agent run --help'); default: the first reader in the "
                   "config, else usb.")
@click.option("--client", "client_ref", required=True,
              help="The client reference the tag is for (the centre hands out its keys).")
@click.option("--centre", "centre_url", default=None, metavar="URL",
              help="The centre's address (default: centre_url in agent.toml or "
                   "$NYCKELFRI_CENTRE_URL).")
@click.option("--token", default=None, metavar="TOKEN",
              help="Bearer token for the centre (default: token/token_file in agent.toml, "
                   "$NYCKELFRI_TOKEN).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds to wait for a tag.")
@data_dir_option
@config_option
@json_option
@click.pass_context
def tag_provision(ctx: click.Context, reader_path: str | None, client_ref: str,
                  centre_url: str | None, token: str | None, timeout: float,
                  data_dir: Path | None, config_file: Path | None, as_json: bool) -> None:
    """Provision an NTAG 424 DNA for a client: new keys from the centre, SUN on the tag.

    Waits for one tag, asks the centre for its keys, writes the URL template, enables
    Secure Dynamic Messaging, changes the five keys, checks the URL the tag then reads
    and reports it to the centre. Re-provisioning a tag rotates its keys. Safe to rerun
    after any failure, also when the tag was pulled away mid-way. Exit 3 reader or tag
    left the field, 4 no tag / not an NTAG 424 DNA / wrong keys, 5 centre refused, 6
    centre unreachable.
    """
    from agent.provision import ProvisionCentre, TagProvisionError, provision_tag
    from drivers.nfc.provision import ProvisionError

    config = _config(ctx, config_file, data_dir=data_dir, centre_url=centre_url, token=token)
    path = reader_path or (config.readers[0] if config.readers else "usb")
    debug = _debug(ctx)
    with errors_to_exit(debug):
        if not config.centre_url:
            raise ConfigError("no centre to get the tag's keys from: give --centre URL, or "
                              "set centre_url in agent.toml or NYCKELFRI_CENTRE_URL")
        centre = ProvisionCentre(config.centre_url, config.sync_token())
    if not as_json:
        click.echo(f"hold the tag for {client_ref} to {path} ...", err=True)
    with centre, errors_to_exit(debug):
        try:
            outcome = provision_tag(path, client_ref, centre, timeout_s=timeout)
        except (TagProvisionError, ProvisionError) as exc:
            if debug:
                raise
            raise CliError(str(exc), _provision_exit_code(exc)) from exc
    if as_json:
        _emit_json(outcome.as_dict())
        return
    was = ("factory keys" if outcome.previous_key_version == 0
           else f"key version {outcome.previous_key_version}")
    click.echo(f"tag {outcome.uid} ({outcome.product}) provisioned for client "
               f"{outcome.client_ref}: key version {outcome.key_version} (was {was}), SUN "
               f"counter {outcome.counter}; the centre confirmed (counter "
               f"{outcome.centre_counter})")
    click.echo(f"  {outcome.sun_url}")


def _provision_exit_code(exc: Exception) -> int:
    """Interrupted: the reader/tag (3); the centre did not confirm: 6 or 5; else refused (4)."""
    from agent.provision import NotConfirmed
    from drivers.nfc.provision import ProvisionInterrupted

    if isinstance(exc, ProvisionInterrupted):
        return EXIT_HARDWARE
    if isinstance(exc, NotConfirmed):
        return EXIT_NETWORK if isinstance(exc.cause, CentreUnreachable) else EXIT_DATA
    return EXIT_REFUSED


# --- lock and job: the fitter --------------------------------------------------------------


@main.group()
def lock() -> None:
    """Find and verify a client's digital lock over Bluetooth (fitters).

    The Bluetooth used is ble_backend in agent.toml: "bleak" (this machine's
    adapter, BlueZ) or "sim" (the simulated locks of 'nyckelfri sim lock', run
    in-process). Exit codes: 3 Bluetooth or lock problem, 4 a verdict failed.
    """


def _lock_config(ctx: click.Context, data_dir: Path | None, config_file: Path | None,
                 ble_backend: str | None) -> AgentConfig:
    return _config(ctx, config_file, data_dir=data_dir, ble_backend=ble_backend)


backend_option = click.option(
    "--backend", "ble_backend", type=click.Choice(["bleak", "sim"]), default=None,
    help="Override ble_backend: bleak (BlueZ) or sim (simulated locks, in-process).")


def _lock_failed(exc: LockError, event_id: str | None, as_json: bool) -> CliError:
    partial = exc.verification
    if as_json:
        _emit_json({"ok": False, "error": str(exc), "advice": exc.advice,
                    "event_id": event_id,
                    "verification": None if partial is None else partial.to_dict()})
    recorded = (f" The attempt was recorded ({event_id}) and reaches the centre on sync."
                if event_id else "")
    return CliError(f"{str(exc).rstrip('.')}.{recorded}", EXIT_HARDWARE)


@lock.command("scan")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 120),
              help="Seconds to listen.")
@backend_option
@data_dir_option
@config_option
@json_option
@click.pass_context
def lock_scan(ctx: click.Context, timeout: float, ble_backend: str | None,
              data_dir: Path | None, config_file: Path | None, as_json: bool) -> None:
    """List the nyckelfri locks in range, strongest signal first."""
    from agent.fitter import lock_host

    config = _lock_config(ctx, data_dir, config_file, ble_backend)
    try:
        with errors_to_exit(_debug(ctx)):
            host = lock_host(config)
        sightings = host.run(lambda driver: driver.scan(timeout))
    except LockError as exc:
        if _debug(ctx):
            raise
        raise _lock_failed(exc, None, as_json) from exc
    rows = [{"address": s.address, "tag": s.tag, "rssi": s.rssi, "samples": s.samples,
             "name": s.name, "version": s.version,
             "near": s.rssi >= config.rssi_threshold} for s in sightings]
    if as_json:
        _emit_json({"locks": rows, "rssi_threshold": config.rssi_threshold})
        return
    if not rows:
        click.echo(f"no nyckelfri lock heard in {timeout:g} s; wake the lock by turning the "
                   "knob and stand at the door")
    for row in rows:
        near = "near" if row["near"] else "far (another door?)"
        click.echo(f"{row['address']}  {row['name'] or '-':<16} tag {row['tag']}  "
                   f"{row['rssi']} dBm  {near}")


def _yes(ok: bool, good: str = "OK", bad: str = "WRONG") -> str:
    return good if ok else bad


@lock.command("verify")
@click.option("--serial", required=True, help="The serial on the lock's label.")
@click.option("--client", "client_ref", required=True,
              help="The client reference the lock must be bound to (the job's).")
@click.option("--job", "job_id", type=int, default=None,
              help="The binder job this verification is for (removal jobs expect the lock "
                   "unbound).")
@backend_option
@data_dir_option
@config_option
@json_option
@click.pass_context
def lock_verify(ctx: click.Context, serial: str, client_ref: str, job_id: int | None,
                ble_backend: str | None, data_dir: Path | None, config_file: Path | None,
                as_json: bool) -> None:
    """Verify on site that the lock is here and bound right; record the proof.

    Prints the on-site verdict at once: serial, binding, proximity, battery. The
    challenge/response proof is recorded in the outbox (also for a failed attempt);
    the centre checks it with the lock's secret on sync. Exit 0 when every on-site
    verdict holds, 4 when one fails, 3 for a Bluetooth or lock problem.
    """
    from agent.clock import SystemClock
    from agent.fitter import FitterSession, lock_host, on_site_verdict

    config = _lock_config(ctx, data_dir, config_file, ble_backend)
    with _open_store(ctx, config) as store, errors_to_exit(_debug(ctx)):
        session = FitterSession(store, SystemClock(), lock_host(config), config.fitter_name)
        job = store.job(job_id) if job_id is not None else None
        try:
            verification, event_id = session.verify(serial, client_ref, job_id)
        except LockError as exc:
            if _debug(ctx):
                raise
            raise _lock_failed(exc, session.last_event_id, as_json) from exc
    verdict = on_site_verdict(verification, removal=job is not None and job.kind == "removal")
    if as_json:
        _emit_json({"ok": verdict.passed, "event_id": event_id, "verdict": verdict.as_dict(),
                    "verification": verification.to_dict()})
    else:
        v = verification
        bound = (f"bound to {v.bound_client}" if v.binding is not None and v.binding.bound
                 else "unbound")
        expected = "unbound" if verdict.removal else f"bound to {client_ref}"
        click.echo(f"lock {serial}: serial {_yes(verdict.serial_ok)} ({v.serial})")
        click.echo(f"  binding {_yes(verdict.binding_ok)}: {bound} (expected {expected})")
        click.echo(f"  proximity {_yes(verdict.proximity_ok, 'OK', 'TOO FAR')}: {v.rssi} dBm "
                   f"(threshold {v.rssi_threshold})")
        click.echo(f"  battery {_yes(verdict.battery_ok, 'OK', 'LOW')}: "
                   f"{v.battery_percent if v.battery_percent is not None else '?'} %")
        if v.error:
            click.echo(f"  note: {v.error}")
        click.echo(f"proof recorded ({event_id}); the centre verifies it on sync")
    if not verdict.passed:
        advice = []
        if not verdict.serial_ok:
            advice.append("this is not the job's lock")
        if not verdict.binding_ok:
            advice.append("unbind the lock first" if verdict.removal
                          else f"bind the lock to {client_ref} first")
        if not verdict.proximity_ok:
            advice.append("stand at the door: the signal is weak (another lock?)")
        if not verdict.battery_ok:
            advice.append("replace the batteries")
        click.echo(f"on-site verdict FAILED: {'; '.join(advice) or 'no proof was read'}; "
                   "then verify again", err=True)
        ctx.exit(EXIT_REFUSED)


@main.group()
def job() -> None:
    """A fitter's jobs from the binder: list them and tick their checkpoints, in order.

    Jobs are pulled by 'nyckelfri sync' on an agent with fitter set (or 'job pull');
    ticks are recorded offline and reach the centre on sync.
    """


@job.command("list")
@data_dir_option
@config_option
@json_option
@click.pass_context
def job_list(ctx: click.Context, data_dir: Path | None, config_file: Path | None,
             as_json: bool) -> None:
    """The jobs pulled from the centre, with the checkpoints done and the next one."""
    from agent.clock import SystemClock
    from agent.fitter import FitterSession

    config = _config(ctx, config_file, data_dir=data_dir)
    with _open_store(ctx, config) as store, errors_to_exit(_debug(ctx)):
        session = FitterSession(store, SystemClock(), None, config.fitter_name)
        rows = []
        for j in store.jobs():
            done = session.done(j)
            row = j.model_dump(mode="json")
            row["done"] = done
            row["next"] = next((c for c in j.checkpoints if c not in done), None)
            rows.append(row)
    if as_json:
        _emit_json({"jobs": rows})
        return
    if not rows:
        click.echo("no jobs on this agent; pull them with 'nyckelfri sync' (fitter set) or "
                   "'nyckelfri job pull'")
    for row in rows:
        when = row["booked_start"] or "not booked"
        click.echo(f"job {row['job_id']} {row['kind']:<7} client {row['client_ref']} lock "
                   f"{row['lock_serial'] or '-'} {when} [{row['status']}]")
        click.echo(f"  done: {', '.join(row['done']) or '-'}; next: {row['next'] or '-'}")


@job.command("tick")
@click.argument("job_id", type=int)
@click.argument("checkpoint")
@click.option("--signed-by", default=None, metavar="NAME",
              help="Who signed the key receipt (required for keys_returned_receipt_signed).")
@click.option("--verification", "verification_event_id", default=None, metavar="EVENT_ID",
              help="The lock verification behind a lock (un)bound tick (default: the latest "
                   "for the job).")
@data_dir_option
@config_option
@json_option
@click.pass_context
def job_tick(ctx: click.Context, job_id: int, checkpoint: str, signed_by: str | None,
             verification_event_id: str | None, data_dir: Path | None,
             config_file: Path | None, as_json: bool) -> None:
    """Tick CHECKPOINT of job JOB_ID: recorded offline, sent to the centre on sync.

    Checkpoints go in the job's order; lock_bound_to_client / lock_unbound_from_client
    need a passing 'lock verify --job JOB_ID' first. Exit 4 when refused.
    """
    from agent.clock import SystemClock
    from agent.fitter import FitterSession

    config = _config(ctx, config_file, data_dir=data_dir)
    with _open_store(ctx, config) as store, errors_to_exit(_debug(ctx)):
        session = FitterSession(store, SystemClock(), None, config.fitter_name)
        event_id = session.tick(job_id, checkpoint, signed_by=signed_by,
                                verification_event_id=verification_event_id)
    if as_json:
        _emit_json({"job_id": job_id, "checkpoint": checkpoint, "event_id": event_id})
    else:
        click.echo(f"job {job_id}: {checkpoint} ticked ({event_id}); the centre hears it on "
                   "sync")


@job.command("pull")
@data_dir_option
@config_option
@json_option
@click.pass_context
def job_pull(ctx: click.Context, data_dir: Path | None, config_file: Path | None,
             as_json: bool) -> None:
    """Pull this fitter's jobs from the centre now (replaces the jobs on this agent)."""
    from agent.clock import SystemClock
    from agent.service import build_sync_client

    config = _config(ctx, config_file, data_dir=data_dir)
    with _open_store(ctx, config) as store, errors_to_exit(_debug(ctx)), \
            build_sync_client(config, store, SystemClock(), jobs=store) as client:
        jobs = client.pull_jobs()
    if as_json:
        _emit_json({"jobs": len(jobs)})
    else:
        click.echo(f"{len(jobs)} job(s) pulled; see 'nyckelfri job list'")


# --- simulators ----------------------------------------------------------------------------


@main.group()
def sim() -> None:
    """Simulated hardware that speaks the real protocols (demos, training, tests)."""


def _tag_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--uid", default="04A1B2C3D4E5F6", show_default=True,
                     help="7-byte UID in hex (NXP tags start with 04)."),
        click.option("--product", type=click.Choice(["NTAG213", "NTAG215", "NTAG216", "TYPE4",
                                                     "NTAG424"]),
                     default="NTAG215", show_default=True,
                     help="Tag model (NTAG424: a factory-fresh NTAG 424 DNA, for "
                          "'nyckelfri tag provision')."),
        click.option("--uri", default=None, help="NDEF URI record to carry."),
        click.option("--text", default=None, help="NDEF Text record to carry."),
        click.option("--garbage-ndef", is_flag=True, help="Fault: NDEF area holds garbage."),
        click.option("--truncate-reads", is_flag=True, help="Fault: READ answers too short."),
        click.option("--mute-after", type=int, default=None,
                     help="Fault: stop answering after N commands (removed mid-read)."),
        click.option("--seconds", type=float, default=None,
                     help="Present the tag this long, then remove it and exit (default: until "
                          "Ctrl-C)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _build_sim_tag(uid: str, product: str, uri: str | None, text: str | None,
                   garbage_ndef: bool, truncate_reads: bool, mute_after: int | None) -> Any:
    from drivers.sim.tags import TagFaults
    from drivers.sim.udp_tag import build_tag

    faults = None
    if garbage_ndef or truncate_reads or mute_after is not None:
        faults = TagFaults(garbage_ndef=garbage_ndef, truncate_reads=truncate_reads,
                           mute_after=mute_after)
    try:
        if product == "TYPE4":
            return build_tag(uid, uri=uri, text=text, faults=faults, tag_type=4)
        return build_tag(uid, product, uri=uri, text=text, faults=faults)
    except ValueError as exc:  # SimError: the message names the fix
        raise click.BadParameter(str(exc)) from None


def _wait(seconds: float | None) -> None:
    stop = threading.Event()
    _install_stop_handlers(stop)
    stop.wait(seconds)


@sim.command("tag")
@click.option("--port", type=int, default=54321, show_default=True,
              help="UDP port the agent's udp:HOST:PORT reader polls.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@_tag_options
def sim_tag(port: int, host: str, uid: str, product: str, uri: str | None, text: str | None,
            garbage_ndef: bool, truncate_reads: bool, mute_after: int | None,
            seconds: float | None) -> None:
    """Present a simulated tag to nfcpy's udp reader (agent run --reader udp:HOST:PORT)."""
    from drivers.sim.udp_tag import UdpTagServer

    tag_ = _build_sim_tag(uid, product, uri, text, garbage_ndef, truncate_reads, mute_after)
    with UdpTagServer(port=port, host=host) as server:
        server.present(tag_)
        click.echo(f"presenting {product} {uid.upper()} at {server.path}"
                   + (f" for {seconds:g} s" if seconds else "; stop with Ctrl-C"), err=True)
        _wait(seconds)
        server.remove()
        click.echo(f"tag removed; activated {server.activations} time(s)", err=True)


@sim.command("pn532")
@_tag_options
def sim_pn532(uid: str, product: str, uri: str | None, text: str | None, garbage_ndef: bool,
              truncate_reads: bool, mute_after: int | None, seconds: float | None) -> None:
    """Run a PN532 reader emulator on a pseudo-terminal with a tag in its field.

    Prints the reader path to give the agent: serial:/dev/pts/N:pn532.
    """
    from drivers.sim.pn532 import Pn532Emulator

    tag_ = _build_sim_tag(uid, product, uri, text, garbage_ndef, truncate_reads, mute_after)
    with Pn532Emulator() as emulator:
        emulator.present(tag_)
        click.echo(f"serial:{emulator.path}:pn532")
        sys.stdout.flush()
        _wait(seconds)
        emulator.remove()


@sim.command("lock")
@click.option("--serial", required=True, help="The simulated lock's serial, e.g. NF-000123.")
@click.option("--secret", required=True, metavar="HEX",
              help="Its 16-byte AES secret in hex (the centre must hold the same one).")
@click.option("--client", "client_ref", default="", show_default=True,
              help="The client it is bound to (empty: unbound).")
@click.option("--battery", type=click.IntRange(0, 100), default=87, show_default=True,
              help="Battery percent.")
@click.option("--counter", "binding_counter", type=click.IntRange(0), default=1,
              show_default=True, help="Binding counter.")
@click.option("--rssi", type=int, default=-50, show_default=True,
              help="Signal strength at the door, dBm (below -70: too far).")
@click.option("--fault", "faults", multiple=True, metavar="NAME[=VALUE]",
              help="A misbehaviour, repeatable: wrong_mac, notify=false, drop_after_reads=2, "
                   "reject_challenge=14, wake_delay_s=1.5, missing=battery, advertising=false, "
                   "advertised_serial=NF-9.")
@data_dir_option
@config_option
@json_option
@click.pass_context
def sim_lock(ctx: click.Context, serial: str, secret: str, client_ref: str, battery: int,
             binding_counter: int, rssi: int, faults: tuple[str, ...], data_dir: Path | None,
             config_file: Path | None, as_json: bool) -> None:
    """Add or update a simulated lock for 'nyckelfri lock' with ble_backend = "sim".

    Writes the lock into sim_locks_file (default DATA_DIR/sim-locks.json). The
    simulated air is in-process: nothing runs after this command returns; each
    'lock scan' / 'lock verify' starts the listed locks on its own simulated air
    and verifies them through the real driver code.
    """
    from agent.fitter import parse_fault, save_sim_lock

    config = _config(ctx, config_file, data_dir=data_dir)
    entry = {"serial": serial, "secret": secret.lower(), "bound_client": client_ref,
             "battery": battery, "binding_counter": binding_counter, "rssi": rssi,
             "faults": dict(parse_fault(f) for f in faults)}
    with errors_to_exit(_debug(ctx)):
        record = save_sim_lock(config.sim_locks_path, entry)
    if as_json:
        _emit_json({"file": str(config.sim_locks_path), "lock": record})
    else:
        state = f"bound to {client_ref}" if client_ref else "unbound"
        click.echo(f"simulated lock {serial} ({state}) in {config.sim_locks_path}; use it "
                   "with ble_backend = \"sim\" (NYCKELFRI_BLE_BACKEND=sim or --backend sim)")


@main.command("doctor", add_help_option=False,
              context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check this machine: reader, permissions, Bluetooth, clock, centre, disk, outbox.

    Names each fault with its fix; exit code 1 when a check failed (warnings do not
    fail). 'nyckelfri doctor --help' for the options.
    """
    # The checks load httpx and the protocol: only when asked, not on every command.
    from agent.doctor import doctor_command

    doctor_command.main(ctx.args, prog_name="nyckelfri doctor", standalone_mode=True)


@main.command("demo")
@click.pass_context
def demo(ctx: click.Context) -> None:
    """The main job end to end: a centre on SQLite and an agent on simulated tags.

    Everything lives in a temporary folder and on loopback; nothing is left behind.
    """
    from agent.demo import run_demo

    with errors_to_exit(_debug(ctx)):
        run_demo(click.echo)
