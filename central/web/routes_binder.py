"""The "Digitala LÅS" inbox (``/inkorg``), the binder (``/parm``, ``/parm/{job}`` with
its booking form) and the shared schedule as a week (``/schema?vecka=YYYY-Www``)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from central.cases.values import Booking
from central.web import views_binder, views_cases
from central.web.common import (
    MAX_ID,
    local_datetime,
    parse_day,
    parse_int,
    parse_time,
    problem_of,
    redirect,
    routine_of,
)
from central.web.errors import STORE_ERRORS, Problem, invalid
from central.web.routes_cases import attempt_step, case_page
from central.web.security import Post, Posted, SignedIn
from central.web.sessions import Session
from central.web.templating import render

router = APIRouter(include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")


# --- the inbox ---------------------------------------------------------------------------


@router.get("/inkorg")
def inbox(request: Request, session: SignedIn,
          visa: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    return _inbox(request, session, visa == "alla")


def _inbox(request: Request, session: Session, everything: bool = False,
           problem: Problem | None = None) -> Response:
    try:
        messages = views_binder.inbox(routine_of(request), session.principal,
                                      include_handled=everything)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    return render(request, "inbox.html", session, problem=problem, messages=messages,
                  everything=everything)


@router.post("/inkorg/{message_id}/hanterad")
def handled(request: Request, posted: Post, message_id: Id) -> Response:
    try:
        views_binder.handle(routine_of(request), posted.session.principal, message_id)
    except STORE_ERRORS as exc:
        return _inbox(request, posted.session, problem=problem_of(request, exc))
    return redirect("/inkorg", "hanterat")


# --- the binder --------------------------------------------------------------------------


@router.get("/parm")
def binder(request: Request, session: SignedIn,
           visa: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    try:
        jobs = views_binder.binder(routine_of(request), session.principal,
                                   open_only=visa != "alla")
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    return render(request, "binder.html", session, jobs=jobs, everything=visa == "alla")


@router.get("/parm/{job_id}")
def job_page(request: Request, session: SignedIn, job_id: Id) -> Response:
    return _job(request, session, job_id)


@router.post("/parm/{job_id}/steg")
def job_step(request: Request, posted: Post, job_id: Id) -> Response:
    """A step taken on the job's page: a refusal is shown there, with what was filled in."""
    try:
        job = views_binder.job(routine_of(request), posted.session.principal, job_id)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", posted.session, problem=problem_of(request, exc))
    problem, action, values = attempt_step(request, posted, job.case_id)
    if problem is not None:
        return _job(request, posted.session, job_id, problem=problem, tried=action,
                    step_values=values)
    return redirect(f"/parm/{job_id}", "steg")


def _job(request: Request, session: Session, job_id: int, *, problem: Problem | None = None,
         values: dict[str, Any] | None = None, tried: str = "",
         step_values: dict[str, Any] | None = None) -> Response:
    routine, me = routine_of(request), session.principal
    try:
        job = views_binder.job(routine, me, job_id)
        door = views_binder.at_the_door(routine, me, job)
        sent = views_binder.checkpoints(routine, me, job_id)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    fitters = [me.name] if me.role == "fitter" else views_cases.fitters(routine)
    refused = [c for c in sent or () if c.outcome != "applied"]
    return case_page(request, session, job.case_id, problem=problem, template="job.html",
                     tried=tried, values=step_values,
                     the_job=job, door=door, refused=refused, fitters=fitters,
                     booking_values=values or _defaults(request, session),
                     back=f"/parm/{job_id}")


def _defaults(request: Request, session: Session) -> dict[str, str]:
    today = routine_of(request).central.today()
    return {"montor": session.principal.name if session.principal.role == "fitter" else "",
            "dag": (today + timedelta(days=1)).isoformat(), "fran": "09:00", "till": "10:00",
            "anteckning": ""}


def _booking_values(posted: Posted) -> dict[str, str]:
    return {k: posted.get(k) for k in ("montor", "dag", "fran", "till", "anteckning", "jobb")}


def _book(request: Request, posted: Posted, job_id: int | None,
          values: dict[str, str]) -> Booking | Problem:
    routine = routine_of(request)
    day, start, end = (parse_day(values["dag"]), parse_time(values["fran"]),
                       parse_time(values["till"]))
    if job_id is None:
        return invalid("Välj ett jobb ur pärmen.", jobb="Välj jobb.")
    if not values["montor"]:
        return invalid("Välj montör.", montor="Välj montör.")
    if day is None or start is None or end is None:
        return invalid("Fyll i dag (ÅÅÅÅ-MM-DD) och tider (TT:MM).", dag="Kontrollera.")
    if end <= start:
        return invalid("Sluttiden ska vara efter starttiden.", till="Efter starttiden.")
    try:
        return views_binder.book(routine, posted.session.principal, job_id, values["montor"],
                                 local_datetime(routine, day, start),
                                 local_datetime(routine, day, end), values["anteckning"])
    except STORE_ERRORS as exc:
        return problem_of(request, exc)


@router.post("/parm/{job_id}/bokning")
def book_job(request: Request, posted: Post, job_id: Id) -> Response:
    values = _booking_values(posted)
    result = _book(request, posted, job_id, values)
    if isinstance(result, Problem):
        return _job(request, posted.session, job_id, problem=result, values=values)
    return _booked(request, result)


def _booked(request: Request, booking: Booking) -> Response:
    week = _week_of(booking.start.astimezone(routine_of(request).central.day_zone).date())
    return redirect(f"/schema?vecka={week}", "bokat")


# --- the shared schedule ------------------------------------------------------------------


def _week_of(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _monday(value: str | None, today: date) -> date:
    match = WEEK.fullmatch(value or "")
    if match:
        try:
            return date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            pass
    return today - timedelta(days=today.weekday())


@router.get("/schema")
def schedule(request: Request, session: SignedIn,
             vecka: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    return _schedule(request, session, vecka)


def _schedule(request: Request, session: Session, vecka: str | None, *,
              problem: Problem | None = None, values: dict[str, str] | None = None) -> Response:
    routine, me = routine_of(request), session.principal
    monday = _monday(vecka, routine.central.today())
    zone = routine.central.day_zone
    try:
        bookings = views_binder.week(routine, me, monday)
        jobs = views_binder.binder(routine, me)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    days = [monday + timedelta(days=i) for i in range(7)]
    by_day = {d: [b for b in bookings if b.start.astimezone(zone).date() <= d
                  <= b.end.astimezone(zone).date()] for d in days}
    fitters = [me.name] if me.role == "fitter" else views_cases.fitters(routine)
    return render(request, "schedule.html", session, problem=problem, days=days,
                  by_day=by_day, week=_week_of(monday),
                  previous=_week_of(monday - timedelta(days=7)),
                  next=_week_of(monday + timedelta(days=7)), jobs=jobs, fitters=fitters,
                  booking_values=values or {**_defaults(request, session), "jobb": "",
                                            "dag": monday.isoformat()})


@router.post("/schema/bokning")
def book_from_schedule(request: Request, posted: Post) -> Response:
    values = _booking_values(posted)
    result = _book(request, posted, parse_int(values["jobb"]), values)
    day = parse_day(values["dag"])
    if isinstance(result, Problem):
        return _schedule(request, posted.session, _week_of(day) if day else None,
                         problem=result, values=values)
    return _booked(request, result)
