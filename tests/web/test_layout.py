"""The pages on a tablet: no sideways scrolling at 768 px, every control labelled and
reachable by keyboard, Swedish declared."""

from __future__ import annotations

from playwright.sync_api import Page

from central.cases.values import ImplementationKind
from tests.central.test_lock_proofs import install_job
from tests.web.site import Site, shot

UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea')]
  .filter(e => e.labels === null || e.labels.length === 0)
  .map(e => e.outerHTML)"""
DIV_BUTTONS = """() => [...document.querySelectorAll(
    '[onclick], div[role=button], span[role=button]')].map(e => e.outerHTML)"""


def check(page: Page, path: str) -> None:
    page.goto(path)
    assert "/logga-in" not in page.url or path == "/logga-in", path
    assert page.locator("html").get_attribute("lang") == "sv"
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 768, f"{path}: {width} px wide at 768"
    assert page.evaluate(UNLABELLED) == [], path
    assert page.evaluate(DIV_BUTTONS) == [], path
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Hoppa till innehållet"


def test_main_pages_fit_768_px_and_label_every_control(site: Site) -> None:
    w = site.world
    case_id, job_id = install_job(w, "K-SMAL")
    w.installed("K-KLAR", ImplementationKind.HOME_CARE, ImplementationKind.SAFETY_ALARM)
    anonymous = site.new_page(768)
    check(anonymous, "/logga-in")
    pages = {
        "admin-1": ["/", "/arenden?visa=alla", f"/arenden/{case_id}", "/inkorg?visa=alla",
                    "/parm", f"/parm/{job_id}", "/schema?vecka=2026-W50", "/nycklar",
                    "/nycklar/K-SMAL", "/etiketter", "/larm", "/rapporter"],
        "utforare-nord": ["/", "/etiketter", "/nycklar/K-SMAL", f"/arenden/{case_id}"],
        "handlaggare-1": ["/"],
        "montor-1": ["/", f"/parm/{job_id}", "/schema?vecka=2026-W50"],
    }
    for name, paths in pages.items():
        page = site.as_(name, width=768)
        for path in paths:
            check(page, path)
    shot(page, "schema-vecka-768")
