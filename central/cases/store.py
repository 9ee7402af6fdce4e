"""The routine store: the routine's services at the centre, composed over one central store.

:class:`RoutineStore` sits on a :class:`central.store.CentralStore` and shares its
engine, clock and day zone. It holds one service per aggregate
(:mod:`central.services`), each of whose methods takes the acting principal and decides
itself whether it may do what it asks, so the HTTP API, the CLI and the web pages are thin
callers that cannot differ. What must hold, and how:

- **A case moves only as the routine allows** (:mod:`central.services.cases`); the
  routine's errors pass through with the state and the actions allowed there.
- **Every step is on record, once, for good.** One append-only ``case_steps`` row
  per step (no code path updates or deletes one; a trigger refuses it), written in
  the same transaction as the case's new state and the step's effects
  (:mod:`central.cases.effects`): all of it commits, or none.
- **Steps on one case, bookings of one fitter, are serialised.** A step locks its
  case row, a booking its fitter's row (``SELECT .. FOR UPDATE`` on PostgreSQL;
  SQLite has one writer), so a double booking cannot slip between two processes.
- **Who may do what is decided in the services** (:mod:`central.cases.access`).
"""

from __future__ import annotations

from central.cases import proofs, sun, suncheck
from central.cases.access import Units
from central.services.base import Core
from central.services.binder import Binder
from central.services.cases import Cases
from central.services.implementations import Implementations
from central.services.inbox import Inbox
from central.services.keys import Keys
from central.services.locks import Locks
from central.services.principals import Principals
from central.services.reports import Alerts, Reports
from central.services.schedule import Schedule
from central.services.tags import Tags
from central.store import CentralStore
from routine.keys import DEFAULT_POLICY, KeyPolicy


class RoutineStore:
    """The routine's services at the centre. Thread-safe, like the central store under it.

    ``units`` names the alarm and night group; ``key_policy`` is the municipality's
    reading of what section 4 leaves open (:class:`routine.keys.KeyPolicy`);
    ``tag_when_no_lock_by_choice`` lets providers issue NFC tags to clients who chose
    to have no lock (lock status ``none``): off, as the seed names only clients whose
    lock is pending or impossible (section 5). ``tag_url_base`` and ``tag_policy`` are the
    SUN defaults (:mod:`central.cases.sun`) where the centre's settings table names none
    (``nyckelfri-central tag-keys url-base|policy`` set them for every process).
    """

    def __init__(self, central: CentralStore, *, units: Units | None = None,
                 key_policy: KeyPolicy = DEFAULT_POLICY,
                 tag_when_no_lock_by_choice: bool = False,
                 tag_url_base: str = sun.DEFAULT_URL_BASE,
                 tag_policy: str = sun.AUTO) -> None:
        self.core = core = Core(central, units=units, key_policy=key_policy,
                                tag_when_no_lock_by_choice=tag_when_no_lock_by_choice)
        self.central, self.units, self.key_policy = central, core.units, key_policy
        self.principals = Principals(core)
        self.implementations = Implementations(core)
        self.cases = Cases(core)
        self.inbox = Inbox(core)
        self.binder = Binder(core)
        self.schedule = Schedule(core)
        self.keys = Keys(core)
        self.tags = Tags(core)
        self.locks = Locks(core)
        self.alerts = Alerts(core)
        self.reports = Reports(core)
        # The centre's own appliers and checks over what agents send.
        self.proofs = proofs.LockProofs(self)
        central.add_applier(proofs.APPLIER, proofs.KINDS, self.proofs.apply)
        self.sun = sun.SunAuthority(self, url_base=tag_url_base, tag_policy=tag_policy)
        central.add_ingest_check(suncheck.CHECKER, suncheck.KINDS, suncheck.check_taps)
