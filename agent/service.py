"""The long-running agent: readers -> registrar -> store, and a line per tap.

``nyckelfri agent run`` builds an :class:`AgentService` and calls
:meth:`AgentService.run_until` with an event its signal handlers set. Each
reader has its own worker thread; a sweeper closes visits left open too long.
Nothing here waits for the network.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.clock import Clock, SystemClock
from agent.config import AgentConfig
from agent.store import Store
from agent.visits import Decision, Registrar
from drivers.nfc.base import Feedback, Tap
from drivers.nfc.feedback import feedback_for
from drivers.nfc.reader import NfcpyReader, open_frontend

log = logging.getLogger(__name__)

PID_NAME = "agent.pid"
STATE_NAME = "agent.state.json"
# Visits left open are swept this often; the limit itself is hours, so a minute
# of lateness in noticing is harmless.
SWEEP_INTERVAL_S = 60.0


@dataclass
class ReaderState:
    path: str
    state: str = "starting"
    detail: str = ""


@dataclass
class AgentService:
    config: AgentConfig
    emit: Callable[[Decision], None]
    clock: Clock = field(default_factory=SystemClock)
    frontend_factory: Callable[[str], Any] = open_frontend

    def __post_init__(self) -> None:
        self.store = Store.in_dir(self.config.data_dir, device_id=self.config.device_id)
        self.registrar = Registrar(self.store, self.clock, self.config.visit_settings())
        self.readers: list[NfcpyReader] = []
        self.reader_states: dict[str, ReaderState] = {}
        self._state_lock = threading.Lock()

    # --- wiring ----------------------------------------------------------------------

    def on_tap(self, tap: Tap) -> Feedback:
        decision = self.registrar.handle(tap)  # returns after COMMIT: durable
        self.emit(decision)
        return decision.feedback

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

    def open_readers(self) -> None:
        """Open every reader once in the foreground so a wrong path fails at start."""
        for reader in self.readers:
            reader.open()

    def run_until(self, stop: threading.Event) -> None:
        self._write_pid()
        try:
            for reader in self.readers:
                reader.start()
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

    def shutdown(self) -> None:
        for reader in self.readers:
            reader.stop()
        self.store.close()
        for name in (PID_NAME, STATE_NAME):
            with contextlib.suppress(FileNotFoundError):
                (self.config.data_dir / name).unlink()

    # --- state for `nyckelfri agent status` --------------------------------------------

    def _write_pid(self) -> None:
        (self.config.data_dir / PID_NAME).write_text(f"{os.getpid()}\n")
        with self._state_lock:
            self._write_state()

    def _write_state(self) -> None:
        path = self.config.data_dir / STATE_NAME
        tmp = path.with_suffix(".tmp")
        states = {p: {"state": s.state, "detail": s.detail} for p, s in self.reader_states.items()}
        tmp.write_text(json.dumps({"pid": os.getpid(), "readers": states}))
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
