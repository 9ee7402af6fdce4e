"""Alerts: what someone must act on now, computed from the centre's data by the routine.

Each alert comes from one of :mod:`routine.deadlines`' pure functions, fed with what
the centre holds; nothing here is stored, so an alert clears as soon as the data
that raised it changes:

- ``lock_pending_overdue``: an install case requested (2a.4 inbox message, or 3a.4
  install job) more than 5 Swedish working days ago and not yet installed.
- ``removal_due_soon`` / ``removal_overdue``: a client whose lock is installed and
  whose every implementation has ended: 14 calendar days from the last end.
- ``keys_not_returned``: key sets still bound in the register 14 days after the
  services of their unit ended (routine.keys.keys_due_back).
- ``no_visit_registered``: a running home care or night help with no visit
  registered for ``no_visit_hours`` (the visits the agents sent): a safety alert.
- ``tag_used_after_install``: a tap on a tag after the client's lock was installed
  (an agent's ``tap.refused`` with reason ``lock_installed``, or a visit registered
  by tag), while the tag is not yet taken down.
- ``physical_key_used_where_lock_works``: a physical key used at a client whose lock
  is installed, shown for :data:`KEY_USE_REVIEW_DAYS`; a warning where the routine
  finds no reason for it, information where it was an emergency or the lock was
  unavailable (it still needs explaining afterwards).
- ``tag_copy_suspected``: reads of an NFC tag the centre could not accept, per tag and
  device, checked in the last :data:`TAG_COPY_REVIEW_DAYS` days (``sun_checks``,
  :mod:`central.cases.suncheck`): a SUN URL with a bad MAC, not of this tag, or with a
  read counter not above the last one accepted from any agent (a copied tag or URL), or
  an agent's refusal of the tag as not genuine. ``subject`` is the tag's UID; ``device``
  and ``verdict`` say where and what.
- ``low_lock_battery``: the latest battery reading of a lock from a *verified*
  ``lock.verification`` event (``data.serial``, ``data.battery_percent``; the
  centre's verdicts in ``lock_verifications``, :mod:`central.cases.proofs`) at or
  below the routine's threshold.

Date rules use ``today`` (default: the centre's today in its day zone); the
no-visit gap is measured to the centre's clock now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from central import db as central_db
from central.cases import db as t
from central.cases import refdata, rows, suncheck
from central.cases.values import Implementation, ImplementationKind, JobKind, Value
from routine import deadlines
from routine.deadlines import AlertKind, Severity
from routine.keys import KeyPolicy, KeyUnit, Service, keys_due_back, services_of
from routine.sun import SunVerdict
from routine.tags import FINAL

#: A key use at a client with an installed lock is shown this long: a week, so the
#: unit's weekly follow-up sees it whatever day it happened.
KEY_USE_REVIEW_DAYS = 7
#: Services whose staff visit the client (a safety alarm alone brings no visits).
VISITING = frozenset({ImplementationKind.HOME_CARE, ImplementationKind.NIGHT_HELP})
#: A suspect read of a tag is shown this long after the centre learnt of it: a week, so
#: the unit's weekly follow-up sees it whatever day it came in (an agent offline for
#: days delivers it late).
TAG_COPY_REVIEW_DAYS = 7
TAP_REFUSED = "tap.refused"
LOCK_INSTALLED_REFUSAL = "lock_installed"  # agent.visits.Refusal.LOCK_INSTALLED
_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


class CentreAlertKind(StrEnum):
    """Alerts the centre raises from what it checks itself, beside the routine's deadlines
    (:class:`routine.deadlines.AlertKind`)."""

    TAG_COPY_SUSPECTED = "tag_copy_suspected"


@dataclass(frozen=True)
class Alert(Value):
    kind: AlertKind | CentreAlertKind
    severity: Severity
    subject: str  # the client reference; a lock's serial (low_lock_battery), a tag's UID
    client_ref: str | None
    case_id: int | None
    job_id: int | None
    since: datetime
    detail: str  # English, says what to do
    due: date | None = None
    device: str | None = None  # the device that sent what raised it (tag_copy_suspected)
    verdict: str | None = None  # what the centre found (tag_copy_suspected)


@dataclass(frozen=True)
class Settings:
    now: datetime
    today: date
    zone: tzinfo
    no_visit_gap: timedelta
    removal_warn_days: int
    key_policy: KeyPolicy


def compute(conn: Connection, settings: Settings) -> list[Alert]:
    """Every alert, most severe first, then oldest first."""
    impls = _implementations(conn)
    installed = refdata.clients_with_status(conn, refdata.INSTALLED)
    found = [*_lock_pending(conn, settings), *_removals(conn, settings, impls, installed),
             *_keys_not_returned(conn, settings, impls), *_no_visit(conn, settings, impls),
             *_tags_after_install(conn, installed), *_key_uses(conn, settings),
             *_low_battery(conn), *_tag_copies(conn, settings)]
    return sorted(found, key=lambda a: (_ORDER[a.severity], a.since, a.kind, a.subject))


def _implementations(conn: Connection) -> dict[str, list[Implementation]]:
    by_client: dict[str, list[Implementation]] = defaultdict(list)
    for row in conn.execute(sa.select(t.implementations).order_by(t.implementations.c.id)):
        by_client[row.client_ref].append(rows.implementation(row))
    return by_client


# --- lock pending (section 5) ------------------------------------------------------------------


def _lock_pending(conn: Connection, s: Settings) -> Iterable[Alert]:
    clients = dict(conn.execute(sa.select(t.cases.c.id, t.cases.c.client_ref)
                                .where(t.cases.c.closed_at.is_(None))).all())
    for case_id, (at, job_id) in rows.requested_at(conn).items():
        ordered_on = at.astimezone(s.zone).date()
        if s.today < ordered_on:
            continue
        alert = deadlines.lock_pending_alert(clients[case_id], ordered_on, s.today)
        if alert is not None:
            yield _from(alert, clients[case_id], case_id, job_id, at)


# --- removal within 14 days, keys back (2b.5, 3b.3, 4.5) --------------------------------------


def _open_removal(conn: Connection) -> dict[str, tuple[int, int]]:
    """Client -> (case id, job id) of its open removal job."""
    j = t.binder_jobs.c
    query = (sa.select(j.client_ref, j.case_id, j.id)
             .where(j.done_at.is_(None), j.kind == JobKind.REMOVAL.value).order_by(j.id))
    return {r.client_ref: (r.case_id, r.id) for r in conn.execute(query)}


def _removals(conn: Connection, s: Settings, impls: Mapping[str, list[Implementation]],
              installed: Mapping[str, Any]) -> Iterable[Alert]:
    jobs = _open_removal(conn)
    for client in sorted(installed):
        end = rows.last_end(impls.get(client, ()))
        if end is None:
            continue
        alert = deadlines.removal_alert(client, end, s.today, s.removal_warn_days)
        if alert is not None:
            case_id, job_id = jobs.get(client, (None, None))
            yield _from(alert, client, case_id, job_id, rows.start_of(end, s.zone))


def _keys_not_returned(conn: Connection, s: Settings,
                       impls: Mapping[str, list[Implementation]]) -> Iterable[Alert]:
    k = t.key_sets.c
    held: dict[str, dict[KeyUnit, int]] = defaultdict(lambda: defaultdict(int))
    for client, unit in conn.execute(sa.select(k.client_ref, k.key_unit)
                                     .where(k.returned_at.is_(None))):
        held[client][KeyUnit(unit)] += 1
    for client in sorted(held):
        mine = impls.get(client, [])
        running = {Service(i.kind.value) for i in mine if i.running}
        due = keys_due_back(held[client], running, s.key_policy)
        ends = {u: [i.ended_on for i in mine if i.ended_on is not None
                    and Service(i.kind.value) in services_of(u, s.key_policy)] for u in due}
        due = {u: n for u, n in due.items() if ends[u]}  # never served: nothing ended
        if not due:
            continue
        ended_on = max(d for u in due for d in ends[u])
        alert = deadlines.keys_not_returned_alert(client, ended_on, s.today, due, ())
        if alert is not None:
            yield _from(alert, client, None, None, rows.start_of(ended_on, s.zone))


# --- visits and tags (section 5) ---------------------------------------------------------------


def _no_visit(conn: Connection, s: Settings,
              impls: Mapping[str, list[Implementation]]) -> Iterable[Alert]:
    started: dict[str, date] = {}
    for client, items in impls.items():
        days = [i.started_on for i in items if i.running and i.kind in VISITING]
        if days and min(days) <= s.today:
            started[client] = min(days)
    last = _last_visits(conn, started)
    for client in sorted(started):
        since = rows.start_of(started[client], s.zone)
        alert = deadlines.no_visit_alert(client, True, last.get(client), since, s.now,
                                         s.no_visit_gap)
        if alert is not None:
            yield _from(alert, client, None, None, last.get(client) or since)


def _last_visits(conn: Connection, clients: Iterable[str]) -> dict[str, datetime]:
    v = central_db.visits.c
    ordered = sorted(clients)
    found: dict[str, datetime] = {}
    for i in range(0, len(ordered), 500):
        query = (sa.select(v.client_ref, sa.func.max(v.visit_at))
                 .where(v.client_ref.in_(ordered[i:i + 500])).group_by(v.client_ref))
        found.update({ref: at for ref, at in conn.execute(query)})
    return found


def _tags_after_install(conn: Connection, installed: Mapping[str, Any]) -> Iterable[Alert]:
    """Taps on a tag after the client's lock was installed, while the tag is still up."""
    since = rows.installed_at(conn, installed)
    taps: dict[tuple[str, str], datetime] = {}  # (client, uid) -> the first such tap
    for client, uid, at in _refused_taps(conn):
        if client in installed:
            # The agent refused it because the lock is installed: an install the centre
            # did not record (imported data) counts from the tap itself.
            _first(taps, client, uid, at, since.get(client, at))
    v = central_db.visits.c
    for client, uid, at in conn.execute(
            sa.select(v.client_ref, v.tag_uid, v.arrived_at)
            .where(v.client_ref.in_(sorted(since)), v.tag_uid.is_not(None),
                   v.arrived_at.is_not(None))):
        _first(taps, client, uid, at, since[client])
    down = _tags_down(conn, {uid for _, uid in taps})
    for (client, uid), at in sorted(taps.items()):
        if uid in down:
            continue
        alert = deadlines.tag_after_install_alert(client, at, since.get(client, at))
        if alert is not None:
            yield _from(alert, client, None, None, at,
                        detail=f"tag {uid}: {alert.message}")


def _first(taps: dict[tuple[str, str], datetime], client: str, uid: str, at: datetime,
           installed_at: datetime) -> None:
    if at >= installed_at:
        key = (client, uid)
        taps[key] = min(at, taps.get(key, at))


def _refused_taps(conn: Connection) -> Iterable[tuple[str, str, datetime]]:
    e = central_db.events.c
    query = sa.select(e.payload, e.best_at).where(
        e.kind == TAP_REFUSED,
        e.payload[("data", "reason")].as_string() == LOCK_INSTALLED_REFUSAL)
    for payload, at in conn.execute(query):
        data = payload.get("data", {})
        client, uid = data.get("client_ref"), data.get("uid")
        if isinstance(client, str) and isinstance(uid, str):
            yield client, uid, at


def _tags_down(conn: Connection, uids: Iterable[str]) -> set[str]:
    g = t.nfc_tags.c
    ordered = sorted(uids)
    down: set[str] = set()
    for i in range(0, len(ordered), 500):
        down |= set(conn.execute(sa.select(g.uid).where(
            g.uid.in_(ordered[i:i + 500]), g.state.in_([s.value for s in FINAL]))).scalars())
    return down


# --- physical keys and locks -------------------------------------------------------------------


def _key_uses(conn: Connection, s: Settings) -> Iterable[Alert]:
    u = t.key_uses.c
    window = s.now - timedelta(days=KEY_USE_REVIEW_DAYS)
    query = (sa.select(t.key_uses).where(u.used_at > window,
                                         u.lock_status == refdata.INSTALLED).order_by(u.id))
    for row in conn.execute(query):
        use = rows.key_use(row)
        severity = Severity.WARNING if use.reason == "lock_works" else Severity.INFO
        detail = (f"{use.unit} used a physical key at a client whose digital lock is "
                  f"installed ({use.reason}: {use.note or 'no note'}); digital locks are used "
                  "first: check the lock and follow the use up")
        yield Alert(AlertKind.PHYSICAL_KEY_USED_WHERE_LOCK_WORKS, severity, use.client_ref,
                    use.client_ref, None, None, use.used_at, detail)


def _low_battery(conn: Connection) -> Iterable[Alert]:
    """From verified lock proofs only: a forged or unproven reading raises nothing."""
    v = t.lock_verifications.c
    latest: dict[str, tuple[datetime, int, str | None]] = {}
    query = (sa.select(v.serial, v.battery, v.bound, v.bound_client, v.read_at)
             .where(v.verdict == "verified", v.battery.is_not(None), v.serial.is_not(None))
             .order_by(v.read_at, v.verified_at))
    for serial, level, bound, client, at in conn.execute(query):
        if serial not in latest or at >= latest[serial][0]:
            latest[serial] = (at, level, client if bound else None)
    for serial, (at, level, client) in sorted(latest.items()):
        alert = deadlines.low_battery_alert(serial, level)
        if alert is not None:
            yield Alert(alert.kind, alert.severity, serial, client, None, None, at,
                        alert.message)


def _tag_copies(conn: Connection, s: Settings) -> Iterable[Alert]:
    """Suspect reads of a tag, one alert per tag and device (the centre's SUN check)."""
    window = s.now - timedelta(days=TAG_COPY_REVIEW_DAYS)
    grouped: dict[tuple[str, str], list[suncheck.SuspectRead]] = defaultdict(list)
    for read in suncheck.suspects(conn, window):
        grouped[(read.uid or "", read.device)].append(read)
    for (uid, device), reads in sorted(grouped.items()):
        reasons = sorted({r.reason for r in reads})
        client = next((r.client_ref for r in reversed(reads) if r.client_ref), None)
        tag = f"tag {uid}" if uid else "a tag with no usable UID"
        late = (" A device that was offline delivers older reads late: if only replays "
                f"came from {device}, check when it last synced."
                if reasons == [str(SunVerdict.REPLAY)] else "")
        detail = (f"{tag}{f' of client {client}' if client else ''}: {len(reads)} read(s) "
                  f"from device {device} the centre could not accept ({', '.join(reasons)}), "
                  "from the first at "
                  f"{reads[0].at.astimezone(s.zone).strftime('%Y-%m-%d %H:%M')}: the tag may "
                  "be copied, or a URL read from it replayed. Check the tag at the client's "
                  f"door and that the visits registered from {device} took place; provision "
                  "the tag again or replace it, and report it to the provider's "
                  f"coordinator.{late}")
        yield Alert(CentreAlertKind.TAG_COPY_SUSPECTED, Severity.WARNING, uid or "-", client,
                    None, None, reads[0].at, detail, device=device,
                    verdict=", ".join(reasons))


def _from(alert: deadlines.Alert, client: str, case_id: int | None, job_id: int | None,
          since: datetime, *, detail: str | None = None) -> Alert:
    return Alert(alert.kind, alert.severity, alert.subject, client, case_id, job_id, since,
                 detail or alert.message, alert.due)

