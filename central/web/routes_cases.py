"""The start page per role, the cases list (``/arenden``) and a case (``/arenden/{id}``)
with its audit trail and one form per step the signed-in role may take now."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from central.cases import access, facts
from central.cases.values import Case
from central.web import labels, views_binder, views_cases, views_keys, views_reports
from central.web.common import MAX_ID, problem_of, redirect, routine_of
from central.web.errors import STORE_ERRORS, Problem, invalid
from central.web.security import Post, Posted, SignedIn
from central.web.sessions import Session
from central.web.templating import render
from routine import texts
from routine.flows import Flow, machine

router = APIRouter(include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Short = Annotated[str | None, Query(max_length=128)]
ASSESSED = (Flow.INSTALL_ASSESSED.value, Flow.REMOVE_ASSESSED.value)


# --- the start page ----------------------------------------------------------------------


@router.get("/")
def start(request: Request, session: SignedIn) -> Response:
    return _start(request, session)


def _start(request: Request, session: Session, *, problem: Problem | None = None,
           values: dict[str, str] | None = None) -> Response:
    routine, me = routine_of(request), session.principal
    context: dict[str, Any] = {"values": values or {}, "texts": texts}
    try:
        if me.role in ("assessor", "provider", "admin"):
            found = views_cases.cases(routine, me)
            context["cases"] = [c for c in found if c.open or me.role == "assessor"]
        if me.role == "assessor":
            context["provider_units"] = views_cases.units_of(routine, "provider")
        if me.role == "provider":  # the texts of closed cases too: they are pasted after
            clients = dict.fromkeys(c.client_ref for c in found)
            context["documentation"] = [d for client in clients
                                        for d in views_cases.documentation(routine, me, client)]
        if me.role in ("alarm_admin", "admin") and _alarm_group(request, session):
            context["inbox"] = views_binder.inbox(routine, me)
            context["jobs"] = views_binder.binder(routine, me)
            context["removals"] = views_reports.removals(routine, me)
        if me.role == "fitter":
            context["my_jobs"] = views_binder.my_jobs(routine, me)
        if me.role == "admin":
            context["alerts"] = views_reports.alerts(routine, me)
            context["clients"] = views_keys.clients(routine, me)
    except STORE_ERRORS as exc:
        problem = problem or problem_of(request, exc)
    return render(request, "start.html", session, problem=problem, **context)


def _alarm_group(request: Request, session: Session) -> bool:
    me = session.principal
    return access.is_admin(me) or me.unit == routine_of(request).units.alarm_group


# --- cases ---------------------------------------------------------------------------------


@router.get("/arenden")
def case_list(request: Request, session: SignedIn, flode: Short = None, brukare: Short = None,
              visa: Short = None) -> Response:
    routine, me = routine_of(request), session.principal
    flow = flode if flode in {f.value for f in Flow} else None
    found: list[Case] = []
    problem = None
    try:
        found = views_cases.cases(routine, me, flow=flow, client=brukare or None,
                                  open_only=visa != "alla")
    except STORE_ERRORS as exc:
        problem = problem_of(request, exc)
    return render(request, "cases.html", session, problem=problem, cases=found,
                  flows=[f.value for f in Flow], flode=flow or "", brukare=brukare or "",
                  visa=visa or "")


@router.post("/arenden")
def open_case(request: Request, posted: Post) -> Response:
    """An assessor opens a 2a/2b case (an order, a cancellation); an alarm admin 3a/3b."""
    routine, me = routine_of(request), posted.session.principal
    values = {k: posted.get(k) for k in ("flode", "brukare", "utforare", "anteckning")}
    if values["flode"] not in {f.value for f in Flow}:
        return _start(request, posted.session, values=values,
                      problem=invalid("Välj flöde: 2a eller 2b.", flode="Välj flöde."))
    if not values["brukare"]:
        return _start(request, posted.session, values=values,
                      problem=invalid("Fyll i brukarens referens.", brukare="Fyll i."))
    try:
        case = views_cases.open_case(routine, me, values["flode"], values["brukare"],
                                     provider_unit=values["utforare"] or None,
                                     note=values["anteckning"] or None)
    except STORE_ERRORS as exc:
        return _start(request, posted.session, values=values, problem=problem_of(request, exc))
    return redirect(f"/arenden/{case.id}", "oppnat")


@router.get("/arenden/{case_id}")
def show_case(request: Request, session: SignedIn, case_id: Id) -> Response:
    return case_page(request, session, case_id)


def case_page(request: Request, session: Session, case_id: int, *,
              problem: Problem | None = None, tried: str = "",
              values: dict[str, Any] | None = None, template: str = "case.html",
              **extra: Any) -> Response:
    """The case with its trail and forms (``tried``: the action whose form had an error)."""
    routine, me = routine_of(request), session.principal
    try:
        case = views_cases.case(routine, me, case_id)
        documentation = [d for d in views_cases.documentation(routine, me, case.client_ref)
                         if d.case_id == case.id]
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    return render(request, template, session, problem=problem, case=case,
                  documentation=documentation, forms=step_forms(me, case),
                  job=views_cases.job_of(routine, me, case.id),
                  state_sv=_state(case), tried=tried, values=values or {}, texts=texts,
                  **extra)


def _state(case: Case) -> str:
    return labels.STATES.get(case.state, case.state)


def step_forms(me: access.Actor, case: Case) -> list[dict[str, Any]]:
    """One form per action the signed-in principal may take now: its seed words, answers,
    the checkpoints to tick by hand and those the centre reads from its data."""
    m = machine(case.flow)
    forms = []
    for action in views_cases.mine(me, case.allowed):
        required = dict.fromkeys(f for t in m.transitions()
                                 if t.state == case.state and t.action == action.name
                                 for f in t.requires)
        forms.append({"action": action, "booking": action.name.startswith("book_"),
                      "ticks": [f for f in required if f in facts.CONFIRMED],
                      "derived": [f for f in required if f not in facts.CONFIRMED]})
    return forms


def attempt_step(request: Request, posted: Posted, case_id: int,
                 ) -> tuple[Problem | None, str, dict[str, Any]]:
    """Take the posted step on the case: (the refusal or None, the action, the form's
    values to show again with a refusal)."""
    routine, me = routine_of(request), posted.session.principal
    action, answer = posted.get("atgard"), posted.get("svar") or None
    note, ticked = posted.get("anteckning"), posted.all("kontroll")
    values = {"svar": answer or "", "anteckning": note, "kontroll": ticked}
    try:
        views_cases.act(routine, me, case_id, action, answer, note=note, checks=ticked)
    except STORE_ERRORS as exc:
        return problem_of(request, exc), action, values
    return None, action, values


@router.post("/arenden/{case_id}/steg")
def take_step(request: Request, posted: Post, case_id: Id) -> Response:
    problem, action, values = attempt_step(request, posted, case_id)
    if problem is not None:
        return case_page(request, posted.session, case_id, problem=problem, tried=action,
                         values=values)
    return redirect(f"/arenden/{case_id}", "steg")


__all__ = ["ASSESSED", "attempt_step", "case_page", "router"]
