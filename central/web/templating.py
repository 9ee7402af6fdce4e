"""The pages' templates (Jinja2, autoescaped) and what every page shows: the navigation
for the signed-in role, who is signed in, the CSRF token for its forms.

Every page answer carries ``Cache-Control: no-store`` (after signing out, the back
button shows no page of the session) and a strict Content-Security-Policy: the pages
need no script, and load only the centre's own style sheet.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from central.cases.store import RoutineStore
from central.web import labels
from central.web.errors import Problem
from central.web.sessions import Session

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

ALL = ("admin", "assessor", "provider", "alarm_admin", "fitter")
ALARM_GROUP = ("admin", "alarm_admin", "fitter")
# (path, label, roles, only the alarm group's units)
NAV: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("/", "Start", ALL, False),
    ("/arenden", "Ärenden", ALL, False),
    ("/inkorg", "Digitala LÅS", ("admin", "alarm_admin"), True),
    ("/parm", "Pärm", ALARM_GROUP, True),
    ("/schema", "Schema", ALARM_GROUP, True),
    ("/nycklar", "Nycklar", ALL, False),
    ("/etiketter", "NFC-etiketter", ("admin", "provider", "alarm_admin"), False),
    ("/larm", "Larm", ALL, False),
    ("/rapporter", "Rapporter", ALL, False),
)


def nav_for(role: str, unit: str | None, alarm_group: str) -> list[tuple[str, str]]:
    return [(path, label) for path, label, roles, alarm_only in NAV
            if role in roles and (role == "admin" or not alarm_only or unit == alarm_group)]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals.update(labels=labels, word=labels.word)
    return env


ENV = _environment()


def local(value: datetime | None, zone: tzinfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if value is None else value.astimezone(zone).strftime(fmt)


def day(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def render(request: Request, template: str, session: Session | None, *, status: int = 200,
           problem: Problem | None = None, **context: Any) -> HTMLResponse:
    """The page ``template`` for the signed-in ``session`` (None: signed out)."""
    routine: RoutineStore = request.app.state.routine
    zone = routine.central.day_zone
    me = session.principal if session is not None else None
    html = ENV.get_template(template).render(
        request=request, me=me, csrf=session.csrf if session else "",
        nav=nav_for(me.role, me.unit, routine.units.alarm_group) if me else [],
        path=request.url.path, problem=problem, zone=zone,
        tid=lambda v, fmt="%Y-%m-%d %H:%M": local(v, zone, fmt), dag=day,
        message=MESSAGES.get(request.query_params.get("klart", ""), ""), **context)
    return HTMLResponse(html, status_code=problem.status if problem and status == 200
                        else status, headers=SECURITY_HEADERS)


#: Confirmations shown after a form was taken (?klart=CODE): fixed texts, never echoed input.
MESSAGES = {
    "oppnat": "Ärendet är öppnat.",
    "steg": "Steget är registrerat i ärendet.",
    "hanterat": "Meddelandet är markerat som hanterat.",
    "bokat": "Tiden är bokad i det gemensamma schemat.",
    "nyckel": "Nyckeluppsättningen är registrerad.",
    "lager": "NFC-etiketterna är tillagda i lagret.",
    "etikett": "NFC-etiketten är utlämnad.",
    "nedtagen": "NFC-etiketten är registrerad som nedtagen.",
    "verkstalld": "Verkställigheten är registrerad.",
    "avslutad": "Verkställigheten är avslutad.",
    "utloggad": "Du är utloggad.",
}
