"""The web pages on the centre's app: :func:`install` adds them to the FastAPI app.

Routes live in ``routes_*``; the routine store is called only from ``views_*``. The
pages need the app's ``state.store`` and ``state.routine``
(:func:`central.http.app.create_app` sets both).
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from central.web import (
    routes_auth,
    routes_binder,
    routes_cases,
    routes_implementations,
    routes_keys,
    routes_reports,
    security,
)
from central.web.errors import Problem
from central.web.security import ForeignPost, SignInNeeded
from central.web.templating import SECURITY_HEADERS, STATIC, render

# Addresses of the machine interfaces: their errors stay JSON problem details.
API_PATHS = ("/v1/", "/healthz", "/openapi.json")


def install(app: FastAPI) -> None:
    """Add the pages, their static files (``/static``) and their refusals: a person's
    browser asking for an address that names no page gets a Swedish page, not JSON.

    Install after the API's error handlers: the page answer wraps theirs.
    """
    for module in (routes_auth, routes_cases, routes_binder, routes_keys, routes_reports,
                   routes_implementations):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="web-static")
    app.add_exception_handler(SignInNeeded, _sign_in)
    app.add_exception_handler(ForeignPost, _foreign)
    api = app.exception_handlers.get(HTTPException)

    async def not_a_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if api is not None and not _wants_page(request, exc):
            answer = api(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return _missing(request, exc)

    app.add_exception_handler(HTTPException, not_a_page)


def _wants_page(request: Request, exc: HTTPException) -> bool:
    return (exc.status_code in (404, 405) and request.method in ("GET", "HEAD")
            and not request.url.path.startswith(API_PATHS)
            and "text/html" in request.headers.get("accept", ""))


def _missing(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        problem = Problem("Sidan finns inte.", 404,
                          ("Adressen leder inte till någon sida i nyckelfri. Kontrollera "
                           "adressen, eller gå till startsidan och välj i menyn.",),
                          f"{request.url.path}: {exc.detail}")
    else:
        problem = Problem("Sidan går inte att öppna så.", exc.status_code,
                          ("Gå till startsidan och välj i menyn.",),
                          f"{request.method} {request.url.path}: {exc.detail}")
    return render(request, "refused.html", security.current(request), problem=problem)


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInNeeded)
    return RedirectResponse(security.sign_in_url(exc.next_path), 303, headers=SECURITY_HEADERS)


async def _foreign(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ForeignPost)
    problem = Problem("Formuläret kom inte från den här sidan och togs inte emot.", 403,
                      ("Av säkerhetsskäl tar nyckelfri bara emot formulär som skickas från "
                       "sina egna sidor, med sidans säkerhetsnyckel (skydd mot CSRF).",
                       "Gå tillbaka, ladda om sidan och försök igen. Har du loggat ut, "
                       "logga in igen."), exc.reason)
    session = security.current(request)
    return render(request, "refused.html", session, problem=problem)
