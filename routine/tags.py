"""NFC tags (section 5): a client's tag from issue to taken down, and the tag stock.

"I väntan på digitalt lås, eller när digitalt lås inte kan installeras ska NFC
etiketter användas för tids- och insatsregistrering. NFC etiketten tas med vid
första besöket hos brukaren. När det digitala låset är installerat hos brukaren tar
hemtjänstpersonalen ned NFC etiketten [...]. Utföraren ansvarar själv för att
säkerställa att denne har tillgång till NFC etiketter."

Lifecycle of one tag (:data:`TRANSITIONS`)::

    ISSUED --put_up (first visit)--> IN_USE --lock_installed--> DUE_DOWN --take_down--> TAKEN_DOWN
    ISSUED --lock_installed--> DUE_DOWN          (installed before the first visit)
    ISSUED | IN_USE --services_ended--> DUE_DOWN (not in the seed: no visits, no tag)
    ISSUED | IN_USE | DUE_DOWN --lost--> LOST    (a new tag is issued if still needed)

TAKEN_DOWN and LOST are final. A tap on a tag of a client whose lock is installed
is refused and is an alert (:func:`tap_after_install_is_alert`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from routine.flows import RoutineError


class TagState(StrEnum):
    ISSUED = "issued"  # for a client whose lock is pending or impossible; brought on 1st visit
    IN_USE = "in_use"  # up at the client's door; taps register visits
    DUE_DOWN = "due_down"  # the lock is installed (or services ended): staff take it down
    TAKEN_DOWN = "taken_down"
    LOST = "lost"


class TagEvent(StrEnum):
    PUT_UP = "put_up"  # brought and put up at the first visit (its first tap does it too)
    LOCK_INSTALLED = "lock_installed"  # the client's digital lock is installed
    SERVICES_ENDED = "services_ended"  # the client's services ended while the tag was out
    TAKE_DOWN = "take_down"  # staff took it down
    LOST = "lost"  # missing from the door, or never arrived


TRANSITIONS: Final[Mapping[tuple[TagState, TagEvent], TagState]] = MappingProxyType({
    (TagState.ISSUED, TagEvent.PUT_UP): TagState.IN_USE,
    (TagState.ISSUED, TagEvent.LOCK_INSTALLED): TagState.DUE_DOWN,
    (TagState.ISSUED, TagEvent.SERVICES_ENDED): TagState.DUE_DOWN,
    (TagState.ISSUED, TagEvent.LOST): TagState.LOST,
    (TagState.IN_USE, TagEvent.LOCK_INSTALLED): TagState.DUE_DOWN,
    (TagState.IN_USE, TagEvent.SERVICES_ENDED): TagState.DUE_DOWN,
    (TagState.IN_USE, TagEvent.LOST): TagState.LOST,
    (TagState.DUE_DOWN, TagEvent.TAKE_DOWN): TagState.TAKEN_DOWN,
    (TagState.DUE_DOWN, TagEvent.LOST): TagState.LOST,
})

FINAL: Final = frozenset({TagState.TAKEN_DOWN, TagState.LOST})

#: Lock statuses (routine.reference.LOCK_STATUSES) whose clients use a tag: lock
#: pending, or impossible ("när digitalt lås inte kan installeras").
TAG_LOCK_STATUSES: Final = frozenset({"pending", "impossible"})


class TagError(RoutineError):
    """A tag event its state does not allow; names the state and the events allowed."""


def allowed_events(state: TagState) -> list[TagEvent]:
    """The events a tag in ``state`` may see (none when final)."""
    return [e for (s, e) in TRANSITIONS if s == state]


def next_state(state: TagState, event: TagEvent) -> TagState:
    """The tag's state after ``event``; TagError when the lifecycle does not allow it."""
    state, event = TagState(state), TagEvent(event)
    after = TRANSITIONS.get((state, event))
    if after is None:
        allowed = ", ".join(allowed_events(state)) or "nothing (the tag is done)"
        raise TagError(f"tag {state.value}: {event.value!r} is not allowed; allowed: {allowed}",
                       state=state.value, action=event.value)
    return after


def needs_tag(lock_status: str, no_lock_by_choice: bool = True) -> bool:
    """Does a client with this lock status use an NFC tag for visit registration?

    The seed: while the lock is pending, and where no lock can be installed. A
    client with no lock by choice (``"none"``: opens the door themself, or agreed
    with the assessor) is not named; ``no_lock_by_choice`` (default True) gives them
    a tag, because their visits still need time and visit registration and nothing
    else provides it.
    """
    return lock_status in TAG_LOCK_STATUSES or (no_lock_by_choice and lock_status == "none")


# --- taps ----------------------------------------------------------------------------------


class TapVerdict(StrEnum):
    REGISTER = "register"  # a visit registration
    REFUSE_LOCK_INSTALLED = "refuse_lock_installed"  # take the tag down; an alert
    REFUSE_NOT_IN_USE = "refuse_not_in_use"  # taken down, lost, or the services ended


def tap_verdict(state: TagState, lock_installed: bool) -> TapVerdict:
    """What a tap on a tag means: a registration, or a refusal (and which)."""
    if lock_installed:
        return TapVerdict.REFUSE_LOCK_INSTALLED
    if state in (TagState.ISSUED, TagState.IN_USE):
        return TapVerdict.REGISTER
    return TapVerdict.REFUSE_NOT_IN_USE


def state_after_tap(state: TagState) -> TagState:
    """An issued tag's first accepted tap puts it in use (it was brought and put up)."""
    return TagState.IN_USE if state is TagState.ISSUED else state


def tap_after_install_is_alert(tapped_at: datetime, lock_installed_at: datetime | None) -> bool:
    """A tap at or after the client's lock was installed: the tag should be down.

    Judged on the tap's own time, not its arrival: an agent offline for a day
    delivers taps made before the installation after it, and those are no alert.
    """
    return lock_installed_at is not None and tapped_at >= lock_installed_at


# --- stock ---------------------------------------------------------------------------------

#: Tags kept beyond the expected need while an order is on its way: lost tags and a
#: week of unusual intake (a hospital ward discharging several clients at once).
TAG_SAFETY_STOCK: Final = 10


def reorder_level(tags_per_week: float, lead_time_weeks: float,
                  safety_stock: int = TAG_SAFETY_STOCK) -> int:
    """Stock at which a provider orders tags: need over the lead time plus safety stock.

    ``tags_per_week``: new clients whose lock is pending or impossible, plus lost
    tags replaced, per week (a provider's own figure).
    """
    if tags_per_week < 0 or lead_time_weeks < 0 or safety_stock < 0:
        raise ValueError("tag demand, lead time and safety stock cannot be negative")
    return math.ceil(tags_per_week * lead_time_weeks) + safety_stock


def needs_reorder(in_stock: int, level: int) -> bool:
    """Order now: the stock is at or below the reorder level."""
    return in_stock <= level
