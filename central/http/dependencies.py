"""What a route needs from its request: the store, the device behind the token, an
administrator, a JSON body. Each is a FastAPI dependency, so it shows in OpenAPI."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from central.http.problems import AUTH_ADVICE, BEARER_CHALLENGE, ApiProblem, short
from central.store import CentralStore, DeviceInfo


def get_store(request: Request) -> CentralStore:
    """The store :func:`~central.http.app.create_app` was given."""
    store: CentralStore = request.app.state.store
    return store


StoreDep = Annotated[CentralStore, Depends(get_store)]
# Declares the scheme in OpenAPI; the header itself is read by _token (clearer 401s).
_bearer = HTTPBearer(auto_error=False, scheme_name="token",
                     description="Device or admin token from 'nyckelfri-central device add'.")


def _token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise ApiProblem(401, "unauthorized", "no Authorization header", AUTH_ADVICE,
                         {"WWW-Authenticate": BEARER_CHALLENGE})
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(401, "unauthorized", "the Authorization header is not 'Bearer TOKEN'",
                         AUTH_ADVICE,
                         {"WWW-Authenticate": f'{BEARER_CHALLENGE}, error="invalid_request"'})
    return token.strip()


def authenticated(
    request: Request, store: StoreDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> DeviceInfo:
    """The device behind the bearer token (401 unknown/missing, 403 revoked)."""
    return store.authenticate(_token(request))


DeviceDep = Annotated[DeviceInfo, Depends(authenticated)]


def admin(device: DeviceDep) -> DeviceInfo:
    """The device, if it is an administrator (403 otherwise)."""
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
                         f"the body is {short(media or 'undeclared')!r}, not JSON",
                         "send 'Content-Type: application/json'")
