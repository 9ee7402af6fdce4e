"""Provision a client's NTAG 424 DNA: keys from the centre, SUN on the tag, confirmation.

``nyckelfri tag provision`` runs :func:`provision_tag`:

1. open the reader (:func:`drivers.nfc.reader.open_frontend`) and wait for one tag;
2. check it is an NTAG 424 DNA (:func:`drivers.nfc.provision.identify_ntag424`) before
   asking the centre for anything;
3. ``POST /v1/tags/{uid}/provision`` -> :class:`~sync.protocol.ProvisionKeys`: the five
   new keys, the five the tag holds now, the URL base;
4. :func:`drivers.nfc.provision.provision_ntag424` over nfcpy's ``tag.transceive``;
5. verify the URL read back with :func:`routine.sun.verify_sun` and the new keys,
   here, before telling anyone;
6. ``POST /v1/tags/{uid}/provisioned`` with that URL: the centre switches to the new
   key version and takes the counter as the last one accepted.

Each step may be cut (tag pulled away, network gone); running the same command again
finishes the job: the centre hands out the same pending key version until it is
confirmed, and the tag side tries the new keys where the current ones stopped working.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import httpx
import nfc.tag.tt4
from pydantic import BaseModel, ValidationError

from drivers.nfc.provision import NotNtag424Error, identify_ntag424, provision_ntag424
from drivers.nfc.reader import TARGETS, open_frontend
from routine.sun import SunError, sun_keys, verify_sun
from sync.errors import (
    CentreAnswerError,
    CentreUnreachable,
    Forbidden,
    ProtocolMismatch,
    RejectedRequest,
    Unauthorized,
)
from sync.protocol import (
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    ProblemDetail,
    ProvisionedAnswer,
    ProvisionedRequest,
    ProvisionKeys,
    ProvisionRequest,
)

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

# Long enough to take the tag out of its sleeve and hold it to the reader.
DEFAULT_TAG_TIMEOUT_S = 30.0
# One poll of nfcpy's connect loop: the --timeout is checked this often.
POLL_INTERVAL_S = 0.1
# nfcpy's connect() returns False when the reader errs (a udp: path with no simulator
# listening yet): look again after this pause, until the timeout.
READER_RETRY_S = 0.2
# Provisioning is interactive and a person reruns it: one attempt per request, with
# timeouts that fail within seconds over a mobile link instead of hanging.
HTTP_TIMEOUTS = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=5.0)
USER_AGENT = "nyckelfri-agent (tag provision)"


class TagProvisionError(Exception):
    """Root of this module's own errors; the message says what to do."""


class NoTagError(TagProvisionError):
    """No tag came to the reader within the timeout."""


class SunCheckFailed(TagProvisionError):
    """The tag was provisioned but its URL does not verify with the new keys."""


class NotConfirmed(TagProvisionError):
    """The tag holds the new keys but the centre did not confirm; rerun once it can."""

    def __init__(self, message: str, cause: Exception) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class ProvisionOutcome:
    """What was done, for the CLI to print."""

    uid: str
    product: str
    client_ref: str
    key_version: int
    previous_key_version: int  # 0: the tag had its factory keys
    counter: int  # SDMReadCtr of the URL read back
    sun_url: str
    centre_counter: int  # the counter the centre recorded

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the centre --------------------------------------------------------------------------


class ProvisionCentre:
    """The two provisioning endpoints of the centre, over httpx; close it when done."""

    def __init__(self, base_url: str, token: str, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, transport=transport, timeout=HTTP_TIMEOUTS,
            follow_redirects=False,
            headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION), "Authorization": f"Bearer {token}",
                     "User-Agent": USER_AGENT, "Accept": "application/json"})

    def __repr__(self) -> str:  # never the token
        return f"ProvisionCentre({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ProvisionCentre:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def provision(self, uid: str, client_ref: str) -> ProvisionKeys:
        return self._post(f"/v1/tags/{uid}/provision", ProvisionRequest(client_ref=client_ref),
                          ProvisionKeys)

    def provisioned(self, uid: str, sun_url: str) -> ProvisionedAnswer:
        return self._post(f"/v1/tags/{uid}/provisioned", ProvisionedRequest(sun_url=sun_url),
                          ProvisionedAnswer)

    def _post(self, path: str, body: BaseModel, answer: type[M]) -> M:
        try:
            response = self._http.post(path, content=body.model_dump_json(),
                                       headers={"Content-Type": "application/json"})
        except httpx.HTTPError as error:
            raise CentreUnreachable(
                f"the centre at {self.base_url} did not answer POST {path} ({error}); check "
                "the network and centre_url, then run the same command again") from error
        if response.status_code >= 500:
            raise CentreUnreachable(
                f"the centre answered POST {path} with {response.status_code}"
                f"{_problem_text(response)}; try again later", status=response.status_code)
        if response.status_code >= 300:
            raise _refusal(path, response)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as error:
            raise ProtocolMismatch(
                f"the centre's answer to POST {path} is not protocol {PROTOCOL_VERSION} "
                f"({error.error_count()} error(s)); upgrade the older side",
                status=response.status_code) from error


def _problem(response: httpx.Response) -> ProblemDetail | None:
    try:
        return ProblemDetail.model_validate_json(response.content)
    except ValidationError:
        return None


def _problem_text(response: httpx.Response) -> str:
    problem = _problem(response)
    if problem is None:
        return ""
    return f": {problem.error}: {problem.detail}" + (
        f" ({problem.advice})" if problem.advice else "")


def _refusal(path: str, response: httpx.Response) -> CentreAnswerError:
    status = response.status_code
    problem = _problem(response)
    kinds: dict[int, tuple[type[CentreAnswerError], str]] = {
        401: (Unauthorized, "check the token (--token, token/token_file in agent.toml, "
                            "NYCKELFRI_TOKEN)"),
        403: (Forbidden, "ask the centre's administrator whether this device may "
                         "provision tags"),
        426: (ProtocolMismatch, "agent and centre speak different protocol versions; "
                                "upgrade the older side"),
    }
    kind, advice = kinds.get(status, (RejectedRequest, "check the client reference and "
                                                        "the tag"))
    advice = problem.advice if problem and problem.advice else advice
    detail = f"{problem.error}: {problem.detail}" if problem else response.text[:200]
    return kind(f"the centre refused POST {path} ({status}): {detail}; {advice}",
                status=status, detail=problem.detail if problem else detail, advice=advice)


# --- the reader --------------------------------------------------------------------------


def wait_for_tag(clf: Any, timeout_s: float) -> Any:
    """The first tag nfcpy activates within ``timeout_s``; :class:`NoTagError` if none."""
    deadline = time.monotonic() + timeout_s
    options = {"on-connect": lambda tag: False,  # return the tag, keep it activated
               "beep-on-connect": False, "targets": TARGETS, "iterations": 1,
               "interval": POLL_INTERVAL_S}

    def expired() -> bool:
        return time.monotonic() > deadline

    while not expired():
        tag = clf.connect(rdwr=dict(options), terminate=expired)
        if tag:
            return tag
        if tag is False:  # the reader erred (nfcpy logged it); look again
            time.sleep(min(READER_RETRY_S, max(0.0, deadline - time.monotonic())))
    raise NoTagError(f"no tag on the reader within {timeout_s:g} s; hold the tag flat "
                     "against the reader and run the command again")


# --- the whole job -----------------------------------------------------------------------


def provision_tag(reader_path: str, client_ref: str, centre: ProvisionCentre, *,
                  timeout_s: float = DEFAULT_TAG_TIMEOUT_S,
                  frontend_factory: Callable[[str], Any] = open_frontend,
                  on_step: Callable[[str], None] | None = None) -> ProvisionOutcome:
    """Provision the next tag on ``reader_path`` for ``client_ref`` (see the module doc).

    Raises :class:`TagProvisionError`, :class:`drivers.nfc.base.NfcError` (reader, tag)
    or :class:`sync.errors.SyncError` (centre); each says what to do, and rerunning the
    same command is always safe.
    """
    clf = frontend_factory(reader_path)
    try:
        tag = wait_for_tag(clf, timeout_s)
        uid = bytes(tag.identifier)
        uid_hex = uid.hex().upper()
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            raise NotNtag424Error(f"tag {uid_hex} is {tag.product or tag.type}, not an NTAG "
                                  "424 DNA; nyckelfri provisions NTAG 424 DNA tags only")
        identity = identify_ntag424(tag.transceive, uid)
        keys = centre.provision(uid_hex, client_ref)
        if keys.uid.upper() != uid_hex:
            raise ProtocolMismatch(f"the centre answered for tag {keys.uid}, not {uid_hex}",
                                   status=200)
        new_keys = [bytes.fromhex(k) for k in keys.keys]
        url = provision_ntag424(tag.transceive, uid, new_keys,
                                [bytes.fromhex(k) for k in keys.current_keys], keys.url_base,
                                key_version=keys.key_version, on_step=on_step)
    finally:
        clf.close()
    try:
        reading = verify_sun(url, sun_keys(new_keys), expected_uid=uid)
    except SunError as error:
        raise SunCheckFailed(
            f"tag {uid_hex} was provisioned but its URL does not verify with key version "
            f"{keys.key_version} ({error}); the centre was not told. Run the same command "
            "again; if this repeats, the tag or the centre's keys are wrong") from error
    try:
        confirmed = centre.provisioned(uid_hex, url)
    except (CentreUnreachable, CentreAnswerError) as error:
        raise NotConfirmed(
            f"tag {uid_hex} holds key version {keys.key_version} but the centre did not "
            f"confirm it: {error}. Run the same command again once the centre is "
            "reachable (safe: the tag is not changed again); until then its taps do not "
            "verify at the centre", error) from error
    log.info("tag %s provisioned for %s: key version %d, counter %d", uid_hex, client_ref,
             keys.key_version, reading.counter)
    return ProvisionOutcome(uid=uid_hex, product=identity.product, client_ref=keys.client_ref,
                            key_version=keys.key_version,
                            previous_key_version=keys.current_key_version,
                            counter=reading.counter, sun_url=url,
                            centre_counter=confirmed.counter)
