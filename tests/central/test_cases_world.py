"""A small municipality for the routine store's tests (no tests here; imported by the others).

:class:`World` enrols one principal per role and unit on the central store under
test (SQLite or PostgreSQL, through the ``central_store`` fixture), and knows how to
walk a case through its flow: :class:`Do` is one step (an action, its answer, who
takes it, the checkpoints ticked, any setup just before), :class:`Branch` a whole
branch of a flow as the seed routine draws it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from central.cases.store import RoutineStore
from central.cases.values import Case, ImplementationKind
from central.store import CentralStore, DeviceInfo
from routine.flows import Flow
from routine.keys import KeyUnit
from sync.protocol import Event, ReferenceKind
from tests.central.conftest import SteppingClock

NORD, SYD = "hemtjanst-nord", "hemtjanst-syd"
ALARM, NIGHT = "larmgruppen", "nattgruppen"
ORDERING, OTHER_ORDERING = "bestallarenhet-1", "bestallarenhet-2"
SERVICES_FROM = date(2026, 11, 2)
FIRST_SLOT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)

INSTALL_CHECKS = ("knob_labelled_with_key_number", "job_marked_done")
REMOVAL_CHECKS = ("door_restored_with_original_knob", "job_marked_done")


class World:
    """Principals of every role and unit, and helpers that set the scene."""

    def __init__(self, central: CentralStore, clock: SteppingClock) -> None:
        self.central, self.clock = central, clock
        self.tokens: dict[str, str] = {}  # each enrolled name's token (shown once)
        self.rs = RoutineStore(central)
        self.admin = self.enrol("admin-1", "admin")
        self.assessor = self.enrol("handlaggare-1", "assessor", ORDERING)
        self.other_assessor = self.enrol("handlaggare-2", "assessor", OTHER_ORDERING)
        self.provider = self.enrol("utforare-nord", "provider", NORD)
        self.other_provider = self.enrol("utforare-syd", "provider", SYD)
        self.alarm_admin = self.enrol("larmhandlaggare-1", "alarm_admin", ALARM)
        self.night_admin = self.enrol("nattansvarig-1", "alarm_admin", NIGHT)
        self.fitter = self.enrol("montor-1", "fitter", ALARM)
        self.other_fitter = self.enrol("montor-2", "fitter", ALARM)
        self.agent = self.enrol("agent-1", "device")
        # The fitter's own agent (a laptop or Pi enrolled to the fitter): the only sender
        # of the fitter's lock verifications and checkpoints (central.senders).
        self.fitter_agent = self.enrol("montor-1-pi", "device", fitter=self.fitter.name)
        self._slots = 0
        self._keys = 0

    def enrol(self, name: str, role: str, unit: str | None = None, *,
              fitter: str | None = None) -> DeviceInfo:
        token = self.central.add_device(name, role, unit, fitter=fitter)
        self.tokens[name] = token
        return self.central.authenticate(token)

    def slot(self, hours: float = 1) -> tuple[datetime, datetime]:
        """A fresh appointment time that overlaps no earlier one."""
        start = FIRST_SLOT + timedelta(hours=2 * self._slots)
        self._slots += 1
        return start, start + timedelta(hours=hours)

    def key_number(self) -> str:
        self._keys += 1
        return f"N-{self._keys:04d}"

    # --- setting the scene ---------------------------------------------------------------

    def client(self, ref: str, lock_status: str = "pending") -> str:
        self.central.upsert_reference(ReferenceKind.CLIENT, ref,
                                      {"ref": ref, "lock_status": lock_status})
        return ref

    def services(self, client: str, *kinds: ImplementationKind) -> None:
        for kind in kinds:
            if kind is ImplementationKind.HOME_CARE:
                self.rs.implementations.start(client, kind, NORD, SERVICES_FROM, self.provider)
            else:
                unit = ALARM if kind is ImplementationKind.SAFETY_ALARM else NIGHT
                self.rs.implementations.start(client, kind, unit, SERVICES_FROM,
                                             self.alarm_admin)

    def provider_keys(self, client: str) -> None:
        self.rs.keys.register(client, KeyUnit.HOME_CARE_PROVIDER, self.key_number(),
                                 self.provider)

    def alarm_keys(self, client: str) -> None:
        self.rs.keys.register(client, KeyUnit.ALARM_GROUP, self.key_number(),
                                 self.alarm_admin)

    def bind(self, client: str) -> None:
        self.rs.locks.bind(f"PH-{client}", client, self.fitter)

    def unbind_and_return_alarm_keys(self, client: str) -> None:
        """What the fitter does at the door before ticking the removal (2b.8)."""
        self.rs.locks.unbind(f"PH-{client}", self.fitter)
        if any(s.unit is KeyUnit.ALARM_GROUP for s in self.rs.keys.sets(client, bound_only=True,
                                                                        actor=self.admin)):
            self.rs.keys.return_keys(client, KeyUnit.ALARM_GROUP, "Brukare A", self.fitter)

    def return_provider_keys(self, client: str) -> None:
        if any(s.unit is KeyUnit.HOME_CARE_PROVIDER
               for s in self.rs.keys.sets(client, bound_only=True, actor=self.admin)):
            self.rs.keys.return_keys(client, KeyUnit.HOME_CARE_PROVIDER, "Brukare A", self.provider)

    def installed(self, client: str, *kinds: ImplementationKind) -> str:
        """A client with a lock installed and bound, the services running and their keys."""
        self.client(client, "installed")
        self.bind(client)
        self.services(client, *kinds)
        if ImplementationKind.HOME_CARE in kinds:
            self.provider_keys(client)
        if ImplementationKind.SAFETY_ALARM in kinds:
            self.alarm_keys(client)
        return client

    def lock_status(self, client: str) -> str | None:
        items, _, _ = self.central.reference_since(0, 1000)
        found = [i.data.get("lock_status") for i in items
                 if i.kind == ReferenceKind.CLIENT and i.key == client]
        return found[-1] if found else None

    # --- walking a case ------------------------------------------------------------------

    def open(self, flow: Flow, client: str) -> Case:
        if flow in (Flow.INSTALL_ASSESSED, Flow.REMOVE_ASSESSED):
            provider = NORD if flow is Flow.INSTALL_ASSESSED else None
            return self.rs.cases.open(flow, client, self.assessor, provider_unit=provider)
        return self.rs.cases.open(flow, client, self.alarm_admin)

    def take(self, case: Case, do: Do) -> None:
        if do.before is not None:
            do.before(self, case.client_ref)
        actor = getattr(self, do.who)
        if do.action.startswith("book_"):
            job = next(j for j in self.rs.binder.jobs(self.alarm_admin) if j.case_id == case.id)
            self.rs.schedule.book(job.id, actor.name, *self.slot(), actor)
        else:
            self.rs.cases.act(case.id, do.action, do.answer, actor, checks=do.checks)

    # --- what agents send --------------------------------------------------------------

    def ingest(self, kind: str, at: datetime, **data: Any) -> None:
        event = Event(event_id=uuid.uuid4().hex, kind=kind, device_id=self.agent.name, at=at,
                      boottime_ns=0, boot_id="boot-a", clock_synced=True, data=data)
        result = self.central.ingest(self.agent, [event], None)
        assert result.stored == [event.event_id], result

    def visit(self, client: str, at: datetime, *, method: str = "nfc_tag",
              tag_uid: str | None = "04A1B2C3D4E5F6") -> None:
        self.ingest("visit.arrived", at, visit_id=uuid.uuid4().hex, client_ref=client,
                    staff_ref="P-anna", tag_uid=tag_uid, method=method)


@dataclass(frozen=True)
class Do:
    """One step: ``who`` (a World attribute) takes ``action`` with ``answer``."""

    who: str
    action: str
    answer: str | None = None
    checks: tuple[str, ...] = ()
    before: Callable[[World, str], None] | None = None


@dataclass(frozen=True)
class Branch:
    """A branch of a flow from its start to one of its final states."""

    flow: Flow
    steps: tuple[Do, ...]
    outcome: str
    documentation: tuple[str, ...] = ()
    lock_status: str | None = None  # after the case; None: as given
    given: Callable[[World, str], None] | None = None
    then: Callable[[World, Case], None] | None = None
