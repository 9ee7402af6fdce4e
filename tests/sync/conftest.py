"""A scripted centre behind httpx.MockTransport that speaks sync.protocol, and helpers.

The fake keeps events by id (stored once, like the real centre), answers with the
protocol's models, and plays faults from a queue: a status code, an exception
raised before the centre sees the request, or ``CUT`` (the centre commits, the
answer is lost on the way back).
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agent.clock import FixedClock
from agent.store import Store
from sync.client import FullJitterBackoff, SyncClient
from sync.protocol import (
    ClockResponse,
    ProblemDetail,
    PushRequest,
    PushResponse,
    ReferenceItem,
    ReferencePage,
    Rejection,
)

CUT = "cut-after-commit"
SERVER_START = datetime(2026, 11, 30, 8, 0, 5, tzinfo=UTC)  # 5 s ahead of the agent's clock


@dataclass
class FakeCentre:
    clock: FixedClock  # the agent's clock: a request "takes" latency_s of it
    latency_s: float = 0.0
    faults: deque[Any] = field(default_factory=deque)
    rejects: dict[str, str] = field(default_factory=dict)  # event id -> reason
    forget: set[str] = field(default_factory=set)  # ids answered neither stored nor rejected
    max_events: int | None = None  # 413 above this many events in one push
    reference: list[ReferenceItem] = field(default_factory=list)
    page_size: int = 1000
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[int] = field(default_factory=list)  # copies per event id, in order seen
    requests: list[httpx.Request] = field(default_factory=list)
    clocks: list[Any] = field(default_factory=list)  # PushRequest.clock of every push

    def server_time(self) -> datetime:
        return SERVER_START + timedelta(seconds=len(self.requests))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fault = self.faults.popleft() if self.faults else None
        if isinstance(fault, Exception):
            raise fault
        if isinstance(fault, int):
            return problem(fault, headers={})
        if isinstance(fault, httpx.Response):
            return fault
        if self.latency_s:
            self.clock.advance(self.latency_s)
        response = self._route(request)
        if fault == CUT:
            raise httpx.RemoteProtocolError("peer closed connection without sending a response",
                                            request=request)
        return response

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/clock":
            return ok(ClockResponse(server_time=self.server_time()))
        if path == "/v1/events":
            return self._push(PushRequest.model_validate_json(request.content))
        if path == "/v1/reference":
            return self._page(int(request.url.params["since"]),
                              int(request.url.params["limit"]))
        return problem(404)

    def _push(self, push: PushRequest) -> httpx.Response:
        if self.max_events is not None and len(push.events) > self.max_events:
            return problem(413, "body_too_large", "send smaller batches")
        self.clocks.append(push.clock)
        stored, rejected = [], []
        for event in push.events:
            if event.event_id in self.rejects:
                rejected.append(Rejection(event_id=event.event_id,
                                          reason=self.rejects[event.event_id]))
                continue
            if event.event_id in self.forget:
                continue
            self.events.setdefault(event.event_id, event.model_dump(mode="json"))
            stored.append(event.event_id)
        return ok(PushResponse(stored=stored, rejected=rejected, server_time=self.server_time()))

    def _page(self, since: int, limit: int) -> httpx.Response:
        newer = [i for i in sorted(self.reference, key=lambda i: i.version) if i.version > since]
        items = newer[: min(limit, self.page_size)]
        cursor = items[-1].version if items else since
        return ok(ReferencePage(items=items, cursor=cursor, more=len(newer) > len(items),
                                server_time=self.server_time()))

    # --- what the tests look at ----------------------------------------------------------

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/v1/events"]

    def pushed_ids(self) -> list[list[str]]:
        return [[e["event_id"] for e in json.loads(r.content)["events"]] for r in self.posts()]


def ok(model: Any) -> httpx.Response:
    return httpx.Response(200, json=model.model_dump(mode="json"))


def problem(status: int, error: str = "", advice: str = "",
            headers: dict[str, str] | None = None, detail: str | None = None) -> httpx.Response:
    body = ProblemDetail(error=error or f"e{status}", detail=detail or f"detail of {status}",
                         advice=advice, server_time=SERVER_START)
    return httpx.Response(status, json=body.model_dump(mode="json"), headers=headers or {})


@dataclass
class Sleeps:
    """Records the backoff instead of sleeping."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def centre(clock: FixedClock) -> FakeCentre:
    return FakeCentre(clock)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


MakeClient = Callable[..., SyncClient]


@pytest.fixture
def make_client(store: Store, clock: FixedClock, centre: FakeCentre,
                sleeps: Sleeps) -> MakeClient:
    clients: list[SyncClient] = []

    def make(**kw: Any) -> SyncClient:
        options: dict[str, Any] = {
            "anchors": store,
            "transport": httpx.MockTransport(centre.handler),
            "sleep": sleeps,
            "wait": FullJitterBackoff(rng=random.Random(7)),
            "wall_clock": lambda: clock.wall,
            "clock_samples": 1,
            **kw,
        }
        client = SyncClient("http://centre.test", "secret-token", "test-agent", store, store,
                            clock, **options)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def add_events(store: Store, clock: FixedClock, n: int, kind: str = "test.event") -> list[str]:
    with store.transaction() as conn:
        ids = [store.add_event(conn, kind, clock.now(), {"n": i}) for i in range(n)]
    return ids
