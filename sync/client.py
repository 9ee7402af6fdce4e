"""The agent-side sync client: push the outbox, pull reference data, measure the clock.

What it needs from the agent it declares here as small Protocols (architecture.md:
``sync`` never imports ``agent``); ``agent.store.Store`` provides all of them.

Delivery is at least once, application at most once: a batch is re-sent until an
answer lists its ids as ``stored``, and only those ids are marked sent. A connection
cut after the centre committed but before the agent read the answer is therefore
harmless: the retry re-sends, the centre's idempotency (keyed by ``event_id``)
keeps one copy and answers "stored", and the agent marks the events sent then.

Retries are explicit: :data:`RETRYABLE_ERRORS` (no answer, timeouts, 5xx, 429) are
retried with capped exponential backoff and full jitter, at most ``max_attempts``
times per HTTP call; refusals (401, 403, 426, 4xx) are raised at once as typed
:mod:`sync.errors` carrying the centre's ``detail`` and ``advice``.

A client is used by one thread at a time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

import httpx
import tenacity
from pydantic import BaseModel, TypeAdapter, ValidationError

from routine.timekeeping import Anchor
from sync.errors import (
    Cancelled,
    CentreAnswerError,
    CentreUnreachable,
    Forbidden,
    ProtocolMismatch,
    RejectedRequest,
    SyncError,
    Unauthorized,
)
from sync.protocol import (
    MAX_BATCH,
    MAX_REFERENCE_PAGE,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    ClockResponse,
    ClockSample,
    DeviceName,
    Event,
    FitterJob,
    JobsPage,
    ProblemDetail,
    PushRequest,
    PushResponse,
    ReferenceItem,
    ReferencePage,
    Rejection,
    SunTagKeys,
    TagKeysPage,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# --- timeouts (per attempt) ----------------------------------------------------------------

# A TCP (+TLS) handshake with the centre takes well under a second even over 4G;
# five seconds without one means the link is down: give up this attempt, retry later.
CONNECT_TIMEOUT_S = 5.0
# The centre answers a push only after it has durably committed the whole batch
# (up to MAX_BATCH events with fsync); under load that may take seconds, never 30.
READ_TIMEOUT_S = 30.0
# A full batch (~250 KiB, at most MAX_BODY_BYTES) over a weak mobile uplink.
WRITE_TIMEOUT_S = 30.0
# One request at a time per client: waiting this long for a pooled connection is a bug.
POOL_TIMEOUT_S = 5.0
TIMEOUTS = httpx.Timeout(
    connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S, write=WRITE_TIMEOUT_S, pool=POOL_TIMEOUT_S
)

# --- retries -------------------------------------------------------------------------------

# The first retry comes within half a second: a dropped packet or a centre restart
# usually passes that fast.
BACKOFF_BASE_S = 0.5
# Never wait longer than this between two attempts of one call; past it the agent's
# background loop (its own, longer backoff) takes over.
BACKOFF_CAP_S = 30.0
# Attempts per HTTP call before CentreUnreachable: with the backoff above, at most
# 0.5 + 1 + 2 + 4 = 7.5 s of waiting (plus timeouts) before a person hears of it.
MAX_ATTEMPTS = 5
# Answers that mean "the centre is there but cannot serve now": retried. 500 is
# included because the centre's handlers are idempotent (a push keyed by event_id,
# reads without side effects), so a retry cannot double anything.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# No answer at all: refused/reset connections, timeouts, a connection cut mid-answer.
RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

# The first clock request of a round may pay for TCP/TLS setup in its round trip;
# the next ones reuse the connection and measure the path. The shortest wins.
CLOCK_SAMPLES = 3

USER_AGENT = "nyckelfri-agent"


class _CentreBusy(Exception):
    """A retryable answer (5xx, 429); converted to CentreUnreachable when attempts run out."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.status_code} {response.reason_phrase}")
        self.status = response.status_code
        self.retry_after = _retry_after_s(response)
        self.problem = _problem(response)


RETRYABLE_ERRORS: tuple[type[Exception], ...] = (*RETRYABLE_TRANSPORT_ERRORS, _CentreBusy)


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from our centre, the jittered backoff will do


# --- what the agent hands in -------------------------------------------------------------


class PendingEvent(Protocol):
    """An outbox row: its id and the event envelope (sync.protocol.Event as a dict)."""

    @property
    def event_id(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


class Outbox(Protocol):
    """Where events wait until the centre holds them (agent.store.Store)."""

    def pending_events(self, limit: int) -> Sequence[PendingEvent]:
        """Oldest first; neither sent nor set aside as rejected."""
        ...

    def mark_sent(self, event_ids: Sequence[str], sent_at: str) -> int: ...

    def mark_rejected(self, event_id: str, reason: str) -> None:
        """Set an event aside for a person: no longer pending, never deleted."""
        ...

    def pending_count(self) -> int: ...


class ReferenceSink(Protocol):
    """Where reference data from the centre goes (agent.store.Store)."""

    def reference_cursor(self) -> int: ...

    def apply_reference(self, items: Sequence[ReferenceItem], cursor: int) -> None:
        """Apply one page and store its cursor in ONE transaction."""
        ...


@runtime_checkable
class JobSink(Protocol):
    """Where pulled fitter jobs go (``agent.store.Store``): the centre's current list
    of this device's jobs replaces the previous one."""

    def replace_jobs(self, jobs: Sequence[FitterJob]) -> None: ...


@runtime_checkable
class TagKeySink(Protocol):
    """Where pulled SUN keys go (``agent.store.Store``): the centre's current set for this
    device's unit, and the deployment's tag policy, replace what was held."""

    def replace_tag_keys(self, policy: str, tags: Sequence[SunTagKeys]) -> None: ...


class ClockStore(Protocol):
    """Keeps the best clock anchor of each boot across restarts (agent.store.Store)."""

    def save_anchor(self, anchor: Anchor) -> None: ...

    def anchor(self, boot_id: str) -> Anchor | None: ...


class ClockSource(Protocol):
    """This boot's identity and CLOCK_BOOTTIME (agent.clock.SystemClock)."""

    @property
    def boot_id(self) -> str: ...

    def boottime_ns(self) -> int: ...


ProgressCallback = Callable[[int, int], None]  # (events done, events in total)


# --- reports -----------------------------------------------------------------------------


@dataclass
class PushReport:
    sent: int = 0  # events transmitted (a re-sent batch counts again)
    stored: int = 0  # events the centre acknowledged as durably held, now marked sent
    rejected: list[Rejection] = field(default_factory=list)  # set aside for a person
    batches: int = 0
    unacknowledged: int = 0  # sent, but neither stored nor rejected: stay pending
    remaining: int = 0  # still pending when the push ended


@dataclass(frozen=True)
class SyncReport:
    push: PushReport
    reference_items: int
    clock: ClockSample  # this round's best sample
    offset_s: float  # centre's clock minus this device's wall clock
    duration_s: float
    jobs: int | None = None  # fitter jobs pulled (None: not pulled this round)
    tag_keys: int | None = None  # SUN tags whose keys were pulled (None: not pulled)

    def as_dict(self) -> dict[str, Any]:
        push = asdict(self.push)
        push["rejected"] = [r.model_dump() for r in self.push.rejected]
        return {
            "pushed": self.push.sent,
            "stored": self.push.stored,
            "rejected": len(self.push.rejected),
            "reference_items": self.reference_items,
            "clock_offset_s": round(self.offset_s, 6),
            "clock_rtt_ms": round(self.clock.rtt_ns / 1e6, 3),
            "duration_s": round(self.duration_s, 3),
            "push": push,
            **({} if self.jobs is None else {"jobs": self.jobs}),
            **({} if self.tag_keys is None else {"tag_keys": self.tag_keys}),
        }


# --- backoff -----------------------------------------------------------------------------


@dataclass
class FullJitterBackoff:
    """Wait a random time in [0, min(cap, base * 2**(attempt-1))] ("full jitter"):
    hundreds of agents that lost the centre together do not return in step.
    A ``Retry-After`` from the centre is honoured up to the cap."""

    base_s: float = BACKOFF_BASE_S
    cap_s: float = BACKOFF_CAP_S
    rng: random.Random = field(default_factory=random.Random)

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** (attempt - 1))

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = self.rng.uniform(0.0, self.ceiling(retry_state.attempt_number))
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _CentreBusy) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.cap_s))
        return delay


# --- the client ----------------------------------------------------------------------------


class SyncClient:
    """Talks to the centre for one device. Close it (or use ``with``) when done."""

    def __init__(
        self,
        base_url: str,
        token: str,
        device_id: str,
        outbox: Outbox,
        reference: ReferenceSink,
        clock: ClockSource,
        *,
        anchors: ClockStore | None = None,
        jobs: JobSink | None = None,
        tag_keys: TagKeySink | None = None,
        transport: httpx.BaseTransport | None = None,
        batch_size: int = MAX_BATCH,
        max_attempts: int = MAX_ATTEMPTS,
        timeouts: httpx.Timeout = TIMEOUTS,
        wait: Callable[[tenacity.RetryCallState], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        clock_samples: int = CLOCK_SAMPLES,
    ) -> None:
        scheme = urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise SyncError(f"centre URL {base_url!r} must start with http:// or https:// "
                            "(set centre_url in agent.toml or NYCKELFRI_CENTRE_URL)")
        if not token:
            raise SyncError("no token for the centre: set token or token_file in agent.toml, "
                            "or NYCKELFRI_TOKEN; the centre's administrator issues it")
        try:
            TypeAdapter(DeviceName).validate_python(device_id)
        except ValidationError:
            raise SyncError(f"device id {device_id!r} cannot be used at the centre: 1-64 "
                            "letters, digits, '.', '_' or '-'; set device_id in agent.toml"
                            ) from None
        if not 1 <= batch_size <= MAX_BATCH:
            raise SyncError(f"batch_size must be 1..{MAX_BATCH}, got {batch_size}")
        self.base_url = base_url
        self.device_id = device_id
        self.outbox = outbox
        self.reference = reference
        self.clock = clock
        self.anchors = anchors
        # Fitter jobs are pulled each round only when a sink is given (a fitter's agent
        # passes its store): other agents make no extra request.
        self.jobs = jobs
        self.tag_keys = tag_keys
        self.batch_size = batch_size
        self.max_attempts = max(1, max_attempts)
        self.clock_samples = max(1, clock_samples)
        self._wait = wait or FullJitterBackoff()
        self._cancel = cancel
        self._sleep = sleep or (self._cancellable_sleep if cancel is not None else time.sleep)
        self._wall = wall_clock or (lambda: datetime.now(UTC))
        self._best: ClockSample | None = None
        self._round_batch = batch_size
        self._http = httpx.Client(
            base_url=base_url,
            transport=transport,
            timeout=timeouts,
            follow_redirects=False,
            headers={
                PROTOCOL_HEADER: str(PROTOCOL_VERSION),
                "Authorization": f"Bearer {token}",
                "User-Agent": f"{USER_AGENT} ({device_id})",
                "Accept": "application/json",
            },
        )

    def __repr__(self) -> str:  # never the token
        return f"SyncClient({self.base_url!r}, device_id={self.device_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one round ---------------------------------------------------------------------

    def sync_once(self, progress: ProgressCallback | None = None) -> SyncReport:
        """Measure the clock, push the whole outbox, pull reference data changes."""
        started = self.clock.boottime_ns()
        sample, offset_s = self._measure()
        try:
            push = self.push_all(progress)
        except RejectedRequest:
            # The centre refused a push; reference data (a lock now installed, a tag
            # withdrawn) must still arrive. Pull, then report the refusal.
            self.pull_reference()
            raise
        items = self.pull_reference()
        jobs = self._pull_jobs_if_served() if self.jobs is not None else None
        keys = self._pull_tag_keys_if_served() if self.tag_keys is not None else None
        duration_s = (self.clock.boottime_ns() - started) / 1e9
        report = SyncReport(push, items, sample, offset_s, duration_s, jobs, keys)
        log.info("sync %s: pushed %d, stored %d, rejected %d, reference items %d, "
                 "clock offset %+.3f s (rtt %.1f ms) in %.1f s", self.device_id, push.sent,
                 push.stored, len(push.rejected), items, offset_s, sample.rtt_ns / 1e6,
                 duration_s)
        return report

    # --- clock ----------------------------------------------------------------------------

    def measure_clock(self) -> ClockSample:
        """This round's best sample; the best of the boot is remembered and stored."""
        return self._measure()[0]

    def best_sample(self) -> ClockSample | None:
        """The shortest-round-trip sample of this boot (from memory or the store)."""
        boot_id = self.clock.boot_id
        if self._best is not None and self._best.boot_id == boot_id:
            return self._best
        stored = self.anchors.anchor(boot_id) if self.anchors is not None else None
        self._best = _sample(stored) if stored is not None else None
        return self._best

    def _measure(self) -> tuple[ClockSample, float]:
        best: tuple[ClockSample, float] | None = None
        for _ in range(self.clock_samples):
            sample, offset_s = self._retry("GET /v1/clock", self._clock_round_trip)
            if best is None or sample.rtt_ns < best[0].rtt_ns:
                best = (sample, offset_s)
        assert best is not None
        self._remember(best[0])
        return best

    def _clock_round_trip(self) -> tuple[ClockSample, float]:
        boot_id = self.clock.boot_id
        before = self.clock.boottime_ns()
        wall_before = self._wall()
        response = self._send("GET", "/v1/clock")
        after = self.clock.boottime_ns()
        answer = _parse(ClockResponse, response)
        rtt_ns = max(0, after - before)
        sample = ClockSample(boot_id=boot_id, boottime_ns=before + rtt_ns // 2,
                             server_time=answer.server_time, rtt_ns=rtt_ns)
        wall_mid = wall_before + timedelta(microseconds=rtt_ns / 2000)
        return sample, (answer.server_time - wall_mid).total_seconds()

    def _remember(self, sample: ClockSample) -> None:
        best = self.best_sample()
        if best is not None and best.rtt_ns <= sample.rtt_ns:
            return
        self._best = sample
        if self.anchors is not None:
            self.anchors.save_anchor(Anchor(sample.boot_id, sample.boottime_ns,
                                            sample.server_time, sample.rtt_ns))

    # --- push -------------------------------------------------------------------------------

    def push_all(self, progress: ProgressCallback | None = None) -> PushReport:
        """Send every pending event in batches; mark sent exactly what the centre stored.

        Rejected events are logged at error with the centre's reason and set aside
        (``mark_rejected``): they stay in the outbox for a person, and no longer block
        the events behind them.
        """
        report = PushReport()
        self._round_batch = self.batch_size  # a 413 lowers it for the rest of this round
        total = self.outbox.pending_count()
        done = 0
        if progress is not None:
            progress(0, total)
        while True:
            self._check_cancel()
            pending = self.outbox.pending_events(self._round_batch)
            if not pending:
                break
            events = self._wire_events(pending, report)
            settled = len(pending) - len(events)  # invalid locally, already set aside
            if events:
                settled += self._push_batch(events, report)
            done += settled
            if progress is not None:
                total = max(total, done + self.outbox.pending_count())
                progress(done, total)
            if settled == 0:
                # The centre answered but held none of them and refused none: sending
                # again now would loop. They stay pending for the next round.
                report.unacknowledged += len(events)
                log.warning("sync %s: the centre neither stored nor rejected %d event(s) "
                            "(first %s); they stay pending for the next round",
                            self.device_id, len(events), events[0].event_id)
                break
        report.remaining = self.outbox.pending_count()
        return report

    def _wire_events(self, pending: Sequence[PendingEvent], report: PushReport) -> list[Event]:
        """The batch as protocol events; an event that is not valid protocol is set aside
        (it could never be delivered and would block everything behind it)."""
        events = []
        for row in pending:
            try:
                events.append(Event.model_validate(dict(row.payload)))
            except ValidationError as exc:
                reason = (f"agent: not a valid protocol-{PROTOCOL_VERSION} event "
                          f"({_first_error(exc)})")
                self._set_aside(Rejection(event_id=row.event_id, reason=reason), report)
        return events

    def _push_batch(self, events: list[Event], report: PushReport) -> int:
        """Push one batch; returns how many of its events are settled (stored or rejected)."""
        try:
            answer = self._post_events(events)
        except RejectedRequest as exc:
            if exc.status != 413:
                raise
            if len(events) == 1:  # one event bigger than the centre accepts: set it aside
                reason = f"centre: too large for one request (413: {exc.detail or exc})"
                self._set_aside(Rejection(event_id=events[0].event_id, reason=reason), report)
                return 1
            half = len(events) // 2
            log.warning("sync %s: centre says a batch of %d events is too large; "
                        "sending halves", self.device_id, len(events))
            self._round_batch = min(self._round_batch, half)
            return self._push_batch(events[:half], report) + self._push_batch(events[half:],
                                                                              report)
        report.batches += 1
        report.sent += len(events)
        batch_ids = {e.event_id for e in events}
        stored = [i for i in dict.fromkeys(answer.stored) if i in batch_ids]
        stranger = set(answer.stored) - batch_ids
        if stranger:
            log.warning("sync %s: centre acknowledged %d id(s) not in the batch (ignored), "
                        "e.g. %s", self.device_id, len(stranger), next(iter(stranger)))
        if stored:
            self.outbox.mark_sent(stored, answer.server_time.isoformat())
        report.stored += len(stored)
        held = set(stored)
        refused = {}
        for rejection in answer.rejected:
            if rejection.event_id in batch_ids and rejection.event_id not in held:
                refused[rejection.event_id] = rejection
        for rejection in refused.values():
            self._set_aside(rejection, report)
        return len(held) + len(refused)

    def _post_events(self, events: list[Event]) -> PushResponse:
        body = PushRequest(device_id=self.device_id, clock=self.best_sample(),
                           events=events).model_dump_json().encode()

        def attempt() -> PushResponse:
            response = self._send("POST", "/v1/events", content=body,
                                  headers={"Content-Type": "application/json"})
            return _parse(PushResponse, response)

        return self._retry("POST /v1/events", attempt)

    def _set_aside(self, rejection: Rejection, report: PushReport) -> None:
        log.error("sync %s: event %s rejected: %s; it stays in the outbox, set aside for a "
                  "person (nyckelfri agent status lists it)", self.device_id,
                  rejection.event_id, rejection.reason)
        self.outbox.mark_rejected(rejection.event_id, rejection.reason)
        report.rejected.append(rejection)

    # --- reference ---------------------------------------------------------------------------

    def pull_reference(self) -> int:
        """Fetch reference changes since the stored cursor, page by page, each page applied
        with its cursor atomically. Returns the number of items applied."""
        cursor = self.reference.reference_cursor()
        applied = 0
        while True:
            self._check_cancel()
            page = self._retry("GET /v1/reference", partial(self._reference_page, cursor))
            if page.cursor < cursor or (page.more and page.cursor == cursor):
                raise ProtocolMismatch(
                    f"the centre's reference cursor went from {cursor} to {page.cursor} "
                    f"(more={page.more}); was the centre restored from a backup? ask its "
                    "administrator; the agent keeps its reference data meanwhile",
                    status=200,
                )
            if page.items or page.cursor != cursor:
                self.reference.apply_reference(page.items, page.cursor)
            applied += len(page.items)
            cursor = page.cursor
            if not page.more:
                return applied

    def _reference_page(self, since: int) -> ReferencePage:
        response = self._send("GET", "/v1/reference",
                              params={"since": since, "limit": MAX_REFERENCE_PAGE})
        return _parse(ReferencePage, response)

    # --- fitter jobs -----------------------------------------------------------------------

    def pull_jobs(self) -> list[FitterJob]:
        """This device's fitter jobs from the binder (GET /v1/jobs), stored in the job
        sink when there is one (replacing the previous list). Returns them."""
        page = self._retry("GET /v1/jobs", self._jobs_page)
        jobs = list(page.jobs)
        if self.jobs is not None:
            self.jobs.replace_jobs(jobs)
        log.info("sync %s: %d fitter job(s) pulled", self.device_id, len(jobs))
        return jobs

    def _jobs_page(self) -> JobsPage:
        return _parse(JobsPage, self._send("GET", "/v1/jobs"))

    def _pull_jobs_if_served(self) -> int | None:
        """``pull_jobs`` within a round; a centre without the jobs endpoint (404, an
        older centre) is not an error: the stored jobs stay and None is reported."""
        try:
            return len(self.pull_jobs())
        except ProtocolMismatch as exc:
            if exc.status != 404:
                raise
            log.info("sync %s: the centre serves no fitter jobs (%s)", self.device_id, exc)
            return None

    # --- SUN tag keys -----------------------------------------------------------------------

    def pull_tag_keys(self) -> TagKeysPage:
        """The SUN keys of this device's unit's tags and the tag policy (GET /v1/tag-keys),
        stored in the key sink when there is one (replacing what it held)."""
        page = self._retry("GET /v1/tag-keys",
                           lambda: _parse(TagKeysPage, self._send("GET", "/v1/tag-keys")))
        if self.tag_keys is not None:
            self.tag_keys.replace_tag_keys(str(page.policy), list(page.tags))
        log.info("sync %s: SUN keys of %d tag(s), tag policy %s", self.device_id,
                 len(page.tags), page.policy)
        return page

    def _pull_tag_keys_if_served(self) -> int | None:
        """``pull_tag_keys`` within a round; an older centre without the endpoint (404)
        leaves the held keys and policy as they were."""
        try:
            return len(self.pull_tag_keys().tags)
        except ProtocolMismatch as exc:
            if exc.status != 404:
                raise
            log.info("sync %s: the centre serves no SUN keys (%s)", self.device_id, exc)
            return None

    # --- HTTP ---------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt. Returns a 2xx answer; raises _CentreBusy (retryable), a typed
        refusal, or the transport's error."""
        self._check_cancel()
        response = self._http.request(method, path, **kwargs)
        if response.is_success:
            return response
        if response.status_code in RETRYABLE_STATUS:
            raise _CentreBusy(response)
        raise self._refusal(method, path, response)

    def _retry(self, what: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` under the retry policy; map what is left to sync errors."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RETRYABLE_ERRORS),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(what, state),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _CentreBusy as exc:
            problem = f": {exc.problem.detail}" if exc.problem else ""
            raise CentreUnreachable(
                f"centre at {self.base_url} answered {what} with {exc}{problem} "
                f"{self.max_attempts} time(s); it is up but cannot serve now. Nothing is "
                "lost: the outbox keeps every event; the agent tries again later",
                attempts=self.max_attempts, status=exc.status,
            ) from exc
        except RETRYABLE_TRANSPORT_ERRORS as exc:
            raise CentreUnreachable(
                f"no answer from the centre at {self.base_url} to {what} after "
                f"{self.max_attempts} attempt(s) ({type(exc).__name__}: {exc or 'timeout'}); "
                "check the network and centre_url. Nothing is lost: the outbox keeps every "
                "event; the agent tries again later",
                attempts=self.max_attempts,
            ) from exc
        except httpx.HTTPError as exc:  # not retryable: a proxy or protocol misconfiguration
            raise CentreUnreachable(
                f"cannot talk to the centre at {self.base_url} ({type(exc).__name__}: {exc}); "
                "check centre_url and any proxy settings (HTTP_PROXY, HTTPS_PROXY)",
                attempts=1,
            ) from exc

    def _log_retry(self, what: str, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("sync %s: %s failed (%s: %s), attempt %d of %d; retrying in %.1f s",
                    self.device_id, what, type(exc).__name__, exc, state.attempt_number,
                    self.max_attempts, delay)

    def _refusal(self, method: str, path: str, response: httpx.Response) -> CentreAnswerError:
        status = response.status_code
        problem = _problem(response)
        detail = problem.detail if problem else _snippet(response)
        given = problem.advice if problem else ""
        kind: type[CentreAnswerError]
        if status == 401:
            kind, advice = Unauthorized, (
                "check the agent's token (token or token_file in agent.toml, NYCKELFRI_TOKEN);"
                " the centre's administrator issues and revokes tokens")
        elif status == 403:
            kind, advice = Forbidden, (
                f"ask the centre's administrator whether device {self.device_id!r} is "
                "enrolled and enabled")
        elif response.is_redirect:
            kind, advice = ProtocolMismatch, (
                f"the centre redirects to {response.headers.get('Location', '?')}; set "
                "centre_url to the address it names (the agent does not follow redirects: "
                "they would carry the token elsewhere)")
        elif status in (404, 426):
            kind, advice = ProtocolMismatch, (
                "check that centre_url points at the centre's API and that agent and centre "
                f"speak the same protocol (the agent speaks {PROTOCOL_VERSION}); upgrade the "
                "older side")
        else:
            kind, advice = RejectedRequest, (
                "the centre refused the request itself; this is a bug on one side: report "
                "it with the agent's log (nyckelfri --debug sync)")
        advice = given or advice
        message = f"centre refused {method} {path}: {status}"
        if problem:
            message += f" {problem.error}"
        message += f": {detail}; {advice}" if detail else f"; {advice}"
        return kind(message, status=status, detail=detail, advice=advice)

    def _check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise Cancelled("sync stopped: the agent is shutting down; the outbox keeps "
                            "everything not yet acknowledged")

    def _cancellable_sleep(self, seconds: float) -> None:
        assert self._cancel is not None
        if self._cancel.wait(seconds):
            self._check_cancel()


# --- helpers -------------------------------------------------------------------------------


def _sample(anchor: Anchor) -> ClockSample:
    return ClockSample(boot_id=anchor.boot_id, boottime_ns=anchor.boottime_ns,
                       server_time=anchor.server_time, rtt_ns=anchor.rtt_ns)


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ProtocolMismatch(
            f"the centre's answer to {response.request.method} {response.request.url.path} is "
            f"not a protocol-{PROTOCOL_VERSION} {model.__name__} ({_first_error(exc)}); check "
            "that centre_url points at the centre and that both speak the same protocol",
            status=response.status_code,
        ) from exc


def _problem(response: httpx.Response) -> ProblemDetail | None:
    try:
        return ProblemDetail.model_validate_json(response.content)
    except ValidationError:
        return None


def _snippet(response: httpx.Response, limit: int = 200) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg', 'invalid')}; {exc.error_count()} error(s) in all"
