"""Serving the centre's API with uvicorn: in the foreground, or in a thread for tests.

:func:`serve` opens the store (upgrading the schema once), runs uvicorn until
SIGTERM or Ctrl-C, lets requests in flight finish, and closes the store.
:func:`run_in_thread` serves any ASGI app on a free port of this machine for tests
and the demo, and stops it when the ``with`` block ends.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from central.defaults import DATABASE_ENV, DEFAULT_PORT
from central.http.app import create_app
from central.store import CentralStore

log = logging.getLogger(__name__)

# Requests in flight at SIGTERM get this long to finish; an agent whose push was
# cut off retries it, and the centre stores each event once.
GRACEFUL_SHUTDOWN_S = 10
# Idle keep-alive connections of agents are closed after this long (uvicorn's default).
KEEP_ALIVE_S = 5
# A server thread that has not bound its port by then is broken (port taken, bad cert).
STARTUP_TIMEOUT_S = 15.0
STARTUP_POLL_S = 0.01
# Joining the server thread after asking it to stop.
STOP_TIMEOUT_S = GRACEFUL_SHUTDOWN_S + 5.0


class ServerError(RuntimeError):
    """The server could not start: the message says why and what to do."""


class _Stopped(Exception):
    """SIGTERM arrived (after uvicorn's own graceful shutdown, or before it ran)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _tls(tls_cert: Path | str | None, tls_key: Path | str | None) -> dict[str, Any]:
    if (tls_cert is None) != (tls_key is None):
        raise ServerError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    if tls_cert is None or tls_key is None:
        return {}
    for path in (tls_cert, tls_key):
        if not Path(path).is_file():
            raise ServerError(f"TLS file {path} does not exist")
    return {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}


def _config(app: Any, host: str, port: int, *, tls: dict[str, Any], log_level: str,
            **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, **tls,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, timeout_keep_alive=KEEP_ALIVE_S,
        proxy_headers=False, server_header=False, **options)


def serve(database: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
          tls_cert: Path | str | None = None, tls_key: Path | str | None = None,
          workers: int = 1, log_level: str = "info") -> None:
    """Serve the API over ``database`` until SIGTERM or Ctrl-C; returns after a clean stop.

    With ``workers > 1`` uvicorn runs that many processes, each opening the
    database itself (meant for PostgreSQL); the schema is upgraded once, here.
    """
    tls = _tls(tls_cert, tls_key)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        store = CentralStore.open(database)
        try:
            if workers > 1:
                store.close()
                _serve_workers(database, host, port, tls=tls, workers=workers,
                               log_level=log_level)
            else:
                _run(uvicorn.Server(_config(create_app(store), host, port, tls=tls,
                                            log_level=log_level)), host, port)
        finally:
            store.close()
    except (_Stopped, KeyboardInterrupt):
        log.info("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(server: uvicorn.Server, host: str, port: int) -> None:
    """uvicorn exits the process when it cannot listen: make that an error with advice."""
    try:
        server.run()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise ServerError(f"could not serve on {host}:{port} (see the log above): is the "
                              "port taken, or the TLS key not the certificate's?") from None


def _serve_workers(database: str, host: str, port: int, *, tls: dict[str, Any], workers: int,
                   log_level: str) -> None:
    os.environ[DATABASE_ENV] = database
    config = _config("central.server:app_from_environment", host, port, tls=tls,
                     log_level=log_level, factory=True, workers=workers)
    sock = config.bind_socket()
    # uvicorn binds with proto=0, so asyncio never sets TCP_NODELAY on accepted
    # connections (Kludex/uvicorn#3149): Nagle then adds ~40 ms to every answer on a
    # keep-alive connection. Accepted sockets inherit the option on Linux.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    uvicorn.supervisors.Multiprocess(config, sockets=[sock]).run()


def app_from_environment() -> FastAPI:
    """The app of one worker process (uvicorn factory): the database from the environment."""
    store = CentralStore.open(os.environ[DATABASE_ENV], migrate=False)

    app = create_app(store)
    sweeping = app.router.lifespan_context

    @asynccontextmanager
    async def closing(app_: Any) -> AsyncIterator[None]:
        try:
            async with sweeping(app_):
                yield
        finally:
            store.close()

    app.router.lifespan_context = closing
    return app


def _base_url(server: uvicorn.Server, tls: bool) -> str:
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive():
            raise ServerError("the server thread stopped while starting: is the port taken "
                              "or the TLS certificate unreadable? see the log")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise ServerError(f"the server did not start within {STARTUP_TIMEOUT_S} s")
        time.sleep(STARTUP_POLL_S)


@contextmanager
def run_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *,
                  tls_cert: Path | str | None = None, tls_key: Path | str | None = None,
                  log_level: str = "warning",
                  ) -> Iterator[tuple[uvicorn.Server, threading.Thread, str]]:
    """Serve ``app`` from a thread; yields ``(server, thread, base_url)``.

    ``port=0`` picks a free port; the URL names the one bound. Leaving the block
    stops the server (requests in flight finish) and joins the thread.
    """
    tls = _tls(tls_cert, tls_key)
    server = uvicorn.Server(_config(app, host, port, tls=tls, log_level=log_level,
                                    log_config=None))
    thread = threading.Thread(target=server.run, name=f"central-http-{host}:{port}",
                              daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        yield server, thread, _base_url(server, bool(tls))
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.warning("server thread %s did not stop within %s s", thread.name,
                        STOP_TIMEOUT_S)
