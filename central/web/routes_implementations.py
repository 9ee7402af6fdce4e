"""A client's implementations (verkställigheter, ``/verkstallighet/{client}``): which unit
delivers home care, safety alarm or night help, started and ended by the role the routine
gives each (the provider its own home care; the alarm group the alarms)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from central.cases import access
from central.cases.values import ImplementationKind
from central.web import views_cases
from central.web.common import parse_day, problem_of, redirect, routine_of
from central.web.errors import STORE_ERRORS, Problem, invalid
from central.web.security import Post, SignedIn
from central.web.sessions import Session
from central.web.templating import render

router = APIRouter(include_in_schema=False)
Client = Annotated[str, Path(min_length=1, max_length=128)]
KINDS = [k.value for k in ImplementationKind]


def _url(client: str) -> str:
    return f"/verkstallighet/{quote(client, safe='')}"


def _mine(role: str) -> list[str]:
    """The kinds a principal of ``role`` may start or end (access.IMPLEMENTATION_ROLES)."""
    return [k.value for k, r in access.IMPLEMENTATION_ROLES.items() if role == r.value]


@router.get("/verkstallighet/{client}")
def implementations(request: Request, session: SignedIn, client: Client) -> Response:
    return _page(request, session, client)


def _page(request: Request, session: Session, client: str, *,
          problem: Problem | None = None, values: dict[str, Any] | None = None) -> Response:
    routine, me = routine_of(request), session.principal
    try:
        found = views_cases.implementations(routine, me, client)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session,
                      problem=problem_of(request, exc))
    today = routine.central.today().isoformat()
    defaults = {"insats": "", "enhet": me.unit or "", "fran": today, "till": today}
    return render(request, "implementations.html", session, problem=problem, client=client,
                  implementations=found, kinds=_mine(me.role), url=_url(client),
                  values={**defaults, **(values or {})})


@router.post("/verkstallighet/{client}/starta")
def start(request: Request, posted: Post, client: Client) -> Response:
    values = {k: posted.get(k) for k in ("insats", "enhet", "fran")}
    kind, day = values["insats"], parse_day(values["fran"])
    if kind not in KINDS:
        return _page(request, posted.session, client, values=values,
                     problem=invalid("Välj vilken insats som verkställs.", insats="Välj."))
    if day is None:
        return _page(request, posted.session, client, values=values,
                     problem=invalid("Ange från vilken dag (ÅÅÅÅ-MM-DD).", fran="Fyll i."))
    try:
        views_cases.start_implementation(routine_of(request), posted.session.principal,
                                         client, kind, values["enhet"], day)
    except STORE_ERRORS as exc:
        return _page(request, posted.session, client, values=values,
                     problem=problem_of(request, exc))
    return redirect(_url(client), "verkstalld")


@router.post("/verkstallighet/{client}/avsluta")
def end(request: Request, posted: Post, client: Client) -> Response:
    kind, day = posted.get("insats"), parse_day(posted.get("till"))
    values = {"till": posted.get("till")}
    if kind not in KINDS:
        return _page(request, posted.session, client, values=values,
                     problem=invalid("Välj vilken insats som avslutas."))
    if day is None:
        return _page(request, posted.session, client, values=values,
                     problem=invalid("Ange vilken dag insatsen avslutades (ÅÅÅÅ-MM-DD).",
                                     till="Fyll i."))
    try:
        views_cases.end_implementation(routine_of(request), posted.session.principal,
                                       client, kind, day)
    except STORE_ERRORS as exc:
        return _page(request, posted.session, client, values=values,
                     problem=problem_of(request, exc))
    return redirect(_url(client), "avslutad")
