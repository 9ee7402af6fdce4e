"""The routine's commands of ``nyckelfri-central``, part two: the key register, NFC tags
and locks, alerts and reports. Thin commands over the routine's services
(:mod:`central.services`), as the principal named by ``--as NAME``; ``--json`` prints the
same document the HTTP API answers (:mod:`central.answers`).
"""

from __future__ import annotations

import secrets
from datetime import datetime

import click

from central import answers as api
from central.cases import proofs
from central.cli_base import (
    EXIT_USAGE,
    CliError,
    _date,
    _date_or_today,
    _day,
    acting,
    as_option,
    json_option,
    main,
    show,
    today_option,
    unit_argument,
)
from central.cli_base import _when_local as _when
from sync.protocol import Answer

# --- keys -------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """The key register (Axsor): key sets by key number, returns, emergency use."""


def _print_key_set(s: api.KeySetOut) -> None:
    state = "bound" if s.bound else f"returned {_when(s.returned_at)}"
    click.echo(f"{s.key_number:<12} {s.unit.value:<19} held by {s.holder:<18} {state}")


@keys.command("register")
@click.argument("client_ref", metavar="CLIENT")
@unit_argument
@click.argument("key_number")
@click.option("--holder", default=None, metavar="UNIT",
              help="The provider unit holding home-care keys (default: yours or the client's).")
@as_option
@json_option
@click.pass_context
def keys_register(ctx: click.Context, client_ref: str, unit: str, key_number: str,
                  holder: str | None, as_name: str | None, as_json: bool) -> None:
    """Record UNIT's key set for CLIENT with its KEY_NUMBER in the key register."""
    with acting(ctx, as_name) as (routine, actor):
        key_set = routine.keys.register(client_ref, unit, key_number, actor, holder=holder)
        answer = api.KeySetAnswer(key_set=api.KeySetOut.model_validate(key_set),
                                  server_time=routine.central.now())
    show(answer, as_json, lambda: _print_key_set(answer.key_set))


@keys.command("list")
@click.argument("client_ref", metavar="CLIENT")
@as_option
@json_option
@click.pass_context
def keys_list(ctx: click.Context, client_ref: str, as_name: str | None, as_json: bool) -> None:
    """CLIENT's key sets held, and the sets the routine requires (section 4)."""
    with acting(ctx, as_name) as (routine, actor):
        answer = api.keys_answer(routine.keys.overview(client_ref, actor=actor),
                                 routine.central.now())

    def human() -> None:
        for s in answer.held:
            _print_key_set(s)
        required = ", ".join(f"{u.value} {n}" for u, n in answer.required.items() if n)
        click.echo(f"required: {required or 'none'}")
        if answer.missing:
            click.echo("missing: " + ", ".join(f"{u.value} {n}" for u, n in
                                                answer.missing.items()))
    show(answer, as_json, human)


@keys.command("return")
@click.argument("client_ref", metavar="CLIENT")
@unit_argument
@click.option("--signed-by", required=True, metavar="NAME",
              help="Who signed the key receipt (nyckelkvittens).")
@click.option("--holder", default=None, metavar="UNIT", help="The unit handing them back.")
@as_option
@json_option
@click.pass_context
def keys_return(ctx: click.Context, client_ref: str, unit: str, signed_by: str,
                holder: str | None, as_name: str | None, as_json: bool) -> None:
    """Hand UNIT's key sets back to CLIENT against a signed key receipt."""
    with acting(ctx, as_name) as (routine, actor):
        receipt = routine.keys.return_keys(client_ref, unit, signed_by, actor, holder=holder)
        answer = api.ReceiptAnswer(receipt=api.ReceiptOut.model_validate(receipt),
                                   server_time=routine.central.now())
    show(answer, as_json, lambda: click.echo(
        f"receipt {answer.receipt.id}: {', '.join(answer.receipt.key_numbers)} back to "
        f"{client_ref}, signed by {answer.receipt.signed_by}"))


@keys.command("unbound")
@click.argument("key_number")
@as_option
@json_option
@click.pass_context
def keys_unbound(ctx: click.Context, key_number: str, as_name: str | None,
                 as_json: bool) -> None:
    """Whether no client has KEY_NUMBER bound in the key register (the 2b.9 check)."""
    with acting(ctx, as_name) as (routine, actor):
        answer = api.UnboundAnswer(key_number=key_number,
                                   unbound=routine.keys.unbound(key_number, actor=actor),
                                   server_time=routine.central.now())
    show(answer, as_json, lambda: click.echo(
        f"{key_number}: {'unbound' if answer.unbound else 'bound to a client'}"))


@keys.command("emergency")
@click.argument("client_ref", metavar="CLIENT")
@unit_argument
@click.option("--reason", required=True, help="What happened (4.4: emergency).")
@click.option("--lock-unavailable", is_flag=True, help="The digital lock was unavailable.")
@as_option
@json_option
@click.pass_context
def keys_emergency(ctx: click.Context, client_ref: str, unit: str, reason: str,
                   lock_unavailable: bool, as_name: str | None, as_json: bool) -> None:
    """Record that UNIT used its physical key at CLIENT in an emergency."""
    with acting(ctx, as_name) as (routine, actor):
        use = routine.keys.record_emergency_use(client_ref, unit, reason, actor,
                                               lock_available=not lock_unavailable)
        answer = api.KeyUseAnswer(key_use=api.KeyUseOut.model_validate(use),
                                  server_time=routine.central.now())
    show(answer, as_json, lambda: click.echo(
        f"recorded: {answer.key_use.unit.value} key used at {client_ref} "
        f"({answer.key_use.reason.value})"))


# --- NFC tags and locks -----------------------------------------------------------------------


@main.group()
def tags() -> None:
    """NFC tags for clients waiting for a lock (section 5): issue, take down, stock."""


def _print_tag(t: api.TagOut) -> None:
    click.echo(f"tag {t.uid}: client {t.client_ref} ({t.provider_unit}) {t.state.value}")


@tags.command("issue")
@click.argument("uid")
@click.argument("client_ref", metavar="CLIENT")
@click.option("--provider-unit", default=None, metavar="UNIT",
              help="Whose stock it comes from (default: your unit).")
@as_option
@json_option
@click.pass_context
def tags_issue(ctx: click.Context, uid: str, client_ref: str, provider_unit: str | None,
               as_name: str | None, as_json: bool) -> None:
    """Issue tag UID from the provider's stock to CLIENT (lock pending or impossible)."""
    with acting(ctx, as_name) as (routine, actor):
        unit = provider_unit or actor.unit
        if unit is None:
            raise CliError("give --provider-unit: the acting principal has no unit", EXIT_USAGE)
        tag = routine.tags.issue(uid, client_ref, unit, actor)
        answer = api.TagAnswer(tag=api.TagOut.model_validate(tag),
                               server_time=routine.central.now())
    show(answer, as_json, lambda: _print_tag(answer.tag))


@tags.command("down")
@click.argument("uid")
@as_option
@json_option
@click.pass_context
def tags_down(ctx: click.Context, uid: str, as_name: str | None, as_json: bool) -> None:
    """Record that staff took tag UID down (the lock is installed)."""
    with acting(ctx, as_name) as (routine, actor):
        answer = api.TagAnswer(tag=api.TagOut.model_validate(routine.tags.taken_down(uid, actor)),
                               server_time=routine.central.now())
    show(answer, as_json, lambda: _print_tag(answer.tag))


@tags.command("stock")
@click.argument("unit", required=False)
@click.option("--add", "count", type=click.IntRange(1, 100_000), default=None,
              help="Add this many tags to the stock.")
@as_option
@json_option
@click.pass_context
def tags_stock(ctx: click.Context, unit: str | None, count: int | None, as_name: str | None,
               as_json: bool) -> None:
    """Show (or --add to) the NFC tag stock of provider UNIT (default: your unit)."""
    with acting(ctx, as_name) as (routine, actor):
        unit = unit or actor.unit
        if unit is None:
            raise CliError("give the provider UNIT: the acting principal has no unit",
                           EXIT_USAGE)
        if count is None:
                now_in_stock = routine.tags.stock(unit, actor=actor)
        else:
            now_in_stock = routine.tags.add_stock(unit, count, actor)
        answer = api.TagStock(provider_unit=unit, count=now_in_stock,
                              server_time=routine.central.now())
    show(answer, as_json, lambda: click.echo(f"{unit}: {answer.count} NFC tags in stock"))


@main.group()
def lock() -> None:
    """Bind and unbind digital locks to clients (the lock system's binding)."""


@lock.command("bind")
@click.argument("serial")
@click.argument("client_ref", metavar="CLIENT")
@as_option
@json_option
@click.pass_context
def lock_bind(ctx: click.Context, serial: str, client_ref: str, as_name: str | None,
              as_json: bool) -> None:
    """Bind lock SERIAL to CLIENT (2a.7: "kopplat till brukaren")."""
    with acting(ctx, as_name) as (routine, actor):
        routine.locks.bind(serial, client_ref, actor)
        answer = api.LockAnswer(serial=serial, client_ref=client_ref,
                                server_time=routine.central.now())
    show(answer, as_json, lambda: click.echo(f"lock {serial} bound to {client_ref}"))


@lock.command("unbind")
@click.argument("serial")
@as_option
@json_option
@click.pass_context
def lock_unbind(ctx: click.Context, serial: str, as_name: str | None, as_json: bool) -> None:
    """Unbind lock SERIAL from its client (2b.8: "frånkopplat brukaren")."""
    with acting(ctx, as_name) as (routine, actor):
        routine.locks.unbind(serial, actor)
        answer = api.LockAnswer(serial=serial, client_ref=None,
                                server_time=routine.central.now())
    show(answer, as_json, lambda: click.echo(f"lock {serial} unbound"))


@lock.command("enrol")
@click.argument("serial")
@click.option("--secret", "secret_hex", default=None, metavar="HEX",
              help="The lock's 16-byte secret, 32 hex digits.")
@click.option("--generate", is_flag=True,
              help="Generate a secret and print it once, to program into the lock.")
@as_option
@json_option
@click.pass_context
def lock_enrol(ctx: click.Context, serial: str, secret_hex: str | None, generate: bool,
               as_name: str | None, as_json: bool) -> None:
    """Keep lock SERIAL's secret at the centre, its only holder (admin, alarm admin)."""
    if (secret_hex is None) == (not generate):
        raise CliError("give the secret with --secret HEX or make one with --generate",
                       EXIT_USAGE)
    if generate:
        secret = secrets.token_bytes(proofs.SECRET_BYTES)
    else:
        try:
            secret = bytes.fromhex(secret_hex or "")
        except ValueError:
            secret = b""
        if len(secret) != proofs.SECRET_BYTES:
            raise CliError(f"--secret: {proofs.SECRET_BYTES * 2} hex digits "
                           f"({proofs.SECRET_BYTES} bytes)", EXIT_USAGE)
    with acting(ctx, as_name) as (routine, actor):
        routine.locks.enrol(serial, secret, actor)
        # The generated secret is shown here once (this CLI's output only, never the API).
        answer = LockEnrolled(serial=serial, secret_hex=secret.hex() if generate else None,
                              server_time=routine.central.now())

    def human() -> None:
        click.echo(f"lock {serial}: secret enrolled")
        if answer.secret_hex:
            click.echo(f"secret (shown once; program it into the lock): {answer.secret_hex}")
    show(answer, as_json, human)


class LockEnrolled(Answer):
    serial: str
    secret_hex: str | None = None  # only when generated: shown once
    server_time: datetime


@lock.command("verifications")
@click.option("--serial", default=None, metavar="SERIAL", help="Only this lock.")
@click.option("--job", "job_id", type=int, default=None, metavar="ID", help="Only this job.")
@as_option
@json_option
@click.pass_context
def lock_verifications(ctx: click.Context, serial: str | None, job_id: int | None,
                       as_name: str | None, as_json: bool) -> None:
    """The centre's verdicts on lock proofs from fitters' agents, oldest first."""
    with acting(ctx, as_name) as (routine, actor):
        found = routine.locks.verifications(actor, serial=serial, job_id=job_id)
        answer = api.LockVerifications(
            verifications=[api.LockVerificationOut.model_validate(v) for v in found],
            server_time=routine.central.now())

    def human() -> None:
        if not answer.verifications:
            click.echo("no lock verifications")
        for v in answer.verifications:
            binding = ("-" if v.bound is None else
                       f"bound to {v.bound_client}" if v.bound else "unbound")
            battery = f"{v.battery}%" if v.battery is not None else "-"
            click.echo(f"{_when(v.read_at)}  {v.serial or '-':<16} {v.verdict:<13} "
                       f"job {v.job_id or '-':<6} {binding:<24} battery {battery:<5} "
                       f"{v.fitter or v.device}")
    show(answer, as_json, human)


# --- alerts and reports -----------------------------------------------------------------------


@main.command("alerts")
@today_option
@click.option("--no-visit-hours", type=click.FloatRange(min=0, min_open=True, max=24 * 31),
              default=24, show_default=True, help="Alert when no visit registered this long.")
@as_option
@json_option
@click.pass_context
def alerts_cmd(ctx: click.Context, today: str | None, no_visit_hours: float,
               as_name: str | None, as_json: bool) -> None:
    """What someone must act on now, most severe first."""
    with acting(ctx, as_name) as (routine, actor):
        day = _date_or_today(today, routine)
        found = routine.alerts.current(today=day, no_visit_hours=no_visit_hours, actor=actor)
        answer = api.AlertList(today=day, alerts=[api.AlertOut.model_validate(a) for a in found],
                               server_time=routine.central.now())

    def human() -> None:
        if not answer.alerts:
            click.echo(f"no alerts on {answer.today}")
        for a in answer.alerts:
            click.echo(f"{a.severity.value:<8} {a.kind.value:<34} {a.subject:<14} {a.detail}")
    show(answer, as_json, human)


@main.group()
def report() -> None:
    """Reports: pending installs, removals, client status, visits by method."""


@report.command("pending-installs")
@today_option
@as_option
@json_option
@click.pass_context
def report_pending(ctx: click.Context, today: str | None, as_name: str | None,
                   as_json: bool) -> None:
    """Requested installs not yet done, with their age in Swedish working days."""
    with acting(ctx, as_name) as (routine, actor):
        day = _date_or_today(today, routine)
        answer = api.PendingInstalls(
            today=day, installs=[api.PendingInstallOut.model_validate(p)
                                 for p in routine.reports.pending_installs(today=day, actor=actor)],
            server_time=routine.central.now())

    def human() -> None:
        if not answer.installs:
            click.echo("no pending installs")
        for p in answer.installs:
            late = " OVERDUE" if p.overdue else ""
            booked = f" booked {p.fitter} {_when(p.booked_start)}" if p.fitter else ""
            click.echo(f"{p.client_ref:<14} case {p.case_id} {p.age_working_days} working "
                       f"days (target {p.target_on}){late}{booked}")
    show(answer, as_json, human)


@report.command("removals")
@today_option
@as_option
@json_option
@click.pass_context
def report_removals(ctx: click.Context, today: str | None, as_name: str | None,
                    as_json: bool) -> None:
    """Locks to remove, by due date (14 days after the last implementation ended)."""
    with acting(ctx, as_name) as (routine, actor):
        day = _date_or_today(today, routine)
        answer = api.Removals(today=day, removals=[api.RemovalOut.model_validate(r)
                                                   for r in routine.reports.removals(today=day,
                                                                                     actor=actor)],
                              server_time=routine.central.now())

    def human() -> None:
        if not answer.removals:
            click.echo("no removals due")
        for r in answer.removals:
            level = r.level.value if r.level else "-"
            click.echo(f"{r.client_ref:<14} due {r.due_on or '-'} ({level}) "
                       f"job {r.job_id or '-'} {r.fitter or ''}")
    show(answer, as_json, human)


@report.command("client-status")
@click.option("--client", default=None, metavar="REF", help="Only this client.")
@as_option
@json_option
@click.pass_context
def report_client_status(ctx: click.Context, client: str | None, as_name: str | None,
                         as_json: bool) -> None:
    """Per client: lock status, services, NFC tags, key sets held against required."""
    with acting(ctx, as_name) as (routine, actor):
        answer = api.ClientStatuses(clients=[api.ClientStatusOut.model_validate(c)
                                             for c in routine.reports.client_status(client,
                                                                                    actor=actor)],
                                    server_time=routine.central.now())

    def human() -> None:
        for c in answer.clients:
            missing = ", ".join(f"{u.value} {n}" for u, n in c.missing_sets.items())
            click.echo(f"{c.client_ref:<14} lock {c.lock_status or '-':<10} services "
                       f"{','.join(s.value for s in c.services) or '-':<24} tags "
                       f"{len(c.tags)} keys {len(c.key_sets)}"
                       f"{f' missing {missing}' if missing else ''}")
    show(answer, as_json, human)


@report.command("visits-by-method")
@click.option("--start", callback=_day, default=None, metavar="YYYY-MM-DD|today",
              help="First day.")
@click.option("--end", callback=_day, default=None, metavar="YYYY-MM-DD|today",
              help="Last day.")
@as_option
@json_option
@click.pass_context
def report_visits(ctx: click.Context, start: str | None, end: str | None, as_name: str | None,
                  as_json: bool) -> None:
    """Visits per client by registration method (NFC tag or lock)."""
    with acting(ctx, as_name) as (routine, actor):
        first, last = _date(start, routine), _date(end, routine)
        answer = api.VisitsByMethod(
            start=first, end=last,
            clients=[api.VisitMethodsOut.model_validate(v)
                     for v in routine.reports.visits_by_method(start=first, end=last, actor=actor)],
            server_time=routine.central.now())

    def human() -> None:
        if not answer.clients:
            click.echo("no visits")
        for v in answer.clients:
            methods = ", ".join(f"{m} {n}" for m, n in v.by_method.items())
            click.echo(f"{v.client_ref:<14} {v.total:>5}  {methods}")
    show(answer, as_json, human)
