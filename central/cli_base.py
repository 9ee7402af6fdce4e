"""What every ``nyckelfri-central`` command shares: the group, options, output, errors.

Errors carry their exit status (:attr:`central.errors.CentralError.exit_code`): 0 ok,
2 usage, 4 refused (by the routine, with its state and the actions allowed there; by
the principal's role or unit; or by conflicting data such as a double booking), 5 data
(unknown case, job, device or principal; bad input; unreadable file), 6 database
unavailable. Tracebacks only with ``--debug``.

Routine commands work as a named principal (``--as NAME``, on the command or before it,
or ``NYCKELFRI_CENTRAL_AS``), whose role and unit the services check exactly as they do
for the HTTP API's tokens and the web's sessions.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click

from central.cases.access import Actor
from central.cases.store import RoutineStore
from central.cases.values import ImplementationKind
from central.defaults import DATABASE_ENV, DEFAULT_DATABASE
from central.errors import (  # noqa: F401  (the exit statuses, for the commands and tests)
    EXIT_DATA,
    EXIT_DATABASE,
    EXIT_REFUSED,
    EXIT_USAGE,
    CentralError,
)
from central.store import DEFAULT_DAY_ZONE, CentralStore
from routine.flows import RoutineError
from routine.keys import KeyUnit
from sync.protocol import Answer

F = TypeVar("F", bound=Callable[..., Any])
LOCAL_ZONE = ZoneInfo(DEFAULT_DAY_ZONE)

ACTING_AS_ENV = "NYCKELFRI_CENTRAL_AS"
# Reference records fetched per round trip to the store by 'reference list'.
REFERENCE_LIST_PAGE = 1000
LOOPBACK = ("127.0.0.1", "::1", "localhost")
ENROLMENT_WARNING = ("This token is shown only now and will not be shown again: put it in the "
                 "device's configuration. Lost tokens cannot be recovered; revoke the device "
                 "and add it under a new name.")

log = logging.getLogger(__name__)


class CliError(click.ClickException):
    """A failure with advice; ``exit_code`` is the process's exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it per class


@contextmanager
def errors_to_exit(debug: bool) -> Iterator[None]:
    """Map the library's errors to exit codes, keeping their advice."""
    try:
        yield
    except CentralError as exc:
        if debug:
            raise
        raise CliError(str(exc), exc.exit_code) from exc


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database", envvar=DATABASE_ENV, default=DEFAULT_DATABASE, show_default=True,
              metavar="PATH|DSN",
              help=f"SQLite file, or a postgresql://... DSN (env {DATABASE_ENV}).")
@click.option("--as", "acting_as", envvar=ACTING_AS_ENV, default=None, metavar="NAME",
              help=f"Work the routine as this principal (env {ACTING_AS_ENV}); its role and "
                   "unit apply. Commands take --as too.")
@click.option("--debug", is_flag=True, help="Verbose logging and full tracebacks.")
@click.version_option(package_name="nyckelfri")
@click.pass_context
def main(ctx: click.Context, database: str, acting_as: str | None, debug: bool) -> None:
    """nyckelfri-central: the central store and sync service of nyckelfri.

    Field agents push the visits they registered; administrators enrol devices,
    keep the reference data (clients, tags, staff, locks) and read the visits.
    Assessors, providers, alarm administrators and fitters work the routine's
    cases, binder, keys and tags (principal, case, client, inbox, binder, ...).
    """
    ctx.obj = {"database": database, "debug": debug, "as": acting_as}
    _setup_logging(debug)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.find_root().obj["debug"])


@contextmanager
def open_store(ctx: click.Context) -> Iterator[CentralStore]:
    """The store named by ``--database`` (schema upgraded), errors mapped to exit codes."""
    with errors_to_exit(_debug(ctx)):
        store = CentralStore.open(ctx.find_root().obj["database"])
        try:
            yield store
        finally:
            store.close()


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    click.echo(json.dumps(_plain(data), ensure_ascii=False, sort_keys=True))


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


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
        if exc.exit_code != EXIT_REFUSED or ctx.find_root().obj["debug"]:
            raise
        raise CliError(f"refused: {exc}; {exc.advice}", EXIT_REFUSED) from exc


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


def _when_local(value: datetime | None) -> str:
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

