"""Answers other than success: :class:`~sync.protocol.ProblemDetail` for every error.

Every 4xx/5xx body says what happened and what to do, carries the centre's clock,
and never echoes a hostile request back at length. :func:`install_error_handlers`
maps each kind of error (our own :class:`ApiProblem`, the store's errors, Starlette's
HTTP errors, request validation, anything unexpected) to one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from central.errors import (
    CentralError,
    DatabaseUnavailable,
)
from central.store import CentralStore
from routine.flows import RoutineError, UnmetRequirement
from sync.protocol import ProblemDetail

log = logging.getLogger(__name__)

# The centre's clock on every answer (ISO 8601), errors included.
SERVER_TIME_HEADER = "X-Nyckelfri-Server-Time"
# Clients back off this long before retrying a 503 (database unavailable).
RETRY_AFTER_S = DatabaseUnavailable.retry_after_s
# A validation answer names at most this many problems, each cut to this length,
# so a hostile body is never echoed back at length.
MAX_REPORTED_ERRORS = 10
MAX_ERROR_CHARS = 160
AUTH_ADVICE = ("send 'Authorization: Bearer TOKEN' with the token printed by "
               "'nyckelfri-central device add'")
BEARER_CHALLENGE = 'Bearer realm="nyckelfri"'


class ApiProblem(Exception):
    """An answer other than success, with the reason and what to do about it."""

    def __init__(self, status: int, error: str, detail: str, advice: str = "",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.advice = advice
        self.headers = headers or {}


def problem_response(now: datetime, status: int, error: str, detail: str, advice: str = "",
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body = ProblemDetail(error=error, detail=detail, advice=advice, server_time=now)
    return JSONResponse(body.model_dump(mode="json"), status_code=status,
                        headers={**(headers or {}), SERVER_TIME_HEADER: now.isoformat()})


def short(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_CHARS`."""
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry documenting these statuses as ProblemDetail."""
    return {s: {"model": ProblemDetail, "description": HTTPStatus(s).phrase} for s in statuses}


COMMON = problem_responses(400, 404, 405, 413, 426, 500, 503)
AUTHED = {**COMMON, **problem_responses(401, 403, 422)}
WITH_BODY = {**AUTHED, **problem_responses(415)}


# --- the store's errors ------------------------------------------------------------------

def store_error_problem(exc: CentralError) -> ApiProblem:
    """The answer to a store error: its status, code and advice (:mod:`central.errors`)."""
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = BEARER_CHALLENGE
    elif exc.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return ApiProblem(exc.status, exc.error, str(exc), exc.advice, headers)


# --- the routine's rule errors ------------------------------------------------------------


class RoutineProblem(ProblemDetail):
    """A 409 from the routine (:class:`routine.flows.RoutineError`): the detail names the
    state and what is allowed there; the same, as fields, for programs."""

    state: str | None = None
    action: str | None = None
    allowed: list[str] = []  # "code_lock by provider (yes|no)"
    unmet: list[str] = []  # facts the step needs that do not hold yet


def routine_problem(now: datetime, exc: RoutineError) -> JSONResponse:
    """409: the routine does not allow this, with its state and the actions allowed there."""
    allowed = [a.describe() for a in exc.allowed]
    if isinstance(exc, UnmetRequirement):
        error, advice = "unmet_requirement", "make the facts named true, then take the step again"
    elif allowed:
        error, advice = "not_allowed", "take one of the actions allowed now: " + "; ".join(allowed)
    else:
        error, advice = "not_allowed", "nothing more can be done here; see the case's state"
    body = RoutineProblem(error=error, detail=str(exc), advice=advice, server_time=now,
                          state=exc.state or None, action=exc.action or None, allowed=allowed,
                          unmet=list(exc.unmet))
    return JSONResponse(body.model_dump(mode="json"), status_code=409,
                        headers={SERVER_TIME_HEADER: now.isoformat()})


# --- Starlette's and FastAPI's errors ------------------------------------------------------

_HTTP_ADVICE = {
    404: "see /openapi.json for the centre's endpoints",
    400: "send a JSON body",
}


def _error_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def http_problem(exc: StarletteHTTPException) -> ApiProblem:
    headers = dict(exc.headers or {})
    advice = _HTTP_ADVICE.get(exc.status_code, "")
    if exc.status_code == 405 and "Allow" in headers:
        advice = f"this route accepts: {headers['Allow']}"
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return ApiProblem(exc.status_code, _error_name(exc.status_code), detail, advice, headers)


def summarise_errors(errors: Sequence[Any]) -> str:
    """Locations and messages of pydantic errors, never the offending input itself."""
    parts = []
    for err in errors[:MAX_REPORTED_ERRORS]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(short(f"{loc}: {err.get('msg', 'invalid')}"))
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more")
    return "; ".join(parts) or "invalid request"


def validation_problem(exc: RequestValidationError) -> ApiProblem:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(e for e in errors if e.get("type") == "json_invalid")
        where = reason.get("ctx", {}).get("error", "malformed")
        return ApiProblem(400, "invalid_json", short(f"the body is not JSON: {where}"),
                          "send a JSON document as described in /openapi.json")
    return ApiProblem(422, "invalid_request", summarise_errors(errors),
                      "correct the fields named; the schemas are in /openapi.json")


# --- the handlers ----------------------------------------------------------------------------


def _answer(request: Request, problem: ApiProblem) -> JSONResponse:
    store: CentralStore = request.app.state.store
    return problem_response(store.now(), problem.status, problem.error, problem.detail,
                            problem.advice, problem.headers)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return _answer(request, exc)


async def _on_store_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CentralError)
    problem = store_error_problem(exc)
    if problem.status >= 500:
        log.warning("store error answered %s: %s", problem.status, exc)
    return _answer(request, problem)


async def _on_routine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RoutineError)
    store: CentralStore = request.app.state.store
    return routine_problem(store.now(), exc)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _answer(request, http_problem(exc))


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _answer(request, validation_problem(exc))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _answer(request, ApiProblem(500, "internal", "the centre failed on this request",
                                       "retry later; the centre's log has the details"))


def install_error_handlers(app: FastAPI) -> None:
    """Every error becomes a ProblemDetail answer (500 for the unexpected, without details)."""
    app.add_exception_handler(ApiProblem, _on_problem)
    app.add_exception_handler(CentralError, _on_store_error)
    app.add_exception_handler(RoutineError, _on_routine_error)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Exception, _on_unexpected)
