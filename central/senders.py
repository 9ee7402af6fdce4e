"""Who may send what: the one table of event kinds against the kinds of sender.

Every event a token pushes is checked here, on ingest, before anything is stored
(:meth:`central.store.CentralStore.ingest`). A refused event is answered as rejected
with the reason below, stored nowhere, and counted per device, kind and reason
(``sender_refusals``, shown by ``nyckelfri-central device list``).

The kinds of sender follow from a token's enrolment:

============== ================================================== =======================
sender         enrolled as                                        may send
============== ================================================== =======================
field_device   ``device add NAME`` (a staff Pi or phone)          staff.signed_in,
                                                                  visit.arrived,
                                                                  visit.departed,
                                                                  visit.departure_missing,
                                                                  tap.refused
fitter_device  ``device add NAME --fitter FITTER`` (the fitter's   lock.verification,
               laptop or Pi, bound to one enrolled fitter)         job.checkpoint, each
                                                                  only in its fitter's
                                                                  name
principal      admin, assessor, provider, alarm_admin, fitter     nothing: principals act
                                                                  through the routine's
                                                                  API, they do not push
============== ================================================== =======================

A kind the table does not name is refused too (a newer agent than this centre):
what the centre does not know it cannot judge, and an unknown kind is never a visit.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from routine.visits import VISIT_KINDS
from sync.protocol import JOB_CHECKPOINT, LOCK_VERIFICATION, Event

STAFF_SIGNED_IN = "staff.signed_in"
TAP_REFUSED = "tap.refused"


class Sender(StrEnum):
    FIELD_DEVICE = "field_device"
    FITTER_DEVICE = "fitter_device"
    PRINCIPAL = "principal"


class Reason(StrEnum):
    """Why an event was refused: the key its refusals are counted under."""

    PRINCIPAL = "principal_cannot_push"
    UNKNOWN_KIND = "unknown_kind"
    WRONG_SENDER = "kind_not_for_sender"
    OTHER_FITTER = "other_fitter"


# The table. Each kind names the senders that may send it; nothing else may.
MAY_SEND: Mapping[str, frozenset[Sender]] = {
    STAFF_SIGNED_IN: frozenset({Sender.FIELD_DEVICE}),
    **{kind: frozenset({Sender.FIELD_DEVICE}) for kind in VISIT_KINDS},
    TAP_REFUSED: frozenset({Sender.FIELD_DEVICE}),
    LOCK_VERIFICATION: frozenset({Sender.FITTER_DEVICE}),
    JOB_CHECKPOINT: frozenset({Sender.FITTER_DEVICE}),
}
# Kinds whose data names the fitter they are done in the name of (data.fitter): a
# fitter's device may send them only in its own fitter's name.
IN_A_FITTERS_NAME = frozenset({LOCK_VERIFICATION, JOB_CHECKPOINT})


class Enrolled(Protocol):
    """What the table needs of a token's enrolment (a :class:`central.store.DeviceInfo`)."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def fitter(self) -> str | None: ...


def sender_of(device: Enrolled) -> Sender:
    if device.role != "device":
        return Sender.PRINCIPAL
    return Sender.FITTER_DEVICE if device.fitter else Sender.FIELD_DEVICE


def may_push(device: Enrolled) -> bool:
    """Whether the token may push events at all (and pull the agents' reference data)."""
    return sender_of(device) is not Sender.PRINCIPAL


def refusal(device: Enrolled, event: Event) -> tuple[Reason, str] | None:
    """``(reason, message)`` if ``device`` may not send ``event``, else None."""
    sender = sender_of(device)
    if sender is Sender.PRINCIPAL:
        return Reason.PRINCIPAL, (
            f"{device.name} is a {device.role} (a principal): principals do not push events; "
            "an agent pushes with the token of a device enrolled with 'nyckelfri-central "
            "device add NAME' (a fitter's agent: '--fitter FITTER')")
    allowed = MAY_SEND.get(event.kind)
    if allowed is None:
        return Reason.UNKNOWN_KIND, (
            f"event kind {event.kind!r} is unknown to this centre; upgrade the centre, or "
            f"send one of {', '.join(sorted(MAY_SEND))}")
    if sender not in allowed:
        if sender is Sender.FITTER_DEVICE:
            return Reason.WRONG_SENDER, (
                f"{device.name} is enrolled to fitter {device.fitter}: a fitter's device "
                f"sends lock verifications and checkpoints, not {event.kind}; register "
                "visits on a field device")
        return Reason.WRONG_SENDER, (
            f"{device.name} is a field device: {event.kind} comes only from a device enrolled "
            "to a fitter ('nyckelfri-central device add NAME --fitter FITTER')")
    if event.kind in IN_A_FITTERS_NAME:
        named = _fitter_named(event.data)
        if named != device.fitter:
            return Reason.OTHER_FITTER, (
                f"{device.name} is enrolled to fitter {device.fitter}, and the event is in "
                f"the name of {named!r}: a device sends only its own fitter's proofs and "
                f"checkpoints; set fitter = \"{device.fitter}\" in agent.toml")
    return None


def _fitter_named(data: Mapping[str, Any]) -> str | None:
    value = data.get("fitter")
    return value if isinstance(value, str) else None


def table() -> list[tuple[str, list[str]]]:
    """The table as rows ``(kind, senders)``, for help texts and documentation."""
    return [(kind, sorted(s.value for s in senders)) for kind, senders in MAY_SEND.items()]
