"""Signing in and out: ``/logga-in`` (double-submit cookie against CSRF), ``/logga-ut``."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from central.web import accounts, security, sessions
from central.web.errors import Problem
from central.web.security import LOGIN_COOKIE, SESSION_COOKIE, Post
from central.web.templating import SECURITY_HEADERS, render

router = APIRouter(include_in_schema=False)

WRONG = "Fel användarnamn eller lösenord."


def _cookie(response: Response, request: Request, name: str, value: str, *,
            strict: bool) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict" if strict else "lax",
                        secure=request.url.scheme == "https", path="/")


def _form(request: Request, next_path: str, *, name: str = "",
          problem: Problem | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, problem=problem, login_csrf=token,
                      nasta=next_path, name=name)
    _cookie(response, request, LOGIN_COOKIE, token, strict=True)
    return response


@router.get("/logga-in")
def login_page(request: Request,
               nasta: Annotated[str | None, Query(max_length=512)] = None) -> Response:
    if security.current(request) is not None:
        return RedirectResponse(security.safe_next(nasta), 303, headers=SECURITY_HEADERS)
    return _form(request, security.safe_next(nasta))


@router.post("/logga-in")
async def login(request: Request) -> Response:
    security.check_origin(request)
    form = await security.read_form(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    given = form.get("login_csrf")
    if not cookie or not isinstance(given, str) or not hmac.compare_digest(
            given.encode(), cookie.encode()):
        raise security.ForeignPost("the sign-in form's token does not match its cookie")
    name, password = form.get("namn"), form.get("losenord")
    next_path = security.safe_next(str(form.get("nasta") or "/"))
    name = name.strip() if isinstance(name, str) else ""
    store = security.store_of(request)
    principal = (await anyio.to_thread.run_sync(accounts.check_password, store, name,
                                                password)
                 if isinstance(password, str) and name else None)
    if principal is None:
        return _form(request, next_path, name=name, problem=Problem(WRONG, 401))
    token = await anyio.to_thread.run_sync(sessions.start, store, principal)
    response = RedirectResponse(next_path, 303, headers=SECURITY_HEADERS)
    _cookie(response, request, SESSION_COOKIE, token, strict=False)
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@router.post("/logga-ut")
def logout(request: Request, posted: Post) -> Response:
    """End the session (a POST with the session's CSRF token, as every form)."""
    sessions.end(security.store_of(request), request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/logga-in?klart=utloggad", 303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
