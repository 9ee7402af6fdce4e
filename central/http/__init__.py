"""The centre's HTTP API, in small modules (the rules every answer follows: :mod:`.app`).

- :mod:`.problems`: ProblemDetail answers and the mapping of every error to one
- :mod:`.middleware`: body size limit, server-time header, protocol version
- :mod:`.dependencies`: the store, tokens, roles and content type of a request
- :mod:`.routes_sync`: the sync endpoints (clock, events, reference)
- :mod:`.routes_admin` and :mod:`.answers`: administration and health
- :mod:`.app`: :func:`create_app`, which puts them together
"""

from __future__ import annotations

from central.http.app import create_app

__all__ = ["create_app"]
