"""Pulling a fitter's jobs: GET /v1/jobs with the client's headers and retries, stored
through the JobSink the agent's store provides; sync_once pulls only when given one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import pytest

from agent.store import Store
from sync.client import JobSink
from sync.errors import CentreUnreachable, ProtocolMismatch
from sync.protocol import (
    CHECKPOINTS_INSTALL,
    CHECKPOINTS_REMOVAL,
    PROTOCOL_HEADER,
    FitterJob,
    JobsPage,
)
from tests.sync.conftest import SERVER_START, FakeCentre, MakeClient, Sleeps, ok, problem

JOBS = [
    FitterJob(job_id=7, case_id=3, kind="install", client_ref="K-1", lock_serial="NF-000123",
              key_numbers=["N-12"], booked_start=datetime(2026, 12, 1, 9, tzinfo=UTC),
              status="booked", checkpoints=list(CHECKPOINTS_INSTALL)),
    FitterJob(job_id=9, case_id=4, kind="removal", client_ref="K-2", lock_serial="NF-000456",
              status="booked", checkpoints=list(CHECKPOINTS_REMOVAL),
              done=["lock_unbound_from_client"]),
]


class JobsCentre:
    """The fake centre plus a /v1/jobs route that plays its own faults."""

    def __init__(self, centre: FakeCentre, jobs: Sequence[FitterJob] = JOBS) -> None:
        self.centre = centre
        self.jobs = list(jobs)
        self.faults: list[httpx.Response | int] = []
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/jobs":
            return self.centre.handler(request)
        self.requests.append(request)
        if self.faults:
            fault = self.faults.pop(0)
            return problem(fault) if isinstance(fault, int) else fault
        return ok(JobsPage(jobs=self.jobs, server_time=SERVER_START))


class ListSink:
    def __init__(self) -> None:
        self.calls: list[list[FitterJob]] = []

    def replace_jobs(self, jobs: Sequence[FitterJob]) -> None:
        self.calls.append(list(jobs))


@pytest.fixture
def jobs_centre(centre: FakeCentre) -> JobsCentre:
    return JobsCentre(centre)


def test_store_is_a_job_sink(store: Store) -> None:
    assert isinstance(store, JobSink)


def test_pull_jobs_sends_headers_and_stores_jobs(make_client: MakeClient, store: Store,
                                                 jobs_centre: JobsCentre) -> None:
    client = make_client(transport=httpx.MockTransport(jobs_centre.handler), jobs=store)
    jobs = client.pull_jobs()
    assert [j.job_id for j in jobs] == [7, 9]
    request = jobs_centre.requests[0]
    assert request.method == "GET"
    assert request.headers["Authorization"] == "Bearer secret-token"
    assert request.headers[PROTOCOL_HEADER] == "1"
    assert store.jobs() == JOBS
    assert store.job(9) == JOBS[1] and store.job(8) is None


def test_pull_replaces_the_previous_list(make_client: MakeClient, store: Store,
                                         jobs_centre: JobsCentre) -> None:
    client = make_client(transport=httpx.MockTransport(jobs_centre.handler), jobs=store)
    client.pull_jobs()
    jobs_centre.jobs = [JOBS[1]]
    client.pull_jobs()
    assert [j.job_id for j in store.jobs()] == [9]


def test_pull_jobs_retries_a_busy_centre(make_client: MakeClient, jobs_centre: JobsCentre,
                                         sleeps: Sleeps) -> None:
    sink = ListSink()
    jobs_centre.faults = [503, 502]
    client = make_client(transport=httpx.MockTransport(jobs_centre.handler), jobs=sink)
    assert len(client.pull_jobs()) == 2
    assert len(jobs_centre.requests) == 3 and len(sleeps.waits) == 2
    assert [len(c) for c in sink.calls] == [2]


def test_pull_jobs_gives_up_and_keeps_stored_jobs(make_client: MakeClient, store: Store,
                                                  jobs_centre: JobsCentre) -> None:
    store.replace_jobs(JOBS[:1])
    jobs_centre.faults = [503] * 10
    client = make_client(transport=httpx.MockTransport(jobs_centre.handler), jobs=store,
                         max_attempts=2)
    with pytest.raises(CentreUnreachable):
        client.pull_jobs()
    assert store.jobs() == JOBS[:1]


def test_pull_jobs_refuses_a_malformed_answer(make_client: MakeClient,
                                              jobs_centre: JobsCentre) -> None:
    jobs_centre.faults = [httpx.Response(200, json={"jobs": [{"job_id": "x"}]})]
    client = make_client(transport=httpx.MockTransport(jobs_centre.handler), jobs=ListSink())
    with pytest.raises(ProtocolMismatch):
        client.pull_jobs()


def test_sync_once_pulls_jobs_only_with_a_sink(make_client: MakeClient, store: Store,
                                               jobs_centre: JobsCentre) -> None:
    plain = make_client(transport=httpx.MockTransport(jobs_centre.handler))
    report = plain.sync_once()
    assert jobs_centre.requests == [] and report.jobs is None
    assert "jobs" not in report.as_dict()

    fitter = make_client(transport=httpx.MockTransport(jobs_centre.handler), jobs=store)
    report = fitter.sync_once()
    assert len(jobs_centre.requests) == 1 and report.jobs == 2
    assert report.as_dict()["jobs"] == 2
    assert [j.job_id for j in store.jobs()] == [7, 9]


def test_sync_once_with_a_centre_without_jobs(make_client: MakeClient, store: Store,
                                              jobs_centre: JobsCentre) -> None:
    store.replace_jobs(JOBS)
    jobs_centre.faults = [404]
    client = make_client(transport=httpx.MockTransport(jobs_centre.handler), jobs=store)
    report = client.sync_once()  # an older centre: not an error, the jobs stay
    assert report.jobs is None and store.jobs() == JOBS
    jobs_centre.faults = [404]
    with pytest.raises(ProtocolMismatch):  # asked for explicitly, it is one
        client.pull_jobs()
