"""The routine over the centre's HTTP API, served by uvicorn on 127.0.0.1, over real HTTP.

Every flow (2a, 2b, 3a, 3b) is walked to its end with the tokens of principals of the
right role and unit; the verbatim documentation texts appear in /documentation; a wrong
role is a 403 with the reason, a wrong action a 409 naming the state and the actions
allowed there, a double booking a 409. Every test runs on SQLite and on PostgreSQL
(``database_url`` of conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from central.api import create_app
from central.http.problems import RoutineProblem
from central.server import run_in_thread
from central.store import CentralStore
from routine import texts
from routine.deadlines import removal_due
from sync.protocol import PROTOCOL_HEADER, ProblemDetail
from tests.central.conftest import CENTRE_T0, SteppingClock

HTTP_TIMEOUT_S = 10.0
NORD, SYD, ALARM, ORDERING = "hemtjanst-nord", "hemtjanst-syd", "larmgruppen", "bestallarenhet-1"
SERVICES_FROM = date(2026, 11, 2)
FIRST_SLOT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
INSTALL_CHECKS = ["knob_labelled_with_key_number", "job_marked_done"]
REMOVAL_CHECKS = ["door_restored_with_original_knob", "job_marked_done"]
# name -> (role, unit)
PRINCIPALS = {
    "office": ("admin", None),
    "assessor": ("assessor", ORDERING),
    "provider": ("provider", NORD),
    "other_provider": ("provider", SYD),
    "alarm_admin": ("alarm_admin", ALARM),
    "fitter": ("fitter", ALARM),
    "agent": ("device", None),
}
# The seed's texts, spelled out here so that neither side can drift (2a.3).
CODE_LOCK = "Har kodlås på ytterdörr. Digitalt lås kan inte installeras."
OPENS_DOOR = "Öppnar dörren själv vid hemtjänstinsatser. Har inget digitalt lås."
AGREED = "Överenskommet med biståndshandläggare att digitalt lås inte ska installeras."


@dataclass
class Routine:
    """The centre on loopback, and a token for each principal of PRINCIPALS."""

    http: httpx.Client
    store: CentralStore
    clock: SteppingClock
    tokens: dict[str, str]
    _slots: int = 0
    _keys: int = 0
    cases: dict[str, int] = field(default_factory=dict)

    def call(self, who: str, method: str, path: str, body: Any = None, *,
             expect: int = 200, **params: Any) -> Any:
        headers = {PROTOCOL_HEADER: "1", "Authorization": f"Bearer {self.tokens[who]}"}
        response = self.http.request(method, path, json=body, headers=headers,
                                     params=params or None)
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response.json()

    def get(self, who: str, path: str, *, expect: int = 200, **params: Any) -> Any:
        return self.call(who, "GET", path, expect=expect, **params)

    def post(self, who: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        return self.call(who, "POST", path, body, expect=expect)

    # --- the scene ---------------------------------------------------------------------

    def client(self, ref: str, lock_status: str = "pending") -> str:
        self.call("office", "PUT", f"/v1/admin/reference/client/{ref}",
                  {"ref": ref, "lock_status": lock_status})
        return ref

    def service(self, client: str, kind: str) -> dict[str, Any]:
        who, unit = ("provider", NORD) if kind == "home_care" else ("alarm_admin", ALARM)
        answer = self.post(who, f"/v1/clients/{client}/implementations",
                           {"kind": kind, "unit": unit,
                            "started_on": SERVICES_FROM.isoformat()}, expect=201)
        return answer["implementation"]

    def keys(self, client: str, unit: str) -> str:
        self._keys += 1
        number = f"N-{self._keys:04d}"
        who = "provider" if unit == "home_care_provider" else "alarm_admin"
        answer = self.post(who, f"/v1/clients/{client}/keys",
                           {"unit": unit, "key_number": number}, expect=201)
        assert answer["key_set"]["bound"] and answer["key_set"]["key_number"] == number
        return number

    def bind(self, client: str) -> None:
        answer = self.post("fitter", f"/v1/locks/PH-{client}/bind", {"client_ref": client})
        assert answer["client_ref"] == client

    def installed(self, client: str, *kinds: str) -> str:
        """A client whose lock is installed and bound, services running, keys held."""
        self.client(client, "installed")
        self.bind(client)
        for kind in kinds:
            self.service(client, kind)
            self.keys(client, "home_care_provider" if kind == "home_care" else "alarm_group")
        return client

    def slot(self) -> tuple[str, str]:
        start = FIRST_SLOT + timedelta(hours=2 * self._slots)
        self._slots += 1
        return start.isoformat(), (start + timedelta(hours=1)).isoformat()

    # --- the case ------------------------------------------------------------------------

    def open(self, who: str, flow: str, client: str, **extra: Any) -> dict[str, Any]:
        answer = self.post(who, "/v1/cases", {"flow": flow, "client_ref": client, **extra},
                           expect=201)
        return answer["case"]

    def act(self, who: str, case_id: int, action: str, answer: str | None = None, *,
            checks: list[str] | None = None, expect: int = 200) -> Any:
        body: dict[str, Any] = {"action": action, "answer": answer}
        if checks:
            body["checks"] = checks
        return self.post(who, f"/v1/cases/{case_id}/actions", body, expect=expect)

    def job_of(self, case_id: int) -> dict[str, Any]:
        [job] = [j for j in self.get("fitter", "/v1/binder")["jobs"] if j["case_id"] == case_id]
        return job

    def book(self, case_id: int, *, expect: int = 200) -> Any:
        start, end = self.slot()
        job = self.job_of(case_id)
        return self.post("fitter", f"/v1/binder/{job['id']}/booking",
                         {"fitter": "fitter", "start": start, "end": end}, expect=expect)

    def state(self, case_id: int, who: str = "office") -> str:
        state: str = self.get(who, f"/v1/cases/{case_id}")["case"]["state"]
        return state


def walk(api: Routine, case_id: int, steps: list[tuple[str, str, str | None]]) -> dict[str, Any]:
    """Take ``(who, action, answer)`` steps; each answer's case moved to the step's state."""
    answer: dict[str, Any] = {}
    for who, action, value in steps:
        answer = api.act(who, case_id, action, value)
        assert answer["step"]["action"] == action and answer["step"]["answer"] == value
        assert answer["case"]["state"] == answer["step"]["to_state"]
    return answer


def allowed(case: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["name"], a["role"]) for a in case["allowed"]]


def assert_problem(response: Any, error: str, *fragments: str) -> None:
    problem = ProblemDetail.model_validate(response)
    assert problem.error == error, response
    text = f"{problem.detail} {problem.advice}"
    for fragment in fragments:
        assert fragment in text, text
    assert problem.advice and problem.server_time == CENTRE_T0


@pytest.fixture
def api(central_store: CentralStore, central_clock: SteppingClock) -> Iterator[Routine]:
    tokens = {name: central_store.add_device(name, role, unit)
              for name, (role, unit) in PRINCIPALS.items()}
    with run_in_thread(create_app(central_store)) as (_server, _thread, url), \
            httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
        yield Routine(http, central_store, central_clock, tokens)


# --- 2a: installation, assessed services ------------------------------------------------------


def test_2a_walk_from_order_to_installed_lock(api: Routine) -> None:
    client = api.client("K-2A")
    api.service(client, "home_care")
    assert api.post("provider", f"/v1/tag-stock/{NORD}", {"count": 3})["count"] == 3
    tag = api.post("provider", "/v1/tags", {"uid": "04A1B2C3D4E5F6", "client_ref": client,
                                            "provider_unit": NORD}, expect=201)["tag"]
    assert tag["state"] == "issued"
    assert api.get("provider", f"/v1/tag-stock/{NORD}")["count"] == 2

    case = api.open("assessor", "2a", client, provider_unit=NORD)
    assert (case["state"], case["open"], case["provider_unit"]) == ("new", True, NORD)
    assert allowed(case) == [("send_order", "assessor")]
    walk(api, case["id"], [
        ("assessor", "send_order", None),
        ("provider", "lock_already_installed", "no"),
        ("provider", "code_lock", "no"),
        ("provider", "home_care_only_opens_door", "no"),
        ("provider", "client_refuses", "no"),
    ])
    keys = api.keys(client, "home_care_provider")
    requested = walk(api, case["id"], [("provider", "request_lock", "keys_exist")])
    assert allowed(requested["case"]) == [("put_install_job", "alarm_admin")]

    [message] = api.get("alarm_admin", "/v1/inbox")["messages"]
    assert (message["case_id"], message["kind"], message["keys_exist"]) == (
        case["id"], "install", True)
    walk(api, case["id"], [("alarm_admin", "put_install_job", None)])
    assert api.get("alarm_admin", "/v1/inbox")["messages"] == []  # taken from the inbox

    booking = api.book(case["id"])["booking"]
    assert (booking["fitter"], booking["client_ref"]) == ("fitter", client)
    assert api.state(case["id"]) == "installation_booked"
    assert [j["job_id"] for j in api.get("fitter", "/v1/jobs")["jobs"]] == [booking["job_id"]]
    schedule = api.get("alarm_admin", "/v1/schedule", fitter="fitter",
                       day=FIRST_SLOT.date().isoformat())
    assert schedule["bookings"] == [booking]

    # 2a.7: the lock must be bound to the client before the installation is recorded.
    unbound = api.act("fitter", case["id"], "install_lock", checks=INSTALL_CHECKS, expect=409)
    refusal = RoutineProblem.model_validate(unbound)
    assert refusal.error == "unmet_requirement" and refusal.unmet == ["lock_bound_to_client"]
    api.bind(client)
    done = api.act("fitter", case["id"], "install_lock", checks=INSTALL_CHECKS)
    assert done["case"]["state"] == "installed" and not done["case"]["open"]
    assert done["case"]["outcome"] == "installed" and done["case"]["allowed"] == []

    shown = api.get("provider", f"/v1/cases/{case['id']}")["case"]
    trail = [(s["action"], s["answer"], s["actor"], s["acting_as"]) for s in shown["steps"]]
    assert trail == [
        ("send_order", None, "assessor", "assessor"),
        ("lock_already_installed", "no", "provider", "provider"),
        ("code_lock", "no", "provider", "provider"),
        ("home_care_only_opens_door", "no", "provider", "provider"),
        ("client_refuses", "no", "provider", "provider"),
        ("request_lock", "keys_exist", "provider", "provider"),
        ("put_install_job", None, "alarm_admin", "alarm_admin"),
        ("book_installation", None, "fitter", "fitter"),
        ("install_lock", None, "fitter", "fitter"),
    ]
    assert shown["steps"][-1]["checks"] == {
        "keys_exist": True, "lock_bound_to_client": True,
        "knob_labelled_with_key_number": True, "job_marked_done": True}

    status = api.get("provider", "/v1/reports/client-status", client=client)
    [row] = status["clients"]
    assert row["lock_status"] == "installed" and [t["state"] for t in row["tags"]] == ["due_down"]
    assert [s["key_number"] for s in row["key_sets"]] == [keys]
    down = api.post("provider", "/v1/tags/04A1B2C3D4E5F6/taken-down")["tag"]
    assert down["state"] == "taken_down"
    assert api.get("provider", f"/v1/clients/{client}/documentation")["texts"] == []
    job = api.get("alarm_admin", f"/v1/binder/{booking['job_id']}")["job"]
    assert (job["open"], job["done_by"]) == (False, "fitter")
    assert api.get("alarm_admin", "/v1/reports/pending-installs")["installs"] == []


def test_2a_branches_document_the_verbatim_texts(api: Routine) -> None:
    to_checkpoints = [("assessor", "send_order", None),
                      ("provider", "lock_already_installed", "no")]
    branches = {
        "K-CODE": ([("provider", "code_lock", "yes")], "no_lock_code_lock", CODE_LOCK),
        "K-SELF": ([("provider", "code_lock", "no"),
                    ("provider", "home_care_only_opens_door", "yes"),
                    ("provider", "declines_lock", "yes")], "no_lock_opens_door", OPENS_DOOR),
        "K-AGREED": ([("provider", "code_lock", "no"),
                      ("provider", "home_care_only_opens_door", "no"),
                      ("provider", "client_refuses", "yes"),
                      ("assessor", "assessor_decision", "no_lock")], "no_lock_agreed", AGREED),
    }
    assert {t for _, _, t in branches.values()} == set(texts.DOCUMENTATION_TEXTS)
    for client, (steps, final, text) in branches.items():
        case = api.open("assessor", "2a", api.client(client), provider_unit=NORD)
        last = walk(api, case["id"], [*to_checkpoints, *steps])
        assert last["case"]["state"] == final and not last["case"]["open"]
        assert last["step"]["documentation"] == text
        docs = api.get("provider", f"/v1/clients/{client}/documentation")
        assert docs["system"] == "Lifecare"
        assert [(d["text"], d["field"], d["case_id"]) for d in docs["texts"]] == [
            (text, "Personuppgifter, övrig information", case["id"])]
        assert api.get("assessor", f"/v1/clients/{client}/documentation") == docs
        # Written into the trail once, at the step that decided it.
        trail = api.get("provider", f"/v1/cases/{case['id']}")["case"]["steps"]
        assert [s["documentation"] for s in trail if s["documentation"]] == [text]


# --- 2b: removal, assessed services -----------------------------------------------------------


def test_2b_walk_from_cancellation_to_removed_lock(api: Routine) -> None:
    client = api.installed("K-2B", "home_care", "safety_alarm")
    provider_keys, alarm_keys = (s["key_number"] for s in
                                 api.get("provider", f"/v1/clients/{client}/keys")["held"])
    case = api.open("assessor", "2b", client)
    assert case["provider_unit"] == NORD  # the client's running home care
    walk(api, case["id"], [
        ("assessor", "send_cancellation", None),
        ("provider", "end_implementation", None),
        ("provider", "client_has_lock", "yes"),
    ])
    running = api.get("provider", f"/v1/clients/{client}/implementations")["implementations"]
    assert [(i["kind"], i["running"]) for i in running] == [("home_care", False),
                                                           ("safety_alarm", True)]
    [message] = api.get("alarm_admin", "/v1/inbox")["messages"]
    assert (message["kind"], message["client_ref"]) == ("removal", client)
    walk(api, case["id"], [
        ("alarm_admin", "alarm_decision", "ends"),
        ("alarm_admin", "end_alarm_implementation", None),
        ("alarm_admin", "put_removal_job", None),
    ])
    job = api.job_of(case["id"])
    assert job["kind"] == "removal" and job["due_on"] == removal_due(CENTRE_T0.date()).isoformat()
    [removal] = api.get("alarm_admin", "/v1/reports/removals")["removals"]
    assert (removal["client_ref"], removal["job_id"]) == (client, job["id"])

    api.book(case["id"])
    api.post("fitter", f"/v1/locks/PH-{client}/unbind")
    receipt = api.post("fitter", f"/v1/clients/{client}/keys/return",
                       {"unit": "alarm_group", "signed_by": "Brukare B"})["receipt"]
    assert receipt["key_numbers"] == [alarm_keys]
    api.act("fitter", case["id"], "remove_lock", checks=REMOVAL_CHECKS)

    # 2b.9: every key number must be unbound: the provider's set is still in the register.
    early = RoutineProblem.model_validate(
        api.act("alarm_admin", case["id"], "check_key_register", expect=409))
    assert early.state == "lock_removed" and early.unmet == ["key_number_unbound"]
    assert api.get("alarm_admin", f"/v1/keys/{provider_keys}/unbound")["unbound"] is False
    api.post("provider", f"/v1/clients/{client}/keys/return",
             {"unit": "home_care_provider", "signed_by": "Brukare B"})
    assert api.get("alarm_admin", f"/v1/keys/{provider_keys}/unbound")["unbound"] is True
    last = walk(api, case["id"], [("alarm_admin", "check_key_register", None),
                                  ("alarm_admin", "check_lock_system", None)])
    assert (last["case"]["state"], last["case"]["outcome"]) == ("removed", "removed")
    keys = api.get("alarm_admin", f"/v1/clients/{client}/keys")
    assert keys["held"] == [] and len(keys["returned"]) == 2
    assert api.get("alarm_admin", "/v1/binder")["jobs"] == []


# --- 3a and 3b: safety alarm only -------------------------------------------------------------


def test_3a_walk_waits_for_keys_then_installs(api: Routine) -> None:
    client = api.client("K-3A")
    api.service(client, "safety_alarm")
    case = api.open("alarm_admin", "3a", client)
    walk(api, case["id"], [("alarm_admin", "receive_request", None)])
    # 3a.2: until physical keys exist, the process cannot go on.
    waiting = RoutineProblem.model_validate(
        api.act("alarm_admin", case["id"], "confirm_keys", expect=409))
    assert (waiting.state, waiting.unmet) == ("awaiting_keys", ["keys_exist"])
    number = api.keys(client, "alarm_group")
    walk(api, case["id"], [
        ("alarm_admin", "confirm_keys", None),
        ("alarm_admin", "code_lock", "no"),
        ("alarm_admin", "lock_already_installed", "no"),
        ("alarm_admin", "decide_lock", "yes"),
    ])
    keys = api.get("alarm_admin", f"/v1/clients/{client}/keys")
    assert [(s["key_number"], s["case_id"]) for s in keys["held"]] == [(number, case["id"])]
    assert keys["required"]["alarm_group"] == 1 and keys["missing"] == {}
    [pending] = api.get("alarm_admin", "/v1/reports/pending-installs")["installs"]
    assert (pending["case_id"], pending["overdue"]) == (case["id"], False)

    api.book(case["id"])
    api.bind(client)
    done = api.act("fitter", case["id"], "install_lock", checks=INSTALL_CHECKS)
    assert (done["case"]["state"], done["case"]["outcome"]) == ("installed", "installed")


def test_3b_walk_from_alarm_end_to_removed_lock(api: Routine) -> None:
    client = api.installed("K-3B", "safety_alarm")
    case = api.open("alarm_admin", "3b", client)
    walk(api, case["id"], [
        ("alarm_admin", "receive_end_request", None),
        ("alarm_admin", "home_care_continues", "no"),
        ("alarm_admin", "lock_installed", "yes"),
        ("alarm_admin", "end_alarm_implementation", None),
        ("alarm_admin", "put_removal_job", None),
    ])
    api.book(case["id"])
    api.post("fitter", f"/v1/locks/PH-{client}/unbind")
    api.post("fitter", f"/v1/clients/{client}/keys/return",
             {"unit": "alarm_group", "signed_by": "Brukare C"})
    api.act("fitter", case["id"], "remove_lock", checks=REMOVAL_CHECKS)
    last = walk(api, case["id"], [("alarm_admin", "check_key_register", None),
                                  ("alarm_admin", "check_lock_system", None)])
    assert (last["case"]["state"], last["case"]["open"]) == ("removed", False)
    listed = api.get("alarm_admin", "/v1/cases", client=client, flow="3b")["cases"]
    assert [c["id"] for c in listed] == [case["id"]]
    assert api.get("alarm_admin", "/v1/cases", client=client, open="true")["cases"] == []


# --- refusals ------------------------------------------------------------------------------------


def test_a_wrong_role_or_unit_is_403_with_the_reason(api: Routine) -> None:
    case = api.open("assessor", "2a", api.client("K-1"), provider_unit=NORD)
    # The provider may not take the assessor's step.
    refused = api.act("provider", case["id"], "send_order", expect=403)
    assert_problem(refused, "access_denied", "assessor", "principal")
    api.act("assessor", case["id"], "send_order")
    # A provider of another unit may neither see nor work the case: it is answered as a
    # missing one, so the answer does not tell which ids exist.
    missing = 99_999
    for case_id in (case["id"], missing):
        other = api.act("other_provider", case_id, "lock_already_installed", "no", expect=404)
        assert_problem(other, "unknown_record", f"no case {case_id} among those provider "
                       f"other_provider of {SYD} may see")
        assert_problem(api.get("other_provider", f"/v1/cases/{case_id}", expect=404),
                       "unknown_record")
        # A token with no part in the routine is refused before anything is loaded.
        assert_problem(api.get("agent", f"/v1/cases/{case_id}", expect=403),
                       "access_denied", "no part in the routine")
        assert_problem(api.act("agent", case_id, "lock_already_installed", "no",
                               expect=403), "access_denied", "no part in the routine")
    assert api.get("other_provider", "/v1/cases")["cases"] == []
    # A field agent's token has no part in the routine; 2a is opened by assessors.
    assert_problem(api.post("agent", "/v1/cases", {"flow": "2a", "client_ref": "K-1"},
                            expect=403), "access_denied", "no part in the routine")
    assert_problem(api.post("alarm_admin", "/v1/cases", {"flow": "2a", "client_ref": "K-9",
                                                         "provider_unit": NORD}, expect=403),
                   "access_denied", "assessor")
    assert_problem(api.get("provider", "/v1/inbox", expect=403), "access_denied")
    assert_problem(api.get("agent", "/v1/alerts", expect=403), "access_denied")
    assert api.state(case["id"]) == "ordered"


def test_a_wrong_action_is_409_naming_the_state_and_allowed_actions(api: Routine) -> None:
    case = api.open("assessor", "2a", api.client("K-1"), provider_unit=NORD)
    refused = RoutineProblem.model_validate(
        api.act("assessor", case["id"], "install_lock", expect=409))
    assert (refused.error, refused.state, refused.action) == ("not_allowed", "new",
                                                              "install_lock")
    assert refused.allowed == ["send_order by assessor"]
    assert "'new'" in refused.detail and "send_order by assessor" in refused.detail
    assert "send_order" in refused.advice
    api.act("assessor", case["id"], "send_order")
    bad_answer = RoutineProblem.model_validate(
        api.act("provider", case["id"], "lock_already_installed", "maybe", expect=409))
    assert "yes|no" in bad_answer.detail and bad_answer.state == "ordered"
    # A closed case allows nothing.
    api.act("provider", case["id"], "lock_already_installed", "yes")
    closed = RoutineProblem.model_validate(
        api.act("provider", case["id"], "code_lock", "no", expect=409))
    assert "closed" in closed.detail and closed.allowed == []
    # Booking steps go through the binder's booking.
    other = _to_binder(api, "K-3")
    assert_problem(api.act("fitter", other, "book_installation", expect=409), "conflict",
                   "book")
    assert len(api.get("office", f"/v1/cases/{case['id']}")["case"]["steps"]) == 2


def _to_binder(api: Routine, client: str) -> int:
    """A 3a case with its install job in the binder."""
    api.client(client)
    case = api.open("alarm_admin", "3a", client)
    api.act("alarm_admin", case["id"], "receive_request")
    api.keys(client, "alarm_group")
    walk(api, case["id"], [("alarm_admin", "confirm_keys", None),
                           ("alarm_admin", "code_lock", "no"),
                           ("alarm_admin", "lock_already_installed", "no"),
                           ("alarm_admin", "decide_lock", "yes")])
    return int(case["id"])


def test_a_double_booking_is_409(api: Routine) -> None:
    first, second = _to_binder(api, "K-A"), _to_binder(api, "K-B")
    start = FIRST_SLOT
    booked = api.post("fitter", f"/v1/binder/{api.job_of(first)['id']}/booking",
                      {"fitter": "fitter", "start": start.isoformat(),
                       "end": (start + timedelta(hours=1)).isoformat()})["booking"]
    overlap = {"fitter": "fitter", "start": (start + timedelta(minutes=30)).isoformat(),
               "end": (start + timedelta(minutes=90)).isoformat()}
    clash = api.post("fitter", f"/v1/binder/{api.job_of(second)['id']}/booking", overlap,
                     expect=409)
    assert_problem(clash, "double_booking", "fitter", f"job {booked['job_id']}", "K-A")
    assert api.state(second) == "install_job_in_binder"  # nothing was recorded
    assert [b["id"] for b in api.get("fitter", "/v1/schedule")["bookings"]] == [booked["id"]]
    later = {"fitter": "fitter", "start": (start + timedelta(hours=1)).isoformat(),
             "end": (start + timedelta(hours=2)).isoformat()}
    api.post("fitter", f"/v1/binder/{api.job_of(second)['id']}/booking", later)
    assert api.state(second) == "installation_booked"
    assert len(api.get("fitter", "/v1/jobs")["jobs"]) == 2
    assert len(api.get("alarm_admin", "/v1/jobs", fitter="fitter")["jobs"]) == 2
    assert_problem(api.get("alarm_admin", "/v1/jobs", expect=422), "invalid_request",
                   "fitter=NAME")
    assert_problem(api.get("fitter", "/v1/jobs", fitter="someone-else", expect=403),
                   "access_denied", "own jobs")


def test_unknown_records_are_404_and_malformed_requests_422(api: Routine) -> None:
    assert_problem(api.get("office", "/v1/cases/999", expect=404), "unknown_record", "999")
    assert_problem(api.post("fitter", "/v1/binder/999/booking",
                            {"fitter": "fitter", "start": FIRST_SLOT.isoformat(),
                             "end": (FIRST_SLOT + timedelta(hours=1)).isoformat()},
                            expect=404), "unknown_record", "job 999")
    assert_problem(api.post("alarm_admin", "/v1/inbox/999/handled", expect=404),
                   "unknown_record")
    assert_problem(api.post("provider", "/v1/tags/04A1B2C3D4E5F6/taken-down", expect=404),
                   "unknown_record")
    api.client("K-1")
    for body in ({"flow": "9z", "client_ref": "K-1"}, {"client_ref": "K-1"},
                 {"flow": "2a", "client_ref": "K-1", "surprise": True},
                 {"flow": "2a", "client_ref": ""}):
        assert_problem(api.post("assessor", "/v1/cases", body, expect=422), "invalid_request")
    case = api.open("alarm_admin", "3a", "K-1")
    assert_problem(api.post("alarm_admin", f"/v1/cases/{case['id']}/actions", {"answer": "x"},
                            expect=422), "invalid_request", "action")
    assert_problem(api.get("office", "/v1/cases/0", expect=422), "invalid_request")
    naive = {"fitter": "fitter", "start": "2026-12-07T09:00:00", "end": "2026-12-07T10:00:00"}
    assert_problem(api.post("fitter", "/v1/binder/1/booking", naive, expect=422),
                   "invalid_request", "timezone")
    assert_problem(api.post("provider", "/v1/clients/K-1/keys",
                            {"unit": "neighbours", "key_number": "N-1"}, expect=422),
                   "invalid_request", "unit")
    response = api.http.post("/v1/cases", content=b"flow=2a", headers={
        PROTOCOL_HEADER: "1", "Authorization": f"Bearer {api.tokens['assessor']}",
        "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_keys_tags_alerts_and_reports_answer(api: Routine) -> None:
    client = api.installed("K-R", "home_care", "safety_alarm")
    keys = api.get("provider", f"/v1/clients/{client}/keys")
    assert keys["required"] == {"home_care_provider": 1, "alarm_group": 1, "night_group": 0}
    assert keys["missing"] == {} and len(keys["held"]) == 2
    use = api.post("provider", f"/v1/clients/{client}/emergency-key-use",
                   {"unit": "home_care_provider", "reason": "Fall, lock did not answer",
                    "lock_available": False}, expect=201)["key_use"]
    assert (use["reason"], use["used_by"]) == ("emergency", "provider")
    # A client whose lock is installed does not use NFC tags.
    api.post("provider", f"/v1/tag-stock/{NORD}", {"count": 1})
    refused = api.post("provider", "/v1/tags", {"uid": "04A1B2C3D4E5F6", "client_ref": client,
                                                "provider_unit": NORD}, expect=409)
    assert_problem(refused, "tag_not_issuable", "installed")
    alerts = api.get("alarm_admin", "/v1/alerts", today="2026-11-30")
    assert alerts["today"] == "2026-11-30"
    assert {a["kind"] for a in alerts["alerts"]} <= {
        "no_visit_registered", "physical_key_used_where_lock_works", "keys_not_returned",
        "lock_pending_overdue", "removal_due_soon", "removal_overdue",
        "tag_used_after_install", "low_lock_battery"}
    visits = api.get("office", "/v1/reports/visits-by-method", start="2026-11-01",
                     end="2026-11-30")
    assert (visits["start"], visits["clients"]) == ("2026-11-01", [])
    ended = api.post("provider", f"/v1/clients/{client}/implementations/home_care/end",
                     {"ended_on": "2026-11-29"})["implementation"]
    assert (ended["ended_on"], ended["running"]) == ("2026-11-29", False)
    again = api.post("provider", f"/v1/clients/{client}/implementations/home_care/end", {},
                     expect=409)
    assert_problem(again, "conflict", "no running home_care")


def test_openapi_documents_the_routine(api: Routine) -> None:
    document = api.http.get("/openapi.json").json()
    paths = document["paths"]
    for path in ("/v1/cases", "/v1/cases/{case_id}", "/v1/cases/{case_id}/actions",
                 "/v1/clients/{client_ref}/documentation", "/v1/inbox", "/v1/binder",
                 "/v1/binder/{job_id}/booking", "/v1/schedule", "/v1/jobs",
                 "/v1/clients/{client_ref}/keys", "/v1/keys/{key_number}/unbound",
                 "/v1/tags", "/v1/tag-stock/{unit}", "/v1/alerts",
                 "/v1/reports/pending-installs", "/v1/reports/removals",
                 "/v1/reports/client-status", "/v1/reports/visits-by-method"):
        assert path in paths, path
    act = paths["/v1/cases/{case_id}/actions"]["post"]
    assert act["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RoutineProblem")
    assert {"403", "404", "422"} <= set(act["responses"])
    schemas = document["components"]["schemas"]
    assert {"CaseOut", "StepOut", "ActionOut", "TakeAction", "OpenCase", "Book",
            "DocumentationAnswer", "KeysAnswer"} <= set(schemas)
    assert schemas["Flow"]["enum"] == ["2a", "2b", "3a", "3b"]


def test_no_answer_tells_a_token_without_a_part_which_ids_exist(api: Routine) -> None:
    """Access is checked before anything is loaded: a field agent's token gets the same
    answer on every routine route with an id, whether the id exists or not."""
    case = api.open("assessor", "2a", api.client("K-1"), provider_unit=NORD)
    api.call("provider", "POST", "/v1/clients/K-1/implementations",
             {"kind": "home_care", "unit": NORD, "started_on": "2026-11-02"}, expect=201)
    real = {"case_id": str(case["id"]), "client_ref": "K-1", "message_id": "1",
            "job_id": "1", "kind": "home_care", "key_number": "N-1", "uid": "04A1B2C3D4E5F6",
            "unit": NORD, "serial": "PH-1"}
    missing = {**{k: "999999" for k in ("case_id", "message_id", "job_id")},
               "client_ref": "K-NONE", "kind": "home_care", "key_number": "N-NONE",
               "uid": "04FFFFFFFFFFFF", "unit": "nowhere", "serial": "PH-NONE"}
    app = api.http.get("/openapi.json").json()
    routes = [(path, method.upper()) for path, ops in app["paths"].items()
              for method in ops if "{" in path and not path.startswith("/v1/admin")]
    assert len(routes) >= 18
    for path, method in routes:
        answers = []
        for values in (real, missing):
            url = path.format(**{k: v for k, v in values.items() if "{" + k + "}" in path})
            response = api.http.request(method, url, json={} if method != "GET" else None,
                                        headers={PROTOCOL_HEADER: "1",
                                                 "Authorization": f"Bearer {api.tokens['agent']}"})
            answers.append((response.status_code, response.json().get("error")))
        assert answers[0] == answers[1], f"{method} {path}: {answers}"
        assert answers[0][0] in (403, 422), f"{method} {path}: {answers}"
