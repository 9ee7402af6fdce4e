"""What every route module shares: the stores of the request, ids and dates from forms."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse

from central.cases.store import RoutineStore
from central.web.errors import Problem, explain
from central.web.templating import SECURITY_HEADERS

MAX_ID = 2**63 - 1


def routine_of(request: Request) -> RoutineStore:
    routine: RoutineStore = request.app.state.routine
    return routine


def redirect(path: str, done: str | None = None) -> RedirectResponse:
    """303 to ``path`` (after a form), with the confirmation ``done`` (templating.MESSAGES)."""
    if done:
        path += ("&" if "?" in path else "?") + f"klart={done}"
    return RedirectResponse(path, 303, headers=SECURITY_HEADERS)


def parse_int(value: Any, low: int = 1, high: int = MAX_ID) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


def parse_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def parse_time(value: str | None) -> time | None:
    try:
        return time.fromisoformat(value) if value else None
    except ValueError:
        return None


def local_datetime(routine: RoutineStore, day: date, at: time) -> datetime:
    """A local wall-clock time of the centre's day zone, as an aware datetime."""
    return datetime.combine(day, at, routine.central.day_zone)


def problem_of(request: Request, exc: BaseException) -> Problem:
    """What the store refused, said for the page (times in the centre's day zone)."""
    return explain(exc, routine_of(request).central.day_zone)
