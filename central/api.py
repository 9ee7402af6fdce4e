"""The centre's HTTP API: kept for callers of ``central.api``; it lives in :mod:`central.http`.

:func:`create_app` builds the application (:mod:`central.http.app`); the answers
other than success are :mod:`central.http.problems`'.
"""

from __future__ import annotations

from central.http.app import create_app
from central.http.problems import SERVER_TIME_HEADER, ApiProblem, problem_response

__all__ = ["SERVER_TIME_HEADER", "ApiProblem", "create_app", "problem_response"]
