"""The web pages on the centre's app: :func:`install` adds them to the FastAPI app.

Routes live in ``routes_*``; the routine store is called only from ``views_*``. The
pages need the app's ``state.store`` and ``state.routine``
(:func:`central.http.app.create_app` sets both).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from central.web import (
    routes_auth,
    routes_binder,
    routes_cases,
    routes_keys,
    routes_reports,
    security,
)
from central.web.errors import Problem
from central.web.security import ForeignPost, SignInNeeded
from central.web.templating import SECURITY_HEADERS, STATIC, render


def install(app: FastAPI) -> None:
    """Add the pages, their static files (``/static``) and their two refusals."""
    for module in (routes_auth, routes_cases, routes_binder, routes_keys, routes_reports):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="web-static")
    app.add_exception_handler(SignInNeeded, _sign_in)
    app.add_exception_handler(ForeignPost, _foreign)


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
