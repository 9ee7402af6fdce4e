"""Alerts (``/larm``) and reports (``/rapporter``), each report also as CSV
(``/rapporter/{report}.csv``: UTF-8 with a byte-order mark and ``;`` between fields, as
spreadsheet programs with Swedish settings read it; Content-Disposition attachment)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from central.cases.reports import PendingInstall, Removal, VisitMethods
from central.cases.store import RoutineStore
from central.web import labels, views_reports
from central.web.common import parse_day, problem_of, routine_of
from central.web.errors import STORE_ERRORS, Problem
from central.web.security import SignedIn
from central.web.templating import SECURITY_HEADERS, local, render

router = APIRouter(include_in_schema=False)
DayText = Annotated[str | None, Query(max_length=10)]


@router.get("/larm")
def alerts(request: Request, session: SignedIn) -> Response:
    try:
        found = views_reports.alerts(routine_of(request), session.principal)
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    return render(request, "alerts.html", session, alerts=found)


@router.get("/rapporter")
def reports(request: Request, session: SignedIn, fran: DayText = None,
            till: DayText = None) -> Response:
    routine, me = routine_of(request), session.principal
    start, end = parse_day(fran), parse_day(till)
    try:
        tables = {name: rows(routine, me, start, end) for name, (_, rows) in REPORTS.items()}
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    query = "&".join(f"{k}={v.isoformat()}" for k, v in (("fran", start), ("till", end)) if v)
    return render(request, "reports.html", session, tables=tables, titles=TITLES,
                  headers={name: header for name, (header, _) in REPORTS.items()},
                  fran=start.isoformat() if start else "", till=end.isoformat() if end else "",
                  query=f"?{query}" if query else "")


@router.get("/rapporter/{name}.csv")
def report_csv(request: Request, session: SignedIn, name: str, fran: DayText = None,
               till: DayText = None) -> Response:
    if name not in REPORTS:
        return render(request, "refused.html", session,
                      problem=Problem("Det finns ingen sådan rapport.", 404))
    routine = routine_of(request)
    try:
        header, rows = REPORTS[name][0], REPORTS[name][1](
            routine, session.principal, parse_day(fran), parse_day(till))
    except STORE_ERRORS as exc:
        return render(request, "refused.html", session, problem=problem_of(request, exc))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    day = routine.central.today().isoformat()
    return Response(("\ufeff" + out.getvalue()).encode("utf-8"),
                    media_type="text/csv; charset=utf-8",
                    headers={**SECURITY_HEADERS,
                             "Content-Disposition": f'attachment; filename="{name}-{day}.csv"'})


# --- the reports as rows ----------------------------------------------------------------------

Rows = list[list[Any]]


def _visits(routine: RoutineStore, actor: Any, start: date | None, end: date | None) -> Rows:
    found: Iterable[VisitMethods] = views_reports.visits(routine, actor, start=start, end=end)
    return [[v.client_ref, v.by_method.get("nfc_tag", 0), v.by_method.get("lock", 0),
             sum(n for m, n in v.by_method.items() if m not in ("nfc_tag", "lock")), v.total]
            for v in found]


def _pending(routine: RoutineStore, actor: Any, start: date | None, end: date | None) -> Rows:
    zone = routine.central.day_zone
    found: Iterable[PendingInstall] = views_reports.pending_installs(routine, actor)
    return [[p.client_ref, p.case_id, p.flow.value, labels.word(labels.STATES, p.state),
             local(p.requested_at, zone), p.age_working_days, p.target_on.isoformat(),
             "ja" if p.overdue else "nej", p.fitter or "", local(p.booked_start, zone)]
            for p in found]


def _removals(routine: RoutineStore, actor: Any, start: date | None, end: date | None) -> Rows:
    zone = routine.central.day_zone
    found: Iterable[Removal] = views_reports.removals(routine, actor)
    return [[r.client_ref, labels.word(labels.LOCK_STATUSES, r.lock_status),
             r.ended_on.isoformat() if r.ended_on else "",
             r.due_on.isoformat() if r.due_on else "",
             "" if r.days_left is None else r.days_left,
             labels.word(labels.REMOVAL_LEVELS, r.level), r.case_id or "", r.fitter or "",
             local(r.booked_start, zone)] for r in found]


Report = tuple[list[str], Callable[[RoutineStore, Any, date | None, date | None], Rows]]
REPORTS: dict[str, Report] = {
    "besok": (["Brukare", "Besök med NFC-etikett", "Besök med digitalt lås", "Övriga",
               "Totalt"], _visits),
    "vantande-monteringar": (["Brukare", "Ärende", "Flöde", "Läge", "Begärt",
                              "Arbetsdagar väntat", "Mål (ca 5 arbetsdagar)", "Försenad",
                              "Montör", "Bokad tid"], _pending),
    "nedmonteringar": (["Brukare", "Låsstatus", "Sista verkställighet avslutad",
                        "Nedmontering senast", "Dagar kvar", "Läge", "Ärende", "Montör",
                        "Bokad tid"], _removals),
}
TITLES = {"besok": "Besök per brukare och metod",
          "vantande-monteringar": "Väntande monteringar (arbetsdagar väntat)",
          "nedmonteringar": "Nedmonteringar inom 14 dagar"}
