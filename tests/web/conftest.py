"""Browser tests of the web pages: the system's Chromium driven by Playwright (sync API),
a real centre served by uvicorn on loopback over SQLite and PostgreSQL.

- ``browser`` (one per session) launches /usr/bin/chromium; never a downloaded browser
  (``playwright install`` is never run). Where /usr/bin/chromium is missing, the
  session installs the Debian packages (``apt-get install chromium chromium-driver``)
  and FAILS, never skips, if it is still missing.
- ``site`` (per test): a migrated centre on ``database_url`` (a SQLite file, or a fresh
  PostgreSQL database: tests/central/conftest.py) with the routine's cast enrolled
  (:class:`tests.central.test_cases_world.World`), each with a web password, served
  by :func:`central.server.run_in_thread`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from central.http.app import create_app
from central.server import run_in_thread
from central.store import CentralStore
from tests.central.conftest import (  # noqa: F401  (fixtures by name)
    SteppingClock,
    central_clock,
    central_store,
    database_url,
)
from tests.web.site import Site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _install_chromium() -> None:
    """apt-get install; once more after ``apt-get update`` when the package lists are
    stale (a fresh machine's lists may name versions the mirror no longer has)."""
    sudo = ["sudo", "-n"] if os.geteuid() != 0 and shutil.which("sudo") else []
    install = [*sudo, "apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    for before in ([], [*sudo, "apt-get", "update", "-q"]):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            if before:
                subprocess.run(before, check=False, timeout=600, capture_output=True)
            subprocess.run(install, check=False, timeout=600, capture_output=True)
        if CHROMIUM.exists():
            return


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        _install_chromium()
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing and 'apt-get install -y chromium chromium-driver' "
                    "did not install it: the web tests drive the system's Chromium (never "
                    "a downloaded one); install the Debian packages chromium and "
                    "chromium-driver", pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium: Path) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def site(central_store: CentralStore, central_clock: SteppingClock,  # noqa: F811
         browser: Browser) -> Iterator[Site]:
    site = Site(central_store, central_clock, browser)
    with run_in_thread(create_app(central_store, routine=site.world.rs)) as (_s, _t, url):
        site.url = url
        try:
            yield site
        finally:
            site.close()
