"""The centre's HTTP API: the sync endpoints of :mod:`sync.protocol`, administration, and
the routine (cases, binder, keys, tags, alerts, reports: :mod:`.routes_routine`),
SUN provisioning and tag keys (:mod:`.routes_sun`).

:func:`create_app` builds a FastAPI application over an injected
:class:`~central.store.CentralStore`; nothing is opened at import time.

Rules every answer follows:

- the centre's clock is in every answer: ``server_time`` in JSON bodies (errors too)
  and the ``X-Nyckelfri-Server-Time`` header (ISO 8601);
- every 4xx/5xx body is a :class:`~sync.protocol.ProblemDetail` (error, detail,
  advice); hostile or malformed requests get a 4xx with a reason, never a 500;
- ``/v1`` routes need the ``X-Nyckelfri-Protocol`` header (426 otherwise);
- a push is answered only after the store has durably stored the events;
- while the app runs, a sweeper applies the routine's events left pending
  (:mod:`central.applications`): once at start-up, then every ``sweep_interval`` s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from central.applications import SWEEP_INTERVAL_S, Sweeper
from central.cases.store import RoutineStore
from central.http import routes_admin, routes_routine, routes_sun, routes_sync
from central.http.middleware import BodyLimit, ServerTimeHeader
from central.http.problems import install_error_handlers
from central.store import CentralStore
from central.web.app import install as install_web
from sync.protocol import MAX_BODY_BYTES, PROTOCOL_VERSION


def create_app(store: CentralStore, *, max_body_bytes: int = MAX_BODY_BYTES,
               routine: RoutineStore | None = None,
               sweep_interval: float = SWEEP_INTERVAL_S) -> FastAPI:
    """The centre's API over ``store`` (which the caller opens and closes).

    ``routine`` is the routine store over ``store`` (default: one with the default
    units and key policy).
    """
    @asynccontextmanager
    async def sweeping(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = Sweeper(store, sweep_interval)
        await anyio.to_thread.run_sync(sweeper.sweep)  # what a crash left, before serving
        sweeper.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(sweeper.stop)

    app = FastAPI(
        title="nyckelfri central",
        version=str(PROTOCOL_VERSION),
        description=__doc__,
        docs_url=None, redoc_url=None, lifespan=sweeping,
    )
    app.state.store = store
    app.state.routine = routine or RoutineStore(store)
    app.include_router(routes_sync.router)
    app.include_router(routes_admin.router)
    app.include_router(routes_routine.router)
    app.include_router(routes_sun.router)
    app.include_router(routes_admin.operations)
    install_error_handlers(app)
    install_web(app)  # the routine's pages for people (central.web); after the handlers
    app.add_middleware(BodyLimit, limit=max_body_bytes, now=store.now)
    app.add_middleware(ServerTimeHeader, now=store.now)
    return app
