"""The ``nyckelfri-central`` command line: thin commands over the central store and the
routine's services.

This module holds the administration commands (serve, migrate, devices, pending
applications, reference data, visits, events) and is the entry point: importing it
adds the routine's commands (:mod:`central.cli_routine`, :mod:`central.cli_registers`)
and the SUN tag keys' (:mod:`central.cli_sun`) to :data:`main`. What every command
shares, exit codes included, is in :mod:`central.cli_base`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import click

from central import cli_registers, cli_routine, cli_sun
from central.applications import describe
from central.cases.store import RoutineStore
from central.cli_base import (
    ACTING_AS_ENV,
    DATABASE_ENV,
    DEFAULT_DATABASE,
    ENROLMENT_WARNING,
    EXIT_DATA,
    EXIT_DATABASE,
    EXIT_REFUSED,
    EXIT_USAGE,
    LOOPBACK,
    REFERENCE_LIST_PAGE,
    CliError,
    _day,
    _debug,
    _when,
    emit_json,
    errors_to_exit,
    json_option,
    main,
    open_store,
)
from central.defaults import DEFAULT_PORT
from central.errors import ReferenceDataError
from central.store import DEFAULT_DAY_ZONE, CentralStore
from sync.protocol import ReferenceKind

# Re-exported: the entry point's names, as scripts and tests import them from here.
__all__ = [
    "ACTING_AS_ENV",
    "DATABASE_ENV",
    "DEFAULT_DATABASE",
    "EXIT_DATA",
    "EXIT_DATABASE",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "cli_registers",
    "cli_routine",
    "cli_sun",
    "main",
]

log = logging.getLogger(__name__)


# --- serve and migrate ---------------------------------------------------------------------


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="TCP port to listen on.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM certificate (chain) for HTTPS; needs --tls-key.")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="API processes (more than one is meant for PostgreSQL).")
@click.pass_context
def serve_cmd(ctx: click.Context, host: str, port: int, tls_cert: Path | None,
              tls_key: Path | None, workers: int) -> None:
    """Serve the sync and administration API until SIGTERM or Ctrl-C."""
    if tls_cert is None and host not in LOOPBACK:
        click.echo(f"warning: plain HTTP on {host}: tokens travel unencrypted; use "
                   "--tls-cert/--tls-key or a TLS proxy in front", err=True)
    from central.server import ServerError, serve  # the HTTP stack, for this command only

    with errors_to_exit(_debug(ctx)):
        try:
            serve(ctx.find_root().obj["database"], host, port, tls_cert=tls_cert,
                  tls_key=tls_key, workers=workers,
                  log_level="debug" if _debug(ctx) else "info")
        except ServerError as exc:
            if _debug(ctx):
                raise
            raise CliError(str(exc), EXIT_DATA) from exc
    click.echo("centre stopped", err=True)


@main.command("migrate")
@json_option
@click.pass_context
def migrate_cmd(ctx: click.Context, as_json: bool) -> None:
    """Upgrade the database schema to this version of nyckelfri now."""
    with open_store(ctx) as store:
        events = store.event_count()
    if as_json:
        emit_json({"database": _shown(ctx), "schema": "current", "events": events})
    else:
        click.echo(f"schema of {_shown(ctx)} is current ({events} events)")


def _shown(ctx: click.Context) -> str:
    """The database for messages: a DSN without its password."""
    database: str = ctx.find_root().obj["database"]
    scheme, sep, rest = database.partition("://")
    if not sep or "@" not in rest:
        return database
    credentials, _, location = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}@{location}"


# --- devices -------------------------------------------------------------------------------


@main.group()
def device() -> None:
    """Enrol, list and revoke the devices (agents and administrators) and their tokens."""


@device.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An administrator's token instead of a device's.")
@click.option("--fitter", default=None, metavar="FITTER",
              help="Enrol the agent of this (enrolled) fitter: it sends FITTER's lock "
                   "verifications and checkpoints, and nothing else.")
@click.option("--unit", default=None, metavar="UNIT",
              help="The provider unit a field agent works for (e.g. hemtjanst-nord): it "
                   "gets the SUN keys of that unit's tags.")
@click.option("--url", "centre_url", default=None, metavar="URL",
              help="The centre's address as the device reaches it (e.g. "
                   "https://centre.example:8700): also print a one-time enrolment code for "
                   "'nyckelfri agent enrol CODE' on the device.")
@json_option
@click.pass_context
def device_add(ctx: click.Context, name: str, admin: bool, fitter: str | None,
               unit: str | None, centre_url: str | None, as_json: bool) -> None:
    """Enrol device NAME and print its token (shown this once only).

    A field agent (staff tapping tags) is enrolled as is, with --unit for the provider
    unit whose SUN tags it checks; a fitter's agent with --fitter. The agent's
    device_id must be NAME.
    """
    if admin and fitter:
        raise click.UsageError("an administrator is not enrolled to a fitter: give --admin "
                               "or --fitter, not both")
    role = "admin" if admin else "device"
    if centre_url and admin:
        raise click.UsageError("enrolment codes are for field devices; an administrator "
                               "takes the token itself")
    with open_store(ctx) as store:
        token = store.add_device(name, role=role, unit=unit, fitter=fitter)
        code = _enrolment_code(store, name, centre_url) if centre_url else None
    if as_json:
        emit_json({"name": name, "role": role, "unit": unit, "fitter": fitter,
                   "token": token, "enrolment_code": code, "warning": ENROLMENT_WARNING})
        return
    if code:
        _echo_code(name, code)
    what = (f"{role} {name}" + (f" of {unit}" if unit else "")
            + (f" for fitter {fitter}" if fitter else ""))
    click.echo(f"enrolled {what}; its token:")
    click.echo(token)
    click.echo(f"in the agent's agent.toml: device_id = \"{name}\""
               + (f", fitter = \"{fitter}\"" if fitter else ""), err=True)
    click.echo(ENROLMENT_WARNING, err=True)


def _enrolment_code(store: Any, name: str, centre_url: str, hours: float = 24.0) -> str:
    from datetime import timedelta
    from urllib.parse import urlsplit

    from central import enrolment
    from sync.protocol import enrolment_code

    parts = urlsplit(centre_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{centre_url!r} is not an http:// or https:// URL",
                                 param_hint="--url")
    secret = enrolment.create_code(store, name, timedelta(hours=hours))
    return enrolment_code(centre_url.rstrip("/"), name, secret)


def _echo_code(name: str, code: str) -> None:
    click.echo(f"on the device, within 24 h, once: nyckelfri agent enrol {code}")
    click.echo(f"(the code makes {name} a new token and writes its agent.toml)", err=True)


@device.command("enrol-code")
@click.argument("name")
@click.option("--url", "centre_url", required=True, metavar="URL",
              help="The centre's address as the device reaches it.")
@click.option("--hours", type=click.FloatRange(min=0.1, max=24 * 14), default=24.0,
              show_default=True, help="How long the code stays valid.")
@json_option
@click.pass_context
def device_enrol_code(ctx: click.Context, name: str, centre_url: str, hours: float,
                      as_json: bool) -> None:
    """A new one-time enrolment code for field device NAME (an earlier code stops working).

    Redeeming it with 'nyckelfri agent enrol CODE' gives the device a new token; its
    old token then stops working.
    """
    with open_store(ctx) as store:
        code = _enrolment_code(store, name, centre_url, hours)
    if as_json:
        emit_json({"name": name, "enrolment_code": code, "valid_hours": hours})
    else:
        _echo_code(name, code)


@device.command("revoke")
@click.argument("name")
@click.pass_context
def device_revoke(ctx: click.Context, name: str) -> None:
    """Revoke device NAME: its token is refused from now on (its events stay)."""
    with open_store(ctx) as store:
        store.revoke_device(name)
    click.echo(f"revoked {name}")


@device.command("list")
@json_option
@click.pass_context
def device_list(ctx: click.Context, as_json: bool) -> None:
    """List the enrolled devices with role, fitter, last contact, events received and
    events refused (sent by a device that may not send them)."""
    with open_store(ctx) as store:
        devices = store.list_devices()
        refusals = store.sender_refusals()
    refused: dict[str, int] = {}
    for r in refusals:
        refused[r.device] = refused.get(r.device, 0) + r.count
    if as_json:
        emit_json([{**d.as_dict(), "refused": refused.get(d.name, 0),
                    "refusals": [asdict(r) for r in refusals if r.device == d.name]}
                   for d in devices])
        return
    if not devices:
        click.echo("no devices; enrol one with 'nyckelfri-central device add NAME'")
        return
    click.echo(f"{'name':<24} {'role':<11} {'fitter':<16} {'last seen':<17} {'events':>7} "
               f"{'refused':>7}  state")
    for d in devices:
        state = f"revoked {_when(d.revoked_at)}" if d.revoked_at else "active"
        click.echo(f"{d.name:<24} {d.role:<11} {d.fitter or '-':<16} "
                   f"{_when(d.last_seen_at):<17} {d.events:>7} {refused.get(d.name, 0):>7}  "
                   f"{state}")
    for r in refusals:
        click.echo(f"refused from {r.device}: {r.count} x {r.kind} ({r.reason}), last "
                   f"{_when(r.last_at)}")


@main.command("pending")
@click.option("--apply", "apply_now", is_flag=True,
              help="Apply what is pending now (the running centre's sweeper does it too).")
@json_option
@click.pass_context
def pending_cmd(ctx: click.Context, apply_now: bool, as_json: bool) -> None:
    """List the routine's events (lock proofs, checkpoints) stored but not applied yet,
    with why; --apply applies them."""
    with open_store(ctx) as store:
        RoutineStore(store)  # registers the routine's appliers
        sweep = store.apply_pending() if apply_now else None
        rows = store.pending_applications()
    if as_json:
        emit_json({"pending": [describe(r) for r in rows],
                   "sweep": asdict(sweep) if sweep else None})
        return
    if sweep is not None:
        click.echo(f"applied {sweep.applied}, failed {sweep.failed}, waiting {sweep.waiting}")
    if not rows:
        click.echo("nothing pending: every lock proof and checkpoint received is applied")
        return
    for r in rows:
        why = f"{r.attempts} attempt(s), last: {r.last_error}" if r.attempts else "not tried"
        click.echo(f"{r.event_id} {r.kind} from {r.device}, queued {_when(r.queued_at)}: "
                   f"{why}")


# --- reference data ------------------------------------------------------------------------


@main.group()
def reference() -> None:
    """Keep the reference data agents pull: clients, tags, staff badges, locks."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_DATA) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{path} is not JSON: {exc}; nothing was imported", EXIT_DATA) from exc


@reference.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def reference_import(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Import a JSON reference document (all or nothing)."""
    data = _read_json(file)
    if not isinstance(data, dict):
        raise CliError(f"{file} holds a JSON {type(data).__name__}, not an object of lists "
                       "('clients', 'tags', 'staff', 'locks'); nothing was imported", EXIT_DATA)
    with open_store(ctx) as store:
        try:
            counts = store.import_reference(data)
        except ReferenceDataError as exc:
            if _debug(ctx):
                raise
            raise CliError(f"{file}: {exc}; nothing was imported", EXIT_DATA) from exc
    if as_json:
        emit_json(counts)
    else:
        click.echo("imported " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))


def _json_object(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object, e.g. '{\"client_ref\": \"K-1\"}'")
    return data


kind_argument = click.argument("kind", type=click.Choice([k.value for k in ReferenceKind]))


@reference.command("set")
@kind_argument
@click.argument("key")
@click.option("--data", "data_text", required=True, metavar="JSON",
              help="The record as a JSON object.")
@click.pass_context
def reference_set(ctx: click.Context, kind: str, key: str, data_text: str) -> None:
    """Create or replace the record KEY of KIND; agents get it on their next pull."""
    data = _json_object(data_text)
    with open_store(ctx) as store:
        version = store.upsert_reference(ReferenceKind(kind), key, data)
    click.echo(f"{kind} {key} set (version {version})")


@reference.command("delete")
@kind_argument
@click.argument("key")
@click.pass_context
def reference_delete(ctx: click.Context, kind: str, key: str) -> None:
    """Delete the record KEY of KIND; agents drop it on their next pull."""
    with open_store(ctx) as store:
        version = store.delete_reference(ReferenceKind(kind), key)
    click.echo(f"{kind} {key} deleted (version {version})")


@reference.command("list")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True,
              help="Only changes after this cursor (version).")
@json_option
@click.pass_context
def reference_list(ctx: click.Context, since: int, as_json: bool) -> None:
    """List reference changes after --since, oldest first (deletions included)."""
    items = []
    with open_store(ctx) as store:
        cursor, more = since, True
        while more:
            page, cursor, more = store.reference_since(cursor, REFERENCE_LIST_PAGE)
            items.extend(page)
    if as_json:
        emit_json({"items": items, "cursor": cursor})
        return
    if not items:
        click.echo(f"no changes after version {since}")
    for item in items:
        state = "deleted" if item.deleted else json.dumps(item.data, ensure_ascii=False)
        click.echo(f"{item.version:>6} {item.kind.value:<7} {item.key:<20} {state}")


# --- visits and events ---------------------------------------------------------------------


def _local_day(store: CentralStore, day: str | None) -> date | None:
    """The day asked for; 'today' by the centre's clock in the municipality's calendar."""
    if day is None:
        return None
    if day == "today":
        return store.today()
    return date.fromisoformat(day)


@main.command("visits")
@click.option("--day", callback=_day, default=None, metavar="YYYY-MM-DD|today",
              help=f"Only visits that began on this day ({DEFAULT_DAY_ZONE} calendar).")
@click.option("--client", "client_ref", default=None, metavar="REF", help="Only this client.")
@click.option("--staff", "staff_ref", default=None, metavar="REF", help="Only this staff member.")
@json_option
@click.pass_context
def visits_cmd(ctx: click.Context, day: str | None, client_ref: str | None,
               staff_ref: str | None, as_json: bool) -> None:
    """Visits rebuilt from the events the agents pushed (routine section 5)."""
    with open_store(ctx) as store:
        rows = store.visits(day=_local_day(store, day), client_ref=client_ref,
                            staff_ref=staff_ref)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no visits")
        return
    click.echo(f"{'client':<12} {'staff':<12} {'arrived':<17} {'departed':<17} status")
    for v in rows:
        click.echo(f"{v.client_ref:<12} {v.staff_ref:<12} {_when(v.arrived_at):<17} "
                   f"{_when(v.departed_at):<17} {v.status}")


@main.command("events")
@click.option("--device", "device_name", default=None, metavar="NAME",
              help="Only events of this device.")
@click.option("--kind", default=None, help="Only events of this kind, e.g. visit.arrived.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="At most this many, in the order received.")
@json_option
@click.pass_context
def events_cmd(ctx: click.Context, device_name: str | None, kind: str | None, limit: int,
               as_json: bool) -> None:
    """The events received from the agents, as stored."""
    with open_store(ctx) as store:
        rows = store.events(device=device_name, kind=kind, limit=limit)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no events")
    for e in rows:
        click.echo(f"{e['event_id']} {e['device']:<16} {e['kind']:<24} {_when(e['best_at'])} "
                   f"({e['quality']})")


# The routine's commands (principal, case, client, inbox, binder, keys, tags, ...) and the
# SUN ones (tag-keys) add themselves to ``main``; at the end, so they find all above.
