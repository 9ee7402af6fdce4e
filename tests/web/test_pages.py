"""Addresses that name nothing, and refusals shown where the step was taken, in the browser."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.central.test_lock_proofs import install_job
from tests.web.site import Site, step

KNOB = "märker upp brukarens låsvred"
DONE = "Arbetet markerat som utfört i pärm"
MISSING = "Sidan finns inte."


def test_an_address_that_names_no_page_gets_a_swedish_page(site: Site) -> None:
    site.password("handlaggare-1")
    anonymous = site.new_page()
    answer = anonymous.goto("/finns-inte")
    assert answer is not None and answer.status == 404
    expect(anonymous.get_by_role("alert")).to_contain_text(MISSING)
    expect(anonymous.get_by_role("link", name="Till startsidan")).to_be_visible()
    assert anonymous.get_by_role("navigation", name="Huvudmeny").count() == 0

    page = site.as_("handlaggare-1")
    answer = page.goto("/arenden/finns-inte/alls")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("alert")).to_contain_text(MISSING)
    expect(page.get_by_role("navigation", name="Huvudmeny")).to_be_visible()  # signed in
    # a case that does not exist (or is not yours) is the store's "not found"
    answer = page.goto("/arenden/999999")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("alert")).to_contain_text("Hittades inte")
    # the machine interface keeps its JSON problem details, whatever the client accepts
    api = page.request.get("/v1/finns-inte", headers={"Accept": "text/html"})
    assert api.status == 404
    assert api.headers["content-type"].startswith("application/json"), api.headers
    assert api.json()["error"] and "openapi.json" in api.json()["advice"]


def test_a_step_refused_on_the_job_page_is_shown_there_with_what_was_filled_in(
        site: Site) -> None:
    w = site.world
    _case_id, job_id = install_job(w, "K-UTAN-BEVIS")  # booked for montor-1, lock not proven
    fitter = site.as_("montor-1")
    fitter.goto(f"/parm/{job_id}")
    step(fitter, "install_lock", None, KNOB, DONE, note="Låset sitter, appen krånglar")
    alert = fitter.get_by_role("alert")
    expect(alert).to_contain_text("kontrollpunkter är inte uppfyllda")
    # still the job's page, with the form as it was filled in
    expect(fitter.get_by_role("heading", name=f"Montering, jobb {job_id}")).to_be_visible()
    form = fitter.locator("form#steg-install_lock")
    expect(form.get_by_label(KNOB)).to_be_checked()
    expect(form.get_by_label(DONE)).to_be_checked()
    expect(form.get_by_label("Anteckning (valfri)")).to_have_value("Låset sitter, appen krånglar")
    assert w.rs.binder.job(job_id, actor=w.admin).done_at is None  # nothing taken

    # once the lock is proven bound, the same form on the same page takes the step
    site.prove_bound("PH-PAGES-1", "K-UTAN-BEVIS", job_id)
    fitter.goto(f"/parm/{job_id}")
    step(fitter, "install_lock", None, KNOB, DONE)
    expect(fitter.get_by_text("Steget är registrerat i ärendet.")).to_be_visible()
    assert fitter.url.endswith(f"/parm/{job_id}?klart=steg"), fitter.url
    assert w.rs.binder.job(job_id, actor=w.admin).done_at is not None


def test_implementations_are_started_and_ended_by_their_role_with_refusals_shown(
        site: Site) -> None:
    w = site.world
    w.client("K-INSATS")
    provider = site.as_("utforare-nord")
    provider.goto("/verkstallighet/K-INSATS")
    expect(provider.get_by_text("Inga insatser registrerade för brukaren.")).to_be_visible()
    # a provider starts only home care (the alarms are the alarm group's)
    options = provider.get_by_label("Insats", exact=True).locator("option").all_inner_texts()
    assert options == ["Hemtjänst"], options
    provider.get_by_label("Från och med (dag)").fill("2026-11-30")
    provider.get_by_role("button", name="Registrera verkställighet").click()
    expect(provider.get_by_text("Verkställigheten är registrerad.")).to_be_visible()
    # a second running home care is refused, on the page, nothing changed
    provider.get_by_label("Från och med (dag)").fill("2026-12-01")
    provider.get_by_role("button", name="Registrera verkställighet").click()
    expect(provider.get_by_role("alert")).to_contain_text(
        "Verkställigheten stämmer inte med det som redan är registrerat.")
    assert len(w.rs.implementations.of_client("K-INSATS", actor=w.admin)) == 1
    # ended on a day, shown as ended
    provider.get_by_label("Sista dag för hemtjänst (hemtjanst-nord)").fill("2026-12-04")
    provider.get_by_role("button", name="Avsluta hemtjänst").click()
    expect(provider.get_by_text("Verkställigheten är avslutad.")).to_be_visible()
    expect(provider.locator("table")).to_contain_text("2026-12-04 (utforare-nord)")
    [ended] = w.rs.implementations.of_client("K-INSATS", actor=w.admin)
    assert str(ended.ended_on) == "2026-12-04"
    # a fitter sees the client's implementations but has nothing to start or end
    fitter = site.as_("montor-1")
    fitter.goto("/verkstallighet/K-INSATS")
    expect(fitter.locator("table")).to_contain_text("Hemtjänst")
    assert fitter.get_by_role("button", name="Registrera verkställighet").count() == 0
