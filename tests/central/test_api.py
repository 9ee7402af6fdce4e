"""The centre's HTTP API, served by uvicorn on 127.0.0.1 and spoken to over real HTTP.

Every test runs on SQLite and on PostgreSQL (``database_url`` of conftest.py).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_case
from hypothesis import strategies as st

from central import db
from central.api import SERVER_TIME_HEADER, create_app
from central.server import run_in_thread
from central.store import CentralStore
from sync.protocol import (
    MAX_REFERENCE_PAGE,
    PROTOCOL_HEADER,
    ClockResponse,
    ProblemDetail,
    PushResponse,
    ReferencePage,
    version_problem,
)
from tests.central.conftest import CENTRE_T0, SteppingClock

DEVICE = "agent-1"
OTHER = "agent-2"
# Small enough that the size tests send little; far above any request of the tests.
TEST_BODY_LIMIT = 256 * 1024
HTTP_TIMEOUT_S = 10.0
REFERENCE = {
    "clients": [{"ref": "K-1", "lock_status": "pending"}, {"ref": "K-2"}, {"ref": "K-3"}],
    "tags": [{"uid": "04A1B2C3D4E5F6", "client_ref": "K-1"},
             {"uid": "04111111111111", "client_ref": "K-2"}],
    "staff": [{"badge_uid": "0A0B0C0D", "staff_ref": "P-anna", "display_name": "Anna"}],
}
REFERENCE_RECORDS = 6


@dataclass
class Centre:
    url: str
    store: CentralStore
    clock: SteppingClock
    http: httpx.Client
    device_token: str
    other_token: str
    admin_token: str


def auth(token: str, **extra: str) -> dict[str, str]:
    return {PROTOCOL_HEADER: "1", "Authorization": f"Bearer {token}", **extra}


def event(device: str = DEVICE, kind: str = "visit.arrived",
          at: datetime = CENTRE_T0 - timedelta(minutes=30), **data: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "kind": kind, "device_id": device,
            "at": at.isoformat(), "boottime_ns": 1_000_000, "boot_id": "boot-1",
            "clock_synced": True, "data": data}


def visit_events(visit_id: str = "v-1") -> list[dict[str, Any]]:
    who = {"visit_id": visit_id, "client_ref": "K-1", "staff_ref": "P-anna"}
    arrived = CENTRE_T0 - timedelta(minutes=40)
    return [event(kind="visit.arrived", at=arrived, tag_uid="04A1B2C3D4E5F6",
                  method="nfc_tag", **who),
            event(kind="visit.departed", at=arrived + timedelta(minutes=25),
                  arrived_at=arrived.isoformat(), duration_s=1500, **who)]


def push_body(events: list[dict[str, Any]], device: str = DEVICE) -> dict[str, Any]:
    return {"protocol": 1, "device_id": device, "events": events}


def assert_problem(response: httpx.Response, status: int, *fragments: str) -> ProblemDetail:
    assert response.status_code == status, response.text
    problem = ProblemDetail.model_validate(response.json())
    assert problem.server_time == CENTRE_T0
    text = f"{problem.detail} {problem.advice}"
    for fragment in fragments:
        assert fragment in text, text
    assert problem.advice, "every problem says what to do"
    return problem


@pytest.fixture
def centre(central_store: CentralStore, central_clock: SteppingClock) -> Iterator[Centre]:
    tokens = (central_store.add_device(DEVICE), central_store.add_device(OTHER),
              central_store.add_device("office", role="admin"))
    app = create_app(central_store, max_body_bytes=TEST_BODY_LIMIT)
    with run_in_thread(app) as (_server, _thread, url), \
            httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
        yield Centre(url, central_store, central_clock, http, *tokens)


# --- the main path ---------------------------------------------------------------------


def test_push_then_repush_stores_each_event_once(centre: Centre) -> None:
    events = [event(), event(kind="tap.refused", reason="unknown_tag"), event()]
    ids = [e["event_id"] for e in events]
    first = centre.http.post("/v1/events", json=push_body(events),
                             headers=auth(centre.device_token))
    assert first.status_code == 200, first.text
    answer = PushResponse.model_validate(first.json())
    assert answer.stored == ids and answer.rejected == []
    assert answer.server_time == CENTRE_T0
    assert centre.store.event_count() == 3  # durable before the answer came

    again = centre.http.post("/v1/events", json=push_body([*events, event()]),
                             headers=auth(centre.device_token))
    assert again.status_code == 200
    assert PushResponse.model_validate(again.json()).stored[:3] == ids
    assert centre.store.event_count() == 4
    assert [d.events for d in centre.store.list_devices() if d.name == DEVICE] == [4]


def test_clock_answers_the_centres_time(centre: Centre) -> None:
    centre.clock.advance(90)
    response = centre.http.get("/v1/clock", headers={PROTOCOL_HEADER: "1"})
    assert response.status_code == 200
    expected = CENTRE_T0 + timedelta(seconds=90)
    assert ClockResponse.model_validate(response.json()).server_time == expected
    assert datetime.fromisoformat(response.headers[SERVER_TIME_HEADER]) == expected


def test_clock_sample_anchors_the_boot(centre: Centre) -> None:
    unsynced = {**event(at=datetime(1970, 1, 1, 0, 5, tzinfo=UTC)), "clock_synced": False,
                "boottime_ns": 2_000_000_000}
    sample = {"boot_id": "boot-1", "boottime_ns": 1_000_000_000,
              "server_time": CENTRE_T0.isoformat(), "rtt_ns": 4_000_000}
    response = centre.http.post("/v1/events", headers=auth(centre.device_token),
                                json={**push_body([unsynced]), "clock": sample})
    assert response.status_code == 200, response.text
    [row] = centre.store.events(device=DEVICE)
    assert row["quality"] == "corrected"
    assert row["best_at"] == CENTRE_T0 + timedelta(seconds=1)


# --- who may push what -----------------------------------------------------------------


def test_missing_or_unknown_token_is_401_with_a_bearer_challenge(centre: Centre) -> None:
    body = push_body([event()])
    cases = [({PROTOCOL_HEADER: "1"}, "no Authorization header"),
             ({PROTOCOL_HEADER: "1", "Authorization": "Basic dXNlcjpwdw=="}, "Bearer TOKEN"),
             (auth("not-a-token-the-centre-issued"), "unknown device token")]
    for headers, reason in cases:
        response = centre.http.post("/v1/events", json=body, headers=headers)
        assert_problem(response, 401, reason, "nyckelfri-central device add")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert centre.store.event_count() == 0


def test_revoked_device_is_403_with_the_reason(centre: Centre) -> None:
    centre.store.revoke_device(DEVICE)
    response = centre.http.post("/v1/events", json=push_body([event()]),
                                headers=auth(centre.device_token))
    assert_problem(response, 403, "revoked")
    reference = centre.http.get("/v1/reference", headers=auth(centre.device_token))
    assert_problem(reference, 403, "revoked")


def test_pushing_another_devices_batch_is_403(centre: Centre) -> None:
    response = centre.http.post("/v1/events", json=push_body([event(OTHER)], device=OTHER),
                                headers=auth(centre.device_token))
    assert_problem(response, 403, repr(DEVICE), repr(OTHER), "own token")
    assert centre.store.event_count() == 0


def test_a_foreign_event_in_an_own_batch_is_rejected(centre: Centre) -> None:
    mine, theirs = event(), event(OTHER)
    response = centre.http.post("/v1/events", json=push_body([mine, theirs]),
                                headers=auth(centre.device_token))
    answer = PushResponse.model_validate(response.json())
    assert answer.stored == [mine["event_id"]]
    assert [r.event_id for r in answer.rejected] == [theirs["event_id"]]
    assert OTHER in answer.rejected[0].reason


def test_admin_routes_refuse_device_tokens(centre: Centre) -> None:
    for method, path in [("GET", "/v1/visits"), ("GET", "/v1/admin/devices"),
                         ("DELETE", "/v1/admin/reference/client/K-1")]:
        response = centre.http.request(method, path, headers=auth(centre.device_token))
        assert_problem(response, 403, "not an administrator", "--admin")
    response = centre.http.post("/v1/admin/reference", json=REFERENCE,
                                headers=auth(centre.device_token))
    assert_problem(response, 403, "not an administrator")


# --- protocol version ------------------------------------------------------------------


@pytest.mark.parametrize(("header", "reason"), [
    (None, "header is missing"),
    ("2", version_problem(2)),
    ("0", version_problem(0)),
    ("one", "not a protocol version"),
])
def test_protocol_version_is_required(centre: Centre, header: str | None, reason: str) -> None:
    headers = {"Authorization": f"Bearer {centre.device_token}"}
    if header is not None:
        headers[PROTOCOL_HEADER] = header
    for response in (centre.http.get("/v1/clock", headers=headers),
                     centre.http.post("/v1/events", json=push_body([event()]),
                                      headers=headers)):
        assert_problem(response, 426, reason)
    assert centre.http.get("/healthz").status_code == 200  # no header needed there


# --- malformed and oversized requests --------------------------------------------------


def test_body_over_the_limit_by_content_length_is_413(centre: Centre) -> None:
    body = json.dumps(push_body([event(padding="x" * TEST_BODY_LIMIT)])).encode()
    assert len(body) > TEST_BODY_LIMIT
    response = centre.http.post("/v1/events", content=body,
                                headers=auth(centre.device_token,
                                             **{"Content-Type": "application/json"}))
    assert_problem(response, 413, "Content-Length", str(TEST_BODY_LIMIT), "smaller batches")
    assert centre.store.event_count() == 0


def test_chunked_body_over_the_limit_is_413(centre: Centre) -> None:
    chunk = b" " * 16384

    def stream() -> Iterator[bytes]:
        yield b'{"device_id": "agent-1", "events": ['
        for _ in range(2 * TEST_BODY_LIMIT // len(chunk)):
            yield chunk
        yield b"]}"

    response = centre.http.post("/v1/events", content=stream(),
                                headers=auth(centre.device_token,
                                             **{"Content-Type": "application/json"}))
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.request.headers
    assert_problem(response, 413, "streamed body", str(TEST_BODY_LIMIT))


def test_chunked_body_under_the_limit_is_accepted(centre: Centre) -> None:
    body = json.dumps(push_body([event()])).encode()
    response = centre.http.post("/v1/events", content=iter([body[:10], body[10:]]),
                                headers=auth(centre.device_token,
                                             **{"Content-Type": "application/json"}))
    assert response.status_code == 200, response.text


def test_garbage_json_is_400(centre: Centre) -> None:
    for garbage in (b"{not json", b"\xff\xfe\x00", b'{"device_id": "agent-1", "events": [}'):
        response = centre.http.post("/v1/events", content=garbage,
                                    headers=auth(centre.device_token,
                                                 **{"Content-Type": "application/json"}))
        assert_problem(response, 400)


@pytest.mark.parametrize(("change", "location", "reason"), [
    ({"event_id": "Z" * 5000}, "events.0.event_id", "32 lower-case hex"),
    ({"at": "2026-11-30T08:00:00"}, "events.0.at", "timezone"),
    ({"boottime_ns": -1}, "events.0.boottime_ns", "greater than or equal"),
    ({"unexpected": "x" * 5000}, "events.0.unexpected", "Extra inputs"),
])
def test_malformed_event_is_422_with_the_place_named(centre: Centre, change: dict[str, Any],
                                                     location: str, reason: str) -> None:
    response = centre.http.post("/v1/events", json=push_body([{**event(), **change}]),
                                headers=auth(centre.device_token))
    assert_problem(response, 422, location, reason)
    assert len(response.content) < 1000, "the offending input is not echoed back"


def test_wrong_content_type_is_415(centre: Centre) -> None:
    body = json.dumps(push_body([event()]))
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = auth(centre.device_token)
        if content_type:
            headers["Content-Type"] = content_type
        response = centre.http.post("/v1/events", content=body.encode(), headers=headers)
        assert_problem(response, 415, "application/json")


def test_unknown_route_is_404_and_wrong_method_405(centre: Centre) -> None:
    assert_problem(centre.http.get("/v1/nothing-here", headers=auth(centre.device_token)), 404,
                   "/openapi.json")
    response = centre.http.delete("/v1/events", headers=auth(centre.device_token))
    assert_problem(response, 405, "POST")
    assert response.headers["Allow"] == "POST"


def test_unstorable_events_are_rejected_not_stored(centre: Centre) -> None:
    cases = [event(note="nul \x00 in text"), event(kind="odd\x00kind"),
             event(deep=json.loads("[" * 40 + "]" * 40)),
             event(at=datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))),
             event(value="not-a-number")]
    raw = json.dumps(push_body(cases)).replace('"not-a-number"', "NaN")
    response = centre.http.post("/v1/events", content=raw.encode(),
                                headers=auth(centre.device_token,
                                             **{"Content-Type": "application/json"}))
    answer = PushResponse.model_validate(response.json())
    assert answer.stored == []
    fields = [r.reason.split(" ")[0] for r in answer.rejected]
    assert fields == ["data", "kind", "data", "at", "data"]
    assert centre.store.event_count() == 0


def test_an_unstorable_clock_sample_is_422_and_stores_nothing(centre: Centre) -> None:
    sample = {"boot_id": "boot-1", "boottime_ns": 2**63, "server_time": CENTRE_T0.isoformat(),
              "rtt_ns": 1}
    response = centre.http.post("/v1/events", json={**push_body([event()]), "clock": sample},
                                headers=auth(centre.device_token))
    problem = assert_problem(response, 422, "clock: a count exceeds 64 bits",
                             "send the clock sample as measured, or none")
    assert problem.error == "invalid_request"
    assert centre.store.event_count() == 0


def test_unstorable_reference_data_is_422_and_changes_nothing(centre: Centre) -> None:
    admin = auth(centre.admin_token)
    bad = {"clients": [{"ref": "K-1", "display_name": "Kar\x00in"}]}
    for response in (centre.http.post("/v1/admin/reference", json=bad, headers=admin),
                     centre.http.put("/v1/admin/reference/client/K-1", json=bad["clients"][0],
                                     headers=admin)):
        problem = assert_problem(response, 422, "data contains a NUL character",
                                 "send plain JSON data; nothing was changed")
        assert problem.error == "invalid_reference"
    assert centre.store.reference_since(0, 10) == ([], 0, False)


# --- reference data and visits ---------------------------------------------------------


def pages(centre: Centre, since: int, limit: int) -> tuple[list[ReferencePage], int]:
    found = []
    more = True
    while more:
        response = centre.http.get("/v1/reference", params={"since": since, "limit": limit},
                                   headers=auth(centre.device_token))
        assert response.status_code == 200, response.text
        page = ReferencePage.model_validate(response.json())
        found.append(page)
        since, more = page.cursor, page.more
    return found, since


def test_reference_pages_and_changes(centre: Centre) -> None:
    imported = centre.http.post("/v1/admin/reference", json=REFERENCE,
                                headers=auth(centre.admin_token))
    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"]["clients"] == 3

    found, cursor = pages(centre, 0, 4)
    assert [len(p.items) for p in found] == [4, 2]
    versions = [i.version for p in found for i in p.items]
    assert versions == sorted(versions) and len(set(versions)) == REFERENCE_RECORDS
    assert all(p.server_time == CENTRE_T0 for p in found)

    changed = centre.http.put("/v1/admin/reference/client/K-1",
                              json={"lock_status": "installed"}, headers=auth(centre.admin_token))
    assert changed.status_code == 200, changed.text
    deleted = centre.http.delete("/v1/admin/reference/tag/04111111111111",
                                 headers=auth(centre.admin_token))
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    [page], cursor = pages(centre, cursor, MAX_REFERENCE_PAGE)
    assert [(i.key, i.deleted, i.data.get("lock_status")) for i in page.items] == [
        ("K-1", False, "installed"), ("04111111111111", True, None)]
    [empty], _ = pages(centre, cursor, MAX_REFERENCE_PAGE)
    assert empty.items == [] and empty.cursor == cursor


def test_reference_problems_are_4xx_with_reasons(centre: Centre) -> None:
    admin = auth(centre.admin_token)
    bad_file = centre.http.post("/v1/admin/reference", headers=admin,
                                json={"tags": [{"uid": "xyz", "client_ref": "K-1"}]})
    assert_problem(bad_file, 422, "not hex", "nothing was changed")
    assert_problem(centre.http.delete("/v1/admin/reference/client/K-404", headers=admin),
                   404, "K-404")
    assert_problem(centre.http.put("/v1/admin/reference/planet/x", json={}, headers=admin),
                   422, "kind")
    assert_problem(centre.http.get("/v1/reference", params={"limit": MAX_REFERENCE_PAGE + 1},
                                   headers=admin), 422, "limit")
    assert_problem(centre.http.get("/v1/reference", params={"since": "-1"}, headers=admin),
                   422, "since")


def test_visits_are_rebuilt_from_pushed_events(centre: Centre) -> None:
    pushed = centre.http.post("/v1/events", json=push_body(visit_events()),
                              headers=auth(centre.device_token))
    assert pushed.status_code == 200
    admin = auth(centre.admin_token)
    response = centre.http.get("/v1/visits", params={"day": "2026-11-30"}, headers=admin)
    assert response.status_code == 200, response.text
    [visit] = response.json()["visits"]
    assert (visit["visit_id"], visit["status"], visit["client_ref"], visit["staff_ref"]) == (
        "v-1", "closed", "K-1", "P-anna")
    assert response.json()["server_time"].startswith("2026-11-30T08:00:00")
    for params in ({"day": "2026-12-01"}, {"client": "K-2"}, {"staff": "P-bo"}):
        other = centre.http.get("/v1/visits", params=params, headers=admin)
        assert other.json()["visits"] == [], params
    assert_problem(centre.http.get("/v1/visits", params={"day": "30/11"}, headers=admin), 422,
                   "day")


def test_admin_lists_devices(centre: Centre) -> None:
    response = centre.http.get("/v1/admin/devices", headers=auth(centre.admin_token))
    assert response.status_code == 200
    devices = {d["name"]: d for d in response.json()["devices"]}
    assert set(devices) == {DEVICE, OTHER, "office"}
    assert devices["office"]["role"] == "admin"
    assert "token" not in json.dumps(devices)


# --- the centre's clock everywhere, health, the OpenAPI document -----------------------

EVERY_KIND_OF_ANSWER = [
    ("GET", "/v1/clock", "device", None, 200),
    ("POST", "/v1/events", "device", push_body([]), 200),
    ("GET", "/v1/reference", "device", None, 200),
    ("GET", "/v1/visits", "admin", None, 200),
    ("GET", "/healthz", None, None, 200),
    ("GET", "/openapi.json", None, None, 200),
    ("POST", "/v1/events", None, push_body([]), 401),
    ("GET", "/v1/visits", "device", None, 403),
    ("GET", "/nowhere", "device", None, 404),
    ("PUT", "/v1/clock", "device", None, 405),
    ("POST", "/v1/events", "device", "x" * (TEST_BODY_LIMIT + 1), 413),
    ("POST", "/v1/events", "device", {"device_id": DEVICE}, 422),
    ("GET", "/v1/clock", "no-protocol", None, 426),
]


@pytest.mark.parametrize(("method", "path", "who", "body", "status"), EVERY_KIND_OF_ANSWER,
                         ids=[f"{c[0]} {c[1]} {c[4]}" for c in EVERY_KIND_OF_ANSWER])
def test_every_answer_carries_the_centres_clock(centre: Centre, method: str, path: str,
                                                who: str | None, body: Any,
                                                status: int) -> None:
    centre.clock.advance(3600)
    expected = CENTRE_T0 + timedelta(hours=1)
    headers = {PROTOCOL_HEADER: "1"}
    if who in ("device", "admin"):
        headers = auth(centre.admin_token if who == "admin" else centre.device_token)
    elif who == "no-protocol":
        headers = {}
    response = centre.http.request(method, path, headers=headers,
                                   **({"json": body} if body is not None else {}))
    assert response.status_code == status, response.text
    assert datetime.fromisoformat(response.headers[SERVER_TIME_HEADER]) == expected
    if path != "/openapi.json":
        assert datetime.fromisoformat(response.json()["server_time"]) == expected


def test_health_checks_the_database(centre: Centre) -> None:
    response = centre.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": centre.store.dialect,
                               "server_time": CENTRE_T0.isoformat().replace("+00:00", "Z")}


@pytest.fixture
def unreachable_database(database_url: str, tmp_path: Path) -> Iterator[CentralStore]:
    """A store whose database does not answer: a folder for SQLite, a closed port."""
    # PostgreSQL on the discard port (refused), or a folder where the SQLite file should be
    pg = "://" in database_url
    where = "postgresql://nyckelfri@127.0.0.1:9/nowhere" if pg else str(tmp_path)
    store = CentralStore(db.create_engine(db.database_url(where)), clock=SteppingClock())
    yield store
    store.close()


def test_database_down_is_503_with_advice(unreachable_database: CentralStore) -> None:
    app = create_app(unreachable_database)
    with run_in_thread(app) as (_s, _t, url), httpx.Client(base_url=url,
                                                           timeout=HTTP_TIMEOUT_S) as http:
        for response in (http.get("/healthz"),
                         http.post("/v1/events", json=push_body([event()]), headers=auth("t"))):
            assert_problem(response, 503, "unavailable", "retry")
            assert int(response.headers["Retry-After"]) > 0
        assert http.get("/v1/clock", headers={PROTOCOL_HEADER: "1"}).status_code == 200


class BrokenStore(CentralStore):
    """A store with a bug: the centre must still answer with a problem, not a traceback."""

    def ping(self) -> None:
        raise RuntimeError("secret internal detail")


def test_an_unexpected_error_is_a_500_problem_without_internals(database_url: str) -> None:
    store = BrokenStore.open(database_url, clock=SteppingClock())
    try:
        with run_in_thread(create_app(store)) as (_s, _t, url):
            response = httpx.get(f"{url}/healthz", timeout=HTTP_TIMEOUT_S)
    finally:
        store.close()
    assert_problem(response, 500, "retry later")
    assert "secret" not in response.text
    assert datetime.fromisoformat(response.headers[SERVER_TIME_HEADER]) == CENTRE_T0


def test_openapi_describes_the_endpoints_and_models(centre: Centre) -> None:
    response = centre.http.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    expected = {
        "/v1/clock": {"get"}, "/v1/events": {"post"}, "/v1/reference": {"get"},
        "/v1/admin/reference": {"post"}, "/v1/admin/reference/{kind}/{key}": {"put", "delete"},
        "/v1/visits": {"get"}, "/v1/admin/devices": {"get"}, "/healthz": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    schemas = spec["components"]["schemas"]
    for model in ("PushRequest", "PushResponse", "Event", "ClockSample", "ReferencePage",
                  "ProblemDetail", "ClockResponse", "Rejection"):
        assert model in schemas, model
    push = paths["/v1/events"]["post"]
    assert {"400", "401", "403", "413", "415", "422", "426", "503"} <= set(push["responses"])
    problem_ref = push["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert problem_ref.endswith("/ProblemDetail")
    assert any(p["name"] == PROTOCOL_HEADER for p in push["parameters"])
    assert push["security"] == [{"token": []}]
    assert spec["components"]["securitySchemes"]["token"]["scheme"] == "bearer"


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    return cert, key


def test_serves_https_with_a_certificate(central_store: CentralStore,
                                         certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    app = create_app(central_store)
    with run_in_thread(app, tls_cert=cert, tls_key=key) as (_s, _t, url):
        assert url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=trust, timeout=HTTP_TIMEOUT_S) as http:
            assert http.get("/v1/clock", headers={PROTOCOL_HEADER: "1"}).status_code == 200


# --- hostile input ----------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
                | st.floats() | st.text(max_size=80))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=20)
offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-1439, 1439))
times = st.datetimes(timezones=st.none() | offsets).map(datetime.isoformat)
visit_data = st.fixed_dictionaries({"visit_id": json_values | st.text(max_size=300)},
                                   optional={"client_ref": json_values,
                                             "staff_ref": json_values,
                                             "tag_uid": json_values,
                                             "method": json_values,
                                             "reason": json_values})
hostile_events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.just(uuid.uuid4().hex) | st.uuids().map(lambda u: u.hex) | json_values,
        "kind": st.sampled_from(["visit.arrived", "visit.departed",
                                 "visit.departure_missing"]) | st.text(max_size=70),
        "device_id": st.just(DEVICE) | st.just(OTHER) | json_values,
        "at": times | json_values,
        "boottime_ns": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
        "boot_id": st.just("boot-1") | st.text(max_size=70),
        "clock_synced": st.booleans() | json_values,
        "data": visit_data | json_values,
    },
)
clock_samples = st.fixed_dictionaries({}, optional={
    "boot_id": st.just("boot-1") | st.text(max_size=70),
    "boottime_ns": st.integers(min_value=-(2**70), max_value=2**70),
    "server_time": times, "rtt_ns": st.integers(min_value=-1, max_value=2**70)})
push_bodies = st.fixed_dictionaries({}, optional={
    "protocol": st.just(1) | json_values,
    "device_id": st.just(DEVICE) | json_values,
    "clock": st.none() | clock_samples | json_values,
    "events": st.lists(hostile_events, max_size=4) | json_values,
}) | json_values
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


def _encode(body: Any, mangle: int) -> bytes:
    raw = json.dumps(body).encode()  # NaN, Infinity and lone surrogates stay in
    if mangle == 1:
        return raw[: len(raw) // 2]
    if mangle == 2:
        return raw.replace(b'"', b"\x00", 1)
    return raw


aware_times = st.datetimes(timezones=offsets).map(datetime.isoformat)
nasty_text = st.text(max_size=80) | st.sampled_from(["", "\x00", "\ud800", "x" * 300, "'; --"])
storable_shape_events = st.fixed_dictionaries({
    "event_id": st.uuids().map(lambda u: u.hex),
    "kind": st.sampled_from(["visit.arrived", "visit.departed", "visit.departure_missing",
                             "tap.refused"]) | st.text(min_size=1, max_size=64),
    "device_id": st.sampled_from([DEVICE, DEVICE, DEVICE, OTHER]),
    "at": aware_times,
    "boottime_ns": st.integers(min_value=0, max_value=2**70),
    "boot_id": st.sampled_from(["boot-1", "boot-2"]) | st.text(min_size=1, max_size=64),
    "clock_synced": st.booleans(),
    "data": st.fixed_dictionaries({"visit_id": st.sampled_from(["v-1", "v-2"]) | nasty_text},
                                  optional={"client_ref": json_values | nasty_text,
                                            "staff_ref": json_values | nasty_text,
                                            "tag_uid": json_values | nasty_text,
                                            "method": json_values | nasty_text,
                                            "reason": json_values}) | json_values.filter(
        lambda v: isinstance(v, dict)),
})
storable_shape_clocks = st.none() | st.fixed_dictionaries({
    "boot_id": st.sampled_from(["boot-1", "boot-2"]) | st.text(min_size=1, max_size=64),
    "boottime_ns": st.integers(min_value=0, max_value=2**70),
    "server_time": aware_times, "rtt_ns": st.integers(min_value=0, max_value=2**70)})


HYPOTHESIS_SETTINGS = settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@HYPOTHESIS_SETTINGS
@given(events=st.lists(storable_shape_events, max_size=5), clock=storable_shape_clocks)
def test_hostile_events_in_a_wellformed_push_never_get_a_5xx(
        centre: Centre, events: list[dict[str, Any]], clock: dict[str, Any] | None) -> None:
    body = {**push_body(events), "clock": clock}
    response = centre.http.post("/v1/events", content=json.dumps(body).encode(),
                                headers=auth(centre.device_token,
                                             **{"Content-Type": "application/json"}))
    note_case(f"HTTP {response.status_code}")
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert_problem(response, 422, "clock")
        return
    answer = PushResponse.model_validate(response.json())
    ids = {e["event_id"] for e in events}
    assert set(answer.stored) | {r.event_id for r in answer.rejected} == ids
    note_case(f"stored {bool(answer.stored)}, rejected {bool(answer.rejected)}")


@HYPOTHESIS_SETTINGS
@given(body=push_bodies, mangle=st.sampled_from([0, 0, 0, 1, 2]),
       token=st.sampled_from(["device", "device", "other", "admin", "bogus"]),
       content_type=st.sampled_from(["application/json", "application/json; charset=utf-8",
                                     "application/merge-patch+json", "text/plain"]) | header_text,
       protocol=st.sampled_from(["1", "1", "1", "2"]) | header_text)
def test_hostile_pushes_never_get_a_5xx(centre: Centre, body: Any, mangle: int, token: str,
                                        content_type: str, protocol: str) -> None:
    tokens = {"device": centre.device_token, "other": centre.other_token,
              "admin": centre.admin_token, "bogus": "bogus"}
    headers = {PROTOCOL_HEADER: protocol, "Authorization": f"Bearer {tokens[token]}",
               "Content-Type": content_type}
    response = centre.http.post("/v1/events", content=_encode(body, mangle), headers=headers)
    note_case(f"HTTP {response.status_code}")
    assert response.status_code < 500, response.text
    assert SERVER_TIME_HEADER in response.headers
    if response.status_code >= 400:
        ProblemDetail.model_validate(response.json())
    else:
        PushResponse.model_validate(response.json())
