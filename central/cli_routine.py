"""The routine's commands of ``nyckelfri-central``, part one: principals, cases, clients'
documentation and implementations, the "Digitala LÅS" inbox, the binder and the shared
schedule. Thin commands over the routine's services (:mod:`central.services`).

Each command works as a named principal (``--as NAME``); ``--json`` prints the same
document the HTTP API answers (:mod:`central.answers`). Exit codes: :mod:`central.cli_base`.
The keys, tags, locks, alerts and reports are :mod:`central.cli_registers`.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from central import answers as api
from central.cases.store import RoutineStore
from central.cases.values import JobKind
from central.cli_base import (
    ENROLMENT_WARNING,
    LOCAL_ZONE,
    _date,
    _date_or_today,
    _time,
    acting,
    as_option,
    day_option,
    emit_json,
    json_option,
    kind_argument,
    main,
    on_option,
    open_store,
    show,
)
from central.cli_base import _when_local as _when
from central.store import ROLES
from routine import texts
from routine.flows import Flow

# --- principals ----------------------------------------------------------------------------------


@main.group()
def principal() -> None:
    """Enrol and list the routine's principals: assessors, providers, alarm admins, fitters."""


@principal.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="What the principal does in the routine (admin: everything).")
@click.option("--unit", default=None, metavar="UNIT",
              help="The unit it works for, e.g. hemtjanst-nord, larmgruppen, bestallarenhet-1 "
                   "(needed for assessor, provider, alarm_admin, fitter).")
@json_option
@click.pass_context
def principal_add(ctx: click.Context, name: str, role: str, unit: str | None,
                  as_json: bool) -> None:
    """Enrol principal NAME with its role and unit; prints its API token this once only."""
    with open_store(ctx) as store:
        token = store.add_device(name, role, unit)
    if as_json:
        emit_json({"name": name, "role": role, "unit": unit, "token": token,
                   "warning": ENROLMENT_WARNING})
        return
    click.echo(f"enrolled {role} {name}{f' of {unit}' if unit else ''}; its token:")
    click.echo(token)
    click.echo(ENROLMENT_WARNING, err=True)


@principal.command("password")
@click.argument("name")
@click.option("--password-stdin", "from_stdin", is_flag=True,
              help="Read the password from the first line of standard input (for scripts).")
@json_option
@click.pass_context
def principal_password(ctx: click.Context, name: str, from_stdin: bool, as_json: bool) -> None:
    """Set NAME's password for the web pages (at least 12 characters); ends its sessions.

    Asks twice, without echo, unless --password-stdin is given. Field devices sign in
    with their token, not a password.
    """
    from central.web.accounts import set_password  # the web's credentials, for this command

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt(f"password for {name}", hide_input=True,
                                confirmation_prompt=True)
    with open_store(ctx) as store:
        set_password(store, name, password)
    if as_json:
        emit_json({"name": name, "password_set": True})
        return
    click.echo(f"password set for {name}; they sign in at the centre's /logga-in")


@principal.command("list")
@json_option
@click.pass_context
def principal_list(ctx: click.Context, as_json: bool) -> None:
    """List every principal and device with its role, unit and state."""
    with open_store(ctx) as store:
        found = store.list_devices()
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no principals; enrol one with 'nyckelfri-central principal add'")
    for d in found:
        state = f"revoked {_when(d.revoked_at)}" if d.revoked_at else "active"
        click.echo(f"{d.name:<24} {d.role:<12} {d.unit or '-':<20} {state}")


# --- cases -------------------------------------------------------------------------------------


@main.group()
def case() -> None:
    """Open, list, show and work the routine's cases (flows 2a, 2b, 3a, 3b)."""


def _print_allowed(c: api.CaseOut) -> None:
    if not c.open:
        click.echo(f"closed: {c.outcome}")
        return
    click.echo("allowed now:")
    for a in c.allowed:
        answers = f" {'|'.join(a.answers)}" if a.answers else ""
        click.echo(f"  {a.name}{answers}  ({a.role.value}) {a.text}")


def _print_case(c: api.CaseOut, *, steps: bool = True) -> None:
    click.echo(f"case {c.id}: {c.flow.value} {c.flow_title_sv}, client {c.client_ref}")
    click.echo(f"state: {c.state}: {c.state_description}")
    if steps and c.steps:
        click.echo("steps:")
        for s in c.steps:
            answer = f" {s.answer}" if s.answer else ""
            click.echo(f"  {s.seq:>5} {_when(s.at)} {s.seed:<8} {s.action}{answer} -> "
                       f"{s.to_state}  by {s.actor} ({s.acting_as.value})")
            if s.documentation:
                click.echo(f"        document: {s.documentation}")
    _print_allowed(c)


@case.command("open")
@click.argument("flow", type=click.Choice([f.value for f in Flow]))
@click.argument("client")
@click.option("--provider-unit", default=None, metavar="UNIT",
              help="2a: the provider the order goes to; 2b: default the client's provider.")
@click.option("--assessor-unit", default=None, metavar="UNIT",
              help="Only for an admin opening 2a/2b (an assessor's own unit is used).")
@click.option("--note", default=None, help="Free text kept with the case.")
@as_option
@json_option
@click.pass_context
def case_open(ctx: click.Context, flow: str, client: str, provider_unit: str | None,
              assessor_unit: str | None, note: str | None, as_name: str | None,
              as_json: bool) -> None:
    """Open a case of FLOW (2a, 2b, 3a, 3b) for CLIENT."""
    with acting(ctx, as_name) as (routine, actor):
        opened = routine.cases.open(flow, client, actor, provider_unit=provider_unit,
                                   assessor_unit=assessor_unit, note=note)
        answer = api.CaseAnswer(case=api.case_out(opened), server_time=routine.central.now())
    show(answer, as_json, lambda: _print_case(answer.case))


@case.command("list")
@click.option("--client", default=None, metavar="REF", help="Only this client's cases.")
@click.option("--flow", type=click.Choice([f.value for f in Flow]), default=None,
              help="Only cases of this flow.")
@click.option("--open", "open_only", is_flag=True, help="Only open cases.")
@as_option
@json_option
@click.pass_context
def case_list(ctx: click.Context, client: str | None, flow: str | None, open_only: bool,
              as_name: str | None, as_json: bool) -> None:
    """List the cases the principal may see, oldest first."""
    with acting(ctx, as_name) as (routine, actor):
        found = routine.cases.find(client_ref=client, flow=flow, open_only=open_only, actor=actor)
        answer = api.CaseList(cases=[api.case_out(c) for c in found],
                              server_time=routine.central.now())

    def human() -> None:
        if not answer.cases:
            click.echo("no cases")
        for c in answer.cases:
            click.echo(f"{c.id:>6} {c.flow.value} {c.client_ref:<14} {c.state:<24} "
                       f"{'open' if c.open else f'closed ({c.outcome})'}")
    show(answer, as_json, human)


@case.command("show")
@click.argument("case_id", type=click.IntRange(min=1), metavar="ID")
@as_option
@json_option
@click.pass_context
def case_show(ctx: click.Context, case_id: int, as_name: str | None, as_json: bool) -> None:
    """Show case ID: its steps (the audit trail) and the actions allowed now."""
    with acting(ctx, as_name) as (routine, actor):
        answer = api.CaseAnswer(case=api.case_out(routine.cases.get(case_id, actor=actor)),
                                server_time=routine.central.now())
    show(answer, as_json, lambda: _print_case(answer.case))


@case.command("act")
@click.argument("case_id", type=click.IntRange(min=1), metavar="ID")
@click.argument("action")
@click.argument("answer", required=False)
@click.option("--check", "checks", multiple=True, metavar="CHECKPOINT",
              help="An on-site checkpoint ticked (knob_labelled_with_key_number, "
                   "door_restored_with_original_knob, job_marked_done); repeatable.")
@click.option("--note", default=None, help="Free text kept with the step.")
@as_option
@json_option
@click.pass_context
def case_act(ctx: click.Context, case_id: int, action: str, answer: str | None,
             checks: tuple[str, ...], note: str | None, as_name: str | None,
             as_json: bool) -> None:
    """Take ACTION (with its ANSWER, for a question) on case ID.

    'case show ID' lists the actions allowed now; a refused step exits 4 naming the
    state and the actions allowed there. Booking steps: 'binder book'.
    """
    with acting(ctx, as_name) as (routine, actor):
        step = routine.cases.act(case_id, action, answer, actor, note=note, checks=checks)
        result = api.StepAnswer(step=api.step_out(step),
                                case=api.case_out(routine.cases.get(case_id, actor=actor)),
                                server_time=routine.central.now())

    def human() -> None:
        s = result.step
        click.echo(f"case {case_id}: {s.action}{f' {s.answer}' if s.answer else ''} "
                   f"({s.seed}): {s.from_state} -> {s.to_state}")
        if s.documentation:
            click.echo(f"document in {texts.CASE_SYSTEM}, {texts.DOCUMENTATION_FIELD}:")
            click.echo(s.documentation)
        _print_allowed(result.case)
    show(result, as_json, human)


# --- clients: documentation, implementations ------------------------------------------------


@main.group()
def client() -> None:
    """A client's documentation texts and implementations (verkställigheter)."""


@client.command("docs")
@click.argument("client_ref", metavar="CLIENT")
@as_option
@json_option
@click.pass_context
def client_docs(ctx: click.Context, client_ref: str, as_name: str | None,
                as_json: bool) -> None:
    """The verbatim texts to paste into the case system for CLIENT, oldest first."""
    with acting(ctx, as_name) as (routine, actor):
        answer = api.documentation_answer(
            client_ref, routine.cases.documentation(client_ref, actor=actor), routine.central.now())

    def human() -> None:
        if not answer.texts:
            click.echo(f"nothing to document for {client_ref}")
        for d in answer.texts:
            click.echo(f"# {answer.system}, {d.field} (case {d.case_id}, {d.seed}, "
                       f"{_when(d.at)}, {d.who}):")
            click.echo(d.text)
    show(answer, as_json, human)


@client.group("implementation")
def implementation() -> None:
    """Start, end and list a client's implementations (home care, safety alarm, night help)."""


def _implementation_answer(routine: RoutineStore, value: Any) -> api.ImplementationAnswer:
    return api.ImplementationAnswer(implementation=api.ImplementationOut.model_validate(value),
                                    server_time=routine.central.now())


def _print_implementation(i: api.ImplementationOut) -> None:
    ended = f"ended {i.ended_on} by {i.ended_by}" if i.ended_on else "running"
    click.echo(f"{i.client_ref} {i.kind.value:<13} {i.unit:<18} from {i.started_on} {ended}")


@implementation.command("start")
@click.argument("client_ref", metavar="CLIENT")
@kind_argument
@click.option("--unit", required=True, metavar="UNIT", help="The unit delivering it.")
@on_option
@as_option
@json_option
@click.pass_context
def implementation_start(ctx: click.Context, client_ref: str, kind: str, unit: str,
                         on_day: str | None, as_name: str | None, as_json: bool) -> None:
    """Record that UNIT delivers KIND to CLIENT from --on (default today)."""
    with acting(ctx, as_name) as (routine, actor):
        started = routine.implementations.start(
            client_ref, kind, unit, _date_or_today(on_day, routine),
            actor)
        answer = _implementation_answer(routine, started)
    show(answer, as_json, lambda: _print_implementation(answer.implementation))


@implementation.command("end")
@click.argument("client_ref", metavar="CLIENT")
@kind_argument
@on_option
@as_option
@json_option
@click.pass_context
def implementation_end(ctx: click.Context, client_ref: str, kind: str, on_day: str | None,
                       as_name: str | None, as_json: bool) -> None:
    """End CLIENT's running KIND implementation on --on (default today)."""
    with acting(ctx, as_name) as (routine, actor):
        ended = routine.implementations.end(
            client_ref, kind, _date_or_today(on_day, routine), actor)
        answer = _implementation_answer(routine, ended)
    show(answer, as_json, lambda: _print_implementation(answer.implementation))


@implementation.command("list")
@click.argument("client_ref", metavar="CLIENT")
@as_option
@json_option
@click.pass_context
def implementation_list(ctx: click.Context, client_ref: str, as_name: str | None,
                        as_json: bool) -> None:
    """List CLIENT's implementations, running and ended."""
    with acting(ctx, as_name) as (routine, actor):
        found = routine.implementations.of_client(client_ref, actor=actor)
        answer = api.ImplementationList(
            client_ref=client_ref,
            implementations=[api.ImplementationOut.model_validate(i) for i in found],
            server_time=routine.central.now())

    def human() -> None:
        if not answer.implementations:
            click.echo(f"no implementations for {client_ref}")
        for i in answer.implementations:
            _print_implementation(i)
    show(answer, as_json, human)


# --- the "Digitala LÅS" inbox ----------------------------------------------------------------


@main.group()
def inbox() -> None:
    """The alarm group's "Digitala LÅS" inbox of lock requests."""


def _print_message(m: api.MessageOut) -> None:
    keys = {True: "keys exist", False: "keys missing", None: ""}[m.keys_exist]
    handled = f"handled by {m.handled_by}" if m.handled_at else "unhandled"
    click.echo(f"{m.id:>6} {_when(m.sent_at)} {m.kind.value:<8} {m.client_ref:<14} case "
               f"{m.case_id} from {m.from_unit or m.sent_by} {keys} ({handled})")


@inbox.command("list")
@click.option("--all", "include_handled", is_flag=True, help="Handled messages too.")
@as_option
@json_option
@click.pass_context
def inbox_list(ctx: click.Context, include_handled: bool, as_name: str | None,
               as_json: bool) -> None:
    """List the inbox's messages (unhandled only, unless --all)."""
    with acting(ctx, as_name) as (routine, actor):
        found = routine.inbox.messages(actor, include_handled=include_handled)
        answer = api.InboxList(messages=[api.MessageOut.model_validate(m) for m in found],
                               server_time=routine.central.now())

    def human() -> None:
        if not answer.messages:
            click.echo("the inbox is empty")
        for m in answer.messages:
            _print_message(m)
    show(answer, as_json, human)


@inbox.command("handle")
@click.argument("message_id", type=click.IntRange(min=1), metavar="ID")
@as_option
@json_option
@click.pass_context
def inbox_handle(ctx: click.Context, message_id: int, as_name: str | None,
                 as_json: bool) -> None:
    """Mark message ID handled (taking its case's next step does so too)."""
    with acting(ctx, as_name) as (routine, actor):
        answer = api.MessageAnswer(
            message=api.MessageOut.model_validate(routine.inbox.handle(message_id, actor)),
            server_time=routine.central.now())
    show(answer, as_json, lambda: _print_message(answer.message))


# --- the binder and the shared schedule ----------------------------------------------------


@main.group()
def binder() -> None:
    """The fitters' binder of install and removal jobs, and booking them."""


def _print_booking(b: api.BookingOut) -> None:
    click.echo(f"{_when(b.start)}-{b.end.astimezone(LOCAL_ZONE):%H:%M} {b.fitter:<16} job "
               f"{b.job_id} {b.kind.value:<8} client {b.client_ref} (case {b.case_id})")


def _print_jobs(jobs: list[api.JobOut]) -> None:
    if not jobs:
        click.echo("no jobs")
    for j in jobs:
        due = f" due {j.due_on}" if j.due_on else ""
        booked = (f" booked {j.booking.fitter} {_when(j.booking.start)}" if j.booking
                  else " not booked")
        done = f" done by {j.done_by}" if j.done_at else ""
        click.echo(f"{j.id:>6} {j.kind.value:<8} {j.client_ref:<14} case {j.case_id}{due}"
                   f"{booked}{done}")


@binder.command("list")
@click.option("--kind", type=click.Choice([k.value for k in JobKind]), default=None,
              help="Only install or removal jobs.")
@click.option("--all", "include_done", is_flag=True, help="Done jobs too.")
@click.option("--fitter", default=None, metavar="NAME", help="Only jobs booked for this fitter.")
@as_option
@json_option
@click.pass_context
def binder_list(ctx: click.Context, kind: str | None, include_done: bool, fitter: str | None,
                as_name: str | None, as_json: bool) -> None:
    """List the binder's jobs with their bookings, oldest first."""
    with acting(ctx, as_name) as (routine, actor):
        found = routine.binder.jobs(actor, kind=kind, open_only=not include_done, fitter=fitter)
        answer = api.JobList(jobs=[api.JobOut.model_validate(j) for j in found],
                             server_time=routine.central.now())
    show(answer, as_json, lambda: _print_jobs(answer.jobs))


@binder.command("jobs")
@click.option("--fitter", default=None, metavar="NAME",
              help="Whose jobs (a fitter sees their own; an administrator names one).")
@as_option
@json_option
@click.pass_context
def binder_jobs(ctx: click.Context, fitter: str | None, as_name: str | None,
                as_json: bool) -> None:
    """A fitter's open jobs by appointment (what the fitter's agent pulls)."""
    with acting(ctx, as_name) as (routine, actor):
        found = routine.binder.for_fitter(actor, fitter)
        answer = api.JobList(jobs=[api.JobOut.model_validate(j) for j in found],
                             server_time=routine.central.now())
    show(answer, as_json, lambda: _print_jobs(answer.jobs))


@binder.command("book")
@click.argument("job_id", type=click.IntRange(min=1), metavar="JOB")
@click.option("--fitter", required=True, metavar="NAME", help="The fitter who goes.")
@click.option("--start", required=True, callback=_time, metavar="TIME",
              help="ISO 8601, e.g. 2026-12-07T09:00 (local time unless an offset is given).")
@click.option("--end", required=True, callback=_time, metavar="TIME", help="As --start.")
@click.option("--note", default=None, help="Free text kept with the booking step.")
@as_option
@json_option
@click.pass_context
def binder_book(ctx: click.Context, job_id: int, fitter: str, start: datetime, end: datetime,
                note: str | None, as_name: str | None, as_json: bool) -> None:
    """Book JOB for a fitter in the shared schedule (again to move it); exits 4 when the
    fitter is already booked then."""
    with acting(ctx, as_name) as (routine, actor):
        booking = routine.schedule.book(job_id, fitter, start, end, actor, note=note)
        answer = api.BookingAnswer(booking=api.BookingOut.model_validate(booking),
                                   server_time=routine.central.now())
    show(answer, as_json, lambda: _print_booking(answer.booking))


@main.command("schedule")
@click.option("--fitter", default=None, metavar="NAME", help="Only this fitter's bookings.")
@day_option
@as_option
@json_option
@click.pass_context
def schedule_cmd(ctx: click.Context, fitter: str | None, day: str | None, as_name: str | None,
                 as_json: bool) -> None:
    """The alarm group's shared schedule: live bookings by start."""
    with acting(ctx, as_name) as (routine, actor):
        found = routine.schedule.bookings(actor=actor, fitter=fitter,
                                          day=_date(day, routine))
        answer = api.Schedule(bookings=[api.BookingOut.model_validate(b) for b in found],
                              server_time=routine.central.now())

    def human() -> None:
        if not answer.bookings:
            click.echo("nothing booked")
        for b in answer.bookings:
            _print_booking(b)
    show(answer, as_json, human)
