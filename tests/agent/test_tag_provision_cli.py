"""``nyckelfri tag provision`` end to end: the CLI, nfcpy's real drivers, a centre on HTTP.

STAND-IN CENTRE: central/ does not serve ``POST /v1/tags/{uid}/provision`` and
``/provisioned`` yet, so :class:`StandInCentre` is a tiny real HTTP server on loopback
that answers both with the wire models of sync.protocol (bearer token, protocol header,
ProblemDetail refusals) and keeps the centre's side of the bargain: the same pending key
version until it is confirmed, and the SUN URL verified before confirming. Replace it
with a real ``nyckelfri-central serve`` once central has the endpoints.

The tag is a simulated NTAG 424 DNA in the field of nfcpy's ``udp`` driver (and once of
the PN532 emulator on a pty); the CLI runs in-process through click's runner.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.cli import EXIT_DATA, EXIT_HARDWARE, EXIT_NETWORK, EXIT_REFUSED, main
from drivers.nfc.ntag424 import Ntag424
from drivers.sim.ntag424 import Ntag424Sim, Ntag424Tag
from drivers.sim.pn532 import Pn532Emulator
from drivers.sim.tags import Ntag21x, TagFaults
from drivers.sim.udp_tag import UdpTagServer
from routine.sun import SunError, sun_keys, tag_key_set, verify_sun
from sync.protocol import (
    PROTOCOL_HEADER,
    ProblemDetail,
    ProvisionedAnswer,
    ProvisionedRequest,
    ProvisionKeys,
    ProvisionRequest,
)

pytestmark = pytest.mark.timeout(120)

UID = bytes.fromhex("04C0FFEE123456")
UID_HEX = UID.hex().upper()
CLIENT = "K-0042"
TOKEN = "provisioning-token-for-tests"
URL_BASE = "https://nyckelfri.example/t"
FACTORY = [bytes(16)] * 5


def keys_of(version: int) -> list[bytes]:
    """The stand-in's key versions: 0 the factory keys, then one master per version."""
    return FACTORY if version == 0 else tag_key_set(bytes([version]) * 16, UID)


@dataclass
class StandInCentre:
    """Standing in for the centre until central/ serves the two endpoints (see above)."""

    clients: set[str] = field(default_factory=lambda: {CLIENT})
    confirmed: dict[str, int] = field(default_factory=dict)  # UID -> key version on the tag
    counters: dict[str, int] = field(default_factory=dict)
    fail_provisioned: int | None = None  # answer /provisioned with this status
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def answer(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, str]:
        self.requests.append(f"{method} {path}")
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, self.problem("unauthorized", "the token is not valid",
                                     "ask the centre's administrator for a token")
        if headers.get(PROTOCOL_HEADER) != "1":
            return 426, self.problem("protocol", "speak protocol 1")
        parts = path.strip("/").split("/")
        if method != "POST" or len(parts) != 4 or parts[:2] != ["v1", "tags"]:
            return 404, self.problem("not_found", f"no such endpoint {path}")
        uid, action = parts[2], parts[3]
        if action == "provision":
            return self.provision(uid, ProvisionRequest.model_validate_json(body))
        if action == "provisioned":
            return self.provisioned(uid, ProvisionedRequest.model_validate_json(body))
        return 404, self.problem("not_found", f"no such endpoint {path}")

    def provision(self, uid: str, request: ProvisionRequest) -> tuple[int, str]:
        if request.client_ref not in self.clients:
            return 404, self.problem("unknown_client", f"no client {request.client_ref}",
                                     "check the client reference on the order")
        current = self.confirmed.get(uid, 0)
        return 200, ProvisionKeys(
            uid=uid, client_ref=request.client_ref, key_version=current + 1,
            keys=[k.hex() for k in keys_of(current + 1)],
            current_keys=[k.hex() for k in keys_of(current)], current_key_version=current,
            url_base=URL_BASE).model_dump_json()

    def provisioned(self, uid: str, request: ProvisionedRequest) -> tuple[int, str]:
        if self.fail_provisioned is not None:
            return self.fail_provisioned, self.problem("busy", "the centre is restarting")
        pending = self.confirmed.get(uid, 0) + 1
        try:
            reading = verify_sun(request.sun_url, sun_keys(keys_of(pending)),
                                 expected_uid=bytes.fromhex(uid))
        except SunError as error:
            return 422, self.problem("bad_sun", str(error))
        self.confirmed[uid], self.counters[uid] = pending, reading.counter
        return 200, ProvisionedAnswer(uid=uid, client_ref=CLIENT, key_version=pending,
                                      counter=reading.counter,
                                      server_time=datetime.now(UTC)).model_dump_json()

    @staticmethod
    def problem(error: str, detail: str, advice: str = "") -> str:
        return ProblemDetail(error=error, detail=detail, advice=advice).model_dump_json()


@pytest.fixture
def centre() -> Iterator[StandInCentre]:
    state = StandInCentre()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, text = state.answer("POST", self.path, self.headers, body)
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def udp() -> Iterator[UdpTagServer]:
    with UdpTagServer() as server:
        yield server


@pytest.fixture
def env(tmp_path: Any) -> dict[str, str]:
    return {"NYCKELFRI_DATA_DIR": str(tmp_path / "data")}


def run(env: dict[str, str], reader: str, *args: str, centre: StandInCentre | None = None,
        token: str = TOKEN) -> Result:
    options = ["--centre", centre.url, "--token", token] if centre is not None else []
    return CliRunner().invoke(main, ["tag", "provision", "--reader", reader, "--client", CLIENT,
                                     "--timeout", "10", *options, *args], env=env)


def tap_url(chip: Ntag424Sim) -> str:
    """What a phone reads next (in-process; the nfcpy paths: tests/drivers/test_provision.py)."""
    chip.new_activation()
    return Ntag424(chip.process_apdu).read_url()


def test_provision_a_factory_tag_then_rotate_its_keys(centre: StandInCentre,
                                                      udp: UdpTagServer,
                                                      env: dict[str, str]) -> None:
    chip = Ntag424Sim(UID)
    udp.present(Ntag424Tag(chip))

    result = run(env, udp.path, centre=centre)

    assert result.exit_code == 0, result.output
    assert (f"tag {UID_HEX} (NTAG 424 DNA) provisioned for client {CLIENT}: key version 1 "
            "(was factory keys), SUN counter 1; the centre confirmed (counter 1)") in result.output
    assert f"  {URL_BASE}?e=" in result.output
    assert centre.requests == [f"POST /v1/tags/{UID_HEX}/provision",
                               f"POST /v1/tags/{UID_HEX}/provisioned"]
    assert centre.confirmed == {UID_HEX: 1} and chip.keys == keys_of(1)
    assert verify_sun(tap_url(chip), sun_keys(keys_of(1)), expected_uid=UID).counter == 2

    again = run(env, udp.path, "--json", centre=centre)

    assert again.exit_code == 0, again.output
    outcome = json.loads(again.stdout)
    assert outcome | {"sun_url": None} == {
        "uid": UID_HEX, "product": "NTAG 424 DNA", "client_ref": CLIENT, "key_version": 2,
        "previous_key_version": 1, "counter": 3, "centre_counter": 3, "sun_url": None}
    assert chip.keys == keys_of(2) and centre.confirmed == {UID_HEX: 2}


def test_centre_and_token_from_the_environment(centre: StandInCentre, udp: UdpTagServer,
                                               env: dict[str, str]) -> None:
    udp.present(Ntag424Tag(Ntag424Sim(UID)))
    result = run({**env, "NYCKELFRI_CENTRE_URL": centre.url, "NYCKELFRI_TOKEN": TOKEN},
                 udp.path)
    assert result.exit_code == 0, result.output
    assert centre.confirmed == {UID_HEX: 1}


def test_over_the_pn532_on_a_pty(centre: StandInCentre, env: dict[str, str]) -> None:
    chip = Ntag424Sim(UID)
    with Pn532Emulator(Ntag424Tag(chip)) as emulator:
        result = run(env, emulator.reader_path, centre=centre)
    assert result.exit_code == 0, result.output
    assert chip.keys == keys_of(1) and centre.confirmed == {UID_HEX: 1}


def test_centre_refusals_show_its_problem_detail(centre: StandInCentre, udp: UdpTagServer,
                                                 env: dict[str, str]) -> None:
    chip = Ntag424Sim(UID)
    udp.present(Ntag424Tag(chip))
    centre.clients.clear()

    result = run(env, udp.path, centre=centre)

    assert result.exit_code == EXIT_DATA
    assert "refused POST /v1/tags/04C0FFEE123456/provision (404): unknown_client: no client " \
           "K-0042; check the client reference on the order" in result.output
    assert chip.keys == FACTORY  # the tag was only identified

    wrong = run(env, udp.path, centre=centre, token="wrong")
    assert wrong.exit_code == EXIT_DATA and "(401)" in wrong.output and "token" in wrong.output


def test_no_centre_configured_is_a_data_error(udp: UdpTagServer, env: dict[str, str]) -> None:
    result = run(env, udp.path)
    assert result.exit_code == EXIT_DATA and "no centre to get the tag's keys from" in result.output


def test_no_tag_within_the_timeout(centre: StandInCentre, udp: UdpTagServer,
                                   env: dict[str, str]) -> None:
    result = run(env, udp.path, "--timeout", "1", centre=centre)
    assert result.exit_code == EXIT_REFUSED
    assert "no tag on the reader within 1 s" in result.output
    assert centre.requests == []


def test_a_tag_that_is_not_an_ntag424(centre: StandInCentre, udp: UdpTagServer,
                                      env: dict[str, str]) -> None:
    udp.present(Ntag21x(UID, "NTAG215"))
    result = run(env, udp.path, centre=centre)
    assert result.exit_code == EXIT_REFUSED
    assert "is NXP NTAG215, not an NTAG 424 DNA" in result.output
    assert centre.requests == []


def test_wrong_keys_at_the_centre(centre: StandInCentre, udp: UdpTagServer,
                                  env: dict[str, str]) -> None:
    chip = Ntag424Sim(UID, keys_of(7))  # provisioned by someone the centre does not know of
    udp.present(Ntag424Tag(chip))
    result = run(env, udp.path, centre=centre)
    assert result.exit_code == EXIT_REFUSED
    assert "this tag's keys are not the ones the centre expects" in result.output
    assert chip.keys == keys_of(7) and centre.confirmed == {}


def test_pulled_away_then_rerun(centre: StandInCentre, udp: UdpTagServer,
                                env: dict[str, str]) -> None:
    chip = Ntag424Sim(UID)
    udp.present(Ntag424Tag(chip, TagFaults(mute_after=14)))  # mid-way through ChangeKey

    cut = run(env, udp.path, centre=centre)

    assert cut.exit_code == EXIT_HARDWARE
    assert "stopped answering" in cut.output and "run the same provisioning again" in cut.output
    assert centre.confirmed == {}
    udp.present(Ntag424Tag(chip))
    again = run(env, udp.path, centre=centre)
    assert again.exit_code == 0, again.output
    assert chip.keys == keys_of(1) and centre.confirmed == {UID_HEX: 1}


def test_centre_down_at_confirmation_then_rerun(centre: StandInCentre, udp: UdpTagServer,
                                                env: dict[str, str]) -> None:
    chip = Ntag424Sim(UID)
    udp.present(Ntag424Tag(chip))
    centre.fail_provisioned = 503

    unconfirmed = run(env, udp.path, centre=centre)

    assert unconfirmed.exit_code == EXIT_NETWORK
    assert "holds key version 1 but the centre did not confirm it" in unconfirmed.output
    assert chip.keys == keys_of(1) and centre.confirmed == {}
    centre.fail_provisioned = None
    again = run(env, udp.path, centre=centre)  # the centre still says: factory keys
    assert again.exit_code == 0, again.output
    assert "key version 1 (was factory keys)" in again.output
    assert centre.confirmed == {UID_HEX: 1}
