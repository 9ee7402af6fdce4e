"""Retry classification and backoff of the sync client (httpx.MockTransport, no real sleep)."""

from __future__ import annotations

import random
import threading

import httpx
import pytest
import tenacity
from hypothesis import given
from hypothesis import strategies as st

from sync.client import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    MAX_ATTEMPTS,
    RETRYABLE_STATUS,
    FullJitterBackoff,
    SyncClient,
)
from sync.errors import (
    Cancelled,
    CentreUnreachable,
    Forbidden,
    ProtocolMismatch,
    RejectedRequest,
    SyncError,
    Unauthorized,
)
from sync.protocol import PROTOCOL_HEADER
from tests.sync.conftest import problem

NO_ANSWER = [
    httpx.ConnectError("connection refused"),
    httpx.ConnectTimeout("connect timed out"),
    httpx.ReadTimeout("read timed out"),
    httpx.ReadError("connection reset by peer"),
    httpx.RemoteProtocolError("peer closed connection without sending a response"),
]


def test_every_request_names_the_protocol_and_the_token(make_client, centre):
    make_client().measure_clock()
    [request] = centre.requests
    assert request.headers[PROTOCOL_HEADER] == "1"
    assert request.headers["Authorization"] == "Bearer secret-token"
    assert "secret-token" not in repr(make_client())


@pytest.mark.parametrize("fault", [*sorted(RETRYABLE_STATUS), *NO_ANSWER],
                         ids=lambda f: str(f) if isinstance(f, int) else type(f).__name__)
def test_retryable_failures_are_retried_with_backoff(make_client, centre, sleeps, fault):
    centre.faults.extend([fault, fault])
    sample = make_client().measure_clock()
    assert sample.server_time is not None
    assert len(centre.requests) == 3
    assert len(sleeps.waits) == 2
    assert 0 <= sleeps.waits[0] <= BACKOFF_BASE_S and 0 <= sleeps.waits[1] <= 2 * BACKOFF_BASE_S


@pytest.mark.parametrize("fault", [503, httpx.ConnectError("refused")],
                         ids=["503", "refused"])
def test_retries_stop_after_max_attempts_with_advice(make_client, centre, sleeps, fault):
    centre.faults.extend([fault] * 10)
    with pytest.raises(CentreUnreachable, match="Nothing is lost") as info:
        make_client(max_attempts=4).measure_clock()
    assert len(centre.requests) == 4 and len(sleeps.waits) == 3
    assert info.value.attempts == 4
    assert info.value.status == (503 if fault == 503 else None)


def test_default_attempts(make_client, centre, sleeps):
    centre.faults.extend([502] * 10)
    with pytest.raises(CentreUnreachable):
        make_client().measure_clock()
    assert len(centre.requests) == MAX_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, RejectedRequest), (401, Unauthorized), (403, Forbidden), (404, ProtocolMismatch),
     (413, RejectedRequest), (415, RejectedRequest), (422, RejectedRequest),
     (426, ProtocolMismatch)],
)
def test_refusals_are_not_retried_and_carry_the_centres_words(make_client, centre, sleeps,
                                                              status, error):
    centre.faults.append(problem(status, "why", advice="do this", detail="because of that"))
    with pytest.raises(error) as info:
        make_client().measure_clock()
    assert len(centre.requests) == 1 and sleeps.waits == []
    assert info.value.status == status
    assert "because of that" in str(info.value) and "do this" in str(info.value)
    assert info.value.detail == "because of that" and info.value.advice == "do this"


def test_refusal_without_problem_body_gets_our_advice(make_client, centre):
    centre.faults.append(httpx.Response(401, text="<html>nope</html>"))
    with pytest.raises(Unauthorized, match="token_file"):
        make_client().measure_clock()


def test_redirect_is_not_followed(make_client, centre):
    centre.faults.append(httpx.Response(308, headers={"Location": "https://centre.test/"}))
    with pytest.raises(ProtocolMismatch, match="set centre_url to the address"):
        make_client().measure_clock()
    assert len(centre.requests) == 1


def test_answer_that_is_not_the_protocol_is_a_mismatch_not_a_retry(make_client, centre, sleeps):
    centre.faults.append(httpx.Response(200, json={"hello": "world"}))
    with pytest.raises(ProtocolMismatch, match="ClockResponse"):
        make_client().measure_clock()
    assert len(centre.requests) == 1


def test_retry_after_is_honoured_up_to_the_cap(make_client, centre, sleeps):
    centre.faults.extend([problem(503, headers={"Retry-After": "5"}),
                          problem(429, headers={"Retry-After": "3600"})])
    make_client().measure_clock()
    assert sleeps.waits[0] >= 5
    assert sleeps.waits[1] == BACKOFF_CAP_S


def test_full_jitter_ceilings():
    backoff = FullJitterBackoff()
    assert [backoff.ceiling(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def _state(attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


@given(attempt=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_full_jitter_stays_in_its_window(attempt, seed):
    wait = FullJitterBackoff(rng=random.Random(seed))(_state(attempt))
    assert 0 <= wait <= min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))


def test_jitter_spreads_agents_that_failed_together():
    # 50 agents lose the centre at the same moment: their 4th retry is spread over
    # the whole window [0, 4 s], so the centre is not hit by all of them at once.
    waits = [FullJitterBackoff(rng=random.Random(seed))(_state(4)) for seed in range(50)]
    assert min(waits) < 1 and max(waits) > 3


def test_cancel_before_a_request(make_client, centre):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        make_client(cancel=cancel, sleep=None).sync_once()
    assert centre.requests == []


def test_cancel_interrupts_the_backoff(make_client, centre):
    cancel = threading.Event()

    def refuse_and_stop(request):
        cancel.set()  # SIGTERM arrives while the agent would be waiting to retry
        raise httpx.ConnectError("refused")

    client = make_client(cancel=cancel, sleep=None, wait=lambda state: 3600.0,
                         transport=httpx.MockTransport(refuse_and_stop))
    with pytest.raises(Cancelled):
        client.measure_clock()  # returns at once, not after an hour


@pytest.mark.parametrize(
    ("url", "token", "device", "match"),
    [("centre.test:8700", "t", "a", "http://"), ("http://c", "", "a", "token"),
     ("http://c", "t", "bad name!", "device id")],
)
def test_bad_settings_are_refused_with_advice(store, clock, url, token, device, match):
    with pytest.raises(SyncError, match=match):
        SyncClient(url, token, device, store, store, clock)
