"""A fitter on site: verify a client's lock over Bluetooth and tick the job's checkpoints.

Everything here works offline: a verification and a tick are each ONE outbox event
(``lock.verification``, ``job.checkpoint``; :mod:`sync.protocol`) written durably
before the fitter sees the result, and sync delivers them later. The agent never
holds a lock's secret: it records the challenge and the lock's response, and the
centre checks the proof when the event arrives. What the agent judges on site are
the readings: the right serial, the right binding, the signal, the battery.

::

    session = FitterSession(store, clock, lock_host(config), config.fitter_name)
    verification, event_id = session.verify("NF-000123", "K-1", job_id=7)
    session.tick(7, "lock_bound_to_client")       # needs that passing verification

Which Bluetooth is used is configuration (``ble_backend`` in agent.toml):

``bleak``
    :class:`drivers.ble.lock.LockDriver` on this machine's adapter (BlueZ).
``sim``
    the locks listed in ``sim_locks_file`` (JSON or TOML; ``nyckelfri sim lock``
    writes it) come up on a :class:`drivers.sim.bleak_bumble.SimulatedAir` created
    in the command's own process, the driver talks to them through the unchanged
    bleak code, and the air goes away again: world, locks and driver all live in
    ONE ``asyncio.run`` (:class:`SimHost`). Nothing is shared between processes, so
    ``nyckelfri sim lock`` only edits the file the next ``lock`` command reads.

A :class:`LockHost` is that "where the driver runs": ``run(work)`` from code without
an event loop (the CLI), ``await arun(work)`` from code inside one (tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from agent.clock import Clock
from agent.config import AgentConfig, ConfigError
from agent.errors import FitterError
from agent.store import Store
from drivers.ble import profile
from drivers.ble.errors import LockError
from sync.protocol import (
    JOB_CHECKPOINT,
    LOCK_VERIFICATION,
    FitterJob,
    JobCheckpointData,
    LockVerificationData,
)

if TYPE_CHECKING:  # bleak and bumble load only when a lock is actually used
    from drivers.ble.lock import LockDriver, Verification
    from drivers.sim.ble_lock import LockConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_BOUND = "lock_bound_to_client"  # install: needs a verification showing the binding
LOCK_UNBOUND = "lock_unbound_from_client"  # removal: needs one showing the lock unbound
KEY_RECEIPT = "keys_returned_receipt_signed"  # needs who signed the receipt
PROOF_CHECKPOINTS = (LOCK_BOUND, LOCK_UNBOUND)



# --- where the driver runs ---------------------------------------------------------------


class LockHost:
    """Runs work on a :class:`~drivers.ble.lock.LockDriver` inside an event loop."""

    async def arun(self, work: Callable[[LockDriver], Awaitable[T]]) -> T:
        raise NotImplementedError

    def run(self, work: Callable[[LockDriver], Awaitable[T]]) -> T:
        """``arun`` in a fresh event loop: for code without one (the CLI)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(work))
        raise RuntimeError("LockHost.run is for code without an event loop; await arun instead")


class DirectHost(LockHost):
    """A driver given as is (real Bluetooth, or a test's simulated air)."""

    def __init__(self, driver: LockDriver) -> None:
        self.driver = driver

    async def arun(self, work: Callable[[LockDriver], Awaitable[T]]) -> T:
        return await work(self.driver)


class SimHost(LockHost):
    """A simulated air with ``locks`` on it, made for each piece of work in its loop."""

    def __init__(self, locks: Sequence[LockConfig], **driver_options: Any) -> None:
        self.locks = list(locks)
        self.driver_options = driver_options

    async def arun(self, work: Callable[[LockDriver], Awaitable[T]]) -> T:
        from drivers.ble.lock import LockDriver
        from drivers.sim.ble_lock import start_lock
        from drivers.sim.bleak_bumble import SimulatedAir

        async with SimulatedAir() as air:  # closing the air takes every lock off it
            for config in self.locks:
                await start_lock(air, config)
            return await work(LockDriver(air.backend, **self.driver_options))


def lock_host(config: AgentConfig, **driver_options: Any) -> LockHost:
    """The lock driver host ``config`` asks for (``ble_backend``, ``rssi_threshold``)."""
    from drivers.ble.lock import LockDriver

    options = {"rssi_threshold": config.rssi_threshold, **driver_options}
    if config.ble_backend == "sim":
        return SimHost(load_sim_locks(config.sim_locks_path), **options)
    return DirectHost(LockDriver(**options))


# --- the simulated locks file --------------------------------------------------------------

SIM_LOCK_KEYS = ("serial", "secret", "bound_client", "battery", "binding_counter", "rssi",
                 "faults")


def _read_sim_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError are both
        raise ConfigError(f"cannot read the simulated locks file {path}: {exc}") from None
    locks = raw.get("locks", []) if isinstance(raw, dict) else None
    if not isinstance(locks, list) or not all(isinstance(lock, dict) for lock in locks):
        raise ConfigError(f"{path}: expected {{\"locks\": [{{\"serial\": ..., \"secret\": "
                          "...}, ...]} (TOML: [[locks]] tables)")
    return locks


def sim_lock_config(entry: Mapping[str, Any], source: str = "sim locks") -> LockConfig:
    """One entry of the sim locks file as a :class:`~drivers.sim.ble_lock.LockConfig`."""
    from drivers.sim.ble_lock import LockConfig, LockFaults

    unknown = set(entry) - set(SIM_LOCK_KEYS)
    try:
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(SIM_LOCK_KEYS)}")
        faults = dict(entry.get("faults") or {})
        if "missing" in faults:
            faults["missing"] = frozenset(faults["missing"])
        return LockConfig(
            serial=str(entry["serial"]), secret=bytes.fromhex(str(entry["secret"])),
            bound_client=str(entry.get("bound_client", "")),
            battery_percent=int(entry.get("battery", 87)),
            binding_counter=int(entry.get("binding_counter", 1)),
            rssi=int(entry.get("rssi", -50)), faults=LockFaults(**faults))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: simulated lock {dict(entry).get('serial', '?')!r} "
                          f"is not valid ({exc!r})") from None


def load_sim_locks(path: Path) -> list[LockConfig]:
    """The simulated locks of ``path`` (none when the file does not exist)."""
    return [sim_lock_config(entry, str(path)) for entry in _read_sim_file(path)]


def parse_fault(text: str) -> tuple[str, Any]:
    """``wrong_mac`` -> (wrong_mac, True); ``notify=false``, ``drop_after_reads=2``,
    ``missing=battery,firmware`` -> typed values for :class:`LockFaults`."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        return name, True
    value = value.strip()
    if name == "missing":
        return name, sorted(v.strip() for v in value.split(",") if v.strip())
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def save_sim_lock(path: Path, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Add or replace (by serial) one simulated lock in the JSON file ``path``."""
    if path.suffix == ".toml":
        raise ConfigError(f"{path}: `nyckelfri sim lock` writes JSON; edit a TOML file by "
                          "hand or point sim_locks_file at a .json file")
    record = {k: v for k, v in entry.items() if v is not None}
    sim_lock_config(record)  # refuse what the next `lock` command could not start
    locks = [e for e in _read_sim_file(path) if e.get("serial") != record["serial"]]
    locks.append(record)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"locks": locks}, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write the simulated locks file {path}: {exc}") from None
    return record


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnSiteVerdict:
    """What the fitter can judge at the door; the proof itself is the centre's."""

    serial_ok: bool
    binding_ok: bool
    proximity_ok: bool
    battery_ok: bool
    proof_read: bool
    removal: bool = False

    @property
    def passed(self) -> bool:
        return (self.serial_ok and self.binding_ok and self.proximity_ok and self.battery_ok
                and self.proof_read)

    def as_dict(self) -> dict[str, bool]:
        return {"serial_ok": self.serial_ok, "binding_ok": self.binding_ok,
                "proximity_ok": self.proximity_ok, "battery_ok": self.battery_ok,
                "proof_read": self.proof_read, "removal": self.removal,
                "passed": self.passed}


def on_site_verdict(v: Verification, *, removal: bool = False) -> OnSiteVerdict:
    """Install: the lock must be bound to the client; removal: it must be unbound."""
    binding_ok = (v.binding is not None and not v.binding.bound) if removal else v.client_matches
    return OnSiteVerdict(serial_ok=v.serial_matches, binding_ok=binding_ok,
                         proximity_ok=v.proximity_ok, battery_ok=v.battery_ok,
                         proof_read=v.response_hex is not None, removal=removal)


def proof_problems(job: FitterJob, data: Mapping[str, Any]) -> list[str]:
    """Why a recorded verification (its event ``data``) cannot back ``job``'s lock
    (un)bound tick; empty when it can."""
    problems = []
    if not data.get("response_hex"):
        problems.append(f"no proof was read from the lock ({data.get('error') or 'no response'})")
    if not data.get("serial_matches") or (job.lock_serial
                                          and data.get("serial") != job.lock_serial):
        problems.append(f"the lock read was {data.get('serial')!r}, not the job's "
                        f"{job.lock_serial or data.get('expected_serial')!r}")
    if job.kind == "install":
        if not data.get("client_matches") or data.get("bound_client") != job.client_ref:
            bound = data.get("bound_client") if data.get("bound") else None
            problems.append(f"the lock is bound to {bound!r}, not the job's client "
                            f"{job.client_ref!r}" if bound else "the lock is not bound")
    elif data.get("bound") is not False:
        problems.append(f"the lock is still bound (to {data.get('bound_client')!r})"
                        if data.get("bound") else "the lock's binding state was not read")
    return problems


# --- the session -------------------------------------------------------------------------------


def verification_data(v: Verification | None, *, fitter: str, serial: str, client_ref: str,
                      job_id: int | None, error: str | None = None) -> LockVerificationData:
    """The ``lock.verification`` event data of a result (or of a failure's partial readings)."""
    if v is None:
        return LockVerificationData(job_id=job_id, fitter=fitter, expected_serial=serial,
                                    expected_client=client_ref, error=error)
    return LockVerificationData(
        job_id=job_id, fitter=fitter, expected_serial=v.expected_serial,
        expected_client=v.expected_client, serial=v.serial, firmware=v.firmware,
        battery_percent=v.battery_percent, rssi=v.rssi, bound_client=v.bound_client,
        bound=None if v.binding is None else v.binding.bound,
        binding_counter=None if v.binding is None else v.binding.counter,
        nonce_hex=v.nonce_hex, response_hex=v.response_hex, serial_matches=v.serial_matches,
        client_matches=v.client_matches, proximity_ok=v.proximity_ok, battery_ok=v.battery_ok,
        error=error or v.error)


class FitterSession:
    """One fitter at one door: verifications and ticks, each a durable outbox event.

    ``driver`` is a :class:`LockDriver` (used in the caller's event loop) or a
    :class:`LockHost` (see :func:`lock_host`); None for a session that only ticks.
    """

    def __init__(self, store: Store, clock: Clock, driver: LockDriver | LockHost | None,
                 fitter: str) -> None:
        if not 1 <= len(fitter.strip()) <= 64:
            raise ConfigError("the fitter's name is 1-64 characters: set fitter in agent.toml "
                              "or NYCKELFRI_FITTER")
        self.store = store
        self.clock = clock
        self._host = (driver if isinstance(driver, LockHost | None)
                      else DirectHost(driver))
        self.fitter = fitter.strip()
        self.verification_ids: list[str] = []  # recorded in this session, oldest first

    @property
    def host(self) -> LockHost:
        if self._host is None:
            raise FitterError("this session has no lock driver (ble_backend) to verify with")
        return self._host

    @property
    def last_event_id(self) -> str | None:
        """The event of the latest verification (also one that failed with a LockError)."""
        return self.verification_ids[-1] if self.verification_ids else None

    # verification

    def verify(self, serial: str, client_ref: str,
               job_id: int | None = None) -> tuple[Verification, str]:
        """Verify the lock and record the proof; from code without an event loop."""
        self._check_request(serial, client_ref, job_id)
        return self.host.run(lambda driver: self._verify(driver, serial, client_ref, job_id))

    async def averify(self, serial: str, client_ref: str,
                      job_id: int | None = None) -> tuple[Verification, str]:
        """:meth:`verify` from inside an event loop."""
        self._check_request(serial, client_ref, job_id)
        return await self.host.arun(
            lambda driver: self._verify(driver, serial, client_ref, job_id))

    def _check_request(self, serial: str, client_ref: str, job_id: int | None) -> None:
        try:
            profile.check_serial(serial)
            profile.check_client_ref(client_ref)
        except ValueError as exc:
            raise FitterError(f"{exc}; give the serial on the lock's label and the job's "
                              "client reference") from None
        if job_id is None:
            return
        job = self._job(job_id)
        if job.client_ref != client_ref:
            raise FitterError(f"job {job_id} is for client {job.client_ref!r}, not "
                              f"{client_ref!r}; check the job (nyckelfri job list)")
        if job.lock_serial and job.lock_serial != serial:
            raise FitterError(f"job {job_id} is for lock {job.lock_serial!r}, not {serial!r}; "
                              "check the lock's label and the job (nyckelfri job list)")

    async def _verify(self, driver: LockDriver, serial: str, client_ref: str,
                      job_id: int | None) -> tuple[Verification, str]:
        try:
            result = await driver.verify(serial, client_ref)
        except LockError as exc:
            # The attempt is evidence too: record what was read before raising.
            self._record(verification_data(exc.verification, fitter=self.fitter,
                                           serial=serial, client_ref=client_ref,
                                           job_id=job_id, error=str(exc)))
            raise
        event_id = self._record(verification_data(result, fitter=self.fitter, serial=serial,
                                                  client_ref=client_ref, job_id=job_id))
        return result, event_id

    def _record(self, data: LockVerificationData) -> str:
        stamp = self.clock.now()
        with self.store.transaction() as conn:
            event_id = self.store.add_event(conn, LOCK_VERIFICATION, stamp,
                                            data.model_dump(mode="json"))
        self.verification_ids.append(event_id)
        log.info("lock %s: verification recorded as %s", data.expected_serial, event_id)
        return event_id

    # checkpoints

    def _job(self, job_id: int) -> FitterJob:
        job = self.store.job(job_id)
        if job is None:
            raise FitterError(f"no job {job_id} on this agent; pull the jobs (nyckelfri sync "
                              "with fitter set, or nyckelfri job pull) and see nyckelfri job list")
        return job

    def done(self, job: FitterJob) -> list[str]:
        """The job's checkpoints ticked at the centre or on this agent, in job order."""
        ticked = set(job.done) | {r["checkpoint"] for r in self.store.job_checkpoints(job.job_id)}
        return [c for c in job.checkpoints if c in ticked]

    def tick(self, job_id: int, checkpoint: str, *, signed_by: str | None = None,
             verification_event_id: str | None = None) -> str:
        """Record a ``job.checkpoint`` event for the next checkpoint of the job."""
        signed_by = (signed_by or "").strip() or None
        with self.store.transaction() as conn:  # checks and record: one writer at a time
            job = self._job(job_id)
            if checkpoint not in job.checkpoints:
                raise FitterError(f"job {job_id} ({job.kind}) has no checkpoint {checkpoint!r};"
                                  f" its checkpoints: {', '.join(job.checkpoints)}")
            done = self.done(job)
            if checkpoint in done:
                raise FitterError(f"{checkpoint} of job {job_id} is ticked already")
            expected = next(c for c in job.checkpoints if c not in done)
            if checkpoint != expected:
                raise FitterError(f"tick {expected} of job {job_id} first: the checkpoints "
                                  f"go in order ({' -> '.join(job.checkpoints)})")
            if checkpoint in PROOF_CHECKPOINTS:
                verification_event_id = self._proof(job, verification_event_id)
            if checkpoint == KEY_RECEIPT and signed_by is None:
                raise FitterError(f"{KEY_RECEIPT} needs who signed the key receipt: give "
                                  "--signed-by NAME")
            try:
                data = JobCheckpointData(job_id=job_id, fitter=self.fitter,
                                         checkpoint=checkpoint,
                                         verification_event_id=verification_event_id,
                                         signed_by=signed_by)
            except ValidationError as exc:
                raise FitterError(f"cannot record {checkpoint}: "
                                  f"{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}"
                                  ) from None
            stamp = self.clock.now()
            event_id = self.store.add_event(conn, JOB_CHECKPOINT, stamp,
                                            data.model_dump(mode="json"))
            self.store.record_checkpoint(
                conn, job_id, checkpoint, event_id, fitter=self.fitter,
                ticked_at=stamp.wall_iso, verification_event_id=verification_event_id,
                signed_by=signed_by)
        log.info("job %d: %s ticked (%s)", job_id, checkpoint, event_id)
        return event_id

    def _proof(self, job: FitterJob, event_id: str | None) -> str:
        """The verification behind a lock (un)bound tick: ``event_id``, else the latest
        for the job; refused unless its on-site verdicts hold."""
        records = self.store.lock_verifications(job.job_id)
        how = (f"verify the lock first: nyckelfri lock verify --serial "
               f"{job.lock_serial or 'SERIAL'} --client {job.client_ref} --job {job.job_id}")
        if event_id is not None:
            records = [r for r in records if r["event_id"] == event_id]
            if not records:
                raise FitterError(f"no lock verification {event_id} for job {job.job_id}; {how}")
        if not records:
            raise FitterError(f"job {job.job_id} has no lock verification on this agent; {how}")
        record = records[-1]
        problems = proof_problems(job, record["data"])
        if problems:
            raise FitterError(f"the lock verification {record['event_id']} cannot back "
                              f"{LOCK_BOUND if job.kind == 'install' else LOCK_UNBOUND}: "
                              f"{'; '.join(problems)}. Fix it at the lock, then {how}")
        return str(record["event_id"])
