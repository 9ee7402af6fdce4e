"""A centre with the routine's cast for the browser tests, and what they do with it.

:class:`Site` gives every principal of :class:`~tests.central.test_cases_world.World` a
web password, opens a browser page signed in as any of them (its own context: its own
cookies), and pushes what the fitter's agent sends on site (lock proofs, checkpoints)
through the real sync API, as tests/central/test_lock_proofs.py builds it.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, expect

from central.store import CentralStore
from central.web.accounts import AccountError, set_password
from sync.protocol import PROTOCOL_HEADER, Event, PushRequest
from tests.central.conftest import SteppingClock
from tests.central.test_cases_world import World
from tests.central.test_lock_proofs import SECRET, proof, tick

PASSWORD = "rätt-lösenord-2026"
SCREENSHOTS_ENV = "NYCKELFRI_SCREENSHOTS"
DASH = "\u2013"  # the pages write time spans with an en dash: 09:00\u201310:00


class Site:
    def __init__(self, central: CentralStore, clock: SteppingClock, browser: Browser) -> None:
        self.world = World(central, clock)
        self.browser = browser
        self.url = ""
        self.contexts: list[BrowserContext] = []
        self.passwords: set[str] = set()

    def password(self, name: str) -> None:
        """Give ``name`` its web password (once; scrypt is slow on purpose)."""
        if name not in self.passwords and name in self.world.tokens:
            with contextlib.suppress(AccountError):  # a field device has no web password
                set_password(self.world.central, name, PASSWORD)
            self.passwords.add(name)

    def close(self) -> None:
        for context in self.contexts:
            context.close()

    # --- the browser ------------------------------------------------------------------

    def new_page(self, width: int = 1024) -> Page:
        context = self.browser.new_context(base_url=self.url, locale="sv-SE",
                                           viewport={"width": width, "height": 800})
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        return context.new_page()

    def sign_in(self, page: Page, name: str, password: str = PASSWORD) -> None:
        self.password(name)
        page.goto("/logga-in")
        page.get_by_label("Användarnamn").fill(name)
        page.get_by_label("Lösenord").fill(password)
        page.get_by_role("button", name="Logga in").click()

    def as_(self, name: str, width: int = 1024) -> Page:
        """A page signed in as ``name`` (on its start page)."""
        page = self.new_page(width)
        self.sign_in(page, name)
        expect(page.get_by_text(f"Inloggad: {name}")).to_be_visible()
        return page

    # --- the fitter's agent on site -------------------------------------------------------

    def push(self, *events: Event) -> None:
        """POST /v1/events as the fitter's agent (the device enrolled to montor-1)."""
        agent = self.world.fitter_agent.name
        body = PushRequest(device_id=agent, events=list(events)).model_dump(mode="json")
        response = httpx.post(f"{self.url}/v1/events", json=body, timeout=10, headers={
            PROTOCOL_HEADER: "1", "Authorization": f"Bearer {self.world.tokens[agent]}"})
        assert response.status_code == 200, response.text
        assert sorted(response.json()["stored"]) == sorted(e.event_id for e in events)

    def prove_bound(self, serial: str, client: str, job_id: int) -> None:
        """2a.7 on site: the agent reads the lock (bound to the client) and ticks it."""
        self.world.rs.locks.enrol(serial, SECRET, self.world.alarm_admin)
        seen = proof(self.world, serial, bound=True, client=client, job_id=job_id)
        self.push(seen, tick(self.world, job_id, "lock_bound_to_client",
                             verification=seen.event_id))

    def prove_unbound(self, serial: str, client: str, job_id: int) -> None:
        """2b.8 on site: the agent reads the lock unbound from the client and ticks it."""
        self.world.rs.locks.enrol(serial, SECRET, self.world.alarm_admin)
        seen = proof(self.world, serial, bound=False, client=client, job_id=job_id)
        self.push(seen, tick(self.world, job_id, "lock_unbound_from_client",
                             verification=seen.event_id))


def step(page: Page, action: str, answer: str | None = None, *checks: str,
         note: str = "") -> None:
    """Take the step ``action`` in its form on the case (or job) page."""
    form = page.locator(f"form#steg-{action}")
    if answer is not None:
        form.get_by_label(answer, exact=True).check()
    for label in checks:
        form.get_by_label(label).check()
    if note:
        form.get_by_label("Anteckning (valfri)").fill(note)
    form.get_by_role("button", name="Registrera steget").click()


def case_id_of(page: Page) -> int:
    match = re.search(r"/arenden/([0-9]+)", page.url)
    assert match, page.url
    return int(match[1])


def shot(page: Page, name: str) -> None:
    """A PNG of the page in $NYCKELFRI_SCREENSHOTS (docs/screenshots), when set."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
