"""The centre as the SUN authority, over real HTTP on 127.0.0.1, on SQLite and PostgreSQL:
provisioning an NTAG 424 DNA (the simulated chip of drivers.sim.ntag424, driven by the
real provisioning code of drivers.nfc.provision with the keys the centre answered),
rotation of the master key, and the centre's second check of every tap's SUN across
agents: replays and bad MACs are alerts, the counter survives a restart, an event is
checked once, and no answer ever carries a master key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from central import db
from central.cases import db as cases_db
from central.cases import suncheck, tagkeys
from central.cases.store import RoutineStore
from central.cases.values import ImplementationKind, Principal
from central.http.app import create_app
from central.server import run_in_thread
from central.store import CentralStore
from drivers.nfc.ntag424 import Ntag424
from drivers.nfc.provision import provision_ntag424
from drivers.sim.ntag424 import Ntag424Sim
from routine import sun
from sync.protocol import (
    PROTOCOL_HEADER,
    ProblemDetail,
    ProvisionedAnswer,
    ProvisionKeys,
    PushResponse,
    ReferenceKind,
    TagKeysPage,
)
from tests.central.conftest import CENTRE_T0, SteppingClock

NORD, SYD = "hemtjanst-nord", "hemtjanst-syd"
READER = Principal("office", "admin", None)  # reads tags and stock
ADMIN, PROVIDER, OTHER_PROVIDER = "office", "utforare-nord", "utforare-syd"
PI_1, PI_2, PI_SYD, PI_BARE = "pi-nord-1", "pi-nord-2", "pi-syd", "pi-bare"
TAG_A, TAG_B, TAG_C = "04C767F2066180", "04DE5F1EACC040", "04A1B2C3D4E5F6"
CLIENTS = {"K-1": "pending", "K-2": "impossible", "K-3": "installed", "K-4": "pending"}
STOCK = 5
HTTP_TIMEOUT_S = 10.0
TAP_AT = CENTRE_T0 - timedelta(minutes=10)


# --- the centre --------------------------------------------------------------------------


@dataclass
class Centre:
    store: CentralStore
    routine: RoutineStore
    http: httpx.Client
    tokens: dict[str, str]
    seen: list[str] = field(default_factory=list)  # every answer's body, for the key grep

    def call(self, method: str, who: str, path: str, body: Any = None, *,
             expect: int = 200) -> httpx.Response:
        response = self.http.request(method, path, json=body, headers={
            PROTOCOL_HEADER: "1", "Authorization": f"Bearer {self.tokens[who]}"})
        self.seen.append(response.text)
        assert response.status_code == expect, response.text
        return response

    def post(self, who: str, path: str, body: Any, *, expect: int = 200) -> Any:
        return self.call("POST", who, path, body, expect=expect).json()

    def get(self, who: str, path: str, *, expect: int = 200) -> Any:
        return self.call("GET", who, path, expect=expect).json()

    def masters(self) -> dict[int, bytes]:
        with self.store._read() as conn:
            versions = set(conn.execute(sa.select(cases_db.tag_master_keys.c.version))
                           .scalars())
            return tagkeys.masters(conn, versions)

    def counter(self, uid: str) -> int | None:
        with self.store._read() as conn:
            return suncheck.last_counter(conn, uid)

    def checks(self, uid: str | None = None) -> list[dict[str, Any]]:
        with self.store._read() as conn:
            return suncheck.checks(conn, uid=uid)

    def copy_alerts(self) -> list[dict[str, Any]]:
        alerts = self.get(PROVIDER, "/v1/alerts")["alerts"]
        return [a for a in alerts if a["kind"] == "tag_copy_suspected"]


def enrol(store: CentralStore, routine: RoutineStore) -> dict[str, str]:
    tokens = {ADMIN: store.add_device(ADMIN, "admin"),
              PROVIDER: store.add_device(PROVIDER, "provider", NORD),
              OTHER_PROVIDER: store.add_device(OTHER_PROVIDER, "provider", SYD),
              PI_1: store.add_device(PI_1, "device", NORD),
              PI_2: store.add_device(PI_2, "device", NORD),
              PI_SYD: store.add_device(PI_SYD, "device", SYD),
              PI_BARE: store.add_device(PI_BARE, "device")}
    for ref, status in CLIENTS.items():
        store.upsert_reference(ReferenceKind.CLIENT, ref, {"ref": ref, "lock_status": status})
    nord, syd = Principal(PROVIDER, "provider", NORD), Principal(OTHER_PROVIDER, "provider", SYD)
    routine.tags.add_stock(NORD, STOCK, nord)
    routine.tags.add_stock(SYD, STOCK, syd)
    routine.implementations.start("K-1", ImplementationKind.HOME_CARE, NORD, date(2026, 11, 2),
                                 nord)
    return tokens


@contextmanager
def centre_on(database_url: str, clock: SteppingClock,
              tokens: dict[str, str] | None = None) -> Iterator[Centre]:
    """A centre served on loopback over ``database_url``; ``tokens``: already enrolled."""
    store = CentralStore.open(database_url, clock=clock)
    try:
        routine = RoutineStore(store)
        tokens = tokens if tokens is not None else enrol(store, routine)
        with run_in_thread(create_app(store, routine=routine)) as (_s, _t, url), \
                httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
            yield Centre(store, routine, http, tokens)
    finally:
        store.close()


@pytest.fixture
def centre(database_url: str, central_clock: SteppingClock) -> Iterator[Centre]:
    with centre_on(database_url, central_clock) as c:
        yield c


# --- the tag and the agents ------------------------------------------------------------------


def keys_of(answer: ProvisionKeys) -> tuple[list[bytes], list[bytes]]:
    return ([bytes.fromhex(k) for k in answer.keys],
            [bytes.fromhex(k) for k in answer.current_keys])


def write(chip: Ntag424Sim, answer: ProvisionKeys) -> str:
    """What 'nyckelfri tag provision' does to the tag with the centre's answer."""
    new, current = keys_of(answer)
    chip.new_activation()
    return provision_ntag424(chip.process_apdu, chip.uid, new, current, answer.url_base,
                             key_version=answer.key_version)


def provision(c: Centre, uid: str, client: str = "K-1", *, who: str = PROVIDER,
              chip: Ntag424Sim | None = None) -> tuple[Ntag424Sim, ProvisionKeys,
                                                         ProvisionedAnswer]:
    chip = chip or Ntag424Sim(bytes.fromhex(uid))
    answer = ProvisionKeys.model_validate(
        c.post(who, f"/v1/tags/{uid}/provision", {"client_ref": client}))
    url = write(chip, answer)
    done = ProvisionedAnswer.model_validate(
        c.post(who, f"/v1/tags/{uid}/provisioned", {"sun_url": url}))
    return chip, answer, done


def tap(chip: Ntag424Sim) -> str:
    """A phone or reader taps the tag: a fresh SUN URL."""
    chip.new_activation()
    return Ntag424(chip.process_apdu).read_url()


def tap_event(device: str, uid: str, url: str | None, *, kind: str = "visit.arrived",
              client: str = "K-1", verdict: str = "ok", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"client_ref": client, "staff_ref": "P-anna", **extra}
    if kind == "tap.refused":
        data["uid"] = uid
    else:
        data.update(visit_id=uuid.uuid4().hex, tag_uid=uid, method="nfc_tag")
    if url is not None:
        data["sun"] = {"url": url, "counter": None, "verdict": verdict}
    return {"event_id": uuid.uuid4().hex, "kind": kind, "device_id": device,
            "at": TAP_AT.isoformat(), "boottime_ns": 1, "boot_id": "boot-1",
            "clock_synced": True, "data": data}


def push(c: Centre, device: str, *events: dict[str, Any]) -> PushResponse:
    body = {"protocol": 1, "device_id": device, "events": list(events)}
    answer = PushResponse.model_validate(c.post(device, "/v1/events", body))
    assert answer.stored == [e["event_id"] for e in events] and not answer.rejected
    return answer


def assert_problem(response: httpx.Response, error: str, *fragments: str) -> None:
    problem = ProblemDetail.model_validate(response.json())
    assert problem.error == error, problem
    for fragment in fragments:
        assert fragment in problem.detail, problem.detail
    assert problem.advice


def assert_no_master_key(c: Centre) -> None:
    masters = c.masters()
    assert masters
    for key in masters.values():
        for text in c.seen:
            assert key.hex() not in text.lower()


# --- provisioning ------------------------------------------------------------------------------


def test_provisioning_issues_the_tag_with_its_new_keys(centre: Centre) -> None:
    chip, answer, done = provision(centre, TAG_A)
    master = centre.masters()[1]
    assert (answer.uid, answer.client_ref, answer.key_version) == (TAG_A, "K-1", 1)
    assert answer.keys == [k.hex() for k in sun.tag_key_set(master, bytes.fromhex(TAG_A))]
    assert len(set(answer.keys)) == 5
    assert (answer.current_key_version, answer.current_keys) == (0, ["00" * 16] * 5)
    assert answer.url_base == "https://nyckelfri.example/t"
    assert (done.uid, done.client_ref, done.key_version, done.counter) == (TAG_A, "K-1", 1, 1)
    assert centre.counter(TAG_A) == 1
    # Issued through the routine: from the unit's stock, registered, in the reference data.
    tag = centre.routine.tags.get(TAG_A, actor=READER)
    assert (tag.client_ref, tag.provider_unit, tag.state.value, tag.issued_by,
            tag.key_version) == ("K-1", NORD, "issued", PROVIDER, 1)
    assert centre.routine.tags.stock(NORD, actor=READER) == STOCK - 1
    items, _, _ = centre.store.reference_since(0, 1000)
    assert [i.data for i in items if i.kind == ReferenceKind.TAG] == [
        {"uid": TAG_A, "client_ref": "K-1", "active": True}]
    # The tag now reads URLs the agents of its unit can verify with what they pull.
    page = TagKeysPage.model_validate(centre.get(PI_1, "/v1/tag-keys"))
    [held] = page.tags
    keys = sun.TagKeys(meta_read=bytes.fromhex(held.meta_read),
                       file_read=bytes.fromhex(held.file_read))
    assert sun.verify_sun(tap(chip), keys, expected_uid=chip.uid).counter == 2
    assert_no_master_key(centre)


def test_an_admin_provisions_for_the_clients_home_care_unit(centre: Centre) -> None:
    _, _, done = provision(centre, TAG_A, who=ADMIN)
    assert done.key_version == 1
    assert centre.routine.tags.get(TAG_A, actor=READER).provider_unit == NORD
    # A client with no running home care: the admin has no unit to issue it from.
    refused = centre.call("POST", ADMIN, f"/v1/tags/{TAG_B}/provision",
                          {"client_ref": "K-2"}, expect=409)
    assert_problem(refused, "conflict", "no running home care")


def test_a_cut_provisioning_gets_the_same_keys_again(centre: Centre) -> None:
    path = f"/v1/tags/{TAG_A}/provision"
    first = ProvisionKeys.model_validate(centre.post(PROVIDER, path, {"client_ref": "K-1"}))
    centre.routine.sun.rotate()  # even a rotation meanwhile does not change them
    again = ProvisionKeys.model_validate(centre.post(PROVIDER, path, {"client_ref": "K-1"}))
    assert again == first and again.key_version == 1
    # Not confirmed: the tag is not issued, its new keys are nobody's yet.
    assert centre.routine.tags.find("K-1", actor=READER) == []
    assert TagKeysPage.model_validate(centre.get(PI_1, "/v1/tag-keys")).tags == []
    chip = Ntag424Sim(bytes.fromhex(TAG_A))
    url = write(chip, again)
    done = ProvisionedAnswer.model_validate(
        centre.post(PROVIDER, f"/v1/tags/{TAG_A}/provisioned", {"sun_url": url}))
    assert done.key_version == 1
    # The confirmation sent once more (its answer was lost): a fresh read confirms again;
    # the same URL again is a replay.
    again_done = centre.post(PROVIDER, f"/v1/tags/{TAG_A}/provisioned", {"sun_url": tap(chip)})
    assert (again_done["key_version"], again_done["counter"]) == (1, 2)
    replay = centre.call("POST", PROVIDER, f"/v1/tags/{TAG_A}/provisioned", {"sun_url": url},
                         expect=409)
    assert_problem(replay, "sun_not_verified", "not above the last accepted")
    assert centre.routine.tags.stock(NORD, actor=READER) == STOCK - 1
    assert_no_master_key(centre)


def test_provisioning_follows_the_tag_lifecycle(centre: Centre) -> None:
    def refused(who: str, uid: str, client: str, status: int, error: str, *text: str) -> None:
        response = centre.call("POST", who, f"/v1/tags/{uid}/provision",
                               {"client_ref": client}, expect=status)
        assert_problem(response, error, *text)

    refused(PROVIDER, TAG_A, "K-3", 409, "tag_not_issuable", "lock status 'installed'")
    refused(PROVIDER, TAG_A, "K-404", 409, "tag_not_issuable", "not in the reference data")
    refused(PROVIDER, "04A1B2C3", "K-1", 422, "invalid_request", "7-byte UID")
    refused(PI_1, TAG_A, "K-1", 403, "access_denied")
    _, _, _ = provision(centre, TAG_A)
    refused(PROVIDER, TAG_A, "K-4", 409, "tag_not_issuable", "registered to client K-1")
    refused(OTHER_PROVIDER, TAG_A, "K-1", 403, "access_denied", NORD)
    centre.store.upsert_reference(ReferenceKind.TAG, TAG_C, {"uid": TAG_C, "client_ref": "K-2"})
    refused(PROVIDER, TAG_C, "K-1", 409, "tag_not_issuable", "registered to client K-2")
    # A tag taken down is done.
    centre.routine.tags.lost(TAG_A, Principal(PROVIDER, "provider", NORD))
    refused(PROVIDER, TAG_A, "K-1", 409, "tag_not_issuable", "was lost")
    # No stock: refused before anything is written to a tag.
    with centre.store._write() as conn:
        conn.execute(sa.update(cases_db.tag_stock).values(count=0))
    refused(PROVIDER, TAG_B, "K-4", 409, "tag_stock_empty", NORD)


def test_a_url_that_does_not_verify_confirms_nothing(centre: Centre) -> None:
    answer = ProvisionKeys.model_validate(
        centre.post(PROVIDER, f"/v1/tags/{TAG_A}/provision", {"client_ref": "K-1"}))
    chip = Ntag424Sim(bytes.fromhex(TAG_A))
    url = write(chip, answer)
    forged = url[:-2] + ("00" if not url.endswith("00") else "11")
    for bad, text in ((forged, "does not verify"), ("https://x.example/t?e=00", "does not verify")):
        response = centre.call("POST", PROVIDER, f"/v1/tags/{TAG_A}/provisioned",
                               {"sun_url": bad}, expect=409)
        assert_problem(response, "sun_not_verified", text)
    assert centre.routine.tags.find("K-1", actor=READER) == [] and centre.counter(TAG_A) is None
    nothing = centre.call("POST", PROVIDER, f"/v1/tags/{TAG_B}/provisioned",
                          {"sun_url": url}, expect=409)
    assert_problem(nothing, "conflict", "no provisioning of tag")


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_then_reprovisioning_moves_the_tag_to_the_new_version(centre: Centre) -> None:
    chip, first, _ = provision(centre, TAG_A)
    _, other, _ = provision(centre, TAG_B, "K-4")
    old = TagKeysPage.model_validate(centre.get(PI_1, "/v1/tag-keys"))
    assert centre.routine.sun.rotate() == 2
    # The tags keep their keys until provisioned again.
    assert TagKeysPage.model_validate(centre.get(PI_1, "/v1/tag-keys")).tags == old.tags
    _, second, done = provision(centre, TAG_A, chip=chip)
    assert (second.key_version, second.current_key_version) == (2, 1)
    assert second.current_keys == first.keys and set(second.keys).isdisjoint(first.keys)
    assert done.key_version == 2 and done.counter > 1
    assert centre.routine.tags.get(TAG_A, actor=READER).key_version == 2
    assert centre.routine.tags.stock(NORD,
                                     actor=READER) == STOCK - 2  # re-provisioning takes no new tag
    page = TagKeysPage.model_validate(centre.get(PI_1, "/v1/tag-keys"))
    held = {t.uid: t for t in page.tags}
    assert (held[TAG_A].key_version, held[TAG_B].key_version) == (2, 1)
    new_keys = [bytes.fromhex(k) for k in second.keys]
    assert (held[TAG_A].file_read, held[TAG_A].meta_read) == (new_keys[1].hex(),
                                                              new_keys[2].hex())
    text = centre.seen[-1]
    assert not any(k in text for k in first.keys)  # the old keys are gone for good
    assert held[TAG_B] == next(t for t in old.tags if t.uid == TAG_B)
    versions = {v.version: v for v in centre.routine.sun.key_versions()}
    assert [(v.tags, v.pending, v.newest) for v in versions.values()] == [
        (1, 0, False), (1, 0, True)]
    # Its taps verify with the new keys at the centre.
    push(centre, PI_1, tap_event(PI_1, TAG_A, tap(chip)))
    assert [c["verdict"] for c in centre.checks(TAG_A)] == ["ok"]
    assert other.key_version == 1
    assert_no_master_key(centre)


# --- the centre's check of taps ------------------------------------------------------------------


def test_a_url_replayed_from_a_second_device_is_an_alert(centre: Centre) -> None:
    chip, _, _ = provision(centre, TAG_A)
    url = tap(chip)  # counter 2
    push(centre, PI_1, tap_event(PI_1, TAG_A, url))
    assert centre.counter(TAG_A) == 2
    copied = tap_event(PI_2, TAG_A, url)  # PI_2 never saw it: its own check passed
    push(centre, PI_2, copied)
    assert centre.counter(TAG_A) == 2  # not advanced
    assert copied["event_id"] in {e["event_id"] for e in centre.store.events(device=PI_2)}
    [alert] = centre.copy_alerts()
    assert (alert["subject"], alert["client_ref"], alert["device"], alert["verdict"]) == (
        TAG_A, "K-1", PI_2, "replay")
    assert alert["severity"] == "warning" and "copied" in alert["detail"]
    assert "provision the tag again" in alert["detail"]
    [check] = [c for c in centre.checks(TAG_A) if c["device"] == PI_2]
    assert (check["verdict"], check["counter"], check["last_counter"]) == ("replay", 2, 2)
    # A fresh read from the same device is fine, and moves the counter on.
    push(centre, PI_2, tap_event(PI_2, TAG_A, tap(chip), kind="visit.departed"))
    assert centre.counter(TAG_A) == 3
    assert len(centre.copy_alerts()) == 1


def test_a_bad_mac_or_another_tags_url_is_an_alert(centre: Centre) -> None:
    chip, _, _ = provision(centre, TAG_A)
    other, _, _ = provision(centre, TAG_B, "K-4")
    url = tap(chip)
    forged = url[:-16] + ("0" * 16 if not url.endswith("0" * 16) else "1" * 16)
    push(centre, PI_1, tap_event(PI_1, TAG_A, forged),
         tap_event(PI_1, TAG_A, tap(other)))  # tag B's URL under tag A's UID
    assert centre.counter(TAG_A) == 1 and centre.counter(TAG_B) == 1
    assert sorted(c["verdict"] for c in centre.checks(TAG_A)) == ["bad_mac", "malformed"]
    [alert] = centre.copy_alerts()
    assert (alert["subject"], alert["device"], alert["verdict"]) == (
        TAG_A, PI_1, "bad_mac, malformed")
    # The genuine URL, sent afterwards, is accepted: nothing forged moved the counter.
    push(centre, PI_1, tap_event(PI_1, TAG_A, url))
    assert centre.counter(TAG_A) == 2


def test_an_agents_refusal_of_the_tag_is_an_alert_by_itself(centre: Centre) -> None:
    chip, _, _ = provision(centre, TAG_A)
    push(centre, PI_1,
         tap_event(PI_1, TAG_C, None, kind="tap.refused", reason="not_genuine"),
         tap_event(PI_1, TAG_A, tap(chip), kind="tap.refused", reason="sun_bad_mac",
                   verdict="bad_mac"),
         tap_event(PI_1, TAG_A, None, kind="tap.refused", reason="unknown_tag"),
         tap_event(PI_1, TAG_A, None))  # no SUN at all: as before, not checked
    alerts = {a["subject"]: a for a in centre.copy_alerts()}
    assert alerts[TAG_C]["verdict"] == "agent refused: not_genuine"
    assert alerts[TAG_A]["verdict"] == "agent refused: sun_bad_mac"
    # The centre found that URL valid: it moves the counter on all the same.
    assert centre.counter(TAG_A) == 2
    assert [(c["refusal"], c["verdict"], c["agent_verdict"]) for c in centre.checks(TAG_A)] == [
        ("sun_bad_mac", "ok", "bad_mac")]
    assert len(centre.store.events()) == 4


def test_an_event_sent_again_is_checked_once(centre: Centre) -> None:
    chip, _, _ = provision(centre, TAG_A)
    event = tap_event(PI_1, TAG_A, tap(chip))
    push(centre, PI_1, event)
    push(centre, PI_1, event)  # the agent did not hear the answer and sends it again
    assert [c["verdict"] for c in centre.checks(TAG_A)] == ["ok"]
    assert centre.counter(TAG_A) == 2 and centre.copy_alerts() == []


def test_counters_survive_a_restart_of_the_centre(database_url: str,
                                                  central_clock: SteppingClock) -> None:
    with centre_on(database_url, central_clock) as first:
        chip, _, _ = provision(first, TAG_A)
        url = tap(chip)
        push(first, PI_1, tap_event(PI_1, TAG_A, url))
        tokens = first.tokens
    with centre_on(database_url, central_clock, tokens) as second:
        assert second.counter(TAG_A) == 2
        push(second, PI_2, tap_event(PI_2, TAG_A, url))
        [alert] = second.copy_alerts()
        assert (alert["device"], alert["verdict"]) == (PI_2, "replay")
        push(second, PI_2, tap_event(PI_2, TAG_A, tap(chip)))
        assert second.counter(TAG_A) == 3
        assert TagKeysPage.model_validate(second.get(PI_1, "/v1/tag-keys")).tags[0].uid == TAG_A


def test_a_suspect_read_is_shown_for_a_week(centre: Centre, central_clock: SteppingClock) -> None:
    chip, _, _ = provision(centre, TAG_A)
    url = tap(chip)
    push(centre, PI_1, tap_event(PI_1, TAG_A, url), tap_event(PI_1, TAG_A, url))
    assert len(centre.copy_alerts()) == 1
    central_clock.advance(timedelta(days=7, seconds=1).total_seconds())
    assert centre.copy_alerts() == []


# --- the migration -------------------------------------------------------------------------------


def test_migration_0005_goes_down_and_up_again(database_url: str) -> None:
    engine = db.create_engine(db.database_url(database_url))
    try:
        db.upgrade(engine)
        for target in ("0004", "head"):
            with db.write_transaction(engine) as conn:
                step = command.downgrade if target == "0004" else command.upgrade
                step(db.alembic_config(conn), target)
            tables = set(sa.inspect(engine).get_table_names())
            columns = {c["name"] for c in sa.inspect(engine).get_columns("nfc_tags")}
            sun_tables = {"tag_master_keys", "sun_counters", "tag_provisionings", "sun_checks",
                          "centre_settings"}
            if target == "0004":
                assert not sun_tables & tables and "key_version" not in columns
            else:
                assert sun_tables <= tables and "key_version" in columns
        with engine.connect() as conn:
            assert db.current_revision(conn) == db.head_revision()
    finally:
        engine.dispose()
