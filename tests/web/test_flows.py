"""Flows 2a and 2b walked end to end in the browser, each role on its own pages.

What happens outside the browser: what is physical (the fitter's agent proves the lock
on site and pushes its proof and checkpoint through the real sync API) and what the
tests start from: the client's reference record and the services the client gets (the
municipality's systems deliver both), and for 2b a client with an installed lock (2a's
outcome). Job ids are read off the binder page. Every step asserts what the page
shows: the audit trail, the state, the verbatim texts.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from central.cases.values import ImplementationKind
from routine import texts
from tests.central.test_cases_world import NORD
from tests.web.site import DASH, Site, case_id_of, shot, shots_wanted, step

HOME, ALARM = ImplementationKind.HOME_CARE, ImplementationKind.SAFETY_ALARM
KNOB = "märker upp brukarens låsvred"
DONE = "Arbetet markerat som utfört i pärm"
DOOR = "ordinarie låsvredet"


def job_in_binder(page: Page, kind: str) -> int:
    """The id of the one job of ``kind`` the binder page lists, read off its link."""
    link = page.get_by_role("link", name=re.compile(rf"^{kind}, jobb [0-9]+$"))
    expect(link).to_have_count(1)
    return int(link.inner_text().rsplit(" ", 1)[1])


def trail(page: Page) -> list[str]:
    return page.locator("ol.trail > li").all_inner_texts()


def test_2a_installation_in_the_browser(site: Site) -> None:
    client = "K-WEB-1"
    w = site.world
    w.client(client)

    # 2a.1-2a.2: the assessor opens the case and sends the order.
    assessor = site.as_("handlaggare-1")
    shot(assessor, "start-bistandshandlaggare")
    assessor.get_by_label("Flöde").select_option("2a")
    assessor.get_by_label("Brukare (referens)").fill(client)
    assessor.get_by_label("Hemtjänstutförare som beställningen går till").select_option(NORD)
    assessor.get_by_role("button", name="Öppna ärende").click()
    expect(assessor.get_by_text("Ärendet är öppnat.")).to_be_visible()
    case_id = case_id_of(assessor)
    step(assessor, "send_order")
    expect(assessor.get_by_text("Steget är registrerat i ärendet.")).to_be_visible()
    expect(assessor.locator("#arendelage")).to_have_text(
        "Beställning skickad till hemtjänstutföraren")
    assert "2a.2 • Biståndshandläggaren skickar en beställning" in trail(assessor)[0]

    # 2a.3-2a.4: the provider takes the order, passes the checkpoints, has the keys and
    # messages Digitala LÅS.
    provider = site.as_("utforare-nord")
    expect(provider.locator("#text-kodlas")).to_have_value(texts.CODE_LOCK)
    expect(provider.locator("#text-oppnar")).to_have_value(texts.OPENS_DOOR_THEMSELF)
    expect(provider.locator("#text-overens")).to_have_value(texts.AGREED_WITH_ASSESSOR)
    shot(provider, "start-hemtjanstutforare")
    provider.get_by_role("link", name=f"Ärende {case_id}").click()
    # the provider's home care for the client is recorded as running (verkställighet)
    provider.get_by_role("link", name=f"Insatser som verkställs hos brukare {client}").click()
    provider.get_by_label("Insats", exact=True).select_option("home_care")
    expect(provider.get_by_label("Enhet som verkställer")).to_have_value(NORD)
    provider.get_by_label("Från och med (dag)").fill("2026-11-30")
    provider.get_by_role("button", name="Registrera verkställighet").click()
    expect(provider.get_by_text("Verkställigheten är registrerad.")).to_be_visible()
    expect(provider.locator("table")).to_contain_text(f"Hemtjänst{NORD}2026-11-30")
    provider.goto(f"/arenden/{case_id}")
    for action in ("lock_already_installed", "code_lock", "home_care_only_opens_door",
                   "client_refuses"):
        step(provider, action, "Nej")
        expect(provider.get_by_text("Steget är registrerat i ärendet.")).to_be_visible()
    expect(provider.locator("#arendelage")).to_have_text(
        "Kontrollpunkterna klara: digitalt lås ska installeras")
    provider.goto(f"/nycklar/{client}")
    provider.get_by_label("Enhet som har nycklarna").select_option("home_care_provider")
    provider.get_by_label("Nyckelnummer").fill("N-7001")
    provider.get_by_role("button", name="Registrera nycklar").click()
    expect(provider.get_by_text("Nyckeluppsättningen är registrerad.")).to_be_visible()
    expect(provider.get_by_text("Nyckelnummer N-7001")).to_be_visible()
    provider.goto(f"/arenden/{case_id}")
    step(provider, "request_lock", "Fysiska nycklar finns till brukaren")
    expect(provider.locator("#arendelage")).to_have_text("Meddelande i Digitala LÅS")
    # Section 5: while the lock is pending, the provider puts an NFC tag at the door.
    provider.goto("/etiketter")
    provider.get_by_label("Antal nya etiketter till lagret").fill("3")
    provider.get_by_role("button", name="Lägg till i lager").click()
    expect(provider.get_by_text("NFC-etiketterna är tillagda i lagret.")).to_be_visible()
    provider.get_by_label("Etikettens UID").fill("04A1B2C3D4E5F6")
    provider.get_by_label("Brukare (referens)").fill(client)
    provider.get_by_role("button", name="Lämna ut etikett").click()
    expect(provider.get_by_text("NFC-etiketten är utlämnad.")).to_be_visible()

    # 2a.5: the alarm administrator handles the inbox and puts the job in the binder.
    admin = site.as_("larmhandlaggare-1")
    expect(admin.get_by_text(f"Montering hos brukare {client}")).to_be_visible()
    expect(admin.get_by_text("Fysiska nycklar finns till brukaren.")).to_be_visible()
    admin.get_by_role("link", name="Digitala LÅS").click()
    admin.get_by_role("link", name=f"Ärende {case_id}").click()
    step(admin, "put_install_job")
    expect(admin.locator("#arendelage")).to_have_text("Monteringsjobb i pärm")
    admin.goto("/inkorg")
    expect(admin.get_by_text("Inga ohanterade meddelanden.")).to_be_visible()
    admin.goto("/parm")
    job_id = job_in_binder(admin, "Montering")
    shot(admin, "parm")

    # 2a.6: the fitter books a time with the client in the shared schedule.
    fitter = site.as_("montor-1")
    expect(fitter.get_by_text("Inga jobb.")).to_be_visible()  # none booked for them yet
    fitter.get_by_role("link", name="Pärm", exact=True).click()
    fitter.get_by_role("link", name=f"Montering, jobb {job_id}").click()
    fitter.get_by_label("Dag").fill("2026-12-01")
    fitter.get_by_label("Från (klockslag)").fill("09:00")
    fitter.get_by_label("Till (klockslag)").fill("10:00")
    fitter.get_by_role("button", name="Boka tiden").click()
    expect(fitter.get_by_text("Tiden är bokad i det gemensamma schemat.")).to_be_visible()
    assert fitter.url.endswith("/schema?vecka=2026-W49&klart=bokat")
    expect(fitter.locator(".booking")).to_contain_text(
        f"09:00{DASH}10:00 montor-1: montering hos {client}")
    shot(fitter, "schema-vecka")
    fitter.goto("/")
    expect(fitter.locator("#h-myjobs + .table-wrap")).to_contain_text(client)
    shot(fitter, "start-montor")

    # 2a.7 on site: the fitter's agent proves the lock bound to the client.
    site.prove_bound("PH-WEB-1", client, job_id)
    fitter.goto(f"/parm/{job_id}")
    expect(fitter.get_by_text("✓ Det digitala låset är kopplat till brukaren.")).to_be_visible()
    # ... and the fitter marks the job done with the checkpoints, in the browser.
    step(fitter, "install_lock", None, KNOB, DONE)
    expect(fitter.get_by_text("Steget är registrerat i ärendet.")).to_be_visible()
    expect(fitter.locator("dd").filter(has_text="Digitalt lås installerat")).to_be_visible()
    expect(fitter.get_by_text("Utfört", exact=True)).to_be_visible()
    shot(fitter, "parm-jobb-utfort")

    # 2a.8: the case ended installed; the trail has every step, who took it and how.
    assessor.reload()
    expect(assessor.locator("#arendelage")).to_contain_text("Digitalt lås installerat")
    expect(assessor.locator("#arendelage")).to_contain_text("avslutat")
    steps = trail(assessor)
    assert len(steps) == 9, steps
    assert "handlaggare-1 (Biståndshandläggare, bestallarenhet-1)" in steps[0]
    assert "utforare-nord (Hemtjänstutförare, hemtjanst-nord)" in steps[1]
    assert "Svar: Nej" in steps[2] and "2a.3 • Har brukaren ett kodlås på dörren?" in steps[2]
    assert "Svar: Fysiska nycklar finns till brukaren" in steps[5]
    assert "larmhandlaggare-1" in steps[6] and "2a.5 • Larmhandläggare mottager" in steps[6]
    assert "2a.6 • Montör bokar tid för installation med brukaren." in steps[7]
    assert "montor-1 (Montör, larmgruppen)" in steps[8]
    assert "✓ Montör märker upp brukarens låsvred med nyckelnumret." in steps[8]
    assert "✓ Det digitala låset är kopplat till brukaren." in steps[8]
    assert "Läge efter steget: Digitalt lås installerat" in steps[8]
    shot(assessor, "arende-med-handelser")

    # Section 5: the client's NFC tag is due to come down now.
    provider.goto("/etiketter")
    expect(provider.locator("#h-due + ul")).to_contain_text(f"04A1B2C3D4E5F6 hos brukare {client}")


def test_2a_code_lock_is_documented_verbatim(site: Site) -> None:
    client = "K-WEB-KOD"
    site.world.client(client)
    case = site.world.rs.cases.open("2a", client, site.world.assessor, provider_unit=NORD)
    site.world.rs.cases.act(case.id, "send_order", None, site.world.assessor)
    provider = site.as_("utforare-nord")
    provider.goto(f"/arenden/{case.id}")
    step(provider, "lock_already_installed", "Nej")
    step(provider, "code_lock", "Ja")
    expect(provider.locator("#arendelage")).to_contain_text(
        "Kodlås på ytterdörr: digitalt lås kan inte installeras")
    [doc] = provider.locator("section[aria-labelledby=h-doc] textarea").all()
    expect(doc).to_have_value(texts.CODE_LOCK)
    expect(provider.locator("ol.trail textarea")).to_have_value(texts.CODE_LOCK)
    provider.goto("/")
    expect(provider.get_by_label(f"Brukare {client}, ärende {case.id}")).to_have_value(
        texts.CODE_LOCK)


def test_2b_removal_in_the_browser_with_a_signed_key_receipt(site: Site) -> None:
    client = "K-WEB-2"
    w = site.world
    w.installed(client, HOME, ALARM)  # lock PH-K-WEB-2 bound, provider and alarm keys
    serial = f"PH-{client}"

    # 2b.1-2b.2: the assessor opens the removal and sends the cancellation.
    assessor = site.as_("handlaggare-1")
    assessor.get_by_label("Flöde").select_option("2b")
    assessor.get_by_label("Brukare (referens)").fill(client)
    assessor.get_by_role("button", name="Öppna ärende").click()
    case_id = case_id_of(assessor)
    expect(assessor.locator("dl.summary")).to_contain_text(f"Hemtjänstutförare{NORD}")
    step(assessor, "send_cancellation")
    expect(assessor.locator("#arendelage")).to_have_text(
        "Avbeställning skickad till hemtjänstutföraren")

    # 2b.3-2b.4: the provider ends its implementation and messages Digitala LÅS.
    provider = site.as_("utforare-nord")
    provider.goto(f"/arenden/{case_id}")
    step(provider, "end_implementation")
    expect(provider.locator("#arendelage")).to_have_text("Verkställigheten avslutad")
    step(provider, "client_has_lock", "Ja")
    expect(provider.locator("#arendelage")).to_have_text("Meddelande i Digitala LÅS")

    # 2b.5-2b.6: the alarm administrator ends the alarm and puts the removal in the binder.
    admin = site.as_("larmhandlaggare-1")
    expect(admin.get_by_text(f"Nedmontering hos brukare {client}")).to_be_visible()
    shot(admin, "start-larmhandlaggare")
    admin.goto(f"/arenden/{case_id}")
    step(admin, "alarm_decision", "Trygghetslarmet ska avslutas")
    step(admin, "end_alarm_implementation")
    step(admin, "put_removal_job")
    expect(admin.locator("#arendelage")).to_have_text("Nedmonteringsjobb i pärm")
    admin.goto("/")
    expect(admin.locator("#h-removals + .table-wrap")).to_contain_text(client)
    admin.goto("/parm")
    job_id = job_in_binder(admin, "Nedmontering")

    # 2b.7: the fitter books the removal.
    fitter = site.as_("montor-1")
    fitter.goto("/schema?vecka=2026-W49")
    fitter.get_by_label("Jobb", exact=True).select_option(str(job_id))
    fitter.get_by_label("Dag").fill("2026-12-02")
    fitter.get_by_label("Från (klockslag)").fill("13:00")
    fitter.get_by_label("Till (klockslag)").fill("14:00")
    fitter.get_by_role("button", name="Boka tiden").click()
    expect(fitter.locator(".booking")).to_contain_text(
        f"13:00{DASH}14:00 montor-1: nedmontering hos {client}")

    # 2b.8 on site: the agent proves the lock unbound; the alarm keys go back against the
    # client's signature; the fitter marks the job done with the checkpoints.
    site.prove_unbound(serial, client, job_id)
    fitter.goto(f"/nycklar/{client}")
    fitter.get_by_label("Vems nycklar lämnas tillbaka").select_option("alarm_group")
    fitter.get_by_label("Brukarens namnteckning").fill("Astrid Brukare")
    fitter.get_by_role("button", name="Lämna tillbaka och skriv kvittens").click()
    expect(fitter.get_by_role("heading", name="Nyckelkvittens")).to_be_visible()
    expect(fitter.locator("#signerad")).to_have_text("Astrid Brukare")
    expect(fitter.get_by_text("Larmgruppen (larmgruppen)")).to_be_visible()
    shot(fitter, "nyckelkvittens")
    fitter.goto(f"/parm/{job_id}")
    expect(fitter.get_by_text("✓ Det digitala låset är frånkopplat brukaren i Phoniro.")
           ).to_be_visible()
    step(fitter, "remove_lock", None, DOOR, DONE)
    expect(fitter.get_by_text("Steget är registrerat i ärendet.")).to_be_visible()
    expect(fitter.locator("dd").filter(has_text="Digitalt lås nedmonterat; register ska "
                                                "kontrolleras")).to_be_visible()

    # 4.5: the provider hands its keys back too; 2b.9-2b.10: the registers are checked.
    provider.goto(f"/nycklar/{client}")
    provider.get_by_label("Vems nycklar lämnas tillbaka").select_option("home_care_provider")
    provider.get_by_label("Brukarens namnteckning").fill("Astrid Brukare")
    provider.get_by_role("button", name="Lämna tillbaka och skriv kvittens").click()
    expect(provider.locator("#signerad")).to_have_text("Astrid Brukare")
    provider.get_by_role("link", name="Tillbaka till brukarens nycklar").click()
    expect(provider.get_by_text("Inga nycklar registrerade hos någon enhet.")).to_be_visible()
    expect(provider.get_by_role("link", name="Nyckelkvittens")).to_have_count(2)
    shot(provider, "nycklar-med-kvittenser")
    admin.goto(f"/arenden/{case_id}")
    step(admin, "check_key_register")
    step(admin, "check_lock_system")
    expect(admin.locator("#arendelage")).to_contain_text("Digitalt lås nedmonterat")
    expect(admin.locator("#arendelage")).to_contain_text("avslutat")
    steps = trail(admin)
    assert len(steps) == 10, steps
    assert "Svar: Trygghetslarmet ska avslutas" in steps[3]
    assert "✓ Montören lämnar tillbaka larmnycklar till brukaren" in steps[7]
    assert "✓ Det digitala låset är frånkopplat brukaren i Phoniro." in steps[7]
    assert "2b.10 • Larmhandläggaren kontrollerar att låsnummer/serienummer" in steps[9]
    admin.goto("/rapporter")
    expect(admin.locator("#h-nedmonteringar")).to_be_visible()
    shot(admin, "rapporter")
    if shots_wanted():
        overview = site.as_("admin-1")
        shot(overview, "start-administrator")
