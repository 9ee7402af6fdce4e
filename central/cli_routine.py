"""The routine's commands of ``nyckelfri-central``: thin commands over the routine store.

Each command works as a named principal (``--as NAME``, on the command or before it,
or ``NYCKELFRI_CENTRAL_AS``), whose role and unit the routine store checks exactly as
it does for the HTTP API's tokens; administrators enrol principals with ``principal
add NAME --role R --unit U``. ``--json`` prints the same document the HTTP API answers
(:mod:`central.http.routes_routine`).

Exit codes: 0 ok, 2 usage, 4 refused (by the routine: the message names the state and
the actions allowed there; by the principal's role or unit; or conflicting data such as
a double booking), 5 data (unknown case, job or principal; bad input), 6 database
unavailable.

These commands add themselves to :data:`central.cli.main` when :mod:`central.cli` is
imported (it imports this module at its end).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from central.cases import proofs
from central.cases.access import Actor
from central.cases.store import RoutineStore
from central.cases.values import ImplementationKind, JobKind
from central.cli import (
    ENROLMENT_WARNING,
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    emit_json,
    json_option,
    main,
    open_store,
)
from central.errors import CentralError
from central.http import routes_routine as api
from central.http.problems import store_error_problem
from central.store import DEFAULT_DAY_ZONE, ROLES
from routine import texts
from routine.flows import Flow, RoutineError
from routine.keys import KeyUnit
from sync.protocol import Answer

F = TypeVar("F", bound=Callable[..., Any])
# HTTP statuses the API answers for a refusal (role/unit, routine, conflicting data).
REFUSAL_STATUSES = frozenset({403, 409})
LOCAL_ZONE = ZoneInfo(DEFAULT_DAY_ZONE)

# --- plumbing: who acts, errors, output --------------------------------------------------------


def as_option(f: F) -> F:
    """``--as NAME`` on a command (wins over the one given before the command)."""
    return click.option("--as", "as_name", default=None, metavar="NAME",
                        help="Act as this principal (its role and unit apply).")(f)


def refusal(exc: RoutineError) -> str:
    """The routine's message, then its state and the actions allowed there, one a line."""
    lines = [str(exc)]
    if exc.state:
        lines.append(f"  state: {exc.state}")
    if exc.allowed:
        lines.append("  allowed now:")
        lines += [f"    {a.describe()}: {a.text}" for a in exc.allowed]
    elif exc.state and not exc.unmet:
        lines.append("  allowed now: nothing")
    return "\n".join(lines)


@contextmanager
def refusals_to_exit(ctx: click.Context) -> Iterator[None]:
    """Refusals exit 4, with the reason; other store errors go on to :func:`open_store`
    (5 data, 6 database). The same classification as the HTTP API's statuses."""
    try:
        yield
    except RoutineError as exc:
        if ctx.find_root().obj["debug"]:
            raise
        raise CliError(f"refused: {refusal(exc)}", EXIT_REFUSED) from exc
    except CentralError as exc:
        problem = store_error_problem(exc)
        if problem.status not in REFUSAL_STATUSES or ctx.find_root().obj["debug"]:
            raise
        raise CliError(f"refused: {exc}; {problem.advice}", EXIT_REFUSED) from exc


@contextmanager
def routine_store(ctx: click.Context) -> Iterator[RoutineStore]:
    with open_store(ctx) as store, refusals_to_exit(ctx):
        yield RoutineStore(store)


@contextmanager
def acting(ctx: click.Context, as_name: str | None) -> Iterator[tuple[RoutineStore, Actor]]:
    """The routine store and the principal named by ``--as`` (usage error without one)."""
    name = as_name or ctx.find_root().obj.get("as")
    if not name:
        raise CliError("say who acts: --as NAME (a principal enrolled with 'nyckelfri-central "
                       "principal add NAME --role R --unit U')", EXIT_USAGE)
    with routine_store(ctx) as routine:
        yield routine, routine.principals.get(name)


def show(answer: Answer, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        emit_json(answer)
    else:
        human()


def _when(value: datetime | None) -> str:
    return value.astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M") if value else "-"


def _date(value: str | None, routine: RoutineStore) -> date | None:
    """A ``_day``-checked option as a date; 'today' by the centre's clock and calendar."""
    if value is None:
        return None
    return routine.central.today() if value == "today" else date.fromisoformat(value)


def _date_or_today(value: str | None, routine: RoutineStore) -> date:
    return _date(value, routine) or routine.central.today()


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "today":
        return value
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not YYYY-MM-DD or 'today'") from None


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """ISO 8601; without an offset, local time of the municipality (Europe/Stockholm)."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time like 2026-12-07T09:00") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=LOCAL_ZONE)


day_option = click.option("--day", callback=_day, default=None, metavar="YYYY-MM-DD|today",
                          help=f"The day ({DEFAULT_DAY_ZONE} calendar).")
today_option = click.option("--today", callback=_day, default=None,
                            metavar="YYYY-MM-DD|today",
                            help="Count deadlines as of this day (default: the centre's).")
on_option = click.option("--on", "on_day", callback=_day, default=None,
                         metavar="YYYY-MM-DD|today", help="The day (default: today).")
unit_argument = click.argument("unit", type=click.Choice([u.value for u in KeyUnit]))
kind_argument = click.argument("kind",
                               type=click.Choice([k.value for k in ImplementationKind]))


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

