"""The routine's Swedish words: verbatim documentation texts and names for display.

The three documentation texts are what the provider writes in the case system
(Lifecare) under :data:`DOCUMENTATION_FIELD`, character for character as the seed
routine gives them (2a.3). Code and docs stay English; these are for people.

Every Swedish string here is a quotation of the seed routine (a test checks that
each occurs in it, whitespace aside), except the short display names of roles,
units and flows, which are the seed's own words in their dictionary form.
"""

from __future__ import annotations

from typing import Final

# --- verbatim documentation texts (2a.3) ----------------------------------------------------

#: Where the texts go in the case system: "Personuppgifter, övrig information".
DOCUMENTATION_FIELD: Final = "Personuppgifter, övrig information"

#: 2a.3, code lock on the front door: no digital lock can be fitted.
CODE_LOCK: Final = "Har kodlås på ytterdörr. Digitalt lås kan inte installeras."

#: 2a.3, home care only, the client opens the door themself and declines a lock.
OPENS_DOOR_THEMSELF: Final = "Öppnar dörren själv vid hemtjänstinsatser. Har inget digitalt lås."

#: 2a.3, the client does not want a lock and the assessor agreed: no lock.
AGREED_WITH_ASSESSOR: Final = (
    "Överenskommet med biståndshandläggare att digitalt lås inte ska installeras."
)

DOCUMENTATION_TEXTS: Final = (CODE_LOCK, OPENS_DOOR_THEMSELF, AGREED_WITH_ASSESSOR)

# --- systems and places the routine names ----------------------------------------------------

CASE_SYSTEM: Final = "Lifecare"  # verksamhetssystemet: orders, implementations, documentation
MOBILE_APP: Final = "LMO"  # where staff see an installed lock
LOCK_SYSTEM: Final = "Phoniro"  # binds lock serials to clients
KEY_REGISTER: Final = "Axsor"  # physical keys by key number
INBOX: Final = "Digitala LÅS"  # the alarm group's mail group for lock requests

# --- display names (keys are the English values used in code) --------------------------------

ROLE_NAMES_SV: Final[dict[str, str]] = {
    "assessor": "Biståndshandläggare",
    "provider": "Hemtjänstutförare",
    "alarm_admin": "Larmhandläggare",
    "fitter": "Montör",
}

FLOW_TITLES_SV: Final[dict[str, str]] = {
    "2a": "Montering biståndsbedömda insatser",
    "2b": "Nedmontering biståndsbedömda insatser",
    "3a": "Montering ej biståndsbedömd insats",
    "3b": "Nedmontering ej biståndsbedömd insats",
}

KEY_UNIT_NAMES_SV: Final[dict[str, str]] = {
    "home_care_provider": "Hemtjänstutförare",
    "alarm_group": "Larmgruppen",
    "night_group": "Nattgruppen",
}

#: The checkpoints a step needs confirmed (the facts of routine.flows), as the seed words them.
CHECKPOINTS_SV: Final[dict[str, str]] = {
    "keys_exist": "Fysiska nycklar behöver finnas hos hemtjänstutföraren när det digitala "
                  "låset ska installeras.",
    "lock_bound_to_client": "Det digitala låset är kopplat till brukaren.",
    "knob_labelled_with_key_number": "Montör märker upp brukarens låsvred med nyckelnumret.",
    "job_marked_done": "Arbetet markerat som utfört i pärm.",
    "all_implementations_ended": "Alla verkställigheter för hemtjänst och trygghetslarm ska "
                                 "vara avslutade i Lifecare utförare för att nedmontering av "
                                 "det digitala låset ska ske.",
    "lock_unbound_in_lock_system": "Det digitala låset är frånkopplat brukaren i Phoniro.",
    "door_restored_with_original_knob": "Montör återställer brukarens dörr med det ordinarie "
                                        "låsvredet.",
    "keys_returned_receipt_signed": "Montören lämnar tillbaka larmnycklar till brukaren och "
                                    "signerar att nyckel är återlämnad på nyckelkvittens.",
    "key_number_unbound": "Larmhandläggaren kontrollerar att nyckelnumret i Axsor är "
                          "frånkopplat brukaren.",
    "lock_serial_unbound": "Larmhandläggaren kontrollerar att låsnummer/serienummer är "
                           "frånkopplat brukaren i Phoniro.",
}
