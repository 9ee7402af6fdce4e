"""The long-running agent: readers -> registrar -> store, and a line per tap.

``nyckelfri agent run`` builds an :class:`AgentService` and calls
:meth:`AgentService.run_until` with an event its signal handlers set. Each
reader has its own worker thread; a sweeper closes visits left open too long.
A reader that is not there at start is reported ``down`` (with the reason, in
``nyckelfri agent status``) and waited for: its worker reopens it with backoff.

When a centre and a token are configured, a :class:`SyncWorker` thread syncs
every ``sync_interval_s`` and soon after taps, over its OWN store connection.
The tap path only commits to SQLite and sets an event: nothing about a tap
waits for the network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.clock import Clock, SystemClock
from agent.config import AgentConfig
from agent.store import Store
from agent.visits import Decision, Registrar
from drivers.nfc.base import Feedback, NfcError, Tap
from drivers.nfc.feedback import feedback_for
from drivers.nfc.reader import NfcpyReader, open_frontend
from sync.client import SyncClient, SyncReport
from sync.errors import Cancelled, CentreUnreachable, SyncError

log = logging.getLogger(__name__)

PID_NAME = "agent.pid"
STATE_NAME = "agent.state.json"
# Visits left open are swept this often; the limit itself is hours, so a minute
# of lateness in noticing is harmless.
SWEEP_INTERVAL_S = 60.0

# --- background sync ---------------------------------------------------------------------
# A tap wakes the sync thread, which then waits this long for the rest of the burst
# (badge, arrival, a colleague's tap) so that one round carries them all.
SYNC_DEBOUNCE_S = 2.0
# The first round after start: soon, once the readers are up.
SYNC_FIRST_DELAY_S = 1.0
# After failed rounds the wait doubles from sync_interval_s up to this: a centre that
# is down for hours hears from each agent at most every ten minutes, not every minute.
SYNC_MAX_BACKOFF_S = 600.0
# Every wait is stretched or shortened by up to this fraction, so agents started
# together (a power cut, a rollout) do not keep syncing in step.
SYNC_JITTER = 0.1
# On stop, wait this long for a round in flight (one HTTP read at most ends at
# READ_TIMEOUT_S; we do not wait for it): the outbox keeps whatever is unacknowledged.
SYNC_STOP_GRACE_S = 5.0


@dataclass
class ReaderState:
    path: str
    state: str = "starting"
    detail: str = ""


class StampClockSource:
    """An agent :class:`Clock` as the sync client's ClockSource (boot id, boottime)
    plus its wall clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    @property
    def boot_id(self) -> str:
        return self._clock.now().boot_id

    def boottime_ns(self) -> int:
        return self._clock.boottime_ns()

    def wall(self) -> datetime:
        return self._clock.now().wall


def build_sync_client(config: AgentConfig, store: Store, clock: Clock, *,
                      cancel: threading.Event | None = None, **kwargs: Any) -> SyncClient:
    """The sync client for this agent's configuration over ``store``."""
    if not config.centre_url:
        raise SyncError("no centre configured: set centre_url in agent.toml, "
                        "NYCKELFRI_CENTRE_URL or --centre")
    source = StampClockSource(clock)
    kwargs.setdefault("max_attempts", config.sync_max_attempts)
    if config.fitter:
        kwargs.setdefault("jobs", store)  # a fitter's agent also pulls its binder jobs
    kwargs.setdefault("tag_keys", store)  # SUN keys of this unit's tags, and the tag policy
    return SyncClient(config.centre_url, config.sync_token(), config.device_id, store, store,
                      source, anchors=store, cancel=cancel, wall_clock=source.wall, **kwargs)


SyncClientFactory = Callable[[Store, threading.Event], SyncClient]


class SyncWorker:
    """Background sync: one thread, every ``interval_s`` and soon after :meth:`kick`.

    Failed rounds back off (doubling, capped, jittered); kicks do not cut a backoff
    short, so a tap burst against a centre that is down adds no load.
    """

    def __init__(self, client: SyncClient, interval_s: float, *,
                 cancel: threading.Event | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None,
                 debounce_s: float = SYNC_DEBOUNCE_S, first_delay_s: float = SYNC_FIRST_DELAY_S,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self.first_delay_s = first_delay_s
        self._stop = cancel or threading.Event()  # also the client's cancel event
        self._wake = threading.Event()
        self._on_result = on_result
        self._rng = rng or random.Random()
        self.failures = 0
        self.rounds = 0
        self._thread = threading.Thread(target=self._run, name="nyckelfri-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        """Sync soon (debounced). Never blocks: the tap path calls this."""
        self._wake.set()

    def stop(self, timeout: float = SYNC_STOP_GRACE_S) -> bool:
        """Ask the thread to stop; True when it has ended within ``timeout``."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + self._rng.uniform(-SYNC_JITTER, SYNC_JITTER))

    def _run(self) -> None:
        due = time.monotonic() + self.first_delay_s
        while not self._stop.is_set():
            kicked = self._wake.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                break
            if kicked:
                self._wake.clear()
                if self.failures and time.monotonic() < due:
                    continue  # backing off: a tap does not cut it short
                if self._stop.wait(self.debounce_s):
                    break
                self._wake.clear()
            if not self._round():
                break
            due = time.monotonic() + self._next_wait()

    def _next_wait(self) -> float:
        if not self.failures:
            return self._jittered(self.interval_s)
        backoff = min(SYNC_MAX_BACKOFF_S, self.interval_s * 2 ** (self.failures - 1))
        return self._jittered(max(self.interval_s, backoff))

    def _round(self) -> bool:
        """One sync round; False when the worker is to stop."""
        self.rounds += 1
        device = self.client.device_id
        try:
            report = self.client.sync_once()
        except Cancelled:
            return False
        except CentreUnreachable as exc:
            self.failures += 1
            log.warning("sync %s: %s", device, exc)
            self._report({"ok": False, "error": type(exc).__name__, "detail": str(exc)})
        except SyncError as exc:  # needs a person: token, enrolment, upgrade
            self.failures += 1
            log.error("sync %s: %s", device, exc)
            self._report({"ok": False, "error": type(exc).__name__, "detail": str(exc)})
        except Exception as exc:  # a bug must not kill the thread: the next round retries
            self.failures += 1
            log.exception("sync %s: round failed unexpectedly; will retry", device)
            self._report({"ok": False, "error": type(exc).__name__, "detail": str(exc)})
        else:
            self.failures = 0
            self._report({"ok": True, **_summary(report)})
        return True

    def _report(self, result: dict[str, Any]) -> None:
        result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["failures"] = self.failures
        if self._on_result is not None:
            self._on_result(result)


def _summary(report: SyncReport) -> dict[str, Any]:
    data = report.as_dict()
    data.pop("push")
    return data


@dataclass
class AgentService:
    config: AgentConfig
    emit: Callable[[Decision], None]
    clock: Clock = field(default_factory=SystemClock)
    frontend_factory: Callable[[str], Any] = open_frontend
    # How the background sync gets its client (tests inject one over a test transport);
    # default: from the configuration. Only used when a centre and token are configured.
    sync_client_factory: SyncClientFactory | None = None

    def __post_init__(self) -> None:
        self.store = Store.in_dir(self.config.data_dir, device_id=self.config.device_id)
        self.registrar = Registrar(self.store, self.clock, self.config.visit_settings())
        self.readers: list[NfcpyReader] = []
        self.reader_states: dict[str, ReaderState] = {}
        self.sync_state: dict[str, Any] | None = None
        self._state_lock = threading.Lock()
        self._running = False
        self.sync: SyncWorker | None = None
        self._sync_store: Store | None = None
        if self.config.sync_configured or self.sync_client_factory is not None:
            try:
                self._build_sync()
            except BaseException:
                self.store.close()
                raise

    def _build_sync(self) -> None:
        # Its own connection: the sync thread's reads and writes never queue behind the
        # reader thread's lock (WAL lets both work on the file).
        store = Store.in_dir(self.config.data_dir, device_id=self.config.device_id)
        cancel = threading.Event()
        try:
            if self.sync_client_factory is not None:
                client = self.sync_client_factory(store, cancel)
            else:
                client = build_sync_client(self.config, store, self.clock, cancel=cancel)
        except BaseException:
            store.close()
            raise
        self._sync_store = store
        self.sync = SyncWorker(client, self.config.sync_interval_s, cancel=cancel,
                               on_result=self._sync_result)
        self.sync_state = {"centre": self.config.centre_url, "last": None}

    # --- wiring ----------------------------------------------------------------------

    def on_tap(self, tap: Tap) -> Feedback:
        decision = self.registrar.handle(tap)  # returns after COMMIT: durable
        if decision.event_id and self.sync is not None:
            self.sync.kick()  # sets an Event: never waits
        self.emit(decision)
        return decision.feedback

    def _sync_result(self, result: dict[str, Any]) -> None:
        with self._state_lock:
            self.sync_state = {"centre": self.config.centre_url, "last": result}
            if self._running:
                self._write_state()

    def _status(self, path: str) -> Callable[[str, str], None]:
        def report(state: str, detail: str) -> None:
            with self._state_lock:
                self.reader_states[path] = ReaderState(path, state, detail)
                self._write_state()
        return report

    def build_readers(self, paths: Sequence[str]) -> None:
        for path in paths:
            self.reader_states[path] = ReaderState(path)
            self.readers.append(NfcpyReader(
                path, self.on_tap, on_status=self._status(path),
                frontend_factory=self.frontend_factory,
                feedback_factory=feedback_for if self.config.feedback else None,
                boottime_ns=self.clock.boottime_ns,
            ))

    # --- running ---------------------------------------------------------------------

    def open_readers(self) -> list[NfcError]:
        """Try every reader once in the foreground; returns why those not there are not.

        A reader that is not there (not plugged in yet, UART not set up, PN532 silent) does
        not stop the agent: it is reported ``down`` with the reason in ``agent status``
        and its worker keeps reopening it with backoff. Exiting instead made systemd
        restart the agent every few seconds, forever, without ever waiting for the reader.
        A malformed path still fails at start: :meth:`build_readers` refuses it.
        """
        missing: list[NfcError] = []
        for reader in self.readers:
            error = reader.try_open()
            if error is not None:
                missing.append(error)
        return missing

    def run_until(self, stop: threading.Event) -> None:
        self._write_pid()
        self._running = True
        try:
            for reader in self.readers:
                reader.start()
            if self.sync is not None:
                self.sync.start()
            while not stop.wait(SWEEP_INTERVAL_S):
                self._sweep()
        finally:
            self.shutdown()

    def _sweep(self) -> None:
        try:
            closed = self.registrar.close_overdue()
        except Exception:
            log.exception("sweeping overdue visits failed; will retry")
            return
        if closed:
            log.warning("closed %d visit(s) open too long: %s", len(closed), ", ".join(closed))
            if self.sync is not None:
                self.sync.kick()

    def shutdown(self) -> None:
        self._running = False
        for reader in self.readers:
            reader.stop()
        self._stop_sync()
        self.store.close()
        for name in (PID_NAME, STATE_NAME):
            with contextlib.suppress(FileNotFoundError):
                (self.config.data_dir / name).unlink()

    def _stop_sync(self) -> None:
        if self.sync is None:
            return
        if self.sync.stop():
            self.sync.client.close()
            if self._sync_store is not None:
                self._sync_store.close()
        else:
            # A request is in flight; the daemon thread ends with the process. Nothing is
            # lost: unacknowledged events stay pending and are re-sent next time.
            log.warning("sync thread still busy after %.0f s; leaving it to end with the "
                        "process", SYNC_STOP_GRACE_S)
        self.sync = None

    # --- state for `nyckelfri agent status` --------------------------------------------

    def _write_pid(self) -> None:
        (self.config.data_dir / PID_NAME).write_text(f"{os.getpid()}\n")
        with self._state_lock:
            self._write_state()

    def _write_state(self) -> None:
        path = self.config.data_dir / STATE_NAME
        tmp = path.with_suffix(".tmp")
        states = {p: {"state": s.state, "detail": s.detail} for p, s in self.reader_states.items()}
        tmp.write_text(json.dumps({"pid": os.getpid(), "readers": states,
                                   "sync": self.sync_state}))
        tmp.replace(path)


def running_agent(data_dir: Path) -> dict[str, Any] | None:
    """The running agent's pid and reader states, or None when none runs."""
    try:
        pid = int((data_dir / PID_NAME).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # runs as another user: alive
    try:
        state = json.loads((data_dir / STATE_NAME).read_text())
    except (OSError, ValueError):
        state = {"readers": {}}
    state["pid"] = pid
    return state
