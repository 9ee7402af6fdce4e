"""Agent configuration: defaults < TOML file < environment < command line.

The TOML file (``--config FILE``, else ``DATA_DIR/agent.toml`` when present)::

    device_id = "pi-hemtjanst-07"
    readers = ["usb"]
    personal_staff_ref = ""        # set on a device that belongs to one person
    repeat_window_s = 30
    max_visit_s = 14400
    sign_in_ttl_s = 43200
    feedback = true                 # reader LED/buzzer where the reader has one
    require_genuine_tags = false    # refuse tags without a valid NXP originality signature
    trust_sim_tags = false          # accept simulated tags' signatures (demos, training)
    tag_policy = "auto"             # "sun_required" | "signature" | "uid_only"; "auto":
                                    # the centre's policy (legacy: require_genuine_tags)
    centre_url = "https://centre.example:8700"   # unset: no sync (the agent works offline)
    token_file = "/etc/nyckelfri/token"          # or token = "..." (prefer the file: 0600)
    sync_interval_s = 60            # background sync period of `nyckelfri agent run`
    sync_max_attempts = 5           # attempts per request before a round gives up
    fitter = "anna.f"               # the fitter's name on lock proofs and ticks (default:
                                    # device_id)
    ble_backend = "bleak"           # "bleak": this machine's Bluetooth (BlueZ);
                                    # "sim": simulated locks in-process (training, tests)
    sim_locks_file = "/var/lib/nyckelfri/sim-locks.json"  # default DATA_DIR/sim-locks.json
    rssi_threshold = -70            # dBm: a weaker lock is "too far" (behind a wall)

Environment overrides: ``NYCKELFRI_DEVICE_ID``, ``NYCKELFRI_READER`` (several
separated by commas), ``NYCKELFRI_DATA_DIR``, ``NYCKELFRI_PERSONAL_STAFF_REF``,
``NYCKELFRI_REPEAT_WINDOW_S``, ``NYCKELFRI_MAX_VISIT_S``, ``NYCKELFRI_SIGN_IN_TTL_S``,
``NYCKELFRI_FEEDBACK``, ``NYCKELFRI_REQUIRE_GENUINE_TAGS``, ``NYCKELFRI_TRUST_SIM_TAGS``,
``NYCKELFRI_TAG_POLICY``,
``NYCKELFRI_CENTRE_URL``, ``NYCKELFRI_TOKEN``, ``NYCKELFRI_TOKEN_FILE``,
``NYCKELFRI_SYNC_INTERVAL_S``, ``NYCKELFRI_SYNC_MAX_ATTEMPTS``, ``NYCKELFRI_FITTER``,
``NYCKELFRI_BLE_BACKEND``, ``NYCKELFRI_SIM_LOCKS_FILE``, ``NYCKELFRI_RSSI_THRESHOLD``.

``ble_backend = "sim"`` runs every lock command against a simulated air created in
the command's own process: the locks of ``sim_locks_file`` (written by
``nyckelfri sim lock``) are started, the lock is verified and the air is gone again,
all inside one ``asyncio.run`` (see :mod:`agent.fitter`).
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.visits import (
    DEFAULT_MAX_VISIT_S,
    DEFAULT_REPEAT_WINDOW_S,
    DEFAULT_SIGN_IN_TTL_S,
    Settings,
)
from drivers.nfc.authenticity import GENUINE_NXP
from routine.sun import TagPolicy

CONFIG_NAME = "agent.toml"
# sync.client.MAX_ATTEMPTS (pinned by a test): not imported, so that reading the config,
# and so every `nyckelfri` command, does not load httpx and pydantic.
DEFAULT_SYNC_MAX_ATTEMPTS = 5
DEFAULT_SYNC_INTERVAL_S = 60.0
# The driver's proximity threshold (drivers.ble.lock.RSSI_THRESHOLD_DBM, pinned by a
# test; not imported so that reading the config does not load bleak).
DEFAULT_RSSI_THRESHOLD = -70
BLE_BACKENDS = ("bleak", "sim")
SIM_LOCKS_NAME = "sim-locks.json"
ENV_PREFIX = "NYCKELFRI_"
DEFAULT_DATA_DIR = (
    Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "nyckelfri"
)


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class AgentConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    device_id: str = field(default_factory=socket.gethostname)
    readers: tuple[str, ...] = ()
    personal_staff_ref: str | None = None
    repeat_window_s: float = DEFAULT_REPEAT_WINDOW_S
    max_visit_s: float = DEFAULT_MAX_VISIT_S
    sign_in_ttl_s: float = DEFAULT_SIGN_IN_TTL_S
    feedback: bool = True
    require_genuine_tags: bool = False
    trust_sim_tags: bool = False  # demos and training only: accept simulator signatures
    tag_policy: TagPolicy | None = None  # None ("auto"): the centre's, as last pulled
    centre_url: str | None = None  # None: no sync, the agent keeps everything offline
    token: str | None = field(default=None, repr=False)  # never in logs or reprs
    token_file: Path | None = None
    # Background sync period. A minute keeps the centre's view of visits current
    # without hundreds of agents loading it; taps also trigger a sync soon after.
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    # Attempts per HTTP call before a round gives up (sync.client.MAX_ATTEMPTS).
    sync_max_attempts: int = DEFAULT_SYNC_MAX_ATTEMPTS
    # Fitters: whose name goes on lock proofs and ticks (None: device_id), which
    # Bluetooth the lock commands use, and the proximity threshold of a verification.
    fitter: str | None = None
    ble_backend: str = "bleak"  # "bleak" (BlueZ) | "sim" (in-process simulated locks)
    sim_locks_file: Path | None = None  # None: DATA_DIR/sim-locks.json
    rssi_threshold: int = DEFAULT_RSSI_THRESHOLD

    @property
    def fitter_name(self) -> str:
        return self.fitter or self.device_id

    @property
    def sim_locks_path(self) -> Path:
        return self.sim_locks_file or (self.data_dir / SIM_LOCKS_NAME)

    @property
    def sync_configured(self) -> bool:
        """A centre and a way to authenticate are configured."""
        return bool(self.centre_url) and bool(self.token or self.token_file)

    def sync_token(self) -> str:
        """The bearer token: ``token`` if set, else the first line of ``token_file``."""
        if self.token:
            return self.token
        if self.token_file is None:
            raise ConfigError("no token for the centre: set token_file (or token) in "
                              "agent.toml, or NYCKELFRI_TOKEN_FILE / NYCKELFRI_TOKEN")
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token_file {self.token_file}: {exc.strerror}; "
                              "check the path and that the agent's user may read it") from None
        if not token:
            raise ConfigError(f"token_file {self.token_file} is empty; put the token the "
                              "centre's administrator issued in it")
        return token

    def visit_settings(self) -> Settings:
        keys = dict(GENUINE_NXP)
        if self.trust_sim_tags:
            from drivers.sim.tags import SIM_PUBLIC_KEY_HEX  # the simulators: only then

            keys["sim"] = SIM_PUBLIC_KEY_HEX
        return Settings(
            repeat_window_s=self.repeat_window_s,
            max_visit_s=self.max_visit_s,
            sign_in_ttl_s=self.sign_in_ttl_s,
            personal_staff_ref=self.personal_staff_ref or None,
            trusted_tag_keys=tuple(keys.items()),
            require_genuine_tags=self.require_genuine_tags,
            tag_policy=self.tag_policy,
        )


_FLOATS = ("repeat_window_s", "max_visit_s", "sign_in_ttl_s", "sync_interval_s")
_INTS = ("sync_max_attempts",)
_BOOLS = ("feedback", "require_genuine_tags", "trust_sim_tags")


def _coerce(name: str, value: Any, source: str) -> Any:
    try:
        if name in _FLOATS:
            number = float(value)
            if number <= 0:
                raise ValueError("must be positive")
            return number
        if name in _INTS:
            whole = int(value)
            if whole < 1:
                raise ValueError("must be 1 or more")
            return whole
        if name in _BOOLS:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be true or false")
        if name == "readers":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if name == "rssi_threshold":
            dbm = int(value)
            if not -127 <= dbm <= 20:
                raise ValueError("must be a signal strength in dBm, -127..20 (e.g. -70)")
            return dbm
        if name == "ble_backend":
            backend = str(value).strip().lower()
            if backend not in BLE_BACKENDS:
                raise ValueError(f"must be one of {', '.join(BLE_BACKENDS)}")
            return backend
        if name == "fitter":
            return str(value).strip() or None
        if name == "tag_policy":
            text = str(value).strip().lower()
            if text in ("", "auto"):
                return None
            try:
                return TagPolicy(text)
            except ValueError:
                raise ValueError("must be auto, " + ", ".join(p.value for p in TagPolicy)
                                 ) from None
        if name in ("data_dir", "token_file", "sim_locks_file"):
            return Path(str(value)).expanduser()
        if name == "centre_url":
            url = str(value).strip().rstrip("/")
            if not url:
                return None
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ValueError("must be an http:// or https:// URL, e.g. "
                                 "https://centre.example:8700")
            return url
        if name == "token":
            return str(value).strip() or None
        if name == "personal_staff_ref":
            return str(value).strip() or None
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {name} = {value!r} is not valid ({exc})") from None


def _apply(config: AgentConfig, values: Mapping[str, Any], source: str) -> AgentConfig:
    known = {f.name for f in fields(AgentConfig)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")
    return replace(config, **{k: _coerce(k, v, source) for k, v in values.items()})


def _env_values(env: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for f in fields(AgentConfig):
        key = ENV_PREFIX + ("READER" if f.name == "readers" else f.name.upper())
        if key in env:
            values[f.name] = env[key]
    return values


def load_config(
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Build the configuration. ``overrides`` are command-line values (None = not given)."""
    env = os.environ if env is None else env
    given = {k: v for k, v in (overrides or {}).items() if v not in (None, ())}
    env_values = _env_values(env)
    config = AgentConfig()
    # The data dir decides where the default config file is, so settle it first.
    data_dir = given.get("data_dir") or env_values.get("data_dir")
    if data_dir is not None:
        config = _apply(config, {"data_dir": data_dir}, "data_dir")
    path = config_file or (config.data_dir / CONFIG_NAME)
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        config = _apply(config, file_values, str(path))
    config = _apply(config, env_values, "environment")
    return _apply(config, given, "command line")
