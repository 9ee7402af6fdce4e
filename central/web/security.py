"""Who is signed in, and whether a POST is the page's own: session cookie, CSRF, Origin.

- :func:`signed_in` (GET pages): the session of the cookie, or a redirect to the sign-in.
- :func:`posted` (every POST but the sign-in): the session, a same-origin ``Origin`` (or
  ``Referer``) and the session's CSRF token in the form's ``csrf`` field; a POST failing
  either is refused with 403 and a Swedish explanation.
- The sign-in form is protected by a double-submit cookie (:data:`LOGIN_COOKIE`), as no
  session exists yet.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

import anyio.to_thread
from fastapi import Depends, Request
from starlette.datastructures import FormData

from central.store import CentralStore
from central.web import sessions
from central.web.sessions import Session

SESSION_COOKIE = "nf_session"
LOGIN_COOKIE = "nf_login_csrf"
MAX_FORM_FIELDS = 64


class SignInNeeded(Exception):
    """No live session: the page answers with a redirect to the sign-in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class ForeignPost(Exception):
    """A POST that is not the page's own (CSRF token or origin): answered 403."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Posted:
    session: Session
    form: FormData

    def get(self, name: str, default: str = "") -> str:
        value = self.form.get(name)
        return value.strip() if isinstance(value, str) else default

    def all(self, name: str) -> list[str]:
        return [v for v in self.form.getlist(name) if isinstance(v, str)]


def store_of(request: Request) -> CentralStore:
    store: CentralStore = request.app.state.store
    return store


def current(request: Request) -> Session | None:
    return sessions.find(store_of(request), request.cookies.get(SESSION_COOKIE))


def signed_in(request: Request) -> Session:
    session = current(request)
    if session is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        raise SignInNeeded(target)
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


def sign_in_url(next_path: str) -> str:
    return "/logga-in" + (f"?nasta={quote(next_path, safe='/')}" if next_path != "/" else "")


def safe_next(value: str | None) -> str:
    """A local path to go on to after signing in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def check_origin(request: Request) -> None:
    """Refuse a POST whose Origin (or, without one, Referer) is another site's."""
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    origin = request.headers.get("origin")
    if origin is not None:
        if origin.lower() != own:
            raise ForeignPost(f"Origin {origin!r} is not this site ({own})")
        return
    referer = request.headers.get("referer")
    if referer is not None:
        parts = urlsplit(referer)
        if f"{parts.scheme}://{parts.netloc}".lower() != own:
            raise ForeignPost(f"Referer {referer!r} is not this site ({own})")


async def read_form(request: Request) -> FormData:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ForeignPost(f"not a form post ({content_type or 'no content type'})")
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


async def posted(request: Request) -> Posted:
    """A POST of one of the signed-in session's own forms."""
    session = await anyio.to_thread.run_sync(signed_in, request)
    check_origin(request)
    form = await read_form(request)
    given = form.get("csrf")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(),
                                                             session.csrf.encode()):
        raise ForeignPost("the form's CSRF token is missing or not this session's")
    return Posted(session, form)


Post = Annotated[Posted, Depends(posted)]
