"""Who may do what in the routine: per role AND per unit, for the API and the CLI alike.

Pure rules over a principal (anything with ``name``, ``role`` and ``unit``: a
:class:`central.cases.values.Principal` or an authenticated
:class:`central.store.DeviceInfo`) and the record it wants to touch. Each check
returns nothing or raises :class:`AccessDenied` with a reason that says what the
principal may do instead.

- ``admin`` may do everything (setting up, correcting); its steps are recorded as
  taken by the admin, in the role the routine gives the step.
- ``assessor``: opens 2a/2b cases and takes the assessor's steps of its own unit's
  cases (``cases.assessor_unit``).
- ``provider``: the provider's steps of cases ordered from its own unit
  (``cases.provider_unit``), its unit's implementations, keys and NFC tags.
- ``alarm_admin`` (of the alarm group): opens 3a/3b, handles the "Digitala LÅS"
  inbox and the binder, the alarm and night group's implementations and keys.
- ``fitter`` (of the alarm group): the binder's jobs, booking them for themself,
  installing and removing, handing the alarm keys back.
- ``device`` (a field agent's token): none of it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from central.cases.errors import AccessDenied
from central.cases.values import ImplementationKind
from routine.flows import Flow, Role
from routine.keys import KeyUnit

ADMIN = "admin"
ROUTINE_ROLES = frozenset(r.value for r in Role)
ASSESSED_FLOWS = frozenset({Flow.INSTALL_ASSESSED, Flow.REMOVE_ASSESSED})
ALARM_FLOWS = frozenset({Flow.INSTALL_ALARM_ONLY, Flow.REMOVE_ALARM_ONLY})


class Actor(Protocol):
    """A principal: who acts, in which role, for which unit."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def unit(self) -> str | None: ...


@dataclass(frozen=True)
class Units:
    """The municipality's names of the alarm group's units (section 4 and the flows)."""

    alarm_group: str = "larmgruppen"
    night_group: str = "nattgruppen"

    def holder(self, key_unit: KeyUnit) -> str | None:
        """The unit holding ``key_unit``'s sets; None for providers (one per client)."""
        return {KeyUnit.ALARM_GROUP: self.alarm_group,
                KeyUnit.NIGHT_GROUP: self.night_group}.get(key_unit)


def is_admin(actor: Actor) -> bool:
    return actor.role == ADMIN


def who(actor: Actor) -> str:
    unit = f" of {actor.unit}" if actor.unit else ""
    return f"{actor.role} {actor.name}{unit}"


def require_routine_principal(actor: Actor) -> None:
    """Admin or one of the routine's roles: a field agent's device token is not enough."""
    if not is_admin(actor) and actor.role not in ROUTINE_ROLES:
        raise AccessDenied(
            f"{who(actor)} has no part in the routine; enrol a principal as assessor, provider, "
            "alarm_admin or fitter (with its unit), or use an admin"
        )


def require_role(actor: Actor, roles: Collection[str], what: str) -> None:
    """Admin, or one of ``roles``."""
    require_routine_principal(actor)
    if not is_admin(actor) and actor.role not in roles:
        raise AccessDenied(f"{who(actor)} may not {what}; that is for: {', '.join(roles)}")


def require_alarm_group(actor: Actor, units: Units, what: str,
                        roles: Collection[str] = (Role.ALARM_ADMIN,)) -> None:
    """Admin, or one of ``roles`` working for the alarm group."""
    require_role(actor, roles, what)
    if not is_admin(actor) and actor.unit != units.alarm_group:
        raise AccessDenied(
            f"{who(actor)} may not {what}: that is the alarm group's ({units.alarm_group})"
        )


def require_own_unit(actor: Actor, unit: str | None, what: str) -> None:
    """Admin, or a principal of ``unit``."""
    if not is_admin(actor) and (unit is None or actor.unit != unit):
        raise AccessDenied(
            f"{who(actor)} may not {what}: it belongs to {unit or 'no unit'}, not to "
            f"{actor.unit or 'no unit'}"
        )


# --- cases -----------------------------------------------------------------------------------


def check_open(actor: Actor, flow: Flow, units: Units) -> None:
    """Assessors open 2a/2b (an order, a cancellation); alarm admins open 3a/3b."""
    if flow in ASSESSED_FLOWS:
        require_role(actor, (Role.ASSESSOR,), f"open a {flow} case")
    else:
        require_alarm_group(actor, units, f"open a {flow} case")


def check_case(actor: Actor, flow: Flow, provider_unit: str | None, assessor_unit: str | None,
               units: Units, what: str = "see this case") -> None:
    """Whether ``actor`` may see (and act on) a case: its own unit's, or the alarm group's."""
    require_routine_principal(actor)
    if is_admin(actor):
        return
    if actor.role == Role.PROVIDER:
        require_own_unit(actor, provider_unit, what)
    elif actor.role == Role.ASSESSOR:
        if flow not in ASSESSED_FLOWS:
            raise AccessDenied(f"{who(actor)} may not {what}: {flow} cases are the alarm "
                               "group's (no assessed services)")
        require_own_unit(actor, assessor_unit, what)
    else:  # alarm admins and fitters work every case of the alarm group
        require_alarm_group(actor, units, what, (Role.ALARM_ADMIN, Role.FITTER))


def acting_role(actor: Actor, step_role: Role) -> Role:
    """The role a step is applied in: an admin's is the step's own; anyone else's, their own."""
    return step_role if is_admin(actor) else Role(actor.role)


# --- implementations, keys ------------------------------------------------------------------

#: Who runs each implementation (verkställighet): providers their home care, the alarm
#: group the safety alarm and night help ("larm- och nattgruppen").
IMPLEMENTATION_ROLES: dict[ImplementationKind, Role] = {
    ImplementationKind.HOME_CARE: Role.PROVIDER,
    ImplementationKind.SAFETY_ALARM: Role.ALARM_ADMIN,
    ImplementationKind.NIGHT_HELP: Role.ALARM_ADMIN,
}


def check_implementation(actor: Actor, kind: ImplementationKind, unit: str, units: Units) -> None:
    what = f"change {kind} implementations of {unit}"
    role = IMPLEMENTATION_ROLES[kind]
    if role is Role.PROVIDER:
        require_role(actor, (role,), what)
        require_own_unit(actor, unit, what)
    else:
        require_alarm_group(actor, units, what)


#: Who handles each unit's keys in the register: "respektive enhet ansvarar för
#: nyckelhanteringen" (4.2, 4.3); fitters hand the alarm keys back at a removal (2b.8).
KEY_ROLES: dict[KeyUnit, tuple[Role, ...]] = {
    KeyUnit.HOME_CARE_PROVIDER: (Role.PROVIDER,),
    KeyUnit.ALARM_GROUP: (Role.ALARM_ADMIN, Role.FITTER),
    KeyUnit.NIGHT_GROUP: (Role.ALARM_ADMIN, Role.FITTER),
}


def check_keys(actor: Actor, key_unit: KeyUnit, holder: str, units: Units, what: str,
               *, fitter_may: bool = False) -> None:
    """A unit handles its own keys; fitters only where ``fitter_may`` (returns)."""
    roles = [r for r in KEY_ROLES[key_unit] if fitter_may or r is not Role.FITTER]
    if key_unit is KeyUnit.HOME_CARE_PROVIDER:
        require_role(actor, roles, what)
        require_own_unit(actor, holder, what)
    else:
        require_alarm_group(actor, units, what, roles)
