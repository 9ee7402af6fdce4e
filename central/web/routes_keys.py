"""The key register per client (``/nycklar``, ``/nycklar/{client}``, receipts) and the
NFC tags (``/etiketter``): stock, tags due to come down."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from central.web import views_cases, views_keys
from central.web.common import MAX_ID, parse_int, problem_of, redirect, routine_of
from central.web.errors import STORE_ERRORS, Problem, invalid
from central.web.security import Post, SignedIn
from central.web.sessions import Session
from central.web.templating import render
from routine.keys import KeyUnit
from routine.tags import TagState

router = APIRouter(include_in_schema=False)
Client = Annotated[str, Path(min_length=1, max_length=128)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
UNITS = [u.value for u in KeyUnit]


def _client_url(client: str) -> str:
    return f"/nycklar/{quote(client, safe='')}"


@router.get("/nycklar")
def clients(request: Request, session: SignedIn,
            brukare: Annotated[str | None, Query(max_length=128)] = None) -> Response:
    if brukare and brukare.strip():
        return redirect(_client_url(brukare.strip()))
    try:
        found = views_keys.clients(routine_of(request), session.principal)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    return render(request, "keys_clients.html", session, clients=found)


@router.get("/nycklar/{client}")
def client_keys(request: Request, session: SignedIn, client: Client) -> Response:
    return _client(request, session, client)


def _client(request: Request, session: Session, client: str, *,
            problem: Problem | None = None, values: dict[str, Any] | None = None) -> Response:
    routine, me = routine_of(request), session.principal
    try:
        keys = views_keys.keys(routine, me, client)
        receipts = views_keys.receipts(routine, me, client)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    return render(request, "keys.html", session, problem=problem, client=client, keys=keys,
                  receipts=receipts, units=UNITS, values=values or {},
                  client_url=_client_url(client))


@router.post("/nycklar/{client}/registrera")
def register(request: Request, posted: Post, client: Client) -> Response:
    values = {k: posted.get(k) for k in ("enhet", "nyckelnummer", "innehavare")}
    if values["enhet"] not in UNITS:
        return _client(request, posted.session, client, values=values,
                       problem=invalid("Välj vilken enhet som har nycklarna.", enhet="Välj."))
    try:
        views_keys.register(routine_of(request), posted.session.principal, client,
                            values["enhet"], values["nyckelnummer"], values["innehavare"])
    except STORE_ERRORS as exc:
        return _client(request, posted.session, client, values=values,
                       problem=problem_of(request, exc))
    return redirect(_client_url(client), "nyckel")


@router.post("/nycklar/{client}/aterlamna")
def return_keys(request: Request, posted: Post, client: Client) -> Response:
    values = {"retur_enhet": posted.get("retur_enhet"), "signatur": posted.get("signatur")}
    if values["retur_enhet"] not in UNITS:
        return _client(request, posted.session, client, values=values,
                       problem=invalid("Välj vems nycklar som lämnas tillbaka.",
                                       retur_enhet="Välj."))
    if not values["signatur"]:
        return _client(request, posted.session, client, values=values,
                       problem=invalid("Brukarens namnteckning (namnförtydligande) på "
                                       "nyckelkvittensen behövs.", signatur="Fyll i."))
    try:
        receipt = views_keys.return_keys(routine_of(request), posted.session.principal,
                                         client, values["retur_enhet"], values["signatur"])
    except STORE_ERRORS as exc:
        return _client(request, posted.session, client, values=values,
                       problem=problem_of(request, exc))
    return redirect(f"{_client_url(client)}/kvitto/{receipt.id}")


@router.get("/nycklar/{client}/kvitto/{receipt_id}")
def receipt(request: Request, session: SignedIn, client: Client, receipt_id: Id) -> Response:
    try:
        found = [r for r in views_keys.receipts(routine_of(request), session.principal, client)
                 if r.id == receipt_id]
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    if not found:
        return render(request, "refused.html", session,
                      problem=Problem("Det finns ingen sådan nyckelkvittens för brukaren.", 404))
    return render(request, "receipt.html", session, receipt=found[0], client=client,
                  client_url=_client_url(client))


# --- NFC tags ----------------------------------------------------------------------------


@router.get("/etiketter")
def tags(request: Request, session: SignedIn) -> Response:
    return _tags(request, session)


def _tags(request: Request, session: Session, *, problem: Problem | None = None,
          values: dict[str, str] | None = None) -> Response:
    routine, me = routine_of(request), session.principal
    units = ([me.unit] if me.role == "provider" and me.unit
             else views_cases.units_of(routine, "provider"))
    try:
        stock = views_keys.tag_stock(routine, me, units)
        found = [t for t in views_keys.tags(routine, me)
                 if me.role != "provider" or t.provider_unit == me.unit]
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    due = [t for t in found if t.state is TagState.DUE_DOWN]
    return render(request, "tags.html", session, problem=problem, stock=stock, due=due,
                  tags=found, values=values or {})


@router.post("/etiketter/lager")
def add_stock(request: Request, posted: Post) -> Response:
    values = {"antal": posted.get("antal")}
    count = parse_int(values["antal"], 1, 10_000)
    me = posted.session.principal
    if count is None:
        return _tags(request, posted.session, values=values,
                     problem=invalid("Ange antal etiketter (1-10 000).", antal="Ange antal."))
    try:
        views_keys.add_stock(routine_of(request), me, me.unit or "", count)
    except STORE_ERRORS as exc:
        return _tags(request, posted.session, values=values, problem=problem_of(request, exc))
    return redirect("/etiketter", "lager")


@router.post("/etiketter/utlamna")
def issue(request: Request, posted: Post) -> Response:
    values = {"uid": posted.get("uid"), "brukare": posted.get("brukare")}
    me = posted.session.principal
    try:
        views_keys.issue_tag(routine_of(request), me, values["uid"], values["brukare"],
                             me.unit or "")
    except STORE_ERRORS as exc:
        return _tags(request, posted.session, values=values, problem=problem_of(request, exc))
    return redirect("/etiketter", "etikett")


@router.post("/etiketter/{uid}/nedtagen")
def taken_down(request: Request, posted: Post,
               uid: Annotated[str, Path(min_length=1, max_length=64)]) -> Response:
    try:
        views_keys.taken_down(routine_of(request), posted.session.principal, uid)
    except STORE_ERRORS as exc:
        return _tags(request, posted.session, problem=problem_of(request, exc))
    return redirect("/etiketter", "nedtagen")
