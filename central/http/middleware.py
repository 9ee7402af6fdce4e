"""What every request passes through: the body size limit, the server-time header, and
the protocol version the ``/v1`` routes require.

The first two are ASGI middleware (they must see bodies and answers no route sees);
the protocol version is a dependency of the ``/v1`` routers, so that it shows in the
OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.http.problems import SERVER_TIME_HEADER, ApiProblem, problem_response, short
from sync.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, SUPPORTED_VERSIONS, version_problem

# A protocol version is a small number: longer header values are not even parsed.
MAX_VERSION_DIGITS = 5


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


# --- the body size limit -------------------------------------------------------------------


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


# --- the protocol version ------------------------------------------------------------------


def require_protocol(
    version: Annotated[str | None, Header(
        alias=PROTOCOL_HEADER,
        description=f"Protocol version the client speaks ({PROTOCOL_VERSION}).")] = None,
) -> int:
    """426 unless the request names a protocol version this centre speaks."""
    upgrade = {"Upgrade": f"nyckelfri/{PROTOCOL_VERSION}"}
    if version is None:
        raise ApiProblem(426, "protocol_required", f"the {PROTOCOL_HEADER} header is missing",
                         f"send '{PROTOCOL_HEADER}: {PROTOCOL_VERSION}'", upgrade)
    text = version.strip()
    digits = text.isascii() and text.isdigit() and len(text) <= MAX_VERSION_DIGITS
    if not digits:
        raise ApiProblem(426, "protocol_unsupported", f"{PROTOCOL_HEADER} {short(text)!r} is "
                         "not a protocol version", f"send '{PROTOCOL_HEADER}: {PROTOCOL_VERSION}'",
                         upgrade)
    number = int(text)
    if number not in SUPPORTED_VERSIONS:
        raise ApiProblem(426, "protocol_unsupported",
                         f"this centre does not speak protocol {number}", version_problem(number),
                         upgrade)
    return number
