"""Physical keys (section 4): who holds how many sets, when a key may be used, returns.

The routine's point: digital locks are always used first; a physical key only
where there is no digital lock, or in an emergency (4.4 adds: when the digital
locks are unavailable), "only then does the organisation get the benefit".

Key sets (4.1-4.3). Home care and the alarm and night group keep physical keys. A
client with both home care and a safety alarm needs two sets (one per unit).
Exceptions, which reduce those two sets to one, the alarm's: the client opens the
door themself at home-care visits, or something else is agreed. The seed's second
exception, "Undantaget är de brukare där digitala lås inte kan installeras,
exempelvis på grund av att kodlås redan finns på ytterdörren", does not say what
the exception is; :class:`KeyPolicy` makes it a setting (see there for the default).

Returns (4.5, 2b.8, 3b.6). When services end, the unit that holds the keys returns
them to the client; the fitter who removes a lock hands the alarm keys back and
signs the key receipt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

from routine import texts
from routine.flows import RoutineError


class KeyUnit(StrEnum):
    """A unit that holds a set of physical keys to a client (4.2, 4.3)."""

    HOME_CARE_PROVIDER = "home_care_provider"  # hemtjänstutföraren
    ALARM_GROUP = "alarm_group"  # larmgruppen (safety alarm)
    NIGHT_GROUP = "night_group"  # nattgruppen (night help)

    @property
    def name_sv(self) -> str:
        return texts.KEY_UNIT_NAMES_SV[self.value]


class Service(StrEnum):
    """A service that makes a unit hold keys; when it ends, that unit's keys go back."""

    HOME_CARE = "home_care"
    SAFETY_ALARM = "safety_alarm"
    NIGHT_HELP = "night_help"


class KeyRuleError(RoutineError):
    """A key record the routine cannot accept (e.g. a receipt with no key number)."""


@dataclass(frozen=True)
class KeyPolicy:
    """The municipality's reading of what section 4 leaves open.

    ``code_lock_sets``: how many sets for a client with home care and a safety alarm
    where no digital lock can be installed (code lock on the front door).

    - ``"both"`` (default): one set per unit, as for any client with both services.
      Reasoning: with no digital lock, physical keys are the everyday way in (the
      section 4 preamble allows keys "om det inte finns ett digitalt lås"), and 4.4
      has each unit use its own keys first; one set would leave home care without a
      key to a door it opens at every visit. The bullet then says these clients are
      outside the digital-lock reductions, not that they get fewer keys.
    - ``"alarm_only"``: one set, the alarm's, reading the bullet like the first
      exception beside it (home care then opens with the door code).

    ``night_group_own_set``: 4.2 "Larmgruppen och nattgruppen har fysiska nycklar till
    de brukare som har trygghetslarm och natthjälp. Respektive enhet ansvarar för
    nyckelhanteringen." Default True: night help brings the night group's own set.
    False: the alarm and night group ("larm- och nattgruppen", 4.1) is one unit with
    one set, counted under :attr:`KeyUnit.ALARM_GROUP`.
    """

    code_lock_sets: Literal["both", "alarm_only"] = "both"
    night_group_own_set: bool = True


DEFAULT_POLICY: Final = KeyPolicy()


def required_key_sets(has_home_care: bool, has_safety_alarm: bool, opens_door_themself: bool,
                      other_agreement: bool, code_lock: bool, night_help: bool,
                      policy: KeyPolicy = DEFAULT_POLICY) -> dict[KeyUnit, int]:
    """Sets of physical keys each unit holds for one client (every unit listed, 0 or 1).

    The exceptions of 4.1 reduce the two sets of a client with home care *and* a
    safety alarm; a client with home care only keeps the provider's set (4.3: "har
    fysiska nycklar till de brukare som utföraren ger insatser till").
    """
    sets = dict.fromkeys(KeyUnit, 0)
    if has_home_care:
        sets[KeyUnit.HOME_CARE_PROVIDER] = 1
    if has_safety_alarm:
        sets[KeyUnit.ALARM_GROUP] = 1
    alarm_only = (opens_door_themself or other_agreement
                  or (code_lock and policy.code_lock_sets == "alarm_only"))
    if has_home_care and has_safety_alarm and alarm_only:
        sets[KeyUnit.HOME_CARE_PROVIDER] = 0
    if night_help:
        unit = KeyUnit.NIGHT_GROUP if policy.night_group_own_set else KeyUnit.ALARM_GROUP
        sets[unit] = 1
    return sets


# --- using a physical key ------------------------------------------------------------------


class KeyUseReason(StrEnum):
    """Why a physical key was used; only the first three are the routine's."""

    NO_DIGITAL_LOCK = "no_digital_lock"  # section 4: no digital lock at the client
    EMERGENCY = "emergency"  # section 4, 4.4: "händelse av nöd"
    LOCK_UNAVAILABLE = "lock_unavailable"  # 4.4: "de digitala låsen är otillgängliga"
    LOCK_WORKS = "lock_works"  # none of these: the digital lock should have been used


JUSTIFIED_REASONS: Final = frozenset({KeyUseReason.NO_DIGITAL_LOCK, KeyUseReason.EMERGENCY,
                                      KeyUseReason.LOCK_UNAVAILABLE})


@dataclass(frozen=True)
class PhysicalKeyUse:
    """One use of a physical key at a client, with its reason (from :func:`classify_key_use`).

    ``holder`` is whose set was used; 4.4 has each unit use its own keys first.
    """

    client_ref: str
    unit: KeyUnit
    reason: KeyUseReason
    holder: KeyUnit | None = None
    note: str = ""

    @property
    def justified(self) -> bool:
        """The routine allows it: no digital lock, an emergency, or the lock unavailable."""
        return self.reason in JUSTIFIED_REASONS

    @property
    def own_keys(self) -> bool:
        """The unit used its own set (4.4: "i första hand sina egna nycklar")."""
        return self.holder is None or self.holder == self.unit


def classify_key_use(client_ref: str, unit: KeyUnit, lock_installed: bool, lock_available: bool,
                     emergency: bool, holder: KeyUnit | None = None,
                     note: str = "") -> PhysicalKeyUse:
    """A physical key used by ``unit``: the routine's reason for it, or LOCK_WORKS.

    An emergency needs a note saying what happened (it is the exception that must be
    explained afterwards); KeyRuleError without one.
    """
    if emergency and not note.strip():
        raise KeyRuleError(f"client {client_ref}: an emergency use of a physical key needs a "
                           "note saying what happened")
    if not lock_installed:
        reason = KeyUseReason.NO_DIGITAL_LOCK
    elif emergency:
        reason = KeyUseReason.EMERGENCY
    elif not lock_available:
        reason = KeyUseReason.LOCK_UNAVAILABLE
    else:
        reason = KeyUseReason.LOCK_WORKS
    return PhysicalKeyUse(client_ref, unit, reason, holder, note)


# --- returning keys ------------------------------------------------------------------------

#: Whose keys go back when a service ends (4.5: "utföraren (hemtjänst, larm- och
#: nattgrupp) [ansvarar] för att de fysiska nycklarna lämnas åter till brukaren").
UNIT_OF_SERVICE: Final[Mapping[Service, KeyUnit]] = MappingProxyType({
    Service.HOME_CARE: KeyUnit.HOME_CARE_PROVIDER,
    Service.SAFETY_ALARM: KeyUnit.ALARM_GROUP,
    Service.NIGHT_HELP: KeyUnit.NIGHT_GROUP,
})


@dataclass(frozen=True)
class KeyReceipt:
    """A signed key receipt ("nyckelkvittens"): keys handed back to the client.

    ``signed_by`` is who handed them back and signed (the fitter at a removal,
    2b.8/3b.6; else someone of the returning unit, 4.5).
    """

    client_ref: str
    unit: KeyUnit
    key_number: str
    returned_on: date
    signed_by: str
    sets: int = 1

    def __post_init__(self) -> None:
        for name in ("client_ref", "key_number", "signed_by"):
            if not str(getattr(self, name)).strip():
                raise KeyRuleError(f"a key receipt needs {name}; it is what proves the keys "
                                   "went back")
        if self.sets < 1:
            raise KeyRuleError(f"a key receipt returns at least one set, not {self.sets}")


def services_of(unit: KeyUnit, policy: KeyPolicy = DEFAULT_POLICY) -> frozenset[Service]:
    """The services for which ``unit`` holds its set (4.2, 4.3)."""
    served = {u: s for s, u in UNIT_OF_SERVICE.items()}
    if unit is KeyUnit.ALARM_GROUP and not policy.night_group_own_set:
        return frozenset({Service.SAFETY_ALARM, Service.NIGHT_HELP})
    return frozenset({served[unit]})


def keys_due_back(held: Mapping[KeyUnit, int], running: Iterable[Service],
                  policy: KeyPolicy = DEFAULT_POLICY) -> dict[KeyUnit, int]:
    """Sets that must go back to the client: those of units none of whose services runs.

    ``held`` is what each unit holds (:func:`required_key_sets` while services ran);
    ``running`` the client's services still running. 4.5: the unit that holds them
    is responsible for the return.
    """
    still = set(running)
    return {u: n for u, n in held.items()
            if n > 0 and not services_of(u, policy) & still}


def unreturned(due: Mapping[KeyUnit, int], receipts: Iterable[KeyReceipt]) -> dict[KeyUnit, int]:
    """Sets still not back: ``due`` minus the sets on signed receipts, per unit."""
    left = {u: n for u, n in due.items() if n > 0}
    for r in receipts:
        if r.unit in left:
            left[r.unit] -= r.sets
    return {u: n for u, n in left.items() if n > 0}
