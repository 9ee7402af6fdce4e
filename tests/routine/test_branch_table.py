"""docs/routine-branches.md agrees with the routine's code, row by row.

Each flow row is driven: a path from the flow's start to the row's state is found
by breadth-first search over the machine's allowed actions, taken with the facts
it needs, and the row's step is then taken and compared with the row. Every
transition of every machine must have its row, and every row its transition. The
key-set, key-use, tag, deadline and alert rows are checked against their modules.

The flow tables are derived from the machines; after changing a flow, print them
with ``python -m tests.routine.test_branch_table`` and paste them into the doc.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from pathlib import Path

import pytest

from routine import deadlines, keys, tags
from routine.flows import (
    FACTS,
    MACHINES,
    Flow,
    Machine,
    Role,
    Transition,
    UnmetRequirement,
    machine,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "routine-branches.md"
NONE = "—"
FLOW_COLUMNS = ("id", "flow", "step", "seed (quoted)", "from state", "action", "answer",
                "next state", "role", "requires", "documentation", "effects")


# --- the doc -------------------------------------------------------------------------------


def cell(text: str) -> str:
    return text.strip().strip("`").strip()


def parse_tables(text: str) -> dict[str, dict[str, str]]:
    """Every table row of the doc, by its id (first column), as {column: cell}."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell(c) for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif set("".join(cells)) <= set("-: "):
            continue
        else:
            assert len(cells) == len(header), f"row has {len(cells)} cells: {line}"
            row = dict(zip(header, cells, strict=True))
            assert row["id"] not in rows, f"id {row['id']} twice"
            rows[row["id"]] = row
    return rows


ROWS = parse_tables(DOC.read_text(encoding="utf-8"))


def rows_of(prefix: str) -> list[str]:
    return sorted(i for i in ROWS if i.startswith(prefix))


def listed(text: str) -> tuple[str, ...]:
    return () if text == NONE else tuple(cell(p) for p in text.split(","))


# --- flows ---------------------------------------------------------------------------------


def branch_id(flow: Flow, t: Transition) -> str:
    return f"{flow.value}:{t.state}:{t.action}" + (f"={t.answer}" if t.answer else "")


def path_to(m: Machine, state: str) -> list[Transition]:
    """Shortest list of transitions from the start to ``state``, via allowed actions only."""
    came: dict[str, list[Transition]] = {m.start: []}
    queue = deque([m.start])
    while queue:
        here = queue.popleft()
        if here == state:
            return came[here]
        for action in m.allowed(here):
            for answer in action.answers or (None,):
                t = m.transition(here, action.name, answer)
                if t.next_state not in came:
                    came[t.next_state] = [*came[here], t]
                    queue.append(t.next_state)
    raise AssertionError(f"{m.flow}: {state} unreachable")


def render_flow_table(flow: Flow) -> str:
    m = machine(flow)
    lines = ["| " + " | ".join(FLOW_COLUMNS) + " |", "|" + "---|" * len(FLOW_COLUMNS)]
    for t in m.transitions():
        action = m.actions[t.action]
        values = [f"`{branch_id(flow, t)}`", flow.value, t.seed, action.seed.split(" • ", 1)[1],
                  f"`{t.state}`", f"`{t.action}`", f"`{t.answer}`" if t.answer else NONE,
                  f"`{t.next_state}`", action.role.value,
                  ", ".join(t.requires) or NONE, t.documentation or NONE,
                  ", ".join(e.value for e in t.effects) or NONE]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


FLOW_ROWS = [branch_id(f, t) for f, m in MACHINES.items() for t in m.transitions()]


def test_every_transition_has_its_row_and_every_row_its_transition():
    documented = set(rows_of("2")) | set(rows_of("3"))
    assert sorted(documented) == sorted(FLOW_ROWS)
    assert len(FLOW_ROWS) == len(set(FLOW_ROWS))


@pytest.mark.parametrize("row_id", FLOW_ROWS)
def test_flow_row_matches_the_machine(row_id):
    row = ROWS[row_id]
    m = machine(row["flow"])
    path = path_to(m, row["from state"])
    requires = listed(row["requires"])
    facts = {f: True for t in path for f in t.requires} | dict.fromkeys(requires, True)
    state = m.start
    for t in path:
        state = m.apply(state, t.action, t.answer, m.actions[t.action].role, facts).to_state
    assert state == row["from state"]

    answer = None if row["answer"] == NONE else row["answer"]
    assert row_id == branch_id(m.flow, m.transition(state, row["action"], answer))
    assert row["action"] in [a.name for a in m.allowed(state)]
    step = m.apply(state, row["action"], answer, Role(row["role"]), facts)
    assert step.to_state == row["next state"]
    assert step.documentation == (None if row["documentation"] == NONE else row["documentation"])
    assert tuple(e.value for e in step.effects) == listed(row["effects"])
    assert step.seed == row["step"]
    assert m.actions[row["action"]].seed.endswith(f" • {row['seed (quoted)']}")
    assert m.transition(state, row["action"], answer).requires == requires
    assert set(requires) <= set(FACTS)
    for missing in requires:
        with pytest.raises(UnmetRequirement) as err:
            m.apply(state, row["action"], answer, Role(row["role"]),
                    {**facts, missing: False})
        assert err.value.unmet == (missing,)


# --- key sets and key use (section 4) ------------------------------------------------------

KEY_ROWS = rows_of("keys:")
KEY_USE_ROWS = rows_of("key-use:")


def yes(text: str) -> bool:
    assert text in ("yes", "no"), text
    return text == "yes"


def policy(text: str) -> keys.KeyPolicy:
    if text == "default":
        return keys.KeyPolicy()
    fields: dict[str, object] = {}
    for part in text.split(","):
        name, value = (p.strip() for p in part.split("="))
        fields[name] = {"True": True, "False": False}.get(value, value)
    return keys.KeyPolicy(**fields)  # type: ignore[arg-type]


def test_key_tables_are_there():
    assert len(KEY_ROWS) >= 8 and len(KEY_USE_ROWS) == 4


@pytest.mark.parametrize("row_id", KEY_ROWS)
def test_key_set_row_matches_the_rule(row_id):
    row = ROWS[row_id]
    sets = keys.required_key_sets(
        has_home_care=yes(row["home care"]), has_safety_alarm=yes(row["safety alarm"]),
        opens_door_themself=yes(row["opens door themself"]),
        other_agreement=yes(row["other agreement"]), code_lock=yes(row["code lock"]),
        night_help=yes(row["night help"]), policy=policy(row["policy"]))
    assert sets == {keys.KeyUnit.HOME_CARE_PROVIDER: int(row["home care provider"]),
                    keys.KeyUnit.ALARM_GROUP: int(row["alarm group"]),
                    keys.KeyUnit.NIGHT_GROUP: int(row["night group"])}


@pytest.mark.parametrize("row_id", KEY_USE_ROWS)
def test_key_use_row_matches_the_rule(row_id):
    row = ROWS[row_id]
    use = keys.classify_key_use("K-1", keys.KeyUnit.HOME_CARE_PROVIDER,
                                lock_installed=yes(row["lock installed"]),
                                lock_available=yes(row["lock available"]),
                                emergency=yes(row["emergency"]), note="fell, no answer")
    assert use.reason == keys.KeyUseReason(row["reason"])
    assert use.justified == yes(row["justified"])
    assert (deadlines.physical_key_alert(use) is None) == use.justified


# --- NFC tags (section 5) ------------------------------------------------------------------

TAG_ROWS = rows_of("tag:")


def test_every_tag_transition_has_its_row():
    assert sorted(TAG_ROWS) == sorted(f"tag:{s.value}:{e.value}" for s, e in tags.TRANSITIONS)


@pytest.mark.parametrize("row_id", TAG_ROWS)
def test_tag_row_matches_the_lifecycle(row_id):
    row = ROWS[row_id]
    state, event = tags.TagState(row["from"]), tags.TagEvent(row["event"])
    assert tags.next_state(state, event) == tags.TagState(row["to"])


# --- deadlines and alerts ------------------------------------------------------------------

DEADLINE_ROWS = rows_of("deadline:")
ALERT_ROWS = rows_of("alert:")


@pytest.mark.parametrize("row_id", DEADLINE_ROWS)
def test_deadline_row_matches_the_constant(row_id):
    row = ROWS[row_id]
    value = getattr(deadlines, row["constant"])
    if row["unit"] == "hours":
        assert value == timedelta(hours=int(row["value"]))
    else:
        assert value == int(row["value"])


def test_every_alert_kind_has_its_row():
    assert sorted(ROWS[i]["alert kind"] for i in ALERT_ROWS) == sorted(deadlines.AlertKind)


@pytest.mark.parametrize("row_id", ALERT_ROWS)
def test_alert_row_matches_the_code(row_id):
    row = ROWS[row_id]
    kind = deadlines.AlertKind(row["alert kind"])
    assert deadlines.SEVERITY[kind] == deadlines.Severity(row["severity"])
    assert callable(getattr(deadlines, row["computed by"]))


if __name__ == "__main__":
    for f in Flow:
        print(f"### {f.value}: {f.title_sv}\n\n{render_flow_table(f)}\n")
