"""A centre that dies (SIGKILL, no clean-up) right after an ingest's COMMIT, before it
applies anything: run as ``python -m tests.central.dying_centre DATABASE PORT`` by
tests/central/test_applications.py. Everything else is the real centre."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import uvicorn

from central import applications
from central.http.app import create_app
from central.store import CentralStore


def _die(*_args: Any, **_kwargs: Any) -> bool:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: SIGKILL cannot be caught")


def main() -> None:
    database, port = sys.argv[1], int(sys.argv[2])
    store = CentralStore.open(database, migrate=False)
    applications._apply_one = _die  # the first application kills the process
    uvicorn.run(create_app(store), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
