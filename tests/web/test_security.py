"""Signing in and out, sessions, CSRF and foreign origins, in the browser."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from central.cases.values import ImplementationKind
from routine.flows import Flow
from tests.central.test_lock_proofs import install_job
from tests.web.site import DASH, Site

WRONG = "Fel användarnamn eller lösenord."
REFUSED = "Formuläret kom inte från den här sidan och togs inte emot."


def test_no_session_goes_to_sign_in_and_back(site: Site) -> None:
    site.password("handlaggare-1")
    page = site.new_page()
    page.goto("/arenden?flode=2a")
    assert re.search(r"/logga-in\?nasta=/arenden%3Fflode%3D2a$", page.url), page.url
    expect(page.get_by_role("heading", name="Logga in")).to_be_visible()
    page.get_by_label("Användarnamn").fill("handlaggare-1")
    page.get_by_label("Lösenord").fill("rätt-lösenord-2026")
    page.get_by_role("button", name="Logga in").click()
    assert page.url.endswith("/arenden?flode=2a"), page.url
    expect(page.get_by_role("heading", name="Ärenden")).to_be_visible()
    # the session cookie: HttpOnly, SameSite, the whole site
    [cookie] = [c for c in page.context.cookies() if c["name"] == "nf_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] in ("Lax", "Strict")
    assert cookie["path"] == "/"
    # a POST without a session goes to the sign-in, nothing is done
    anonymous = site.new_page()
    response = anonymous.request.post("/arenden", form={"flode": "2a", "brukare": "K-X"},
                                      max_redirects=0)
    assert response.status == 303 and "/logga-in" in response.headers["location"]
    assert site.world.rs.cases.find(actor=site.world.admin) == []


def test_wrong_password_and_unknown_name_get_the_same_answer(site: Site) -> None:
    page = site.new_page()
    site.sign_in(page, "handlaggare-1", "fel-lösenord-som-är-långt")
    expect(page.get_by_role("alert")).to_contain_text(WRONG)
    expect(page.get_by_label("Användarnamn")).to_have_value("handlaggare-1")
    expect(page.get_by_label("Lösenord")).to_have_value("")
    site.sign_in(page, "ingen-sadan", "fel-lösenord-som-är-långt")
    expect(page.get_by_role("alert")).to_contain_text(WRONG)
    site.sign_in(page, "agent-1", "fel-lösenord-som-är-långt")  # a field device: no web
    expect(page.get_by_role("alert")).to_contain_text(WRONG)
    assert "/logga-in" in page.url
    assert not [c for c in page.context.cookies() if c["name"] == "nf_session"]


def test_posts_need_the_sessions_csrf_token_and_this_origin(site: Site) -> None:
    page = site.as_("handlaggare-1")
    token = page.locator("input[name=csrf]").first.input_value()
    form = {"flode": "2a", "brukare": "K-CSRF", "utforare": "hemtjanst-nord"}
    for sent in ({}, {"csrf": "inte-sessionens"}):
        response = page.request.post("/arenden", form={**form, **sent}, max_redirects=0)
        assert response.status == 403, response.status
        assert REFUSED in response.text()
    response = page.request.post("/arenden", form={**form, "csrf": token}, max_redirects=0,
                                 headers={"Origin": "http://elak.example"})
    assert response.status == 403 and REFUSED in response.text()
    response = page.request.post("/arenden", form={**form, "csrf": token}, max_redirects=0,
                                 headers={"Referer": "http://elak.example/form"})
    assert response.status == 403
    assert site.world.rs.cases.find(actor=site.world.admin) == []
    # the page's own form, with its token and origin, is taken
    page.get_by_label("Brukare (referens)").fill("K-CSRF")
    page.get_by_label("Hemtjänstutförare som beställningen går till").select_option(
        "hemtjanst-nord")
    page.get_by_role("button", name="Öppna ärende").click()
    expect(page.get_by_text("Ärendet är öppnat.")).to_be_visible()
    # the sign-in form's double-submit cookie
    anonymous = site.new_page()
    response = anonymous.request.post("/logga-in", max_redirects=0, form={
        "login_csrf": "gissad", "namn": "handlaggare-1", "losenord": "rätt-lösenord-2026"})
    assert response.status == 403


def test_logout_ends_the_session_for_good(site: Site) -> None:
    page = site.as_("larmhandlaggare-1")
    page.goto("/inkorg")
    cookie = next(c for c in page.context.cookies() if c["name"] == "nf_session")
    page.get_by_role("button", name="Logga ut").click()
    expect(page.get_by_text("Du är utloggad.")).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", name="Logga in")).to_be_visible()
    assert "/logga-in" in page.url
    page.goto("/inkorg")
    assert "/logga-in" in page.url
    # the old cookie, replayed, opens nothing: the session is gone at the centre
    replay = site.new_page()
    replay.context.add_cookies([cookie])
    replay.goto("/inkorg")
    assert "/logga-in" in replay.url


def test_revoked_principal_is_signed_out(site: Site) -> None:
    page = site.as_("utforare-syd")
    site.world.central.revoke_device("utforare-syd")
    page.goto("/arenden")
    assert "/logga-in" in page.url


def test_double_booking_is_refused_with_the_message_shown(site: Site) -> None:
    w = site.world
    install_job(w, "K-BOKAD")  # booked for montor-1 2026-12-07 09:00-10:00 local time
    w.client("K-LEDIG")
    w.services("K-LEDIG", ImplementationKind.HOME_CARE)
    case = w.open(Flow.INSTALL_ASSESSED, "K-LEDIG")
    for action, answer in (("send_order", None), ("lock_already_installed", "no"),
                           ("code_lock", "no"), ("home_care_only_opens_door", "no"),
                           ("client_refuses", "no"), ("request_lock", "keys_missing")):
        actor = w.assessor if action == "send_order" else w.provider
        w.rs.cases.act(case.id, action, answer, actor)
    w.rs.cases.act(case.id, "put_install_job", None, w.alarm_admin)
    job = next(j for j in w.rs.binder.jobs(w.alarm_admin) if j.client_ref == "K-LEDIG")

    fitter = site.as_("montor-1")
    fitter.goto("/schema?vecka=2026-W50")
    expect(fitter.locator(".booking")).to_contain_text(f"09:00{DASH}10:00 montor-1: montering hos "
                                                       "K-BOKAD")
    fitter.get_by_label("Jobb", exact=True).select_option(str(job.id))
    fitter.get_by_label("Dag").fill("2026-12-07")
    fitter.get_by_label("Från (klockslag)").fill("09:30")
    fitter.get_by_label("Till (klockslag)").fill("10:30")
    fitter.get_by_label("Anteckning (valfri)").fill("Ring på två gånger")
    fitter.get_by_role("button", name="Boka tiden").click()
    alert = fitter.get_by_role("alert")
    expect(alert).to_contain_text("Dubbelbokning")
    expect(alert).to_contain_text("montor-1 är redan bokad 2026-12-07 kl. 09:00-10:00 för "
                                  "montering hos brukare K-BOKAD")
    # nothing lost: the form keeps what was filled in
    expect(fitter.get_by_label("Från (klockslag)")).to_have_value("09:30")
    expect(fitter.get_by_label("Anteckning (valfri)")).to_have_value("Ring på två gånger")
    expect(fitter.get_by_label("Jobb", exact=True)).to_have_value(str(job.id))
    assert w.rs.binder.job(job.id, actor=w.admin).booking is None
    # another time is taken
    fitter.get_by_label("Från (klockslag)").fill("10:00")
    fitter.get_by_label("Till (klockslag)").fill("11:00")
    fitter.get_by_role("button", name="Boka tiden").click()
    expect(fitter.get_by_text("Tiden är bokad i det gemensamma schemat.")).to_be_visible()
    expect(fitter.locator(".booking")).to_have_count(2)
