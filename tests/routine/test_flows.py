"""routine.flows: the four case flows, their verbatim texts, their errors, their invariants."""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from routine import reference, texts
from routine.flows import (
    FACTS,
    LOCK_STATUS_AFTER,
    MACHINES,
    Action,
    Effect,
    Flow,
    Machine,
    NotAllowed,
    Outcome,
    Role,
    RoutineError,
    State,
    Step,
    Transition,
    UnmetRequirement,
    WrongRole,
    machine,
    walk,
)

SEED = Path("/work/shared/seed/000_e9d53e108f01166a.txt")
A, P, L, F = Role.ASSESSOR, Role.PROVIDER, Role.ALARM_ADMIN, Role.FITTER
ALL_FACTS = MappingProxyType(dict.fromkeys(FACTS, True))

# The seed's documentation texts, copied from its bytes (UTF-8, NFC), embedded so the
# check runs where the seed file is not (CI); where it is, it is checked too.
EXPECTED_TEXTS = {
    "CODE_LOCK": "Har kodlås på ytterdörr. Digitalt lås kan inte installeras.",
    "OPENS_DOOR_THEMSELF": "Öppnar dörren själv vid hemtjänstinsatser. Har inget digitalt lås.",
    "AGREED_WITH_ASSESSOR":
        "Överenskommet med biståndshandläggare att digitalt lås inte ska installeras.",
    "DOCUMENTATION_FIELD": "Personuppgifter, övrig information",
}
EXPECTED_UTF8_LENGTHS = {"CODE_LOCK": 63, "OPENS_DOOR_THEMSELF": 71,
                         "AGREED_WITH_ASSESSOR": 80, "DOCUMENTATION_FIELD": 35}


def flat(text: str) -> str:
    """Whitespace runs (the seed wraps lines mid-sentence) as one space."""
    return re.sub(r"\s+", " ", text)


# --- verbatim texts ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_TEXTS))
def test_documentation_texts_are_the_seeds_verbatim(name):
    value = getattr(texts, name)
    assert value == EXPECTED_TEXTS[name]
    assert unicodedata.is_normalized("NFC", value)
    assert len(value.encode("utf-8")) == EXPECTED_UTF8_LENGTHS[name]
    assert value == value.strip() and "  " not in value


@pytest.mark.skipif(not SEED.exists(), reason=f"seed routine not at {SEED}")
def test_the_seed_file_holds_every_swedish_quote():
    seed = flat(SEED.read_text(encoding="utf-8"))
    for value in EXPECTED_TEXTS.values():
        assert value in seed
    assert f"under {texts.DOCUMENTATION_FIELD} med texten: {texts.CODE_LOCK}" in seed
    quotes = [a.seed.split(" • ", 1)[1] for m in MACHINES.values() for a in m.actions.values()]
    quotes += list(texts.CHECKPOINTS_SV.values())
    missing = [q for q in quotes if q not in seed]
    assert not missing
    for title in texts.FLOW_TITLES_SV.values():
        assert title in seed


DOCUMENTED = {
    (Flow.INSTALL_ASSESSED, "code_lock_check", "code_lock", "yes"): texts.CODE_LOCK,
    (Flow.INSTALL_ASSESSED, "lock_offered", "declines_lock", "yes"): texts.OPENS_DOOR_THEMSELF,
    (Flow.INSTALL_ASSESSED, "awaiting_assessor", "assessor_decision", "no_lock"):
        texts.AGREED_WITH_ASSESSOR,
}


def test_texts_are_produced_exactly_where_the_routine_puts_them_and_nowhere_else():
    produced = {(f, t.state, t.action, t.answer): t.documentation
                for f, m in MACHINES.items() for t in m.transitions() if t.documentation}
    assert produced == DOCUMENTED
    for f, m in MACHINES.items():
        for t in m.transitions():
            assert (Effect.DOCUMENT in t.effects) == (t.documentation is not None), (f, t)


CHECKS_TO_CODE_LOCK = [("send_order", None, A), ("lock_already_installed", "no", P)]


@pytest.mark.parametrize(("steps", "text", "outcome"), [
    ([("code_lock", "yes", P)], texts.CODE_LOCK, Outcome.NO_LOCK_CODE_LOCK),
    ([("code_lock", "no", P), ("home_care_only_opens_door", "yes", P),
      ("declines_lock", "yes", P)], texts.OPENS_DOOR_THEMSELF, Outcome.NO_LOCK_OPENS_DOOR),
    ([("code_lock", "no", P), ("home_care_only_opens_door", "no", P),
      ("client_refuses", "yes", P), ("assessor_decision", "no_lock", A)],
     texts.AGREED_WITH_ASSESSOR, Outcome.NO_LOCK_AGREED),
])
def test_walking_to_a_documented_end_gives_the_text_once(steps, text, outcome):
    taken = walk(Flow.INSTALL_ASSESSED, CHECKS_TO_CODE_LOCK + steps)
    assert [s.documentation for s in taken] == [None] * (len(taken) - 1) + [text]
    assert taken[-1].effects == (Effect.DOCUMENT, Effect.CASE_CLOSED)
    assert machine("2a").states[taken[-1].to_state].outcome == outcome
    assert (taken[-1].documentation or "").encode() == text.encode()


# --- whole paths ---------------------------------------------------------------------------

INSTALL_2A = [("send_order", None, A), ("lock_already_installed", "no", P),
              ("code_lock", "no", P), ("home_care_only_opens_door", "no", P),
              ("client_refuses", "yes", P), ("assessor_decision", "install", A),
              ("request_lock", "keys_missing", P), ("put_install_job", None, L),
              ("book_installation", None, F), ("book_installation", None, F),
              ("install_lock", None, F)]
REMOVE_2B = [("send_cancellation", None, A), ("end_implementation", None, P),
             ("client_has_lock", "yes", P), ("alarm_decision", "ends", L),
             ("end_alarm_implementation", None, L), ("put_removal_job", None, L),
             ("book_removal", None, F), ("remove_lock", None, F),
             ("check_key_register", None, L), ("check_lock_system", None, L)]
INSTALL_3A = [("receive_request", None, L), ("confirm_keys", None, L), ("code_lock", "no", L),
              ("lock_already_installed", "no", L), ("decide_lock", "yes", L),
              ("book_installation", None, F), ("install_lock", None, F)]
REMOVE_3B = [("receive_end_request", None, L), ("home_care_continues", "no", L),
             ("lock_installed", "yes", L), ("end_alarm_implementation", None, L),
             ("put_removal_job", None, L), ("book_removal", None, F), ("remove_lock", None, F),
             ("check_key_register", None, L), ("check_lock_system", None, L)]
E = Effect


@pytest.mark.parametrize(("flow", "steps", "effects", "end"), [
    (Flow.INSTALL_ASSESSED, INSTALL_2A,
     [E.INBOX_DIGITALA_LAS, E.BINDER_INSTALL_JOB, E.BOOKING, E.BOOKING, E.LOCK_INSTALLED,
      E.CASE_CLOSED], "installed"),
    (Flow.REMOVE_ASSESSED, REMOVE_2B,
     [E.IMPLEMENTATION_ENDED, E.INBOX_DIGITALA_LAS, E.IMPLEMENTATION_ENDED,
      E.BINDER_REMOVAL_JOB, E.BOOKING, E.LOCK_REMOVED, E.KEY_RECEIPT, E.CASE_CLOSED],
     "removed"),
    (Flow.INSTALL_ALARM_ONLY, INSTALL_3A,
     [E.KEYS_REGISTERED, E.BINDER_INSTALL_JOB, E.BOOKING, E.LOCK_INSTALLED, E.CASE_CLOSED],
     "installed"),
    (Flow.REMOVE_ALARM_ONLY, REMOVE_3B,
     [E.IMPLEMENTATION_ENDED, E.BINDER_REMOVAL_JOB, E.BOOKING, E.LOCK_REMOVED, E.KEY_RECEIPT,
      E.CASE_CLOSED], "removed"),
])
def test_the_long_way_through_each_flow(flow, steps, effects, end):
    taken = walk(flow, steps, ALL_FACTS)
    assert [e for s in taken for e in s.effects] == effects
    assert taken[-1].to_state == end and all(isinstance(s, Step) for s in taken)
    assert [s.flow for s in taken] == [flow] * len(steps)
    assert all(s.from_state == prev.to_state for prev, s in itertools.pairwise(taken))


@pytest.mark.parametrize(("flow", "steps", "outcome", "last_effects"), [
    ("2a", [("send_order", None, A), ("lock_already_installed", "yes", P)],
     Outcome.ALREADY_INSTALLED, (E.CASE_CLOSED,)),
    ("2b", [*REMOVE_2B[:3], ("alarm_decision", "stays", L)], Outcome.LOCK_STAYS,
     (E.ALARM_STAYS, E.CASE_CLOSED)),
    ("2b", [*REMOVE_2B[:2], ("client_has_lock", "no", P)], Outcome.NO_LOCK_TO_REMOVE,
     (E.CASE_CLOSED,)),
    ("3a", [*INSTALL_3A[:2], ("code_lock", "yes", L)], Outcome.NO_LOCK_CODE_LOCK,
     (E.CASE_CLOSED,)),
    ("3a", [*INSTALL_3A[:3], ("lock_already_installed", "yes", L)], Outcome.ALREADY_INSTALLED,
     (E.KEYS_REGISTERED, E.CASE_CLOSED)),
    ("3a", [*INSTALL_3A[:4], ("decide_lock", "no", L)], Outcome.NO_LOCK_DECIDED,
     (E.KEYS_REGISTERED, E.CASE_CLOSED)),
    ("3b", [*REMOVE_3B[:1], ("home_care_continues", "yes", L)], Outcome.FILE_MOVED,
     (E.FILE_MOVES_TO_HOME_CARE, E.CASE_CLOSED)),
    ("3b", [*REMOVE_3B[:2], ("lock_installed", "no", L)], Outcome.NO_LOCK_TO_REMOVE,
     (E.CASE_CLOSED,)),
])
def test_the_short_ways_out(flow, steps, outcome, last_effects):
    taken = walk(flow, steps, ALL_FACTS)
    assert machine(flow).states[taken[-1].to_state].outcome == outcome
    assert taken[-1].effects == last_effects


def test_2b_without_a_safety_alarm_goes_straight_to_the_removal_job():
    steps = [*REMOVE_2B[:3], ("alarm_decision", "no_alarm", L), ("put_removal_job", None, L)]
    taken = walk("2b", steps, ALL_FACTS)
    assert [s.to_state for s in taken[-2:]] == ["awaiting_all_ended", "removal_job_in_binder"]


# --- errors --------------------------------------------------------------------------------


def test_a_wrong_action_names_the_state_and_what_is_allowed_there():
    with pytest.raises(NotAllowed) as err:
        machine("2a").apply("ordered", "install_lock", None, F, ALL_FACTS)
    e = err.value
    assert (e.flow, e.state, e.action) == (Flow.INSTALL_ASSESSED, "ordered", "install_lock")
    assert [a.name for a in e.allowed] == ["lock_already_installed"]
    assert str(e) == ("2a: 'install_lock' is not allowed in state 'ordered'; allowed there: "
                      "lock_already_installed by provider (yes|no)")
    assert isinstance(e, RoutineError)


def test_a_wrong_role_names_the_role_the_state_and_the_allowed_actions():
    with pytest.raises(WrongRole) as err:
        machine("2b").apply("removal_requested", "alarm_decision", "ends", P)
    e = err.value
    assert e.state == "removal_requested" and e.action == "alarm_decision"
    assert "for the alarm_admin, not the provider" in str(e)
    assert "alarm_decision by alarm_admin (ends|stays|no_alarm)" in str(e)


def test_a_wrong_answer_lists_the_answers():
    with pytest.raises(NotAllowed, match=r"in state 'code_lock_check' takes yes\|no, not 'maybe'"):
        machine("2a").apply("code_lock_check", "code_lock", "maybe", P)
    with pytest.raises(NotAllowed, match="takes no answer, not 'yes'"):
        machine("2a").apply("new", "send_order", "yes", A)
    with pytest.raises(NotAllowed, match=r"takes yes\|no, not None"):
        machine("2a").apply("code_lock_check", "code_lock", None, P)


def test_an_unmet_requirement_names_the_facts_and_what_they_mean():
    facts = {**ALL_FACTS, "keys_exist": False, "job_marked_done": False}
    with pytest.raises(UnmetRequirement) as err:
        machine("2a").apply("installation_booked", "install_lock", None, F, facts)
    e = err.value
    assert e.unmet == ("keys_exist", "job_marked_done")
    assert e.state == "installation_booked" and e.action == "install_lock"
    assert "(2a.7)" in str(e) and FACTS["keys_exist"] in str(e)
    assert [a.name for a in e.allowed] == ["book_installation", "install_lock"]


def test_facts_default_to_unmet():
    with pytest.raises(UnmetRequirement):
        machine("3a").apply("awaiting_keys", "confirm_keys", None, L)
    with pytest.raises(UnmetRequirement, match="all_implementations_ended"):
        machine("3b").apply("awaiting_all_ended", "put_removal_job", None, L,
                            {"all_implementations_ended": False})


def test_a_closed_case_allows_nothing_and_an_unknown_state_is_named():
    m = machine("2b")
    assert m.allowed("removed") == []
    with pytest.raises(NotAllowed, match=r"closed in state 'removed' \(removed\)"):
        m.apply("removed", "remove_lock", None, F, ALL_FACTS)
    with pytest.raises(NotAllowed, match="no state 'limbo'; states: active, cancelled"):
        m.apply("limbo", "remove_lock", None, F)


def test_role_is_checked_before_facts_and_action_before_role():
    with pytest.raises(WrongRole):
        machine("3a").apply("awaiting_keys", "confirm_keys", None, P)
    with pytest.raises(NotAllowed):
        machine("3a").apply("awaiting_keys", "decide_lock", "yes", P)


# --- the tables are whole ------------------------------------------------------------------


def test_every_state_reachable_every_final_state_closes_and_has_an_outcome():
    for m in MACHINES.values():
        assert m.start in m.states
        for s in m.states.values():
            assert isinstance(s, State) and s.description
            assert s.terminal == (s.outcome is not None) == (m.allowed(s.name) == [])
            if s.outcome is not None:
                assert Outcome(s.outcome)
        for t in m.transitions():
            assert isinstance(t, Transition)
            assert (Effect.CASE_CLOSED in t.effects) == m.states[t.next_state].terminal


def test_every_transition_names_its_seed_step():
    for f, m in MACHINES.items():
        for t in m.transitions():
            assert re.fullmatch(rf"{f.value}\.\d+(-{f.value}\.\d+)?", t.seed), t
            action = m.actions[t.action]
            assert isinstance(action, Action)
            assert action.seed.startswith(t.seed.split("-")[-1] + " • "), (t, action.seed)
            assert action.text and action.role in Role


def test_every_action_answer_has_its_branch():
    for m in MACHINES.values():
        for state in m.states:
            for action in m.allowed(state):
                for answer in action.answers or (None,):
                    assert m.transition(state, action.name, answer).state == state


def test_a_broken_table_is_refused_when_built():
    m = machine("3a")
    bad = [*m.transitions(), Transition("no_lock_decided", "decide_lock", "yes", "new")]
    with pytest.raises(ValueError, match="final but has a way out"):
        Machine(m.flow, m.start, m.states, m.actions, tuple(bad))
    missing_answer = [t for t in m.transitions() if (t.action, t.answer) != ("code_lock", "no")]
    with pytest.raises(ValueError, match="not every answer has a branch"):
        Machine(m.flow, m.start, m.states, m.actions, tuple(missing_answer))


def test_outcomes_map_onto_the_reference_lock_statuses():
    assert set(LOCK_STATUS_AFTER) == set(Outcome)
    assert {v for v in LOCK_STATUS_AFTER.values() if v} <= set(reference.LOCK_STATUSES)


def test_swedish_names_for_display():
    assert Role.PROVIDER.name_sv == "Hemtjänstutförare" and Role.FITTER.name_sv == "Montör"
    assert Flow.REMOVE_ALARM_ONLY.title_sv == "Nedmontering ej biståndsbedömd insats"
    assert set(texts.ROLE_NAMES_SV) == {r.value for r in Role}
    assert set(texts.FLOW_TITLES_SV) == {f.value for f in Flow}
    assert set(texts.CHECKPOINTS_SV) == set(FACTS)


def test_machine_takes_the_flow_or_its_code():
    assert machine("2b") is machine(Flow.REMOVE_ASSESSED) is MACHINES[Flow.REMOVE_ASSESSED]
    assert walk("3a", INSTALL_3A[:1])[0].to_state == "awaiting_keys"
    assert walk("3a", [("code_lock", "yes", L)], start="code_lock_check")[0].to_state == \
        "no_lock_code_lock"


# --- what no sequence of allowed actions may reach ------------------------------------------


@dataclass
class World:
    """What the machine cannot see, kept truthfully: the facts come from here."""

    implementations: set[str]
    keys_exist: bool
    keys_on_their_way: bool  # False: the keys never turn up in this run
    alarm_keys_with_client: bool = False
    ticks: dict[str, bool] = field(default_factory=dict)

    def facts(self) -> dict[str, bool]:
        return {**self.ticks, "keys_exist": self.keys_exist,
                "all_implementations_ended": not self.implementations}


STARTING_IMPLEMENTATIONS = {
    Flow.INSTALL_ASSESSED: {"home_care"}, Flow.INSTALL_ALARM_ONLY: {"alarm"},
    Flow.REMOVE_ASSESSED: {"home_care"}, Flow.REMOVE_ALARM_ONLY: {"alarm"},
}
ENDED_BY = {"end_implementation": "home_care", "end_alarm_implementation": "alarm"}
#: What whoever takes a step ticks there and then (the fitter's checkpoints, the
#: administrator's register checks): true or not at that moment.
TICKS = sorted(set(FACTS) - {"keys_exist", "all_implementations_ended"})


def outside_events(world: World, data: st.DataObject) -> None:
    """Between steps: keys may turn up, other services may end; the next step's ticks."""
    if world.keys_on_their_way and data.draw(st.integers(0, 3), "keys turn up") == 0:
        world.keys_exist = True
    if world.implementations and data.draw(st.integers(0, 3), "another one ends") == 0:
        world.implementations.discard(data.draw(st.sampled_from(sorted(world.implementations))))
    mostly = st.sampled_from([True, True, True, False])  # most checkpoints get ticked
    world.ticks = data.draw(st.fixed_dictionaries({f: mostly for f in TICKS}), "ticks")


@settings(max_examples=600, deadline=None)
@given(flow=st.sampled_from(list(Flow)), data=st.data())
def test_no_sequence_of_allowed_actions_reaches_what_the_routine_forbids(flow, data):
    m = machine(flow)
    extra = data.draw(st.sets(st.sampled_from(["home_care", "alarm", "night_help"])), "others")
    world = World(STARTING_IMPLEMENTATIONS[flow] | extra, keys_exist=data.draw(st.booleans()),
                  keys_on_their_way=data.draw(st.booleans()))
    state, taken = m.start, list[tuple[Step, dict[str, bool]]]()
    for _ in range(60):
        allowed = m.allowed(state)
        if not allowed:
            break
        outside_events(world, data)
        action = data.draw(st.sampled_from(allowed) | st.sampled_from(allowed)
                           | st.sampled_from(list(m.actions.values())))
        answer = data.draw(st.sampled_from(action.answers or (None,)))
        role = data.draw(st.just(action.role) | st.sampled_from(list(Role)))
        facts = world.facts()
        try:
            step = m.apply(state, action.name, answer, role, facts)
        except NotAllowed as e:
            assert action not in allowed and e.state == state
            assert list(e.allowed) == allowed
            continue
        except WrongRole as e:
            assert role != action.role and e.state == state
            continue
        except UnmetRequirement as e:
            assert e.unmet and not any(facts[f] for f in e.unmet)
            continue
        assert action in allowed and role == action.role
        # the world follows the step
        if action.name in ENDED_BY:
            world.implementations.discard(ENDED_BY[action.name])
        if Effect.LOCK_REMOVED in step.effects and facts["keys_returned_receipt_signed"]:
            world.alarm_keys_with_client = True
        seen = {e for s, _ in taken for e in s.effects}

        if Effect.BINDER_REMOVAL_JOB in step.effects:
            # never a removal job while an implementation is still active
            assert not world.implementations
            assert Effect.IMPLEMENTATION_ENDED in seen
            assert Effect.ALARM_STAYS not in seen
        if Effect.BINDER_INSTALL_JOB in step.effects and flow is Flow.INSTALL_ALARM_ONLY:
            # never an install job in 3a before the keys exist (and are registered)
            assert world.keys_exist and Effect.KEYS_REGISTERED in step.effects
            assert any(s.action == "confirm_keys" and f["keys_exist"] for s, f in taken)
        if Effect.LOCK_INSTALLED in step.effects:
            assert world.keys_exist and Effect.BOOKING in seen
            assert Effect.BINDER_INSTALL_JOB in seen
        if Effect.CASE_CLOSED in step.effects and Effect.LOCK_REMOVED in seen:
            # never closed with the alarm keys unreturned after a removal
            assert Effect.KEY_RECEIPT in seen and world.alarm_keys_with_client
        if step.documentation is not None:
            assert step.documentation in texts.DOCUMENTATION_TEXTS
        assert Effect.CASE_CLOSED not in seen
        taken.append((step, facts))
        state = step.to_state
    event(f"{flow.value} ended in {state}")
    assert [s.to_state for s, _ in taken[-1:]] in ([], [state])


# Each forbidden thing, and the fact that guards it: (effect, flow or None for all, fact).
GUARDS = [
    (Effect.BINDER_REMOVAL_JOB, None, "all_implementations_ended"),
    (Effect.LOCK_INSTALLED, None, "keys_exist"),
    (Effect.LOCK_REMOVED, None, "keys_returned_receipt_signed"),
    (Effect.KEY_RECEIPT, None, "keys_returned_receipt_signed"),
]


@pytest.mark.parametrize("flow", list(Flow))
def test_every_guarded_step_is_refused_without_its_fact_from_every_state(flow):
    """Exhaustively: each guarded effect, in each state, with each fact withheld."""
    m = machine(flow)
    for t in m.transitions():
        role = m.actions[t.action].role
        for effect, only, fact in GUARDS:
            if effect in t.effects and only in (None, flow):
                with pytest.raises(UnmetRequirement):
                    m.apply(t.state, t.action, t.answer, role, {**ALL_FACTS, fact: False})
        for fact in t.requires:
            with pytest.raises(UnmetRequirement):
                m.apply(t.state, t.action, t.answer, role, {**ALL_FACTS, fact: False})
        assert m.apply(t.state, t.action, t.answer, role, ALL_FACTS).to_state == t.next_state
    if flow is Flow.INSTALL_ALARM_ONLY:
        before_keys = {"new", "awaiting_keys"}
        assert all(Effect.BINDER_INSTALL_JOB not in t.effects for t in m.transitions()
                   if t.state in before_keys)
        assert [t.requires for t in m.transitions() if t.state == "awaiting_keys"] == [
            ("keys_exist",)]
