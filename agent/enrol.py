"""``nyckelfri agent enrol CODE``: join a centre in one step.

The centre's administrator runs ``nyckelfri-central device add NAME`` and gets a one-time
enrolment code (also as a QR code). The code carries the centre's URL, the device name
and a secret that is good for one enrolment within its validity (24 h by default); the
bearer token itself never travels in it. On the field device::

    nyckelfri agent enrol nyk1.eyJ1Ijo...

asks the centre for the device's token (``POST /v1/enrol``), stores it in the state
directory with mode 0600 (``DATA_DIR/token``), writes ``agent.toml`` with the centre URL,
the device id (which must equal the enrolled name: the centre refuses a batch whose
device id is not its token's) and ``token_file``, keeps any other setting already in
that file, and pulls the reference data once, so the first tap works offline at once.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.config import CONFIG_NAME, ConfigError

TOKEN_FILE_NAME = "token"  # noqa: S105 - the file's name, not a secret
ENROL_PATH = "/v1/enrol"
ENROL_TIMEOUT_S = 15.0


class EnrolError(Exception):
    """Enrolment failed; the message says what to do. ``unreachable``: the centre did not
    answer (try again later), else it refused or the code is bad."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class EnrolmentCode:
    centre_url: str
    device_id: str
    secret: str = ""

    def __repr__(self) -> str:  # never the secret
        return f"EnrolmentCode({self.centre_url!r}, {self.device_id!r})"


def parse_code(text: str) -> EnrolmentCode:
    """Read an enrolment code (sync.protocol's format), or say why it is not one."""
    from sync.protocol import ENROLMENT_CODE_PREFIX, read_enrolment_code

    try:
        code = EnrolmentCode(*read_enrolment_code(text))
    except ValueError as exc:
        if str(exc) == "prefix":
            raise EnrolError(f"that is not an enrolment code: it starts with "
                             f"'{ENROLMENT_CODE_PREFIX}'; copy the whole code "
                             "'nyckelfri-central device add NAME' printed") from None
        raise EnrolError("the enrolment code is damaged (a character missing or changed?); "
                         "copy it again, or scan its QR code") from None
    parts = urlsplit(code.centre_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EnrolError(f"the enrolment code names no usable centre URL "
                         f"({code.centre_url!r}); ask for a new code")
    return code


def request_token(code: EnrolmentCode, transport: Any = None) -> str:
    """Trade the code for the device's token at the centre (one time only)."""
    import httpx

    from sync.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION

    try:
        with httpx.Client(base_url=code.centre_url, timeout=ENROL_TIMEOUT_S,
                          transport=transport) as http:
            response = http.post(ENROL_PATH, headers={PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
                                 json={"device_id": code.device_id, "passcode": code.secret})
    except httpx.HTTPError as exc:
        raise EnrolError(f"cannot reach the centre at {code.centre_url} ({exc or type(exc)}); "
                         "check the network and run the same command again (the code stays "
                         "good until it is used or expires)", unreachable=True) from exc
    if response.status_code != 200:
        try:
            problem = response.json()
            detail = f"{problem.get('detail', '')} {problem.get('advice', '')}".strip()
        except ValueError:
            detail = response.text[:200]
        raise EnrolError(f"the centre refused the enrolment ({response.status_code}): "
                         f"{detail or 'no reason given'}")
    try:
        answer = response.json()
        token = str(answer["token"])
        if answer.get("device_id") != code.device_id:
            raise KeyError("device_id")
    except (ValueError, KeyError):
        raise EnrolError(f"the centre at {code.centre_url} answered the enrolment with "
                         "something else than a token; is that URL a nyckelfri centre?"
                         ) from None
    return token


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if os.geteuid() == 0:  # root enrolling for the service user: the file is theirs
            owner = path.parent.stat()
            os.chown(tmp, owner.st_uid, owner.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def merge_config(path: Path, values: dict[str, Any]) -> None:
    """Set ``values`` in the flat TOML file ``path``, keeping its other settings."""
    current: dict[str, Any] = {}
    if path.is_file():
        try:
            current = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot update {path}: it is not valid TOML ({exc}); fix or "
                              "move it, then enrol again") from None
    current.pop("token", None)  # an inline token would win over the new token_file
    current.update(values)
    lines = ["# nyckelfri agent settings (agent/config.py); centre_url, device_id and",
             "# token_file were written by 'nyckelfri agent enrol'."]
    lines += [f"{key} = {_toml_value(value)}" for key, value in current.items()]
    write_private(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class Enrolled:
    device_id: str
    centre_url: str
    token_file: Path
    config_file: Path


def enrol(code_text: str, data_dir: Path, *, config_file: Path | None = None,
          transport: Any = None) -> Enrolled:
    """Enrol this device with the code: token, agent.toml. Reference data: see the CLI."""
    code = parse_code(code_text)
    token = request_token(code, transport)
    token_file = data_dir / TOKEN_FILE_NAME
    write_private(token_file, token + "\n")
    config = config_file or data_dir / CONFIG_NAME
    merge_config(config, {"device_id": code.device_id, "centre_url": code.centre_url,
                          "token_file": str(token_file)})
    return Enrolled(code.device_id, code.centre_url, token_file, config)
