"""The routine's commands of nyckelfri-central through click's runner, on SQLite and
PostgreSQL: help on every command, a 2a walk, ``--json`` that parses, exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from central.cases.errors import AccessDenied, DoubleBooking
from central.cli import EXIT_DATA, EXIT_DATABASE, EXIT_REFUSED, EXIT_USAGE, main
from central.store import CentralStore
from central.web.accounts import check_password
from tests.central.test_cli import UNREACHABLE_PG, all_commands

NORD, ALARM, ORDERING = "hemtjanst-nord", "larmgruppen", "bestallarenhet-1"
PRINCIPALS = {"handlaggare-1": ("assessor", ORDERING), "utforare-nord": ("provider", NORD),
              "larm-1": ("alarm_admin", ALARM), "montor-1": ("fitter", ALARM),
              "montor-2": ("fitter", ALARM), "agent-1": ("device", None)}
ROUTINE_GROUPS = ("principal", "case", "client", "inbox", "binder", "keys", "tags", "lock",
                  "report")
ROUTINE_COMMANDS = ("schedule", "alerts")
CODE_LOCK = "Har kodlås på ytterdörr. Digitalt lås kan inte installeras."

Cli = Callable[..., Result]


def routine_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    return [(path, cmd) for path, cmd in all_commands(main)
            if path[0] in ROUTINE_GROUPS + ROUTINE_COMMANDS]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner, database_url: str) -> Cli:
    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--database", database_url, *args])
    return invoke


@pytest.fixture
def enrolled(cli: Cli) -> Cli:
    """``cli`` with one principal of each role enrolled, and client K-1 pending a lock."""
    for name, (role, unit) in PRINCIPALS.items():
        args = ["principal", "add", name, "--role", role, "--json"]
        result = cli(*args, *(["--unit", unit] if unit else []))
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert (data["name"], data["role"], data["unit"]) == (name, role, unit)
        assert len(data["token"]) >= 40
    for ref in ("K-1", "K-2"):
        assert cli("reference", "set", "client", ref, "--data",
                   json.dumps({"ref": ref, "lock_status": "pending"})).exit_code == 0
    return cli


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [p for p, _ in routine_commands()], ids=" ".join)
def test_every_routine_command_has_help_and_json(runner: CliRunner,
                                                 path: tuple[str, ...]) -> None:
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd = dict(all_commands(main))[path]
    assert cmd.help and len(cmd.help.strip()) > 10, f"{' '.join(path)} lacks help text"
    if not isinstance(cmd, click.Group):
        options = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert "--json" in options, f"{' '.join(path)} has no --json"
        if path[0] != "principal":
            assert "--as" in options, f"{' '.join(path)} has no --as"


def test_the_routine_groups_are_registered_on_main() -> None:
    assert set(ROUTINE_GROUPS + ROUTINE_COMMANDS) <= set(main.commands)
    assert {p for p, _ in routine_commands()} >= {
        ("case", "open"), ("case", "list"), ("case", "show"), ("case", "act"),
        ("client", "docs"), ("client", "implementation", "start"),
        ("client", "implementation", "end"), ("inbox", "list"), ("inbox", "handle"),
        ("binder", "list"), ("binder", "book"), ("keys", "register"), ("keys", "list"),
        ("keys", "return"), ("keys", "unbound"), ("keys", "emergency"), ("tags", "issue"),
        ("tags", "down"), ("tags", "stock"), ("report", "pending-installs"),
        ("report", "removals"), ("report", "client-status"), ("report", "visits-by-method"),
        ("principal", "add"), ("principal", "list")}


def test_main_help_names_the_acting_principal(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "--as NAME" in result.output
    # refusals exit 4: the errors carry it (central.errors), not a map of HTTP statuses
    assert AccessDenied.exit_code == DoubleBooking.exit_code == EXIT_REFUSED == 4


# --- a 2a walk -------------------------------------------------------------------------------


def test_2a_walk_through_the_cli(enrolled: Cli) -> None:
    cli = enrolled
    ok(cli("--as", "utforare-nord", "client", "implementation", "start", "K-1", "home_care",
           "--unit", NORD, "--on", "2026-11-02"))
    stock = as_json(cli("tags", "stock", "--add", "2", "--as", "utforare-nord", "--json"))
    assert (stock["provider_unit"], stock["count"]) == (NORD, 2)
    tag = as_json(cli("tags", "issue", "04A1B2C3D4E5F6", "K-1", "--as", "utforare-nord",
                      "--json"))["tag"]
    assert (tag["state"], tag["provider_unit"]) == ("issued", NORD)

    opened = as_json(cli("--as", "handlaggare-1", "case", "open", "2a", "K-1",
                         "--provider-unit", NORD, "--json"))["case"]
    case_id = str(opened["id"])
    assert [a["name"] for a in opened["allowed"]] == ["send_order"]
    ok(cli("--as", "handlaggare-1", "case", "act", case_id, "send_order"))
    for action in ("lock_already_installed", "code_lock", "home_care_only_opens_door",
                   "client_refuses"):
        ok(cli("--as", "utforare-nord", "case", "act", case_id, action, "no"))
    ok(cli("--as", "utforare-nord", "keys", "register", "K-1", "home_care_provider", "N-1"))
    step = as_json(cli("--as", "utforare-nord", "case", "act", case_id, "request_lock",
                       "keys_exist", "--json"))
    assert step["step"]["to_state"] == "lock_requested"
    assert [a["name"] for a in step["case"]["allowed"]] == ["put_install_job"]

    [message] = as_json(cli("--as", "larm-1", "inbox", "list", "--json"))["messages"]
    assert (message["case_id"], message["keys_exist"]) == (opened["id"], True)
    ok(cli("--as", "larm-1", "case", "act", case_id, "put_install_job"))
    assert as_json(cli("--as", "larm-1", "inbox", "list", "--json"))["messages"] == []
    assert "the inbox is empty" in ok(cli("--as", "larm-1", "inbox", "list")).output

    [job] = as_json(cli("--as", "montor-1", "binder", "list", "--json"))["jobs"]
    assert (job["case_id"], job["kind"], job["booking"]) == (opened["id"], "install", None)
    booked = as_json(cli("--as", "montor-1", "binder", "book", str(job["id"]), "--fitter",
                         "montor-1", "--start", "2026-12-07T09:00", "--end",
                         "2026-12-07T10:00", "--json"))["booking"]
    assert booked["start"] == "2026-12-07T08:00:00Z"  # local time (CET) without an offset
    schedule = as_json(cli("--as", "larm-1", "schedule", "--fitter", "montor-1", "--day",
                           "2026-12-07", "--json"))
    assert schedule["bookings"] == [booked]
    assert [j["id"] for j in as_json(cli("--as", "montor-1", "binder", "jobs",
                                         "--json"))["jobs"]] == [job["id"]]
    ok(cli("--as", "montor-1", "lock", "bind", "PH-1", "K-1"))
    installed = ok(cli("--as", "montor-1", "case", "act", case_id, "install_lock",
                       "--check", "knob_labelled_with_key_number", "--check",
                       "job_marked_done"))
    assert "-> installed" in installed.output and "closed: installed" in installed.output

    shown = as_json(cli("--as", "utforare-nord", "case", "show", case_id, "--json"))["case"]
    assert (shown["state"], shown["open"], shown["allowed"]) == ("installed", False, [])
    assert [s["action"] for s in shown["steps"]] == [
        "send_order", "lock_already_installed", "code_lock", "home_care_only_opens_door",
        "client_refuses", "request_lock", "put_install_job", "book_installation",
        "install_lock"]
    people = ok(cli("--as", "utforare-nord", "case", "show", case_id)).output
    assert "state: installed" in people and "by montor-1 (fitter)" in people

    [status] = as_json(cli("--as", "utforare-nord", "report", "client-status", "--client",
                           "K-1", "--json"))["clients"]
    assert status["lock_status"] == "installed"
    assert [t["state"] for t in status["tags"]] == ["due_down"]
    down = as_json(cli("--as", "utforare-nord", "tags", "down", "04A1B2C3D4E5F6", "--json"))
    assert down["tag"]["state"] == "taken_down"
    assert as_json(cli("--as", "larm-1", "report", "pending-installs",
                       "--json"))["installs"] == []
    listed = as_json(cli("case", "list", "--as", "utforare-nord", "--json"))["cases"]
    assert [c["id"] for c in listed] == [opened["id"]]


def test_client_docs_prints_the_verbatim_text(enrolled: Cli) -> None:
    cli = enrolled
    case_id = str(as_json(cli("--as", "handlaggare-1", "case", "open", "2a", "K-2",
                              "--provider-unit", NORD, "--json"))["case"]["id"])
    ok(cli("--as", "handlaggare-1", "case", "act", case_id, "send_order"))
    ok(cli("--as", "utforare-nord", "case", "act", case_id, "lock_already_installed", "no"))
    step = ok(cli("--as", "utforare-nord", "case", "act", case_id, "code_lock", "yes"))
    assert CODE_LOCK in step.output.splitlines()
    docs = ok(cli("--as", "utforare-nord", "client", "docs", "K-2"))
    assert CODE_LOCK in docs.output.splitlines()  # a line of its own, to paste
    assert "Personuppgifter, övrig information" in docs.output
    data = as_json(cli("--as", "utforare-nord", "client", "docs", "K-2", "--json"))
    assert [d["text"] for d in data["texts"]] == [CODE_LOCK]


def test_json_parses_for_the_reading_commands(enrolled: Cli) -> None:
    cli = enrolled
    ok(cli("--as", "larm-1", "client", "implementation", "start", "K-1", "safety_alarm",
           "--unit", ALARM, "--on", "2026-11-02"))
    ok(cli("--as", "larm-1", "keys", "register", "K-1", "alarm_group", "A-7"))
    for args in (("alerts", "--today", "2026-11-30"), ("report", "removals"),
                 ("report", "visits-by-method", "--start", "2026-11-01"),
                 ("report", "client-status"), ("keys", "list", "K-1"),
                 ("keys", "unbound", "A-7"), ("client", "implementation", "list", "K-1"),
                 ("binder", "list", "--all"), ("schedule",), ("case", "list"),
                 ("tags", "stock", NORD), ("inbox", "list", "--all")):
        data = as_json(cli("--as", "larm-1", *args, "--json"))
        assert data["server_time"], args
        ok(cli("--as", "larm-1", *args))  # and the same for people
    assert as_json(cli("--as", "larm-1", "keys", "unbound", "A-7", "--json"))["unbound"] is False
    keys = as_json(cli("--as", "larm-1", "keys", "list", "K-1", "--json"))
    assert keys["required"]["alarm_group"] == 1 and keys["held"][0]["key_number"] == "A-7"
    receipt = as_json(cli("--as", "larm-1", "keys", "return", "K-1", "alarm_group",
                          "--signed-by", "Brukare A", "--json"))["receipt"]
    assert receipt["key_numbers"] == ["A-7"]
    use = as_json(cli("--as", "larm-1", "keys", "emergency", "K-1", "alarm_group", "--reason",
                      "Larm utan svar", "--json"))["key_use"]
    assert use["reason"] == "no_digital_lock"  # K-1's lock is pending: keys are the way in
    principals = as_json(cli("principal", "list", "--json"))
    assert {(p["name"], p["role"], p["unit"]) for p in principals} == {
        (name, role, unit) for name, (role, unit) in PRINCIPALS.items()}


# --- exit codes -------------------------------------------------------------------------------


def test_a_routine_refusal_exits_4_with_the_state_and_allowed_actions(enrolled: Cli) -> None:
    cli = enrolled
    case_id = str(as_json(cli("--as", "handlaggare-1", "case", "open", "2a", "K-1",
                              "--provider-unit", NORD, "--json"))["case"]["id"])
    wrong = cli("--as", "handlaggare-1", "case", "act", case_id, "install_lock")
    assert wrong.exit_code == EXIT_REFUSED
    assert "state: new" in wrong.output and "send_order by assessor" in wrong.output
    assert "Traceback" not in wrong.output
    role = cli("--as", "utforare-nord", "case", "act", case_id, "send_order")
    assert role.exit_code == EXIT_REFUSED and "for the assessor" in role.output
    device = cli("--as", "agent-1", "case", "list")
    assert device.exit_code == EXIT_REFUSED and "no part in the routine" in device.output


def test_a_double_booking_exits_4(enrolled: Cli) -> None:
    cli = enrolled
    jobs = []
    for client in ("K-1", "K-2"):
        case_id = str(as_json(cli("--as", "larm-1", "case", "open", "3a", client,
                                  "--json"))["case"]["id"])
        ok(cli("--as", "larm-1", "case", "act", case_id, "receive_request"))
        ok(cli("--as", "larm-1", "keys", "register", client, "alarm_group", f"A-{client}"))
        for action, answer in (("confirm_keys", None), ("code_lock", "no"),
                               ("lock_already_installed", "no"), ("decide_lock", "yes")):
            ok(cli("--as", "larm-1", "case", "act", case_id, action,
                   *([answer] if answer else [])))
        jobs.append(str(as_json(cli("--as", "larm-1", "binder", "list",
                                    "--json"))["jobs"][-1]["id"]))
    ok(cli("--as", "montor-1", "binder", "book", jobs[0], "--fitter", "montor-1", "--start",
           "2026-12-07T09:00+01:00", "--end", "2026-12-07T10:00+01:00"))
    clash = cli("--as", "montor-1", "binder", "book", jobs[1], "--fitter", "montor-1",
                "--start", "2026-12-07T09:30+01:00", "--end", "2026-12-07T10:30+01:00")
    assert clash.exit_code == EXIT_REFUSED and "already booked" in clash.output
    other = cli("--as", "montor-1", "binder", "book", jobs[1], "--fitter", "montor-2",
                "--start", "2026-12-07T09:30+01:00", "--end", "2026-12-07T10:30+01:00")
    assert other.exit_code == EXIT_REFUSED and "only for themself" in other.output
    ok(cli("--as", "montor-2", "binder", "book", jobs[1], "--fitter", "montor-2", "--start",
           "2026-12-07T09:30+01:00", "--end", "2026-12-07T10:30+01:00"))


def test_data_and_usage_errors_exit_5_and_2(enrolled: Cli) -> None:
    cli = enrolled
    unknown = cli("--as", "larm-1", "case", "show", "999")
    assert unknown.exit_code == EXIT_DATA and "no case 999" in unknown.output
    nobody = cli("--as", "nobody", "case", "list")
    assert nobody.exit_code == EXIT_DATA and "nobody" in nobody.output
    anonymous = cli("case", "list")
    assert anonymous.exit_code == EXIT_USAGE and "--as NAME" in anonymous.output
    bad_flow = cli("--as", "larm-1", "case", "open", "9z", "K-1")
    assert bad_flow.exit_code == EXIT_USAGE
    bad_time = cli("--as", "montor-1", "binder", "book", "1", "--fitter", "montor-1",
                   "--start", "tomorrow", "--end", "later")
    assert bad_time.exit_code == EXIT_USAGE and "2026-12-07T09:00" in bad_time.output
    bad_unit = cli("principal", "add", "x", "--role", "provider")
    assert bad_unit.exit_code == EXIT_DATA and "unit" in bad_unit.output
    # The command's --as wins over the one before it.
    assert cli("--as", "agent-1", "case", "list", "--as", "larm-1").exit_code == 0


def test_unreachable_database_exits_6(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--database", UNREACHABLE_PG, "--as", "larm-1", "case",
                                  "list"])
    assert result.exit_code == EXIT_DATABASE and "unavailable" in result.output
    assert "Traceback" not in result.output


def test_principal_password_sets_the_web_sign_in(runner: CliRunner, enrolled: Cli,
                                                 database_url: str) -> None:
    def password(name: str, text: str) -> Result:
        return runner.invoke(main, ["--database", database_url, "principal", "password", name,
                                    "--password-stdin", "--json"], input=text + "\n")

    assert as_json(password("larm-1", "tre ord och en till")) == {
        "name": "larm-1", "password_set": True}
    store = CentralStore.open(database_url)
    try:
        signed_in = check_password(store, "larm-1", "tre ord och en till")
        assert signed_in is not None and signed_in.role == "alarm_admin"
        assert check_password(store, "larm-1", "fel lösenord här") is None
    finally:
        store.close()
    short = password("larm-1", "kort")
    assert short.exit_code == EXIT_DATA and "at least 12 characters" in short.output
    device = password("agent-1", "tre ord och en till")
    assert device.exit_code == EXIT_DATA and "Traceback" not in device.output
    nobody = password("nobody", "tre ord och en till")
    assert nobody.exit_code == EXIT_DATA and "nobody" in nobody.output
