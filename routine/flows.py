"""The routine's four case flows (2a, 2b, 3a, 3b) as explicit state machines.

Each flow is data: states, actions (a plain step or a question with answers, each
for one role) and transitions. A transition names the seed step it carries out
("2a.3"), the documentation text it produces (verbatim, :mod:`routine.texts`), the
effects the centre must carry out when it fires (:class:`Effect`) and the facts
that must hold for it (``requires``: things the machine cannot see, confirmed by
whoever applies it, e.g. ``keys_exist`` or the fitter's on-site checkpoints).

:meth:`Machine.apply` takes a state, an action, its answer, the acting role and the
facts, and returns the :class:`Step` taken or raises a :class:`RoutineError` that
names the state, the action tried and what is allowed there. Pure: no I/O, no
clock; the case store keeps the state and the steps.

Choices where the seed leaves room (see docs/routine-branches.md, "Choices"):

- 2a.3 "Finns fysiska nycklar?" is answered in the 2a.4 request to Digitala LÅS
  (the seed has the provider tell the alarm group whether keys exist), and the
  keys are *required* at installation (2a.7): "Fysiska nycklar behöver finnas hos
  hemtjänstutföraren när det digitala låset ska installeras." Missing keys do not
  stop the request; they stop the fitter.
- The fitter's checkpoints (2a.7, 2b.8) and the administrator's register checks
  (2b.9, 2b.10) are requirements of one step each, so a step cannot be recorded
  with a checkpoint unticked.
- Booking is a state, not a fact; booking again (a moved appointment) is the same
  seed step taken again.
- Every transition into a final state carries :attr:`Effect.CASE_CLOSED`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from routine import texts


class Flow(StrEnum):
    INSTALL_ASSESSED = "2a"
    REMOVE_ASSESSED = "2b"
    INSTALL_ALARM_ONLY = "3a"
    REMOVE_ALARM_ONLY = "3b"

    @property
    def title_sv(self) -> str:
        return texts.FLOW_TITLES_SV[self.value]


class Role(StrEnum):
    ASSESSOR = "assessor"  # biståndshandläggare
    PROVIDER = "provider"  # hemtjänstutförare
    ALARM_ADMIN = "alarm_admin"  # larmhandläggare
    FITTER = "fitter"  # montör

    @property
    def name_sv(self) -> str:
        return texts.ROLE_NAMES_SV[self.value]


class Effect(StrEnum):
    """What the centre must do when a transition fires."""

    DOCUMENT = "document"  # record transition.documentation for the client (paste into Lifecare)
    INBOX_DIGITALA_LAS = "inbox_digitala_las"  # message to the "Digitala LÅS" inbox (2a.4, 2b.4)
    BINDER_INSTALL_JOB = "binder_install_job"  # an install job for the fitters (2a.5, 3a.4)
    BINDER_REMOVAL_JOB = "binder_removal_job"  # a removal job for the fitters (2b.6, 3b.4)
    BOOKING = "booking"  # fitter booked a time with the client (+ shared schedule entry)
    LOCK_INSTALLED = "lock_installed"  # client's lock installed; their NFC tag is due down
    LOCK_REMOVED = "lock_removed"  # client's lock removed
    KEYS_REGISTERED = "keys_registered"  # physical keys recorded with key number in Axsor (3a)
    KEY_RECEIPT = "key_receipt"  # alarm keys handed back, receipt signed (2b.8 / 3b.6)
    IMPLEMENTATION_ENDED = "implementation_ended"  # an implementation ended: 14-day clock
    FILE_MOVES_TO_HOME_CARE = "file_moves_to_home_care"  # 3b.2: alarm file -> home care
    ALARM_STAYS = "alarm_stays"  # 2b.5: alarm continues, lock stays
    CASE_CLOSED = "case_closed"  # the case reached a final state


class Outcome(StrEnum):
    """How a case ended (the ``outcome`` of a final :class:`State`)."""

    ALREADY_INSTALLED = "already_installed"
    NO_LOCK_CODE_LOCK = "no_lock_code_lock"
    NO_LOCK_OPENS_DOOR = "no_lock_opens_door"
    NO_LOCK_AGREED = "no_lock_agreed_with_assessor"
    NO_LOCK_DECIDED = "no_lock_decided"
    INSTALLED = "installed"
    NO_LOCK_TO_REMOVE = "no_lock_to_remove"
    LOCK_STAYS = "lock_stays"
    FILE_MOVED = "file_moved_to_home_care"
    REMOVED = "removed"


#: The client's lock status (routine.reference.LOCK_STATUSES) after each outcome;
#: None: unchanged by the case.
LOCK_STATUS_AFTER: Final[Mapping[Outcome, str | None]] = MappingProxyType({
    Outcome.ALREADY_INSTALLED: "installed",
    Outcome.NO_LOCK_CODE_LOCK: "impossible",
    Outcome.NO_LOCK_OPENS_DOOR: "none",
    Outcome.NO_LOCK_AGREED: "none",
    Outcome.NO_LOCK_DECIDED: "none",
    Outcome.INSTALLED: "installed",
    Outcome.NO_LOCK_TO_REMOVE: None,
    Outcome.LOCK_STAYS: None,
    Outcome.FILE_MOVED: None,
    Outcome.REMOVED: "none",
})

#: The facts a transition may require, and what each means (English; Swedish in
#: routine.texts.CHECKPOINTS_SV).
FACTS: Final[Mapping[str, str]] = MappingProxyType({
    "keys_exist": "physical keys to the client exist (2a: with the provider; 3a: for the "
                  "alarm group)",
    "lock_bound_to_client": "the digital lock is bound to the client in the lock system",
    "knob_labelled_with_key_number": "the client's lock knob is labelled with the key number",
    "job_marked_done": "the job is marked done in the binder",
    "all_implementations_ended": "every implementation for home care and safety alarm is "
                                 "ended in the case system",
    "lock_unbound_in_lock_system": "the digital lock is unbound from the client in the lock "
                                   "system (Phoniro)",
    "door_restored_with_original_knob": "the door is restored with the original lock knob",
    "keys_returned_receipt_signed": "the alarm keys are handed back to the client and the "
                                    "key receipt is signed",
    "key_number_unbound": "the key number is unbound from the client in the key register "
                          "(Axsor)",
    "lock_serial_unbound": "the lock number/serial is unbound from the client in the lock "
                           "system (Phoniro)",
})

_NO_FACTS: Final[Mapping[str, bool]] = MappingProxyType({})

YES, NO = "yes", "no"
YES_NO: Final = (YES, NO)


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    name: str
    terminal: bool
    outcome: str | None
    description: str


@dataclass(frozen=True)
class Action:
    """Something a role does in a state: a plain step (``answers == ()``) or a question."""

    name: str
    role: Role
    answers: tuple[str, ...]
    text: str  # English
    seed: str  # the seed step quoted: "2a.3 • Har brukaren ett kodlås på dörren?"

    def describe(self) -> str:
        """``code_lock by provider (yes|no)``: for error messages and listings."""
        answers = f" ({'|'.join(self.answers)})" if self.answers else ""
        return f"{self.name} by {self.role.value}{answers}"


@dataclass(frozen=True)
class Transition:
    state: str
    action: str
    answer: str | None
    next_state: str
    documentation: str | None = None
    effects: tuple[Effect, ...] = ()
    requires: tuple[str, ...] = ()
    seed: str = ""


@dataclass(frozen=True)
class Step:
    """One transition taken: what the case store records and the centre carries out."""

    flow: Flow
    from_state: str
    action: str
    answer: str | None
    to_state: str
    documentation: str | None
    effects: tuple[Effect, ...]
    seed: str = ""


# --- errors --------------------------------------------------------------------------------


class RoutineError(Exception):
    """The routine does not allow this. Root of the routine's rule errors.

    Carries the state, the action tried, the actions allowed there and any unmet
    facts, so a caller can show them or map them to its own error.
    """

    def __init__(self, message: str, *, flow: Flow | None = None, state: str = "",
                 action: str = "", allowed: Sequence[Action] = (),
                 unmet: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.flow = flow
        self.state = state
        self.action = action
        self.allowed = tuple(allowed)
        self.unmet = tuple(unmet)


class NotAllowed(RoutineError):
    """The action (or its answer) is not one the state allows, or the case is closed."""


class WrongRole(RoutineError):
    """The action is allowed in the state, but for another role."""


class UnmetRequirement(RoutineError):
    """The action is allowed, but facts it needs are not (yet) true."""


# --- the machine ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Machine:
    """One flow's states, actions and transitions; build with :func:`machine`."""

    flow: Flow
    start: str
    states: Mapping[str, State]
    actions: Mapping[str, Action]
    _transitions: tuple[Transition, ...] = field(repr=False)

    def __post_init__(self) -> None:
        _check(self)

    def transitions(self) -> list[Transition]:
        """Every branch of the flow, in the order the routine takes them."""
        return list(self._transitions)

    def allowed(self, state: str) -> list[Action]:
        """The actions allowed in ``state`` (none in a final state), with their answers."""
        self._state(state, "")
        names = dict.fromkeys(t.action for t in self._transitions if t.state == state)
        return [self.actions[n] for n in names]

    def transition(self, state: str, action: str, answer: str | None) -> Transition:
        """The transition ``action``/``answer`` takes from ``state``; NotAllowed if none."""
        here = self._state(state, action)
        if here.terminal:
            raise NotAllowed(
                f"{self.flow}: the case is closed in state {state!r} ({here.outcome}); "
                "no action is allowed",
                flow=self.flow, state=state, action=action)
        allowed = self.allowed(state)
        act = self.actions.get(action)
        if act is None or act not in allowed:
            raise NotAllowed(
                f"{self.flow}: {action!r} is not allowed in state {state!r}; "
                f"allowed there: {_listing(allowed)}",
                flow=self.flow, state=state, action=action, allowed=allowed)
        for t in self._transitions:
            if t.state == state and t.action == action and t.answer == answer:
                return t
        wanted = "|".join(act.answers) if act.answers else "no answer"
        raise NotAllowed(
            f"{self.flow}: {action!r} in state {state!r} takes {wanted}, not {answer!r}; "
            f"allowed there: {_listing(allowed)}",
            flow=self.flow, state=state, action=action, allowed=allowed)

    def apply(self, state: str, action: str, answer: str | None, role: Role,
              facts: Mapping[str, bool] = _NO_FACTS) -> Step:
        """Take one step, or raise NotAllowed, WrongRole or UnmetRequirement."""
        t = self.transition(state, action, answer)
        act = self.actions[action]
        if role != act.role:
            allowed = self.allowed(state)
            raise WrongRole(
                f"{self.flow}: {action!r} in state {state!r} is for the {act.role.value}, "
                f"not the {Role(role).value}; allowed there: {_listing(allowed)}",
                flow=self.flow, state=state, action=action, allowed=allowed)
        unmet = [f for f in t.requires if not facts.get(f, False)]
        if unmet:
            needs = "; ".join(f"{f} ({FACTS[f]})" for f in unmet)
            raise UnmetRequirement(
                f"{self.flow}: {action!r} in state {state!r} ({t.seed}) needs: {needs}. "
                "Confirm these, then take the step again",
                flow=self.flow, state=state, action=action, allowed=self.allowed(state),
                unmet=unmet)
        return Step(self.flow, state, action, answer, t.next_state, t.documentation,
                    t.effects, t.seed)

    def _state(self, state: str, action: str) -> State:
        if state not in self.states:
            raise NotAllowed(
                f"{self.flow}: no state {state!r}; states: {', '.join(self.states)}",
                flow=self.flow, state=state, action=action)
        return self.states[state]


def _listing(actions: Sequence[Action]) -> str:
    return ", ".join(a.describe() for a in actions) or "nothing (the case is closed)"


def _check(m: Machine) -> None:
    """The flow's table is whole: every name resolves, every answer has its branch."""
    problems = []
    if m.start not in m.states:
        problems.append(f"start {m.start!r} is not a state")
    for t in m._transitions:
        if t.state not in m.states or t.next_state not in m.states:
            problems.append(f"{t.state} -> {t.next_state}: unknown state")
        elif m.states[t.state].terminal:
            problems.append(f"{t.state} is final but has a way out")
        if t.action not in m.actions:
            problems.append(f"{t.action}: unknown action")
        elif (t.answer is None) != (not m.actions[t.action].answers):
            problems.append(f"{t.state}/{t.action}: answer {t.answer!r} does not fit")
        problems += [f"{t.action}: unknown fact {f!r}" for f in t.requires if f not in FACTS]
        if (t.documentation is not None) != (Effect.DOCUMENT in t.effects):
            problems.append(f"{t.state}/{t.action}: documentation and DOCUMENT disagree")
        if t.next_state in m.states and (
                m.states[t.next_state].terminal != (Effect.CASE_CLOSED in t.effects)):
            problems.append(f"{t.state}/{t.action}: CASE_CLOSED iff final")
    for state in m.states.values():
        given = [(t.action, t.answer) for t in m._transitions if t.state == state.name]
        if len(given) != len(set(given)):
            problems.append(f"{state.name}: an action/answer has two branches")
        for name in dict.fromkeys(a for a, _ in given):
            if name in m.actions:
                wanted = m.actions[name].answers or (None,)
                if sorted(map(str, [ans for a, ans in given if a == name])) != sorted(
                        map(str, wanted)):
                    problems.append(f"{state.name}/{name}: not every answer has a branch")
        if not state.terminal and not given:
            problems.append(f"{state.name}: not final, but no way out")
        if state.terminal != (state.outcome is not None):
            problems.append(f"{state.name}: a final state has an outcome, others none")
    reached, todo = {m.start}, [m.start]
    while todo:
        here = todo.pop()
        for t in m._transitions:
            if t.state == here and t.next_state not in reached:
                reached.add(t.next_state)
                todo.append(t.next_state)
    problems += [f"{name}: unreachable from {m.start}" for name in m.states if name not in reached]
    if problems:
        raise ValueError(f"flow {m.flow}: " + "; ".join(problems))


# --- building the flows --------------------------------------------------------------------


class _Builder:
    """Collects one flow's states, actions and transitions in routine order."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.states: dict[str, State] = {}
        self.actions: dict[str, Action] = {}
        self.transitions: list[Transition] = []

    def state(self, name: str, description: str, outcome: Outcome | None = None) -> None:
        self.states[name] = State(name, outcome is not None, outcome, description)

    def action(self, name: str, role: Role, text: str, seed: str,
               answers: tuple[str, ...] = ()) -> None:
        self.actions[name] = Action(name, role, answers, text, seed)

    def go(self, state: str, action: str, answer: str | None, next_state: str, *,
           effects: tuple[Effect, ...] = (), documentation: str | None = None,
           requires: tuple[str, ...] = (), seed: str = "") -> None:
        seed = seed or self.actions[action].seed.split(" ")[0]
        if documentation is not None:
            effects = (Effect.DOCUMENT, *effects)
        self.transitions.append(Transition(state, action, answer, next_state, documentation,
                                           effects, requires, seed))

    def machine(self, start: str) -> Machine:
        """The flow; a transition into a final state closes the case."""
        transitions = tuple(
            replace(t, effects=(*t.effects, Effect.CASE_CLOSED))
            if t.next_state in self.states and self.states[t.next_state].terminal else t
            for t in self.transitions)
        return Machine(self.flow, start, MappingProxyType(dict(self.states)),
                       MappingProxyType(dict(self.actions)), transitions)


INSTALL_CHECKPOINTS: Final = ("keys_exist", "lock_bound_to_client",
                              "knob_labelled_with_key_number", "job_marked_done")
REMOVAL_CHECKPOINTS: Final = ("lock_unbound_in_lock_system", "door_restored_with_original_knob",
                              "keys_returned_receipt_signed", "job_marked_done")


Quote = tuple[str, str]  # (seed step, its words): ("2b.6", "Om det digitala låset ...")


def _fitter_installs(b: _Builder, book: str, install: Quote, seen: str) -> None:
    """2a.6-2a.8 and 3a.5-3a.7: book, plan, install with the checkpoints; visible."""
    b.state("install_job_in_binder", "An install job is in the binder for the fitters.")
    b.state("installation_booked", "A fitter booked a time with the client and planned it "
                                   "in the shared schedule.")
    b.state("installed", f"{seen}: the lock is installed; the providers concerned see it in "
                         "the mobile app (LMO).", Outcome.INSTALLED)
    b.action("book_installation", Role.FITTER,
             "Book a time for installation with the client and plan it in the alarm group's "
             "shared schedule (again, to move a booking)",
             f"{book} • Montör bokar tid för installation med brukaren.")
    b.action("install_lock", Role.FITTER,
             "Install the lock: bound to the client, knob labelled with the key number, job "
             "marked done in the binder (physical keys must exist)",
             f"{install[0]} • {install[1]}")
    b.go("install_job_in_binder", "book_installation", None, "installation_booked",
         effects=(Effect.BOOKING,))
    b.go("installation_booked", "book_installation", None, "installation_booked",
         effects=(Effect.BOOKING,))
    b.go("installation_booked", "install_lock", None, "installed",
         effects=(Effect.LOCK_INSTALLED,), requires=INSTALL_CHECKPOINTS)


@dataclass(frozen=True)
class _RemovalSteps:
    """Where 2b and 3b word the same removal steps (their numbers and quotes differ)."""

    end: Quote
    job: Quote
    book: str
    remove: str
    key_check: str
    lock_check: str
    gone: str


def _alarm_ends_then_removal(b: _Builder, s: _RemovalSteps) -> None:
    """2b.5-2b.11 and 3b.3-3b.9: alarm implementation ended, all ended, job, book, remove."""
    b.state("alarm_ending", "The safety alarm is to end; its implementation must be ended.")
    b.state("awaiting_all_ended", "Waiting until every implementation (home care and safety "
                                  "alarm) is ended; then the removal job, due within 14 days "
                                  "of the end.")
    b.state("removal_job_in_binder", "A removal job is in the binder for the fitters.")
    b.state("removal_booked", "A fitter booked a time with the client for removal and planned "
                              "it in the shared schedule.")
    b.state("lock_removed", "The fitter removed the lock and handed the alarm keys back "
                            "against a signed key receipt; the registers are to be checked.")
    b.state("key_register_checked", "The key number is unbound from the client in the key "
                                    "register (Axsor).")
    b.state("removed", f"{s.gone}: the lock is removed; the providers concerned no longer see "
                       "it in the mobile app (LMO).", Outcome.REMOVED)
    b.action("end_alarm_implementation", Role.ALARM_ADMIN,
             "End the safety alarm's implementation in the case system",
             f"{s.end[0]} • {s.end[1]}")
    b.action("put_removal_job", Role.ALARM_ADMIN,
             "Put a removal job in the binder for the fitters (all implementations must be "
             "ended; remove within 14 days of the end)",
             f"{s.job[0]} • {s.job[1]}")
    b.action("book_removal", Role.FITTER,
             "Book a time for removal with the client and plan it in the alarm group's "
             "shared schedule (again, to move a booking)",
             f"{s.book} • Montör bokar tid med brukaren för nedmontering av det digitala "
             "låset.")
    b.action("remove_lock", Role.FITTER,
             "Remove the lock: unbound in the lock system, door restored with the original "
             "knob, alarm keys handed back with a signed key receipt, job marked done",
             f"{s.remove} • Montörer nedmonterar digitalt lås")
    b.action("check_key_register", Role.ALARM_ADMIN,
             "Check that the key number is unbound from the client in the key register",
             f"{s.key_check} • Larmhandläggaren kontrollerar att nyckelnumret i Axsor är "
             "frånkopplat brukaren.")
    b.action("check_lock_system", Role.ALARM_ADMIN,
             "Check that the lock number/serial is unbound from the client in the lock system",
             f"{s.lock_check} • Larmhandläggaren kontrollerar att låsnummer/serienummer är "
             "frånkopplat brukaren i Phoniro.")
    b.go("alarm_ending", "end_alarm_implementation", None, "awaiting_all_ended",
         effects=(Effect.IMPLEMENTATION_ENDED,))
    b.go("awaiting_all_ended", "put_removal_job", None, "removal_job_in_binder",
         effects=(Effect.BINDER_REMOVAL_JOB,), requires=("all_implementations_ended",))
    b.go("removal_job_in_binder", "book_removal", None, "removal_booked",
         effects=(Effect.BOOKING,))
    b.go("removal_booked", "book_removal", None, "removal_booked", effects=(Effect.BOOKING,))
    b.go("removal_booked", "remove_lock", None, "lock_removed",
         effects=(Effect.LOCK_REMOVED, Effect.KEY_RECEIPT), requires=REMOVAL_CHECKPOINTS)
    b.go("lock_removed", "check_key_register", None, "key_register_checked",
         requires=("key_number_unbound",))
    b.go("key_register_checked", "check_lock_system", None, "removed",
         requires=("lock_serial_unbound",))


def _install_assessed() -> Machine:
    b = _Builder(Flow.INSTALL_ASSESSED)
    b.state("new", "The assessor has decided on services for the client (2a.1).")
    b.state("ordered", "The provider has the order and goes through its checkpoints (2a.3).")
    b.state("code_lock_check", "Checkpoint: code lock on the front door?")
    b.state("opens_door_check", "Checkpoint: home care only, and opens the door themself?")
    b.state("lock_offered", "A lock is recommended; the client may decline while they open "
                            "the door themself at every visit.")
    b.state("refusal_check", "Checkpoint: does the client say they do not want a lock?")
    b.state("awaiting_assessor", "The provider has contacted the assessor, who reports back "
                                 "whether a lock is to be installed.")
    b.state("checkpoints_passed", "Checkpoints passed; a lock is to be installed.")
    b.state("lock_requested", "The request is in the Digitala LÅS inbox.")
    b.state("already_installed", "A lock is already installed; nothing more to do.",
            Outcome.ALREADY_INSTALLED)
    b.state("no_lock_code_lock", "Code lock on the front door: no digital lock can be "
                                 "installed (documented).", Outcome.NO_LOCK_CODE_LOCK)
    b.state("no_lock_opens_door", "The client opens the door themself and declined a lock "
                                  "(documented).", Outcome.NO_LOCK_OPENS_DOOR)
    b.state("no_lock_agreed", "Agreed with the assessor: no lock (documented).",
            Outcome.NO_LOCK_AGREED)

    b.action("send_order", Role.ASSESSOR,
             "Decide on services (recorded in the case system) and send the order to the "
             "provider",
             "2a.2 • Biståndshandläggaren skickar en beställning till hemtjänstutföraren i "
             "Lifecare.")
    b.action("lock_already_installed", Role.PROVIDER,
             "Is a digital lock already installed? (check the mobile app or the lock system)",
             "2a.3 • Har brukaren redan ett digitalt lås installerat?", YES_NO)
    b.action("code_lock", Role.PROVIDER, "Is there a code lock on the front door?",
             "2a.3 • Har brukaren ett kodlås på dörren?", YES_NO)
    b.action("home_care_only_opens_door", Role.PROVIDER,
             "Does the client have home care only, and open the door themself?",
             "2a.3 • Har brukaren endast hemtjänst och kan öppna dörren själv?", YES_NO)
    b.action("declines_lock", Role.PROVIDER,
             "Does the client decline a lock because they open the door themself at every "
             "visit?",
             "2a.3 • Om brukaren inte vill ha digitalt lås av den anledningen", YES_NO)
    b.action("client_refuses", Role.PROVIDER,
             "Does the client say they do not want a lock? (yes: contact the assessor)",
             "2a.3 • Brukaren uppger att hen inte vill ha ett digitalt lås.", YES_NO)
    b.action("assessor_decision", Role.ASSESSOR,
             "Report back to the provider: is a lock to be installed?",
             "2a.3 • Biståndshandläggaren återkopplar till hemtjänstutföraren med information "
             "om ett digitalt lås ska installeras eller inte.", ("install", "no_lock"))
    b.action("request_lock", Role.PROVIDER,
             "Send the lock request to Digitala LÅS, stating whether physical keys exist",
             "2a.4 • skickar hemtjänstutföraren meddelande via Lifecare till larmgruppens "
             "mejlgrupp Digitala LÅS. Hemtjänstutföraren meddelar även larmgruppen om fysiska "
             "nycklar finns till brukaren.", ("keys_exist", "keys_missing"))
    b.action("put_install_job", Role.ALARM_ADMIN,
             "Take the request from Digitala LÅS and put an install job in the binder",
             "2a.5 • Larmhandläggare mottager meddelandet i Digitala LÅS mejlgruppen och "
             "lägger meddelande i pärm till larmgruppens montörer")

    b.go("new", "send_order", None, "ordered", seed="2a.1-2a.2")
    b.go("ordered", "lock_already_installed", YES, "already_installed")
    b.go("ordered", "lock_already_installed", NO, "code_lock_check")
    b.go("code_lock_check", "code_lock", YES, "no_lock_code_lock", documentation=texts.CODE_LOCK)
    b.go("code_lock_check", "code_lock", NO, "opens_door_check")
    b.go("opens_door_check", "home_care_only_opens_door", YES, "lock_offered")
    b.go("opens_door_check", "home_care_only_opens_door", NO, "refusal_check")
    b.go("lock_offered", "declines_lock", YES, "no_lock_opens_door",
         documentation=texts.OPENS_DOOR_THEMSELF)
    b.go("lock_offered", "declines_lock", NO, "checkpoints_passed")
    b.go("refusal_check", "client_refuses", YES, "awaiting_assessor")
    b.go("refusal_check", "client_refuses", NO, "checkpoints_passed")
    b.go("awaiting_assessor", "assessor_decision", "install", "checkpoints_passed")
    b.go("awaiting_assessor", "assessor_decision", "no_lock", "no_lock_agreed",
         documentation=texts.AGREED_WITH_ASSESSOR)
    b.go("checkpoints_passed", "request_lock", "keys_exist", "lock_requested",
         effects=(Effect.INBOX_DIGITALA_LAS,))
    b.go("checkpoints_passed", "request_lock", "keys_missing", "lock_requested",
         effects=(Effect.INBOX_DIGITALA_LAS,))
    b.go("lock_requested", "put_install_job", None, "install_job_in_binder",
         effects=(Effect.BINDER_INSTALL_JOB,))
    _fitter_installs(b, "2a.6", ("2a.7", "Montör installerar digitalt lås."), "2a.8")
    return b.machine("new")


def _remove_assessed() -> Machine:
    b = _Builder(Flow.REMOVE_ASSESSED)
    b.state("active", "The client's assessed services are running (2b.1: they are to end).")
    b.state("cancelled", "The provider has the cancellation.")
    b.state("implementation_ended", "The provider ended its implementation; does the client "
                                    "have a lock?")
    b.state("removal_requested", "The message is in the Digitala LÅS inbox; the alarm "
                                 "administrator checks whether the safety alarm ends.")
    b.state("no_lock", "No lock installed: nothing to remove.", Outcome.NO_LOCK_TO_REMOVE)
    b.state("lock_stays", "The safety alarm continues: the lock stays.", Outcome.LOCK_STAYS)

    b.action("send_cancellation", Role.ASSESSOR, "Send the cancellation to the provider",
             "2b.2 • Biståndshandläggaren skickar en avbeställning till hemtjänstutföraren "
             "via Lifecare.")
    b.action("end_implementation", Role.PROVIDER, "End the implementation in the case system",
             "2b.3 • Hemtjänstutföraren avslutar verkställigheten i Lifecare.")
    b.action("client_has_lock", Role.PROVIDER,
             "Does the client have a digital lock installed? (yes: message Digitala LÅS)",
             "2b.4 • Om brukaren har ett digitalt lås installerat, skickar "
             "hemtjänstutföraren meddelande via Lifecare till mejlgruppen Digitala LÅS.",
             YES_NO)
    b.action("alarm_decision", Role.ALARM_ADMIN,
             "Is the safety alarm to end or stay? (clients over 65: decided in the alarm's "
             "own process; no_alarm: the client has none)",
             "2b.5 • Ska trygghetslarmet avslutas eller vara kvar?", ("ends", "stays", "no_alarm"))

    b.go("active", "send_cancellation", None, "cancelled", seed="2b.1-2b.2")
    b.go("cancelled", "end_implementation", None, "implementation_ended",
         effects=(Effect.IMPLEMENTATION_ENDED,))
    b.go("implementation_ended", "client_has_lock", YES, "removal_requested",
         effects=(Effect.INBOX_DIGITALA_LAS,))
    b.go("implementation_ended", "client_has_lock", NO, "no_lock")
    b.go("removal_requested", "alarm_decision", "ends", "alarm_ending")
    b.go("removal_requested", "alarm_decision", "stays", "lock_stays",
         effects=(Effect.ALARM_STAYS,))
    b.go("removal_requested", "alarm_decision", "no_alarm", "awaiting_all_ended")
    _alarm_ends_then_removal(b, _RemovalSteps(
        end=("2b.5", "Om brukarens trygghetslarm ska avslutas skall även verkställigheten för "
                     "trygghetslarmet avslutas."),
        job=("2b.6", "Om det digitala låset ska nedmonteras lägger larmhandläggaren meddelande "
                     "i pärm till larmgruppens montörer."),
        book="2b.7", remove="2b.8", key_check="2b.9", lock_check="2b.10", gone="2b.11"))
    return b.machine("active")


def _install_alarm_only() -> Machine:
    b = _Builder(Flow.INSTALL_ALARM_ONLY)
    b.state("new", "A request for a safety alarm is coming in.")
    b.state("awaiting_keys", "Until physical keys to the client exist, the process cannot go "
                             "on.")
    b.state("code_lock_check", "Checkpoint: code lock on the door?")
    b.state("installed_check", "Checkpoint: is a digital lock installed?")
    b.state("assessing", "The alarm administrator decides whether a lock is to be installed.")
    b.state("no_lock_code_lock", "Code lock on the door: no digital lock can be installed.",
            Outcome.NO_LOCK_CODE_LOCK)
    b.state("already_installed", "A lock is already installed; the keys are recorded in the "
                                 "key register.", Outcome.ALREADY_INSTALLED)
    b.state("no_lock_decided", "No lock is to be installed; the keys are recorded in the key "
                               "register.", Outcome.NO_LOCK_DECIDED)

    b.action("receive_request", Role.ALARM_ADMIN,
             "Receive the request for a safety alarm (phone, e-mail, ...)",
             "3a.1 • Förfrågan om trygghetslarm inkommer till larmhandläggaren.")
    b.action("confirm_keys", Role.ALARM_ADMIN, "Confirm that physical keys to the client exist",
             "3a.2 • Innan fysiska nycklar finns kan larmhandläggaren inte gå vidare i "
             "processen.")
    b.action("code_lock", Role.ALARM_ADMIN, "Is there a code lock on the door?",
             "3a.3 • Har brukaren kodlås på dörren?", YES_NO)
    b.action("lock_already_installed", Role.ALARM_ADMIN,
             "Is a digital lock installed? (yes: record the keys with key number in the key "
             "register)",
             "3a.3 • Finns ett digitalt lås installerat?", YES_NO)
    b.action("decide_lock", Role.ALARM_ADMIN,
             "Is a lock to be installed? (the keys are recorded with key number in the key "
             "register either way; yes: an install job in the binder)",
             "3a.4 • Larmhandläggare bedömer om digitalt lås ska installeras.", YES_NO)

    b.go("new", "receive_request", None, "awaiting_keys")
    b.go("awaiting_keys", "confirm_keys", None, "code_lock_check", requires=("keys_exist",))
    b.go("code_lock_check", "code_lock", YES, "no_lock_code_lock")
    b.go("code_lock_check", "code_lock", NO, "installed_check")
    b.go("installed_check", "lock_already_installed", YES, "already_installed",
         effects=(Effect.KEYS_REGISTERED,))
    b.go("installed_check", "lock_already_installed", NO, "assessing")
    b.go("assessing", "decide_lock", YES, "install_job_in_binder",
         effects=(Effect.KEYS_REGISTERED, Effect.BINDER_INSTALL_JOB))
    b.go("assessing", "decide_lock", NO, "no_lock_decided", effects=(Effect.KEYS_REGISTERED,))
    _fitter_installs(b, "3a.5", ("3a.6", "Montörer installerar digitalt lås."), "3a.7")
    return b.machine("new")


def _remove_alarm_only() -> Machine:
    b = _Builder(Flow.REMOVE_ALARM_ONLY)
    b.state("active", "The client's safety alarm is running.")
    b.state("end_requested", "A message to end the safety alarm came in; does home care "
                             "continue?")
    b.state("lock_check", "No home care continues: is a digital lock installed?")
    b.state("file_moved", "Home care continues: the file moves from safety alarm to home care "
                          "and the lock stays.", Outcome.FILE_MOVED)
    b.state("no_lock", "No lock installed: the process ends.", Outcome.NO_LOCK_TO_REMOVE)

    b.action("receive_end_request", Role.ALARM_ADMIN,
             "Receive the message to end the safety alarm (phone, e-mail, ...)",
             "3b.1 • Meddelande om att avsluta trygghetslarmet inkommer till "
             "larmhandläggaren.")
    b.action("home_care_continues", Role.ALARM_ADMIN,
             "Will the client's home-care services continue?",
             "3b.2 • Larmhandläggaren kontrollerar om brukarens hemtjänstinsatser kommer att "
             "kvarstå.", YES_NO)
    b.action("lock_installed", Role.ALARM_ADMIN, "Is a digital lock installed?",
             "3b.2 • Att det finns ett digitalt lås installerat.", YES_NO)

    b.go("active", "receive_end_request", None, "end_requested")
    b.go("end_requested", "home_care_continues", YES, "file_moved",
         effects=(Effect.FILE_MOVES_TO_HOME_CARE,))
    b.go("end_requested", "home_care_continues", NO, "lock_check")
    b.go("lock_check", "lock_installed", NO, "no_lock")
    b.go("lock_check", "lock_installed", YES, "alarm_ending")
    _alarm_ends_then_removal(b, _RemovalSteps(
        end=("3b.3", "Om brukarens trygghetslarm ska avslutas skall även verkställigheten för "
                     "trygghetslarm avslutas."),
        job=("3b.4", "Larmhandläggaren lägger information i pärm till montörer om att "
                     "digitalt lås behöver nedmonteras."),
        book="3b.5", remove="3b.6", key_check="3b.7", lock_check="3b.8", gone="3b.9"))
    return b.machine("active")


MACHINES: Final[Mapping[Flow, Machine]] = MappingProxyType({
    Flow.INSTALL_ASSESSED: _install_assessed(),
    Flow.REMOVE_ASSESSED: _remove_assessed(),
    Flow.INSTALL_ALARM_ONLY: _install_alarm_only(),
    Flow.REMOVE_ALARM_ONLY: _remove_alarm_only(),
})


def machine(flow: Flow | str) -> Machine:
    """The state machine of ``flow`` ("2a", "2b", "3a", "3b")."""
    return MACHINES[Flow(flow)]


def walk(flow: Flow | str, steps: Iterable[tuple[str, str | None, Role]],
         facts: Mapping[str, bool] = _NO_FACTS, start: str | None = None) -> list[Step]:
    """Take ``(action, answer, role)`` steps from the flow's start (or ``start``)."""
    m = machine(flow)
    state = m.start if start is None else start
    taken = []
    for action, answer, role in steps:
        step = m.apply(state, action, answer, role, facts)
        taken.append(step)
        state = step.to_state
    return taken
