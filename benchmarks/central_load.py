"""Many agents pushing at once: one centre on loopback under ``--agents`` concurrent pushers.

Run ``.venv/bin/python benchmarks/central_load.py [--agents N] [--json]``. It prints
figures and a baseline measured in the same run; it never asserts on time.

Each run starts ``python -m central serve`` (= ``nyckelfri-central serve``) in its own
process on a fresh database (a SQLite file, or a PostgreSQL database dropped
afterwards) with ``--workers`` uvicorn workers; by default SQLite with 1 worker and
PostgreSQL with 1 and with 2. Then:

* **enrolment**: ``--agents`` (500) devices, each with its own token
  (``CentralStore.add_device``), plus the baseline's;
* **the load**: every agent pushes ``--batches`` (5) batches of ``--batch-events`` (50)
  realistic visit events (the shapes ``agent.visits`` writes, each agent its own boot
  and clock sample), one request after the other, all agents starting together.
  Bodies are real ``sync.protocol.PushRequest`` JSON, built before the clock starts,
  with the headers the real ``SyncClient`` sends. Concurrency is simulated as: ONE
  asyncio event loop in this process; by default each agent has its OWN
  ``httpx.AsyncClient`` with one keep-alive connection (as a real agent has), timeouts
  of ``sync.client.TIMEOUTS``, no retries (a failed request is counted, not repeated).
  ``--client shared`` instead gives all agents one ``AsyncClient`` whose pool holds a
  connection per agent: httpcore's pool bookkeeping then grows with the number of
  connections and the load generator burns several times more CPU per request;
* **baseline**: the same kind of requests one after the other over ONE connection
  through the same client code: agent after agent, each with as many pushes of the same
  size as a load agent (new devices, so the centre's work per request is alike), so the
  concurrency gain or loss is visible. ``--solo-requests`` (default 500 of the 2,500: a
  sample, labelled so; rates and p50 settle long before); ``--solo-one-device`` makes it
  one device pushing all of them, whose history then grows as it goes;
* **check**: the centre holds exactly the events it acknowledged (``stored`` in 200
  answers), per phase; a request left without an answer (a timeout, or cut at the
  phase's cap) may or may not have been committed, and is allowed for.

Load generator and centre share this machine's cores: the table gives both CPU shares.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import random
import ssl
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _common import (
    BACKENDS,
    EXIT_INTERRUPTED,
    INTERRUPTED,
    Centre,
    CpuSplit,
    RssSampler,
    Spread,
    VisitDay,
    backlog_start,
    cpu_window,
    fresh_database,
    machine,
    machine_lines,
    rate,
    sigterm_interrupts,
)

import central.db as cdb
from agent.store import event_payload
from central.store import CentralStore
from sync.client import TIMEOUTS, USER_AGENT
from sync.protocol import (
    MAX_BATCH,
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    ClockSample,
    Event,
    PushRequest,
)

log = logging.getLogger("benchmarks")

DEFAULT_AGENTS = 500
DEFAULT_BATCHES = 5
DEFAULT_BATCH_EVENTS = 50
DEFAULT_RUNS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))
DEFAULT_SEED = 20261130
# A phase that has not finished by then is cut short (its outstanding requests are
# cancelled and reported): keeps a run bounded even against a centre that hangs.
DEFAULT_PHASE_CAP_S = 240.0
AGENT_PREFIX = "load-"
SOLO_PREFIX = "solo-"
# The baseline's default sample: requests/s and p50 of requests in a row settle long
# before this (and the full 2,500 would add minutes per run).
DEFAULT_SOLO_REQUESTS = 500
PROBLEM_CHARS = 160
# Distinct error answers kept in the figures (they repeat).
MAX_PROBLEMS = 5
# The agents' tasks are created, then this pause lets each reach the start line, so
# they all begin together (creating 500 tasks and their first await takes ~10 ms).
START_LINE_S = 0.5
CLIENT_MODES = ("per-agent", "shared")
# The round trip of the agents' (fictitious) clock sample: a good 4G link.
CLOCK_RTT_NS = 40_000_000
MIB = 1024 * 1024


# --- what the agents send --------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """One agent's pushes, as sent: PushRequest bodies and the events in each."""

    device: str
    bodies: tuple[bytes, ...]
    events: tuple[int, ...]


@dataclass(frozen=True)
class Agent:
    name: str
    token: str
    bodies: tuple[bytes, ...]  # one PushRequest per batch, as sent
    events: tuple[int, ...]  # events in each body

    @property
    def headers(self) -> dict[str, str]:
        """What sync.client.SyncClient sends with a push."""
        return {PROTOCOL_HEADER: str(PROTOCOL_VERSION), "Authorization": f"Bearer {self.token}",
                "User-Agent": f"{USER_AGENT} ({self.name})", "Accept": "application/json",
                "Content-Type": "application/json"}


def backlog(device: str, batches: int, per_batch: int, rng: random.Random) -> Backlog:
    """``batches`` PushRequest bodies of ``per_batch`` events of one agent's backlog."""
    total = batches * per_batch
    day = VisitDay(rng, backlog_start(total))
    events = [Event.model_validate(event_payload(kind, stamp, device, data, uuid.uuid4().hex))
              for kind, stamp, data in itertools.islice(day.events(), total)]
    clock = ClockSample(boot_id=day.boot_id,
                        boottime_ns=events[-1].boottime_ns + CLOCK_RTT_NS,
                        server_time=datetime.now(UTC), rtt_ns=CLOCK_RTT_NS)
    chunks = [events[i:i + per_batch] for i in range(0, total, per_batch)]
    return Backlog(device, tuple(PushRequest(device_id=device, clock=clock, events=chunk)
                                 .model_dump_json().encode() for chunk in chunks),
                   tuple(len(chunk) for chunk in chunks))


@dataclass(frozen=True)
class Workload:
    """Built once, pushed to every run's fresh centre (ids repeat only across databases)."""

    load: list[Backlog]  # the concurrent agents
    solo: list[Backlog]  # pushed by one connection, one request after the other
    solo_requests: int
    solo_one_device: bool


def build_workload(args: argparse.Namespace) -> Workload:
    rng = random.Random(args.seed)
    load = [backlog(f"{AGENT_PREFIX}{i:04d}", args.batches, args.batch_events, rng)
            for i in range(args.agents)]
    if args.solo_one_device:  # one device whose history grows with every push
        solo = [backlog(f"{SOLO_PREFIX}0000", args.solo_requests, args.batch_events, rng)]
    else:  # agent after agent, each as big as a load agent, so the centre's work is alike
        devices = math.ceil(args.solo_requests / args.batches)
        solo = [backlog(f"{SOLO_PREFIX}{i:04d}", args.batches, args.batch_events, rng)
                for i in range(devices)]
    return Workload(load, solo, args.solo_requests, args.solo_one_device)


def enrol(database: str, names: Sequence[str]) -> dict[str, str]:
    with CentralStore.open(database) as store:
        return {name: store.add_device(name) for name in names}


# --- one phase ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    agent: str
    status: int  # 0: no answer (see error)
    ns: int
    stored: int  # ids acknowledged as stored
    events: int  # events in the request
    error: str = ""  # no answer: the exception's name; an error answer: its problem


@dataclass
class Phase:
    agents: int
    mode: str  # per-agent | shared | in-turn (see _drive)
    connections: int
    requests_planned: int
    events_per_request: int
    outcomes: list[Outcome] = field(default_factory=list)
    wall_s: float = 0.0
    cpu: CpuSplit = field(default_factory=CpuSplit)
    centre_rss_peak: int = 0
    centre_rss_end: int = 0

    @property
    def acknowledged(self) -> int:
        return sum(o.stored for o in self.outcomes)

    @property
    def unanswered_events(self) -> int:
        """Events of requests without an answer: the centre may or may not hold them."""
        return sum(o.events for o in self.outcomes if o.status == 0)

    @property
    def not_sent(self) -> int:
        """Requests never made: the phase hit its time cap."""
        return self.requests_planned - len(self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        ok = [o for o in self.outcomes if o.status == 200]
        statuses = Counter(o.status for o in self.outcomes if o.status != 200 and o.status)
        problems = Counter(f"{o.status} {o.error}" for o in self.outcomes
                           if o.status not in (0, 200))
        return {
            "agents": self.agents, "client": self.mode, "connections": self.connections,
            "requests_planned": self.requests_planned, "requests_made": len(self.outcomes),
            "events_per_request": self.events_per_request,
            "wall_s": round(self.wall_s, 3),
            "ok_requests": len(ok), "acknowledged_events": self.acknowledged,
            "requests_per_s": round(rate(len(ok), self.wall_s), 1),
            "events_per_s": round(rate(self.acknowledged, self.wall_s), 1),
            "latency_ms": Spread.of([o.ns for o in self.outcomes]).as_dict(),
            "latency_ok_ms": Spread.of([o.ns for o in ok]).as_dict(),
            "http_503": statuses.pop(503, 0),
            "http_other_errors": {str(k): v for k, v in sorted(statuses.items())},
            "error_answers": dict(problems.most_common(MAX_PROBLEMS)),
            "no_answer": dict(Counter(o.error for o in self.outcomes if o.status == 0)),
            "unanswered_events": self.unanswered_events,
            "not_sent_at_cap": self.not_sent,
            "cpu": self.cpu.as_dict(),
            "centre_rss_mib_peak": round(self.centre_rss_peak / MIB, 1),
            "centre_rss_mib_end": round(self.centre_rss_end / MIB, 1),
        }


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body['error']}: {body['detail']}"[:PROBLEM_CHARS]
    except (ValueError, KeyError, TypeError):
        return response.text[:PROBLEM_CHARS]


async def _one_agent(http: httpx.AsyncClient, agent: Agent, start: asyncio.Event,
                     out: list[Outcome]) -> None:
    headers = agent.headers
    await start.wait()
    for body, events in zip(agent.bodies, agent.events, strict=True):
        began = time.perf_counter_ns()
        try:
            response = await http.post("/v1/events", content=body, headers=headers)
        except httpx.HTTPError as exc:
            out.append(Outcome(agent.name, 0, time.perf_counter_ns() - began, 0, events,
                               type(exc).__name__))
            continue
        except asyncio.CancelledError:  # the phase's cap: the centre may have committed it
            out.append(Outcome(agent.name, 0, time.perf_counter_ns() - began, 0, events,
                               "cancelled in flight at the cap"))
            raise
        ns = time.perf_counter_ns() - began
        if response.status_code == 200:
            out.append(Outcome(agent.name, 200, ns, len(response.json()["stored"]), events))
        else:
            out.append(Outcome(agent.name, response.status_code, ns, 0, events,
                               _problem(response)))


async def _in_turn(http: httpx.AsyncClient, agents: Sequence[Agent], start: asyncio.Event,
                   out: list[Outcome]) -> None:
    """One connection: each agent's pushes in turn, agent after agent."""
    for agent in agents:
        await _one_agent(http, agent, start, out)


def _client(url: str, connections: int, tls: ssl.SSLContext) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    # One TLS context for all: httpx would load the CA bundle once per client otherwise
    # (the centre is plain HTTP on loopback; the context is never used).
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=TIMEOUTS, verify=tls,
                             follow_redirects=False)


async def _drive(url: str, agents: Sequence[Agent], mode: str, cap_s: float,
                 phase: Phase) -> None:
    """Push as ``mode`` says: ``per-agent`` (each agent its own client and connection),
    ``shared`` (one client, a pooled connection per agent) or ``in-turn`` (one client,
    one connection, agent after agent)."""
    tls = ssl.create_default_context()
    start = asyncio.Event()
    async with contextlib.AsyncExitStack() as clients:
        if mode == "per-agent":
            jobs = [_one_agent(await clients.enter_async_context(_client(url, 1, tls)), a,
                               start, phase.outcomes) for a in agents]
        elif mode == "shared":
            http = await clients.enter_async_context(_client(url, len(agents), tls))
            jobs = [_one_agent(http, a, start, phase.outcomes) for a in agents]
        else:
            http = await clients.enter_async_context(_client(url, 1, tls))
            jobs = [_in_turn(http, agents, start, phase.outcomes)]
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            await asyncio.sleep(START_LINE_S)
            began = time.perf_counter()
            start.set()
            await asyncio.wait(tasks, timeout=cap_s)
            phase.wall_s = time.perf_counter() - began
        finally:  # the cap, or Ctrl-C: no agent may outlive its client
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def run_phase(centre: Centre, agents: Sequence[Agent], mode: str, per_request: int,
              cap_s: float) -> Phase:
    phase = Phase(agents=len(agents), mode=mode,
                  connections=1 if mode == "in-turn" else len(agents),
                  requests_planned=sum(len(a.bodies) for a in agents),
                  events_per_request=per_request)
    with RssSampler(centre.pid) as rss, cpu_window(centre.pid) as cpu:
        asyncio.run(_drive(centre.url, agents, mode, cap_s, phase))
    phase.cpu, phase.centre_rss_peak, phase.centre_rss_end = cpu, rss.peak, centre.rss()
    return phase


# --- the check ---------------------------------------------------------------------------------


def held_events(database: str) -> dict[str, int]:
    """Events the centre holds: of the load agents, of the baseline's, in all."""
    engine = cdb.create_engine(cdb.database_url(database))
    e = cdb.events.c
    try:
        with engine.connect() as conn:
            def count(*where: Any) -> int:
                query = sa.select(sa.func.count()).select_from(cdb.events).where(*where)
                return int(conn.execute(query).scalar_one())

            return {"load": count(e.device.like(f"{AGENT_PREFIX}%")),
                    "solo": count(e.device.like(f"{SOLO_PREFIX}%")), "total": count()}
    finally:
        engine.dispose()


def phase_check(phase: Phase, held: int) -> dict[str, Any]:
    """Held must equal acknowledged, give or take the events of requests left unanswered
    (a request cut off after the centre committed is stored but not acknowledged: the
    real agent re-sends it and the centre keeps one copy)."""
    acknowledged, unanswered = phase.acknowledged, phase.unanswered_events
    return {"acknowledged": acknowledged, "held": held, "unanswered_events": unanswered,
            "exact": held == acknowledged,
            "ok": acknowledged <= held <= acknowledged + unanswered}


# --- one run -------------------------------------------------------------------------------------


def _agents(backlogs: Sequence[Backlog], tokens: dict[str, str],
            requests: int | None = None) -> list[Agent]:
    agents, left = [], requests
    for b in backlogs:
        bodies, events = b.bodies, b.events
        if left is not None:
            bodies, events = bodies[:left], events[:left]
            left -= len(bodies)
        if bodies:
            agents.append(Agent(b.device, tokens[b.device], bodies, events))
    return agents


def run_config(backend: str, workers: int, work: Workload, args: argparse.Namespace,
               workdir: Path) -> dict[str, Any]:
    folder = workdir / f"{backend}-w{workers}"
    folder.mkdir()
    with fresh_database(backend, folder, "centre") as database:
        began = time.perf_counter()
        tokens = enrol(database, [b.device for b in (*work.load, *work.solo)])
        enrol_s = time.perf_counter() - began
        with Centre(database, folder / "centre.log", workers=workers) as centre:
            idle_rss, processes = centre.rss(), len(centre.processes())
            log.info("%s/%d: %d agents pushing at once", backend, workers, len(work.load))
            load = run_phase(centre, _agents(work.load, tokens), args.client,
                             args.batch_events, args.phase_cap)
            log.info("%s/%d: %.0f events/s; baseline: %d requests in a row", backend, workers,
                     rate(load.acknowledged, load.wall_s), work.solo_requests)
            solo = run_phase(centre, _agents(work.solo, tokens, work.solo_requests),
                             "in-turn", args.batch_events, args.phase_cap)
        held = held_events(database)
    load_d, solo_d = load.as_dict(), solo.as_dict()

    def times(a: float, b: float) -> float | None:
        return round(a / b, 2) if b and not math.isnan(b) else None

    return {
        "backend": backend, "workers": workers, "centre_processes": processes,
        "prepare": {"enrol_s": round(enrol_s, 2), "centre_start_s": round(centre.started_s, 2),
                    "centre_rss_mib_idle": round(idle_rss / MIB, 1)},
        "load": load_d,
        "solo": solo_d,
        "concurrency_gain": {
            "requests_per_s_x": times(load_d["requests_per_s"], solo_d["requests_per_s"]),
            "p50_latency_x": times(load_d["latency_ms"]["p50"], solo_d["latency_ms"]["p50"]),
        },
        "check": {"load": phase_check(load, held["load"]),
                  "solo": phase_check(solo, held["solo"]), "total_held": held["total"]},
    }


# --- output ---------------------------------------------------------------------------------


def _errors_cell(phase: dict[str, Any]) -> str:
    other = sum(phase["http_other_errors"].values()) + sum(phase["no_answer"].values())
    return f"{phase['http_503']} / {other} / {phase['not_sent_at_cap']}"


def table(data: dict[str, Any]) -> str:
    args, host, runs = data["args"], data["machine"], data["runs"]
    width = 16
    heads = [f"{r['backend']}/{r['workers']}w" for r in runs]

    def row(label: str, values: Sequence[Any], spec: str = ">16,.0f") -> str:
        cells = ["-" if v is None else format(v, spec) for v in values]
        return f"{label:<46}" + "".join(c.rjust(width) for c in cells)

    def get(*path: str) -> list[Any]:
        out = []
        for run in runs:
            value: Any = run
            for key in path:
                value = value[key]
            out.append(value)
        return out

    def pair(a: Sequence[float], b: Sequence[float]) -> list[str]:
        return [f"{x:.0f} / {y:.0f}" for x, y in zip(a, b, strict=True)]

    total = args["agents"] * args["batches"]
    solo_what = ("ONE device whose history grows" if args["solo_one_device"]
                 else f"agent after agent ({args['batches']} pushes each, new devices)")
    solo_size = ("the same total" if args["solo_requests"] == total
                 else f"a SAMPLE of {args['solo_requests']:,} of the {total:,}")
    lines = [
        f"nyckelfri central load: {args['agents']:,} agents x {args['batches']} pushes of "
        f"{args['batch_events']} events = {total:,} requests, {total * args['batch_events']:,} "
        "events, all agents starting together",
        "load generator: one asyncio loop in this process; "
        + ("each agent its own httpx.AsyncClient and connection"
           if args["client"] == "per-agent" else
           "one shared httpx.AsyncClient with a pooled connection per agent")
        + "; each agent's pushes in sequence; no retries",
        *machine_lines(host),
        "",
        f"{'centre (backend / uvicorn workers)':<46}" + "".join(h.rjust(width) for h in heads),
        f"{args['agents']:,} agents at once",
        row("  wall (s)", get("load", "wall_s"), ">16,.1f"),
        row("  events/s (acknowledged)", get("load", "events_per_s")),
        row("  requests/s (200)", get("load", "requests_per_s"), ">16,.1f"),
        row("  latency p50 (ms)", get("load", "latency_ms", "p50")),
        row("  latency p90 (ms)", get("load", "latency_ms", "p90")),
        row("  latency p99 (ms)", get("load", "latency_ms", "p99")),
        row("  latency max (ms)", get("load", "latency_ms", "max")),
        row("  errors: 503 / other / not sent (cap)", [_errors_cell(r["load"]) for r in runs],
            ">16"),
        row("  load generator CPU (% of one core)",
            get("load", "cpu", "client_percent_of_one_core")),
        row("  centre CPU (% of one core, all workers)",
            get("load", "cpu", "centre_percent_of_one_core")),
        row("  PostgreSQL CPU (% of one core)",
            get("load", "cpu", "postgres_percent_of_one_core")),
        row("  other processes on the box (% of one core)",
            get("load", "cpu", "other_percent_of_one_core")),
        row("  machine busy (% of all cores)", get("load", "cpu", "machine_busy_percent")),
        row("  centre RSS idle / peak (MiB)",
            pair(get("prepare", "centre_rss_mib_idle"), get("load", "centre_rss_mib_peak")),
            ">16"),
        row("  centre RSS at the end (MiB)", get("load", "centre_rss_mib_end")),
        f"baseline: one connection, requests in a row, {solo_what}; {solo_size}",
        row("  wall (s)", get("solo", "wall_s"), ">16,.1f"),
        row("  requests/s", get("solo", "requests_per_s"), ">16,.1f"),
        row("  events/s", get("solo", "events_per_s")),
        row("  latency p50 / p99 (ms)",
            pair(get("solo", "latency_ms", "p50"), get("solo", "latency_ms", "p99")), ">16"),
        row("  errors: 503 / other / not sent (cap)", [_errors_cell(r["solo"]) for r in runs],
            ">16"),
        row("  client / centre / PostgreSQL CPU (% of one core)",
            [f"{a:.0f} / {b:.0f} / {c:.0f}" for a, b, c in zip(
                get("solo", "cpu", "client_percent_of_one_core"),
                get("solo", "cpu", "centre_percent_of_one_core"),
                get("solo", "cpu", "postgres_percent_of_one_core"), strict=True)], ">16"),
        row("concurrency: requests/s, many / one (x)",
            get("concurrency_gain", "requests_per_s_x"), ">16,.2f"),
        row("concurrency: p50 latency, many / one (x)",
            get("concurrency_gain", "p50_latency_x"), ">16,.1f"),
        "",
        row("enrolment of the devices (s)", get("prepare", "enrol_s"), ">16,.1f"),
        row("centre processes (+ resource tracker, workers)", get("centre_processes")),
    ]
    for head, run in zip(heads, runs, strict=True):
        for phase in ("load", "solo"):
            p = run[phase]
            for what, n in {**p["error_answers"], **p["no_answer"]}.items():
                lines.append(f"  {head} {phase}: {n} x {what}")
    lines += ["", "check (events the centre holds = events it acknowledged):"]
    for head, run in zip(heads, runs, strict=True):
        c = run["check"]
        verdict = "OK" if c["load"]["ok"] and c["solo"]["ok"] else "MISMATCH"
        parts = []
        for phase, label in (("load", "load agents"), ("solo", "baseline")):
            p = c[phase]
            extra = (f" (+ up to {p['unanswered_events']:,} of unanswered requests)"
                     if p["unanswered_events"] else "")
            parts.append(f"{label} {p['held']:,} held / {p['acknowledged']:,} "
                         f"acknowledged{extra}")
        lines.append(f"  {head}: {verdict}: {'; '.join(parts)}; {c['total_held']:,} in all")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=DEFAULT_AGENTS,
                        help=f"concurrent agents, each its own device (default {DEFAULT_AGENTS})")
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES,
                        help=f"pushes per agent (default {DEFAULT_BATCHES})")
    parser.add_argument("--batch-events", type=int, default=DEFAULT_BATCH_EVENTS,
                        help=f"events per push (default {DEFAULT_BATCH_EVENTS})")
    parser.add_argument("--backends", default=None,
                        help=f"comma-separated, of {', '.join(BACKENDS)}")
    parser.add_argument("--workers", type=int, default=None,
                        help="uvicorn workers for every backend; default: SQLite with 1, "
                             "PostgreSQL with 1 and with 2")
    parser.add_argument("--client", choices=CLIENT_MODES, default=CLIENT_MODES[0],
                        help="per-agent: each agent its own httpx.AsyncClient with one "
                             "connection (default); shared: one AsyncClient whose pool holds a "
                             "connection per agent (httpcore's pool then costs the load "
                             "generator CPU that grows with the number of connections)")
    parser.add_argument("--solo-requests", type=int, default=None,
                        help="requests of the one-connection baseline (default "
                             f"{DEFAULT_SOLO_REQUESTS}, at most agents x batches)")
    parser.add_argument("--solo-one-device", action="store_true",
                        help="baseline as ONE device pushing all its requests (its history "
                             "grows as it goes) instead of agent after agent")
    parser.add_argument("--phase-cap", type=float, default=DEFAULT_PHASE_CAP_S,
                        help="seconds before a phase is cut short (default "
                             f"{DEFAULT_PHASE_CAP_S:.0f})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="event generator seed")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for SQLite files and logs (default: the system's temporary "
                             "folder)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in (args.backends or ",".join(BACKENDS)).split(",") if b.strip()]
    if not backends or set(backends) - set(BACKENDS):
        parser.error(f"--backends takes {' and/or '.join(BACKENDS)}")
    if args.workers is None:
        args.runs = [(b, w) for b, w in DEFAULT_RUNS if b in backends]
    elif args.workers < 1:
        parser.error("--workers must be at least 1")
    else:
        args.runs = [(b, args.workers) for b in backends]
    if min(args.agents, args.batches, args.batch_events) < 1:
        parser.error("--agents, --batches and --batch-events must be at least 1")
    if args.batch_events > MAX_BATCH:
        parser.error(f"--batch-events must be at most {MAX_BATCH} (the protocol's batch limit)")
    total = args.agents * args.batches
    if args.solo_requests is None:
        args.solo_requests = min(DEFAULT_SOLO_REQUESTS, total)
    if not 1 <= args.solo_requests <= total:
        parser.error(f"--solo-requests must be 1..{total} (agents x batches)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    sigterm_interrupts()
    log.info("building %d x %d bodies of %d events (+ the baseline's)", args.agents,
             args.batches, args.batch_events)
    began = time.perf_counter()
    work = build_workload(args)
    build_s = time.perf_counter() - began
    try:
        with tempfile.TemporaryDirectory(prefix="nyckelfri-load-", dir=args.dir) as tmp:
            workdir = Path(tmp)
            host = machine(workdir, [b for b, _ in args.runs])
            runs = [run_config(backend, workers, work, args, workdir)
                    for backend, workers in args.runs]
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    host["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    data = {"machine": host,
            "args": {"agents": args.agents, "batches": args.batches,
                     "batch_events": args.batch_events, "solo_requests": args.solo_requests,
                     "solo_one_device": args.solo_one_device, "client": args.client,
                     "runs": [f"{b}/{w}" for b, w in args.runs], "phase_cap_s": args.phase_cap,
                     "seed": args.seed, "bodies_built_s": round(build_s, 1)},
            "runs": runs}
    print(json.dumps(data, indent=2) if args.json else table(data))
    ok = all(r["check"]["load"]["ok"] and r["check"]["solo"]["ok"] for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
