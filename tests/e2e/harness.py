"""Run the real ``nyckelfri agent run`` as a child process and read its JSON lines."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import REFERENCE

# How long a simulated tag stays on the reader: a brisk tap.
HOLD_S = 0.7
DECISION_TIMEOUT_S = 15.0
START_TIMEOUT_S = 20.0


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )


def import_reference(data_dir: Path, reference: dict[str, Any] | None = None) -> None:
    ref = data_dir.parent / "reference.json"
    ref.write_text(json.dumps(reference or REFERENCE))
    result = run_cli("agent", "import-reference", str(ref), data_dir=data_dir)
    assert result.returncode == 0, result.stderr


class AgentProcess:
    """``python -m agent agent run --json`` with its output pumped into queues."""

    def __init__(self, data_dir: Path, readers: list[str], *extra: str) -> None:
        cmd = [sys.executable, "-m", "agent", "agent", "run", "--json", "--no-feedback",
               "--data-dir", str(data_dir), *extra]
        for reader in readers:
            cmd += ["--reader", reader]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, env={**os.environ})
        self.decisions: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        self._started = threading.Event()
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        if not self._started.wait(START_TIMEOUT_S):
            self.kill()
            raise AssertionError(f"agent did not start: {''.join(self.stderr)}")

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.decisions.put(json.loads(line))

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            if line.startswith("nyckelfri agent"):
                self._started.set()
        self._started.set()  # exited before starting: let the waiter look at stderr

    def next_decision(self, timeout: float = DECISION_TIMEOUT_S) -> dict[str, Any]:
        try:
            return self.decisions.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no decision within {timeout} s; agent stderr:\n{''.join(self.stderr)}"
            ) from None

    def stop(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def tap(field: Any, tag: Any, agent: AgentProcess, hold: float = HOLD_S) -> dict[str, Any]:
    """Present ``tag`` to ``field`` for ``hold`` seconds; return the agent's verdict."""
    field.present(tag, hold)
    decision = agent.next_decision()
    # wait until the tag has left, so the next tap is a new one
    deadline = time.monotonic() + hold + 1
    while field.tag_present if hasattr(field, "tag_present") else field.tag is not None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return decision
