"""The centre's HTTP API: the sync endpoints of :mod:`sync.protocol` and administration.

:func:`create_app` builds a FastAPI application over an injected
:class:`~central.store.CentralStore`; nothing is opened at import time.

Rules every answer follows:

- the centre's clock is in every answer: ``server_time`` in JSON bodies (errors too)
  and the ``X-Nyckelfri-Server-Time`` header (ISO 8601);
- every 4xx/5xx body is a :class:`~sync.protocol.ProblemDetail` (error, detail,
  advice); hostile or malformed requests get a 4xx with a reason, never a 500;
- ``/v1`` routes need the ``X-Nyckelfri-Protocol`` header (426 otherwise);
- a push is answered only after the store has durably stored the events.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.errors import (
    CentralError,
    DatabaseUnavailable,
    DeviceExists,
    Forbidden,
    ReferenceDataError,
    Unauthorized,
    UnknownDevice,
    UnknownReference,
)
from central.store import CentralStore, DeviceInfo
from sync.protocol import (
    MAX_BODY_BYTES,
    MAX_REFERENCE_PAGE,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    ClockResponse,
    Event,
    Model,
    ProblemDetail,
    PushRequest,
    PushResponse,
    ReferenceKind,
    ReferencePage,
    Rejection,
    version_problem,
)

log = logging.getLogger(__name__)

SERVER_TIME_HEADER = "X-Nyckelfri-Server-Time"
# Clients back off this long before retrying a 503 (database unavailable).
RETRY_AFTER_S = 5
# A validation answer names at most this many problems, each cut to this length,
# so a hostile body is never echoed back at length.
MAX_REPORTED_ERRORS = 10
MAX_ERROR_CHARS = 160
# JSON nested deeper than this in event or reference data is refused: no record of
# ours nests more than a few levels, and deep nesting only serves to exhaust stacks.
MAX_DATA_DEPTH = 32
# Times the store can hold and convert without overflow (device clocks after a flat
# RTC battery say 1970 or 2000: well inside).
EARLIEST_TIME = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
MAX_INT64 = 2**63 - 1
AUTH_ADVICE = ("send 'Authorization: Bearer TOKEN' with the token printed by "
                "'nyckelfri-central device add'")


# --- problems -----------------------------------------------------------------------------


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


def _now(request: Request) -> datetime:
    store: CentralStore = request.app.state.store
    return store.now()


def problem_response(now: datetime, status: int, error: str, detail: str, advice: str = "",
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body = ProblemDetail(error=error, detail=detail, advice=advice, server_time=now)
    return JSONResponse(body.model_dump(mode="json"), status_code=status,
                        headers={**(headers or {}), SERVER_TIME_HEADER: now.isoformat()})


_STORE_ERRORS: tuple[tuple[type[CentralError], int, str, str], ...] = (
    (Unauthorized, 401, "unauthorized", AUTH_ADVICE),
    (Forbidden, 403, "forbidden", "ask the centre's administrator for a valid token"),
    (DeviceExists, 409, "device_exists", "choose another name or revoke the old device"),
    (UnknownDevice, 404, "unknown_device", "list the devices: 'nyckelfri-central device list'"),
    (ReferenceDataError, 422, "invalid_reference",
     "correct the reference data; nothing was changed"),
    (UnknownReference, 404, "unknown_reference", "list it: 'nyckelfri-central reference list'"),
    (DatabaseUnavailable, 503, "database_unavailable",
     f"the centre's database is unreachable; retry in {RETRY_AFTER_S} s"),
)


def _store_error_problem(exc: CentralError) -> ApiProblem:
    for kind, status, error, advice in _STORE_ERRORS:
        if isinstance(exc, kind):
            headers = {}
            if status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="nyckelfri"'
            elif status == 503:
                headers["Retry-After"] = str(RETRY_AFTER_S)
            return ApiProblem(status, error, str(exc), advice, headers)
    return ApiProblem(422, "invalid_request", str(exc), "correct the request")


_HTTP_ADVICE = {
    404: "see /openapi.json for the centre's endpoints",
    400: "send a JSON body",
}


def _error_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _http_problem(exc: StarletteHTTPException) -> ApiProblem:
    headers = dict(exc.headers or {})
    advice = _HTTP_ADVICE.get(exc.status_code, "")
    if exc.status_code == 405 and "Allow" in headers:
        advice = f"this route accepts: {headers['Allow']}"
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return ApiProblem(exc.status_code, _error_name(exc.status_code), detail, advice, headers)


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def summarise_errors(errors: Sequence[Any]) -> str:
    """Locations and messages of pydantic errors, never the offending input itself."""
    parts = []
    for err in errors[:MAX_REPORTED_ERRORS]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(_short(f"{loc}: {err.get('msg', 'invalid')}"))
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more")
    return "; ".join(parts) or "invalid request"


def _validation_problem(exc: RequestValidationError) -> ApiProblem:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(e for e in errors if e.get("type") == "json_invalid")
        where = reason.get("ctx", {}).get("error", "malformed")
        return ApiProblem(400, "invalid_json", _short(f"the body is not JSON: {where}"),
                          "send a JSON document as described in /openapi.json")
    return ApiProblem(422, "invalid_request", summarise_errors(errors),
                      "correct the fields named; the schemas are in /openapi.json")


def _install_error_handlers(app: FastAPI) -> None:
    def answer(request: Request, problem: ApiProblem) -> JSONResponse:
        return problem_response(_now(request), problem.status, problem.error, problem.detail,
                                problem.advice, problem.headers)

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiProblem)
        return answer(request, exc)

    async def on_store_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CentralError)
        problem = _store_error_problem(exc)
        if problem.status >= 500:
            log.warning("store error answered %s: %s", problem.status, exc)
        return answer(request, problem)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return answer(request, _http_problem(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return answer(request, _validation_problem(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(request, ApiProblem(500, "internal", "the centre failed on this request",
                                          "retry later; the centre's log has the details"))

    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(CentralError, on_store_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)


# --- ASGI middleware ---------------------------------------------------------------------


class ServerTimeHeader:
    """Adds the centre's clock to every answer that does not carry it yet."""

    def __init__(self, app: ASGIApp, now: Callable[[], datetime]) -> None:
        self.app = app
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = SERVER_TIME_HEADER.lower().encode()

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if all(k.lower() != name for k, _ in headers):
                    headers.append((name, self.now().isoformat().encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, stamped)


class BodyTooLarge(Exception):
    pass


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_bounded(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` if the client went away.

    Counts the bytes as they stream in, so a chunked upload without a
    Content-Length cannot get past the limit either.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class BodyLimit:
    """413 for a body over ``limit`` bytes, by Content-Length and by counting."""

    def __init__(self, app: ASGIApp, limit: int, now: Callable[[], datetime]) -> None:
        self.app = app
        self.limit = limit
        self.now = now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._too_large(scope, receive, send, f"Content-Length {declared}")
            return
        try:
            body = await read_bounded(receive, self.limit)
        except BodyTooLarge:
            await self._too_large(scope, receive, send, "the streamed body")
            return
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, what: str) -> None:
        response = problem_response(
            self.now(), 413, "body_too_large",
            f"{what} exceeds the centre's limit of {self.limit} bytes",
            "send smaller batches (sync.protocol.MAX_BATCH events at most)",
            headers={"Connection": "close"})
        await response(scope, receive, send)


# --- hostile data --------------------------------------------------------------------------


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def _bad_scalar(value: object) -> str | None:
    if isinstance(value, str):
        return _bad_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "contains NaN or Infinity (not JSON)"
    return None


def unstorable_json(value: object) -> str | None:
    """Why a JSON value cannot be stored faithfully (both databases), or ``None``.

    Iterative, so that depth cannot exhaust the stack.
    """
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DATA_DEPTH:
            return f"nests deeper than {MAX_DATA_DEPTH} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                if reason := _bad_text(str(key)):
                    return f"a key {reason}"
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif reason := _bad_scalar(item):
            return reason
    return None


def _bad_time(at: datetime) -> str | None:
    try:
        inside = EARLIEST_TIME <= at.astimezone(UTC) < LATEST_TIME
    except (OverflowError, ValueError):
        inside = False
    return None if inside else f"time outside {EARLIEST_TIME.year}-{LATEST_TIME.year}"


def unstorable_event(event: Event) -> str | None:
    """Why the store could not hold this event as sent, or ``None``."""
    checks = (
        ("kind", _bad_text(event.kind)),
        ("boot_id", _bad_text(event.boot_id)),
        ("at", _bad_time(event.at)),
        ("boottime_ns", "exceeds 64 bits" if event.boottime_ns > MAX_INT64 else None),
        ("data", unstorable_json(event.data)),
    )
    for field, reason in checks:
        if reason:
            return f"{field} {reason}"
    return None


def _check_clock(request: PushRequest) -> None:
    clock = request.clock
    if clock is None:
        return
    reason = (_bad_text(clock.boot_id) or _bad_time(clock.server_time)
              or ("a count exceeds 64 bits"
                  if max(clock.boottime_ns, clock.rtt_ns) > MAX_INT64 else None))
    if reason:
        raise ApiProblem(422, "invalid_request", f"clock: {reason}",
                         "send the clock sample as measured, or none")


def _check_data(data: dict[str, Any]) -> None:
    if reason := unstorable_json(data):
        raise ApiProblem(422, "invalid_reference", f"data {reason}",
                         "send plain JSON data; nothing was changed")


# --- dependencies --------------------------------------------------------------------------


def get_store(request: Request) -> CentralStore:
    store: CentralStore = request.app.state.store
    return store


StoreDep = Annotated[CentralStore, Depends(get_store)]
_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="Device or admin token from 'nyckelfri-central device add'.")


def require_protocol(
    version: Annotated[str | None, Header(
        alias=PROTOCOL_HEADER,
        description=f"Protocol version the client speaks ({PROTOCOL_VERSION}).")] = None,
) -> int:
    """426 unless the request names a protocol version this centre speaks."""
    if version is None:
        raise ApiProblem(426, "protocol_required", f"the {PROTOCOL_HEADER} header is missing",
                         f"send '{PROTOCOL_HEADER}: {PROTOCOL_VERSION}'",
                         {"Upgrade": f"nyckelfri/{PROTOCOL_VERSION}"})
    text = version.strip()
    number = int(text) if text.isascii() and text.isdigit() and len(text) < 6 else None
    if number is None:
        raise ApiProblem(426, "protocol_unsupported", f"{PROTOCOL_HEADER} {_short(text)!r} is "
                         "not a protocol version", f"send '{PROTOCOL_HEADER}: {PROTOCOL_VERSION}'",
                         {"Upgrade": f"nyckelfri/{PROTOCOL_VERSION}"})
    if number not in SUPPORTED_VERSIONS:
        raise ApiProblem(426, "protocol_unsupported",
                         f"this centre does not speak protocol {number}", version_problem(number),
                         {"Upgrade": f"nyckelfri/{PROTOCOL_VERSION}"})
    return number


def _token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise ApiProblem(401, "unauthorized", "no Authorization header", AUTH_ADVICE,
                         {"WWW-Authenticate": 'Bearer realm="nyckelfri"'})
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(401, "unauthorized", "the Authorization header is not 'Bearer TOKEN'",
                         AUTH_ADVICE,
                         {"WWW-Authenticate": 'Bearer realm="nyckelfri", error="invalid_request"'})
    return token.strip()


def authenticated(
    request: Request, store: StoreDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> DeviceInfo:
    """The device behind the bearer token (401 unknown/missing, 403 revoked)."""
    return store.authenticate(_token(request))


DeviceDep = Annotated[DeviceInfo, Depends(authenticated)]


def admin(device: DeviceDep) -> DeviceInfo:
    if device.role != "admin":
        raise ApiProblem(403, "forbidden", f"device {device.name!r} is not an administrator",
                         "use a token made with 'nyckelfri-central device add NAME --admin'")
    return device


AdminDep = Annotated[DeviceInfo, Depends(admin)]


def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/")
                                            and media.endswith("+json")):
        raise ApiProblem(415, "unsupported_media_type",
                         f"the body is {_short(media or 'undeclared')!r}, not JSON",
                         "send 'Content-Type: application/json'")


# --- answers of the administration side -------------------------------------------------------


class DeviceOut(Model):
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    events: int


class DeviceList(Model):
    devices: list[DeviceOut]
    server_time: datetime


class ImportAnswer(Model):
    imported: dict[str, int]
    server_time: datetime


class ReferenceChange(Model):
    kind: ReferenceKind
    key: str
    version: int
    deleted: bool
    server_time: datetime


class VisitOut(Model):
    device: str
    visit_id: str
    client_ref: str
    staff_ref: str
    tag_uid: str | None
    method: str
    arrived_at: datetime | None
    arrived_quality: str | None
    departed_at: datetime | None
    departed_quality: str | None
    status: str
    close_reason: str | None
    updated_at: datetime


class VisitList(Model):
    visits: list[VisitOut]
    server_time: datetime


class Health(Model):
    status: str
    database: str
    devices: int
    server_time: datetime


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ProblemDetail, "description": HTTPStatus(s).phrase} for s in statuses}


COMMON = _problems(400, 404, 405, 413, 426, 500, 503)
AUTHED = {**COMMON, **_problems(401, 403, 422)}
WITH_BODY = {**AUTHED, **_problems(415)}
Key = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
Ref = Annotated[str | None, Query(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


# --- the sync endpoints ----------------------------------------------------------------------

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_protocol)])


@v1.get("/clock", response_model=ClockResponse, responses=COMMON, tags=["sync"])
def clock(store: StoreDep) -> ClockResponse:
    """The centre's clock, for the agent's offset measurement (no token needed)."""
    return ClockResponse(server_time=store.now())


def _split_unstorable(events: Sequence[Event]) -> tuple[list[Event], list[Rejection]]:
    """Events the store can hold, and rejections for those it could not hold as sent."""
    fine: list[Event] = []
    refused: list[Rejection] = []
    for event in events:
        if reason := unstorable_event(event):
            refused.append(Rejection(event_id=event.event_id, reason=reason))
        else:
            fine.append(event)
    return fine, refused


@v1.post("/events", response_model=PushResponse, responses=WITH_BODY, tags=["sync"],
         dependencies=[Depends(require_json)])
def push(body: PushRequest, device: DeviceDep, store: StoreDep) -> PushResponse:
    """Store a batch of the device's events once each; answers after they are durable.

    ``stored`` lists every id of the batch the centre now holds (new or already
    there); ``rejected`` those it never will, with the reason.
    """
    if body.device_id != device.name:
        raise ApiProblem(403, "wrong_device", f"the token belongs to {device.name!r}, the batch "
                         f"to {body.device_id!r}", "push with the device's own token")
    _check_clock(body)
    fine, refused = _split_unstorable(body.events)
    result = store.ingest(device, fine, body.clock)  # rejects events of other devices
    return PushResponse(stored=list(result.stored), rejected=[*refused, *result.rejected],
                        server_time=store.now())


@v1.get("/reference", response_model=ReferencePage, responses=AUTHED, tags=["sync"])
def reference(
    device: DeviceDep, store: StoreDep,
    since: Annotated[int, Query(ge=0, le=MAX_INT64, description="cursor of the last page")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_REFERENCE_PAGE)] = MAX_REFERENCE_PAGE,
) -> ReferencePage:
    """Reference records changed after ``since``, oldest first."""
    items, cursor, more = store.reference_since(since, limit)
    return ReferencePage(items=items, cursor=cursor, more=more, server_time=store.now())


# --- administration --------------------------------------------------------------------------


@v1.post("/admin/reference", response_model=ImportAnswer, responses=WITH_BODY,
         tags=["admin"], dependencies=[Depends(require_json)])
def import_reference(body: dict[str, Any], _admin: AdminDep, store: StoreDep) -> ImportAnswer:
    """Import a reference document (clients, tags, staff, locks); all or nothing."""
    _check_data(body)
    return ImportAnswer(imported=store.import_reference(body), server_time=store.now())


@v1.put("/admin/reference/{kind}/{key}", response_model=ReferenceChange,
        responses=WITH_BODY, tags=["admin"], dependencies=[Depends(require_json)])
def set_reference(kind: ReferenceKind, key: Key, body: dict[str, Any], _admin: AdminDep,
                  store: StoreDep) -> ReferenceChange:
    """Create or replace one reference record; agents receive it on their next pull."""
    _check_data(body)
    version = store.upsert_reference(kind, key, body)
    return ReferenceChange(kind=kind, key=key, version=version, deleted=False,
                           server_time=store.now())


@v1.delete("/admin/reference/{kind}/{key}", response_model=ReferenceChange,
           responses=AUTHED, tags=["admin"])
def delete_reference(kind: ReferenceKind, key: Key, _admin: AdminDep,
                     store: StoreDep) -> ReferenceChange:
    """Delete one reference record; agents remove it on their next pull."""
    version = store.delete_reference(kind, key)
    return ReferenceChange(kind=kind, key=key, version=version, deleted=True,
                           server_time=store.now())


@v1.get("/admin/devices", response_model=DeviceList, responses=AUTHED, tags=["admin"])
def devices(_admin: AdminDep, store: StoreDep) -> DeviceList:
    """Every enrolled device, with its role, last contact and event count."""
    rows = [DeviceOut.model_validate(d, from_attributes=True) for d in store.list_devices()]
    return DeviceList(devices=rows, server_time=store.now())


@v1.get("/visits", response_model=VisitList, responses=AUTHED, tags=["admin"])
def visits(
    _admin: AdminDep, store: StoreDep,
    day: Annotated[date | None, Query(description="local day, YYYY-MM-DD")] = None,
    client: Ref = None, staff: Ref = None,
) -> VisitList:
    """Visits rebuilt from the events received (routine section 5)."""
    rows = store.visits(day=day, client_ref=client, staff_ref=staff)
    return VisitList(visits=[VisitOut.model_validate(v, from_attributes=True) for v in rows],
                     server_time=store.now())


# --- the application ---------------------------------------------------------------------------


def healthz(store: StoreDep) -> Health:
    """Liveness and database reachability (no token, no protocol header)."""
    devices = len(store.list_devices())  # a read of a small table: the database answers
    return Health(status="ok", database=store.dialect, devices=devices,
                  server_time=store.now())


def create_app(store: CentralStore, *, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The centre's API over ``store`` (which the caller opens and closes)."""
    app = FastAPI(
        title="nyckelfri central",
        version=str(PROTOCOL_VERSION),
        description=__doc__,
        docs_url=None, redoc_url=None,
    )
    app.state.store = store
    app.include_router(v1)
    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=Health,
                      responses=_problems(500, 503), tags=["operations"])
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes, now=store.now)
    app.add_middleware(ServerTimeHeader, now=store.now)
    return app


__all__ = ["SERVER_TIME_HEADER", "ApiProblem", "create_app", "problem_response"]
