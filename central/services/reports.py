"""Alerts and reports: what someone must act on now, and the routine's follow-up
(pending installs in working days, removals due, client status, visits per method).
For the routine's principals (admin and the four roles), not for field agents."""

from __future__ import annotations

from datetime import date, timedelta

from central.cases import access, refdata, reports
from central.cases.access import Actor
from central.cases.alerts import Alert, Settings, compute
from central.services.base import Service
from routine import deadlines
from routine.keys import KeyPolicy


class Alerts(Service):
    def current(self, *, actor: Actor, today: date | None = None, no_visit_hours: float = 24,
                removal_warn_days: int = deadlines.REMOVAL_WARN_DAYS) -> list[Alert]:
        """What someone must act on now, most severe first (:mod:`central.cases.alerts`).

        ``today`` (default: the centre's) dates the deadlines; the no-visit gap,
        ``no_visit_hours``, is measured to the centre's clock now.
        """
        access.require_routine_principal(actor)
        settings = Settings(now=self.central.now(), today=today or self.central.today(),
                            zone=self.central.day_zone,
                            no_visit_gap=timedelta(hours=no_visit_hours),
                            removal_warn_days=removal_warn_days,
                            key_policy=self.core.key_policy)
        with self.core.read() as conn:
            return compute(conn, settings)


class Reports(Service):
    def pending_installs(self, *, actor: Actor,
                         today: date | None = None) -> list[reports.PendingInstall]:
        """Open install cases with the lock requested, and their age in working days."""
        access.require_routine_principal(actor)
        with self.core.read() as conn:
            return reports.pending_installs(conn, today or self.central.today(),
                                            self.central.day_zone)

    def removals(self, *, actor: Actor, today: date | None = None) -> list[reports.Removal]:
        """Locks to remove, by due date (14 days after the last implementation ended)."""
        access.require_routine_principal(actor)
        with self.core.read() as conn:
            return reports.removals(conn, today or self.central.today())

    def client_status(self, client_ref: str | None = None, *, actor: Actor,
                      policy: KeyPolicy | None = None) -> list[reports.ClientStatus]:
        """Lock status, tags and key sets (held against required) per client."""
        access.require_routine_principal(actor)
        clients = None if client_ref is None else [refdata.client_ref(client_ref)]
        with self.core.read() as conn:
            return reports.client_status(conn, clients, policy or self.core.key_policy)

    def visits_by_method(self, *, actor: Actor, start: date | None = None,
                         end: date | None = None) -> list[reports.VisitMethods]:
        """Visits per client by registration method (tag or lock), days start..end."""
        access.require_routine_principal(actor)
        with self.core.read() as conn:
            return reports.visits_by_method(conn, self.central.day_zone, start, end)
