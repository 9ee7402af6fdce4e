"""Swedish words for what the routine's values are named in code (for the pages only).

The routine's own Swedish (documentation texts, checkpoints, the seed's step quotes)
comes from :mod:`routine.texts` and :mod:`routine.flows`; this adds the short names a
page needs for states, answers, units and kinds, in the seed's vocabulary.
"""

from __future__ import annotations

from typing import Final

from routine import texts
from routine.flows import Flow, machine

ROLES: Final[dict[str, str]] = {**texts.ROLE_NAMES_SV, "admin": "Administratör"}

ANSWERS: Final[dict[str, str]] = {
    "yes": "Ja",
    "no": "Nej",
    "install": "Digitalt lås ska installeras",
    "no_lock": "Digitalt lås ska inte installeras",
    "keys_exist": "Fysiska nycklar finns till brukaren",
    "keys_missing": "Fysiska nycklar finns inte till brukaren",
    "ends": "Trygghetslarmet ska avslutas",
    "stays": "Trygghetslarmet ska vara kvar",
    "no_alarm": "Brukaren har inget trygghetslarm",
}

STATES: Final[dict[str, str]] = {
    "new": "Nytt: biståndshandläggaren har beslutat om insatser",
    "ordered": "Beställning skickad till hemtjänstutföraren",
    "code_lock_check": "Kontroll: kodlås på ytterdörren?",
    "opens_door_check": "Kontroll: endast hemtjänst och öppnar dörren själv?",
    "lock_offered": "Digitalt lås rekommenderas; brukaren kan avböja",
    "refusal_check": "Kontroll: vill brukaren inte ha digitalt lås?",
    "awaiting_assessor": "Väntar på återkoppling från biståndshandläggaren",
    "checkpoints_passed": "Kontrollpunkterna klara: digitalt lås ska installeras",
    "lock_requested": "Meddelande i Digitala LÅS",
    "install_job_in_binder": "Monteringsjobb i pärm",
    "installation_booked": "Tid för installation bokad",
    "installed": "Digitalt lås installerat",
    "already_installed": "Digitalt lås fanns redan installerat",
    "no_lock_code_lock": "Kodlås på ytterdörr: digitalt lås kan inte installeras",
    "no_lock_opens_door": "Öppnar dörren själv: inget digitalt lås",
    "no_lock_agreed": "Överenskommet med biståndshandläggare: inget digitalt lås",
    "active": "Insatserna pågår (ska avslutas)",
    "cancelled": "Avbeställning skickad till hemtjänstutföraren",
    "implementation_ended": "Verkställigheten avslutad",
    "removal_requested": "Meddelande i Digitala LÅS",
    "no_lock": "Inget digitalt lås installerat",
    "lock_stays": "Trygghetslarmet är kvar: låset sitter kvar",
    "alarm_ending": "Trygghetslarmet ska avslutas",
    "awaiting_all_ended": "Väntar på att alla verkställigheter avslutas",
    "removal_job_in_binder": "Nedmonteringsjobb i pärm",
    "removal_booked": "Tid för nedmontering bokad",
    "lock_removed": "Digitalt lås nedmonterat; register ska kontrolleras",
    "key_register_checked": "Nyckelnumret frånkopplat i Axsor",
    "removed": "Digitalt lås nedmonterat",
    "awaiting_keys": "Väntar på fysiska nycklar",
    "installed_check": "Kontroll: finns digitalt lås installerat?",
    "assessing": "Larmhandläggaren bedömer om digitalt lås ska installeras",
    "no_lock_decided": "Digitalt lås ska inte installeras",
    "end_requested": "Meddelande om att avsluta trygghetslarmet",
    "lock_check": "Kontroll: finns digitalt lås installerat?",
    "file_moved": "Akten flyttad från trygghetslarm till hemtjänst",
}

JOB_KINDS: Final[dict[str, str]] = {"install": "Montering", "removal": "Nedmontering"}

KEY_UNITS: Final[dict[str, str]] = dict(texts.KEY_UNIT_NAMES_SV)

IMPLEMENTATIONS: Final[dict[str, str]] = {
    "home_care": "Hemtjänst", "safety_alarm": "Trygghetslarm", "night_help": "Nattillsyn",
}

LOCK_STATUSES: Final[dict[str, str]] = {
    "pending": "Väntar på digitalt lås",
    "impossible": "Digitalt lås kan inte installeras",
    "installed": "Digitalt lås installerat",
    "none": "Inget digitalt lås",
}

TAG_STATES: Final[dict[str, str]] = {
    "issued": "Utlämnad",
    "in_use": "Uppsatt, används",
    "due_down": "Ska tas ner",
    "taken_down": "Nedtagen",
    "lost": "Borttappad",
}

SEVERITIES: Final[dict[str, str]] = {"info": "Information", "warning": "Varning",
                                     "critical": "Kritiskt"}

ALERTS: Final[dict[str, str]] = {
    "lock_pending_overdue": "Digitalt lås väntar längre än cirka 5 arbetsdagar",
    "removal_due_soon": "Nedmontering ska ske inom 14 dagar",
    "removal_overdue": "Nedmonteringen är försenad (mer än 14 dagar)",
    "keys_not_returned": "Fysiska nycklar inte återlämnade",
    "no_visit_registered": "Inget besök registrerat",
    "tag_used_after_install": "NFC-etikett används fast låset är installerat",
    "physical_key_used_where_lock_works": "Fysisk nyckel använd fast låset fungerar",
    "low_lock_battery": "Låg batterinivå i digitalt lås",
    "tag_copy_suspected": "Misstänkt kopierad NFC-etikett",
}

REMOVAL_LEVELS: Final[dict[str, str]] = {"ok": "I tid", "warning": "Snart",
                                         "overdue": "Försenad"}

METHODS: Final[dict[str, str]] = {"nfc_tag": "NFC-etikett", "lock": "Digitalt lås"}

CHECKPOINTS: Final[dict[str, str]] = {
    **texts.CHECKPOINTS_SV,
    # the fitter's agent's name for 2b.8's unbinding (sync.protocol.CHECKPOINTS_REMOVAL)
    "lock_unbound_from_client": texts.CHECKPOINTS_SV["lock_unbound_in_lock_system"],
}

WEEKDAYS: Final = ("måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag")


def flow_title(flow: str) -> str:
    return f"{flow} {texts.FLOW_TITLES_SV.get(flow, '')}".strip()


def action_seed(flow: str, action: str) -> str:
    """The seed's words for an action: ``2a.3 • Har brukaren ett kodlås på dörren?``."""
    act = machine(Flow(flow)).actions.get(action)
    return act.seed if act is not None else action


def word(table: dict[str, str], value: object) -> str:
    """``table[value]``, or the value itself where the table has no word for it."""
    if value is None:
        return ""
    key = str(getattr(value, "value", value))
    return table.get(key, key)
